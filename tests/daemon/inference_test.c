/*
 * Inference results through the real daemon over HTTP (docs/EDGE-AI.md):
 *
 *   http  POST /v1/inference (inference JSON, ?source= for objects without
 *         one) into a stream with a model_aggregate pipeline: the raw
 *         results and the aggregate of the closed window are stored, a bad
 *         field is a 400 naming it, the old /v1/events path still works;
 *         an OIP v2 response (?format=oip&oip=PROFILE) is read with the
 *         profile's label map.
 *
 *   kill9 the same results posted with the daemon killed (-9) between two
 *         acknowledged requests: the stored aggregates are identical.
 *
 * inference_test SLUICE_BINARY http|kill9
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "process/process.h"
#include "store/store.h"
#include "tests/common/daemon_fixture.h"

typedef struct seen {
  int results, aggs, oip;
  uint64_t events, ok, empty, label7;
} seen_t;

static void read_all(const char *stream, seen_t *s) {
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  CHECK(store_cursor(stream, &st, &cur) == 0, "stream %s", stream);
  while (sl_store_cursor_next(cur, &rec) == 0) {
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b, "batch decodes");
    for (size_t i = 0; i < b->n_events; i++) {
      const Sluice__V1__Event *ev = b->events[i];
      if (ev->body_case == SLUICE__V1__EVENT__BODY_INFERENCE)
        s->results++;
      if (ev->body_case == SLUICE__V1__EVENT__BODY_INFERENCE &&
          !strcmp(ev->source, "cam2")) {
        const Sluice__V1__Inference *in = ev->inference;
        CHECK(!strcmp(in->model, "pets") && in->sequence == 12 &&
                  in->n_classes == 2 && in->classes[0]->label_id == 1 &&
                  !strcmp(in->classes[0]->label, "dog") &&
                  !strcmp(in->label_map_digest, "sha256:aa"),
              "OIP response stored as an inference event");
        s->oip++;
      }
      if (ev->body_case != SLUICE__V1__EVENT__BODY_RAW)
        continue;
      CHECK(!strcmp(ev->raw->content_type, SL_PROCESS_MA_CONTENT_TYPE),
            "content type %s", ev->raw->content_type);
      Sluice__V1__InferenceAggregate *a =
          sluice__v1__inference_aggregate__unpack(NULL, ev->raw->data.len,
                                                  ev->raw->data.data);
      CHECK(a && a->n_status_counts == 5, "aggregate decodes");
      s->aggs++;
      s->events += a->events;
      s->ok += a->status_counts[1];
      s->empty += a->status_counts[2];
      for (size_t k = 0; k < a->n_labels; k++)
        if (!a->labels[k]->other && a->labels[k]->label_id == 7)
          s->label7 += a->labels[k]->count;
      sluice__v1__inference_aggregate__free_unpacked(a, NULL);
    }
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
  store_cursor_close(st, cur);
}

SL_SCENARIO(http) {
  char buf[4096], body[2048];
  const char *json = "application/json";
  write_config_streams("  - name: inference\n  - name: models\n",
                       "pipelines:\n  - name: ai\n"
                       "    match: {stream: inference, kinds: [inference]}\n"
                       "    steps:\n      - model_aggregate: true\n"
                       "        window: 10s\n        into: models\n"
                       "        keep_raw: true\n"
                       "oip:\n  - name: pets\n    model: pets-cfg\n"
                       "    labels: [cat, dog, fox]\n    top_k: 2\n"
                       "    label_map_digest: sha256:aa\n");
  pid_t pid = start_daemon(NULL);
  long long w0 = ((long long)time(NULL) - 600) / 10 * 10 * 1000000000LL;
  /* Four results in one window (JSON lines), then one that closes it. */
  int n = 0;
  for (int i = 0; i < 4; i++)
    n += snprintf(body + n, sizeof(body) - (size_t)n,
                  "{\"model\":\"det\",\"model_version\":\"3\",\"sequence\":%d,"
                  "\"capture_time_ns\":%lld,%s}\n",
                  i, w0 + i * 1000000000LL,
                  i < 3 ? "\"detections\":[{\"label_id\":7,\"score\":0.8}]"
                        : "\"status\":\"empty\"");
  int code =
      http_req(http_port, "POST", "/v1/inference?stream=inference&source=cam1",
               json, body, NULL, buf, sizeof(buf));
  CHECK(code == 200 && strstr(buf, "\"count\":4"), "POST results: %d %s", code,
        buf);
  snprintf(body, sizeof(body),
           "{\"source\":\"cam1\",\"model\":\"det\",\"model_version\":\"3\","
           "\"time_ns\":%lld,\"status\":\"empty\"}",
           w0 + 20000000000LL);
  code = http_req(http_port, "POST", "/v1/inference?stream=inference", json,
                  body, NULL, buf, sizeof(buf));
  CHECK(code == 200, "POST closing result: %d %s", code, buf);
  code = http_req(http_port, "POST", "/v1/inference?stream=inference", json,
                  "{\"model\":\"det\"}", NULL, buf, sizeof(buf));
  CHECK(code == 400 && strstr(buf, "source"), "no source: %d %s", code, buf);
  code = http_req(http_port, "POST", "/v1/inference?stream=inference", json,
                  "{\"source\":\"c\",\"model\":\"det\",\"role\":\"boss\"}",
                  NULL, buf, sizeof(buf));
  CHECK(code == 400 && strstr(buf, "role"), "bad role: %d %s", code, buf);
  code = http_req(http_port, "POST", "/v1/events?stream=inference", json,
                  "{\"source\":\"c\",\"inference\":{\"model\":\"old\"}}", NULL,
                  buf, sizeof(buf));
  CHECK(code == 200, "old inference shape on /v1/events: %d %s", code, buf);
  /* An OIP v2 response as KServe sends it, read with profile pets. */
  code = http_req(http_port, "POST",
                  "/v1/inference?stream=inference&format=oip&oip=pets&"
                  "source=cam2",
                  json,
                  "{\"model_name\":\"pets\",\"id\":\"12\",\"outputs\":[{"
                  "\"name\":\"p\",\"shape\":[1,3],\"datatype\":\"FP32\","
                  "\"data\":[0.1,0.7,0.2]}]}",
                  NULL, buf, sizeof(buf));
  CHECK(code == 200 && strstr(buf, "\"count\":1"), "POST oip: %d %s", code,
        buf);
  code = http_req(http_port, "POST",
                  "/v1/inference?format=oip&oip=nope&source=cam2", json, "{}",
                  NULL, buf, sizeof(buf));
  CHECK(code == 400 && strstr(buf, "nope"), "unknown profile: %d %s", code,
        buf);
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  seen_t s = {0};
  read_all("inference", &s);
  read_all("models", &s);
  CHECK(s.results == 7 && s.oip == 1,
        "%d raw results stored (want 7), %d from OIP (want 1)", s.results,
        s.oip);
  /* Two windows of (det, 3, primary, cam1) closed: the first by the
   * closing result, the second by the old-shaped event stamped now (the
   * step's watermark is the largest event time it has seen). */
  CHECK(s.aggs == 2 && s.events == 5 && s.ok == 3 && s.empty == 2 &&
            s.label7 == 3,
        "aggregates %d: events %llu ok %llu empty %llu label7 %llu (want 2: "
        "5 3 2 3)",
        s.aggs, (unsigned long long)s.events, (unsigned long long)s.ok,
        (unsigned long long)s.empty, (unsigned long long)s.label7);
  printf("http: 5 inference results over POST /v1/inference, two windows "
         "aggregated, bad fields refused with 400\n");
}

