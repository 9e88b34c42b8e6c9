/*
 * config/output.c: everything the table produces besides a loaded
 * config: the reload diff, the effective-config dump and the Markdown
 * reference. All three walk the same rows, so they cannot drift from the
 * parser.
 */
#include <errno.h>
#include <string.h>

#include "config/config_int.h"

#define VALLEN 1024

static void add_change(sl_config_diff_t *d, const char *key, bool reloadable) {
  if (d->n_changed < SL_CONFIG_DIFF_MAX) {
    SL_CFG_FMT(d->changed[d->n_changed].key, sizeof(d->changed[0].key), "%s",
               key);
    d->changed[d->n_changed].reloadable = reloadable;
  }
  d->n_changed++;
  if (!reloadable)
    d->verdict = SL_CONFIG_RESTART;
  else if (d->verdict == SL_CONFIG_SAME)
    d->verdict = SL_CONFIG_RELOADABLE;
}

/* The first row of an element table is the element's identity (its name). */
static const char *elem_id(const sl_cfg_section_t *sub, const void *el) {
  const sl_cfg_opt_t *o = &sub->opts[0];
  if (o->type != SL_CFG_STRING)
    return NULL;
  return *(char *const *)(const void *)((const char *)el + o->off);
}

static void diff_section(const sl_cfg_section_t *sec, const void *a,
                         const void *b, const char *prefix,
                         sl_config_diff_t *d) {
  for (size_t i = 0; i < sec->n_opts; i++) {
    const sl_cfg_opt_t *o = &sec->opts[i];
    char key[96];
    SL_CFG_FMT(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", o->name);
    if (o->type != SL_CFG_SECTION_LIST) {
      if (!config__field_equal(o, a, b))
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

void sl_config_diff(const sl_config_t *old, const sl_config_t *nw,
                    sl_config_diff_t *d) {
  memset(d, 0, sizeof(*d));
  d->verdict = SL_CONFIG_SAME;
  diff_section(&sl_config__root, old, nw, "", d);
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
  config__format(o, obj, buf, len);
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

int sl_config_dump(const sl_config_t *cfg, FILE *out) {
  fprintf(out, "# Effective sluice configuration (defaults < file < "
               "environment).\n");
  dump_section(out, &sl_config__root, cfg, 0, false);
  return fflush(out) || ferror(out) ? -EIO : 0;
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

static void doc_rows(FILE *out, const sl_cfg_section_t *sec, const char *prefix,
                     bool env) {
  fprintf(out,
          "| Key | Type | Default | Range / values | Reload |%s "
          "Description |\n",
          env ? " Environment |" : "");
  fprintf(out, "|---|---|---|---|---|%s---|\n", env ? "---|" : "");
  for (size_t i = 0; i < sec->n_opts; i++) {
    const sl_cfg_opt_t *o = &sec->opts[i];
    char var[128];
    fprintf(out, "| `%s%s` | %s | ", prefix, o->name,
            config__type_name(o->type));
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
    fprintf(out, " | %s |", o->flags & SL_CFG_RELOAD ? "yes" : "restart");
    if (env) {
      config__env_name(o->name, var, sizeof(var));
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

static const char doc_intro[] =
    "# sluice configuration reference\n"
    "\n"
    "<!-- Generated by `sluice config-docs` from config/schema/options.c. "
    "Do not edit:\n"
    "     regenerate with `./build/daemon/sluice config-docs > "
    "docs/CONFIGURATION.md`;\n"
    "     CI (scripts/check-config-doc.sh) fails when this file is stale. "
    "-->\n"
    "\n"
    "sluice reads one YAML file (`sluice -c FILE`; check it with "
    "`sluice check-config -c FILE`,\n"
    "add `--print` to see the effective configuration). Keys are nested "
    "mappings\n"
    "(`store:` then `budget_bytes:`) or dotted keys (`store.budget_bytes:`); "
    "both name the same option.\n"
    "Unknown keys, duplicate keys, wrong types and out-of-range values are "
    "errors, reported\n"
    "all at once with file, line, column, key and value.\n"
    "\n"
    "## Precedence\n"
    "\n"
    "built-in default < configuration file < environment. Every scalar "
    "option can be set from the\n"
    "environment as `SLUICE_` + its key upper-cased with dots as "
    "underscores\n"
    "(`store.budget_bytes` -> `SLUICE_STORE_BUDGET_BYTES=2GiB`); values are "
    "validated like the\n"
    "file's and errors name the variable. Lists take comma-separated "
    "values\n"
    "(`SLUICE_LOG_DEBUG=store,sync`). List sections (`streams`) come from the "
    "file only. Other\n"
    "`SLUICE_*` variables are ignored.\n"
    "\n"
    "## Value types\n"
    "\n"
    "| Type | Accepts |\n"
    "|---|---|\n"
    "| bool | `true`, `false` (also `yes`/`no`, `on`/`off`) |\n"
    "| int, uint | decimal integers (`uint`: no sign) |\n"
    "| size | bytes with an optional unit: `4096`, `512KiB`, `512MiB`, "
    "`1GiB`, `1TiB` (1024-based; also `Ki`, `Mi`, `Gi`, `Ti`), `2KB`, "
    "`2MB`, `2GB`, `2TB` (1000-based) |\n"
    "| duration | `0`, or numbers with units `ms`, `s`, `m`, `h`, `d`, "
    "combinable: `250ms`, `5s`, `1h30m` |\n"
    "| double | decimal number: `0.5`, `1e3` |\n"
    "| string | any scalar; quote it when YAML would read it otherwise |\n"
    "| enum | one of the listed names |\n"
    "| path | absolute path, or `\"\"` for none |\n"
    "| list | YAML sequence (`[a, b]`) or a comma-separated string |\n"
    "| list of mappings | YAML sequence of mappings with the keys listed "
    "for it |\n"
    "\n"
    "## Reload\n"
    "\n"
    "On SIGHUP the new file is validated completely before anything is "
    "applied. When every\n"
    "changed key is reloadable (`yes` below) it is applied at runtime; if "
    "any changed key says\n"
    "`restart`, the running configuration is kept and the keys needing a "
    "restart are reported.\n"
    "\n"
    "## Secrets\n"
    "\n"
    "Secret options are never printed (`check-config --print` shows "
    "`<redacted>`) nor echoed\n"
    "in errors. `kafka.properties` shows only the values of an allow-list "
    "of harmless librdkafka\n"
    "keys (tuning, timeouts, `security.protocol`, `sasl.mechanism(s)`, "
    "file locations); every other\n"
    "value prints as `<redacted>`, and an item without `=` is refused "
    "without being echoed.\n"
    "\n"
    "## File permissions\n"
    "\n"
    "The configuration file must not be writable by group or others "
    "(`mode & 0022 == 0`): the\n"
    "daemon, `check-config` and SIGHUP refuse it, naming the file. Private "
    "key files\n"
    "(`kafka.ssl_key_location`, `mqtt.tls_keyfile`, and "
    "`ssl.key.location`, `ssl.keystore.location`,\n"
    "`sasl.kerberos.keytab` in `kafka.properties`) must not be accessible "
    "by others nor writable by\n"
    "group (`mode & 0027 == 0`); certificate and CA files (`mqtt.tls_ca`, "
    "`mqtt.tls_cert`, other\n"
    "`*.location` properties) must not be writable by group or others. "
    "Nesting deeper than 32\n"
    "levels and files over 1 MiB are refused. See "
    "docs/security/ops.md.\n";

int sl_config_doc_markdown(FILE *out) {
  const sl_cfg_section_t *root = &sl_config__root;
  fputs(doc_intro, out);
  for (size_t i = 0; i < root->n_opts;) {
    const char *name = root->opts[i].name, *dot = strchr(name, '.');
    size_t plen = dot ? (size_t)(dot - name) : strlen(name), j = i;
    /* One table per top-level section: rows i..j-1 share the prefix. */
    while (j < root->n_opts && !strncmp(root->opts[j].name, name, plen) &&
           (root->opts[j].name[plen] == '.' || !root->opts[j].name[plen]))
      j++;
    fprintf(out, "\n## %.*s\n\n", (int)plen, name);
    const sl_cfg_section_t part = {.opts = root->opts + i, .n_opts = j - i};
    doc_rows(out, &part, "", true);
    for (size_t k = i; k < j; k++) {
      const sl_cfg_opt_t *o = &root->opts[k];
      char prefix[128];
      if (o->type != SL_CFG_SECTION_LIST)
        continue;
      SL_CFG_FMT(prefix, sizeof(prefix), "%s[].", o->name);
      fprintf(out, "\nEach item of `%s`:\n\n", o->name);
      doc_rows(out, o->sub, prefix, false);
    }
    i = j;
  }
  return fflush(out) || ferror(out) ? -EIO : 0;
}
