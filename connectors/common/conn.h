/*
 * connectors/common: what every connector program shares: one log macro.
 * Config files and their durations are read by the config engine
 * (config/cfg.h, library sl_cfg), the daemon's.
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

#endif /* SL_CONN_H */
