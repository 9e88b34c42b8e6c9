/*
 * The loader end to end through the public API: defaults, errors with
 * file:line:column, unknown keys, wrong YAML types, duplicates, syntax
 * errors, environment overrides, secrets, key file permissions, diff and
 * reload classification, dump round-trip, and the bad-config corpus.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config_int.h"
#include "sync/sync.h"

static char err[8192];

static sl_config_t *load_env(const char *yaml, char *const *envp) {
  sl_config_t *cfg = NULL;
  int rc = sl_config_load_string("t.yaml", yaml, strlen(yaml), envp, &cfg, err,
                                 sizeof(err));
  if (rc)
    fail_msg("unexpected error %d: %s", rc, err);
  return cfg;
}

static sl_config_t *load(const char *yaml) {
  return load_env(yaml, NULL);
}

/* Expects the load to fail with every substring in the NULL-ended list. */
static void expect_err_env(const char *yaml, char *const *envp, ...) {
  sl_config_t *cfg = (sl_config_t *)1;
  va_list ap;
  int rc = sl_config_load_string("t.yaml", yaml, strlen(yaml), envp, &cfg, err,
                                 sizeof(err));
  assert_int_equal(rc, SL_ECONFIG);
  assert_null(cfg);
  va_start(ap, envp);
  for (const char *want; (want = va_arg(ap, const char *));) {
    if (!strstr(err, want))
      fail_msg("missing \"%s\" in:\n%s", want, err);
  }
  va_end(ap);
}
#define expect_err(yaml, ...) expect_err_env(yaml, NULL, __VA_ARGS__, NULL)

static void test_defaults(void **state) {
  (void)state;
  sl_config_t *cfg = load("node:\n  id: edge-1\n");
  assert_string_equal(cfg->node.id, "edge-1");
  assert_string_equal(cfg->node.data_dir, "/var/lib/sluice");
  assert_true(cfg->store.budget_bytes == 1ull << 30);
  assert_int_equal(cfg->store.sync, SL_CONFIG_SYNC_ALWAYS);
  assert_int_equal(cfg->store.sync_interval_ms, 100);
  assert_string_equal(cfg->listeners.native_tcp, "127.0.0.1:7000");
  assert_string_equal(cfg->listeners.native_unix, "");
  assert_string_equal(cfg->listeners.native_token, "");
  assert_string_equal(cfg->listeners.http_address, "127.0.0.1:8080");
  assert_string_equal(cfg->admin.address, "127.0.0.1:9100");
  assert_true(cfg->limits.max_frame_bytes == 4ull << 20);
  assert_int_equal(cfg->limits.max_connections, 1024);
  assert_int_equal(cfg->limits.max_batch_events, 10000);
  assert_int_equal(cfg->limits.idle_timeout_ms, 300000);
  assert_int_equal(cfg->limits.max_inflight_batches_per_conn, 64);
  assert_int_equal(cfg->log.level, SL_CONFIG_LOG_INFO);
  assert_int_equal(cfg->log.format, SL_CONFIG_LOG_PLAIN);
  assert_int_equal(cfg->log.debug, 0);
  assert_false(cfg->kafka.enabled);
  assert_int_equal(cfg->kafka.delivery, SL_CONFIG_DELIVERY_EXACTLY_ONCE);
  assert_false(cfg->mqtt.enabled);
  assert_int_equal(cfg->mqtt.port, 1883);
  assert_int_equal(cfg->streams.n, 0);
  sl_config_free(cfg);
}

static void test_values_and_forms(void **state) {
  (void)state;
  sl_config_t *cfg = load("node.id: n1\n"
                          "store: {budget_bytes: 2GB, sync: interval,"
                          " sync_interval: 250ms}\n"
                          "log:\n  level: debug\n  format: json\n"
                          "  debug: [store, sync]\n"
                          "kafka: {enabled: yes, brokers: 'k:9092',"
                          " delivery: at_least_once}\n"
                          "listeners.native:\n  tcp: \"[::1]:7001\"\n"
                          "  unix: /run/s.sock\n"
                          "streams:\n"
                          "  - name: orders\n    priority: 9\n"
                          "    policy: evict_priority\n    ttl: 1h\n"
                          "  - {name: b, topic: x.y}\n");
  assert_string_equal(cfg->node.id, "n1");
  assert_true(cfg->store.budget_bytes == 2000000000ull);
  assert_int_equal(cfg->store.sync, SL_CONFIG_SYNC_INTERVAL);
  assert_int_equal(cfg->store.sync_interval_ms, 250);
  assert_int_equal(cfg->log.level, SL_CONFIG_LOG_DEBUG);
  assert_int_equal(cfg->log.format, SL_CONFIG_LOG_JSON);
  assert_int_equal(cfg->log.debug, SL_CONFIG_DBG_STORE | SL_CONFIG_DBG_SYNC);
  assert_true(cfg->kafka.enabled);
  assert_int_equal(cfg->kafka.delivery, SL_CONFIG_DELIVERY_AT_LEAST_ONCE);
  assert_string_equal(cfg->listeners.native_tcp, "[::1]:7001");
  assert_string_equal(cfg->listeners.native_unix, "/run/s.sock");
  assert_int_equal(cfg->streams.n, 2);
  assert_string_equal(cfg->streams.v[0].name, "orders");
  assert_int_equal(cfg->streams.v[0].priority, 9);
  assert_int_equal(cfg->streams.v[0].policy, SL_CONFIG_POLICY_EVICT_PRIORITY);
  assert_int_equal(cfg->streams.v[0].ttl_ms, 3600000);
  assert_string_equal(cfg->streams.v[0].topic, "sluice.orders");
  assert_string_equal(cfg->streams.v[1].topic, "x.y");
  assert_int_equal(cfg->streams.v[1].priority, 5);
  sl_config_free(cfg);
  /* Nulls: empty sections and an empty listener. */
  cfg = load("node: {id: n}\nstore:\nlisteners: {native: {tcp: ~}}\n"
             "streams:\n");
  assert_string_equal(cfg->listeners.native_tcp, "");
  sl_config_free(cfg);
}

