/*
 * config/cfg.c: the engine's loader (config/cfg.h). It walks a libyaml
 * document against a table: defaults first, then the file, then the
 * environment, then required keys, key files and the table's finish hook.
 * Every problem is collected (up to SL_CFG_MAX_ERRORS) so one
 * check-config run shows all of them; nothing is applied unless the whole
 * load succeeds, which gives SIGHUP reload its validate-then-apply shape.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>

#include <yaml.h>

#include "config/cfg.h"

struct sl_cfg_errs {
  char *buf;        /* caller's errstr */
  size_t len;       /* its size */
  size_t used;      /* bytes written, excluding the NUL */
  unsigned count;   /* errors seen */
  const char *file; /* default origin in messages */
  /* Keys reported so far, so that the cross-key rules (run with the
   * per-key errors, every error at once) do not pile a second message on
   * a key already wrong on its own. */
  bool finishing;
  unsigned nkeys;
  char keys[SL_CFG_MAX_ERRORS][96];
  unsigned sec_flags;         /* the root table's SL_CFG_SEC_* */
  const struct inst *cur;     /* struct whose finish hook runs, or NULL */
  unsigned cur_line, cur_col; /* its mapping's position (0: the root) */
  const char *remote;         /* origin of the remote layer, or NULL */
};

/* Where a row's current value came from. */
enum { SRC_DEFAULT = 0, SRC_FILE, SRC_ENV, SRC_REMOTE };

/* One struct being filled: the root config or one list element. */
typedef struct inst {
  const sl_cfg_section_t *sec;
  void *obj;
  const char *prefix; /* "" or "streams[2]": prefixed to keys in messages */
  unsigned char *src; /* per row: SRC_* */
  unsigned *line;     /* per row: 1-based position when SRC_FILE */
  unsigned *col;
  unsigned *vline; /* per row: position of the value when SRC_FILE */
  unsigned *vcol;
  const char **env; /* per row: variable name when SRC_ENV */
} inst_t;

typedef struct ctx {
  sl_cfg_errs_t *errs;
  yaml_document_t *doc;
  bool remote; /* walking the remote layer */
  bool strict; /* REMOTE rows belong to the remote layer only */
} ctx_t;

#define KEYLEN 256

void sl_cfg_errf(sl_cfg_errs_t *errs, const char *origin, unsigned line,
                 unsigned col, const char *key, const char *fmt, ...) {
  va_list ap;
  char msg[512];
  int n;
  if (key && *key) {
    for (unsigned i = 0; errs->finishing && i < errs->nkeys; i++)
      if (!strcmp(errs->keys[i], key))
        return; /* already wrong on its own */
    if (!errs->finishing && errs->nkeys < SL_ARRAY_SIZE(errs->keys))
      SL_CFG_FMT(errs->keys[errs->nkeys++], sizeof(errs->keys[0]), "%s", key);
  }
  if (++errs->count > SL_CFG_MAX_ERRORS + 1 || !errs->len)
    return;
  if (errs->count == SL_CFG_MAX_ERRORS + 1) {
    SL_CFG_FMT(msg, sizeof(msg), "too many errors, stopping");
  } else {
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
  }
  if (!origin)
    origin = errs->file;
  if (errs->used >= errs->len - 1)
    return;
  char *p = errs->buf + errs->used;
  size_t room = errs->len - errs->used;
  const char *nl = errs->used ? "\n" : "";
  if (errs->count > SL_CFG_MAX_ERRORS)
    n = snprintf(p, room, "%s%s: %s", nl, origin, msg);
  else if (line && key && *key)
    n = snprintf(p, room, "%s%s:%u:%u: %s: %s", nl, origin, line, col, key,
                 msg);
  else if (line)
    n = snprintf(p, room, "%s%s:%u:%u: %s", nl, origin, line, col, msg);
  else if (key && *key)
    n = snprintf(p, room, "%s%s: %s: %s", nl, origin, key, msg);
  else
    n = snprintf(p, room, "%s%s: %s", nl, origin, msg);
  if (n > 0)
    errs->used = SL_MIN(errs->used + (size_t)n, errs->len - 1);
}

static int row_of(const inst_t *in, const char *row) {
  for (size_t i = 0; row && i < in->sec->n_opts; i++)
    if (!strcmp(in->sec->opts[i].name, row))
      return (int)i;
  return -1;
}

