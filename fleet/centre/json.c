/*
 * fleet/centre/json.c: RFC 7396 merge patches, the canonical JSON text of a
 * rendered document (its sha256 is compared, so the same render must give
 * the same bytes), the remote-owned key check of a patch, and policy files
 * in YAML (libyaml events to jansson values).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "fleet/centre/centre.h"

json_t *sl_fleet_merge_patch(json_t *target, const json_t *patch) {
  if (!json_is_object(patch)) {
    json_decref(target);
    return json_deep_copy(patch);
  }
  if (!json_is_object(target)) {
    json_decref(target);
    if (!(target = json_object()))
      return NULL;
  }
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)patch, k, v) {
    if (json_is_null(v)) {
      json_object_del(target, k);
      continue;
    }
    json_t *cur = json_object_get(target, k);
    json_incref(cur);
    json_t *m = sl_fleet_merge_patch(cur, v);
    if (!m || json_object_set_new(target, k, m)) {
      json_decref(target);
      return NULL;
    }
  }
  return target;
}

char *sl_fleet_json_canon(const json_t *v) {
  return json_dumps(v, JSON_SORT_KEYS | JSON_INDENT(0) | JSON_ENCODE_ANY);
}

int sl_fleet_patch_check(const json_t *patch, char *err, size_t errlen) {
  static const char *const log_keys[] = {"level", "debug", "format", NULL};
  static const char *const kafka_keys[] = {"bandwidth_bytes_per_s",
                                           "backlog_share", "backlog_threshold",
                                           "backlog_order", NULL};
  const char *k;
  json_t *v;

  if (!json_is_object(patch)) {
    snprintf(err, errlen, "the patch must be a JSON object");
    return SL_ECONFIG;
  }
  json_object_foreach((json_t *)patch, k, v) {
    const char *const *sub = NULL;
    if (!strcmp(k, "streams") || !strcmp(k, "pipelines")) {
      if (!json_is_array(v) && !json_is_null(v)) {
        snprintf(err, errlen, "'%s' must be a list (or null to remove it)", k);
        return SL_ECONFIG;
      }
      continue;
    }
    if (!strcmp(k, "log"))
      sub = log_keys;
    else if (!strcmp(k, "kafka"))
      sub = kafka_keys;
    if (!sub) {
      snprintf(err, errlen,
               "'%s' is not a remote-owned key (allowed: streams, pipelines, "
               "log.level|debug|format, kafka.bandwidth_bytes_per_s|"
               "backlog_share|backlog_threshold|backlog_order)",
               k);
      return SL_ECONFIG;
    }
    if (json_is_null(v))
      continue;
    if (!json_is_object(v)) {
      snprintf(err, errlen, "'%s' must be a mapping", k);
      return SL_ECONFIG;
    }
    const char *k2;
    json_t *v2;
    json_object_foreach(v, k2, v2) {
      bool ok = false;
      for (size_t i = 0; sub[i]; i++)
        ok |= !strcmp(sub[i], k2);
      if (!ok) {
        snprintf(err, errlen, "'%s.%s' is not a remote-owned key", k, k2);
        return SL_ECONFIG;
      }
    }
  }
  return 0;
}

/* ---- YAML -> JSON -------------------------------------------------------- */

static json_t *scalar(const yaml_event_t *e) {
  const char *s = (const char *)e->data.scalar.value;
  size_t len = e->data.scalar.length;
  if (e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
    if (!strcmp(s, "null") || !strcmp(s, "~") || len == 0)
      return json_null();
    if (!strcmp(s, "true") || !strcmp(s, "True"))
      return json_true();
    if (!strcmp(s, "false") || !strcmp(s, "False"))
      return json_false();
    char *end;
    errno = 0;
    long long i = strtoll(s, &end, 10);
    if (*s && !*end && !errno)
      return json_integer(i);
    double d = strtod(s, &end);
    if (*s && !*end &&
        (s[0] == '-' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9')))
      return json_real(d);
  }
  return json_stringn(s, len);
}

#define SL_FLEET_YAML_DEPTH_MAX 32

typedef struct ystack {
  json_t *v[SL_FLEET_YAML_DEPTH_MAX];
  char *key[SL_FLEET_YAML_DEPTH_MAX];
  int n;
} ystack_t;

int sl_fleet_yaml_to_json(const char *text, size_t len, json_t **out, char *err,
                          size_t errlen) {
  yaml_parser_t p;
  yaml_event_t e;
  ystack_t st = {0};
  json_t *root = NULL;
  int rc = SL_ECONFIG;
  bool done = false;

  *out = NULL;
  if (!yaml_parser_initialize(&p))
    return -ENOMEM;
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  while (!done) {
    if (!yaml_parser_parse(&p, &e)) {
      snprintf(err, errlen, "line %zu column %zu: %s", p.problem_mark.line + 1,
               p.problem_mark.column + 1,
               p.problem ? p.problem : "YAML syntax error");
      goto fail;
    }
    json_t *v = NULL;
    bool open = false;
    switch (e.type) {
    case YAML_STREAM_END_EVENT:
      done = true;
      break;
    case YAML_SCALAR_EVENT:
      if (st.n > 0 && json_is_object(st.v[st.n - 1]) && !st.key[st.n - 1]) {
        st.key[st.n - 1] =
            strndup((const char *)e.data.scalar.value, e.data.scalar.length);
        break;
      }
      v = scalar(&e);
      break;
    case YAML_SEQUENCE_START_EVENT:
      v = json_array();
      open = true;
      break;
    case YAML_MAPPING_START_EVENT:
      v = json_object();
      open = true;
      break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      v = st.v[--st.n];
      break;
    case YAML_ALIAS_EVENT:
      snprintf(err, errlen, "line %zu: YAML aliases are not supported",
               e.start_mark.line + 1);
      yaml_event_delete(&e);
      goto fail;
    default:
      break;
    }
    size_t line = e.start_mark.line + 1, col = e.start_mark.column + 1;
    yaml_event_delete(&e);
    if (!v)
      continue;
    if (open) {
      if (st.n >= SL_FLEET_YAML_DEPTH_MAX) {
        json_decref(v);
        snprintf(err, errlen, "line %zu column %zu: nested too deeply", line,
                 col);
        goto fail;
      }
      st.v[st.n] = v;
      st.key[st.n++] = NULL;
      continue;
    }
    /* a complete value: attach it to its parent */
    if (st.n == 0) {
      if (root) {
        json_decref(v);
        snprintf(err, errlen, "line %zu: more than one document", line);
        goto fail;
      }
      root = v;
      continue;
    }
    json_t *parent = st.v[st.n - 1];
    if (json_is_array(parent)) {
      json_array_append_new(parent, v);
    } else {
      char *k = st.key[st.n - 1];
      if (!k) {
        json_decref(v);
        snprintf(err, errlen,
                 "line %zu column %zu: a mapping key must be a "
                 "scalar",
                 line, col);
        goto fail;
      }
      if (json_object_get(parent, k)) {
        json_decref(v);
        snprintf(err, errlen, "line %zu column %zu: duplicate key '%s'", line,
                 col, k);
        goto fail;
      }
      json_object_set_new(parent, k, v);
      free(k);
      st.key[st.n - 1] = NULL;
    }
  }
  if (!root) {
    snprintf(err, errlen, "empty document");
    goto fail;
  }
  *out = root;
  rc = 0;
  root = NULL;
fail:
  for (int i = 0; i < st.n; i++) {
    json_decref(st.v[i]);
    free(st.key[i]);
  }
  json_decref(root);
  yaml_parser_delete(&p);
  return rc;
}
