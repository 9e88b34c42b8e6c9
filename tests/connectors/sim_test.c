/*
 * End-to-end test of sluice-sim against the real daemon: the same seeded
 * run over the native protocol and over HTTP must store the same events
 * (source, time, values, quality, unit, attributes, inference results), in
 * the counts the simulator reports, with the profiles' features present:
 * eight sensor kinds, counters that only count up, machine states, quality
 * changes, vibration bursts, gaps, two models with a version rollout
 * half-way. A time-bounded run stops on time and never exceeds its rate.
 *
 *   sim_test SLUICE SLUICE_SIM sim
 */
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "connectors/sim/gen.h"
#include "tests/connectors/e2e.h"

#define START 1700000000ll
#define COUNT 3000

static const char *sim_bin;

/* Runs the simulator to completion; returns its summary counts. */
static void run_sim(const char *output, int port, const char *extra1,
                    const char *extra2, unsigned long long *readings,
                    unsigned long long *inference, int want_exit) {
  char addr[64], line[512], log[32];
  static int nrun;
  int fd, st;
  unsigned long long pub, acked, failed, gaps;
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  snprintf(log, sizeof(log), "sim%d.log", ++nrun);
  char *argv[] = {(char *)sim_bin,
                  "--output",
                  (char *)output,
                  "--address",
                  addr,
                  "--sources",
                  "16",
                  "--rate",
                  "4000",
                  "--inference-sources",
                  "4",
                  "--inference-rate",
                  "400",
                  "--seed",
                  "7",
                  "--start-time",
                  "1700000000",
                  (char *)extra1,
                  (char *)extra2,
                  NULL};
  pid_t pid = e2e_spawn(argv, log, &fd);
  line[0] = '\0';
  if (!want_exit)
    e2e_read_line(fd, line, sizeof(line), 60000);
  close(fd);
  st = e2e_wait(pid, 10000);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == want_exit,
        "sluice-sim over %s: exit status %d, want %d (%s)", output, st,
        want_exit, line);
  if (want_exit)
    return;
  CHECK(sscanf(line,
               "sluice-sim: readings %llu inference %llu published %llu "
               "acked %llu failed %llu gaps %llu",
               readings, inference, &pub, &acked, &failed, &gaps) == 6,
        "summary: %s", line);
  CHECK(pub == *readings + *inference && acked == pub && failed == 0,
        "over %s: %s", output, line);
}

static int attrs_equal(const Sluice__V1__Event *a, const Sluice__V1__Event *b) {
  if (a->n_attributes != b->n_attributes)
    return 0;
  for (size_t i = 0; i < a->n_attributes; i++) {
    const char *v = e2e_attr(b, a->attributes[i]->key);
    if (!v || strcmp(v, a->attributes[i]->value))
      return 0;
  }
  return 1;
}

static void same_event(const Sluice__V1__Event *a, const Sluice__V1__Event *b,
                       size_t i) {
  CHECK(!strcmp(a->source, b->source) && a->time_ns == b->time_ns &&
            a->body_case == b->body_case && attrs_equal(a, b),
        "event %zu differs between native and HTTP: %s@%lld vs %s@%lld", i,
        a->source, (long long)a->time_ns, b->source, (long long)b->time_ns);
  if (a->body_case == SLUICE__V1__EVENT__BODY_READING) {
    const Sluice__V1__Reading *x = a->reading, *y = b->reading;
    CHECK(x->value_case == y->value_case && x->quality == y->quality &&
              !strcmp(x->unit, y->unit),
          "reading %zu (%s) differs in kind, quality or unit", i, a->source);
    switch (x->value_case) {
    case SLUICE__V1__READING__VALUE_DOUBLE_VALUE:
      CHECK(x->double_value == y->double_value, "reading %zu: %.17g vs %.17g",
            i, x->double_value, y->double_value);
      break;
    case SLUICE__V1__READING__VALUE_INT_VALUE:
      CHECK(x->int_value == y->int_value, "reading %zu: int differs", i);
      break;
    case SLUICE__V1__READING__VALUE_STRING_VALUE:
      CHECK(!strcmp(x->string_value, y->string_value),
            "reading %zu: string differs", i);
      break;
    default:
      CHECK(0, "reading %zu: unexpected value case %d", i, x->value_case);
    }
    return;
  }
  const Sluice__V1__Inference *x = a->inference, *y = b->inference;
  CHECK(!strcmp(x->model, y->model) &&
            !strcmp(x->model_version, y->model_version) &&
            x->n_labels == y->n_labels && x->n_boxes == y->n_boxes &&
            x->latency_us == y->latency_us,
        "inference %zu differs", i);
  for (size_t k = 0; k < x->n_labels; k++)
    CHECK(!strcmp(x->labels[k]->name, y->labels[k]->name) &&
              x->labels[k]->score == y->labels[k]->score,
          "inference %zu label %zu differs", i, k);
  for (size_t k = 0; k < x->n_boxes; k++)
    CHECK(x->boxes[k]->x == y->boxes[k]->x &&
              x->boxes[k]->y == y->boxes[k]->y &&
              x->boxes[k]->w == y->boxes[k]->w &&
              x->boxes[k]->h == y->boxes[k]->h &&
              x->boxes[k]->score == y->boxes[k]->score &&
              !strcmp(x->boxes[k]->label, y->boxes[k]->label),
          "inference %zu box %zu differs", i, k);
}