bool sl_cfg_given(const sl_cfg_errs_t *errs, const char *row) {
  int i = errs->cur ? row_of(errs->cur, row) : -1;
  return i >= 0 && errs->cur->src[i] != SRC_DEFAULT;
}

void sl_cfg_errf_at(sl_cfg_errs_t *errs, const char *row, const char *fmt,
                    ...) {
  const inst_t *in = errs->cur;
  char msg[512], key[KEYLEN];
  unsigned line = errs->cur_line, col = errs->cur_col;
  va_list ap;
  int i = in ? row_of(in, row) : -1;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (!in) {
    sl_cfg_errf(errs, NULL, 0, 0, row, "%s", msg);
    return;
  }
  if (row)
    SL_CFG_FMT(key, sizeof(key), "%s%s%s", in->prefix, *in->prefix ? "." : "",
               row);
  else
    SL_CFG_FMT(key, sizeof(key), "%s", in->prefix);
  if (i >= 0 && (in->src[i] == SRC_FILE || in->src[i] == SRC_REMOTE)) {
    line = in->vline[i];
    col = in->vcol[i];
  }
  sl_cfg_errf(errs, i >= 0 && in->src[i] == SRC_REMOTE ? errs->remote : NULL,
              line, col, key, "%s", msg);
}

static bool too_many(const ctx_t *ctx) {
  return ctx->errs->count > SL_CFG_MAX_ERRORS;
}

