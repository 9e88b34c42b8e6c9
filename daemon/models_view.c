/*
 * daemon/models_view.c: what the apps, the admin server and the metrics see
 * of the model host (daemon/models.c): the retained MQTT announcement
 * (published on the loop, retried until the publish link takes it), the
 * JSON snapshot of GET /v1/models and /v1/status, acknowledgements queued
 * for the models thread, the counters.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "daemon/models_int.h"
#include "telemetry/log.h"

void models__announce(void *o, const char *model, const char *version,
                      const char *sha, const char *path) {
  sl_models_t *ms = o;
  json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "model", model, "version",
                        version, "sha256", sha, "path", path);
  char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!txt)
    return;
  sl_info(SL_LOG_CTX_CONFIG, model, "models: active version %s",
          *version ? version : "(none)");
  pthread_mutex_lock(&ms->lock);
  size_t i;
  char topic[300];
  snprintf(topic, sizeof(topic), "sluice/models/%s/active", model);
  for (i = 0; i < ms->nann; i++)
    if (!strcmp(ms->ann[i].topic, topic))
      break;
  if (i == ms->nann && ms->nann < MAX_MODELS)
    snprintf(ms->ann[ms->nann++].topic, sizeof(topic), "%s", topic);
  if (i < MAX_MODELS) {
    free(ms->ann[i].payload);
    ms->ann[i].payload = txt; /* the newest wins: it is retained */
  } else {
    free(txt);
  }
  pthread_mutex_unlock(&ms->lock);
  if (ms->handles_open)
    uv_async_send(&ms->wake);
}

void models__snapshot(sl_models_t *ms) {
  json_t *arr = json_array();
  char *txt;
  for (size_t i = 0; i < ms->nents; i++) {
    sl_model_info_t in;
    char path[1024];
    if (!ms->ents[i].m)
      continue;
    sl_model_info(ms->ents[i].m, &in);
    sl_model_active_path(ms->ents[i].m, path, sizeof(path));
    json_array_append_new(
        arr,
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, "
                  "s:I, s:I, s:b, s:I, s:I}",
                  "name", ms->ents[i].name, "phase",
                  sl_model_phase_name(in.phase), "reason", in.reason, "message",
                  in.message, "active_version", in.active_version,
                  "active_sha256", in.active_sha256, "path", path,
                  "previous_version", in.previous_version, "previous_sha256",
                  in.previous_sha256, "pending_version", in.pending_version,
                  "chunks_have", (json_int_t)in.chunks_have, "chunks_total",
                  (json_int_t)in.chunks_total, "bytes_fetched",
                  (json_int_t)in.bytes_fetched, "acked", in.acked,
                  "gate_windows", (json_int_t)in.gate_windows, "gate_events",
                  (json_int_t)in.gate_events));
  }
  txt = json_dumps(arr, JSON_COMPACT);
  json_decref(arr);
  pthread_mutex_lock(&ms->lock);
  free(ms->snap);
  ms->snap = txt;
  pthread_mutex_unlock(&ms->lock);
}

void models__counters(sl_models_t *ms) {
  uint64_t n[5] = {0};
  sl_metric_t *mt[5] = {ms->m_activations, ms->m_commits, ms->m_rollbacks,
                        ms->m_rejections, NULL};
  for (size_t i = 0; i < ms->nents; i++) {
    sl_model_info_t in;
    if (!ms->ents[i].m)
      continue;
    sl_model_info(ms->ents[i].m, &in);
    n[0] += in.n_activated;
    n[1] += in.n_committed;
    n[2] += in.n_rolled_back;
    n[3] += in.n_rejected;
  }
  for (int k = 0; k < 4; k++) {
    if (n[k] > ms->last_n[k])
      sl_metric_add(mt[k], n[k] - ms->last_n[k]);
    ms->last_n[k] = n[k];
  }
}

static void publish_pending(sl_models_t *ms) {
  sl_mqtt_t *mq = ms->dm->in.mqtt;
  if (!mq)
    return;
  pthread_mutex_lock(&ms->lock);
  for (size_t i = 0; i < ms->nann; i++) {
    announce_t *a = &ms->ann[i];
    if (a->payload && sl_mqtt_publish_retained(mq, a->topic, a->payload,
                                               strlen(a->payload)) == 0) {
      free(a->payload);
      a->payload = NULL;
    }
  }
  pthread_mutex_unlock(&ms->lock);
}

void models__on_wake(uv_async_t *h) {
  publish_pending(h->data);
}

void models__on_timer(uv_timer_t *h) {
  sl_models_t *ms = h->data;
  int connected = 0;
  uint64_t backlog = 0;
  int st = sl_uplink_health(ms->dm, &connected, &backlog);
  atomic_store(&ms->slow, st >= 0 && connected && backlog > 0);
  publish_pending(ms);
}

char *models__admin_list(void *o) {
  sl_models_t *ms = o;
  char *txt;
  pthread_mutex_lock(&ms->lock);
  txt = strdup(ms->snap ? ms->snap : "[]");
  pthread_mutex_unlock(&ms->lock);
  return txt;
}

int models__admin_ack(void *o, const char *name, const char *version, int ok,
                      const char *message) {
  sl_models_t *ms = o;
  ack_t *a = calloc(1, sizeof(*a));
  if (!a)
    return -ENOMEM;
  snprintf(a->name, sizeof(a->name), "%s", name);
  snprintf(a->version, sizeof(a->version), "%s", version);
  snprintf(a->message, sizeof(a->message), "%s", message ? message : "");
  a->ok = ok;
  pthread_mutex_lock(&ms->lock);
  a->next = ms->acks;
  ms->acks = a;
  pthread_mutex_unlock(&ms->lock);
  return 0;
}

void sl_models_status(sl_daemon_t *dm, json_t *root) {
  sl_models_t *ms = dm->models;
  json_t *arr;
  if (!ms)
    return;
  pthread_mutex_lock(&ms->lock);
  arr = json_loads(ms->snap ? ms->snap : "[]", 0, NULL);
  pthread_mutex_unlock(&ms->lock);
  if (arr)
    json_object_set_new(root, "models", arr);
}