/* ---- kill -9 ----------------------------------------------------------- */

#define K_REQS 24 /* requests of 20 results: 2 cameras, 10 s windows */

/* The packed aggregates of a stream, one line each, sorted. */
static size_t agg_lines(const char *stream, char lines[][64], size_t cap) {
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  size_t n = 0;
  CHECK(store_cursor(stream, &st, &cur) == 0, "stream %s", stream);
  while (sl_store_cursor_next(cur, &rec) == 0) {
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b, "batch decodes");
    for (size_t i = 0; i < b->n_events && n < cap; i++) {
      const Sluice__V1__Event *ev = b->events[i];
      uint64_t h = 1469598103934665603ull;
      for (size_t j = 0; j < ev->raw->data.len; j++)
        h = (h ^ ev->raw->data.data[j]) * 1099511628211ull;
      snprintf(lines[n++], 64, "%s %lld %016llx", ev->source,
               (long long)ev->time_ns, (unsigned long long)h);
    }
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
  store_cursor_close(st, cur);
  qsort(lines, n, 64, (int (*)(const void *, const void *))strcmp);
  return n;
}

/* Posts request r of the input: 20 results of cam0/cam1, 1 s apart. */
static void post_req(int r, long long w0) {
  char body[8192], buf[1024];
  int n = 0;
  for (int i = 0; i < 20; i++) {
    int k = r * 20 + i;
    n += snprintf(body + n, sizeof(body) - (size_t)n,
                  "{\"source\":\"cam%d\",\"model\":\"det\",\"model_version\":"
                  "\"%s\",\"role\":\"%s\",\"sequence\":%d,\"time_ns\":%lld,"
                  "\"latency_us\":%d,\"detections\":[{\"label_id\":%d,"
                  "\"score\":0.%d}]}\n",
                  k % 2, k % 3 ? "1" : "2", k % 3 ? "primary" : "canary", k / 2,
                  w0 + (long long)(k / 2) * 1000000000LL,
                  1000 + (k * 37) % 5000, k % 5, 10 + (k * 7) % 89);
  }
  int code = http_req(http_port, "POST", "/v1/inference?stream=inference",
                      "application/json", body, NULL, buf, sizeof(buf));
  CHECK(code == 200, "request %d: %d %s", r, code, buf);
}