/* Quotes a value for a message: bounded, control bytes shown as '?'. */
static const char *show(const sl_cfg_opt_t *o, const char *s, char *buf,
                        size_t len) {
  size_t k = 0, n = strlen(s);
  if (o->flags & (SL_CFG_SECRET | SL_CFG_KV_SECRETS))
    return "<redacted>";
  buf[k++] = '"';
  for (size_t i = 0; i < n && i < 64 && k + 5 < len; i++)
    buf[k++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  if (n > 64 && k + 5 < len) {
    memcpy(buf + k, "...", 3);
    k += 3;
  }
  buf[k++] = '"';
  buf[k] = '\0';
  return buf;
}

static void full_key(const inst_t *in, const char *rel, char *buf, size_t len) {
  SL_CFG_FMT(buf, len, "%s%s%s", in->prefix, *in->prefix && *rel ? "." : "",
             rel);
}

static const char *node_kind(const yaml_node_t *n) {
  return n->type == YAML_MAPPING_NODE    ? "a mapping"
         : n->type == YAML_SEQUENCE_NODE ? "a list"
                                         : "a scalar";
}

/* Plain ~, null and the empty scalar are YAML's null: read as "". */
static bool is_null(const yaml_node_t *n) {
  const char *s = (const char *)n->data.scalar.value;
  return n->type == YAML_SCALAR_NODE &&
         n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
         (!*s || !strcmp(s, "~") || !strcasecmp(s, "null"));
}

static void inst_free(inst_t *in) {
  free(in->src);
  free(in->line);
  free(in->col);
  free(in->vline);
  free(in->vcol);
  free(in->env);
}

/* Allocates the per-row state and stores every default. */
static void inst_init(inst_t *in, const sl_cfg_section_t *sec, void *obj,
                      const char *prefix, sl_cfg_errs_t *errs) {
  size_t n = sec->n_opts ? sec->n_opts : 1;
  in->sec = sec;
  in->obj = obj;
  in->prefix = prefix;
  in->src = calloc(n, 1);
  in->line = calloc(n, sizeof(unsigned));
  in->col = calloc(n, sizeof(unsigned));
  in->vline = calloc(n, sizeof(unsigned));
  in->vcol = calloc(n, sizeof(unsigned));
  in->env = calloc(n, sizeof(char *));
  if (!in->src || !in->line || !in->col || !in->vline || !in->vcol || !in->env)
    abort();
  for (size_t i = 0; i < sec->n_opts; i++) {
    const sl_cfg_opt_t *o = &sec->opts[i];
    const char *def = o->def;
    sl_cfg_val_t v;
    char why[256];
    if (o->type == SL_CFG_SECTION_LIST)
      continue;
    if (!def)
      def = "";
    if (sl_cfg_parse(o, def, &v, why, sizeof(why))) {
      /* Only a broken table gets here; tests/config checks every row. */
      if (o->def)
        sl_cfg_errf(errs, "config table", 0, 0, o->name, "default \"%s\" %s",
                    def, why);
      /* Required scalar rows must still hold valid memory. */
      memset(&v, 0, sizeof(v));
      if (o->type == SL_CFG_STRING || o->type == SL_CFG_PATH)
        v.s = strdup("");
      if ((o->type == SL_CFG_STRING || o->type == SL_CFG_PATH) && !v.s)
        abort();
    }
    sl_cfg_store(o, obj, &v);
  }
}

static int find_row(const sl_cfg_section_t *sec, const char *path) {
  for (size_t i = 0; i < sec->n_opts; i++) {
    if (!strcmp(sec->opts[i].name, path))
      return (int)i;
  }
  return -1;
}

/* True when path names a section: some row starts with "path.". */
static bool is_section(const sl_cfg_section_t *sec, const char *path) {
  size_t n = strlen(path);
  for (size_t i = 0; i < sec->n_opts; i++) {
    if (!strncmp(sec->opts[i].name, path, n) && sec->opts[i].name[n] == '.')
      return true;
  }
  return false;
}

/* Closest row name or section prefix to path, or NULL if none is close. */
static const char *suggest(const sl_cfg_section_t *sec, const char *path,
                           char *buf, size_t len) {
  unsigned best = 255, limit = SL_MAX(2u, (unsigned)strlen(path) / 4);
  for (size_t i = 0; i < sec->n_opts; i++) {
    const char *name = sec->opts[i].name;
    for (const char *p = name;; p++) {
      if (*p == '.' || !*p) {
        char cand[KEYLEN];
        SL_CFG_FMT(cand, sizeof(cand), "%.*s", (int)(p - name), name);
        unsigned d = sl_cfg_distance(path, cand);
        if (d < best && d <= limit) {
          best = d;
          SL_CFG_FMT(buf, len, "%s", cand);
        }
      }
      if (!*p)
        break;
    }
  }
  return best == 255 ? NULL : buf;
}

static void walk_mapping(ctx_t *ctx, inst_t *in, yaml_node_t *node,
                         const char *path);

static void load_list_section(ctx_t *ctx, inst_t *in, int idx, yaml_node_t *val,
                              const char *key) {
  const sl_cfg_opt_t *o = &in->sec->opts[idx];
  const sl_cfg_section_t *sub = o->sub;
  sl_cfg_array_t a = {0};
  size_t n = 0, max = SIZE_MAX;
  sl_cfg_val_t lim;
  if (is_null(val))
    goto store;
  if (val->type != YAML_SEQUENCE_NODE) {
    sl_cfg_errf(ctx->errs, NULL, (unsigned)val->start_mark.line + 1,
                (unsigned)val->start_mark.column + 1, key,
                "expected a list of mappings, got %s", node_kind(val));
    return;
  }
  n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
  if (o->max && !sl_cfg_parse(&(sl_cfg_opt_t){.type = SL_CFG_UINT}, o->max,
                              &lim, NULL, 0))
    max = (size_t)lim.u;
  if (n > max) {
    sl_cfg_errf(ctx->errs, NULL, (unsigned)val->start_mark.line + 1,
                (unsigned)val->start_mark.column + 1, key,
                "has %zu items (maximum %s)", n, o->max);
    return;
  }
  a.v = calloc(n ? n : 1, sub->size);
  if (!a.v)
    abort();
  for (size_t i = 0; i < n && !too_many(ctx); i++) {
    yaml_node_t *item =
        yaml_document_get_node(ctx->doc, val->data.sequence.items.start[i]);
    char prefix[KEYLEN];
    inst_t el;
    void *obj = (char *)a.v + a.n * sub->size;
    SL_CFG_FMT(prefix, sizeof(prefix), "%s[%zu]", key, i);
    inst_init(&el, sub, obj, prefix, ctx->errs);
    a.n++;
    if (!item || item->type != YAML_MAPPING_NODE) {
      sl_cfg_errf(
          ctx->errs, NULL, item ? (unsigned)item->start_mark.line + 1 : 0,
          item ? (unsigned)item->start_mark.column + 1 : 0, prefix,
          "expected a mapping, got %s", item ? node_kind(item) : "nothing");
      inst_free(&el);
      continue;
    }
    walk_mapping(ctx, &el, item, "");
    /* Required keys and the element's own cross-field rules. */
    for (size_t r = 0; r < sub->n_opts; r++) {
      char k[KEYLEN];
      if ((sub->opts[r].flags & SL_CFG_REQUIRED) && el.src[r] == SRC_DEFAULT) {
        full_key(&el, sub->opts[r].name, k, sizeof(k));
        sl_cfg_errf(ctx->errs, NULL, (unsigned)item->start_mark.line + 1,
                    (unsigned)item->start_mark.column + 1, k,
                    "required key is missing");
      }
    }
    if (sub->finish) {
      ctx->errs->cur = &el;
      ctx->errs->cur_line = (unsigned)item->start_mark.line + 1;
      ctx->errs->cur_col = (unsigned)item->start_mark.column + 1;
      sub->finish(obj, ctx->errs, prefix);
      ctx->errs->cur = NULL;
    }
    inst_free(&el);
  }
store:
  sl_cfg_field_free(o, in->obj);
  memcpy((char *)in->obj + o->off, &a, sizeof(a));
}

/* Sets row idx from a YAML value node; key is the full key for messages. */
static void load_value(ctx_t *ctx, inst_t *in, int idx, yaml_node_t *val,
                       const char *key) {
  const sl_cfg_opt_t *o = &in->sec->opts[idx];
  unsigned line = (unsigned)val->start_mark.line + 1;
  unsigned col = (unsigned)val->start_mark.column + 1;
  sl_cfg_val_t v;
  char why[512], shown[96];
  int rc;

  if (o->type == SL_CFG_SECTION_LIST) {
    load_list_section(ctx, in, idx, val, key);
    return;
  }
  if (val->type == YAML_SEQUENCE_NODE &&
      (o->type == SL_CFG_LIST || o->type == SL_CFG_FLAGS)) {
    yaml_node_item_t *it = val->data.sequence.items.start;
    size_t n = (size_t)(val->data.sequence.items.top - it);
    const char **items = calloc(n ? n : 1, sizeof(char *));
    if (!items)
      abort();
    for (size_t i = 0; i < n; i++) {
      yaml_node_t *e = yaml_document_get_node(ctx->doc, it[i]);
      if (!e || e->type != YAML_SCALAR_NODE) {
        sl_cfg_errf(ctx->errs, NULL, line, col, key,
                    "expected a list of strings, item %zu is %s", i,
                    e ? node_kind(e) : "missing");
        free(items);
        return;
      }
      items[i] = (const char *)e->data.scalar.value;
      if (strlen(items[i]) != e->data.scalar.length) {
        sl_cfg_errf(ctx->errs, NULL, line, col, key,
                    "item %zu contains a NUL byte", i);
        free(items);
        return;
      }
    }
    rc = sl_cfg_parse_items(o, items, n, &v, why, sizeof(why));
    free(items);
    if (rc) {
      sl_cfg_errf(ctx->errs, NULL, line, col, key, "%s", why);
      return;
    }
    sl_cfg_store(o, in->obj, &v);
    return;
  }
  if (val->type != YAML_SCALAR_NODE) {
    const char *t = sl_cfg_type_name(o->type);
    sl_cfg_errf(ctx->errs, NULL, line, col, key, "expected %s %s, got %s",
                strchr("aeiu", t[0]) ? "an" : "a", t, node_kind(val));
    return;
  }
  const char *text = (const char *)val->data.scalar.value;
  if (strlen(text) != val->data.scalar.length) {
    sl_cfg_errf(ctx->errs, NULL, line, col, key, "value contains a NUL byte");
    return;
  }
  if (is_null(val))
    text = "";
  if (sl_cfg_parse(o, text, &v, why, sizeof(why))) {
    bool bare = (ctx->errs->sec_flags & SL_CFG_SEC_BARE_RANGE) &&
                !(o->flags & SL_CFG_SECRET) &&
                !strncmp(why, "is out of range", 15);
    sl_cfg_errf(ctx->errs, NULL, line, col, key, "%s %s",
                bare ? text : show(o, text, shown, sizeof(shown)), why);
    return;
  }
  sl_cfg_store(o, in->obj, &v);
}

static void walk_mapping(ctx_t *ctx, inst_t *in, yaml_node_t *node,
                         const char *path) {
  char key[KEYLEN];
  full_key(in, path, key, sizeof(key));
  if (is_null(node))
    return; /* "store:" with every child commented out */
  if (node->type != YAML_MAPPING_NODE) {
    sl_cfg_errf(ctx->errs, NULL, (unsigned)node->start_mark.line + 1,
                (unsigned)node->start_mark.column + 1, key,
                "expected a mapping, got %s", node_kind(node));
    return;
  }
  yaml_node_pair_t *pairs = node->data.mapping.pairs.start;
  size_t n = (size_t)(node->data.mapping.pairs.top - pairs);
  for (size_t i = 0; i < n && !too_many(ctx); i++) {
    yaml_node_t *k = yaml_document_get_node(ctx->doc, pairs[i].key);
    yaml_node_t *v = yaml_document_get_node(ctx->doc, pairs[i].value);
    char rel[KEYLEN], full[KEYLEN], hint[KEYLEN];
    if (!k || !v)
      continue;
    unsigned line = (unsigned)k->start_mark.line + 1;
    unsigned col = (unsigned)k->start_mark.column + 1;
    if (k->type != YAML_SCALAR_NODE) {
      sl_cfg_errf(ctx->errs, NULL, line, col, key,
                  "keys must be scalars, got %s", node_kind(k));
      continue;
    }
    const char *name = (const char *)k->data.scalar.value;
    if (k->data.scalar.length > 128 || strlen(name) != k->data.scalar.length) {
      sl_cfg_errf(ctx->errs, NULL, line, col, key, "invalid key \"%.32s...\"",
                  name);
      continue;
    }
    SL_CFG_FMT(rel, sizeof(rel), "%s%s%s", path, *path ? "." : "", name);
    full_key(in, rel, full, sizeof(full));
    /* Duplicates in the same mapping (e.g. two "store:" sections). */
    bool dup = false;
    for (size_t j = 0; j < i && !dup; j++) {
      yaml_node_t *pk = yaml_document_get_node(ctx->doc, pairs[j].key);
      if (pk && pk->type == YAML_SCALAR_NODE &&
          !strcmp((const char *)pk->data.scalar.value, name)) {
        sl_cfg_errf(ctx->errs, NULL, line, col, full,
                    "duplicate key (first at line %u)",
                    (unsigned)pk->start_mark.line + 1);
        dup = true;
      }
    }
    if (dup)
      continue;
    int idx = find_row(in->sec, rel);
    unsigned char src = ctx->remote ? SRC_REMOTE : SRC_FILE;
    if (idx >= 0 && !*in->prefix && ctx->strict &&
        !!(in->sec->opts[idx].flags & SL_CFG_REMOTE) != ctx->remote) {
      /* A key never has two writers (docs/FLEET.md, "Who owns a key"). */
      sl_cfg_errf(ctx->errs, NULL, line, col, full, "%s",
                  ctx->remote
                      ? "local-only key: the fleet's policies may not set it "
                        "(set it in the node's own config file)"
                      : "owned by the fleet (fleet.enabled is true): set it in "
                        "a fleet policy, not in the local file");
      continue;
    }
    if (idx >= 0) {
      /* Also catches "store.x: 1" next to "store: {x: 2}". */
      if (in->src[idx] == src) {
        sl_cfg_errf(ctx->errs, NULL, line, col, full,
                    "duplicate key (first at line %u)", in->line[idx]);
        continue;
      }
      in->src[idx] = src;
      in->line[idx] = line;
      in->col[idx] = col;
      in->vline[idx] = (unsigned)v->start_mark.line + 1;
      in->vcol[idx] = (unsigned)v->start_mark.column + 1;
      load_value(ctx, in, idx, v, full);
    } else if (is_section(in->sec, rel)) {
      walk_mapping(ctx, in, v, rel);
    } else if (suggest(in->sec, rel, hint, sizeof(hint))) {
      char shown[KEYLEN];
      full_key(in, hint, shown, sizeof(shown));
      sl_cfg_errf(ctx->errs, NULL, line, col, full,
                  "unknown key (did you mean \"%s\"?)", shown);
    } else {
      sl_cfg_errf(ctx->errs, NULL, line, col, full, "unknown key");
    }
  }
}

void sl_cfg_env_name(const char *prefix, const char *key, char *buf,
                     size_t len) {
  size_t k = (size_t)snprintf(buf, len, "%s", prefix ? prefix : "");
  if (k >= len)
    k = len ? len - 1 : 0;
  for (const char *p = key; *p && k + 1 < len; p++)
    buf[k++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
  if (k < len)
    buf[k] = '\0';
}

static const char *env_get(char *const *envp, const char *name) {
  size_t n = strlen(name);
  for (; envp && *envp; envp++) {
    if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
      return *envp + n + 1;
  }
  return NULL;
}

static void apply_env(ctx_t *ctx, inst_t *in, char *const *envp) {
  if (!in->sec->env_prefix)
    return;
  for (size_t i = 0; i < in->sec->n_opts && envp; i++) {
    const sl_cfg_opt_t *o = &in->sec->opts[i];
    char var[KEYLEN], why[512], shown[96];
    const char *text;
    sl_cfg_val_t v;
    if (o->type == SL_CFG_SECTION_LIST)
      continue;
    sl_cfg_env_name(in->sec->env_prefix, o->name, var, sizeof(var));
    if (!(text = env_get(envp, var)))
      continue;
    char origin[KEYLEN + 8];
    SL_CFG_FMT(origin, sizeof(origin), "env %s", var);
    if (ctx->strict && (o->flags & SL_CFG_REMOTE)) {
      sl_cfg_errf(ctx->errs, origin, 0, 0, o->name, "%s",
                  "owned by the fleet (fleet.enabled is true): set it in a "
                  "fleet policy, not in the environment");
      continue;
    }
    in->src[i] = SRC_ENV;
    /* The name points into envp, valid for this load. */
    in->env[i] = text - strlen(var) - 1;
    if (sl_cfg_parse(o, text, &v, why, sizeof(why))) {
      sl_cfg_errf(ctx->errs, origin, 0, 0, o->name, "%s %s",
                  show(o, text, shown, sizeof(shown)), why);
      continue;
    }
    sl_cfg_store(o, in->obj, &v);
  }
}

/* Origin of row i for a message: the file position or the variable. */
static void row_errf(ctx_t *ctx, const inst_t *in, size_t i, const char *msg) {
  char key[KEYLEN], origin[KEYLEN + 8];
  full_key(in, in->sec->opts[i].name, key, sizeof(key));
  if (in->src[i] == SRC_ENV) {
    const char *eq = strchr(in->env[i], '=');
    SL_CFG_FMT(origin, sizeof(origin), "env %.*s", (int)(eq - in->env[i]),
               in->env[i]);
    sl_cfg_errf(ctx->errs, origin, 0, 0, key, "%s", msg);
  } else {
    sl_cfg_errf(ctx->errs, in->src[i] == SRC_REMOTE ? ctx->errs->remote : NULL,
                in->line[i], in->col[i], key, "%s", msg);
  }
}

/*
 * Checks the mode of a file the config names. A private key readable by
 * others is a leak waiting to be copied; a key, certificate or CA file
 * that group or others may write lets them swap the daemon's identity or
 * the peers it trusts. secret: key material (mode & 0027 must be 0), else
 * a certificate (mode & 0022). what names the item in kafka.properties, or
 * NULL. Missing files are errors only when must_exist.
 */
static void check_file_mode(ctx_t *ctx, const inst_t *in, size_t i,
                            const char *path, bool secret, bool must_exist,
                            const char *what) {
  struct stat sb;
  char msg[512];
  unsigned bad = secret ? 0027 : 0022;
  if (!*path)
    return;
  if (stat(path, &sb)) {
    if (must_exist) {
      SL_CFG_FMT(msg, sizeof(msg), "%s%scannot access \"%.200s\": %s",
                 what ? what : "", what ? ": " : "", path, strerror(errno));
      row_errf(ctx, in, i, msg);
    }
    return;
  }
  if (!(sb.st_mode & bad))
    return;
  SL_CFG_FMT(msg, sizeof(msg),
             "%s%s\"%.200s\" is %s (mode %04o): run chmod %s \"%.200s\"",
             what ? what : "", what ? ": " : "", path,
             secret && (sb.st_mode & 0007) ? "accessible by others"
                                           : "writable by group or others",
             (unsigned)(sb.st_mode & 07777), secret ? "g-w,o-rwx" : "go-w",
             path);
  row_errf(ctx, in, i, msg);
}

/* Items "key=/path" of a KV_SECRETS list whose key the row's .kv_file
 * names as a file: only absolute paths that exist are checked (a missing
 * file is left to whoever opens it). */
static void check_kv_files(ctx_t *ctx, const inst_t *in, size_t i) {
  const sl_cfg_opt_t *o = &in->sec->opts[i];
  const sl_cfg_strlist_t *l =
      (const sl_cfg_strlist_t *)(const void *)((const char *)in->obj + o->off);
  for (size_t k = 0; k < l->n && o->kv_file; k++) {
    const char *item = l->v[k], *eq = strchr(item, '=');
    char key[128];
    int kind;
    if (!eq || eq[1] != '/' || (size_t)(eq - item) >= sizeof(key))
      continue;
    SL_CFG_FMT(key, sizeof(key), "%.*s", (int)(eq - item), item);
    if ((kind = o->kv_file(key)) != SL_CFG_KV_NOT_A_FILE)
      check_file_mode(ctx, in, i, eq + 1, kind == SL_CFG_KV_SECRET_FILE, false,
                      key);
  }
}

/*
 * Refuses nesting deeper than SL_CFG_MAX_DEPTH before the document is
 * built: libyaml's scanner and composer are quadratic in the depth (a
 * 300 KB "[[[[..." took minutes), and no configuration needs more than a
 * few levels. Only events up to the offending one are produced, so the
 * cost is bounded by the cap. Returns false after reporting the position;
 * syntax errors are left to the real load, which reports them.
 */
static bool depth_ok(sl_cfg_errs_t *errs, const char *yaml, size_t len) {
  yaml_parser_t parser;
  yaml_event_t ev;
  unsigned depth = 0;
  bool ok = true;
  if (!yaml_parser_initialize(&parser))
    abort();
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  for (;;) {
    if (!yaml_parser_parse(&parser, &ev))
      break;
    yaml_event_type_t t = ev.type;
    if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
      if (++depth > SL_CFG_MAX_DEPTH) {
        sl_cfg_errf(errs, NULL, (unsigned)ev.start_mark.line + 1,
                    (unsigned)ev.start_mark.column + 1, NULL,
                    "nesting deeper than %u levels", SL_CFG_MAX_DEPTH);
        ok = false;
      }
    } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
      depth--;
    }
    yaml_event_delete(&ev);
    if (!ok || t == YAML_STREAM_END_EVENT)
      break;
  }
  yaml_parser_delete(&parser);
  return ok;
}

