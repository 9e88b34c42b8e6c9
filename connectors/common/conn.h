/*
 * connectors/common: what every connector program shares: one log macro,
 * durations, and a table-driven reader for YAML config files whose errors
 * name file:line:column and the key.
 *
 * Connectors are separate processes that publish into the daemon through
 * its ingest paths (the C client library, HTTP or MQTT); they never link the
 * broker. They log to stderr, one line per write(2).
 */
#ifndef SL_CONN_H
#define SL_CONN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

/* ---- logging ---------------------------------------------------------- */

typedef enum sl_conn_log_level {
  SL_CONN_LOG_ERROR = 0,
  SL_CONN_LOG_WARN = 1,
  SL_CONN_LOG_INFO = 2,
  SL_CONN_LOG_DEBUG = 3,
} sl_conn_log_level_t;

/* Current level; set once at start, read without locks. */
extern volatile int sl_conn_log_level_now;

/* Program name in every line ("sluice-modbus"). Borrowed: must outlive
 * logging (a string literal). */
void sl_conn_log_init(const char *prog, sl_conn_log_level_t level);

/* Maps "error", "warn", "info", "debug" to a level; -1 when unknown. */
int sl_conn_log_level_parse(const char *name);

/* One line to stderr with a single write(2). Use SL_CLOG, not this. */
void sl_conn_log_write(sl_conn_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Checks the level before any formatting happens. */
#define SL_CLOG(lvl, ...)                                                      \
  do {                                                                         \
    if ((int)(lvl) <= sl_conn_log_level_now)                                   \
      sl_conn_log_write((lvl), __VA_ARGS__);                                   \
  } while (0)

/* ---- durations -------------------------------------------------------- */

/*
 * Parses "250ms", "2s", "1.5s", "5m", "1h" or a bare integer (milliseconds)
 * into milliseconds. Returns 0 or SL_ECONFIG (no unit it knows, negative,
 * above 2^31 ms).
 */
int sl_conn_duration_parse(const char *s, uint32_t *ms);

/* ---- config tables ------------------------------------------------------ */

typedef enum sl_cy_type {
  SL_CY_STR,    /* char[size] */
  SL_CY_U32,    /* uint32_t, range min..max */
  SL_CY_DOUBLE, /* double, range min..max (finite) */
  SL_CY_DUR,    /* uint32_t milliseconds (sl_conn_duration_parse), range */
  SL_CY_ENUM,   /* int: index into names[] */
  SL_CY_BOOL,   /* int: true/false/yes/no/on/off */
  SL_CY_NODE,   /* a mapping or list handled by the row's node_cb */
} sl_cy_type_t;

typedef struct sl_cy sl_cy_t;

/* Handles a nested node (a list of devices, ...). key is the full key for
 * messages ("devices[1].points"). Returns 0 or SL_ECONFIG after calling
 * sl_cy_err(). */
typedef int (*sl_cy_node_cb)(sl_cy_t *cy, yaml_node_t *node, const char *key,
                             void *obj);

/* One row of a config table: the only place a key is named. */
typedef struct sl_cy_opt {
  const char *name;         /* key within its mapping */
  sl_cy_type_t type;        /* how the value is read */
  size_t off;               /* offset of the field in the struct */
  size_t size;              /* SL_CY_STR: buffer size, NUL included */
  double min, max;          /* numeric range (SL_CY_U32/DOUBLE/DUR) */
  const char *const *names; /* SL_CY_ENUM: NULL-terminated names */
  const char *def;          /* default as text, NULL: required */
  sl_cy_node_cb node_cb;    /* SL_CY_NODE */
  const char *doc;          /* one line for docs and --help */
} sl_cy_opt_t;

/*
 * Loads a YAML file into cy. Returns 0, -errno (file cannot be opened) or
 * SL_ECONFIG (a syntax error); the message, naming path:line:column, is in
 * errstr. On success, release with sl_cy_close(). path is borrowed and must
 * outlive cy.
 */
int sl_cy_open(sl_cy_t **out, const char *path, char *errstr, size_t errlen);
void sl_cy_close(sl_cy_t *cy);

/* The document's root node, or NULL for an empty document. Valid until
 * sl_cy_close(). */
yaml_node_t *sl_cy_root(sl_cy_t *cy);

/* yaml_node_t for an index of a document's node table; valid until
 * sl_cy_close(). */
yaml_node_t *sl_cy_node(sl_cy_t *cy, int index);

/*
 * Records an error at node n (NULL: no position) for key (NULL or ""). Only
 * the first error is kept: "path:line:col: key: message". Returns
 * SL_ECONFIG so callers can `return sl_cy_err(...)`.
 */
int sl_cy_err(sl_cy_t *cy, const yaml_node_t *n, const char *key,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Applies the defaults of every row (rows without one are required), then
 * the keys of mapping node map (NULL: an absent section) into obj. prefix
 * names the mapping in messages ("" at the top, "devices[0]"). Unknown keys,
 * wrong types, values out of range and missing required keys are errors.
 * Returns 0 or SL_ECONFIG (message via sl_cy_err()).
 */
int sl_cy_map(sl_cy_t *cy, yaml_node_t *map, const char *prefix,
              const sl_cy_opt_t *tab, size_t n, void *obj);

/*
 * Parses one value for row o from text s into obj (used for defaults and
 * for command-line overrides). Returns 0 or SL_ECONFIG with a message in
 * errstr (which names neither file nor key).
 */
int sl_cy_parse_value(const sl_cy_opt_t *o, const char *s, void *obj,
                      char *errstr, size_t errlen);

/* Finds a row by name; NULL when unknown. */
const sl_cy_opt_t *sl_cy_find(const sl_cy_opt_t *tab, size_t n,
                              const char *name);

#endif /* SL_CONN_H */
