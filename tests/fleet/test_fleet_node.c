/*
 * The fleet's shared code (fleet/fleet.h): the partition formula against
 * Kafka's Java vectors and librdkafka's murmur2 partitioner, Ed25519
 * envelopes, and the node's apply state machine driven through in-memory
 * host operations: generations, rejection, health gate, crash loop,
 * conflict, and a crash (restart from the persisted state) after every
 * persist of an apply and of a rollback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "fleet/fleet.h"
#include "sluice/v1/fleet.pb-c.h"

/* ---- partitions -------------------------------------------------------- */

static void test_partition(void **state) {
  (void)state;
  /* Vectors of Kafka's Java client (UtilsTest.testMurmur2). */
  struct {
    const char *s;
    uint32_t h;
  } v[] = {
      {"21", (uint32_t)-973932308},
      {"foobar", (uint32_t)-790332482},
      {"a-little-bit-long-string", (uint32_t)-985981536},
      {"a-little-bit-longer-string", (uint32_t)-1486304829},
      {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", (uint32_t)-58897971},
      {"abc", 479470107u}};
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
    assert_int_equal(sl_fleet_murmur2(v[i].s, strlen(v[i].s)), v[i].h);
  /* librdkafka's murmur2 partitioner is documented as Java compatible. */
  char key[64];
  for (int i = 0; i < 2000; i++) {
    int len = snprintf(key, sizeof(key), "node-%d", i * 7919);
    for (int32_t parts = 1; parts <= 64; parts *= 3)
      assert_int_equal(sl_fleet_partition(key, (size_t)len, parts),
                       rd_kafka_msg_partitioner_murmur2(NULL, key, (size_t)len,
                                                        parts, NULL, NULL));
  }
}

/* ---- keys and envelopes ------------------------------------------------ */

static sl_fleet_key_t *gen_key(bool priv, sl_fleet_key_t **pub) {
  EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  BIO *b = BIO_new(BIO_s_mem());
  char *data, err[256];
  long n;
  sl_fleet_key_t *k = NULL;
  assert_non_null(pk);
  assert_int_equal(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL),
                   1);
  n = BIO_get_mem_data(b, &data);
  assert_int_equal(
      sl_fleet_key_parse(data, (size_t)n, priv, &k, err, sizeof(err)), 0);
  if (pub) {
    BIO *b2 = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(b2, pk), 1);
    n = BIO_get_mem_data(b2, &data);
    assert_int_equal(
        sl_fleet_key_parse(data, (size_t)n, false, pub, err, sizeof(err)), 0);
    /* A public key cannot sign. */
    assert_int_not_equal(sl_fleet_key_parse(data, (size_t)n, true,
                                            &(sl_fleet_key_t *){NULL}, err,
                                            sizeof(err)),
                         0);
    BIO_free(b2);
  }
  BIO_free(b);
  EVP_PKEY_free(pk);
  return k;
}

static void test_envelope(void **state) {
  (void)state;
  sl_fleet_key_t *pub = NULL, *k = gen_key(true, &pub);
  sl_fleet_key_t *other = gen_key(true, NULL);
  const char msg[] = "payload bytes";
  uint8_t *env;
  size_t len, plen;
  const uint8_t *p;
  void *hold;
  int kind;
  char err[256];

  assert_string_equal(sl_fleet_key_id(k), sl_fleet_key_id(pub));
  assert_int_equal(
      sl_fleet_sign(k, SL_FLEET_DESIRED, msg, sizeof(msg), &env, &len), 0);
  assert_int_equal(
      sl_fleet_verify(pub, env, len, &kind, &p, &plen, &hold, err, sizeof(err)),
      0);
  assert_int_equal(kind, SL_FLEET_DESIRED);
  assert_int_equal(plen, sizeof(msg));
  assert_memory_equal(p, msg, sizeof(msg));
  free(hold);
  /* Another key's documents are refused, naming both ids. */
  assert_int_equal(sl_fleet_verify(other, env, len, &kind, &p, &plen, &hold,
                                   err, sizeof(err)),
                   SL_ESIGNATURE);
  assert_non_null(strstr(err, sl_fleet_key_id(other)));
  /* Any flipped bit of the payload fails the signature. */
  for (size_t i = 0; i < len; i++) {
    env[i] ^= 0x10;
    int rc = sl_fleet_verify(pub, env, len, &kind, &p, &plen, &hold, err,
                             sizeof(err));
    if (rc == 0) {
      /* Only bits outside the signed bytes may still verify (the kind
       * field): never a different payload. */
      assert_int_equal(plen, sizeof(msg));
      assert_memory_equal(p, msg, sizeof(msg));
      free(hold);
    }
    env[i] ^= 0x10;
  }
  assert_int_equal(sl_fleet_verify(pub, "junk", 4, &kind, &p, &plen, &hold, err,
                                   sizeof(err)),
                   SL_EPROTO);
  free(env);
  sl_fleet_key_free(k);
  sl_fleet_key_free(pub);
  sl_fleet_key_free(other);
}