static void test_error_positions(void **state) {
  (void)state;
  expect_err("node:\n  id: n\nstore:\n  budget_bytes: 12XB\n",
             "t.yaml:4:17: store.budget_bytes: \"12XB\" is not a size "
             "(expected e.g. 512MiB)");
  expect_err("node: {id: n}\nlimits:\n  max_connections: 0\n",
             "t.yaml:3:20: limits.max_connections: \"0\" is out of range "
             "(expected 1..1000000)");
  expect_err("node: {id: n}\nmqtt: {port: 70000}\n", "mqtt.port",
             "out of range");
  expect_err("node: {id: n}\nkafka: {brokers: 'a:1,b'}\n", "kafka.brokers",
             "is not a list of host:port");
  sl_config_t *cfg = load("node: {id: n}\nkafka: {brokers: 'a:1,[::1]:2'}\n");
  sl_config_free(cfg);
}

static void test_collects_all_errors(void **state) {
  (void)state;
  expect_err("store:\n  budget_bytes: 1x\n  sync: never\nlog: {level: loud}\n",
             "t.yaml:2:17: store.budget_bytes", "t.yaml:3:9: store.sync",
             "t.yaml:4:14: log.level", "node.id: required key is missing");
  /* Cross-key rules come with the per-key errors, not after they are
   * fixed (issue 23)... */
  expect_err("node: {id: n}\nlog: {level: loud}\nkafka: {enabled: true}\n"
             "mqtt: {enabled: true, host: h, reconnect_min: 1m, "
             "reconnect_max: 1s}\n",
             "log.level", "kafka.brokers: must be set when kafka.enabled",
             "mqtt.reconnect_min: must not exceed",
             "mqtt.subscriptions: mqtt.enabled needs");
  /* ...but a key wrong on its own gets one message, not a second one
   * about the default it was left at. */
  expect_err("node: {id: n}\nkafka: {enabled: true, brokers: 'a:1,b'}\n",
             "kafka.brokers: \"a:1,b\"");
  assert_null(strstr(err, "must be set"));
  /* Bounded: a flood of errors stops with a note. */
  char yaml[8192] = "node: {id: n}\n";
  for (int i = 0; i < 100; i++)
    snprintf(yaml + strlen(yaml), sizeof(yaml) - strlen(yaml), "bogus%d: 1\n",
             i);
  expect_err(yaml, "too many errors, stopping");
  int lines = 1;
  for (const char *p = err; *p; p++)
    lines += *p == '\n';
  assert_int_equal(lines, SL_CONFIG_MAX_ERRORS + 1);
  /* A tiny errstr is still NUL-terminated. */
  sl_config_t *cfg;
  char small[16];
  assert_int_equal(
      sl_config_load_string("t", "x: 1", 4, NULL, &cfg, small, sizeof(small)),
      SL_ECONFIG);
  assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void test_unknown_keys(void **state) {
  (void)state;
  expect_err("node: {id: n}\nstore:\n  budget_byte: 1GiB\n",
             "t.yaml:3:3: store.budget_byte: unknown key (did you mean "
             "\"store.budget_bytes\"?)");
  expect_err("node: {id: n}\nstorr: {}\n",
             "storr: unknown key (did you mean \"store\"?)");
  expect_err("node: {id: n}\nwhatever_this_is: 1\n",
             "t.yaml:2:1: whatever_this_is: unknown key");
  expect_err("node: {id: n}\nstreams:\n  - {name: a, prio: 1}\n",
             "streams[0].prio: unknown key");
}

static void test_wrong_yaml_types(void **state) {
  (void)state;
  expect_err("node: {id: n}\nstore:\n  budget_bytes: {a: 1}\n",
             "t.yaml:3:17: store.budget_bytes: expected a size, got a mapping");
  expect_err("node: {id: n}\nstore: [1, 2]\n",
             "t.yaml:2:8: store: expected a mapping, got a list");
  expect_err("node: {id: n}\nstore: 5\n", "store: expected a mapping, got a "
                                          "scalar");
  expect_err("node: {id: [a]}\n", "node.id: expected a string, got a list");
  expect_err("node: {id: n}\nstreams: {name: a}\n",
             "streams: expected a list of mappings, got a mapping");
  expect_err("node: {id: n}\nstreams: [a]\n",
             "streams[0]: expected a mapping, got a scalar");
  expect_err("node: {id: n}\nlog: {debug: [[store]]}\n",
             "log.debug: expected a list of strings, item 0 is a list");
  expect_err("- a\n- b\n", "t.yaml:1:1: expected a mapping at the top level");
  expect_err("node: {id: n}\n? [a]\n: 1\n", "keys must be scalars");
}

static void test_duplicates(void **state) {
  (void)state;
  expect_err("node: {id: n}\nstore:\n  sync: always\n  sync: interval\n",
             "t.yaml:4:3: store.sync: duplicate key (first at line 3)");
  expect_err("node: {id: n}\nstore: {}\nstore: {}\n",
             "t.yaml:3:1: store: duplicate key (first at line 2)");
  expect_err("node: {id: n}\nstore.sync: always\nstore: {sync: always}\n",
             "store.sync: duplicate key (first at line 2)");
  expect_err("node: {id: n}\nstreams: [{name: a}, {name: a}]\n",
             "streams[1].name: \"a\" is already used by streams[0]");
}

static void test_syntax_errors(void **state) {
  (void)state;
  expect_err("node:\n  id: n\nstore: {budget_bytes: 1GiB\n",
             "t.yaml:4:1: YAML syntax error");
  expect_err("node:\n  id: n\n bad: indent\n",
             "t.yaml:3:", "YAML syntax error");
  expect_err("node: {id: \"unterminated}\n", "YAML syntax error");
  expect_err("node: {id: n}\n---\nnode: {id: m}\n",
             "only one YAML document is allowed");
  /* An empty document only lacks the required key. */
  expect_err("", "t.yaml: node.id: required key is missing");
}

static void test_env_overrides(void **state) {
  (void)state;
  char *env[] = {"SLUICE_STORE_BUDGET_BYTES=2GiB", "SLUICE_NODE_ID=from-env",
                 "SLUICE_LOG_DEBUG=store, http",   "SLUICE_KAFKA_ENABLED=true",
                 "SLUICE_KAFKA_BROKERS=k:1",       "SLUICE_TEST_UNRELATED=1",
                 "SLUICE_LISTENERS_NATIVE_TCP=",   NULL};
  sl_config_t *cfg =
      load_env("node: {id: from-file}\nstore: {budget_bytes: 8GiB}\n", env);
  assert_string_equal(cfg->node.id, "from-env");
  assert_true(cfg->store.budget_bytes == 2ull << 30);
  assert_int_equal(cfg->log.debug, SL_CONFIG_DBG_STORE | SL_CONFIG_DBG_HTTP);
  assert_true(cfg->kafka.enabled);
  assert_string_equal(cfg->listeners.native_tcp, "");
  sl_config_free(cfg);
  /* The environment alone can satisfy a required key. */
  char *env2[] = {"SLUICE_NODE_ID=e", NULL};
  cfg = load_env("", env2);
  assert_string_equal(cfg->node.id, "e");
  sl_config_free(cfg);
  /* Errors name the variable. */
  char *bad[] = {"SLUICE_STORE_BUDGET_BYTES=12XB", "SLUICE_NODE_ID=a b",
                 "SLUICE_LISTENERS_NATIVE_TOKEN=", NULL};
  expect_err_env("node: {id: n}\n", bad,
                 "env SLUICE_STORE_BUDGET_BYTES: store.budget_bytes: \"12XB\" "
                 "is not a size (expected e.g. 512MiB)",
                 "env SLUICE_NODE_ID: node.id: \"a b\" is not a node id", NULL);
}

static void test_node_id_rules(void **state) {
  (void)state;
  char long_id[80];
  memset(long_id, 'a', 65);
  long_id[65] = '\0';
  char yaml[160];
  snprintf(yaml, sizeof(yaml), "node: {id: %s}\n", long_id);
  expect_err(yaml, "node.id", "is not a node id");
  long_id[64] = '\0';
  snprintf(yaml, sizeof(yaml), "node: {id: %s}\n", long_id);
  sl_config_free(load(yaml));
  sl_config_free(load("node: {id: A.b_c-9}\n"));
  expect_err("node: {id: \"a/b\"}\n", "is not a node id");
  expect_err("node: {id: \"\"}\n", "is not a node id");
}

static char *dump_text(const sl_config_t *cfg) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  assert_int_equal(sl_config_dump(cfg, f), 0);
  fclose(f);
  return buf;
}