/* Walks the remote layer's document (YAML or JSON text) over in: only rows
 * flagged SL_CFG_REMOTE, messages named by layers->remote_name. */
static void walk_remote(ctx_t *ctx, inst_t *in, const sl_cfg_layers_t *layers,
                        bool *syntax_ok) {
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_document_t *saved = ctx->doc;
  const char *file = ctx->errs->file;

  ctx->errs->file = ctx->errs->remote = layers->remote_name;
  if (layers->remote_len > SL_CFG_MAX_BYTES) {
    sl_cfg_errf(ctx->errs, NULL, 0, 0, NULL,
                "remote layer is %zu bytes (maximum %u)", layers->remote_len,
                SL_CFG_MAX_BYTES);
    *syntax_ok = false;
    goto out;
  }
  if (!depth_ok(ctx->errs, layers->remote, layers->remote_len)) {
    *syntax_ok = false;
    goto out;
  }
  if (!yaml_parser_initialize(&parser))
    abort();
  yaml_parser_set_input_string(&parser, (const unsigned char *)layers->remote,
                               layers->remote_len);
  if (!yaml_parser_load(&parser, &doc)) {
    *syntax_ok = false;
    sl_cfg_errf(ctx->errs, NULL, (unsigned)parser.problem_mark.line + 1,
                (unsigned)parser.problem_mark.column + 1, NULL,
                "syntax error: %s",
                parser.problem ? parser.problem : "unknown");
  } else {
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    ctx->doc = &doc;
    ctx->remote = true;
    if (root && root->type != YAML_MAPPING_NODE && !is_null(root))
      sl_cfg_errf(ctx->errs, NULL, (unsigned)root->start_mark.line + 1,
                  (unsigned)root->start_mark.column + 1, NULL,
                  "expected a mapping at the top level, got %s",
                  node_kind(root));
    else if (root)
      walk_mapping(ctx, in, root, "");
    ctx->remote = false;
    ctx->doc = saved;
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);
out:
  ctx->errs->file = file;
}