/* ---- the node machine over an in-memory host --------------------------- */

#define MAXSNAP 64

typedef struct host {
  /* persisted state and every version of it */
  uint8_t *state;
  size_t len;
  uint8_t *snaps[MAXSNAP];
  size_t snap_len[MAXSNAP];
  int nsnap;
  char running[4096]; /* remote layer the host runs */
  int restarts;       /* restart() calls */
  bool restart_keys;  /* apply needs a restart when "restart" is in it */
  bool ready, uplink;
  uint64_t in, bad;
  int64_t mono, wall;
  int statuses, events;
  Sluice__V1__FleetStatus *last; /* last status published */
} host_t;

static int h_validate(void *o, const char *json, char *err, size_t len) {
  (void)o;
  if (strstr(json, "\"invalid\"")) {
    snprintf(err, len,
             "remote:1:12: streams[0].priority: \"x\" is not a "
             "number");
    return -1;
  }
  return 0;
}

static int h_apply(void *o, const char *json, char *err, size_t len) {
  host_t *h = o;
  (void)err;
  (void)len;
  if (h->restart_keys && strstr(json, "restart") &&
      !strstr(h->running, "restart"))
    return SL_FLEET_NEEDS_RESTART;
  if (h->restart_keys && !strstr(json, "restart") &&
      strstr(h->running, "restart"))
    return SL_FLEET_NEEDS_RESTART;
  snprintf(h->running, sizeof(h->running), "%s", json);
  return SL_FLEET_APPLIED;
}

static void h_restart(void *o, const char *why) {
  (void)why;
  ((host_t *)o)->restarts++;
}

static int h_persist(void *o, const void *s, size_t len) {
  host_t *h = o;
  free(h->state);
  h->state = malloc(len ? len : 1);
  memcpy(h->state, s, len);
  h->len = len;
  if (h->nsnap < MAXSNAP) {
    h->snaps[h->nsnap] = malloc(len ? len : 1);
    memcpy(h->snaps[h->nsnap], s, len);
    h->snap_len[h->nsnap++] = len;
  }
  return 0;
}

static void h_health(void *o, sl_fleet_health_t *hh) {
  host_t *h = o;
  hh->ready = h->ready;
  hh->uplink = h->uplink;
  hh->events_in = h->in;
  hh->events_bad = h->bad;
}

static void h_status(void *o, const void *rec, size_t len) {
  host_t *h = o;
  if (h->last)
    sluice__v1__fleet_status__free_unpacked(h->last, NULL);
  h->last = sluice__v1__fleet_status__unpack(NULL, len, rec);
  assert_non_null(h->last);
  h->statuses++;
}

static void h_event(void *o, const void *rec, size_t len) {
  Sluice__V1__FleetEvent *e = sluice__v1__fleet_event__unpack(NULL, len, rec);
  assert_non_null(e);
  sluice__v1__fleet_event__free_unpacked(e, NULL);
  ((host_t *)o)->events++;
}

static int64_t h_now(void *o) {
  return ((host_t *)o)->wall;
}
static int64_t h_mono(void *o) {
  return ((host_t *)o)->mono;
}

static const sl_fleet_ops_t OPS = {h_validate, h_apply,  h_restart,
                                   h_persist,  h_health, h_status,
                                   h_event,    h_now,    h_mono};

static sl_fleet_key_t *g_key, *g_pub;

static void host_init(host_t *h) {
  memset(h, 0, sizeof(*h));
  h->ready = h->uplink = true;
  h->mono = 1000000000;
  h->wall = (int64_t)1765000000 * 1000000000;
  snprintf(h->running, sizeof(h->running), "{}");
}

static void host_free(host_t *h) {
  free(h->state);
  for (int i = 0; i < h->nsnap; i++)
    free(h->snaps[i]);
  if (h->last)
    sluice__v1__fleet_status__free_unpacked(h->last, NULL);
}

