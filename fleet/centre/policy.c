/*
 * fleet/centre/policy.c: policy files (YAML or JSON, docs/FLEET.md) to
 * Policy records and back to JSON. Every key is known; anything else, a
 * bad selector, a patch touching a key the node owns, or a value out of
 * range is refused with a message naming it.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/textparse.h"
#include "fleet/centre/centre.h"

#define ERR(...)                                                               \
  do {                                                                         \
    snprintf(err, errlen, __VA_ARGS__);                                        \
    goto fail;                                                                 \
  } while (0)

/* ms from a number (ms) or a duration string ("30s"). */
static int get_ms(json_t *v, const char *key, uint64_t *ms, char *err,
                  size_t errlen) {
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    *ms = (uint64_t)json_integer_value(v);
    return 0;
  }
  if (json_is_string(v) && sl_duration_parse(json_string_value(v), 0, ms) == 0)
    return 0;
  snprintf(err, errlen, "%s: expected a duration (\"30s\", \"5m\") or ms", key);
  return SL_ECONFIG;
}

static bool known(const char *k, const char *const *keys) {
  for (size_t i = 0; keys[i]; i++)
    if (!strcmp(k, keys[i]))
      return true;
  return false;
}

static int check_keys(json_t *o, const char *where, const char *const *keys,
                      char *err, size_t errlen) {
  const char *k;
  json_t *v;
  if (!json_is_object(o)) {
    snprintf(err, errlen, "%s must be a mapping", where);
    return SL_ECONFIG;
  }
  json_object_foreach(o, k, v) {
    if (!known(k, keys)) {
      snprintf(err, errlen, "%s: unknown key '%s'", where, k);
      return SL_ECONFIG;
    }
  }
  return 0;
}

static int minute_of(json_t *v, const char *key, uint32_t *out, char *err,
                     size_t errlen) {
  unsigned h, m;
  char tail;
  if (json_is_string(v) &&
      sscanf(json_string_value(v), "%u:%u%c", &h, &m, &tail) == 2 && h < 24 &&
      m < 60) {
    *out = h * 60 + m;
    return 0;
  }
  snprintf(err, errlen, "%s: expected \"HH:MM\" (UTC)", key);
  return SL_ECONFIG;
}

