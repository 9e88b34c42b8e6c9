/*
 * config/cfg.h: the table-driven configuration engine (library sl_cfg; it
 * depends on common/ and libyaml only). The daemon's options
 * (config/config.h, library sl_config) and the connectors' files
 * (connectors/modbus/schema.c) are tables of rows in this format; one
 * loader, one set of value types (one duration format), one error style.
 *
 * A table (sl_cfg_section_t) describes one C struct: each row names a key
 * (dotted path relative to the section), its type, the offset of its field,
 * its default and range as text (parsed by the type's own parser, so the docs
 * show exactly what a user would write), flags and a description. A row of
 * type SECTION_LIST points at another table describing the elements of a
 * YAML sequence of mappings, so nested lists reuse the same machinery.
 *
 * Loading walks a libyaml document against the root table: defaults first,
 * then the file, then the environment (when the root names a prefix), then
 * required keys, key files and the tables' finish hooks. Every problem is
 * collected (up to SL_CFG_MAX_ERRORS, one per line, each naming
 * origin:line:column, the key and the value; secrets never echoed) and
 * nothing is returned unless the whole load succeeded. Loading never logs.
 */
#ifndef SL_CFG_H
#define SL_CFG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/common.h"

/* Largest configuration text accepted, file or string. */
#define SL_CFG_MAX_BYTES (1u << 20)
/* Deepest nesting of mappings and sequences accepted. */
#define SL_CFG_MAX_DEPTH 32
/* At most this many errors are reported; the rest are counted. */
#define SL_CFG_MAX_ERRORS 16

/*
 * snprintf for messages and keys whose truncation is intended: every buffer
 * is bounded and a cut message is better than none.
 */
void sl_cfg_fmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define SL_CFG_FMT sl_cfg_fmt

/* A list of owned strings (LIST rows). */
typedef struct sl_cfg_strlist {
  char **v; /* n owned strings */
  size_t n; /* number of entries */
} sl_cfg_strlist_t;

/* Value types; the comment gives the C field type at the row's offset. */
typedef enum {
  SL_CFG_BOOL,        /* bool: true|false|yes|no|on|off */
  SL_CFG_INT,         /* int64_t */
  SL_CFG_UINT,        /* uint64_t */
  SL_CFG_SIZE,        /* uint64_t bytes: 512MiB, 2GB, 4096 */
  SL_CFG_DURATION,    /* uint64_t ms: 250ms, 5s, 1h30m, 0 */
  SL_CFG_DOUBLE,      /* double */
  SL_CFG_STRING,      /* char *, owned, never NULL */
  SL_CFG_ENUM,        /* int: index into .enums */
  SL_CFG_PATH,        /* char *: absolute path or "" */
  SL_CFG_LIST,        /* sl_cfg_strlist_t: sequence or "a,b,c" */
  SL_CFG_FLAGS,       /* uint32_t: list of .enums names -> bits, "all" */
  SL_CFG_SECTION_LIST /* sl_cfg_array_t: sequence of mappings, see .sub */
} sl_cfg_type_t;

/* Row flags. */
#define SL_CFG_RELOAD 0x1u      /* can change without a restart */
#define SL_CFG_REQUIRED 0x2u    /* no default: must be set */
#define SL_CFG_SECRET 0x4u      /* never printed, never echoed in errors */
#define SL_CFG_SECRET_FILE 0x8u /* path: rejected when world-accessible */
/* List of key=value: only the values of keys the row's .printable accepts
 * are printed; others as key=<redacted>, items without "=" as
 * <redacted>, and no item is echoed in errors. Absolute paths under keys
 * the row's .kv_file names are checked like TRUST_FILE (or SECRET_FILE). */
#define SL_CFG_KV_SECRETS 0x10u
/* Path of a certificate or CA file: rejected when writable by group or
 * others (SECRET_FILE implies the same check). */
#define SL_CFG_TRUST_FILE 0x20u
/* DURATION: also the connectors' older spellings, a bare number of
 * milliseconds ("40") and a decimal fraction of one unit ("1.5s")
 * (SL_DURATION_LEGACY, common/textparse.h). */