/*
 * Issue 14 defect 6: keys that no word of a deny-list names (ssl.key.pem,
 * sasl.oauthbearer.config, ssl.keystore.password's cousins) printed in
 * clear, and so did an item without "=". Only allow-listed keys may show
 * their value; nothing of a malformed item is shown, in the dump or in
 * errors.
 */
/* streams[].compression: zstd by default, the level checked per codec,
 * streams of one topic agreeing, and not in kafka.properties. */
static void test_stream_compression(void **state) {
  (void)state;
  sl_config_t *cfg = load("node: {id: n}\n"
                          "streams:\n"
                          "  - name: a\n"
                          "  - name: b\n"
                          "    compression: lz4\n"
                          "    compression_level: 9\n");
  assert_int_equal(cfg->streams.v[0].compression, SL_SYNC_COMPRESS_ZSTD);
  assert_int_equal(cfg->streams.v[0].compression_level, 0);
  assert_int_equal(cfg->streams.v[1].compression, SL_SYNC_COMPRESS_LZ4);
  assert_int_equal(cfg->streams.v[1].compression_level, 9);
  sl_config_free(cfg);
  expect_err("node: {id: n}\nstreams:\n  - name: a\n    compression: brotli\n",
             "streams[0].compression", "brotli");
  expect_err("node: {id: n}\nstreams:\n  - name: a\n"
             "    compression_level: 13\n",
             "streams[0].compression_level");
  expect_err("node: {id: n}\nstreams:\n  - name: a\n    compression: gzip\n"
             "    compression_level: 10\n",
             "streams[0].compression_level", "gzip 1..9");
  expect_err("node: {id: n}\nstreams:\n  - name: a\n"
             "    compression: snappy\n    compression_level: 1\n",
             "streams[0].compression_level", "must be 0 for snappy");
  expect_err("node: {id: n}\nstreams:\n  - name: a\n    topic: t\n"
             "  - name: b\n    topic: t\n    compression: none\n",
             "streams[1].compression", "shares topic t");
  expect_err("node: {id: n}\nkafka:\n  properties:\n"
             "    - compression.type=lz4\n",
             "kafka.properties", "compression.type is set per stream");
  /* json_layout: compact only with format json. */
  cfg = load("node: {id: n}\nstreams:\n  - name: a\n    format: json\n"
             "    json_layout: compact\n");
  assert_int_equal(cfg->streams.v[0].json_layout, 1);
  sl_config_free(cfg);
  expect_err("node: {id: n}\nstreams:\n  - name: a\n"
             "    json_layout: compact\n",
             "streams[0].json_layout", "format: json only");
}