int sl_fleet_policy_parse(const char *text, size_t len,
                          Sluice__V1__Policy **out, char *err, size_t errlen) {
  static const char *const top[] = {"name",       "selector", "priority",
                                    "patch",      "rollout",  "gate",
                                    "on_failure", "window",   NULL};
  static const char *const ro_keys[] = {"canary_selector",
                                        "steps_percent",
                                        "success_threshold",
                                        "batch_deadline",
                                        "max_failures",
                                        "group_label",
                                        "max_unavailable_per_group",
                                        NULL};
  static const char *const gate_keys[] = {
      "min_healthy", "timeout", "require_uplink", "max_error_rate", NULL};
  static const char *const win_keys[] = {"start", "end", NULL};
  Sluice__V1__Policy p = SLUICE__V1__POLICY__INIT;
  Sluice__V1__RolloutSpec ro = SLUICE__V1__ROLLOUT_SPEC__INIT;
  Sluice__V1__HealthGate gate = SLUICE__V1__HEALTH_GATE__INIT;
  Sluice__V1__ApplyWindow win = SLUICE__V1__APPLY_WINDOW__INIT;
  uint32_t steps[16];
  json_t *j = NULL, *v;
  char *patch = NULL;
  uint8_t *buf = NULL;
  sl_fleet_sel_t *sel = NULL;
  char e2[200];
  int rc;

  *out = NULL;
  if ((rc = sl_fleet_yaml_to_json(text, len, &j, err, errlen)))
    return rc;
  rc = SL_ECONFIG;
  if (check_keys(j, "policy", top, err, errlen))
    goto fail;
  v = json_object_get(j, "name");
  if (!json_is_string(v) || !*json_string_value(v) ||
      strlen(json_string_value(v)) > 200)
    ERR("name: required, a string of 1 to 200 characters");
  p.name = (char *)json_string_value(v);
  if ((v = json_object_get(j, "selector"))) {
    if (!json_is_string(v))
      ERR("selector: expected a string (\"site=berlin,tier!=test\")");
    if (sl_fleet_sel_parse(json_string_value(v), &sel, e2, sizeof(e2)))
      ERR("selector: %s", e2);
    sl_fleet_sel_free(sel);
    sel = NULL;
    p.selector = (char *)json_string_value(v);
  }
  if ((v = json_object_get(j, "priority"))) {
    if (!json_is_integer(v) || json_integer_value(v) < -1000000 ||
        json_integer_value(v) > 1000000)
      ERR("priority: expected an integer (-1000000..1000000)");
    p.priority = (int32_t)json_integer_value(v);
  }
  v = json_object_get(j, "patch");
  if (!v)
    ERR("patch: required (a merge patch of remote-owned keys)");
  if (sl_fleet_patch_check(v, e2, sizeof(e2)))
    ERR("patch: %s", e2);
  if (!(patch = sl_fleet_json_canon(v))) {
    rc = -ENOMEM;
    goto fail;
  }
  p.patch_json = patch;
  if ((v = json_object_get(j, "rollout"))) {
    json_t *w;
    if (check_keys(v, "rollout", ro_keys, err, errlen))
      goto fail;
    p.rollout = &ro;
    if ((w = json_object_get(v, "canary_selector"))) {
      if (!json_is_string(w) ||
          sl_fleet_sel_parse(json_string_value(w), &sel, e2, sizeof(e2)))
        ERR("rollout.canary_selector: %s",
            json_is_string(w) ? e2 : "expected a string");
      sl_fleet_sel_free(sel);
      sel = NULL;
      ro.canary_selector = (char *)json_string_value(w);
    }
    if ((w = json_object_get(v, "steps_percent"))) {
      size_t i;
      json_t *x;
      if (!json_is_array(w) || json_array_size(w) > 16)
        ERR("rollout.steps_percent: expected a list of at most 16 numbers");
      json_array_foreach(w, i, x) {
        json_int_t s = json_is_integer(x) ? json_integer_value(x) : -1;
        if (s < 1 || s > 100 || (i > 0 && (uint32_t)s <= steps[i - 1]))
          ERR("rollout.steps_percent[%zu]: expected increasing percentages "
              "1..100",
              i);
        steps[i] = (uint32_t)s;
      }
      ro.n_steps_percent = json_array_size(w);
      ro.steps_percent = steps;
    }
    if ((w = json_object_get(v, "success_threshold"))) {
      double t = json_number_value(w);
      if (!json_is_number(w) || t <= 0 || t > 1)
        ERR("rollout.success_threshold: expected a share in (0, 1]");
      ro.success_threshold = t;
    }
    if ((w = json_object_get(v, "batch_deadline")) &&
        get_ms(w, "rollout.batch_deadline", &ro.batch_deadline_ms, err, errlen))
      goto fail;
    if ((w = json_object_get(v, "max_failures"))) {
      if (!json_is_integer(w) || json_integer_value(w) < 1 ||
          json_integer_value(w) > 1000000)
        ERR("rollout.max_failures: expected an integer >= 1");
      ro.max_failures = (uint32_t)json_integer_value(w);
    }
    if ((w = json_object_get(v, "group_label"))) {
      if (!json_is_string(w))
        ERR("rollout.group_label: expected a label key");
      ro.group_label = (char *)json_string_value(w);
    }
    if ((w = json_object_get(v, "max_unavailable_per_group"))) {
      if (!json_is_integer(w) || json_integer_value(w) < 0 ||
          json_integer_value(w) > 1000000)
        ERR("rollout.max_unavailable_per_group: expected an integer >= 0");
      ro.max_unavailable_per_group = (uint32_t)json_integer_value(w);
    }
    if (ro.max_unavailable_per_group && !*ro.group_label)
      ERR("rollout.max_unavailable_per_group needs rollout.group_label");
  }
  if ((v = json_object_get(j, "gate"))) {
    json_t *w;
    if (check_keys(v, "gate", gate_keys, err, errlen))
      goto fail;
    p.gate = &gate;
    if ((w = json_object_get(v, "min_healthy")) &&
        get_ms(w, "gate.min_healthy", &gate.min_healthy_ms, err, errlen))
      goto fail;
    if ((w = json_object_get(v, "timeout")) &&
        get_ms(w, "gate.timeout", &gate.timeout_ms, err, errlen))
      goto fail;
    if ((w = json_object_get(v, "require_uplink"))) {
      if (!json_is_boolean(w))
        ERR("gate.require_uplink: expected true or false");
      gate.require_uplink = json_is_true(w);
    }
    if ((w = json_object_get(v, "max_error_rate"))) {
      double t = json_number_value(w);
      if (!json_is_number(w) || t < 0 || t > 1)
        ERR("gate.max_error_rate: expected a share in [0, 1]");
      gate.max_error_rate = t;
    }
    if (gate.timeout_ms && gate.timeout_ms <= gate.min_healthy_ms)
      ERR("gate.timeout must be longer than gate.min_healthy");
  }
  if ((v = json_object_get(j, "on_failure"))) {
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    if (!strcmp(s, "rollback"))
      p.on_failure = SLUICE__V1__ON_FAILURE__ON_FAILURE_ROLLBACK;
    else if (!strcmp(s, "keep"))
      p.on_failure = SLUICE__V1__ON_FAILURE__ON_FAILURE_KEEP;
    else
      ERR("on_failure: expected rollback or keep");
  }
  if ((v = json_object_get(j, "window"))) {
    if (check_keys(v, "window", win_keys, err, errlen) ||
        minute_of(json_object_get(v, "start"), "window.start",
                  &win.start_minute, err, errlen) ||
        minute_of(json_object_get(v, "end"), "window.end", &win.end_minute, err,
                  errlen))
      goto fail;
    p.window = &win;
  }
  size_t n = sluice__v1__policy__get_packed_size(&p);
  if (!(buf = malloc(n ? n : 1))) {
    rc = -ENOMEM;
    goto fail;
  }
  sluice__v1__policy__pack(&p, buf);
  if (!(*out = sluice__v1__policy__unpack(NULL, n, buf))) {
    rc = -ENOMEM;
    goto fail;
  }
  rc = 0;
fail:
  free(buf);
  free(patch);
  json_decref(j);
  return rc;
}

