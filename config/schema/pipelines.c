/*
 * The `pipelines:` config section (docs/PROCESSING.md): a list of pipelines,
 * each with a match and a nested list of steps. Every pipeline is compiled
 * by the process module while the config loads, so `sluice check-config`
 * reports a bad expression or step with its position and column, and the
 * daemon never starts (or reloads) with a pipeline it cannot run.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_int.h"
#include "process/process.h"

#define STEP_OPT(n, t, f, d, fl, desc_, ...)                                   \
  {                                                                            \
    .name = n, .type = SL_CFG_##t, .off = offsetof(sl_config_step_t, f),       \
    .def = d, .flags = fl, .desc = desc_, __VA_ARGS__                          \
  }
#define PIPE_OPT(n, t, f, d, fl, desc_, ...)                                   \
  {                                                                            \
    .name = n, .type = SL_CFG_##t, .off = offsetof(sl_config_pipeline_t, f),   \
    .def = d, .flags = fl, .desc = desc_, __VA_ARGS__                          \
  }

static const char *const actions[] = {"keep", "drop", "tag", NULL};
static const char *const lates[] = {"drop", "correct", NULL};
static const char *const formats[] = {"protobuf", "json", NULL};
static const char *const kinds[] = {"reading", "inference", "raw",
                                    "status",  "gap",       NULL};

static const char *check_route(const char *s) {
  if (!*s || !strcmp(s, "kafka") || !strcmp(s, "mqtt") || !strcmp(s, "local"))
    return NULL;
  return "must be kafka, mqtt or local";
}

static const char *check_pipeline_name(const char *s) {
  if (!*s || strlen(s) > 64)
    return "is not a pipeline name (1-64 characters of a-z 0-9 . _ -)";
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' ||
          *s == '_' || *s == '-'))
      return "is not a pipeline name (1-64 characters of a-z 0-9 . _ -)";
  return NULL;
}

static const sl_cfg_opt_t step_opts[] = {
    STEP_OPT("filter", STRING, filter, "", 0,
             "Head key of a filter step: an expression over value, quality, "
             "source, unit, time, attr.NAME, model, model_version, label, "
             "score (docs/PROCESSING.md)."),
    STEP_OPT("action", ENUM, action, "keep", 0,
             "filter: keep the matching events (drop the rest), drop them, "
             "or tag them.",
             .enums = actions),
    STEP_OPT("tag", STRING, tag, "", 0,
             "filter with action tag: the attribute to add, \"key=value\"."),
    STEP_OPT("deadband", STRING, deadband, "", 0,
             "Head key of a deadband step: the change that counts, absolute "
             "(\"0.5\") or relative to the last sent value (\"2%\"). Quality "
             "changes always pass."),
    STEP_OPT("heartbeat", DURATION, heartbeat_ms, "0", 0,
             "deadband: send the current value after this long without a "
             "sent value, even unchanged; 0 = never."),
    STEP_OPT("sample", UINT, sample, "0", 0,
             "Head key of a sample step: keep 1 event in N per source.",
             .max = "1000000000"),
    STEP_OPT("rate_limit", UINT, rate_limit, "0", 0,
             "Head key of a rate_limit step: at most N events per source per "
             "interval.",
             .max = "1000000000"),
    STEP_OPT("interval", DURATION, interval_ms, "1s", 0,
             "rate_limit: the interval (aligned to event time).", .min = "1ms"),
    STEP_OPT("aggregate", LIST, aggregate, "", 0,
             "Head key of an aggregate step: functions among count, sum, min, "
             "max, mean, stddev, first, last (readings), labels, scores "
             "(inference)."),
    STEP_OPT("window", DURATION, window_ms, "1m", 0,
             "aggregate: window length (event time).", .min = "1ms"),
    STEP_OPT("hop", DURATION, hop_ms, "0", 0,
             "aggregate: hop of hopping windows; 0 = tumbling."),
    STEP_OPT("lateness", DURATION, lateness_ms, "0", 0,
             "aggregate: how far behind the watermark an event may arrive."),
    STEP_OPT("late", ENUM, late, "drop", 0,
             "aggregate: later events are counted and dropped, or emitted as "
             "corrections.",
             .enums = lates),
    STEP_OPT("group_by", STRING, group_by, "source", 0,
             "aggregate: source, none, attr.NAME or a {capture} name."),
    STEP_OPT("into", STRING, into, "", 0,
             "aggregate: stream the window results are stored in (required "
             "for an aggregate)."),
    STEP_OPT("keep_raw", BOOL, keep_raw, "false", 0,
             "aggregate: also store the events that went into windows."),
    STEP_OPT("max_keys", UINT, max_keys, "100000", 0,
             "aggregate, deadband, sample, rate_limit: distinct keys tracked; "
             "events of further keys are dropped and counted (overflow).",
             .min = "1", .max = "10000000"),
    STEP_OPT("route", STRING, route, "", 0,
             "Head key of a route step: kafka, mqtt or local (never sent "
             "upstream).",
             .check = check_route),
    STEP_OPT("stream", STRING, stream, "", 0,
             "route: store the events in this stream instead of their own."),
    STEP_OPT("topic", STRING, topic, "", 0,
             "route: Kafka or MQTT topic; may use {captures}."),
    STEP_OPT("key", STRING, key, "source", 0,
             "route kafka: record key (source, none or a capture)."),
    STEP_OPT("format", ENUM, format, "protobuf", 0,
             "route: value format of the routed records.", .enums = formats),
    STEP_OPT("model_aggregate", BOOL, model_aggregate, "false", 0,
             "Head key of a model_aggregate step (true): per (model, version, "
             "digest, role, source) windows of inference events with "
             "histograms, a latency sketch, PSI and canary agreement "
             "(docs/EDGE-AI.md); uses window, lateness, into, keep_raw."),
    STEP_OPT("model_keys", UINT, model_keys, "256", 0,
             "model_aggregate: keys held, allocated at start (~4.5 KiB each, "
             "twice for the table); a new key in a full table closes the "
             "oldest window early, marked partial.",
             .min = "1", .max = "65536"),
    STEP_OPT("reference", LIST, reference, "", 0,
             "model_aggregate: PSI reference, 20 proportions of the pooled "
             "score histogram (bins of 0.05); empty = learn it per key."),
    STEP_OPT("reference_windows", UINT, reference_windows, "1", 0,
             "model_aggregate without a reference: complete windows per key "
             "learnt as the reference after it appears; 0 = no PSI.",
             .max = "1000"),
};

static const sl_cfg_section_t step_section = {
    .name = "steps",
    .opts = step_opts,
    .n_opts = SL_ARRAY_SIZE(step_opts),
    .size = sizeof(sl_config_step_t),
};

/* ---- config -> process ------------------------------------------------- */

