/*
 * sl_drain_load: fills a store with a backlog fast, straight through the
 * store API (no daemon, no network): realistic readings from the shared
 * generator (500 sources), packed into sluice.v1.EventBatch payloads of
 * --batch events as the native ingest path stores them (ingest_time_ns
 * unset: the uplink adds the batch's append time), group-committed with
 * sync: interval. Progress on stderr, one JSON object on stdout.
 *
 *   sl_drain_load --dir DATA_DIR [--events 5000000] [--batch 1000]
 *                 [--stream readings] [--sources 500]
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "connectors/sim/gen.h"
#include "store/store.h"

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
  const char *dir = NULL, *stream = "readings";
  uint64_t events = 5000000;
  uint32_t batch = 1000, sources = 500;
  static const struct option lo[] = {
      {"dir", 1, NULL, 'd'},     {"events", 1, NULL, 'n'},
      {"batch", 1, NULL, 'b'},   {"stream", 1, NULL, 's'},
      {"sources", 1, NULL, 'S'}, {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'd':
      dir = optarg;
      break;
    case 'n':
      events = strtoull(optarg, NULL, 10);
      break;
    case 'b':
      batch = (uint32_t)strtoul(optarg, NULL, 10);
      break;
    case 's':
      stream = optarg;
      break;
    case 'S':
      sources = (uint32_t)strtoul(optarg, NULL, 10);
      break;
    default:
      fprintf(stderr, "usage: sl_drain_load --dir DIR [--events N] "
                      "[--batch B] [--stream NAME] [--sources S]\n");
      return 2;
    }
  }
  if (!dir || !batch || !events) {
    fprintf(stderr, "sl_drain_load: --dir is required\n");
    return 2;
  }

  sl_store_opts_t so;
  sl_store_t *st;
  char err[512];
  uint32_t id;
  int rc;
  sl_store_opts_init(&so);
  so.sync = SL_STORE_SYNC_INTERVAL;
  so.budget_bytes = 8ull << 30;
  if ((rc = sl_store_env_open(dir, &so, &st, err, sizeof(err))) < 0) {
    fprintf(stderr, "sl_drain_load: open %s: %s\n", dir, err);
    return 1;
  }
  sl_store_stream_conf_t conf = {0};
  if ((rc = sl_store_stream_create(st, stream, &conf, &id)) < 0) {
    fprintf(stderr, "sl_drain_load: stream %s: %s\n", stream, sl_strerror(rc));
    return 1;
  }

  sl_store_stream_stats_t ss;
  uint64_t first = 0;
  if (sl_store_stream_stats(st, id, &ss) == 0)
    first = ss.next_offset; /* appending to an existing stream */

  /* Event times in the past, one turn per source per 10 ms: a backlog. */
  int64_t period = 10000000 / (int64_t)sources;
  sl_gen_t g;
  if (sl_gen_init(&g, sources, 42,
                  sl_now_wall_ns() - (int64_t)events * period - 1000000000,
                  period) < 0)
    return 1;
  size_t cap = (size_t)batch * 512, len;
  uint8_t *buf = malloc(cap);
  uint64_t t0 = sl_now_mono_ns(), done = 0, payload_bytes = 0;
  if (!buf)
    return 1;
  while (done < events) {
    uint32_t n = (uint32_t)SL_MIN((uint64_t)batch, events - done);
    int64_t tmin = INT64_MAX, tmax = INT64_MIN;
    len = 0;
    for (uint32_t i = 0; i < n; i++) {
      const Sluice__V1__Event *ev = sl_gen_next(&g);
      size_t sz = sluice__v1__event__get_packed_size(ev);
      if (len + sz + 16 > cap) {
        cap = (len + sz + 16) * 2;
        if (!(buf = realloc(buf, cap)))
          return 1;
      }
      buf[len++] = 0x0a; /* EventBatch.events, length-delimited */
      len += put_varint(buf + len, sz);
      len += sluice__v1__event__pack(ev, buf + len);
      tmin = SL_MIN(tmin, ev->time_ns);
      tmax = SL_MAX(tmax, ev->time_ns);
    }
    sl_store_batch_t *b;
    sl_store_group_t *grp;
    if ((rc = sl_store_batch_new(st, id, buf, len, n, tmin, tmax, &b)) < 0 ||
        (rc = sl_store_group_new(st, &grp)) < 0) {
      fprintf(stderr, "sl_drain_load: batch: %s\n", sl_strerror(rc));
      return 1;
    }
    if ((rc = sl_store_group_add(grp, b)) < 0 ||
        (rc = sl_store_group_submit(grp, SL_STORE_SUBMIT_BLOCK, NULL, NULL)) <
            0) {
      fprintf(stderr, "sl_drain_load: submit: %s\n", sl_strerror(rc));
      return 1;
    }
    done += n;
    payload_bytes += len;
    if (done % 1000000 < batch)
      fprintf(stderr, "sl_drain_load: %" PRIu64 " events\n", done);
  }
  if ((rc = sl_store_env_sync(st)) < 0) {
    fprintf(stderr, "sl_drain_load: sync: %s\n", sl_strerror(rc));
    return 1;
  }
  double secs = (double)(sl_now_mono_ns() - t0) / 1e9;
  sl_store_stream_stats(st, id, &ss);
  sl_store_env_close(st);
  sl_gen_close(&g);
  free(buf);
  printf("{\"events\":%" PRIu64 ",\"stored_events\":%" PRIu64
         ",\"seconds\":%.2f,\"events_per_s\":%.0f,"
         "\"serialized_bytes_per_event\":%.1f,\"stored_bytes_per_event\":%.1f}"
         "\n",
         done, ss.events, secs, (double)done / secs,
         (double)payload_bytes / (double)done,
         (double)ss.bytes / (double)ss.events);
  return ss.next_offset == first + done ? 0 : 1;
}
