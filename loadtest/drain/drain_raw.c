/*
 * sl_drain_raw: the baseline of `loadtest/run drain`: the raw librdkafka
 * producer rate for the same records the uplink sends. It reads the
 * stream's events from the store (read-only) into memory first, untimed,
 * building each record exactly as sync/lane.c does (key = source, value =
 * the Event bytes with the batch's append time as ingest_time_ns, headers
 * node, stream, offset, schema, historical), then times producing them all
 * with the given producer properties (the uplink's acks, idempotence,
 * compression and batching; run.sh passes them) until the last delivery
 * report (after an untimed warm-up record). Progress on stderr, one JSON object
 * on stdout.
 *
 *   sl_drain_raw --dir DATA_DIR --brokers HOST:PORT --topic T
 *                [--stream readings] [--node NODE] [--events N]
 *                [-X key=value]...
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <librdkafka/rdkafka.h>

#include "common/common.h"
#include "store/store.h"
#include "sync/sync.h"

typedef struct rec {
  uint64_t at;         /* byte position of key then value in the arena */
  uint32_t klen, vlen; /* key and value lengths */
} rec_t;

static uint64_t delivered, failed;
static rd_kafka_resp_err_t first_err;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (m->err) {
    if (!failed++)
      first_err = m->err;
  } else {
    delivered++;
  }
}

static size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