int sl_cfg_load(const sl_cfg_section_t *sec, const char *name, const char *yaml,
                size_t len, char *const *envp, void **out, char *errstr,
                size_t errlen) {
  return sl_cfg_load_layers(sec, name, yaml, len, NULL, envp, out, errstr,
                            errlen);
}

int sl_cfg_load_layers(const sl_cfg_section_t *sec, const char *name,
                       const char *yaml, size_t len,
                       const sl_cfg_layers_t *layers, char *const *envp,
                       void **out, char *errstr, size_t errlen) {
  sl_cfg_errs_t errs = {
      .buf = errstr, .len = errlen, .file = name, .sec_flags = sec->flags};
  yaml_parser_t parser;
  yaml_document_t doc;
  bool have_doc = false, syntax_ok = true;
  ctx_t ctx = {.errs = &errs, .doc = &doc, .strict = layers && layers->strict};
  inst_t in = {0};
  void *obj;

  *out = NULL;
  if (errlen)
    errstr[0] = '\0';
  if (len > SL_CFG_MAX_BYTES) {
    sl_cfg_errf(&errs, NULL, 0, 0, NULL,
                "configuration is %zu bytes (maximum %u)", len,
                SL_CFG_MAX_BYTES);
    return SL_ETOOBIG;
  }
  if (!depth_ok(&errs, yaml, len))
    return SL_ECONFIG;
  if (!(obj = calloc(1, sec->size)))
    abort();
  inst_init(&in, sec, obj, "", &errs);

  if (!yaml_parser_initialize(&parser))
    abort();
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  if (!yaml_parser_load(&parser, &doc)) {
    syntax_ok = false;
    sl_cfg_errf(&errs, NULL, (unsigned)parser.problem_mark.line + 1,
                (unsigned)parser.problem_mark.column + 1, NULL,
                "YAML syntax error: %s%s%s",
                parser.problem ? parser.problem : "unknown",
                parser.context ? " " : "",
                parser.context ? parser.context : "");
  } else {
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_document_t next;
    have_doc = true;
    if (root && root->type != YAML_MAPPING_NODE && !is_null(root)) {
      sl_cfg_errf(&errs, NULL, (unsigned)root->start_mark.line + 1,
                  (unsigned)root->start_mark.column + 1, NULL,
                  "expected a mapping at the top level, got %s",
                  node_kind(root));
    } else if (root) {
      walk_mapping(&ctx, &in, root, "");
    }
    /* A second document would be silently ignored: refuse it. */
    if (!yaml_parser_load(&parser, &next)) {
      sl_cfg_errf(&errs, NULL, (unsigned)parser.problem_mark.line + 1,
                  (unsigned)parser.problem_mark.column + 1, NULL,
                  "YAML syntax error: %s",
                  parser.problem ? parser.problem : "unknown");
    } else {
      yaml_node_t *r2 = yaml_document_get_root_node(&next);
      if (r2)
        sl_cfg_errf(&errs, NULL, (unsigned)r2->start_mark.line + 1,
                    (unsigned)r2->start_mark.column + 1, NULL,
                    "only one YAML document is allowed");
      yaml_document_delete(&next);
    }
  }
  yaml_parser_delete(&parser);

  /* After a syntax error "missing key" errors would only be noise. */
  if (syntax_ok && !too_many(&ctx))
    apply_env(&ctx, &in, envp);
  /* The remote layer last: it owns its keys (with strict, alone). */
  if (syntax_ok && !too_many(&ctx) && layers && layers->remote)
    walk_remote(&ctx, &in, layers, &syntax_ok);
  for (size_t i = 0; i < sec->n_opts && syntax_ok && !too_many(&ctx); i++) {
    const sl_cfg_opt_t *o = &sec->opts[i];
    if ((o->flags & SL_CFG_REQUIRED) && in.src[i] == SRC_DEFAULT) {
      char var[KEYLEN], msg[KEYLEN + 64];
      if (sec->env_prefix) {
        sl_cfg_env_name(sec->env_prefix, o->name, var, sizeof(var));
        SL_CFG_FMT(msg, sizeof(msg), "required key is missing (set it or %s)",
                   var);
      } else {
        SL_CFG_FMT(msg, sizeof(msg), "required key is missing");
      }
      sl_cfg_errf(&errs, NULL, 0, 0, o->name, "%s", msg);
    }
    if (o->flags & (SL_CFG_SECRET_FILE | SL_CFG_TRUST_FILE))
      check_file_mode(&ctx, &in, i, *(char **)(void *)((char *)obj + o->off),
                      o->flags & SL_CFG_SECRET_FILE, true, NULL);
    if (o->flags & SL_CFG_KV_SECRETS)
      check_kv_files(&ctx, &in, i);
  }
  /* The cross-key rules run with the per-key errors (every error at
   * once), after a syntax error or an error flood they would be noise. */
  if (syntax_ok && !too_many(&ctx) && sec->finish) {
    errs.finishing = true;
    errs.cur = &in;
    sec->finish(obj, &errs, "");
    errs.cur = NULL;
    errs.finishing = false;
  }

  if (have_doc)
    yaml_document_delete(&doc);
  inst_free(&in);
  if (errs.count) {
    sl_cfg_obj_free(sec, obj);
    free(obj);
    return SL_ECONFIG;
  }
  *out = obj;
  return 0;
}
