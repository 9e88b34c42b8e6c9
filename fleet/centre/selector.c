/*
 * fleet/centre/selector.c: node label selectors ("site=berlin,tier!=test,
 * hw in (pi4|pi5),canary,!legacy"), parsed once with errors that name the
 * column, matched against a node's labels (from its Inventory).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/centre/centre.h"

enum { OP_EQ, OP_NE, OP_IN, OP_NOTIN, OP_EXISTS, OP_ABSENT };

typedef struct term {
  int op;
  char *key;
  char **vals;
  size_t n_vals;
} term_t;

struct sl_fleet_sel {
  term_t *t;
  size_t n;
};

const char *sl_fleet_label_get(const sl_fleet_label_t *l, size_t n,
                               const char *key) {
  for (size_t i = 0; i < n; i++)
    if (l[i].key && !strcmp(l[i].key, key))
      return l[i].value ? l[i].value : "";
  return NULL;
}

void sl_fleet_sel_free(sl_fleet_sel_t *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->n; i++) {
    free(s->t[i].key);
    for (size_t j = 0; j < s->t[i].n_vals; j++)
      free(s->t[i].vals[j]);
    free(s->t[i].vals);
  }
  free(s->t);
  free(s);
}

static bool word_char(char c) {
  return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_' ||
         c == '/' || c == ':';
}

typedef struct cur {
  const char *s, *p;
  char *err;
  size_t errlen;
} cur_t;

static void skip_ws(cur_t *c) {
  while (*c->p == ' ' || *c->p == '\t')
    c->p++;
}

static int fail(cur_t *c, const char *what) {
  if (*c->p)
    snprintf(c->err, c->errlen, "selector column %d: %s, found '%c'",
             (int)(c->p - c->s) + 1, what, *c->p);
  else
    snprintf(c->err, c->errlen, "selector column %d: %s, found the end",
             (int)(c->p - c->s) + 1, what);
  return SL_ECONFIG;
}

/* A word (key or value) into *out (owned). */
static int word(cur_t *c, const char *what, char **out) {
  skip_ws(c);
  const char *b = c->p;
  while (word_char(*c->p))
    c->p++;
  if (c->p == b)
    return fail(c, what);
  if (!(*out = strndup(b, (size_t)(c->p - b))))
    return -ENOMEM;
  return 0;
}

static bool keyword(cur_t *c, const char *kw) {
  size_t l = strlen(kw);
  if (strncmp(c->p, kw, l) || word_char(c->p[l]))
    return false;
  const char *q = c->p + l;
  while (*q == ' ' || *q == '\t')
    q++;
  if (*q != '(')
    return false;
  c->p = q;
  return true;
}

static int value_list(cur_t *c, term_t *t) {
  c->p++; /* '(' */
  for (;;) {
    char *v;
    int rc = word(c, "expected a value", &v);
    if (rc)
      return rc;
    char **nv = realloc(t->vals, (t->n_vals + 1) * sizeof(*nv));
    if (!nv) {
      free(v);
      return -ENOMEM;
    }
    t->vals = nv;
    t->vals[t->n_vals++] = v;
    skip_ws(c);
    if (*c->p == ')') {
      c->p++;
      return 0;
    }
    if (*c->p != '|')
      return fail(c, "expected '|' or ')' in a value list");
    c->p++;
  }
}

static int term(cur_t *c, term_t *t) {
  int rc;
  skip_ws(c);
  if (*c->p == '!' && c->p[1] != '=') {
    c->p++;
    t->op = OP_ABSENT;
    return word(c, "expected a label key after '!'", &t->key);
  }
  if ((rc = word(c, "expected a label key", &t->key)))
    return rc;
  skip_ws(c);
  if (*c->p == '=' || (*c->p == '!' && c->p[1] == '=')) {
    t->op = *c->p == '=' ? OP_EQ : OP_NE;
    c->p += *c->p == '=' ? (c->p[1] == '=' ? 2 : 1) : 2;
    if (!(t->vals = calloc(1, sizeof(char *))))
      return -ENOMEM;
    t->n_vals = 1;
    return word(c, "expected a value", &t->vals[0]);
  }
  if (keyword(c, "in")) {
    t->op = OP_IN;
    return value_list(c, t);
  }
  if (keyword(c, "notin")) {
    t->op = OP_NOTIN;
    return value_list(c, t);
  }
  t->op = OP_EXISTS;
  return 0;
}

int sl_fleet_sel_parse(const char *text, sl_fleet_sel_t **out, char *err,
                       size_t errlen) {
  cur_t c = {.s = text ? text : "", .p = text ? text : "", err, errlen};
  sl_fleet_sel_t *s = calloc(1, sizeof(*s));
  int rc = 0;

  *out = NULL;
  if (!s)
    return -ENOMEM;
  skip_ws(&c);
  while (*c.p) {
    term_t *nt = realloc(s->t, (s->n + 1) * sizeof(*nt));
    if (!nt) {
      rc = -ENOMEM;
      goto fail;
    }
    s->t = nt;
    memset(&s->t[s->n], 0, sizeof(term_t));
    s->n++;
    if ((rc = term(&c, &s->t[s->n - 1])))
      goto fail;
    skip_ws(&c);
    if (!*c.p)
      break;
    if (*c.p != ',') {
      rc = fail(&c, "expected ',' between terms (or '=', '!=', 'in (...)')");
      goto fail;
    }
    c.p++;
    skip_ws(&c);
    if (!*c.p) {
      rc = fail(&c, "expected a term after ','");
      goto fail;
    }
  }
  *out = s;
  return 0;
fail:
  sl_fleet_sel_free(s);
  return rc;
}

bool sl_fleet_sel_match(const sl_fleet_sel_t *s, const sl_fleet_label_t *l,
                        size_t n) {
  for (size_t i = 0; s && i < s->n; i++) {
    const term_t *t = &s->t[i];
    const char *v = sl_fleet_label_get(l, n, t->key);
    bool in = false;
    for (size_t j = 0; v && j < t->n_vals; j++)
      in |= !strcmp(v, t->vals[j]);
    switch (t->op) {
    case OP_EQ:
    case OP_IN:
      if (!in)
        return false;
      break;
    case OP_NE:
    case OP_NOTIN:
      if (in)
        return false;
      break;
    case OP_EXISTS:
      if (!v)
        return false;
      break;
    case OP_ABSENT:
      if (v)
        return false;
      break;
    }
  }
  return true;
}
