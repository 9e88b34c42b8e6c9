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
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "config/cfg.h"
#include "connectors/common/conn.h"
#include "connectors/sim/gen.h"
#include "connectors/sim/sim_int.h"

static const char *const outputs[] = {"native", "http", "mqtt", NULL};
static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

#define ROW(key, ty, f, d, fl, doc, ...)                                       \
  {                                                                            \
    .name = key, .type = SL_CFG_##ty, .off = offsetof(sl_sim_config_t, f),     \
    .def = d, .flags = fl, .desc = doc, __VA_ARGS__                            \
  }
#define LEGACY SL_CFG_LEGACY_DURATION

/* The historic string limits of the simulator's options. */
#define MAX_LEN_CHECK(n)                                                       \
  static const char *max##n(const char *s) {                                   \
    return strlen(s) > (n) ? "is longer than " #n " bytes" : NULL;             \
  }
MAX_LEN_CHECK(63)
MAX_LEN_CHECK(127)
MAX_LEN_CHECK(199)
MAX_LEN_CHECK(255)

static const sl_cfg_opt_t sim_opts[] = {
    ROW("output", ENUM, output, "native", 0,
        "native (C client library), http (POST /v1/events) or mqtt (JSON, QoS "
        "1)",
        .enums = outputs),
    ROW("address", STRING, address, "127.0.0.1:7000", 0,
        "native: host:port or unix:/path; http: the HTTP listener's "
        "host:port; mqtt: the broker's host:port",
        .check = max255),
    ROW("token", STRING, token, "", SL_CFG_SECRET, "native listener token",
        .check = max255),
    ROW("client_id", STRING, client_id, "sluice-sim", 0,
        "client id (native and MQTT)", .check = max63),
    ROW("stream", STRING, stream, "readings", 0,
        "stream of the sensor readings", .check = max199),
    ROW("inference_stream", STRING, inference_stream, "inference", 0,
        "stream of the inference results", .check = max199),
    ROW("topic_prefix", STRING, topic_prefix, "sluice/sim", 0,
        "MQTT topics: <topic_prefix>/<stream>/<source>", .check = max127),
    ROW("sources", UINT, sources, "100", 0,
        "sensor sources (8 profiles in turn: temp, pressure, vibration, "
        "current, flow, speed, count, status)",
        .min = "0", .max = "1000000"),
    ROW("rate", DOUBLE, rate, "100", 0,
        "sensor readings per second, all sources together", .min = "0",
        .max = "1e8"),
    ROW("inference_sources", UINT, inference_sources, "2", 0,
        "model instances: cameras and presses in turn", .min = "0",
        .max = "100000"),
    ROW("inference_rate", DOUBLE, inference_rate, "2", 0,
        "inference results per second, all instances together", .min = "0",
        .max = "1e7"),
    ROW("count", UINT, count, "0", 0,
        "stop after this many events (0: no limit; count or duration is "
        "required)",
        .min = "0", .max = "4000000000"),
    ROW("duration", DURATION, duration_ms, "0", LEGACY,
        "stop after this long (0: no limit)", .min = "0",
        .max = "2000000000ms"),
    ROW("seed", UINT, seed, "1", 0, "same seed and start_time, same events",
        .min = "0", .max = "4000000000"),
    ROW("start_time", UINT, start_time, "0", 0,
        "time of the first event, Unix seconds (0: now)", .min = "0",
        .max = "4000000000"),
    ROW("batch", UINT, batch, "500", 0, "http: events per request", .min = "1",
        .max = "100000"),
    ROW("flush_timeout", DURATION, flush_timeout_ms, "30s", LEGACY,
        "at the end, how long to wait for acks", .min = "0", .max = "1h"),
    ROW("log_level", ENUM, log_level, "info", 0, "error, warn, info or debug",
        .enums = levels),
};

static const sl_cfg_section_t sim_section = {
    .name = "",
    .opts = sim_opts,
    .n_opts = SL_ARRAY_SIZE(sim_opts),
    .size = sizeof(sl_sim_config_t),
    .flags = SL_CFG_SEC_BARE_RANGE,
};

void sl_sim_config_help(void *fp) {
  FILE *f = fp;
  for (size_t i = 0; i < SL_ARRAY_SIZE(sim_opts); i++)
    fprintf(f, "  --%-18s %s (default \"%s\")\n", sim_opts[i].name,
            sim_opts[i].desc, sim_opts[i].def);
}

void sl_sim_config_free(sl_sim_config_t *cfg) {
  sl_cfg_obj_free(&sim_section, cfg);
}

/* "--key value" overrides, after the file. */
static int apply_options(sl_sim_config_t *cfg, int argc, char **argv,
                         char *errstr, size_t errlen) {
  char why[300];
  for (int i = 0; i < argc; i++) {
    const sl_cfg_opt_t *o = NULL;
    const char *k = argv[i];
    sl_cfg_val_t v;
    for (size_t r = 0; !strncmp(k, "--", 2) && r < SL_ARRAY_SIZE(sim_opts); r++)
      if (!strcmp(sim_opts[r].name, k + 2))
        o = &sim_opts[r];
    if (!o) {
      snprintf(errstr, errlen, "unknown option %s", k);
      return SL_ECONFIG;
    }
    /* Options may use dashes: --inference-rate. */
    if (i + 1 >= argc) {
      snprintf(errstr, errlen, "%s needs a value", k);
      return SL_ECONFIG;
    }
    if (sl_cfg_parse(o, argv[++i], &v, why, sizeof(why))) {
      if (o->flags & SL_CFG_SECRET)
        snprintf(errstr, errlen, "%s: %s", k, why);
      else
        snprintf(errstr, errlen, "%s: \"%.64s\" %s", k, argv[i], why);
      return SL_ECONFIG;
    }
    sl_cfg_store(o, cfg, &v);
  }
  return 0;
}

static int config_check(sl_sim_config_t *cfg, const char *path, char *errstr,
                        size_t errlen) {
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

int sl_sim_config_load(sl_sim_config_t *cfg, const char *path, int argc,
                       char **argv, char *errstr, size_t errlen) {
  void *obj = NULL;
  int rc;

  memset(cfg, 0, sizeof(*cfg));
  rc = path ? sl_cfg_load_file(&sim_section, path, NULL, &obj, errstr, errlen)
            : sl_cfg_load(&sim_section, "defaults", "", 0, NULL, &obj, errstr,
                          errlen);
  if (rc)
    return rc;
  memcpy(cfg, obj, sizeof(*cfg));
  free(obj);
  if ((rc = apply_options(cfg, argc, argv, errstr, errlen)) ||
      (rc = config_check(cfg, path, errstr, errlen))) {
    sl_sim_config_free(cfg);
    memset(cfg, 0, sizeof(*cfg));
  }
  return rc;
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
          "simulating %" PRIu64 " sensor sources at %g/s and %" PRIu64
          " models at %g/s over "
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
