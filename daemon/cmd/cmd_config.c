/*
 * daemon/cmd/cmd_config.c: `sluice check-config` and `sluice config-docs`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

static int check_usage(void) {
  fprintf(stderr, "usage: sluice check-config -c FILE [--print]\n");
  return 2;
}

int sl_config_cmd_check(int argc, char **argv) {
  const char *path = NULL;
  bool print = false;
  sl_config_t *cfg;
  int rc;

  for (int i = 1; i < argc; i++) {
    if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) &&
        i + 1 < argc)
      path = argv[++i];
    else if (!strcmp(argv[i], "--print"))
      print = true;
    else
      return check_usage();
  }
  if (!path)
    return check_usage();

  /* Room for SL_CONFIG_MAX_ERRORS lines of about 600 bytes. */
  size_t errlen = 16384;
  char *errstr = malloc(errlen);
  if (!errstr)
    abort();
  rc = sl_config_load_file(path, &cfg, errstr, errlen);
  if (rc) {
    fprintf(stderr, "%s\n", errstr);
    free(errstr);
    return 1;
  }
  free(errstr);
  if (print)
    rc = sl_config_dump(cfg, stdout);
  else
    printf("%s: ok\n", path);
  sl_config_free(cfg);
  return rc || fflush(stdout) ? 1 : 0;
}

int sl_config_cmd_docs(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--bootstrap")) {
    /* The enrolment bootstrap file's keys (docs/ENROLMENT.md). */
    sl_config_bootstrap_doc(stdout);
    return fflush(stdout) ? 1 : 0;
  }
  if (argc > 1) {
    fprintf(stderr, "usage: sluice config-docs [--bootstrap] > "
                    "docs/CONFIGURATION.md\n");
    return 2;
  }
  return sl_config_doc_markdown(stdout) ? 1 : 0;
}