static sl_fleet_node_t *node_start(host_t *h) {
  sl_fleet_label_t labels[] = {{"site", "a"}};
  sl_fleet_node_conf_t c = {.node_id = "n1",
                            .verify_key = g_pub,
                            .labels = labels,
                            .n_labels = 1,
                            .agent_version = "test",
                            .max_trial_starts = 2};
  sl_fleet_node_t *n;
  const char *json;
  assert_int_equal(sl_fleet_node_open(&c, &OPS, h, h->state, h->len, &n), 0);
  assert_int_equal(sl_fleet_node_boot(n, &json), 0);
  snprintf(h->running, sizeof(h->running), "%s", json);
  return n;
}

/* A signed desired document for n1 (or node) at generation gen. */
static uint8_t *doc(const char *node, uint64_t gen, const char *json,
                    uint64_t min_healthy_ms, uint64_t timeout_ms,
                    const sl_fleet_key_t *key, size_t *len) {
  Sluice__V1__DesiredConfig d = SLUICE__V1__DESIRED_CONFIG__INIT;
  Sluice__V1__HealthGate g = SLUICE__V1__HEALTH_GATE__INIT;
  char sha[65];
  uint8_t *buf, *env;
  size_t n;
  sl_fleet_sha256_hex(json, strlen(json), sha);
  g.min_healthy_ms = min_healthy_ms;
  g.timeout_ms = timeout_ms;
  g.max_error_rate = 0.1;
  d.node_id = (char *)node;
  d.generation = gen;
  d.config_json = (char *)json;
  d.config_sha256 = sha;
  d.gate = &g;
  n = sluice__v1__desired_config__get_packed_size(&d);
  buf = malloc(n);
  sluice__v1__desired_config__pack(&d, buf);
  assert_int_equal(
      sl_fleet_sign(key ? key : g_key, SL_FLEET_DESIRED, buf, n, &env, len), 0);
  free(buf);
  return env;
}

static void offer(sl_fleet_node_t *n, uint64_t gen, const char *json,
                  int64_t off) {
  size_t len;
  uint8_t *d = doc("n1", gen, json, 2000, 10000, NULL, &len);
  assert_int_equal(sl_fleet_node_offer(n, d, len, off), 0);
  free(d);
}

/* Ticks for ms milliseconds of the host's clocks. */
static void run_ms(sl_fleet_node_t *n, host_t *h, int ms) {
  for (int t = 0; t < ms; t += 500) {
    h->mono += 500000000;
    h->wall += 500000000;
    sl_fleet_node_tick(n);
  }
}

static sl_fleet_node_info_t info(sl_fleet_node_t *n) {
  sl_fleet_node_info_t i;
  sl_fleet_node_info(n, &i);
  return i;
}

static void test_apply_commit_and_generations(void **state) {
  (void)state;
  host_t h;
  host_init(&h);
  sl_fleet_node_t *n = node_start(&h);
  sl_fleet_node_tick(n);
  assert_int_equal(info(n).phase, SL_FLEET_IDLE);
  assert_int_equal(h.statuses, 1);

  offer(n, 1, "{\"log\": {\"level\": \"debug\"}}", 0);
  assert_int_equal(info(n).phase, SL_FLEET_VERIFYING);
  assert_string_equal(h.running, "{\"log\": {\"level\": \"debug\"}}");
  run_ms(n, &h, 1000);
  assert_int_equal(info(n).phase, SL_FLEET_VERIFYING); /* 2 s gate */
  run_ms(n, &h, 1500);
  assert_int_equal(info(n).phase, SL_FLEET_COMMITTED);
  assert_int_equal(info(n).lkg, 1);
  assert_int_equal(h.last->applied_generation, 1);
  assert_int_equal(h.last->phase, SLUICE__V1__FLEET_PHASE__COMMITTED);
  assert_int_equal(h.last->n_labels, 1);

  /* The same generation again: nothing happens. */
  int st = h.statuses;
  offer(n, 1, "{\"log\": {\"level\": \"debug\"}}", 1);
  assert_int_equal(h.statuses, st);
  assert_int_equal(sl_fleet_node_resume_offset(n), 2);

  /* Offline through generations 2..4: only the newest is offered (the
   * host hands the newest record once caught up): it applies directly. */
  offer(n, 4, "{\"log\": {\"level\": \"warn\"}}", 9);
  run_ms(n, &h, 2500);
  assert_int_equal(info(n).phase, SL_FLEET_COMMITTED);
  assert_int_equal(info(n).lkg, 4);
  assert_string_equal(h.running, "{\"log\": {\"level\": \"warn\"}}");

  /* A lower generation than the committed one: CONFLICT, nothing runs. */
  offer(n, 3, "{\"log\": {\"level\": \"error\"}}", 10);
  assert_int_equal(info(n).phase, SL_FLEET_CONFLICT);
  assert_string_equal(info(n).reason, "lower_generation");
  assert_int_equal(info(n).lkg, 4);
  assert_string_equal(h.running, "{\"log\": {\"level\": \"warn\"}}");

  /* The status seq grows across a restart. */
  uint64_t seq = h.last->seq;
  sl_fleet_node_free(n);
  n = node_start(&h);
  sl_fleet_node_tick(n);
  assert_true(h.last->seq > seq);
  assert_int_equal(info(n).lkg, 4);
  assert_string_equal(h.running, "{\"log\": {\"level\": \"warn\"}}");
  sl_fleet_node_free(n);
  host_free(&h);
}

