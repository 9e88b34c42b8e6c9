/*
 * sl_bench_pipeline: realistic readings (connectors/sim/gen.h, 500
 * sources, one reading per source per second of event time) through two
 * pipelines in process, no network, no store:
 *
 *   raw:     filter (drop bad quality and spikes) -> deadband 0.5 with a
 *            60 s heartbeat: what gets stored and sent
 *   summary: the same filter -> 10 s tumbling window per source (count,
 *            mean, min, max, stddev), results to their own stream
 *
 * Each batch (1000 readings) also hands its dirty state to a counting
 * callback, as the daemon does into its store group, so state encoding is
 * in the measured cost. Allocations are counted by linking with
 * -Wl,--wrap=malloc (calloc, realloc, free: CMakeLists.txt), so every call
 * from the benchmark and the sluice libraries it links statically (all of
 * the pipeline's code) reaches __wrap_malloc; only the timed passes count.
 * Nothing here defines malloc itself.
 *
 * Beside it, the baseline of the same run: a loop that reads every event's
 * value and hashes its source (the least any per-source step must do).
 *
 * Progress on stderr, one JSON object on stdout.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <xxhash.h>

#include "connectors/sim/gen.h"
#include "process/process.h"

/* ---- allocation counter ------------------------------------------------ */

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t a, size_t b);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
/* Shared with bench_inference.c (the inference scenario). */
volatile int counting;
unsigned long long nallocs;
int sl_bench_inference(double seconds);

void *__wrap_malloc(size_t n) {
  if (counting)
    nallocs++;
  return __real_malloc(n);
}
void *__wrap_calloc(size_t a, size_t b) {
  if (counting)
    nallocs++;
  return __real_calloc(a, b);
}
void *__wrap_realloc(void *p, size_t n) {
  if (counting)
    nallocs++;
  return __real_realloc(p, n);
}
void __wrap_free(void *p) {
  __real_free(p);
}

/* ---- input ------------------------------------------------------------- */

/* A deep copy of generated events: the generator reuses one struct. */
typedef struct evcopy {
  Sluice__V1__Event ev;
  Sluice__V1__Reading rd;
  Sluice__V1__Attribute attr[4];
  Sluice__V1__Attribute *attrp[4];
  char seq[16];
} evcopy_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static unsigned long long state_bytes, state_records;
static int count_put(void *arg, const void *key, size_t klen, const void *val,
                     size_t vlen) {
  (void)arg;
  (void)key;
  state_bytes += klen + vlen;
  state_records++;
  return 0;
}

#define SOURCES 500
#define POOL 200000 /* 400 s of event time */
#define BATCH 1000