/* kafka.omit_headers: names to bits, and what needs which header. */
static void test_omit_headers(void **state) {
  (void)state;
  sl_config_t *cfg = load("node: {id: n}\nkafka:\n"
                          "  omit_headers: [node, schema, historical]\n");
  assert_int_equal(cfg->kafka.omit_headers, SL_SYNC_HDR_NODE |
                                                SL_SYNC_HDR_SCHEMA |
                                                SL_SYNC_HDR_HISTORICAL);
  sl_config_free(cfg);
  cfg = load("node: {id: n}\nkafka:\n  omit_headers: all\n");
  assert_int_equal(cfg->kafka.omit_headers, 31);
  sl_config_free(cfg);
  cfg = load("node: {id: n}\nkafka:\n  delivery: at_least_once\n"
             "  omit_headers: [schema, historical]\n");
  sl_config_free(cfg);
  expect_err("node: {id: n}\nkafka:\n  delivery: at_least_once\n"
             "  omit_headers: [offset]\n",
             "kafka.omit_headers", "at_least_once");
  expect_err("node: {id: n}\nkafka:\n  omit_headers: [stream]\n"
             "streams:\n  - name: a\n    format: json\n"
             "    json_layout: compact\n",
             "streams[0].json_layout", "must keep both headers");
  expect_err("node: {id: n}\nkafka:\n  omit_headers: [key]\n",
             "kafka.omit_headers");
}

static void test_kafka_properties_allow_list(void **state) {
  (void)state;
  sl_config_t *cfg =
      load("node: {id: n}\n"
           "kafka:\n"
           "  properties:\n"
           "    - ssl.key.pem=PEMSECRET1\n"
           "    - sasl.oauthbearer.config=principal=x clientSecret=OAUTH2\n"
           "    - ssl.certificate.pem=CERT3\n"
           "    - https.ca.pem=CA4\n"
           "    - sasl.kerberos.kinit.cmd=kinit -p me --password KINIT5\n"
           "    - ssl.key.location=/etc/sluice/kafka.key\n"
           "    - security.protocol=SASL_SSL\n"
           "    - sasl.mechanisms=OAUTHBEARER\n"
           "    - batch.size=65536\n"
           "    - socket.keepalive.enable=true\n"
           "    - reconnect.backoff.max.ms=5000\n"
           "    - acks=all\n");
  char *buf = dump_text(cfg);
  static const char *const hidden[] = {"PEMSECRET1", "OAUTH2", "CERT3", "CA4",
                                       "KINIT5"};
  for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
    assert_null(strstr(buf, hidden[i]));
  assert_non_null(strstr(buf, "\"ssl.key.pem=<redacted>\""));
  assert_non_null(strstr(buf, "\"sasl.oauthbearer.config=<redacted>\""));
  assert_non_null(strstr(buf, "\"ssl.key.location=/etc/sluice/kafka.key\""));
  assert_non_null(strstr(buf, "\"security.protocol=SASL_SSL\""));
  assert_non_null(strstr(buf, "\"sasl.mechanisms=OAUTHBEARER\""));
  assert_non_null(strstr(buf, "\"batch.size=65536\""));
  assert_non_null(strstr(buf, "\"socket.keepalive.enable=true\""));
  assert_non_null(strstr(buf, "\"reconnect.backoff.max.ms=5000\""));
  assert_non_null(strstr(buf, "\"acks=all\""));
  free(buf);
  sl_config_free(cfg);
  /* A key that merely starts like an allowed one is not allowed. */
  cfg = load("node: {id: n}\nkafka: {properties: [acks.extra=X9Y]}\n");
  buf = dump_text(cfg);
  assert_null(strstr(buf, "X9Y"));
  free(buf);
  sl_config_free(cfg);
  /* An item without "=" (a pasted secret) is refused without echoing it,
   * as a sequence item, a comma-separated scalar or from the environment. */
  expect_err("node: {id: n}\nkafka: {properties: [acks=1, PASTEDSECRET]}\n",
             "kafka.properties", "is not key=value");
  assert_null(strstr(err, "PASTEDSECRET"));
  expect_err("node: {id: n}\nkafka: {properties: \"PASTEDSECRET\"}\n",
             "kafka.properties", "is not key=value");
  assert_null(strstr(err, "PASTEDSECRET"));
  expect_err("node: {id: n}\nkafka: {properties: \"=PASTEDSECRET\"}\n",
             "kafka.properties", "is not key=value");
  assert_null(strstr(err, "PASTEDSECRET"));
  char *const envp[] = {"SLUICE_KAFKA_PROPERTIES=acks=1,PASTEDSECRET", NULL};
  expect_err_env("node: {id: n}\n", envp, "SLUICE_KAFKA_PROPERTIES",
                 "is not key=value", NULL);
  assert_null(strstr(err, "PASTEDSECRET"));
}

