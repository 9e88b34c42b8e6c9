/*
 * config/ internals: the option table format and the generic engine that
 * walks a table. Only the config/ sources, daemon/cmd_config.c and the config
 * tests include this header.
 *
 * A table (sl_cfg_section_t) describes one C struct: each row names a key
 * (dotted path relative to the section), its type, the offset of its field,
 * its default and range as text (parsed by the type's own parser, so the docs
 * show exactly what a user would write), flags and a description. A row of
 * type SECTION_LIST points at another table describing the elements of a
 * YAML sequence of mappings, so nested lists reuse the same machinery.
 */
#ifndef SL_CONFIG_INT_H
#define SL_CONFIG_INT_H

#include <stdarg.h>

#include "config/config.h"

/*
 * snprintf for messages and keys whose truncation is intended: every buffer
 * is bounded and a cut message is better than none.
 */
void config__fmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define SL_CFG_FMT config__fmt

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
  SL_CFG_LIST,        /* sl_config_strlist_t: sequence or "a,b,c" */
  SL_CFG_FLAGS,       /* uint32_t: list of .enums names -> bits, "all" */
  SL_CFG_SECTION_LIST /* sl_cfg_array_t: sequence of mappings, see .sub */
} sl_cfg_type_t;

/* Row flags. */
#define SL_CFG_RELOAD 0x1u      /* can change without a restart */
#define SL_CFG_REQUIRED 0x2u    /* no default: must be set */
#define SL_CFG_SECRET 0x4u      /* never printed, never echoed in errors */
#define SL_CFG_SECRET_FILE 0x8u /* path: rejected when world-accessible */
/* List of key=value: only the values of allow-listed keys are printed
 * (config__kv_printable()); others as key=<redacted>, items without "="
 * as <redacted>, and no item is echoed in errors. */
#define SL_CFG_KV_SECRETS 0x10u
/* Path of a certificate or CA file: rejected when writable by group or
 * others (SECRET_FILE implies the same check). */
#define SL_CFG_TRUST_FILE 0x20u

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
  /* Library binding (sl_config_bind()): the row's value is also the field
   * at lib_off (lib_size bytes) of library lib's options struct. */
  int lib;          /* sl_config_lib_t, 0 = not bound */
  size_t lib_off;   /* offset in that options struct */
  size_t lib_size;  /* size of that field */
  unsigned flags;   /* SL_CFG_* */
  const char *desc; /* one or two sentences for the docs */
} sl_cfg_opt_t;

/* A table: the rows describing one struct. */
struct sl_cfg_section {
  const char *name; /* "" for the root, else the list key */
  const sl_cfg_opt_t *opts;
  size_t n_opts;
  size_t size; /* sizeof the struct */
  /*
   * Called after a struct was filled (defaults, file, env) and its rows
   * passed their own checks: derives values and checks cross-field rules,
   * reporting through config__errf(errs, NULL, 0, 0, prefix, ...). prefix
   * is the element's key prefix ("" or "streams[2]"). May be NULL.
   */
  void (*finish)(void *obj, sl_cfg_errs_t *errs, const char *prefix);
};

/* The daemon's root table (config/schema/options.c). */
extern const sl_cfg_section_t sl_config__root;

/* The pipelines list section (config/schema/pipelines.c). */
extern const sl_cfg_section_t sl_config__pipeline_section;

/* The listeners' clients list section and the SHA-256 hex check
 * (config/schema/clients.c). */
extern const sl_cfg_section_t sl_config__client_section;
const char *sl_config__check_sha256(const char *s);

/* Parsed value of one row, before it is stored in the struct. */
typedef union sl_cfg_val {
  bool b;
  int64_t i;
  uint64_t u;
  double d;
  int e;
  uint32_t mask;
  char *s;
  sl_config_strlist_t l;
} sl_cfg_val_t;

/* Binds a row to field f of library options struct T (sl_config_bind()),
 * e.g. BIND(STORE, sl_store_opts_t, sync_interval_ms). */
#define SL_CFG_BIND(lib_, T, f)                                                \
  .lib = SL_CONFIG_LIB_##lib_, .lib_off = offsetof(T, f),                      \
  .lib_size = sizeof(((T *)0)->f)

/* config/types.c: per-type parsing, formatting and storage. */

/*
 * Parses text as row o's type and checks its range, enum names and check
 * callback. Returns 0 and *val (owned; release with config__val_free()), or
 * -1 with a reason in why such as "is not a size (expected e.g. 512MiB)".
 * LIST and FLAGS accept a comma-separated list.
 */
int config__parse(const sl_cfg_opt_t *o, const char *text, sl_cfg_val_t *val,
                  char *why, size_t whylen);

/* Same for LIST/FLAGS rows given as n separate items. */
int config__parse_items(const sl_cfg_opt_t *o, const char *const *items,
                        size_t n, sl_cfg_val_t *val, char *why, size_t whylen);

/* Releases what a parsed value owns. */
void config__val_free(const sl_cfg_opt_t *o, sl_cfg_val_t *val);

/* Moves val into obj's field for o, freeing the previous value. */
void config__store(const sl_cfg_opt_t *o, void *obj, sl_cfg_val_t *val);

/* Frees what obj's field for o owns (strings, lists, nested arrays). */
void config__field_free(const sl_cfg_opt_t *o, void *obj);

/* Frees everything a struct described by sec owns (not obj itself). */
void config__obj_free(const sl_cfg_section_t *sec, void *obj);

/* True when the field for o holds the same value in a and b. */
bool config__field_equal(const sl_cfg_opt_t *o, const void *a, const void *b);

/*
 * Formats the field for o in obj as YAML scalar text (quoted for strings,
 * "[a, b]" for lists) into buf. Secrets are not redacted here.
 */
void config__format(const sl_cfg_opt_t *o, const void *obj, char *buf,
                    size_t len);

/* True when the kafka.properties item "key=value" may be printed whole: its
 * key is on the allow-list of librdkafka properties that never hold a
 * secret (config/schema/redact.c). False for items without "=". */
bool config__kv_printable(const char *item);

/* Human type name for docs and messages ("size", "duration"). */
const char *config__type_name(sl_cfg_type_t t);

/* Levenshtein distance, capped at 255. */
unsigned config__distance(const char *a, const char *b);

/* config/load.c: the generic loader. */

/*
 * Appends "origin[:line:col]: key: message" to errs. origin is the file
 * name when NULL; line 0 omits the position.
 */
void config__errf(sl_cfg_errs_t *errs, const char *origin, unsigned line,
                  unsigned col, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/*
 * Loads len bytes of YAML into a new struct described by sec (defaults,
 * file, envp overrides, checks). Returns 0 and *out (owned; free with
 * config__obj_free() then free()), SL_ECONFIG or SL_ETOOBIG with errstr.
 */
int config__load(const sl_cfg_section_t *sec, const char *name,
                 const char *yaml, size_t len, char *const *envp, void **out,
                 char *errstr, size_t errlen);

/* Environment variable for a root key: "store.budget_bytes" ->
 * "SLUICE_STORE_BUDGET_BYTES". */
void config__env_name(const char *key, char *buf, size_t len);

#endif /* SL_CONFIG_INT_H */
