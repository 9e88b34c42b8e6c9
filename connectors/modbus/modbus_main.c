/*
 * sluice-modbus: polls Modbus TCP devices and publishes their readings into
 * sluice through the C client library (docs/CONNECTORS.md).
 *
 *   sluice-modbus -c modbus.yaml           run until SIGTERM or SIGINT
 *   sluice-modbus -c modbus.yaml --check   validate the config and exit
 *   sluice-modbus --config-docs            the config reference (Markdown)
 *
 * Exit codes: 0 clean stop with every event acked; 1 events were dropped,
 * failed or not acked within the flush time; 2 usage or config error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "connectors/common/conn.h"
#include "connectors/common/conn_cfg.h"
#include "connectors/modbus/modbus.h"

static void usage(FILE *f) {
  fprintf(f, "usage: sluice-modbus -c FILE [--check]\n"
             "       sluice-modbus --config-docs\n"
             "  -c, --config FILE  YAML config (see docs/CONNECTORS.md)\n"
             "      --check        validate the config and exit\n"
             "      --config-docs  print the config reference (Markdown)\n");
}

static void log_stats(const char *what, const sl_modbus_stats_t *s) {
  SL_CLOG(SL_CONN_LOG_INFO,
          "%s: polls %llu exceptions %llu failures %llu published %llu "
          "acked %llu failed %llu dropped %llu devices up %u",
          what, (unsigned long long)s->polls, (unsigned long long)s->exceptions,
          (unsigned long long)s->failures, (unsigned long long)s->published,
          (unsigned long long)s->acked, (unsigned long long)s->failed,
          (unsigned long long)s->dropped, s->devices_up);
}

int main(int argc, char **argv) {
  const char *path = NULL;
  sl_modbus_config_t *cfg = NULL;
  sl_modbus_stats_t st;
  sl_modbus_t *mb = NULL;
  char err[8192]; /* every error, one per line */
  int check = 0, rc, sig;
  sigset_t set;

  if ((rc = sl_conn_args(argc, argv, &path, &check, sl_modbus_config_docs,
                         usage)) >= 0)
    return rc;
  sl_conn_log_init("sluice-modbus", SL_CONN_LOG_INFO);
  if ((rc = sl_modbus_config_load(path, &cfg, err, sizeof(err)))) {
    fprintf(stderr, "sluice-modbus: %s\n", err[0] ? err : sl_strerror(rc));
    return 2;
  }
  if (check) {
    size_t n = 0;
    for (size_t i = 0; i < cfg->ndevices; i++)
      n += cfg->devices[i].npoints;
    printf("%s: ok (%zu devices, %zu points)\n", path, cfg->ndevices, n);
    sl_modbus_config_free(cfg);
    return 0;
  }
  sl_conn_log_init("sluice-modbus", (sl_conn_log_level_t)cfg->log_level);
  /* Signals are taken synchronously here; every thread inherits the mask. */
  sl_conn_signals(&set);
  if ((rc = sl_modbus_start(cfg, &mb))) {
    SL_CLOG(SL_CONN_LOG_ERROR, "start: %s", sl_strerror(rc));
    sl_modbus_config_free(cfg);
    return rc == SL_ECONFIG ? 2 : 1;
  }
  SL_CLOG(SL_CONN_LOG_INFO, "ready: %zu devices, publishing to %s",
          cfg->ndevices, cfg->address);
  for (;;) {
    struct timespec ts = {60, 0};
    sig = sigtimedwait(&set, NULL, &ts);
    if (sig == SIGINT || sig == SIGTERM)
      break;
    sl_modbus_stats(mb, &st);
    log_stats("stats", &st);
  }
  SL_CLOG(SL_CONN_LOG_INFO, "signal %d: stopping", sig);
  rc = sl_modbus_stop(mb, 10000, &st);
  log_stats("stopped", &st);
  sl_modbus_config_free(cfg);
  return rc ? 1 : 0;
}
