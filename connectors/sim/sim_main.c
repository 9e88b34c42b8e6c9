/*
 * sluice-sim: realistic sensor readings and inference results for demos,
 * tests and load tests (docs/CONNECTORS.md).
 *
 *   sluice-sim [-c sim.yaml] [--KEY VALUE ...]
 *
 * Every key of the YAML file is also an option; options override the file.
 * Prints one summary line on stdout. Exit codes: 0 every event acked;
 * 1 some failed or stayed unacked; 2 usage or config error.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"
#include "connectors/common/conn.h"
#include "connectors/sim/sim.h"

static volatile sig_atomic_t stop_sig;
static volatile int stop_flag;

static void on_signal(int sig) {
  stop_sig = sig;
  stop_flag = 1;
}

static void usage(FILE *f) {
  fprintf(f, "usage: sluice-sim [-c FILE] [--KEY VALUE ...]\n"
             "  -c, --config FILE   YAML file with the keys below\n");
  sl_sim_config_help(f);
}

int main(int argc, char **argv) {
  const char *path = NULL;
  sl_sim_config_t cfg;
  sl_sim_stats_t st;
  char err[8192]; /* every error, one per line */
  int first = 1, rc;
  struct sigaction sa;

  if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
    usage(stdout);
    return 0;
  }
  if (argc > 2 && (!strcmp(argv[1], "-c") || !strcmp(argv[1], "--config"))) {
    path = argv[2];
    first = 3;
  }
  /* Dashes in option names are accepted for underscores. */
  for (int i = first; i < argc; i++)
    if (!strncmp(argv[i], "--", 2))
      for (char *p = argv[i] + 2; *p; p++)
        if (*p == '-')
          *p = '_';
  if (sl_sim_config_load(&cfg, path, argc - first, argv + first, err,
                         sizeof(err))) {
    fprintf(stderr, "sluice-sim: %s\n", err);
    return 2;
  }
  sl_conn_log_init("sluice-sim", (sl_conn_log_level_t)cfg.log_level);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  rc = sl_sim_run(&cfg, &stop_flag, &st);
  sl_sim_config_free(&cfg);
  printf("sluice-sim: readings %llu inference %llu published %llu acked %llu "
         "failed %llu gaps %llu in %.2f s%s%s\n",
         (unsigned long long)st.readings, (unsigned long long)st.inference,
         (unsigned long long)st.published, (unsigned long long)st.acked,
         (unsigned long long)st.failed, (unsigned long long)st.gaps, st.seconds,
         rc ? ": " : "", rc ? sl_strerror(rc) : "");
  return rc ? 1 : 0;
}
