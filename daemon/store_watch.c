/*
 * store_watch.c: what the store reports but never logs (store/store.h),
 * turned into log lines, metrics and /v1/status fields: wall clock steps
 * seen by the store clock (issue 26), how the store clock crossed the last
 * stop, and events that left the store undelivered (TTL, budget policies,
 * corruption), per stream and reason.
 *
 * Threads: start, tick and free run on the loop thread; status runs on the
 * admin thread and reads only the info it is given and thread-safe store
 * calls.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "daemon/daemon.h"
#include "telemetry/log.h"

struct sl_storewatch {
  uint64_t steps[2];       /* forward, backward: last seen */
  sl_metric_t *steps_m[2]; /* sluice_store_clock_steps_total */
  sl_metric_t *last_step;  /* signed seconds */
  sl_metric_t *offset;     /* wall - store, seconds */
  uint64_t *evicted;       /* [stream][reason]: last seen */
  sl_metric_t **evicted_m; /* sluice_store_evicted_events_total */
  size_t nstreams;
};

static const char *const open_names[] = {"new", "boot", "wall", "held"};

static const char *open_name(sl_store_clock_open_t o) {
  return (unsigned)o < 4 ? open_names[o] : "unknown";
}

static double secs(int64_t ns) {
  return (double)ns / 1e9;
}

void sl_storewatch_start(sl_daemon_t *dm) {
  struct sl_storewatch *sw = calloc(1, sizeof(*sw));
  size_t n = dm->in.nstreams * SL_STORE_REASON_COUNT;
  sl_store_info_t info;

  if (!sw)
    return; /* optional: the store keeps counting, status still shows it */
  sw->nstreams = dm->in.nstreams;
  sw->evicted = calloc(n ? n : 1, sizeof(*sw->evicted));
  sw->evicted_m = calloc(n ? n : 1, sizeof(*sw->evicted_m));
  if (!sw->evicted || !sw->evicted_m) {
    free(sw->evicted);
    free(sw->evicted_m);
    free(sw);
    return;
  }
  sw->steps_m[0] = sl_metrics_counter(
      dm->in.mx, "sluice_store_clock_steps_total",
      "Wall clock steps the store clock did not follow, by direction",
      "direction=\"forward\"");
  sw->steps_m[1] = sl_metrics_counter(
      dm->in.mx, "sluice_store_clock_steps_total",
      "Wall clock steps the store clock did not follow, by direction",
      "direction=\"backward\"");
  sw->last_step = sl_metrics_gauge(
      dm->in.mx, "sluice_store_clock_last_step_seconds",
      "Size of the last wall clock step, signed (0: none seen)", NULL);
  sw->offset = sl_metrics_gauge(
      dm->in.mx, "sluice_store_clock_offset_seconds",
      "Wall clock minus store clock: the sum of the steps", NULL);
  for (size_t i = 0; i < dm->in.nstreams; i++) {
    sl_store_stream_stats_t ss;
    char esc[256], labels[400];
    int have = sl_store_stream_stats(dm->in.st, dm->in.streams[i].id, &ss) == 0;
    sl_metrics_escape(esc, sizeof(esc), dm->in.streams[i].name);
    for (int r = 0; r < SL_STORE_REASON_COUNT; r++) {
      snprintf(labels, sizeof(labels), "stream=\"%s\",reason=\"%s\"", esc,
               sl_store_reason_name((sl_store_reason_t)r));
      sw->evicted_m[i * SL_STORE_REASON_COUNT + (size_t)r] = sl_metrics_counter(
          dm->in.mx, "sluice_store_evicted_events_total",
          "Events that left the store undelivered (a gap record each), by "
          "stream and reason",
          labels);
      sw->evicted[i * SL_STORE_REASON_COUNT + (size_t)r] =
          have ? ss.evicted_events[r] : 0;
    }
  }
  dm->swatch = sw;

  /* How the store clock crossed the last stop, once. */
  sl_store_env_info(dm->in.st, &info);
  if (info.clock.open == SL_STORE_CLOCK_WALL)
    sl_info(SL_LOG_CTX_STORE, NULL,
            "store clock: %.1f s credited for the time stopped, by the wall "
            "clock (after a reboot the boot clock cannot tell)",
            secs(info.clock.stopped_ns));
  else if (info.clock.open == SL_STORE_CLOCK_HELD)
    sl_warn(SL_LOG_CTX_STORE, NULL,
            "store clock: held across the stop (after a reboot the wall clock "
            "reads earlier than at the last commit): TTL ages resume from "
            "where they were");
}

