/*
 * sluice-opcua: subscribes to OPC UA servers' variables and publishes them
 * into sluice through the C client library (docs/CONNECTORS.md).
 *
 *   sluice-opcua -c opcua.yaml            run until SIGTERM or SIGINT
 *   sluice-opcua -c opcua.yaml --check    validate the config and exit
 *   sluice-opcua --config-docs            the config reference (Markdown)
 *   sluice-opcua browse URL [--user U] [--password-env VAR]
 *                [--allow-plaintext-password] [--depth N]
 *                                         list a server's variables
 *
 * Exit codes: 0 clean stop with every event acked; 1 events were dropped,
 * failed or not acked within the flush time, or browse failed; 2 usage or
 * config error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "connectors/common/conn.h"
#include "connectors/common/conn_cfg.h"
#include "connectors/opcua/opcua.h"

static void usage(FILE *f) {
  fprintf(f, "usage: sluice-opcua -c FILE [--check]\n"
             "       sluice-opcua --config-docs\n"
             "       sluice-opcua browse URL [--user U] [--password-env VAR]\n"
             "                    [--allow-plaintext-password] [--depth N]\n"
             "  -c, --config FILE  YAML config (see docs/CONNECTORS.md)\n"
             "      --check        validate the config and exit\n"
             "      --config-docs  print the config reference (Markdown)\n"
             "  browse             list the variables under Objects: NodeId, "
             "browse path,\n"
             "                     type, value (tab-separated)\n");
}

static void log_stats(const char *what, const sl_opcua_stats_t *s) {
  SL_CLOG(SL_CONN_LOG_INFO,
          "%s: notifications %llu changes %llu reads %llu republished %llu "
          "lost %llu overflows %llu item_errors %llu failures %llu published "
          "%llu acked "
          "%llu failed %llu dropped %llu servers up %u items ok %u",
          what, (unsigned long long)s->notifications,
          (unsigned long long)s->changes, (unsigned long long)s->reads,
          (unsigned long long)s->republished, (unsigned long long)s->lost,
          (unsigned long long)s->overflows, (unsigned long long)s->item_errors,
          (unsigned long long)s->failures, (unsigned long long)s->published,
          (unsigned long long)s->acked, (unsigned long long)s->failed,
          (unsigned long long)s->dropped, s->servers_up, s->items_ok);
}

static int browse_main(int argc, char **argv) {
  sl_opcua_browse_opts_t o = {.timeout_ms = 5000};
  char err[400];
  if (argc < 3) {
    usage(stderr);
    return 2;
  }
  o.url = argv[2];
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--user") && i + 1 < argc) {
      o.user = argv[++i];
    } else if (!strcmp(argv[i], "--password-env") && i + 1 < argc) {
      /* From the environment: a password on the command line is visible
       * to every user in the process list. */
      o.password = getenv(argv[++i]);
    } else if (!strcmp(argv[i], "--allow-plaintext-password")) {
      o.allow_plaintext_password = true;
    } else if (!strcmp(argv[i], "--depth") && i + 1 < argc) {
      o.max_depth = (uint32_t)atoi(argv[++i]);
    } else {
      usage(stderr);
      return 2;
    }
  }
  sl_conn_log_init("sluice-opcua", SL_CONN_LOG_INFO);
  if (sl_opcua_browse(&o, stdout, err, sizeof(err))) {
    fprintf(stderr, "sluice-opcua: browse %s: %s\n", o.url, err);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *path = NULL;
  sl_opcua_config_t *cfg = NULL;
  sl_opcua_stats_t st;
  sl_opcua_t *ua = NULL;
  char err[8192];
  int check = 0, rc, sig;
  sigset_t set;

  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && !strcmp(argv[1], "browse"))
    return browse_main(argc, argv);
  if ((rc = sl_conn_args(argc, argv, &path, &check, sl_opcua_config_docs,
                         usage)) >= 0)
    return rc;
  sl_conn_log_init("sluice-opcua", SL_CONN_LOG_INFO);
  if ((rc = sl_opcua_config_load(path, &cfg, err, sizeof(err)))) {
    fprintf(stderr, "sluice-opcua: %s\n", err[0] ? err : sl_strerror(rc));
    return 2;
  }
  if (check) {
    size_t n = 0;
    for (size_t i = 0; i < cfg->nservers; i++)
      n += cfg->servers[i].nitems;
    printf("%s: ok (%zu servers, %zu items)\n", path, cfg->nservers, n);
    sl_opcua_config_free(cfg);
    return 0;
  }
  sl_conn_log_init("sluice-opcua", (sl_conn_log_level_t)cfg->log_level);
  /* Signals are taken synchronously here; every thread inherits the mask. */
  sl_conn_signals(&set);
  if ((rc = sl_opcua_start(cfg, &ua))) {
    SL_CLOG(SL_CONN_LOG_ERROR, "start: %s", sl_strerror(rc));
    sl_opcua_config_free(cfg);
    return rc == SL_ECONFIG ? 2 : 1;
  }
  SL_CLOG(SL_CONN_LOG_INFO, "ready: %zu servers, publishing to %s",
          cfg->nservers, cfg->address);
  for (;;) {
    struct timespec ts = {60, 0};
    sig = sigtimedwait(&set, NULL, &ts);
    if (sig == SIGINT || sig == SIGTERM)
      break;
    sl_opcua_stats(ua, &st);
    log_stats("stats", &st);
  }
  SL_CLOG(SL_CONN_LOG_INFO, "signal %d: stopping", sig);
  rc = sl_opcua_stop(ua, 10000, &st);
  log_stats("stopped", &st);
  sl_opcua_config_free(cfg);
  return rc ? 1 : 0;
}
