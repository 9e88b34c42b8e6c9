/*
 * sl_mqtt_bench: publishers through one Mosquitto, and either a minimal
 * libmosquitto reference subscriber that only counts (--sub ref) or a
 * running sluice whose admin metrics are polled (--sub sluice). Reports the
 * subscriber's rate: messages received / time from the first publish to
 * the last message received. One JSON object on stdout.
 *
 *   sl_mqtt_bench --host H --port P --qos 0|1 --messages N --topic T
 *                 [--publishers C] --sub ref|sluice
 *                 [--admin-port A --series 'sluice_ingest_events_total{...}']
 *
 * Payloads are realistic readings (~150 bytes of JSON, 500 sources).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "loadtest/common/scrape.h"

static const char *host = "127.0.0.1", *topic = "bench", *sub_kind = "ref",
                  *series = NULL;
static int port, qos = 1, publishers = 2, admin_port;
static long messages = 200000;
static _Atomic long received, published, acked;
static _Atomic uint64_t last_rx_ns;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "sl_mqtt_bench: %s: %s\n", what, mosquitto_strerror(rc));
  exit(1);
}

/* ---- reference subscriber ---------------------------------------------- */

static void ref_on_message(struct mosquitto *m, void *o,
                           const struct mosquitto_message *msg) {
  (void)m;
  (void)o;
  (void)msg;
  atomic_fetch_add(&received, 1);
  atomic_store(&last_rx_ns, now_ns());
}

static volatile int subscribed;
static void ref_on_subscribe(struct mosquitto *m, void *o, int mid, int n,
                             const int *g) {
  (void)m;
  (void)o;
  (void)mid;
  (void)n;
  (void)g;
  subscribed = 1;
}

/* ---- publishers ---------------------------------------------------------- */

static void on_publish(struct mosquitto *m, void *o, int mid) {
  (void)m;
  (void)o;
  (void)mid;
  atomic_fetch_add(&acked, 1);
}

static void *pub_run(void *arg) {
  long id = (long)arg, n = messages / publishers + (id < messages % publishers);
  char cid[64], t[256], payload[256];
  struct mosquitto *m;
  int rc;
  snprintf(cid, sizeof(cid), "bench-pub-%d-%ld", (int)getpid(), id);
  if (!(m = mosquitto_new(cid, true, NULL)))
    die("mosquitto_new", MOSQ_ERR_NOMEM);
  mosquitto_publish_callback_set(m, on_publish);
  mosquitto_max_inflight_messages_set(m, 1000);
  if ((rc = mosquitto_connect(m, host, port, 60)))
    die("publisher connect", rc);
  if ((rc = mosquitto_loop_start(m)))
    die("loop_start", rc);
  double v = 20.0;
  for (long i = 0; i < n; i++) {
    long src = (id * 7919 + i) % 500;
    v += ((double)((i * 2654435761u) % 1000) - 500.0) / 10000.0;
    int len = snprintf(payload, sizeof(payload),
                       "{\"value\":%.4f,\"unit\":\"degC\",\"quality\":\"good\","
                       "\"time\":%lld,\"seq\":%ld,\"site\":\"plant-1\"}",
                       v, (long long)(1700000000000ll + i), i);
    snprintf(t, sizeof(t), "%s/s%ld/l%ld/m%ld", topic, src / 100,
             (src / 10) % 10, src % 10);
    /* Keep the client's own queue bounded: QoS 0 has no PUBACK to wait
     * for, so pace on what libmosquitto still holds. */
    while (qos == 1 && i - (atomic_load(&acked) / publishers) > 5000)
      usleep(200);
    while ((rc = mosquitto_publish(m, NULL, t, len, payload, qos, false)) ==
           MOSQ_ERR_NOMEM)
      usleep(1000);
    if (rc)
      die("publish", rc);
    atomic_fetch_add(&published, 1);
    if (qos == 0 && (i & 1023) == 0)
      while (mosquitto_want_write(m))
        usleep(100);
  }
  while (qos == 1 && atomic_load(&acked) < messages)
    usleep(1000);
  if (qos == 0)
    while (mosquitto_want_write(m))
      usleep(1000);
  mosquitto_disconnect(m);
  mosquitto_loop_stop(m, false);
  mosquitto_destroy(m);
  return NULL;
}

