/*
 * connectors/sim/sim.c: the simulator's config table and its run loop.
 *
 * Schedule. Event k of the run (sensor readings and inference results
 * together) is due at start + k / (rate + inference_rate); which of the two
 * it is depends on k alone, so a seed gives the same events at any speed
 * and over any output. The model rollout (sl_infer_upgrade()) happens
 * half-way: at count / 2 events when a count is set, else at half the
 * duration.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "connectors/common/conn.h"
#include "connectors/sim/gen.h"
#include "connectors/sim/sim_int.h"

static const char *const outputs[] = {"native", "http", "mqtt", NULL};
static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

#define CF(f) offsetof(sl_sim_config_t, f)
#define SZ(f) sizeof(((sl_sim_config_t *)0)->f)

static const sl_cy_opt_t sim_tab[] = {
    {"output", SL_CY_ENUM, CF(output), 0, 0, 0, outputs, "native", NULL,
     "native (C client library), http (POST /v1/events) or mqtt (JSON, QoS "
     "1)"},
    {"address", SL_CY_STR, CF(address), SZ(address), 0, 0, NULL,
     "127.0.0.1:7000", NULL,
     "native: host:port or unix:/path; http: the HTTP listener's host:port; "
     "mqtt: the broker's host:port"},
    {"token", SL_CY_STR, CF(token), SZ(token), 0, 0, NULL, "", NULL,
     "native listener token"},
    {"client_id", SL_CY_STR, CF(client_id), SZ(client_id), 0, 0, NULL,
     "sluice-sim", NULL, "client id (native and MQTT)"},
    {"stream", SL_CY_STR, CF(stream), SZ(stream), 0, 0, NULL, "readings", NULL,
     "stream of the sensor readings"},
    {"inference_stream", SL_CY_STR, CF(inference_stream), SZ(inference_stream),
     0, 0, NULL, "inference", NULL, "stream of the inference results"},
    {"topic_prefix", SL_CY_STR, CF(topic_prefix), SZ(topic_prefix), 0, 0, NULL,
     "sluice/sim", NULL, "MQTT topics: <topic_prefix>/<stream>/<source>"},
    {"sources", SL_CY_U32, CF(sources), 0, 0, 1000000, NULL, "100", NULL,
     "sensor sources (8 profiles in turn: temp, pressure, vibration, current, "
     "flow, speed, count, status)"},
    {"rate", SL_CY_DOUBLE, CF(rate), 0, 0, 1e8, NULL, "100", NULL,
     "sensor readings per second, all sources together"},
    {"inference_sources", SL_CY_U32, CF(inference_sources), 0, 0, 100000, NULL,
     "2", NULL, "model instances: cameras and presses in turn"},
    {"inference_rate", SL_CY_DOUBLE, CF(inference_rate), 0, 0, 1e7, NULL, "2",
     NULL, "inference results per second, all instances together"},
    {"count", SL_CY_U32, CF(count), 0, 0, 4e9, NULL, "0", NULL,
     "stop after this many events (0: no limit; count or duration is "
     "required)"},
    {"duration", SL_CY_DUR, CF(duration_ms), 0, 0, 2e9, NULL, "0", NULL,
     "stop after this long (0: no limit)"},
    {"seed", SL_CY_U32, CF(seed), 0, 0, 4e9, NULL, "1", NULL,
     "same seed and start_time, same events"},
    {"start_time", SL_CY_U32, CF(start_time), 0, 0, 4e9, NULL, "0", NULL,
     "time of the first event, Unix seconds (0: now)"},
    {"batch", SL_CY_U32, CF(batch), 0, 1, 100000, NULL, "500", NULL,
     "http: events per request"},
    {"flush_timeout", SL_CY_DUR, CF(flush_timeout_ms), 0, 0, 3600000, NULL,
     "30s", NULL, "at the end, how long to wait for acks"},
    {"log_level", SL_CY_ENUM, CF(log_level), 0, 0, 0, levels, "info", NULL,
     "error, warn, info or debug"},
};

void sl_sim_config_help(void *fp) {
  FILE *f = fp;
  for (size_t i = 0; i < SL_ARRAY_SIZE(sim_tab); i++)
    fprintf(f, "  --%-18s %s (default \"%s\")\n", sim_tab[i].name,
            sim_tab[i].doc, sim_tab[i].def);
}

int sl_sim_config_load(sl_sim_config_t *cfg, const char *path, int argc,
                       char **argv, char *errstr, size_t errlen) {
  char msg[300];
  sl_cy_t *cy = NULL;
  int rc;

  memset(cfg, 0, sizeof(*cfg));
  if (path) {
    if ((rc = sl_cy_open(&cy, path, errstr, errlen)))
      return rc;
    rc =
        sl_cy_map(cy, sl_cy_root(cy), "", sim_tab, SL_ARRAY_SIZE(sim_tab), cfg);
    sl_cy_close(cy);
    if (rc)
      return rc;
  } else {
    for (size_t i = 0; i < SL_ARRAY_SIZE(sim_tab); i++)
      sl_cy_parse_value(&sim_tab[i], sim_tab[i].def, cfg, msg, sizeof(msg));
  }
  /* Options override the file: "--key value" for every key. */
  for (int i = 0; i < argc; i++) {
    const sl_cy_opt_t *o;
    const char *k = argv[i];
    if (strncmp(k, "--", 2) ||
        !(o = sl_cy_find(sim_tab, SL_ARRAY_SIZE(sim_tab), k + 2))) {
      snprintf(errstr, errlen, "unknown option %s", k);
      return SL_ECONFIG;
    }
    /* Options may use dashes: --inference-rate. */
    if (i + 1 >= argc) {
      snprintf(errstr, errlen, "%s needs a value", k);
      return SL_ECONFIG;
    }
    if (sl_cy_parse_value(o, argv[++i], cfg, msg, sizeof(msg))) {
      snprintf(errstr, errlen, "%s: %s", k, msg);
      return SL_ECONFIG;
    }
  }
  if (!cfg->count && !cfg->duration_ms) {
    snprintf(errstr, errlen,
             "%s%sa run needs a bound: set count or duration (or both)",
             path ? path : "", path ? ": " : "");
    return SL_ECONFIG;
  }
  if (!cfg->sources && !cfg->inference_sources) {
    snprintf(errstr, errlen,
             "nothing to simulate: sources and "
             "inference_sources are both 0");
    return SL_ECONFIG;
  }
  if (!cfg->sources)
    cfg->rate = 0;
  if (!cfg->inference_sources)
    cfg->inference_rate = 0;
  return 0;
}