/* Profile features in one run's readings (events [from, from + n)). */
static void check_readings(const e2e_events_t *rd, size_t from, size_t n) {
  const char *kinds[] = {"/temp", "/pressure", "/vibration", "/current",
                         "/flow", "/speed",    "/count",     "/status"};
  size_t seen[8] = {0}, uncertain = 0, states[4] = {0}, gap = 0, burst = 0;
  int64_t last_t[16] = {0};
  int64_t last_count[16];
  char names[16][64] = {{0}};
  const int64_t period = 1000000000ll / 4000;

  for (size_t i = 0; i < 16; i++)
    last_count[i] = -1;
  for (size_t i = from; i < from + n; i++) {
    const Sluice__V1__Event *e = rd->ev[i];
    const Sluice__V1__Reading *r = e->reading;
    size_t s = 0;
    CHECK(e->body_case == SLUICE__V1__EVENT__BODY_READING, "not a reading");
    CHECK(e->time_ns >= START * 1000000000ll, "time before start_time");
    /* Sources: 16 distinct names, found by name. */
    for (; s < 16 && names[s][0] && strcmp(names[s], e->source); s++)
      ;
    CHECK(s < 16, "more than 16 sources (%s)", e->source);
    if (!names[s][0])
      snprintf(names[s], sizeof(names[s]), "%s", e->source);
    for (size_t k = 0; k < 8; k++)
      if (strstr(e->source, kinds[k]) &&
          !strcmp(strstr(e->source, kinds[k]), kinds[k]))
        seen[k]++;
    if (r->quality == SLUICE__V1__QUALITY__QUALITY_UNCERTAIN)
      uncertain++;
    /* A gap: a source's turn came and went without a reading. */
    if (last_t[s] && e->time_ns - last_t[s] > 16 * period)
      gap++;
    last_t[s] = e->time_ns;
    if (strstr(e->source, "/count")) {
      CHECK(r->value_case == SLUICE__V1__READING__VALUE_INT_VALUE &&
                r->int_value >= last_count[s],
            "counter %s went from %lld to %lld", e->source,
            (long long)last_count[s], (long long)r->int_value);
      last_count[s] = r->int_value;
    } else if (strstr(e->source, "/status")) {
      int k = 0;
      CHECK(r->value_case == SLUICE__V1__READING__VALUE_STRING_VALUE,
            "status is not a string");
      for (; sl_gen_states[k] && strcmp(sl_gen_states[k], r->string_value); k++)
        ;
      CHECK(sl_gen_states[k], "unknown machine state %s", r->string_value);
      states[k]++;
    } else {
      CHECK(r->value_case == SLUICE__V1__READING__VALUE_DOUBLE_VALUE &&
                isfinite(r->double_value),
            "analogue reading is not a finite double");
      /* Baselines are 1..3 mm/s; a burst is 4..8 times that. */
      if (strstr(e->source, "/vibration") && r->double_value > 4.5)
        burst++;
    }
  }
  for (size_t k = 0; k < 8; k++)
    CHECK(seen[k] >= 100, "profile %s: %zu readings", kinds[k] + 1, seen[k]);
  CHECK(uncertain > 0, "no quality change in %zu readings", n);
  CHECK(states[0] && states[1] + states[2] + states[3],
        "the machine never left 'running'");
  CHECK(gap > 0, "no gap in %zu readings", n);
  CHECK(burst > 0, "no vibration burst in %zu readings", n);
}

