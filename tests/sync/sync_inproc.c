/* The in-process uplink tests' store, mock cluster and consumer
 * (sync_inproc.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "tests/sync/sync_inproc.h"

static char store_dir[256];

sl_store_t *inproc_store_open(const char *tag, int interval_sync,
                              uint32_t *id) {
  char e[256];
  sl_store_opts_t so;
  sl_store_t *st;
  snprintf(store_dir, sizeof(store_dir), "/tmp/sl_%s.XXXXXX", tag);
  CHECK(mkdtemp(store_dir), "mkdtemp");
  sl_store_opts_init(&so);
  if (interval_sync)
    so.sync = SL_STORE_SYNC_INTERVAL;
  CHECK(sl_store_env_open(store_dir, &so, &st, e, sizeof(e)) == 0, "store: %s",
        e);
  sl_store_stream_conf_t sc = {0};
  CHECK(sl_store_stream_create(st, "readings", &sc, id) == 0, "stream");
  return st;
}

void inproc_store_remove(sl_store_t *st) {
  char cmd[300];
  sl_store_env_close(st);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", store_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", store_dir);
}

void inproc_fill(sl_store_t *st, uint32_t id, uint32_t from, uint32_t n,
                 int64_t base_ns) {
  for (uint32_t b = from / INPROC_BATCH; b < (from + n) / INPROC_BATCH; b++) {
    Sluice__V1__EventBatch eb = SLUICE__V1__EVENT_BATCH__INIT;
    Sluice__V1__Event evs[INPROC_BATCH], *evp[INPROC_BATCH];
    Sluice__V1__Reading rd[INPROC_BATCH];
    char srcs[INPROC_BATCH][32];
    for (uint32_t i = 0; i < INPROC_BATCH; i++) {
      uint32_t k = b * INPROC_BATCH + i;
      sluice__v1__event__init(&evs[i]);
      sluice__v1__reading__init(&rd[i]);
      snprintf(srcs[i], sizeof(srcs[i]), "site/sensor%02u", k % 16);
      evs[i].source = srcs[i];
      evs[i].time_ns = base_ns + (int64_t)k * 1000000;
      rd[i].value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
      rd[i].double_value = (double)k;
      evs[i].body_case = SLUICE__V1__EVENT__BODY_READING;
      evs[i].reading = &rd[i];
      evp[i] = &evs[i];
    }
    eb.n_events = INPROC_BATCH;
    eb.events = evp;
    size_t len = sluice__v1__event_batch__get_packed_size(&eb);
    uint8_t *buf = malloc(len);
    CHECK(buf, "malloc");
    sluice__v1__event_batch__pack(&eb, buf);
    sl_store_batch_t *bt;
    sl_store_group_t *g;
    CHECK(sl_store_batch_new(st, id, buf, len, INPROC_BATCH, evs[0].time_ns,
                             evs[INPROC_BATCH - 1].time_ns, &bt) == 0 &&
              sl_store_group_new(st, &g) == 0 &&
              sl_store_group_add(g, bt) == 0 &&
              sl_store_group_commit(g, NULL, 0) == 0,
          "store batch %u", b);
    free(buf);
  }
}

int inproc_mock_new(inproc_mock_t *m, int nbrokers, const char *const *topics,
                    const char *prog) {
  char e[256];
  rd_kafka_conf_t *mconf = rd_kafka_conf_new();
  memset(m, 0, sizeof(*m));
  m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, mconf, e, sizeof(e));
  CHECK(m->rk, "%s", e);
  m->mc = rd_kafka_mock_cluster_new(m->rk, nbrokers);
  if (!m->mc) {
    printf("%s: SKIP: no mock cluster in this librdkafka\n", prog);
    return 77;
  }
  m->brokers = rd_kafka_mock_cluster_bootstraps(m->mc);
  for (const char *const *t = topics; *t; t++)
    CHECK(rd_kafka_mock_topic_create(m->mc, *t, 1, nbrokers) == 0, "topic %s",
          *t);
  return 0;
}

void inproc_mock_free(inproc_mock_t *m) {
  rd_kafka_mock_cluster_destroy(m->mc);
  rd_kafka_destroy(m->rk);
}

uint64_t inproc_consume(const char *brokers, const char *topic, int committed,
                        uint32_t n, uint32_t *count, inproc_record_fn check) {
  char e[256];
  uint64_t records = 0;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  CHECK(
      !rd_kafka_conf_set(conf, "bootstrap.servers", brokers, e, sizeof(e)) &&
          !rd_kafka_conf_set(conf, "group.id", "verify", e, sizeof(e)) &&
          (!committed || !rd_kafka_conf_set(conf, "isolation.level",
                                            "read_committed", e, sizeof(e))) &&
          !rd_kafka_conf_set(conf, "enable.partition.eof", "true", e,
                             sizeof(e)),
      "conf: %s", e);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
  CHECK(rk, "consumer: %s", e);
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(parts, topic, 0)->offset =
      RD_KAFKA_OFFSET_BEGINNING;
  CHECK(rd_kafka_assign(rk, parts) == 0, "assign");
  rd_kafka_topic_partition_list_destroy(parts);
  uint64_t deadline = sl_now_mono_ns() + 60000000000ull;
  for (;;) {
    CHECK(sl_now_mono_ns() < deadline, "topic not read to its end in 60 s");
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      rd_kafka_message_destroy(m);
      break;
    }
    CHECK(!m->err, "consume: %s", rd_kafka_message_errstr(m));
    rd_kafka_headers_t *h;
    const void *v;
    size_t sz;
    char ob[32];
    CHECK(!rd_kafka_message_headers(m, &h) &&
              !rd_kafka_header_get_last(h, "offset", &v, &sz) &&
              sz < sizeof(ob),
          "offset header");
    memcpy(ob, v, sz);
    ob[sz] = '\0';
    uint64_t off = strtoull(ob, NULL, 10);
    CHECK(off < n, "offset %" PRIu64 " beyond the stored range", off);
    Sluice__V1__Event *ev = sluice__v1__event__unpack(NULL, m->len, m->payload);
    check(m, off, ev);
    if (ev)
      sluice__v1__event__free_unpacked(ev, NULL);
    count[off]++;
    records++;
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return records;
}
