/*
 * ingest/core.c: the ingest core (ingest/ingest.h): the completion mailbox
 * from the store's writer thread to the loop, the stream lookup and the
 * counters every path shares.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "ingest/ingest.h"

static const char *const path_names[SL_PATH_N] = {"native", "http", "mqtt"};

const char *sl_path_name(sl_path_t p) {
  return (unsigned)p < SL_PATH_N ? path_names[p] : "?";
}

/* ---- completions: writer thread -> loop -------------------------------- */

static void on_store_done(void *arg, int status, const uint64_t *offsets,
                          size_t n) {
  sl_done_t *d = arg;
  sl_ingest_t *ic = d->ic;
  d->status = status;
  d->first_offset = (status == 0 && offsets && n) ? offsets[0] : 0;
  sl_guard_store_result(&ic->guard, status);
  d->next = NULL;
  pthread_mutex_lock(&ic->done_lock);
  *ic->done_tail = d;
  ic->done_tail = &d->next;
  pthread_mutex_unlock(&ic->done_lock);
  uv_async_send(&ic->done_async);
}

static void on_done_async(uv_async_t *a) {
  sl_ingest_t *ic = a->data;
  sl_done_t *d;

  pthread_mutex_lock(&ic->done_lock);
  d = ic->done_head;
  ic->done_head = NULL;
  ic->done_tail = &ic->done_head;
  pthread_mutex_unlock(&ic->done_lock);
  while (d) {
    sl_done_t *next = d->next;
    ic->pending--;
    d->fn(d, d->status, d->first_offset);
    d = next;
  }
  if (ic->after_round) /* resumes paused paths, kicks the uplink */
    ic->after_round(ic->after_round_arg);
}

int sl_ingest_submit(sl_ingest_t *ic, sl_store_group_t *g, sl_done_t *d) {
  int rc;
  d->ic = ic;
  if ((rc = sl_store_group_submit(g, 0, on_store_done, d)) < 0)
    return rc;
  ic->pending++;
  return 0;
}

/* ---- streams and counters ---------------------------------------------- */

int sl_ingest_stream(sl_ingest_t *ic, const char *name, size_t *idx) {
  if (!name || !*name) {
    if (!ic->nstreams)
      return SL_ENOTFOUND;
    *idx = 0;
    return 0;
  }
  for (size_t i = 0; i < ic->nstreams; i++)
    if (!strcmp(ic->streams[i].name, name)) {
      *idx = i;
      return 0;
    }
  return SL_ENOTFOUND;
}

void sl_ingest_accepted(sl_ingest_t *ic, sl_path_t path, size_t idx,
                        uint32_t events, size_t bytes) {
  sl_dstream_t *s = &ic->streams[idx];
  __atomic_add_fetch(&ic->events_ok, events, __ATOMIC_RELAXED);
  sl_metric_add(s->events[path], events);
  sl_metric_add(s->bytes[path], bytes);
  sl_metric_add(s->batches[path], 1);
}

void sl_ingest_rejected(sl_ingest_t *ic, sl_path_t path, int err) {
  char labels[96];
  __atomic_add_fetch(&ic->refusals, 1, __ATOMIC_RELAXED);
  snprintf(labels, sizeof(labels), "path=\"%s\",reason=\"%s\"",
           path_names[path], sl_errname(err));
  sl_metric_add(sl_metrics_counter(ic->mx, "sluice_ingest_rejects_total",
                                   "Batches, requests or connections refused, "
                                   "by path and reason",
                                   labels),
                1);
}

void sl_ingest_rules(sl_ingest_t *ic, const sl_config_t *cfg, sl_path_t path,
                     sl_ingest_rules_t *r) {
  r->now_ns = sl_now_wall_ns();
  r->max_future_ns = (int64_t)SL_MIN(cfg->limits.max_future_ms,
                                     (uint64_t)INT64_MAX / 1000000) *
                     1000000;
  r->future_policy = cfg->limits.future_policy;
  r->clamped = ic->future[path][0];
  r->refused = ic->future[path][1];
}

