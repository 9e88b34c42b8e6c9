/*
 * process/route.c: what a pipeline matches (stream, source glob with
 * captures, event kinds, attribute globs) and the route table the sync and
 * fan-out layers read.
 *
 * Source globs: '*' matches any run of characters ('/' included), '?' one
 * character, '{name}' one whole path segment (a maximal run without '/',
 * at least one character) captured as name, for a group key. At most two
 * '*' per pattern keep matching at O(n^2) on hostile sources.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "process/process_int.h"

#define STARS_MAX 2

static char *dup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

int process__match_compile(pmatch_t *m, const sl_process_pipeline_conf_t *pc,
                           char *errstr, size_t errlen) {
  const char *pat = pc->source && *pc->source ? pc->source : NULL;
  size_t stars = 0;
  memset(m, 0, sizeof(*m));
  m->kinds = pc->kinds ? pc->kinds : SL_PROCESS_KIND_ANY;
  if (pc->stream && *pc->stream && !(m->stream = dup(pc->stream)))
    return -ENOMEM;
  if (pc->n_attrs > SL_PROCESS_MATCH_ATTRS) {
    snprintf(errstr, errlen, "match: more than %d attribute conditions",
             SL_PROCESS_MATCH_ATTRS);
    return SL_ECONFIG;
  }
  for (size_t i = 0; i < pc->n_attrs; i++) {
    const char *eq = strchr(pc->attrs[i], '=');
    if (!eq || eq == pc->attrs[i]) {
      snprintf(errstr, errlen,
               "match.attributes[%zu]: \"%.64s\" is not key=glob", i,
               pc->attrs[i]);
      return SL_ECONFIG;
    }
    if (!(m->attr_key[i] =
              strndup(pc->attrs[i], (size_t)(eq - pc->attrs[i]))) ||
        !(m->attr_glob[i] = dup(eq + 1)))
      return -ENOMEM;
    m->nattrs = i + 1;
  }
  if (!pat)
    return 0;
  if (!(m->source = dup(pat)) ||
      !(m->toks = calloc(strlen(pat) + 1, sizeof(*m->toks))))
    return -ENOMEM;
  for (size_t i = 0; pat[i];) {
    pglob_tok_t *t = &m->toks[m->ntoks];
    if (pat[i] == '*') {
      if (++stars > STARS_MAX) {
        snprintf(errstr, errlen,
                 "match.source: column %zu: at most %d '*' per pattern", i + 1,
                 STARS_MAX);
        return SL_ECONFIG;
      }
      t->type = 1;
      i++;
    } else if (pat[i] == '?') {
      t->type = 2;
      i++;
    } else if (pat[i] == '{') {
      size_t j = i + 1;
      while ((pat[j] >= 'a' && pat[j] <= 'z') ||
             (pat[j] >= '0' && pat[j] <= '9') || pat[j] == '_')
        j++;
      if (pat[j] != '}' || j == i + 1) {
        snprintf(errstr, errlen,
                 "match.source: column %zu: expected {name} with name of "
                 "[a-z0-9_]",
                 i + 1);
        return SL_ECONFIG;
      }
      if (m->ncap == SL_PROCESS_CAPTURES) {
        snprintf(errstr, errlen, "match.source: more than %d captures",
                 SL_PROCESS_CAPTURES);
        return SL_ECONFIG;
      }
      if (!(m->capname[m->ncap] = strndup(pat + i + 1, j - i - 1)))
        return -ENOMEM;
      for (size_t k = 0; k < m->ncap; k++) {
        if (!strcmp(m->capname[k], m->capname[m->ncap])) {
          snprintf(errstr, errlen,
                   "match.source: column %zu: capture {%s} "
                   "used twice",
                   i + 1, m->capname[k]);
          m->ncap++;
          return SL_ECONFIG;
        }
      }
      t->type = 3;
      t->off = (uint32_t)m->ncap++;
      i = j + 1;
    } else {
      size_t j = i;
      while (pat[j] && pat[j] != '*' && pat[j] != '?' && pat[j] != '{')
        j++;
      t->type = 0;
      t->off = (uint32_t)i;
      t->len = (uint32_t)(j - i);
      i = j;
    }
    m->ntoks++;
  }
  return 0;
}

void process__match_free(pmatch_t *m) {
  free(m->source);
  free(m->toks);
  free(m->stream);
  for (size_t i = 0; i < SL_PROCESS_CAPTURES; i++)
    free(m->capname[i]);
  for (size_t i = 0; i < SL_PROCESS_MATCH_ATTRS; i++) {
    free(m->attr_key[i]);
    free(m->attr_glob[i]);
  }
  memset(m, 0, sizeof(*m));
}

static bool glob_at(const pglob_tok_t *toks, size_t ntoks, size_t ti,
                    const char *pat, const char *s, size_t i, size_t n,
                    pcapture_t *caps) {
  for (; ti < ntoks; ti++) {
    const pglob_tok_t *t = &toks[ti];
    switch (t->type) {
    case 0:
      if (n - i < t->len || memcmp(s + i, pat + t->off, t->len))
        return false;
      i += t->len;
      break;
    case 2:
      if (i >= n)
        return false;
      i++;
      break;
    case 3: {
      size_t j = i;
      while (j < n && s[j] != '/')
        j++;
      if (j == i)
        return false;
      caps[t->off].s = s + i;
      caps[t->off].len = j - i;
      i = j;
      break;
    }
    default: /* star: shortest first */
      if (ti + 1 == ntoks)
        return true;
      for (size_t k = i; k <= n; k++) {
        if (glob_at(toks, ntoks, ti + 1, pat, s, k, n, caps))
          return true;
      }
      return false;
    }
  }
  return i == n;
}