static const struct {
  const char *name;
  unsigned bit;
} agg_names[] = {
    {"count", SL_PROCESS_AGG_COUNT},   {"sum", SL_PROCESS_AGG_SUM},
    {"min", SL_PROCESS_AGG_MIN},       {"max", SL_PROCESS_AGG_MAX},
    {"mean", SL_PROCESS_AGG_MEAN},     {"stddev", SL_PROCESS_AGG_STDDEV},
    {"first", SL_PROCESS_AGG_FIRST},   {"last", SL_PROCESS_AGG_LAST},
    {"labels", SL_PROCESS_AGG_LABELS}, {"scores", SL_PROCESS_AGG_SCORES}};

/* Storage for the strings a conversion splits ("k=v" tags). */
typedef struct convbuf {
  char tags[SL_PROCESS_STEPS_MAX][256];
  double ref[SL_PROCESS_STEPS_MAX][SL_PROCESS_MA_BINS];
} convbuf_t;

static int step_conf(const sl_config_step_t *s, const char *match_stream,
                     size_t i, sl_process_step_conf_t *c, convbuf_t *cb,
                     char *why, size_t len) {
  int heads = 0;
  memset(c, 0, sizeof(*c));
  if (*s->filter) {
    heads++;
    c->kind = SL_PROCESS_FILTER;
    c->expr = s->filter;
    c->action = (sl_process_action_t)s->action;
    if (c->action == SL_PROCESS_TAG) {
      char *eq;
      snprintf(cb->tags[i], sizeof(cb->tags[i]), "%s", s->tag);
      if (!(eq = strchr(cb->tags[i], '=')) || eq == cb->tags[i]) {
        snprintf(why, len, "steps[%zu]: tag must be \"key=value\"", i);
        return SL_ECONFIG;
      }
      *eq = 0;
      c->tag_key = cb->tags[i];
      c->tag_value = eq + 1;
    }
  }
  if (*s->deadband) {
    char *end;
    heads++;
    c->kind = SL_PROCESS_DEADBAND;
    c->deadband = strtod(s->deadband, &end);
    c->percent = *end == '%';
    if (end == s->deadband || (*end && strcmp(end, "%")) ||
        !(c->deadband >= 0) || isinf(c->deadband)) {
      snprintf(why, len,
               "steps[%zu]: deadband \"%.40s\" must be a number or a "
               "percentage such as 2%%",
               i, s->deadband);
      return SL_ECONFIG;
    }
    c->heartbeat_ns = (int64_t)s->heartbeat_ms * 1000000;
  }
  if (s->sample) {
    heads++;
    c->kind = SL_PROCESS_SAMPLE;
    c->every = (uint32_t)s->sample;
  }
  if (s->rate_limit) {
    heads++;
    c->kind = SL_PROCESS_RATE_LIMIT;
    c->limit = (uint32_t)s->rate_limit;
    c->interval_ns = (int64_t)s->interval_ms * 1000000;
  }
  if (s->aggregate.n) {
    heads++;
    c->kind = SL_PROCESS_AGGREGATE;
    for (size_t k = 0; k < s->aggregate.n; k++) {
      size_t j;
      for (j = 0; j < SL_ARRAY_SIZE(agg_names); j++)
        if (!strcmp(agg_names[j].name, s->aggregate.v[k]))
          break;
      if (j == SL_ARRAY_SIZE(agg_names)) {
        snprintf(why, len, "steps[%zu]: aggregate: unknown function \"%.40s\"",
                 i, s->aggregate.v[k]);
        return SL_ECONFIG;
      }
      c->funcs |= agg_names[j].bit;
    }
    c->window_ns = (int64_t)s->window_ms * 1000000;
    c->hop_ns = (int64_t)s->hop_ms * 1000000;
    c->lateness_ns = (int64_t)s->lateness_ms * 1000000;
    c->late = (sl_process_late_t)s->late;
    c->group_by = s->group_by;
    c->into = s->into;
    c->keep_raw = s->keep_raw;
    c->max_keys = (uint32_t)s->max_keys;
  }
  if (s->model_aggregate) {
    heads++;
    c->kind = SL_PROCESS_MODEL_AGG;
    if (s->reference.n && s->reference.n != SL_PROCESS_MA_BINS) {
      snprintf(why, len, "steps[%zu]: reference needs %d proportions", i,
               SL_PROCESS_MA_BINS);
      return SL_ECONFIG;
    }
    for (size_t k = 0; k < s->reference.n; k++) {
      char *end;
      cb->ref[i][k] = strtod(s->reference.v[k], &end);
      if (end == s->reference.v[k] || *end) {
        snprintf(why, len, "steps[%zu]: reference[%zu] is not a number", i, k);
        return SL_ECONFIG;
      }
    }
    c->reference = s->reference.n ? cb->ref[i] : NULL;
    c->n_reference = s->reference.n;
    c->reference_windows = (uint32_t)s->reference_windows;
    c->window_ns = (int64_t)s->window_ms * 1000000;
    c->lateness_ns = (int64_t)s->lateness_ms * 1000000;
    c->into = s->into;
    c->keep_raw = s->keep_raw;
    c->max_keys = (uint32_t)s->model_keys;
  }
  if (*s->route) {
    heads++;
    c->kind = SL_PROCESS_ROUTE;
    c->route = !strcmp(s->route, "kafka")  ? SL_PROCESS_ROUTE_KAFKA
               : !strcmp(s->route, "mqtt") ? SL_PROCESS_ROUTE_MQTT
                                           : SL_PROCESS_ROUTE_LOCAL;
    c->stream = s->stream;
    c->topic = s->topic;
    c->key = s->key;
    c->format = (sl_process_format_t)s->format;
  }
  if (heads == 1 && *s->route && !strcmp(s->route, "local") && !*s->stream &&
      !*match_stream) {
    snprintf(why, len,
             "steps[%zu]: route local needs a stream, or a match.stream to "
             "keep on the node",
             i);
    return SL_ECONFIG;
  }
  if (heads != 1) {
    snprintf(why, len,
             "steps[%zu]: a step needs exactly one of filter, deadband, "
             "sample, rate_limit, aggregate, model_aggregate, route (found "
             "%d)",
             i, heads);
    return SL_ECONFIG;
  }
  if (!c->max_keys)
    c->max_keys = (uint32_t)s->max_keys;
  return 0;
}