#define SL_CFG_LEGACY_DURATION 0x40u
/* Owned by the fleet's remote layer (docs/FLEET.md): with
 * sl_cfg_layers_t.strict only the remote layer may set it, and the remote
 * layer may set nothing else. Checked on root rows (a list row's flag
 * covers the whole list). */
#define SL_CFG_REMOTE 0x80u

/* Storage of a SECTION_LIST field: n elements of sub->size bytes each. */
typedef struct sl_cfg_array {
  void *v;
  size_t n;
} sl_cfg_array_t;

typedef struct sl_cfg_errs sl_cfg_errs_t;
typedef struct sl_cfg_section sl_cfg_section_t;

/*
 * Extra string check for STRING/PATH rows: returns NULL when s is fine,
 * else a static reason such as "must be host:port".
 */
typedef const char *(*sl_cfg_check_cb)(const char *s);

/* One row of a table. */
typedef struct sl_cfg_opt {
  const char *name;            /* dotted key relative to the section */
  sl_cfg_type_t type;          /* value type */
  size_t off;                  /* field offset in the section's struct */
  const char *def;             /* default as text; NULL only if REQUIRED */
  const char *min;             /* lower bound as text (numbers), or NULL */
  const char *max;             /* upper bound (numbers; max elements), NULL */
  const char *const *enums;    /* ENUM/FLAGS names, NULL-terminated */
  sl_cfg_check_cb check;       /* STRING/PATH/LIST element check, or NULL */
  const sl_cfg_section_t *sub; /* SECTION_LIST element table */
  const char *doc_def;         /* default shown in docs instead of .def */
  /* Binding to a caller's options struct (the daemon's sl_config_bind()):
   * the row's value is also the field at lib_off (lib_size bytes) of the
   * struct the caller numbers lib. The engine only carries these. */
  int lib;          /* caller-defined, 0 = not bound */
  size_t lib_off;   /* offset in that options struct */
  size_t lib_size;  /* size of that field */
  unsigned flags;   /* SL_CFG_* */
  const char *desc; /* one or two sentences for the docs */
  /* KV_SECRETS rows: true when item "key=value" may be printed whole. */
  bool (*printable)(const char *item);
  /* KV_SECRETS rows: whether key's value is a file (SL_CFG_KV_*). */
  int (*kv_file)(const char *key);
} sl_cfg_opt_t;

/* sl_cfg_opt_t.kv_file results. */
enum {
  SL_CFG_KV_NOT_A_FILE = 0,
  SL_CFG_KV_TRUST_FILE,  /* certificate, CA: not writable by group/others */
  SL_CFG_KV_SECRET_FILE, /* key material: not accessible by others either */
};

/* Section flags (root table). */
/* Out-of-range numbers are shown bare in messages ("70000 is out of
 * range"), as the connectors always did; the daemon quotes them. */
#define SL_CFG_SEC_BARE_RANGE 0x1u
/* sl_cfg_load_file() refuses a file group or others may write. */
#define SL_CFG_SEC_PRIVATE_FILE 0x2u

/* A table: the rows describing one struct. */
struct sl_cfg_section {
  const char *name; /* "" for the root, else the list key */
  const sl_cfg_opt_t *opts;
  size_t n_opts;
  size_t size; /* sizeof the struct */
  /*
   * Called after a struct was filled (defaults, file, env) and its rows
   * passed their own checks: derives values and checks cross-field rules,
   * reporting through sl_cfg_errf(errs, NULL, 0, 0, prefix, ...) or
   * sl_cfg_errf_at(). prefix is the element's key prefix ("" or
   * "streams[2]"). May be NULL.
   */
  void (*finish)(void *obj, sl_cfg_errs_t *errs, const char *prefix);
  /* Root only: environment prefix ("SLUICE_": SLUICE_STORE_BUDGET_BYTES
   * overrides store.budget_bytes), NULL = no environment overrides. */
  const char *env_prefix;
  unsigned flags; /* root only: SL_CFG_SEC_* */
};