int main(int argc, char **argv) {
  const char *dir = NULL, *brokers = NULL, *topic = NULL;
  const char *stream = "readings", *node = "bench-drain";
  uint64_t want = UINT64_MAX;
  const char *props[64];
  size_t nprops = 0;
  static const struct option lo[] = {
      {"dir", 1, NULL, 'd'},   {"brokers", 1, NULL, 'b'},
      {"topic", 1, NULL, 't'}, {"stream", 1, NULL, 's'},
      {"node", 1, NULL, 'N'},  {"events", 1, NULL, 'n'},
      {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "X:", lo, NULL)) != -1) {
    switch (c) {
    case 'd':
      dir = optarg;
      break;
    case 'b':
      brokers = optarg;
      break;
    case 't':
      topic = optarg;
      break;
    case 's':
      stream = optarg;
      break;
    case 'N':
      node = optarg;
      break;
    case 'n':
      want = strtoull(optarg, NULL, 10);
      break;
    case 'X':
      if (nprops < SL_ARRAY_SIZE(props))
        props[nprops++] = optarg;
      break;
    default:
      fprintf(stderr, "usage: sl_drain_raw --dir DIR --brokers B --topic T "
                      "[--stream S] [--node N] [--events N] [-X k=v]...\n");
      return 2;
    }
  }
  if (!dir || !brokers || !topic) {
    fprintf(stderr, "sl_drain_raw: --dir, --brokers and --topic are needed\n");
    return 2;
  }

  /* ---- load the records (untimed) ---- */
  sl_store_opts_t so;
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  sl_store_stream_stats_t ss;
  char err[512];
  uint32_t id;
  int rc;
  sl_store_opts_init(&so);
  so.flags = SL_STORE_RDONLY;
  if (sl_store_env_open(dir, &so, &st, err, sizeof(err)) < 0 ||
      sl_store_stream_lookup(st, stream, &id) < 0 ||
      sl_store_stream_stats(st, id, &ss) < 0) {
    fprintf(stderr, "sl_drain_raw: store %s stream %s: %s\n", dir, stream, err);
    return 1;
  }
  uint64_t n = SL_MIN(want, ss.next_offset);
  size_t acap = (size_t)200 * (size_t)n + (1u << 20);
  uint8_t *arena = malloc(acap);
  rec_t *recs = calloc(n + 1, sizeof(*recs));
  uint64_t used = 0, nrec = 0;
  if (!arena || !recs) {
    fprintf(stderr, "sl_drain_raw: no memory for %" PRIu64 " records\n", n);
    return 1;
  }
  if (sl_store_cursor_open(st, id, 0, n, &cur) < 0)
    return 1;
  while (nrec < n && (rc = sl_store_cursor_next(cur, &rec)) == 0) {
    if (rec.status)
      continue;
    size_t pos = 0;
    sl_sync_event_t ev;
    while (nrec < n &&
           sl_sync_event_next(rec.payload, rec.len, &pos, &ev) == 0) {
      size_t need = ev.source_len + ev.len + 16;
      if (used + need > acap) {
        acap = (acap + need) * 2;
        if (!(arena = realloc(arena, acap))) {
          fprintf(stderr, "sl_drain_raw: no memory\n");
          return 1;
        }
      }
      uint8_t *p = arena + used;
      memcpy(p, ev.source, ev.source_len);
      memcpy(p + ev.source_len, ev.data, ev.len);
      size_t vlen = ev.len;
      if (!ev.has_ingest_time) { /* as sync/lane.c does (D7) */
        int64_t t = rec.append_time_ns;
        uint64_t zz = ((uint64_t)t << 1) ^ (uint64_t)(t >> 63);
        p[ev.source_len + vlen++] = 0x18;
        vlen += put_varint(p + ev.source_len + vlen, zz);
      }
      recs[nrec].at = used;
      recs[nrec].klen = (uint32_t)ev.source_len;
      recs[nrec].vlen = (uint32_t)vlen;
      used += ev.source_len + vlen;
      nrec++;
    }
  }
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
  fprintf(stderr, "sl_drain_raw: %" PRIu64 " records loaded (%.1f B/value)\n",
          nrec, nrec ? (double)used / (double)nrec : 0.0);

  /* ---- produce them (timed) ---- */
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char e[512];
  if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, e, sizeof(e))) {
    fprintf(stderr, "sl_drain_raw: %s\n", e);
    return 2;
  }
  for (size_t i = 0; i < nprops; i++) {
    char kv[512], *eq;
    snprintf(kv, sizeof(kv), "%s", props[i]);
    if (!(eq = strchr(kv, '='))) {
      fprintf(stderr, "sl_drain_raw: -X %s is not key=value\n", props[i]);
      return 2;
    }
    *eq = '\0';
    if (rd_kafka_conf_set(conf, kv, eq + 1, e, sizeof(e))) {
      fprintf(stderr, "sl_drain_raw: %s\n", e);
      return 2;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
  if (!rk) {
    fprintf(stderr, "sl_drain_raw: %s\n", e);
    return 1;
  }
  /* Warm up, untimed, as the uplink is when its clock starts (producer up,
   * broker connected, producer id acquired): one record to another topic. */
  char wt[300];
  snprintf(wt, sizeof(wt), "%s-warmup", topic);
  if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(wt), RD_KAFKA_V_VALUE("w", 1),
                        RD_KAFKA_V_END) ||
      rd_kafka_flush(rk, 60000) || delivered != 1) {
    fprintf(stderr, "sl_drain_raw: warm-up record not delivered\n");
    return 1;
  }
  delivered = 0;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  static const char schema[] = "sluice.v1.Event";
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  uint64_t t0 = sl_now_mono_ns();
  for (uint64_t i = 0; i < nrec; i++) {
    char offbuf[24];
    int on = snprintf(offbuf, sizeof(offbuf), "%" PRIu64, i);
    const uint8_t *p = arena + recs[i].at;
    for (;;) {
      rd_kafka_resp_err_t perr = rd_kafka_producev(
          rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY(p, recs[i].klen),
          RD_KAFKA_V_VALUE((void *)(p + recs[i].klen), recs[i].vlen),
          RD_KAFKA_V_HEADER("node", node, -1),
          RD_KAFKA_V_HEADER("stream", stream, -1),
          RD_KAFKA_V_HEADER("offset", offbuf, on),
          RD_KAFKA_V_HEADER("schema", schema, -1),
          RD_KAFKA_V_HEADER("historical", "1", 1), RD_KAFKA_V_END);
      if (!perr)
        break;
      if (perr != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        fprintf(stderr, "sl_drain_raw: produce: %s\n", rd_kafka_err2str(perr));
        return 1;
      }
      rd_kafka_poll(rk, 5);
    }
    if ((i & 63) == 0)
      rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 300000);
  double secs = (double)(sl_now_mono_ns() - t0) / 1e9;
  getrusage(RUSAGE_SELF, &ru1);
  double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec +
                        ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
               (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec +
                        ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) /
                   1e6;
  if (failed || delivered != nrec)
    fprintf(stderr,
            "sl_drain_raw: %" PRIu64 " failed (%s), %" PRIu64
            " delivered of %" PRIu64 "\n",
            failed, rd_kafka_err2str(first_err), delivered, nrec);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  printf("{\"events\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"failed\":%" PRIu64
         ",\"seconds\":%.3f,\"events_per_s\":%.0f,\"cpu_s_per_million\":%.3f,"
         "\"value_key_bytes\":%" PRIu64 "}\n",
         nrec, delivered, failed, secs, (double)delivered / secs,
         nrec ? cpu / ((double)nrec / 1e6) : 0.0, used);
  free(arena);
  free(recs);
  return failed || delivered != nrec ? 1 : 0;
}