int sl_config_pipeline_add(sl_process_t *pr, const sl_config_pipeline_t *p,
                           char *why, size_t len) {
  sl_process_step_conf_t steps[SL_PROCESS_STEPS_MAX];
  sl_process_pipeline_conf_t pc = {0};
  convbuf_t *cb;
  int rc;

  if (p->steps.n > SL_PROCESS_STEPS_MAX) {
    snprintf(why, len, "at most %d steps", SL_PROCESS_STEPS_MAX);
    return SL_ECONFIG;
  }
  if (!(cb = calloc(1, sizeof(*cb))))
    return -ENOMEM;
  for (size_t i = 0; i < p->steps.n; i++)
    if ((rc = step_conf(&p->steps.v[i], p->match_stream, i, &steps[i], cb, why,
                        len)) < 0)
      goto out;
  pc.name = p->name;
  pc.stream = p->match_stream;
  pc.source = p->match_source;
  pc.kinds = p->match_kinds;
  pc.attrs = (const char *const *)p->match_attributes.v;
  pc.n_attrs = p->match_attributes.n;
  pc.steps = steps;
  pc.n_steps = p->steps.n;
  rc = sl_process_pipeline_add(pr, &pc, why, len);
out:
  free(cb);
  return rc;
}

static int pipeline_check(const sl_config_pipeline_t *p, char *why,
                          size_t len) {
  sl_process_t *pr;
  int rc;
  if ((rc = sl_process_new(&pr)) < 0) {
    snprintf(why, len, "out of memory");
    return rc;
  }
  rc = sl_config_pipeline_add(pr, p, why, len);
  sl_process_free(pr);
  return rc < 0 ? SL_ECONFIG : 0;
}