/* Parsed value of one row, before it is stored in the struct. */
typedef union sl_cfg_val {
  bool b;
  int64_t i;
  uint64_t u;
  double d;
  int e;
  uint32_t mask;
  char *s;
  sl_cfg_strlist_t l;
} sl_cfg_val_t;

/* ---- values (config/types.c) ------------------------------------------ */

/*
 * Parses text as row o's type and checks its range, enum names and check
 * callback. Returns 0 and *val (owned; release with sl_cfg_val_free()), or
 * -1 with a reason in why such as "is not a size (expected e.g. 512MiB)".
 * LIST and FLAGS accept a comma-separated list.
 */
int sl_cfg_parse(const sl_cfg_opt_t *o, const char *text, sl_cfg_val_t *val,
                 char *why, size_t whylen);

/* Same for LIST/FLAGS rows given as n separate items. */
int sl_cfg_parse_items(const sl_cfg_opt_t *o, const char *const *items,
                       size_t n, sl_cfg_val_t *val, char *why, size_t whylen);

/* Releases what a parsed value owns. */
void sl_cfg_val_free(const sl_cfg_opt_t *o, sl_cfg_val_t *val);

/* Moves val into obj's field for o, freeing the previous value. */
void sl_cfg_store(const sl_cfg_opt_t *o, void *obj, sl_cfg_val_t *val);

/* Frees what obj's field for o owns (strings, lists, nested arrays). */
void sl_cfg_field_free(const sl_cfg_opt_t *o, void *obj);

/* Frees everything a struct described by sec owns (not obj itself). */
void sl_cfg_obj_free(const sl_cfg_section_t *sec, void *obj);

/* True when the field for o holds the same value in a and b. */
bool sl_cfg_field_equal(const sl_cfg_opt_t *o, const void *a, const void *b);

/*
 * Formats the field for o in obj as YAML scalar text (quoted for strings,
 * "[a, b]" for lists) into buf. Secrets are not redacted here.
 */
void sl_cfg_format(const sl_cfg_opt_t *o, const void *obj, char *buf,
                   size_t len);

/* Human type name for docs and messages ("size", "duration"). */
const char *sl_cfg_type_name(sl_cfg_type_t t);

/* Levenshtein distance, capped at 255. */
unsigned sl_cfg_distance(const char *a, const char *b);

/* ---- loading (config/cfg.c) ------------------------------------------- */

/*
 * Appends "origin[:line:col]: key: message" to errs. origin is the file
 * name when NULL; line 0 omits the position.
 */
