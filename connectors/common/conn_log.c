/* connectors/common/conn_log.c: one line per write(2) to stderr. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "connectors/common/conn.h"

volatile int sl_conn_log_level_now = SL_CONN_LOG_INFO;
static const char *log_prog = "connector";
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void sl_conn_log_init(const char *prog, sl_conn_log_level_t level) {
  log_prog = prog;
  sl_conn_log_level_now = (int)level;
}

int sl_conn_log_level_parse(const char *name) {
  for (int i = 0; i < 4; i++)
    if (!strcasecmp(name, level_names[i]))
      return i;
  return -1;
}

void sl_conn_log_write(sl_conn_log_level_t level, const char *fmt, ...) {
  char line[1024];
  struct timespec ts;
  struct tm tm;
  va_list ap;
  size_t n;
  int k;

  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  k = snprintf(line, sizeof(line),
               "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
               tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
               tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_prog,
               level_names[(unsigned)level < 4 ? level : 0]);
  n = k > 0 ? SL_MIN((size_t)k, sizeof(line) - 2) : 0;
  va_start(ap, fmt);
  k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
  va_end(ap);
  if (k > 0)
    n = SL_MIN(n + (size_t)k, sizeof(line) - 2);
  line[n++] = '\n';
  if (write(STDERR_FILENO, line, n) < 0)
    return; /* nowhere left to report it */
}
