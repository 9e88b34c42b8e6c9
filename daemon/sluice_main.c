/*
 * sluice: the store-and-forward edge data plane. This file only dispatches
 * subcommands; each lives in its own file.
 */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "common/common.h"

int sl_cmd_run(int argc, char **argv);
int sl_cmd_store(int argc, char **argv);
int sl_cmd_ctl(int argc, char **argv);
int sl_cmd_fleet(int argc, char **argv);
int sl_cmd_fleet_enroll(int argc, char **argv);
int sl_cmd_fleet_acl(int argc, char **argv);

#ifndef SL_VERSION
#define SL_VERSION "0.1.0"
#endif

static int usage(FILE *out) {
  fprintf(out, "usage: sluice <command> [options]\n"
               "\n"
               "commands:\n"
               "  run -c FILE [--accept-new-store]  run the daemon\n"
               "  store stats|inspect|verify|dump -d DIR  store tools\n"
               "  ctl status|reload [--wait-healthy DURATION]  talk to a "
               "running daemon\n"
               "  fleet init|policy|render|status|rollout|decommission  the "
               "fleet centre\n"
               "  fleet enroll|acl   enrolment service and ACLs "
               "(docs/ENROLMENT.md)\n"
               "  check-config -c FILE [--print]  validate a config file\n"
               "  config-docs        print the configuration reference\n"
               "  version            print the version\n"
               "  help               this text\n");
  return out == stderr ? 2 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2)
    return usage(stderr);
  if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
    printf("sluice %s\n", SL_VERSION);
    return 0;
  }
  if (!strcmp(argv[1], "run"))
    return sl_cmd_run(argc - 1, argv + 1);
  if (!strcmp(argv[1], "ctl"))
    return sl_cmd_ctl(argc - 1, argv + 1);
  /* `sluice fleet enroll|acl` (cmd_enroll.c); the rest of `fleet` is
   * cmd_fleet.c's. */
  if (!strcmp(argv[1], "fleet") && argc > 2 && !strcmp(argv[2], "enroll"))
    return sl_cmd_fleet_enroll(argc - 2, argv + 2);
  if (!strcmp(argv[1], "fleet") && argc > 2 && !strcmp(argv[2], "acl"))
    return sl_cmd_fleet_acl(argc - 2, argv + 2);
  if (!strcmp(argv[1], "fleet"))
    return sl_cmd_fleet(argc - 1, argv + 1);
  if (!strcmp(argv[1], "store"))
    return sl_cmd_store(argc - 1, argv + 1);
  if (!strcmp(argv[1], "check-config"))
    return sl_config_cmd_check(argc - 1, argv + 1);
  if (!strcmp(argv[1], "config-docs"))
    return sl_config_cmd_docs(argc - 1, argv + 1);
  if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
      !strcmp(argv[1], "-h"))
    return usage(stdout);
  fprintf(stderr, "sluice: unknown command '%s'\n", argv[1]);
  return usage(stderr);
}