/* ---- sluice: poll the admin metric ----------------------------------------
 */

static double metric(void) {
  double v;
  return sl_scrape_metric(admin_port, series, &v) == 0 ? v : -1;
}

int main(int argc, char **argv) {
  struct mosquitto *ref = NULL;
  pthread_t th[64];
  double base = 0;
  int rc;

  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--host"))
      host = v;
    else if (!strcmp(k, "--port"))
      port = atoi(v);
    else if (!strcmp(k, "--qos"))
      qos = atoi(v);
    else if (!strcmp(k, "--messages"))
      messages = atol(v);
    else if (!strcmp(k, "--topic"))
      topic = v;
    else if (!strcmp(k, "--publishers"))
      publishers = atoi(v);
    else if (!strcmp(k, "--sub"))
      sub_kind = v;
    else if (!strcmp(k, "--admin-port"))
      admin_port = atoi(v);
    else if (!strcmp(k, "--series"))
      series = v;
    else {
      fprintf(stderr, "sl_mqtt_bench: unknown option %s\n", k);
      return 2;
    }
  }
  if (!port || publishers < 1 || publishers > 64 || (qos != 0 && qos != 1) ||
      (!strcmp(sub_kind, "sluice") && (!admin_port || !series))) {
    fprintf(stderr, "sl_mqtt_bench: bad arguments\n");
    return 2;
  }
  mosquitto_lib_init();
  if (!strcmp(sub_kind, "ref")) {
    char filt[300];
    if (!(ref = mosquitto_new("bench-ref", true, NULL)))
      die("mosquitto_new", MOSQ_ERR_NOMEM);
    mosquitto_message_callback_set(ref, ref_on_message);
    mosquitto_subscribe_callback_set(ref, ref_on_subscribe);
    if ((rc = mosquitto_connect(ref, host, port, 60)))
      die("reference connect", rc);
    snprintf(filt, sizeof(filt), "%s/#", topic);
    mosquitto_subscribe(ref, NULL, filt, qos);
    if ((rc = mosquitto_loop_start(ref)))
      die("loop_start", rc);
    while (!subscribed)
      usleep(1000);
  } else {
    base = metric();
    if (base < 0) {
      fprintf(stderr, "sl_mqtt_bench: no %s on admin port %d\n", series,
              admin_port);
      return 1;
    }
  }
  uint64_t t0 = now_ns(), deadline_idle = 0;
  long last = -1;
  for (long i = 0; i < publishers; i++)
    pthread_create(&th[i], NULL, pub_run, (void *)i);
  /* Wait for every message, or 5 s without progress (QoS 0 may drop). */
  for (;;) {
    long got;
    if (ref) {
      got = atomic_load(&received);
    } else {
      double v = metric();
      got = (long)(v - base);
      if (got != last)
        atomic_store(&last_rx_ns, now_ns());
    }
    if (got >= messages)
      break;
    if (got != last) {
      last = got;
      deadline_idle = now_ns() + 5000000000ull;
    } else if (deadline_idle && now_ns() > deadline_idle) {
      break;
    }
    usleep(ref ? 2000 : 10000);
  }
  for (long i = 0; i < publishers; i++)
    pthread_join(th[i], NULL);
  long got = ref ? atomic_load(&received) : (long)(metric() - base);
  double secs = (double)(atomic_load(&last_rx_ns) - t0) / 1e9;
  if (ref) {
    mosquitto_disconnect(ref);
    mosquitto_loop_stop(ref, false);
    mosquitto_destroy(ref);
  }
  mosquitto_lib_cleanup();
  printf("{\"sub\":\"%s\",\"qos\":%d,\"messages\":%ld,\"received\":%ld,"
         "\"seconds\":%.3f,\"events_per_s\":%.0f}\n",
         sub_kind, qos, messages, got, secs, secs > 0 ? got / secs : 0);
  return 0;
}