static void test_secrets_redacted(void **state) {
  (void)state;
  sl_config_t *cfg = load("node: {id: n}\n"
                          "listeners: {native: {token: hunter2}}\n");
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_int_equal(sl_config_dump(cfg, f), 0);
  fclose(f);
  assert_null(strstr(buf, "hunter2"));
  assert_non_null(strstr(buf, "token: \"<redacted>\""));
  free(buf);
  sl_config_free(cfg);
  /* kafka.properties: only allow-listed keys show their value. */
  cfg = load("node: {id: n}\n"
             "kafka: {properties: [sasl.username=alice, sasl.password=hunter3,"
             " ssl.key.password=pw4, sasl.oauthbearer.client.secret=s5,"
             " sasl.jaas.config=j6, linger.ms=5]}\n");
  buf = NULL;
  f = open_memstream(&buf, &len);
  assert_int_equal(sl_config_dump(cfg, f), 0);
  fclose(f);
  assert_null(strstr(buf, "hunter3"));
  assert_null(strstr(buf, "pw4"));
  assert_null(strstr(buf, "=s5"));
  assert_null(strstr(buf, "=j6"));
  assert_null(strstr(buf, "alice"));
  assert_non_null(strstr(buf, "\"sasl.password=<redacted>\""));
  assert_non_null(strstr(buf, "\"sasl.username=<redacted>\""));
  assert_non_null(strstr(buf, "\"linger.ms=5\""));
  free(buf);
  sl_config_free(cfg);
  /* Nor echoed in errors. */
  expect_err("node: {id: n}\nlisteners: {native: {token: [hunter2]}}\n",
             "listeners.native.token: expected a string");
  assert_null(strstr(err, "hunter2"));
}

static void test_key_file_permissions(void **state) {
  (void)state;
  char path[] = "/tmp/sluice-key-XXXXXX", yaml[256];
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  snprintf(yaml, sizeof(yaml), "node: {id: n}\nkafka: {ssl_key_location: %s}\n",
           path);
  assert_int_equal(chmod(path, 0600), 0);
  sl_config_t *cfg = load(yaml);
  assert_string_equal(cfg->kafka.ssl_key_location, path);
  sl_config_free(cfg);
  assert_int_equal(chmod(path, 0644), 0);
  expect_err(yaml, "t.yaml:2:9: kafka.ssl_key_location:",
             "is accessible by others (mode 0644)");
  snprintf(yaml, sizeof(yaml), "node: {id: n}\n");
  char var[300];
  snprintf(var, sizeof(var), "SLUICE_MQTT_TLS_KEYFILE=%s", path);
  char *env[] = {var, NULL};
  expect_err_env(yaml, env, "env SLUICE_MQTT_TLS_KEYFILE: mqtt.tls_keyfile:",
                 "accessible by others", NULL);
  unlink(path);
  snprintf(yaml, sizeof(yaml), "node: {id: n}\nmqtt: {tls_keyfile: %s}\n",
           path);
  expect_err(yaml, "mqtt.tls_keyfile: cannot access");
}