static void test_rejections(void **state) {
  (void)state;
  host_t h;
  size_t len;
  uint8_t *d;
  host_init(&h);
  sl_fleet_node_t *n = node_start(&h);

  /* Invalid: REJECTED with the validator's key and column, never retried. */
  offer(n, 1, "{\"streams\": [{\"priority\": \"invalid\"}]}", 0);
  assert_int_equal(info(n).phase, SL_FLEET_REJECTED);
  assert_string_equal(info(n).reason, "validate");
  assert_non_null(strstr(info(n).message, "streams[0].priority"));
  assert_non_null(strstr(h.last->message, "1:12"));
  assert_string_equal(h.running, "{}");
  int st = h.statuses;
  offer(n, 1, "{\"streams\": [{\"priority\": \"invalid\"}]}", 1);
  assert_int_equal(h.statuses, st); /* failed before: not retried */

  /* Signed by another key. */
  sl_fleet_key_t *other = gen_key(true, NULL);
  d = doc("n1", 2, "{}", 0, 1000, other, &len);
  assert_int_equal(sl_fleet_node_offer(n, d, len, 2), 0);
  free(d);
  assert_int_equal(info(n).phase, SL_FLEET_REJECTED);
  assert_string_equal(info(n).reason, "signature");
  sl_fleet_key_free(other);

  /* A document for another node. */
  d = doc("n2", 3, "{}", 0, 1000, NULL, &len);
  assert_int_equal(sl_fleet_node_offer(n, d, len, 3), 0);
  free(d);
  assert_string_equal(info(n).reason, "node_id");

  /* Garbage. */
  assert_int_equal(sl_fleet_node_offer(n, "xx", 2, 4), 0);
  assert_string_equal(info(n).reason, "schema");
  assert_string_equal(h.running, "{}");
  sl_fleet_node_free(n);
  host_free(&h);
}

static void test_health_rollback(void **state) {
  (void)state;
  host_t h;
  host_init(&h);
  sl_fleet_node_t *n = node_start(&h);
  offer(n, 1, "{\"log\": {\"level\": \"debug\"}}", 0);
  run_ms(n, &h, 2500);
  assert_int_equal(info(n).lkg, 1);

  /* Generation 2 makes the daemon refuse most events: rolled back long
   * before its 10 s timeout, generation 1 runs again. */
  offer(n, 2, "{\"log\": {\"level\": \"info\"}}", 1);
  assert_string_equal(h.running, "{\"log\": {\"level\": \"info\"}}");
  h.in += 50;
  h.bad += 50;
  run_ms(n, &h, 500);
  assert_int_equal(info(n).phase, SL_FLEET_ROLLED_BACK);
  assert_string_equal(info(n).reason, "health");
  assert_string_equal(h.running, "{\"log\": {\"level\": \"debug\"}}");
  assert_int_equal(info(n).lkg, 1);
  assert_int_equal(info(n).failed, 2);

  /* Not ready through the whole gate: rolled back at the timeout. */
  offer(n, 3, "{\"log\": {\"level\": \"warn\"}}", 2);
  h.ready = false;
  run_ms(n, &h, 9000);
  assert_int_equal(info(n).phase, SL_FLEET_VERIFYING);
  run_ms(n, &h, 1500);
  assert_int_equal(info(n).phase, SL_FLEET_ROLLED_BACK);
  assert_string_equal(info(n).reason, "timeout");
  assert_non_null(strstr(info(n).message, "not ready"));
  assert_string_equal(h.running, "{\"log\": {\"level\": \"debug\"}}");
  sl_fleet_node_free(n);
  host_free(&h);
}