static json_t *ms_or_null(uint64_t ms) {
  return json_integer((json_int_t)ms);
}

json_t *sl_fleet_policy_to_json(const Sluice__V1__Policy *p) {
  json_error_t je;
  json_t *o = json_object();
  json_object_set_new(o, "name", json_string(p->name));
  json_object_set_new(o, "revision", json_integer((json_int_t)p->revision));
  json_object_set_new(o, "selector", json_string(p->selector));
  json_object_set_new(o, "priority", json_integer(p->priority));
  json_t *patch = json_loads(p->patch_json, JSON_DECODE_ANY, &je);
  json_object_set_new(o, "patch", patch ? patch : json_null());
  if (p->rollout) {
    json_t *r = json_object(), *s = json_array();
    for (size_t i = 0; i < p->rollout->n_steps_percent; i++)
      json_array_append_new(s, json_integer(p->rollout->steps_percent[i]));
    json_object_set_new(r, "canary_selector",
                        json_string(p->rollout->canary_selector));
    json_object_set_new(r, "steps_percent", s);
    json_object_set_new(r, "success_threshold",
                        json_real(p->rollout->success_threshold));
    json_object_set_new(r, "batch_deadline_ms",
                        ms_or_null(p->rollout->batch_deadline_ms));
    json_object_set_new(r, "max_failures",
                        json_integer(p->rollout->max_failures));
    json_object_set_new(r, "group_label", json_string(p->rollout->group_label));
    json_object_set_new(r, "max_unavailable_per_group",
                        json_integer(p->rollout->max_unavailable_per_group));
    json_object_set_new(o, "rollout", r);
  }
  if (p->gate) {
    json_t *g = json_object();
    json_object_set_new(g, "min_healthy_ms",
                        ms_or_null(p->gate->min_healthy_ms));
    json_object_set_new(g, "timeout_ms", ms_or_null(p->gate->timeout_ms));
    json_object_set_new(g, "require_uplink",
                        json_boolean(p->gate->require_uplink));
    json_object_set_new(g, "max_error_rate",
                        json_real(p->gate->max_error_rate));
    json_object_set_new(o, "gate", g);
  }
  json_object_set_new(
      o, "on_failure",
      json_string(p->on_failure == SLUICE__V1__ON_FAILURE__ON_FAILURE_KEEP
                      ? "keep"
                      : "rollback"));
  json_object_set_new(o, "updated_ns", json_integer(p->updated_ns));
  json_object_set_new(o, "deleted", json_boolean(p->deleted));
  return o;
}