/* ---- life cycle ---------------------------------------------------------- */

int sl_ingest_init(sl_ingest_t *ic, sl_metrics_t *mx) {
  char labels[48];
  int rc;
  ic->mx = mx;
  ic->done_tail = &ic->done_head;
  if ((rc = pthread_mutex_init(&ic->done_lock, NULL)) != 0)
    return -rc;
  ic->inited = 1;
  for (int p = 0; p < SL_PATH_N; p++) {
    snprintf(labels, sizeof(labels), "path=\"%s\"", path_names[p]);
    ic->pauses[p] = sl_metrics_counter(
        mx, "sluice_ingest_pauses_total",
        "Times a client was paused (in-flight limit, slow reader, store full)",
        labels);
    for (int a = 0; a < 2; a++) {
      snprintf(labels, sizeof(labels), "path=\"%s\",action=\"%s\"",
               path_names[p], a ? "refused" : "clamped");
      ic->future[p][a] = sl_metrics_counter(
          mx, "sluice_ingest_future_events_total",
          "Events timed beyond limits.max_future ahead of the node clock",
          labels);
    }
  }
  ic->connections =
      sl_metrics_gauge(mx, "sluice_ingest_connections",
                       "Open ingest connections", "path=\"native\"");
  ic->commit_latency = sl_metrics_histogram(
      mx, "sluice_store_commit_latency_seconds",
      "From submit to durable commit, per batch", NULL,
      sl_metrics_latency_buckets, sl_metrics_latency_nbuckets);
  return 0;
}

int sl_ingest_open(sl_ingest_t *ic, uv_loop_t *loop) {
  int rc;
  ic->loop = loop;
  ic->done_async.data = ic;
  if ((rc = uv_async_init(loop, &ic->done_async, on_done_async)) < 0)
    return rc;
  ic->opened = 1;
  return 0;
}

void sl_ingest_stream_metrics(sl_ingest_t *ic) {
  char labels[SL_STORE_NAME_MAX * 2 + 64], esc[SL_STORE_NAME_MAX * 2 + 1];
  for (size_t i = 0; i < ic->nstreams; i++) {
    sl_dstream_t *s = &ic->streams[i];
    sl_metrics_escape(esc, sizeof(esc), s->name);
    for (int p = 0; p < SL_PATH_N; p++) {
      snprintf(labels, sizeof(labels), "path=\"%s\",stream=\"%s\"",
               path_names[p], esc);
      s->events[p] = sl_metrics_counter(ic->mx, "sluice_ingest_events_total",
                                        "Events durably acknowledged", labels);
      s->bytes[p] = sl_metrics_counter(
          ic->mx, "sluice_ingest_bytes_total",
          "Serialized event bytes durably acknowledged", labels);
      s->batches[p] =
          sl_metrics_counter(ic->mx, "sluice_ingest_batches_total",
                             "Batches durably acknowledged", labels);
    }
  }
}

void sl_ingest_close(sl_ingest_t *ic) {
  if (ic->opened && !uv_is_closing((uv_handle_t *)&ic->done_async))
    uv_close((uv_handle_t *)&ic->done_async, NULL);
}

void sl_ingest_free(sl_ingest_t *ic) {
  for (size_t i = 0; i < ic->nstreams; i++)
    free(ic->streams[i].name);
  free(ic->streams);
  ic->streams = NULL;
  ic->nstreams = 0;
  if (ic->inited)
    pthread_mutex_destroy(&ic->done_lock);
  ic->inited = 0;
}

void sl_ingest_oip_map(const sl_config_oip_t *o, sl_oip_map_t *m) {
  memset(m, 0, sizeof(*m));
  m->model = o->model;
  m->model_version = o->model_version;
  m->model_digest = o->model_digest;
  m->output = o->output;
  m->task = o->task;
  m->labels = (const char *const *)o->labels.v;
  m->nlabels = o->labels.n;
  m->label_map_digest = o->label_map_digest;
  m->score_threshold = (float)o->score_threshold;
  m->top_k = (uint32_t)o->top_k;
  m->role = (uint32_t)o->role;
}