bool process__glob_caps(const pglob_tok_t *toks, size_t ntoks, const char *pat,
                        const char *s, size_t slen, pcapture_t *caps) {
  return glob_at(toks, ntoks, 0, pat, s, 0, slen, caps);
}

static unsigned kind_bit(const Sluice__V1__Event *ev) {
  switch (ev->body_case) {
  case SLUICE__V1__EVENT__BODY_READING:
    return SL_PROCESS_KIND_READING;
  case SLUICE__V1__EVENT__BODY_INFERENCE:
    return SL_PROCESS_KIND_INFERENCE;
  case SLUICE__V1__EVENT__BODY_RAW:
    return SL_PROCESS_KIND_RAW;
  case SLUICE__V1__EVENT__BODY_STATUS:
    return SL_PROCESS_KIND_STATUS;
  case SLUICE__V1__EVENT__BODY_GAP:
    return SL_PROCESS_KIND_GAP;
  default:
    return 0;
  }
}

bool process__match(const pmatch_t *m, const char *stream,
                    const Sluice__V1__Event *ev, pcapture_t *caps) {
  const char *src = ev->source ? ev->source : "";
  (void)stream; /* checked once per batch by the caller */
  if (!(kind_bit(ev) & m->kinds))
    return false;
  for (size_t i = 0; i < m->nattrs; i++) {
    const char *v = process__attr(ev, m->attr_key[i], strlen(m->attr_key[i]));
    if (!v ||
        !process__glob(m->attr_glob[i], strlen(m->attr_glob[i]), v, strlen(v)))
      return false;
  }
  if (m->source &&
      !process__glob_caps(m->toks, m->ntoks, m->source, src, strlen(src), caps))
    return false;
  return true;
}

size_t sl_process_routes(const sl_process_t *pr, sl_process_route_t *out,
                         size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < pr->npipes; i++) {
    const ppipeline_t *p = &pr->pipes[i];
    for (size_t k = 0; k < p->nsteps; k++) {
      const pstep_t *s = &p->steps[k];
      if (s->kind != SL_PROCESS_ROUTE)
        continue;
      if (n < cap) {
        out[n].pipeline = p->name;
        out[n].kind = s->c.route;
        out[n].stream =
            s->stream ? s->stream : (p->m.stream ? p->m.stream : "");
        out[n].topic = s->topic ? s->topic : "";
        out[n].key = s->key ? s->key : "source";
        out[n].format = s->c.format;
      }
      n++;
    }
  }
  return n;
}
