/*
 * The inference scenario of sl_bench_pipeline (--scenario inference):
 * detector results of 64 cameras at 30 frames/s of event time, 5
 * detections each, through the model_aggregate step (10 s windows, learnt
 * PSI reference) in process, no network, no store. A canary version runs
 * on one frame in 4 of each camera (same sequence number, so agreement is
 * computed). As in the readings scenario every batch (1000 events) hands
 * its dirty state to a counting callback, allocations are counted through
 * the linker's --wrap (bench_pipeline.c) during the timed passes only, and
 * it runs on one core (run.sh pins it).
 *
 * Output: one JSON object with inference_events_per_s, allocs_per_event.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "process/process.h"

extern volatile int counting;
extern unsigned long long nallocs;
int sl_bench_inference(double seconds);

#define CAMS 64
#define DETS 5
#define POOL 192000 /* 100 s of event time */
#define BATCH 1000

typedef struct iev {
  Sluice__V1__Event ev;
  Sluice__V1__Inference in;
  Sluice__V1__Detection det[DETS], *detp[DETS];
} iev_t;

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

static unsigned long long state_bytes;
static int count_put(void *arg, const void *key, size_t klen, const void *val,
                     size_t vlen) {
  (void)arg;
  (void)key;
  state_bytes += klen + vlen;
  return 0;
}

static uint64_t rng = 88172645463325252ull;
static double frand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

int sl_bench_inference(double seconds) {
  static iev_t pool[POOL];
  static const Sluice__V1__Event *ptrs[POOL];
  static char names[CAMS][16];
  const int64_t t0 = 1700000000LL * 1000000000LL, frame = 1000000000LL / 30;
  uint64_t seq[CAMS] = {0};
  int64_t t = t0;
  for (int c = 0; c < CAMS; c++)
    snprintf(names[c], sizeof(names[c]), "cam%02d", c);
  for (size_t i = 0; i < POOL; i++) {
    iev_t *e = &pool[i];
    int c = (int)(i % CAMS);
    sluice__v1__event__init(&e->ev);
    sluice__v1__inference__init(&e->in);
    e->ev.source = names[c];
    e->ev.body_case = SLUICE__V1__EVENT__BODY_INFERENCE;
    e->ev.inference = &e->in;
    e->in.model = (char *)"yolov8n";
    e->in.task = SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_DETECT;
    e->in.status = SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_OK;
    e->in.latency_us = (uint32_t)(4000 + 3000 * frand());
    e->in.queue_us = (uint32_t)(200 * frand());
    for (int k = 0; k < DETS; k++) {
      sluice__v1__detection__init(&e->det[k]);
      e->det[k].label_id = (uint32_t)(frand() * 12);
      e->det[k].score = (float)(0.3 + 0.7 * frand());
      e->det[k].x = e->det[k].y = (float)(0.8 * frand());
      e->det[k].w = e->det[k].h = 0.1f;
      e->detp[k] = &e->det[k];
    }
    e->in.n_detections = DETS;
    e->in.detections = e->detp;
    /* Cameras in turn; every 5th round is the canary's results for the
     * frames of the round before (a canary on 1 frame in 4). */
    size_t round = i / CAMS;
    if (round % 5 == 4) {
      /* the canary's round: same frames as the round before */
      const iev_t *p = &pool[i - CAMS];
      e->ev.time_ns = p->ev.time_ns;
      e->in.sequence = p->in.sequence;
      e->in.model_version = (char *)"8.2";
      e->in.role = SLUICE__V1__INFERENCE_ROLE__INFERENCE_ROLE_CANARY;
    } else {
      if (c == 0)
        t += frame;
      e->ev.time_ns = t;
      e->in.sequence = seq[c]++;
      e->in.model_version = (char *)"8.1";
      e->in.role = SLUICE__V1__INFERENCE_ROLE__INFERENCE_ROLE_PRIMARY;
    }
    ptrs[i] = &e->ev;
  }
  const int64_t span = t - t0 + frame;

  sl_process_t *pr;
  char err[256];
  sl_process_step_conf_t steps[] = {{.kind = SL_PROCESS_MODEL_AGG,
                                     .window_ns = 10000000000LL,
                                     .into = "vision-models",
                                     .reference_windows = 1,
                                     .max_keys = 256}};
  sl_process_pipeline_conf_t pc = {.name = "models",
                                   .stream = "vision",
                                   .kinds = SL_PROCESS_KIND_INFERENCE,
                                   .steps = steps,
                                   .n_steps = 1};
  if (sl_process_new(&pr) ||
      sl_process_pipeline_add(pr, &pc, err, sizeof(err))) {
    fprintf(stderr, "pipeline: %s\n", err);
    return 1;
  }
  unsigned long long in = 0, emitted = 0, batches = 0;
  double elapsed = 0, cpu = 0;
  for (int pass = 0;; pass++) {
    if (pass > 0)
      for (size_t i = 0; i < POOL; i++)
        pool[i].ev.time_ns += span;
    bool timed = pass > 0;
    double c0 = cpu_s(), w0 = now_s();
    counting = timed;
    for (size_t i = 0; i < POOL; i += BATCH) {
      sl_process_result_t res;
      if (sl_process_run(pr, "vision", ptrs + i, BATCH, &res) ||
          sl_process_state_put(pr, count_put, NULL)) {
        fprintf(stderr, "run failed\n");
        return 1;
      }
      sl_process_commit(pr);
      if (timed) {
        in += res.n;
        emitted += res.nemit;
        batches++;
      }
    }
    counting = 0;
    if (timed) {
      elapsed += now_s() - w0;
      cpu += cpu_s() - c0;
      fprintf(stderr, "pass %d: %.0f inference events/s\n", pass,
              (double)in / elapsed);
    } else {
      state_bytes = 0;
    }
    if (timed && elapsed >= seconds)
      break;
  }
  sl_process_stats_t st;
  sl_process_stats(pr, 0, &st);
  double rate = (double)in / elapsed;
  printf("{\"scenario\":\"inference\",\"cameras\":%d,"
         "\"detections_per_event\":%d,\"batch\":%d,"
         "\"inference_events_per_s\":%.0f,\"ns_per_event\":%.1f,"
         "\"cpu_s_per_million\":%.3f,\"allocs_per_event\":%.6f,"
         "\"allocs\":%llu,\"events_in\":%llu,\"aggregates_emitted\":%llu,"
         "\"partial_windows\":%llu,\"keys\":%llu,"
         "\"state_bytes_per_batch\":%.0f}\n",
         CAMS, DETS, BATCH, rate, 1e9 / rate, cpu / ((double)in / 1e6),
         (double)nallocs / (double)in, nallocs, in, emitted,
         (unsigned long long)st.partial, (unsigned long long)st.keys,
         (double)state_bytes / (double)batches);
  sl_process_free(pr);
  return 0;
}