static char *temp_file(int mode) {
  static char path[64];
  snprintf(path, sizeof(path), "/tmp/sluice-mode-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "x\n", 2), 2);
  close(fd);
  assert_int_equal(chmod(path, (mode_t)mode), 0);
  return strdup(path);
}

/* Issue 14, least privilege: key, certificate and CA files that group or
 * others may write are refused (a key readable by others already was). */
static void test_file_modes(void **state) {
  (void)state;
  char yaml[600];
  char *key = temp_file(0640), *ca = temp_file(0644);
  snprintf(yaml, sizeof(yaml),
           "node: {id: n}\nmqtt: {tls_keyfile: %s, tls_ca: %s, tls_cert: %s}\n"
           "kafka: {ssl_key_location: %s, properties: [ssl.ca.location=%s,"
           " ssl.key.location=%s, ssl.ca.location=probe]}\n",
           key, ca, ca, key, ca, key);
  sl_config_free(load(yaml));
  assert_int_equal(chmod(key, 0660), 0);
  expect_err(yaml, "mqtt.tls_keyfile:", "kafka.ssl_key_location:",
             "is writable by group or others (mode 0660)",
             "kafka.properties: ssl.key.location:", "chmod g-w,o-rwx");
  assert_int_equal(chmod(key, 0600), 0);
  assert_int_equal(chmod(ca, 0664), 0);
  expect_err(yaml, "mqtt.tls_ca:", "mqtt.tls_cert:",
             "kafka.properties: ssl.ca.location:",
             "is writable by group or others (mode 0664)", "chmod go-w");
  assert_int_equal(chmod(ca, 0646), 0);
  expect_err(yaml, "mqtt.tls_ca:", "(mode 0646)");
  assert_int_equal(chmod(key, 0604), 0);
  assert_int_equal(chmod(ca, 0644), 0);
  expect_err(yaml, "kafka.properties: ssl.key.location:",
             "is accessible by others (mode 0604)");
  unlink(key);
  unlink(ca);
  free(key);
  free(ca);
}

/* Issue 14, least privilege: a config file that group or others may write
 * is refused, naming the file. */
static void test_config_file_mode(void **state) {
  (void)state;
  char *path = temp_file(0644);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("node: {id: n}\n", f);
  fclose(f);
  sl_config_t *cfg = NULL;
  assert_int_equal(sl_config_load_file(path, &cfg, err, sizeof(err)), 0);
  sl_config_free(cfg);
  static const int bad[] = {0646, 0664, 0666, 0622};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char mode[16];
    assert_int_equal(chmod(path, (mode_t)bad[i]), 0);
    assert_int_equal(sl_config_load_file(path, &cfg, err, sizeof(err)),
                     SL_ECONFIG);
    assert_null(cfg);
    snprintf(mode, sizeof(mode), "(mode %04o)", bad[i]);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "writable by group or others"));
    assert_non_null(strstr(err, mode));
  }
  unlink(path);
  free(path);
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Issue 14: deep nesting is quadratic in libyaml (300 KB of "[" took
 * minutes); it is refused at the depth cap, quickly, naming the line. */
static void test_deep_nesting_refused(void **state) {
  (void)state;
  size_t n = 300000, k = 0;
  char *yaml = malloc(2 * n + 64);
  assert_non_null(yaml);
  k += (size_t)sprintf(yaml, "node: {id: n}\nx: ");
  memset(yaml + k, '[', n);
  memset(yaml + k + n, ']', n);
  k += 2 * n;
  yaml[k++] = '\n';
  double t0 = mono_s();
  sl_config_t *cfg = (sl_config_t *)1;
  assert_int_equal(
      sl_config_load_string("t.yaml", yaml, k, NULL, &cfg, err, sizeof(err)),
      SL_ECONFIG);
  assert_null(cfg);
  assert_true(mono_s() - t0 < 2.0);
  if (!strstr(err, "t.yaml:2:") || !strstr(err, "nesting deeper than 32"))
    fail_msg("unexpected error: %s", err);
  /* Block style: one level per line, up to the size cap. */
  k = (size_t)sprintf(yaml, "node: {id: n}\n");
  for (size_t d = 0; k + d + 8 < 2 * n; d++) {
    memset(yaml + k, ' ', d);
    k += d;
    k += (size_t)sprintf(yaml + k, "a:\n");
  }
  t0 = mono_s();
  assert_int_equal(
      sl_config_load_string("t.yaml", yaml, k, NULL, &cfg, err, sizeof(err)),
      SL_ECONFIG);
  assert_true(mono_s() - t0 < 2.0);
  if (!strstr(err, "t.yaml:34:") || !strstr(err, "nesting deeper than 32"))
    fail_msg("unexpected error: %s", err);
  free(yaml);
}

static void test_diff(void **state) {
  (void)state;
  const char *base = "node: {id: n}\nstreams: [{name: a}, {name: b}]\n";
  sl_config_t *a = load(base);
  sl_config_t *b = load(base);
  sl_config_diff_t d;
  sl_config_diff(a, b, &d);
  assert_int_equal(d.verdict, SL_CONFIG_SAME);
  assert_int_equal(d.n_changed, 0);
  sl_config_free(b);

  b = load("node: {id: n}\nlimits: {max_inflight_batches_per_conn: 8}\n"
           "log: {level: debug}\n"
           "streams: [{name: a, ttl: 1h}, {name: b}]\n");
  sl_config_diff(a, b, &d);
  assert_int_equal(d.verdict, SL_CONFIG_RELOADABLE);
  assert_int_equal(d.n_changed, 3);
  assert_string_equal(d.changed[0].key, "limits.max_inflight_batches_per_conn");
  assert_string_equal(d.changed[1].key, "log.level");
  assert_string_equal(d.changed[2].key, "streams[a].ttl");
  assert_true(d.changed[2].reloadable);
  sl_config_free(b);

  /* The store's settings are fixed while it is open; adding a stream
   * changes the daemon's stream table: both need a restart. */
  b = load("node: {id: n}\nstore: {budget_bytes: 2GiB}\n"
           "streams: [{name: a}, {name: b}, {name: c}]\n");
  sl_config_diff(a, b, &d);
  assert_int_equal(d.verdict, SL_CONFIG_RESTART);
  assert_false(d.changed[0].reloadable);
  sl_config_free(b);

  b = load("node: {id: n}\nadmin: {address: '0.0.0.0:9100'}\n"
           "listeners: {native: {token: t}}\n"
           "streams: [{name: a}, {name: b, topic: other}]\n");
  sl_config_diff(a, b, &d);
  assert_int_equal(d.verdict, SL_CONFIG_RESTART);
  assert_int_equal(d.n_changed, 3);
  assert_string_equal(d.changed[0].key, "listeners.native.token");
  assert_true(d.changed[0].reloadable);
  assert_string_equal(d.changed[1].key, "admin.address");
  assert_false(d.changed[1].reloadable);
  assert_string_equal(d.changed[2].key, "streams[b].topic");
  sl_config_free(b);

  /* Adding a stream changes the list key, which needs a restart (the
   * daemon's stream table is fixed while it runs). */
  b = load("node: {id: n}\nstreams: [{name: a}, {name: b}, {name: c}]\n");
  sl_config_diff(a, b, &d);
  assert_int_equal(d.verdict, SL_CONFIG_RESTART);
  assert_int_equal(d.n_changed, 1);
  assert_string_equal(d.changed[0].key, "streams");
  sl_config_free(b);
  sl_config_free(a);
}

