/*
 * config/output.c: everything a table produces besides a loaded struct:
 * the reload diff, the effective-config dump and the Markdown reference
 * (config/cfg.h). All three walk the same rows, so they cannot drift from
 * the parser.
 */
#include <errno.h>
#include <string.h>

#include "config/cfg.h"

#define VALLEN 1024

static void add_change(sl_cfg_diff_t *d, const char *key, bool reloadable) {
  if (d->n_changed < SL_CFG_DIFF_MAX) {
    SL_CFG_FMT(d->changed[d->n_changed].key, sizeof(d->changed[0].key), "%s",
               key);
    d->changed[d->n_changed].reloadable = reloadable;
  }
  d->n_changed++;
  if (!reloadable)
    d->verdict = SL_CFG_RESTART;
  else if (d->verdict == SL_CFG_SAME)
    d->verdict = SL_CFG_RELOADABLE;
}

/* The first row of an element table is the element's identity (its name). */
static const char *elem_id(const sl_cfg_section_t *sub, const void *el) {
  const sl_cfg_opt_t *o = &sub->opts[0];
  if (o->type != SL_CFG_STRING)
    return NULL;
  return *(char *const *)(const void *)((const char *)el + o->off);
}

static void diff_section(const sl_cfg_section_t *sec, const void *a,
                         const void *b, const char *prefix, sl_cfg_diff_t *d) {
  for (size_t i = 0; i < sec->n_opts; i++) {
    const sl_cfg_opt_t *o = &sec->opts[i];
    char key[96];
    SL_CFG_FMT(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", o->name);
    if (o->type != SL_CFG_SECTION_LIST) {
      if (!sl_cfg_field_equal(o, a, b))
        add_change(d, key, o->flags & SL_CFG_RELOAD);
      continue;
    }
    sl_cfg_array_t x, y;
    memcpy(&x, (const char *)a + o->off, sizeof(x));
    memcpy(&y, (const char *)b + o->off, sizeof(y));
    bool same_ids = x.n == y.n;
    for (size_t k = 0; k < x.n && same_ids; k++) {
      const char *ix = elem_id(o->sub, (char *)x.v + k * o->sub->size);
      const char *iy = elem_id(o->sub, (char *)y.v + k * o->sub->size);
      same_ids = ix && iy && !strcmp(ix, iy);
    }
    if (!same_ids) {
      add_change(d, key, o->flags & SL_CFG_RELOAD);
      continue;
    }
    for (size_t k = 0; k < x.n; k++) {
      const void *ex = (char *)x.v + k * o->sub->size;
      char sub[96];
      SL_CFG_FMT(sub, sizeof(sub), "%s[%s]", key, elem_id(o->sub, ex));
      diff_section(o->sub, ex, (char *)y.v + k * o->sub->size, sub, d);
    }
  }
}

void sl_cfg_diff(const sl_cfg_section_t *sec, const void *a, const void *b,
                 sl_cfg_diff_t *d) {
  memset(d, 0, sizeof(*d));
  d->verdict = SL_CFG_SAME;
  diff_section(sec, a, b, "", d);
}

/* Number of leading dotted components a and b share, leaves excluded. */
static size_t common_sections(const char *a, const char *b) {
  size_t n = 0;
  for (;;) {
    const char *da = strchr(a, '.'), *db = strchr(b, '.');
    if (!da || !db || da - a != db - b || strncmp(a, b, (size_t)(da - a)))
      return n;
    n++;
    a = da + 1;
    b = db + 1;
  }
}

static void value_text(const sl_cfg_opt_t *o, const void *obj, char *buf,
                       size_t len) {
  sl_cfg_format(o, obj, buf, len);
  if ((o->flags & SL_CFG_SECRET) && strcmp(buf, "\"\""))
    SL_CFG_FMT(buf, len, "\"<redacted>\"");
}

/*
 * Emits obj's rows as nested YAML at indent. With item set, the first line
 * is the "- " of a sequence item.
 */
static void dump_section(FILE *out, const sl_cfg_section_t *sec,
                         const void *obj, int indent, bool item) {
  const char *prev = "";
  char val[VALLEN];
  for (size_t i = 0; i < sec->n_opts; i++) {
    const sl_cfg_opt_t *o = &sec->opts[i];
    size_t depth = common_sections(prev, o->name), d = 0;
    const char *p = o->name;
    /* Skip the shared sections, open the new ones, then the leaf. */
    for (const char *dot; (dot = strchr(p, '.')); p = dot + 1, d++) {
      if (d < depth)
        continue;
      fprintf(out, "%*s%s%.*s:\n", item ? indent - 2 : indent + 2 * (int)d, "",
              item ? "- " : "", (int)(dot - p), p);
      item = false;
    }
    int ind = item ? indent - 2 : indent + 2 * (int)d;
    const char *lead = item ? "- " : "";
    item = false;
    prev = o->name;
    if (o->type != SL_CFG_SECTION_LIST) {
      value_text(o, obj, val, sizeof(val));
      fprintf(out, "%*s%s%s: %s\n", ind, "", lead, p, val);
      continue;
    }
    sl_cfg_array_t a;
    memcpy(&a, (const char *)obj + o->off, sizeof(a));
    fprintf(out, "%*s%s%s:%s\n", ind, "", lead, p, a.n ? "" : " []");
    for (size_t k = 0; k < a.n; k++)
      dump_section(out, o->sub, (char *)a.v + k * o->sub->size, ind + 4, true);
  }
}

void sl_cfg_dump(const sl_cfg_section_t *sec, const void *obj, FILE *out) {
  dump_section(out, sec, obj, 0, false);
}

/* Markdown table cell: no pipes or newlines. */
static void cell(FILE *out, const char *s) {
  for (; *s; s++) {
    if (*s == '|')
      fputs("\\|", out);
    else
      fputc(*s == '\n' ? ' ' : *s, out);
  }
}

static void doc_range(FILE *out, const sl_cfg_opt_t *o) {
  if (o->enums) {
    for (int i = 0; o->enums[i]; i++)
      fprintf(out, "%s`%s`", i ? ", " : "", o->enums[i]);
    if (o->type == SL_CFG_FLAGS)
      fputs(", `all`", out);
  } else if (o->type == SL_CFG_SECTION_LIST && o->max) {
    fprintf(out, "at most %s items", o->max);
  } else if (o->min && o->max) {
    fprintf(out, "%s .. %s", o->min, o->max);
  } else if (o->min) {
    fprintf(out, ">= %s", o->min);
  } else if (o->max) {
    fprintf(out, "<= %s", o->max);
  }
}

void sl_cfg_doc_table(FILE *out, const sl_cfg_section_t *sec,
                      const char *prefix, const char *env_prefix, bool reload) {
  bool env = env_prefix != NULL;
  fprintf(out,
          "| Key | Type | Default | Range / values |%s%s "
          "Description |\n",
          reload ? " Reload |" : "", env ? " Environment |" : "");
  fprintf(out, "|---|---|---|---|%s%s---|\n", reload ? "---|" : "",
          env ? "---|" : "");
  for (size_t i = 0; i < sec->n_opts; i++) {
    const sl_cfg_opt_t *o = &sec->opts[i];
    char var[128];
    fprintf(out, "| `%s%s` | %s | ", prefix, o->name,
            sl_cfg_type_name(o->type));
    if (o->flags & SL_CFG_REQUIRED)
      fputs("*required*", out);
    else if (o->doc_def)
      fprintf(out, "`%s`", o->doc_def);
    else if (o->type == SL_CFG_SECTION_LIST)
      fputs("`[]`", out);
    else if (o->def && !*o->def)
      fputs(o->type == SL_CFG_FLAGS || o->type == SL_CFG_LIST ? "`[]`"
                                                              : "`\"\"`",
            out);
    else if (o->def)
      fprintf(out, "`%s`", o->def);
    fputs(" | ", out);
    doc_range(out, o);
    fputs(" |", out);
    if (reload)
      fprintf(out, " %s%s |", o->flags & SL_CFG_RELOAD ? "yes" : "restart",
              o->flags & SL_CFG_REMOTE ? ", fleet" : "");
    if (env) {
      sl_cfg_env_name(env_prefix, o->name, var, sizeof(var));
      if (o->type == SL_CFG_SECTION_LIST)
        fputs(" - |", out);
      else
        fprintf(out, " `%s` |", var);
    }
    fputc(' ', out);
    cell(out, o->desc);
    if (o->flags & SL_CFG_SECRET)
      fputs(" *Secret: never printed.*", out);
    fputs(" |\n", out);
  }
}

int sl_cfg_doc_markdown(const sl_cfg_section_t *root, FILE *out) {
  for (size_t i = 0; i < root->n_opts;) {
    const char *name = root->opts[i].name, *dot = strchr(name, '.');
    size_t plen = dot ? (size_t)(dot - name) : strlen(name), j = i;
    /* One table per top-level section: rows i..j-1 share the prefix. */
    while (j < root->n_opts && !strncmp(root->opts[j].name, name, plen) &&
           (root->opts[j].name[plen] == '.' || !root->opts[j].name[plen]))
      j++;
    fprintf(out, "\n## %.*s\n\n", (int)plen, name);
    const sl_cfg_section_t part = {.opts = root->opts + i, .n_opts = j - i};
    sl_cfg_doc_table(out, &part, "", root->env_prefix, true);
    for (size_t k = i; k < j; k++) {
      const sl_cfg_opt_t *o = &root->opts[k];
      char prefix[128];
      if (o->type != SL_CFG_SECTION_LIST)
        continue;
      SL_CFG_FMT(prefix, sizeof(prefix), "%s[].", o->name);
      fprintf(out, "\nEach item of `%s`:\n\n", o->name);
      sl_cfg_doc_table(out, o->sub, prefix, NULL, true);
    }
    i = j;
  }
  return fflush(out) || ferror(out) ? -EIO : 0;
}
