/*
 * connectors/common/conn_cfg.h: what every connector's config table and
 * main() share (sluice-modbus, sluice-opcua): the rows of the daemon
 * connection, the log level row, the historic string-length checks, the
 * command line `-c FILE [--check] [--config-docs]` and the signal set.
 * Rows are for the config engine (config/cfg.h).
 */
#ifndef SL_CONN_CFG_H
#define SL_CONN_CFG_H

#include <signal.h>
#include <stdio.h>

/* "error", "warn", "info", "debug" (sl_conn_log_level_t order), NULL. */
extern const char *const sl_conn_log_levels[];

/* String checks: NULL, or "is longer than N bytes" (the connectors'
 * historic fixed buffers, kept as limits so sources stay bounded). */
const char *sl_conn_max31(const char *s);
const char *sl_conn_max63(const char *s);
const char *sl_conn_max159(const char *s);
const char *sl_conn_max199(const char *s);
const char *sl_conn_max255(const char *s);

#define SL_CONN_ROW(T, key, ty, f, d, fl, doc, ...)                            \
  {                                                                            \
    .name = key, .type = SL_CFG_##ty, .off = offsetof(T, f), .def = d,         \
    .flags = fl, .desc = doc, __VA_ARGS__                                      \
  }

/* The daemon connection's rows of config struct T (fields address, token,
 * client_id, stream, status_stream, max_buffered): the client library's
 * options. id: the default client id; what: "device" or "server". */
#define SL_CONN_CLIENT_ROWS(T, id, what)                                       \
  SL_CONN_ROW(T, "address", STRING, address, NULL, SL_CFG_REQUIRED,            \
              "The daemon's native listener: host:port or unix:/path.",        \
              .check = sl_conn_max255),                                        \
      SL_CONN_ROW(T, "token", STRING, token, "", SL_CFG_SECRET,                \
                  "Listener token, if it requires one.",                       \
                  .check = sl_conn_max255),                                    \
      SL_CONN_ROW(T, "client_id", STRING, client_id, id, 0,                    \
                  "Names this connector in the daemon.",                       \
                  .check = sl_conn_max63),                                     \
      SL_CONN_ROW(T, "stream", STRING, stream, "", 0,                          \
                  "Stream for readings (\"\": the listener's default).",       \
                  .check = sl_conn_max199),                                    \
      SL_CONN_ROW(T, "status_stream", STRING, status_stream, "", 0,            \
                  "Stream for " what " status events (\"\": same as stream).", \
                  .check = sl_conn_max199),                                    \
      SL_CONN_ROW(T, "max_buffered", UINT, max_buffered, "100000", 0,          \
                  "Events published but not yet acked, at most.", .min = "1",  \
                  .max = "10000000")

/* The log level row of config struct T (field log_level). */
#define SL_CONN_LOG_ROW(T)                                                     \
  SL_CONN_ROW(T, "log_level", ENUM, log_level, "info", 0, "Log level.",        \
              .enums = sl_conn_log_levels)

/*
 * The connectors' command line: `-c FILE` (or --config), `--check`,
 * `--config-docs` (docs(stdout)), `-h`/`--help` (usage(stdout)). Returns
 * -1 to go on with *path and *check set, else the exit status.
 */
int sl_conn_args(int argc, char **argv, const char **path, int *check,
                 int (*docs)(FILE *out), void (*usage)(FILE *out));

/* Blocks SIGINT and SIGTERM in every thread started afterwards (main takes
 * them with sigwait(set)) and ignores SIGPIPE. */
void sl_conn_signals(sigset_t *set);

#endif /* SL_CONN_CFG_H */