static size_t kill_run(const char *sub, int kill_after, long long w0,
                       char lines[][64]) {
  snprintf(data_dir, sizeof(data_dir), "%s/%s", dir, sub);
  write_config_streams("  - name: inference\n  - name: models\n",
                       "pipelines:\n  - name: ai\n"
                       "    match: {stream: inference, kinds: [inference]}\n"
                       "    steps:\n      - model_aggregate: true\n"
                       "        window: 10s\n        into: models\n");
  pid_t pid = start_daemon(NULL);
  for (int r = 0; r < K_REQS; r++) {
    if (r == kill_after) {
      int st;
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      daemon_pid = 0;
      pid = start_daemon(NULL);
    }
    post_req(r, w0);
  }
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  return agg_lines("models", lines, 256);
}

/* The same results with the daemon killed (-9) between two acknowledged
 * requests, in the middle of open windows: the stored aggregates are the
 * uninterrupted run's (the state committed with each request's events). */
SL_SCENARIO(kill9) {
  static char a[256][64], b[256][64];
  /* One input for both runs (event times an hour ago). */
  long long w0 = ((long long)time(NULL) - 3600) / 10 * 10 * 1000000000LL;
  size_t na = kill_run("data-a", -1, w0, a);
  size_t nb = kill_run("data-b", 13, w0, b);
  CHECK(na >= 80 && na < 256, "%zu aggregates (want 80..255)", na);
  CHECK(na == nb, "%zu aggregates, %zu after kill -9", na, nb);
  for (size_t i = 0; i < na; i++)
    CHECK(!strcmp(a[i], b[i]), "aggregate %zu differs: %s | %s", i, a[i], b[i]);
  printf("kill9: %zu aggregates identical after kill -9\n", na);
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "inference", NULL, NULL);
}
