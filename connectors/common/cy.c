/*
 * connectors/common/cy.c: table-driven YAML config reading for connectors.
 * The document is loaded whole (libyaml's document API: config files are
 * small), then each mapping is walked against its table. Only the first
 * error is reported, with the file, line and column where it is.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "connectors/common/conn.h"

struct sl_cy {
  yaml_document_t doc; /* the loaded document */
  const char *path;    /* borrowed, for messages */
  char *errstr;        /* caller's buffer for the first error */
  size_t errlen;       /* its size */
  int failed;          /* an error was recorded */
};

int sl_cy_err(sl_cy_t *cy, const yaml_node_t *n, const char *key,
              const char *fmt, ...) {
  char msg[400];
  va_list ap;
  if (cy->failed || !cy->errlen)
    return SL_ECONFIG;
  cy->failed = 1;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (n && key && *key)
    snprintf(cy->errstr, cy->errlen, "%s:%zu:%zu: %s: %s", cy->path,
             n->start_mark.line + 1, n->start_mark.column + 1, key, msg);
  else if (n)
    snprintf(cy->errstr, cy->errlen, "%s:%zu:%zu: %s", cy->path,
             n->start_mark.line + 1, n->start_mark.column + 1, msg);
  else if (key && *key)
    snprintf(cy->errstr, cy->errlen, "%s: %s: %s", cy->path, key, msg);
  else
    snprintf(cy->errstr, cy->errlen, "%s: %s", cy->path, msg);
  return SL_ECONFIG;
}

int sl_cy_open(sl_cy_t **out, const char *path, char *errstr, size_t errlen) {
  yaml_parser_t parser;
  sl_cy_t *cy;
  FILE *f;
  int rc;

  if (errlen)
    errstr[0] = '\0';
  if (!(f = fopen(path, "rb"))) {
    rc = -errno;
    snprintf(errstr, errlen, "%s: %s", path, strerror(errno));
    return rc;
  }
  if (!(cy = calloc(1, sizeof(*cy)))) {
    fclose(f);
    return -ENOMEM;
  }
  cy->path = path;
  cy->errstr = errstr;
  cy->errlen = errlen;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  if (!yaml_parser_load(&parser, &cy->doc)) {
    snprintf(errstr, errlen, "%s:%zu:%zu: %s%s%s", path,
             parser.problem_mark.line + 1, parser.problem_mark.column + 1,
             parser.problem ? parser.problem : "YAML syntax error",
             parser.context ? " " : "", parser.context ? parser.context : "");
    yaml_parser_delete(&parser);
    fclose(f);
    free(cy);
    return SL_ECONFIG;
  }
  yaml_parser_delete(&parser);
  fclose(f);
  *out = cy;
  return 0;
}

void sl_cy_close(sl_cy_t *cy) {
  if (!cy)
    return;
  yaml_document_delete(&cy->doc);
  free(cy);
}

yaml_node_t *sl_cy_root(sl_cy_t *cy) {
  return yaml_document_get_root_node(&cy->doc);
}

yaml_node_t *sl_cy_node(sl_cy_t *cy, int index) {
  return yaml_document_get_node(&cy->doc, index);
}

const sl_cy_opt_t *sl_cy_find(const sl_cy_opt_t *tab, size_t n,
                              const char *name) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(tab[i].name, name))
      return &tab[i];
  return NULL;
}

static int parse_bool(const char *s, int *out) {
  static const char *const t[] = {"true", "yes", "on", "1"};
  static const char *const f[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (!strcasecmp(s, t[i]))
      return *out = 1, 0;
    if (!strcasecmp(s, f[i]))
      return *out = 0, 0;
  }
  return SL_ECONFIG;
}