/* Compiles the pipeline: the same code the daemon runs at start. */
static void pipeline_finish(void *obj, sl_cfg_errs_t *errs,
                            const char *prefix) {
  char why[512];
  if (pipeline_check(obj, why, sizeof(why)) < 0)
    sl_cfg_errf(errs, NULL, 0, 0, prefix, "%s", why);
}

static const sl_cfg_opt_t pipeline_opts[] = {
    PIPE_OPT("name", STRING, name, NULL, SL_CFG_REQUIRED,
             "Pipeline name, unique; [a-z0-9._-], at most 64 characters.",
             .check = check_pipeline_name),
    PIPE_OPT("match.stream", STRING, match_stream, "", 0,
             "Only events of this stream; \"\" = every stream."),
    PIPE_OPT("match.source", STRING, match_source, "", 0,
             "Source glob: * any run, ? one character, {name} a capture "
             "usable by group_by and topics; \"\" = any source."),
    PIPE_OPT("match.kinds", FLAGS, match_kinds, "", 0,
             "Event kinds among reading, inference, raw, status, gap; empty = "
             "every kind.",
             .enums = kinds),
    PIPE_OPT("match.attributes", LIST, match_attributes, "", 0,
             "Attribute conditions \"key=glob\"; all must hold."),
    PIPE_OPT("steps", SECTION_LIST, steps, NULL, 0,
             "Ordered steps; each has one head key (filter, deadband, sample, "
             "rate_limit, aggregate, model_aggregate, route) and that step's "
             "options.",
             .sub = &step_section, .max = "16"),
};

const sl_cfg_section_t sl_config__pipeline_section = {
    .name = "pipelines",
    .opts = pipeline_opts,
    .n_opts = SL_ARRAY_SIZE(pipeline_opts),
    .size = sizeof(sl_config_pipeline_t),
    .finish = pipeline_finish,
};
