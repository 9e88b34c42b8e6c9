#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "telemetry/log.h"

volatile int sl_log_level_now = SL_LOG_INFO;
volatile uint32_t sl_log_debug_now = 0;
static volatile sl_log_format_t log_format = SL_LOG_PLAIN;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static const struct {
  const char *name;
  uint32_t bit;
} ctx_names[] = {
#define SL__XCTX(id, name) {name, SL_LOG_CTX_##id},
    SL_LOG_CTX_MAP(SL__XCTX)
#undef SL__XCTX
};

void sl_log_configure(sl_log_level_t level, uint32_t debug_mask,
                      sl_log_format_t format) {
  sl_log_level_now = (int)level;
  sl_log_debug_now = debug_mask;
  log_format = format;
}

uint32_t sl_log_ctx_parse(const char *name) {
  if (!strcmp(name, "all"))
    return SL_LOG_CTX_ALL;
  for (size_t i = 0; i < sizeof(ctx_names) / sizeof(ctx_names[0]); i++)
    if (!strcmp(ctx_names[i].name, name))
      return ctx_names[i].bit;
  return 0;
}

static const char *ctx_name(uint32_t ctx) {
  for (size_t i = 0; i < sizeof(ctx_names) / sizeof(ctx_names[0]); i++)
    if (ctx_names[i].bit & ctx)
      return ctx_names[i].name;
  return "main";
}

/* Appends s to buf as the inside of a JSON string. */
static size_t json_escape(char *buf, size_t cap, size_t pos, const char *s) {
  for (; *s && pos + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[pos++] = '\\';
      buf[pos++] = (char)c;
    } else if (c < 0x20) {
      pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
    } else {
      buf[pos++] = (char)c;
    }
  }
  return pos;
}

const char *sl_log_esc(char *buf, size_t cap, const char *s) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  if (!s)
    s = "";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char e[4];
    size_t k = 0;
    if (c == '\\' || c == '\n' || c == '\r' || c == '\t') {
      e[k++] = '\\';
      e[k++] = c == '\\' ? '\\' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
    } else if (c < 0x20 || c >= 0x7f) {
      e[k++] = '\\';
      e[k++] = 'x';
      e[k++] = hex[c >> 4];
      e[k++] = hex[c & 15];
    } else {
      e[k++] = (char)c;
    }
    if (n + k + 4 > cap) { /* keep room for "..." and the NUL */
      memcpy(buf + n, "...", 3);
      n += 3;
      break;
    }
    memcpy(buf + n, e, k);
    n += k;
  }
  buf[n] = 0;
  return buf;
}

/* Plain-text lines: control characters inside a field (a peer string that
 * reached a message without sl_log_esc) become \xHH, so no field can end
 * the line or start a forged one. */
static size_t plain_escape(char *buf, size_t cap, size_t pos, const char *s) {
  static const char hex[] = "0123456789abcdef";
  for (; *s && pos + 5 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c == 0x7f) {
      buf[pos++] = '\\';
      buf[pos++] = 'x';
      buf[pos++] = hex[c >> 4];
      buf[pos++] = hex[c & 15];
    } else {
      buf[pos++] = (char)c;
    }
  }
  return pos;
}

void sl_log_write(sl_log_level_t level, uint32_t ctx, const char *peer,
                  const char *fmt, ...) {
  char msg[2048], line[4600], ts[40];
  struct timespec now;
  struct tm tm;
  va_list ap;
  size_t n;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);

  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);

  if (log_format == SL_LOG_JSON) {
    n = (size_t)snprintf(line, sizeof(line),
                         "{\"ts\":\"%s\",\"level\":\"%s\",\"ctx\":\"%s\"", ts,
                         level_names[level], ctx_name(ctx));
    if (peer) {
      n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"peer\":\"");
      n = json_escape(line, sizeof(line) - 8, n, peer);
      line[n++] = '"';
    }
    n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"msg\":\"");
    n = json_escape(line, sizeof(line) - 4, n, msg);
    line[n++] = '"';
    line[n++] = '}';
    line[n++] = '\n';
  } else {
    n = (size_t)snprintf(line, sizeof(line), "%s %-5s %s: ", ts,
                         level_names[level], ctx_name(ctx));
    if (peer) {
      n = plain_escape(line, sizeof(line) - 8, n, peer);
      line[n++] = ':';
      line[n++] = ' ';
    }
    n = plain_escape(line, sizeof(line) - 2, n, msg);
    line[n++] = '\n';
  }
  /* One write per line: atomic for pipes up to PIPE_BUF and in practice for
   * regular files opened with O_APPEND. Logging failures are ignored. */
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
}

void sl_log_kafka_cb(void *opaque, int level, const char *fac,
                     const char *msg) {
  /* syslog levels: 0..3 error, 4 warning, 5..6 notice/info, 7 debug. */
  sl_log_level_t lvl = level <= 3   ? SL_LOG_ERROR
                       : level == 4 ? SL_LOG_WARN
                       : level <= 6 ? SL_LOG_INFO
                                    : SL_LOG_DEBUG;
  (void)opaque;
  sl_log(lvl, SL_LOG_CTX_SYNC, NULL, "librdkafka %s: %s", fac ? fac : "-",
         msg ? msg : "");
}

void sl_log_mhd_cb(void *cls, const char *fmt, va_list ap) {
  char msg[1024];
  size_t n;
  if (!SL_LOG_ON(SL_LOG_WARN, SL_LOG_CTX_HTTP))
    return;
  vsnprintf(msg, sizeof(msg), fmt, ap);
  /* libmicrohttpd ends its messages with a newline: one line is ours. */
  n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = '\0';
  sl_log_write(SL_LOG_WARN,
               cls && !strcmp(cls, "admin") ? SL_LOG_CTX_ADMIN
                                            : SL_LOG_CTX_HTTP,
               NULL, "libmicrohttpd: %s", msg);
}