void sl_cfg_errf(sl_cfg_errs_t *errs, const char *origin, unsigned line,
                 unsigned col, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/*
 * From a finish hook of a list element: reports at row's value in the file
 * (row NULL, or not set in the file: at the element's mapping) with key
 * "prefix.row" (or the element's prefix). From the root's hook: at row's
 * value, or without a position.
 */
void sl_cfg_errf_at(sl_cfg_errs_t *errs, const char *row, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* From a finish hook: true when the struct's row was set by the file or
 * the environment (not left at its default). */
bool sl_cfg_given(const sl_cfg_errs_t *errs, const char *row);

/*
 * Loads len bytes of YAML named name in messages into a new struct
 * described by the root table sec (defaults, file, envp overrides when
 * sec->env_prefix is set, checks). envp: NULL-terminated "NAME=value", or
 * NULL. Returns 0 and *out (owned; free with sl_cfg_obj_free() then
 * free()), SL_ECONFIG or SL_ETOOBIG with every error in errstr.
 */
int sl_cfg_load(const sl_cfg_section_t *sec, const char *name, const char *yaml,
                size_t len, char *const *envp, void **out, char *errstr,
                size_t errlen);

/* A second layer over the file: the fleet's remote layer (docs/FLEET.md). */
typedef struct sl_cfg_layers {
  const char *remote_name; /* origin in messages ("fleet generation 7") */
  const char *remote;      /* YAML or JSON text, NULL = no remote layer */
  size_t remote_len;
  /* Rows flagged SL_CFG_REMOTE come from the remote layer only: the file
   * and the environment setting one is an error, and so is the remote
   * layer setting any other row. */
  bool strict;
} sl_cfg_layers_t;

/*
 * sl_cfg_load() with layers (NULL: none): defaults < file < environment <
 * remote layer, then the checks and finish hooks over the result. Errors
 * in the remote layer are named by layers->remote_name.
 */
int sl_cfg_load_layers(const sl_cfg_section_t *sec, const char *name,
                       const char *yaml, size_t len,
                       const sl_cfg_layers_t *layers, char *const *envp,
                       void **out, char *errstr, size_t errlen);

/*
 * Same for the file at path (named by path in messages). Returns as
 * sl_cfg_load(), -errno when the file cannot be read ("path: cannot
 * open: reason" in errstr), SL_ETOOBIG over SL_CFG_MAX_BYTES, or
 * SL_ECONFIG when sec has SL_CFG_SEC_PRIVATE_FILE and group or others may
 * write the file.
 */
int sl_cfg_load_file(const sl_cfg_section_t *sec, const char *path,
                     char *const *envp, void **out, char *errstr,
                     size_t errlen);

/*
 * The first half of sl_cfg_load_file(): reads the file at path once
 * (refusing, with private_file, one that group or others may write; and
 * one larger than SL_CFG_MAX_BYTES) into *text (returns owned, free(); not
 * NUL-terminated) and *len. Returns 0, SL_ECONFIG, SL_ETOOBIG or -errno
 * with errstr; *text is NULL on error.
 */
int sl_cfg_read_file(const char *path, bool private_file, char **text,
                     size_t *len, char *errstr, size_t errlen);

/* Environment variable for a root key: prefix "SLUICE_", key
 * "store.budget_bytes" -> "SLUICE_STORE_BUDGET_BYTES". */
void sl_cfg_env_name(const char *prefix, const char *key, char *buf,
                     size_t len);

/* ---- output (config/output.c) ----------------------------------------- */

/* sl_cfg_diff() verdicts. */
typedef enum {
  SL_CFG_SAME = 0,   /* nothing changed */
  SL_CFG_RELOADABLE, /* every changed key can be applied at runtime */
  SL_CFG_RESTART     /* at least one changed key needs a restart */
} sl_cfg_verdict_t;

#define SL_CFG_DIFF_MAX 32
/* Result of sl_cfg_diff(); caller-allocated. */
typedef struct sl_cfg_diff {
  int verdict;      /* sl_cfg_verdict_t */
  size_t n_changed; /* number of changed keys (may exceed the array) */
  struct {
    char key[96];    /* e.g. "store.budget_bytes", "streams[orders].ttl" */
    bool reloadable; /* this key alone could be reloaded */
  } changed[SL_CFG_DIFF_MAX]; /* first SL_CFG_DIFF_MAX changes */
} sl_cfg_diff_t;

/*
 * Compares two structs loaded against sec key by key: the verdict is
 * RESTART as soon as one changed key is not RELOAD. List elements are
 * matched by their first row (their name); adding or removing elements
 * counts as a change of the list key. d: caller-owned, overwritten.
 */
void sl_cfg_diff(const sl_cfg_section_t *sec, const void *a, const void *b,
                 sl_cfg_diff_t *d);

/* Writes obj as YAML that sl_cfg_load() accepts, every key included,
 * secrets as "<redacted>". */
void sl_cfg_dump(const sl_cfg_section_t *sec, const void *obj, FILE *out);

/*
 * Writes the Markdown reference of a table: one "## section" table per
 * top-level section of sec (rows before the first dot share one named by
 * their key), each followed by the tables of its list sections. With
 * sec->env_prefix an Environment column is added. Returns 0 or -EIO.
 */
int sl_cfg_doc_markdown(const sl_cfg_section_t *sec, FILE *out);

/* One Markdown table of sec's rows, keys prefixed with prefix ("" or
 * "devices[]."), env_prefix as above (NULL: no column), with a Reload
 * column when reload (programs that reload their config). */
void sl_cfg_doc_table(FILE *out, const sl_cfg_section_t *sec,
                      const char *prefix, const char *env_prefix, bool reload);

#endif /* SL_CFG_H */