/* The dump is valid input that loads back to the same configuration. */
static void test_dump_roundtrip(void **state) {
  (void)state;
  sl_config_t *a = load("node: {id: n, data_dir: /d}\n"
                        "store: {budget_bytes: 3000000, sync_interval: 45s}\n"
                        "log: {debug: all}\nmqtt: {host: 'we\"ird'}\n"
                        "streams: [{name: a, ttl: 7d, policy: drop_oldest}]\n");
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_int_equal(sl_config_dump(a, f), 0);
  fclose(f);
  sl_config_t *b = load(buf);
  sl_config_diff_t d;
  sl_config_diff(a, b, &d);
  if (d.verdict != SL_CONFIG_SAME)
    fail_msg("dump differs at %s:\n%s", d.changed[0].key, buf);
  free(buf);
  sl_config_free(a);
  sl_config_free(b);
}

static void test_load_file(void **state) {
  (void)state;
  sl_config_t *cfg;
  assert_int_equal(sl_config_load_file(SL_TEST_EXAMPLE, &cfg, err, sizeof(err)),
                   0);
  assert_true(cfg->streams.n >= 1);
  sl_config_free(cfg);
  assert_true(sl_config_load_file("/nonexistent/sluice.yaml", &cfg, err,
                                  sizeof(err)) < 0);
  assert_null(cfg);
  assert_non_null(strstr(err, "/nonexistent/sluice.yaml: cannot open"));
  /* Oversized input is refused before parsing. */
  size_t big = SL_CONFIG_MAX_BYTES + 1;
  char *yaml = calloc(1, big);
  assert_non_null(yaml);
  memset(yaml, '#', big);
  assert_int_equal(
      sl_config_load_string("big", yaml, big, NULL, &cfg, err, sizeof(err)),
      SL_ETOOBIG);
  free(yaml);
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char *buf = malloc(SL_CONFIG_MAX_BYTES + 1);
  assert_non_null(buf);
  *len = fread(buf, 1, SL_CONFIG_MAX_BYTES, f);
  buf[*len] = '\0';
  fclose(f);
  return buf;
}

/*
 * Each tests/config/bad/NAME.yaml starts with "# expect: SUBSTRING" and
 * must fail with an error containing SUBSTRING.
 */
static void test_bad_corpus(void **state) {
  (void)state;
  DIR *dir = opendir(SL_TEST_BAD_DIR);
  struct dirent *de;
  int n = 0;
  assert_non_null(dir);
  while ((de = readdir(dir))) {
    char path[512];
    size_t len, elen;
    sl_config_t *cfg;
    if (!strstr(de->d_name, ".yaml"))
      continue;
    snprintf(path, sizeof(path), "%s/%s", SL_TEST_BAD_DIR, de->d_name);
    char *yaml = slurp(path, &len);
    if (strncmp(yaml, "# expect: ", 10))
      fail_msg("%s: first line must be \"# expect: ...\"", de->d_name);
    elen = strcspn(yaml + 10, "\n");
    char want[256];
    snprintf(want, sizeof(want), "%.*s", (int)elen, yaml + 10);
    int rc = sl_config_load_string(de->d_name, yaml, len, NULL, &cfg, err,
                                   sizeof(err));
    if (rc == 0)
      fail_msg("%s: loaded, expected \"%s\"", de->d_name, want);
    if (!strstr(err, want))
      fail_msg("%s: expected \"%s\" in:\n%s", de->d_name, want, err);
    free(yaml);
    n++;
  }
  closedir(dir);
  assert_true(n >= 10);
}