int sl_cy_parse_value(const sl_cy_opt_t *o, const char *s, void *obj,
                      char *errstr, size_t errlen) {
  char *field = (char *)obj + o->off, *end;
  double d;
  uint32_t ms;
  int b;

  switch (o->type) {
  case SL_CY_STR:
    if (strlen(s) >= o->size) {
      snprintf(errstr, errlen, "longer than %zu bytes", o->size - 1);
      return SL_ECONFIG;
    }
    memcpy(field, s, strlen(s) + 1);
    return 0;
  case SL_CY_U32:
  case SL_CY_DOUBLE:
    errno = 0;
    d = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(d) ||
        (o->type == SL_CY_U32 && d != floor(d))) {
      snprintf(errstr, errlen, "\"%.64s\" is not %s", s,
               o->type == SL_CY_U32 ? "an integer" : "a number");
      return SL_ECONFIG;
    }
    if (d < o->min || d > o->max) {
      snprintf(errstr, errlen, "%.64s is out of range %g..%g", s, o->min,
               o->max);
      return SL_ECONFIG;
    }
    if (o->type == SL_CY_U32)
      *(uint32_t *)(void *)field = (uint32_t)d;
    else
      *(double *)(void *)field = d;
    return 0;
  case SL_CY_DUR:
    if (sl_conn_duration_parse(s, &ms)) {
      snprintf(errstr, errlen,
               "\"%.64s\" is not a duration (250ms, 2s, 5m, 1h)", s);
      return SL_ECONFIG;
    }
    if (ms < o->min || ms > o->max) {
      snprintf(errstr, errlen, "%.64s is out of range %gms..%gms", s, o->min,
               o->max);
      return SL_ECONFIG;
    }
    *(uint32_t *)(void *)field = ms;
    return 0;
  case SL_CY_ENUM:
    for (int i = 0; o->names[i]; i++) {
      if (!strcmp(o->names[i], s)) {
        *(int *)(void *)field = i;
        return 0;
      }
    }
    {
      size_t k = (size_t)snprintf(errstr, errlen, "\"%.64s\" is not one of", s);
      for (int i = 0; o->names[i] && k < errlen; i++)
        k += (size_t)snprintf(errstr + k, errlen - k, " %s", o->names[i]);
    }
    return SL_ECONFIG;
  case SL_CY_BOOL:
    if (parse_bool(s, &b)) {
      snprintf(errstr, errlen, "\"%.64s\" is not true or false", s);
      return SL_ECONFIG;
    }
    *(int *)(void *)field = b;
    return 0;
  case SL_CY_NODE:
    break;
  }
  snprintf(errstr, errlen, "cannot be set from text");
  return SL_ECONFIG;
}

static void full_key(char *buf, size_t len, const char *prefix,
                     const char *name) {
  snprintf(buf, len, "%s%s%s", prefix, *prefix ? "." : "", name);
}

int sl_cy_map(sl_cy_t *cy, yaml_node_t *map, const char *prefix,
              const sl_cy_opt_t *tab, size_t n, void *obj) {
  char key[256], msg[300];
  unsigned char seen[64] = {0};

  if (n > sizeof(seen))
    return sl_cy_err(cy, map, prefix, "internal: table too large");
  for (size_t i = 0; i < n; i++) {
    if (tab[i].def && tab[i].type != SL_CY_NODE &&
        sl_cy_parse_value(&tab[i], tab[i].def, obj, msg, sizeof(msg))) {
      full_key(key, sizeof(key), prefix, tab[i].name);
      return sl_cy_err(cy, NULL, key, "internal: bad default: %s", msg);
    }
  }
  if (map && map->type == YAML_SCALAR_NODE && !map->data.scalar.length)
    map = NULL; /* "section:" with nothing under it */
  if (map && map->type != YAML_MAPPING_NODE)
    return sl_cy_err(cy, map, prefix, "expected a mapping");
  for (yaml_node_pair_t *p = map ? map->data.mapping.pairs.start : NULL;
       p && p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = sl_cy_node(cy, p->key), *v = sl_cy_node(cy, p->value);
    const sl_cy_opt_t *o;
    if (!k || k->type != YAML_SCALAR_NODE)
      return sl_cy_err(cy, k, prefix, "keys must be plain names");
    full_key(key, sizeof(key), prefix, (const char *)k->data.scalar.value);
    if (!(o = sl_cy_find(tab, n, (const char *)k->data.scalar.value)))
      return sl_cy_err(cy, k, key, "unknown key");
    if (seen[o - tab])
      return sl_cy_err(cy, k, key, "given twice");
    seen[o - tab] = 1;
    if (o->type == SL_CY_NODE) {
      if (o->node_cb(cy, v, key, obj))
        return SL_ECONFIG;
      continue;
    }
    if (!v || v->type != YAML_SCALAR_NODE)
      return sl_cy_err(cy, v, key, "expected a value, not a %s",
                       v && v->type == YAML_MAPPING_NODE ? "mapping" : "list");
    if (sl_cy_parse_value(o, (const char *)v->data.scalar.value, obj, msg,
                          sizeof(msg)))
      return sl_cy_err(cy, v, key, "%s", msg);
  }
  for (size_t i = 0; i < n; i++) {
    if (!tab[i].def && !seen[i]) {
      full_key(key, sizeof(key), prefix, tab[i].name);
      return sl_cy_err(cy, map, key, "required key missing");
    }
  }
  return 0;
}
