/*
 * Integration test (real Mosquitto from scripts/harness): sluice-sim over
 * MQTT publishes one JSON event per message, QoS 1, on
 * <prefix>/<stream>/<source>; a subscriber receives every one of them.
 *
 *   sim_mqtt_test SLUICE_SIM      (needs SLUICE_TEST_MQTT_HOST/PORT; 77
 *                                  = skipped without them)
 */
#include <jansson.h>
#include <mosquitto.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 600

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int received, bad, subscribed;
static char prefix[64];

static void on_subscribe(struct mosquitto *m, void *arg, int mid, int n,
                         const int *qos) {
  (void)m, (void)arg, (void)mid, (void)n, (void)qos;
  pthread_mutex_lock(&mu);
  subscribed = 1;
  pthread_mutex_unlock(&mu);
}

static void on_message(struct mosquitto *m, void *arg,
                       const struct mosquitto_message *msg) {
  json_error_t err;
  json_t *j = json_loadb(msg->payload, (size_t)msg->payloadlen, 0, &err);
  const char *src = j ? json_string_value(json_object_get(j, "source")) : NULL;
  char want[600];
  (void)m, (void)arg;
  pthread_mutex_lock(&mu);
  if (src) {
    snprintf(want, sizeof(want), "%s/%s/%s", prefix,
             json_object_get(j, "inference") ? "inference" : "readings", src);
    if (strcmp(want, msg->topic) ||
        !json_is_integer(json_object_get(j, "time_ns")))
      bad++;
  } else {
    bad++;
  }
  received++;
  pthread_mutex_unlock(&mu);
  json_decref(j);
}

static int get(int *v) {
  pthread_mutex_lock(&mu);
  int x = *v;
  pthread_mutex_unlock(&mu);
  return x;
}

static int now_s(void) {
  return (int)time(NULL);
}

int main(int argc, char **argv) {
  const char *host = getenv("SLUICE_TEST_MQTT_HOST"),
             *port = getenv("SLUICE_TEST_MQTT_PORT");
  char addr[300], filter[80], cmd[1200];
  struct mosquitto *m;
  int st, deadline;

  if (argc != 2)
    return 2;
  if (!host || !port) {
    fprintf(stderr, "SLUICE_TEST_MQTT_HOST/PORT not set: skipped\n");
    return 77;
  }
  snprintf(prefix, sizeof(prefix), "simtest-%d", (int)getpid());
  snprintf(filter, sizeof(filter), "%s/#", prefix);
  snprintf(addr, sizeof(addr), "%s:%s", host, port);
  mosquitto_lib_init();
  m = mosquitto_new(NULL, true, NULL);
  mosquitto_subscribe_callback_set(m, on_subscribe);
  mosquitto_message_callback_set(m, on_message);
  if (mosquitto_connect(m, host, atoi(port), 30) != MOSQ_ERR_SUCCESS ||
      mosquitto_loop_start(m) != MOSQ_ERR_SUCCESS ||
      mosquitto_subscribe(m, NULL, filter, 1) != MOSQ_ERR_SUCCESS) {
    fprintf(stderr, "FAIL: cannot subscribe at %s\n", addr);
    return 1;
  }
  for (deadline = now_s() + 10; !get(&subscribed); usleep(10000))
    if (now_s() > deadline) {
      fprintf(stderr, "FAIL: no SUBACK\n");
      return 1;
    }
  snprintf(cmd, sizeof(cmd),
           "%s --output mqtt --address %s --topic-prefix %s --client-id %s "
           "--count %d --rate 3000 --inference-rate 300 --sources 12 "
           "--inference-sources 2 >&2",
           argv[1], addr, prefix, prefix, N);
  st = system(cmd);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "FAIL: sluice-sim exit status %d\n", st);
    return 1;
  }
  /* Every PUBACKed message reaches the subscriber (QoS 1). */
  for (deadline = now_s() + 10; get(&received) < N; usleep(10000))
    if (now_s() > deadline)
      break;
  mosquitto_disconnect(m);
  mosquitto_loop_stop(m, false);
  mosquitto_destroy(m);
  mosquitto_lib_cleanup();
  if (received < N || bad) {
    fprintf(stderr, "FAIL: received %d of %d, %d malformed or misplaced\n",
            received, N, bad);
    return 1;
  }
  printf("sim_mqtt_test: ok (%d messages)\n", received);
  return 0;
}