/* The fuzz seed corpus replays without crashing in every build. */
static void test_fuzz_seeds(void **state) {
  (void)state;
  DIR *dir = opendir(SL_TEST_SEED_DIR);
  struct dirent *de;
  assert_non_null(dir);
  while ((de = readdir(dir))) {
    char path[512];
    size_t len;
    sl_config_t *cfg;
    if (de->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "%s/%s", SL_TEST_SEED_DIR, de->d_name);
    char *yaml = slurp(path, &len);
    if (!sl_config_load_string(de->d_name, yaml, len, NULL, &cfg, err,
                               sizeof(err)))
      sl_config_free(cfg);
    free(yaml);
  }
  closedir(dir);
}

/* The fleet's remote layer (docs/FLEET.md, "Who owns a key"). */
static void test_fleet_layers(void **state) {
  (void)state;
  char key[] = "/tmp/sl-fleet-key-XXXXXX";
  int fd = mkstemp(key);
  assert_true(fd >= 0);
  assert_int_equal(fchmod(fd, 0644), 0);
  close(fd);
  char base[512], yaml[1024];
  sl_config_t *cfg = NULL;
  snprintf(base, sizeof(base),
           "node.id: n1\nkafka.brokers: 127.0.0.1:9\nfleet:\n  enabled: true\n"
           "  verify_key: %s\n  labels: [site=a, line=press]\n",
           key);

  /* The file alone: defaults for the fleet-owned keys. */
  cfg = load(base);
  assert_int_equal(cfg->streams.n, 0);
  assert_int_equal(cfg->fleet.labels.n, 2);
  sl_config_free(cfg);

  /* A fleet-owned key in the local file or the environment is refused. */
  snprintf(yaml, sizeof(yaml),
           "%slog:\n  level: debug\nstreams:\n  - name: a\n", base);
  expect_err(yaml, "t.yaml:8:3: log.level: owned by the fleet",
             "t.yaml:9:1: streams: owned by the fleet");
  char *env[] = {"SLUICE_LOG_LEVEL=debug", NULL};
  expect_err_env(base, env,
                 "env SLUICE_LOG_LEVEL: log.level: owned by the "
                 "fleet",
                 NULL);

  /* The remote layer sets them; it may set nothing else. */
  const char *remote = "{\"log\": {\"level\": \"debug\"}, \"streams\": "
                       "[{\"name\": \"a\", \"priority\": 7}]}";
  assert_int_equal(sl_config_load_layers("t.yaml", base, strlen(base), remote,
                                         "fleet generation 3", NULL, &cfg, err,
                                         sizeof(err)),
                   0);
  assert_int_equal(cfg->log.level, 3);
  assert_int_equal(cfg->streams.n, 1);
  assert_int_equal(cfg->streams.v[0].priority, 7);
  assert_string_equal(cfg->node.id, "n1");
  sl_config_free(cfg);

  remote = "{\"node\": {\"id\": \"evil\"},\n \"streams\": [{\"name\": \"a\", "
           "\"priority\": \"high\"}]}";
  assert_int_equal(sl_config_load_layers("t.yaml", base, strlen(base), remote,
                                         "fleet generation 4", NULL, &cfg, err,
                                         sizeof(err)),
                   SL_ECONFIG);
  assert_null(cfg);
  if (!strstr(err, "fleet generation 4:1:11: node.id: local-only key") ||
      !strstr(err, "fleet generation 4:2:40: streams[0].priority"))
    fail_msg("unexpected errors:\n%s", err);
  assert_int_equal(sl_config_load_layers("t.yaml", base, strlen(base),
                                         "{\"log\": [", "fleet generation 5",
                                         NULL, &cfg, err, sizeof(err)),
                   SL_ECONFIG);
  assert_non_null(strstr(err, "fleet generation 5:"));

  /* Without fleet.enabled nobody owns anything remotely; a remote layer is
   * a caller error. */
  cfg = load("node.id: n1\nlog.level: debug\n");
  sl_config_free(cfg);
  assert_int_equal(sl_config_load_layers("t.yaml", "node.id: n1\n", 12, "{}",
                                         "fleet", NULL, &cfg, err, sizeof(err)),
                   SL_ECONFIG);
  /* fleet.enabled needs its key. */
  expect_err("node.id: n1\nkafka.brokers: h:1\nfleet.enabled: true\n",
             "fleet.verify_key: must be set");
  unlink(key);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_values_and_forms),
      cmocka_unit_test(test_error_positions),
      cmocka_unit_test(test_collects_all_errors),
      cmocka_unit_test(test_unknown_keys),
      cmocka_unit_test(test_wrong_yaml_types),
      cmocka_unit_test(test_duplicates),
      cmocka_unit_test(test_syntax_errors),
      cmocka_unit_test(test_env_overrides),
      cmocka_unit_test(test_node_id_rules),
      cmocka_unit_test(test_secrets_redacted),
      cmocka_unit_test(test_kafka_properties_allow_list),
      cmocka_unit_test(test_stream_compression),
      cmocka_unit_test(test_omit_headers),
      cmocka_unit_test(test_file_modes),
      cmocka_unit_test(test_config_file_mode),
      cmocka_unit_test(test_deep_nesting_refused),
      cmocka_unit_test(test_key_file_permissions),
      cmocka_unit_test(test_diff),
      cmocka_unit_test(test_dump_roundtrip),
      cmocka_unit_test(test_load_file),
      cmocka_unit_test(test_bad_corpus),
      cmocka_unit_test(test_fuzz_seeds),
      cmocka_unit_test(test_fleet_layers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