static void test_crash_loop(void **state) {
  (void)state;
  host_t h;
  host_init(&h);
  h.restart_keys = true;
  sl_fleet_node_t *n = node_start(&h);
  offer(n, 1, "{\"log\": {\"level\": \"debug\"}}", 0);
  run_ms(n, &h, 2500);
  assert_int_equal(info(n).lkg, 1);

  /* Generation 2 needs a restart, and the daemon dies in every start of
   * its trial: after max_trial_starts (2) it boots on generation 1. */
  offer(n, 2, "{\"restart\": true}", 1);
  assert_int_equal(h.restarts, 1);
  assert_int_equal(info(n).phase, SL_FLEET_APPLYING);
  for (int start = 1; start <= 2; start++) {
    sl_fleet_node_free(n);
    n = node_start(&h); /* the restart: runs the trial */
    assert_string_equal(h.running, "{\"restart\": true}");
    assert_int_equal(info(n).phase, SL_FLEET_VERIFYING);
    run_ms(n, &h, 500); /* ... and dies before the gate passes */
  }
  sl_fleet_node_free(n);
  n = node_start(&h);
  assert_string_equal(h.running, "{\"log\": {\"level\": \"debug\"}}");
  assert_int_equal(info(n).phase, SL_FLEET_ROLLED_BACK);
  assert_string_equal(info(n).reason, "crash_loop");
  assert_int_equal(info(n).failed, 2);
  sl_fleet_node_tick(n);
  assert_int_equal(h.last->phase, SLUICE__V1__FLEET_PHASE__ROLLED_BACK);
  sl_fleet_node_free(n);
  host_free(&h);
}

/*
 * kill -9 after every persist of an apply that commits and of one that
 * rolls back: a node restarted from any persisted state runs either the
 * last known good or the generation on trial (whole, never a mix), and
 * finishes on a committed or rolled-back generation.
 */
static void crash_everywhere(bool fail) {
  host_t h;
  host_init(&h);
  h.restart_keys = true;
  sl_fleet_node_t *n = node_start(&h);
  offer(n, 1, "{\"log\": {\"level\": \"debug\"}}", 0);
  run_ms(n, &h, 2500);
  int first = h.nsnap;
  offer(n, 2, "{\"restart\": 2}", 1);
  if (h.restarts) {
    sl_fleet_node_free(n);
    n = node_start(&h);
  }
  if (fail) {
    h.in += 40;
    h.bad += 40;
  }
  run_ms(n, &h, 2500);
  if (h.restarts > 1) { /* rollback of a restart-only change */
    sl_fleet_node_free(n);
    n = node_start(&h);
  }
  sl_fleet_node_info_t end = info(n);
  assert_int_equal(end.lkg, fail ? 1 : 2);
  sl_fleet_node_free(n);
  int last = h.nsnap;
  for (int s = first; s < last; s++) {
    host_t c;
    host_init(&c);
    c.restart_keys = true;
    h_persist(&c, h.snaps[s], h.snap_len[s]);
    sl_fleet_node_t *m = node_start(&c);
    assert_true(!strcmp(c.running, "{\"log\": {\"level\": \"debug\"}}") ||
                !strcmp(c.running, "{\"restart\": 2}"));
    sl_fleet_node_info_t i = info(m);
    if (i.phase == SL_FLEET_VERIFYING) {
      assert_string_equal(c.running, "{\"restart\": 2}");
      run_ms(m, &c, 2500);
      i = info(m);
      assert_true(i.phase == SL_FLEET_COMMITTED);
      assert_int_equal(i.lkg, 2);
    } else {
      /* Not on trial: the last known good runs, whichever it is. */
      assert_true(i.lkg == 1 || i.lkg == 2);
      assert_string_equal(c.running, i.lkg == 2
                                         ? "{\"restart\": 2}"
                                         : "{\"log\": {\"level\": \"debug\"}}");
    }
    sl_fleet_node_free(m);
    host_free(&c);
  }
  host_free(&h);
}

static void test_crash_everywhere(void **state) {
  (void)state;
  crash_everywhere(false);
  crash_everywhere(true);
}

int main(void) {
  g_key = gen_key(true, &g_pub);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_partition),
      cmocka_unit_test(test_envelope),
      cmocka_unit_test(test_apply_commit_and_generations),
      cmocka_unit_test(test_rejections),
      cmocka_unit_test(test_health_rollback),
      cmocka_unit_test(test_crash_loop),
      cmocka_unit_test(test_crash_everywhere),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  sl_fleet_key_free(g_key);
  sl_fleet_key_free(g_pub);
  return rc;
}