static void check_inference(const e2e_events_t *in, size_t from, size_t n) {
  size_t cam[2] = {0}, pdm[2] = {0}, boxes = 0;
  for (size_t i = from; i < from + n; i++) {
    const Sluice__V1__Event *e = in->ev[i];
    const Sluice__V1__Inference *x = e->inference;
    CHECK(e->body_case == SLUICE__V1__EVENT__BODY_INFERENCE, "not inference");
    int v2 = !strcmp(x->model_version, SL_INFER_CAMERA_V2) ||
             !strcmp(x->model_version, SL_INFER_PDM_V2);
    if (!strcmp(x->model, SL_INFER_CAMERA_MODEL)) {
      CHECK(!cam[1] || v2, "camera: version went back after the rollout");
      cam[v2]++;
      CHECK(x->n_labels == 2, "camera: %zu labels", x->n_labels);
      CHECK(!strcmp(x->labels[0]->name, "ok") == (x->n_boxes == 0),
            "camera: boxes only for defects");
      for (size_t k = 0; k < x->n_boxes; k++) {
        const Sluice__V1__Box *b = x->boxes[k];
        CHECK(b->x >= 0 && b->y >= 0 && b->x + b->w <= 1.0001f &&
                  b->y + b->h <= 1.0001f && b->score > 0 && b->score <= 1,
              "camera: box outside the image");
        boxes++;
      }
    } else {
      float sum = 0;
      CHECK(!strcmp(x->model, SL_INFER_PDM_MODEL), "model %s", x->model);
      CHECK(!pdm[1] || v2, "pdm: version went back after the rollout");
      pdm[v2]++;
      CHECK(x->n_labels == 3 && x->n_boxes == 0, "pdm: labels/boxes");
      for (size_t k = 0; k < 3; k++)
        sum += x->labels[k]->score;
      CHECK(fabsf(sum - 1) < 0.001f, "pdm: scores sum to %g", sum);
    }
    for (size_t k = 0; k < x->n_labels; k++)
      CHECK(x->labels[k]->score >= 0 && x->labels[k]->score <= 1,
            "score out of 0..1");
  }
  CHECK(cam[0] && cam[1] && pdm[0] && pdm[1],
        "both models in both versions: camera %zu/%zu pdm %zu/%zu", cam[0],
        cam[1], pdm[0], pdm[1]);
  CHECK(boxes > 0, "no boxes at all");
}

SL_SCENARIO(sim) {
  unsigned long long r1, i1, r2, i2, r3, i3;
  e2e_events_t rd, in;

  e2e_config();
  start_daemon(NULL);

  /* A bad option is a usage error (exit 2), before anything is sent. */
  run_sim("native", native_port, "--rate", "fast", NULL, NULL, 2);
  run_sim("native", native_port, "--count", "3000", &r1, &i1, 0);
  run_sim("http", http_port, "--count", "3000", &r2, &i2, 0);
  CHECK(r1 + i1 == COUNT && r1 == r2 && i1 == i2,
        "counts: native %llu+%llu, http %llu+%llu", r1, i1, r2, i2);
  /* Bounded in time: 300 ms at 4400/s never sends more than the rate. */
  uint64_t t = now_ms();
  run_sim("native", native_port, "--duration", "300ms", &r3, &i3, 0);
  CHECK(now_ms() - t < 5000, "a 300 ms run took %llu ms",
        (unsigned long long)(now_ms() - t));
  CHECK(r3 + i3 > 0 && r3 + i3 <= 4400 * 3 / 10 + 1,
        "300 ms at 4400/s sent %llu", r3 + i3);
  stop_daemon_ok();

  e2e_read("readings", &rd);
  e2e_read("inference", &in);
  CHECK(rd.n == r1 + r2 + r3, "readings stored %zu, sent %llu", rd.n,
        r1 + r2 + r3);
  CHECK(in.n == i1 + i2 + i3, "inference stored %zu, sent %llu", in.n,
        i1 + i2 + i3);
  for (size_t i = 0; i < r1; i++)
    same_event(rd.ev[i], rd.ev[r1 + i], i);
  for (size_t i = 0; i < i1; i++)
    same_event(in.ev[i], in.ev[i1 + i], i);
  check_readings(&rd, 0, r1);
  check_inference(&in, 0, i1);
  e2e_events_free(&rd);
  e2e_events_free(&in);
}

static int setup(int argc, char **argv) {
  (void)argc;
  sim_bin = argv[2];
  return 0;
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "sim", "SLUICE_SIM", setup);
}