static uint64_t mono_ms(void) {
  return sl_now_mono_ns() / 1000000u;
}

static void sleep_until_ns(uint64_t t) {
  uint64_t now = sl_now_mono_ns();
  if (t > now) {
    uint64_t d = SL_MIN(t - now, 100000000u); /* wake for stops */
    struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
    nanosleep(&ts, NULL);
  }
}

int sl_sim_run(const sl_sim_config_t *cfg, volatile int *stop,
               sl_sim_stats_t *stats) {
  double total = cfg->rate + cfg->inference_rate;
  /* Share of inference in the schedule; with no rates at all (flat out),
   * the two in proportion to their source counts. */
  double share = total > 0 ? cfg->inference_rate / total
                 : cfg->inference_sources
                     ? (double)cfg->inference_sources /
                           (cfg->sources * 10.0 + cfg->inference_sources)
                     : 0;
  int64_t t0 = cfg->start_time ? (int64_t)cfg->start_time * 1000000000ll
                               : sl_now_wall_ns();
  uint64_t start = sl_now_mono_ns(), start_ms = mono_ms();
  sl_sim_out_t *out = NULL;
  sl_gen_t gen = {0};
  sl_infer_t inf = {0};
  int rc, upgraded = 0;
  uint64_t k = 0;

  memset(stats, 0, sizeof(*stats));
  if (share >= 1 && cfg->sources)
    share = 0.5;
  if ((cfg->sources &&
       (rc = sl_gen_init(&gen, cfg->sources, cfg->seed, t0,
                         cfg->rate > 0 ? (int64_t)(1e9 / cfg->rate)
                                       : 1000000))) ||
      (cfg->inference_sources &&
       (rc = sl_infer_init(&inf, cfg->inference_sources, cfg->seed, t0,
                           cfg->inference_rate > 0
                               ? (int64_t)(1e9 / cfg->inference_rate)
                               : 10000000))))
    goto out;
  if ((rc = sl_sim_out_new(cfg, stop, &out)))
    goto out;
  /* --duration also bounds a publish that waits for a daemon that is gone. */
  if (cfg->duration_ms)
    out->deadline_ns = start + cfg->duration_ms * 1000000ull;
  SL_CLOG(SL_CONN_LOG_INFO,
          "simulating %u sensor sources at %g/s and %u models at %g/s over "
          "%s to %s",
          cfg->sources, cfg->rate, cfg->inference_sources, cfg->inference_rate,
          cfg->output == SL_SIM_HTTP   ? "http"
          : cfg->output == SL_SIM_MQTT ? "mqtt"
                                       : "native",
          cfg->address);
  for (; !*stop; k++) {
    int is_inf;
    if (cfg->count && k >= cfg->count)
      break;
    if (cfg->duration_ms && mono_ms() - start_ms >= cfg->duration_ms)
      break;
    if (!upgraded && cfg->inference_sources &&
        (cfg->count ? k >= cfg->count / 2
                    : mono_ms() - start_ms >= cfg->duration_ms / 2)) {
      sl_infer_upgrade(&inf);
      upgraded = 1;
      SL_CLOG(SL_CONN_LOG_INFO, "model rollout: %s %s, %s %s",
              SL_INFER_CAMERA_MODEL, SL_INFER_CAMERA_V2, SL_INFER_PDM_MODEL,
              SL_INFER_PDM_V2);
    }
    if (total > 0) {
      uint64_t due = start + (uint64_t)((double)k * 1e9 / total);
      while (!*stop && sl_now_mono_ns() < due)
        sleep_until_ns(due);
      if (*stop)
        break;
    }
    is_inf = !cfg->sources || (share > 0 && floor((double)(k + 1) * share) >
                                                floor((double)k * share));
    if (is_inf) {
      rc = sl_sim_out_publish(out, cfg->inference_stream, sl_infer_next(&inf));
      stats->inference++;
    } else {
      rc = sl_sim_out_publish(out, cfg->stream, sl_gen_next(&gen));
      stats->readings++;
    }
    if (rc == SL_ECLOSED)
      break;
    if (rc) {
      SL_CLOG(SL_CONN_LOG_ERROR, "publish: %s", sl_strerror(rc));
      goto out;
    }
  }
  if ((rc = sl_sim_out_flush(out, (int)cfg->flush_timeout_ms)))
    SL_CLOG(SL_CONN_LOG_WARN, "flush: %s", sl_strerror(rc));
out:
  sl_sim_out_free(out, &stats->published, &stats->acked, &stats->failed);
  stats->gaps = gen.gaps;
  stats->seconds = (double)(sl_now_mono_ns() - start) / 1e9;
  sl_gen_close(&gen);
  sl_infer_close(&inf);
  if (!rc && (stats->failed || stats->acked != stats->published))
    rc = SL_ECLOSED;
  return rc;
}
