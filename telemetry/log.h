/*
 * Daemon logging. The only place sluice writes log lines: library layers
 * (common, schemas, store, client) return codes instead. One macro checks the
 * level (and the debug context) before any formatting happens, so a disabled
 * debug line costs a load and a branch.
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef enum sl_log_level {
  SL_LOG_ERROR = 0,
  SL_LOG_WARN = 1,
  SL_LOG_INFO = 2,
  SL_LOG_DEBUG = 3,
} sl_log_level_t;

/* Log contexts: the debug contexts chosen in config (log.debug, the list in
 * config/config.h) plus admin, which has no debug lines. */
#define SL_LOG_CTX_MAP(X) SL_CONFIG_DBG_MAP(X) X(ADMIN, "admin")

enum {
#define SL__XCTX(id, name) SL_LOG_CTX_##id = SL_CONFIG_DBG_##id,
  SL_CONFIG_DBG_MAP(SL__XCTX)
#undef SL__XCTX
      SL_LOG_CTX_ADMIN = SL_CONFIG_DBG_ALL + 1,
  SL_LOG_CTX_ALL = SL_CONFIG_DBG_ALL | SL_LOG_CTX_ADMIN
};

typedef enum sl_log_format {
  SL_LOG_PLAIN = 0,
  SL_LOG_JSON = 1,
} sl_log_format_t;

/* Current settings; read without locks on the hot path (set at start and on
 * reload from the loop thread; a torn read only mis-filters one line). */
extern volatile int sl_log_level_now;
extern volatile uint32_t sl_log_debug_now;

/* Applies settings (start and SIGHUP reload). */
void sl_log_configure(sl_log_level_t level, uint32_t debug_mask,
                      sl_log_format_t format);

/* Maps "store", "all", ... to a context bit; 0 when unknown. */
uint32_t sl_log_ctx_parse(const char *name);

/*
 * Copies the peer-supplied string s into buf (cap bytes, cap >= 4) so it is
 * safe inside a log line: backslash, control characters (newline, carriage
 * return, escape, DEL) and bytes outside printable ASCII become \\, \n,
 * \r, \t or \xHH; a string that does not fit ends in "...". NULL
 * becomes "". Returns buf. Use for client ids, topics, stream names and
 * other text a client chose, wherever it is logged.
 */
const char *sl_log_esc(char *buf, size_t cap, const char *s);

/* Writes one line to stderr with a single write(2), so lines from several
 * threads never interleave. Use the macros below, not this. */
void sl_log_write(sl_log_level_t level, uint32_t ctx, const char *peer,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Log sinks for libraries that would otherwise write raw lines to stderr
 * (and break log.format json). Thread-safe.
 * sl_log_kafka_cb: sl_sync_opts_t.log_cb; level is syslog's 0..7.
 * sl_log_mhd_cb: libmicrohttpd's MHD_OPTION_EXTERNAL_LOGGER; cls is a
 * static context name such as "http" or "admin". */
void sl_log_kafka_cb(void *opaque, int level, const char *fac, const char *msg);
void sl_log_mhd_cb(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define SL_LOG_ON(lvl, ctx)                                                    \
  ((int)(lvl) <= sl_log_level_now &&                                           \
   ((lvl) != SL_LOG_DEBUG || (sl_log_debug_now & (ctx))))

/* sl_log(LEVEL, CTX, PEER_OR_NULL, fmt, ...): every line about a client names
 * it through PEER ("tcp:127.0.0.1:53122", "mqtt:plant-gw", ...). */
#define sl_log(lvl, ctx, peer, ...)                                            \
  do {                                                                         \
    if (SL_LOG_ON(lvl, ctx))                                                   \
      sl_log_write(lvl, ctx, peer, __VA_ARGS__);                               \
  } while (0)

#define sl_error(ctx, peer, ...) sl_log(SL_LOG_ERROR, ctx, peer, __VA_ARGS__)
#define sl_warn(ctx, peer, ...) sl_log(SL_LOG_WARN, ctx, peer, __VA_ARGS__)
#define sl_info(ctx, peer, ...) sl_log(SL_LOG_INFO, ctx, peer, __VA_ARGS__)
#define sl_debug(ctx, peer, ...) sl_log(SL_LOG_DEBUG, ctx, peer, __VA_ARGS__)

#endif /* SL_LOG_H */