int main(int argc, char **argv) {
  double seconds = 5;
  const char *scenario = "readings";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--scenario") && i + 1 < argc)
      scenario = argv[++i];
    else {
      fprintf(stderr, "usage: sl_bench_pipeline [--seconds S] [--scenario "
                      "readings|inference]\n");
      return 2;
    }
  }
  if (!strcmp(scenario, "inference"))
    return sl_bench_inference(seconds);
  if (strcmp(scenario, "readings")) {
    fprintf(stderr, "unknown scenario %s\n", scenario);
    return 2;
  }
  static evcopy_t pool[POOL];
  static const Sluice__V1__Event *ptrs[POOL];
  sl_gen_t g;
  const int64_t period = 1000000000LL / SOURCES; /* 1/s per source */
  if (sl_gen_init(&g, SOURCES, 7, 1700000000LL * 1000000000LL, period))
    return 1;
  for (size_t i = 0; i < POOL; i++) {
    const Sluice__V1__Event *e = sl_gen_next(&g);
    evcopy_t *c = &pool[i];
    c->ev = *e;
    c->rd = *e->reading;
    c->ev.reading = &c->rd;
    snprintf(c->seq, sizeof(c->seq), "%s", e->attributes[0]->value);
    for (int k = 0; k < 4; k++) {
      c->attr[k] = *e->attributes[k];
      c->attrp[k] = &c->attr[k];
    }
    c->attr[0].value = c->seq;
    c->ev.attributes = c->attrp;
    ptrs[i] = &c->ev;
  }
  const int64_t span = (int64_t)POOL * period;

  /* ---- pipelines ---- */
  sl_process_t *pr;
  char err[256];
  /* Drop bad quality and analogue values outside the plausible range
   * (string and counter readings compare false, so they stay). */
  const char *filter = "quality == \"bad\" or value < -1e4 or value > 1e5";
  sl_process_step_conf_t raw[] = {
      {.kind = SL_PROCESS_FILTER, .expr = filter, .action = SL_PROCESS_DROP},
      {.kind = SL_PROCESS_DEADBAND,
       .deadband = 0.5,
       .heartbeat_ns = 60000000000LL}};
  sl_process_step_conf_t sum[] = {
      {.kind = SL_PROCESS_FILTER, .expr = filter, .action = SL_PROCESS_DROP},
      {.kind = SL_PROCESS_AGGREGATE,
       .window_ns = 10000000000LL,
       .funcs = SL_PROCESS_AGG_COUNT | SL_PROCESS_AGG_MEAN |
                SL_PROCESS_AGG_MIN | SL_PROCESS_AGG_MAX | SL_PROCESS_AGG_STDDEV,
       .into = "plc-10s",
       .keep_raw = true}};
  sl_process_pipeline_conf_t pcs[] = {
      {.name = "raw", .stream = "plc", .steps = raw, .n_steps = 2},
      {.name = "summary", .stream = "plc", .steps = sum, .n_steps = 2}};
  if (sl_process_new(&pr))
    return 1;
  for (size_t i = 0; i < 2; i++) {
    if (sl_process_pipeline_add(pr, &pcs[i], err, sizeof(err))) {
      fprintf(stderr, "pipeline: %s\n", err);
      return 1;
    }
  }

  /* ---- baseline: read value, hash source ---- */
  double t0 = now_s();
  uint64_t acc = 0;
  size_t base_n = 0;
  while (now_s() - t0 < SL_MIN(seconds / 5, 1.0)) {
    for (size_t i = 0; i < POOL; i++) {
      const Sluice__V1__Event *e = ptrs[i];
      acc += XXH3_64bits(e->source, strlen(e->source)) ^
             (uint64_t)e->reading->double_value;
    }
    base_n += POOL;
  }
  double base_rate = (double)base_n / (now_s() - t0);
  fprintf(stderr, "baseline scan: %.0f events/s (%llu)\n", base_rate,
          (unsigned long long)(acc & 1));

  /* ---- warm-up pass (tables and buffers grow here), then timed ---- */
  unsigned long long in = 0, kept = 0, emitted = 0, batches = 0;
  double elapsed = 0, cpu = 0;
  int pass = 0;
  for (;; pass++) {
    if (pass > 0) {
      for (size_t i = 0; i < POOL; i++)
        pool[i].ev.time_ns += span;
    }
    bool timed = pass > 0;
    double c0 = cpu_s(), w0 = now_s();
    counting = timed;
    for (size_t i = 0; i < POOL; i += BATCH) {
      sl_process_result_t res;
      if (sl_process_run(pr, "plc", ptrs + i, BATCH, &res)) {
        fprintf(stderr, "run failed\n");
        return 1;
      }
      if (sl_process_state_put(pr, count_put, NULL))
        return 1;
      sl_process_commit(pr);
      if (timed) {
        in += res.n;
        kept += res.kept;
        emitted += res.nemit;
        batches++;
      }
    }
    counting = 0;
    if (timed) {
      elapsed += now_s() - w0;
      cpu += cpu_s() - c0;
      fprintf(stderr, "pass %d: %.0f readings/s\n", pass, (double)in / elapsed);
    } else {
      state_bytes = state_records = 0;
    }
    if (timed && elapsed >= seconds)
      break;
  }
  double rate = (double)in / elapsed;
  sl_process_stats_t st[2];
  sl_process_stats(pr, 0, &st[0]);
  sl_process_stats(pr, 1, &st[1]);
  printf("{\"scenario\":\"pipeline\",\"sources\":%d,\"batch\":%d,"
         "\"readings_per_s\":%.0f,\"ns_per_reading\":%.1f,"
         "\"cpu_s_per_million\":%.3f,\"allocs_per_event\":%.6f,"
         "\"allocs\":%llu,\"events_in\":%llu,\"events_kept\":%llu,"
         "\"results_emitted\":%llu,\"reduction_ratio\":%.2f,"
         "\"dropped_filter\":%llu,\"dropped_deadband\":%llu,"
         "\"state_bytes_per_batch\":%.0f,\"state_records_per_batch\":%.1f,"
         "\"baseline_scan_per_s\":%.0f,\"ratio_to_baseline\":%.3f}\n",
         SOURCES, BATCH, rate, 1e9 / rate, cpu / ((double)in / 1e6),
         (double)nallocs / (double)in, nallocs, in, kept, emitted,
         (double)in / (double)(kept + emitted),
         (unsigned long long)st[0].dropped[SL_PROCESS_R_FILTER],
         (unsigned long long)st[0].dropped[SL_PROCESS_R_DEADBAND],
         (double)state_bytes / (double)batches,
         (double)state_records / (double)batches, base_rate, rate / base_rate);
  sl_process_free(pr);
  sl_gen_close(&g);
  return 0;
}