void sl_storewatch_tick(sl_daemon_t *dm, const sl_store_info_t *info) {
  struct sl_storewatch *sw = dm->swatch;
  const sl_store_clock_info_t *c = &info->clock;
  uint64_t now[2] = {c->steps_forward, c->steps_backward};

  if (!sw)
    return;
  for (int d = 0; d < 2; d++) {
    if (now[d] <= sw->steps[d])
      continue;
    sl_metric_add(sw->steps_m[d], now[d] - sw->steps[d]);
    /* One line per tick that saw steps: the last one, and how many. */
    sl_warn(SL_LOG_CTX_STORE, NULL,
            "wall clock stepped %s by %.3f s%s (%" PRIu64
            " new step(s)); the store clock did not follow: TTL ages by the "
            "store clock, nothing expires early or late; wall - store "
            "clock now %.3f s",
            d == 0 ? "forward" : "backward", secs(c->last_step_ns),
            c->last_step_stopped ? " while sluice was stopped" : "",
            now[d] - sw->steps[d], secs(c->offset_ns));
    sw->steps[d] = now[d];
  }
  sl_metric_set(sw->last_step, secs(c->last_step_ns));
  sl_metric_set(sw->offset, secs(c->offset_ns));

  for (size_t i = 0; i < sw->nstreams; i++) {
    sl_store_stream_stats_t ss;
    if (sl_store_stream_stats(dm->in.st, dm->in.streams[i].id, &ss) < 0)
      continue;
    for (int r = 0; r < SL_STORE_REASON_COUNT; r++) {
      uint64_t *seen = &sw->evicted[i * SL_STORE_REASON_COUNT + (size_t)r];
      if (ss.evicted_events[r] <= *seen)
        continue;
      sl_metric_add(sw->evicted_m[i * SL_STORE_REASON_COUNT + (size_t)r],
                    ss.evicted_events[r] - *seen);
      sl_warn(SL_LOG_CTX_STORE, NULL,
              "stream %s: %" PRIu64 " events left the store undelivered "
              "(%s); gap records name the offsets; %" PRIu64 " events stored",
              ss.name, ss.evicted_events[r] - *seen,
              sl_store_reason_name((sl_store_reason_t)r), ss.events);
      *seen = ss.evicted_events[r];
    }
  }
}

void sl_storewatch_status(sl_daemon_t *dm, json_t *root,
                          const sl_store_info_t *info) {
  const sl_store_clock_info_t *c = &info->clock;
  json_t *o = json_object(), *store = json_object_get(root, "store");
  json_t *streams = json_object_get(root, "streams");

  json_object_set_new(o, "store_ns", json_integer(c->store_ns));
  json_object_set_new(o, "wall_ns", json_integer(c->wall_ns));
  json_object_set_new(o, "offset_s", json_real(secs(c->offset_ns)));
  json_object_set_new(o, "steps_forward",
                      json_integer((json_int_t)c->steps_forward));
  json_object_set_new(o, "steps_backward",
                      json_integer((json_int_t)c->steps_backward));
  json_object_set_new(o, "last_step_s", json_real(secs(c->last_step_ns)));
  json_object_set_new(o, "last_step_at_ns", json_integer(c->last_step_at_ns));
  json_object_set_new(o, "last_step_while_stopped",
                      json_boolean(c->last_step_stopped));
  json_object_set_new(o, "open", json_string(open_name(c->open)));
  json_object_set_new(o, "stopped_s", json_real(secs(c->stopped_ns)));
  json_object_set_new(store ? store : root, "clock", o);

  /* Per stream: events that left undelivered, by reason. */
  for (size_t j = 0; j < json_array_size(streams); j++) {
    json_t *ev, *so = json_array_get(streams, j);
    const char *name = json_string_value(json_object_get(so, "name"));
    sl_store_stream_stats_t ss;
    uint32_t id;
    if (!name || sl_store_stream_lookup(dm->in.st, name, &id) < 0 ||
        sl_store_stream_stats(dm->in.st, id, &ss) < 0)
      continue;
    ev = json_object();
    for (int r = 0; r < SL_STORE_REASON_COUNT; r++)
      json_object_set_new(ev, sl_store_reason_name((sl_store_reason_t)r),
                          json_integer((json_int_t)ss.evicted_events[r]));
    json_object_set_new(so, "evicted", ev);
  }
}

void sl_storewatch_free(sl_daemon_t *dm) {
  struct sl_storewatch *sw = dm->swatch;

  if (!sw)
    return;
  free(sw->evicted);
  free(sw->evicted_m);
  free(sw);
  dm->swatch = NULL;
}
