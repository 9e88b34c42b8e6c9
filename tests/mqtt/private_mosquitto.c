/* A private Mosquitto through scripts/mosquitto.sh (private_mosquitto.h). */
#include <stdio.h>
#include <stdlib.h>

#include "tests/common/daemon_fixture.h"
#include "tests/mqtt/private_mosquitto.h"

static const char *mosq_sh;
static char mosq_dir[400];

void private_mosq_init(const char *script, const char *sub) {
  mosq_sh = script;
  snprintf(mosq_dir, sizeof(mosq_dir), "%s/%s", dir, sub);
}

void private_mosq(const char *verb) {
  char cmd[1200];
  snprintf(cmd, sizeof(cmd), "SLUICE_MOSQUITTO_DIR=%s %s %s", mosq_dir, mosq_sh,
           verb);
  CHECK(system(cmd) == 0, "mosquitto.sh %s", verb);
}

int private_mosq_start(void) {
  char portfile[450];
  FILE *pf;
  int port = 0;
  private_mosq("start");
  private_mosq("wait-ready");
  snprintf(portfile, sizeof(portfile), "%s/port", mosq_dir);
  CHECK((pf = fopen(portfile, "r")) && fscanf(pf, "%d", &port) == 1,
        "mosquitto port");
  fclose(pf);
  return port;
}

void private_mosq_stop_quiet(void) {
  char cmd[1200];
  snprintf(cmd, sizeof(cmd), "SLUICE_MOSQUITTO_DIR=%s %s stop >/dev/null 2>&1",
           mosq_dir, mosq_sh);
  if (system(cmd) < 0)
    perror("system");
}
