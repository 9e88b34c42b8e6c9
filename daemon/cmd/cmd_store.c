/*
 * cmd_store.c: `sluice store stats|inspect|verify|dump -d DIR` reads a store
 * read-only (no writer lock: it works beside a running daemon).
 *   stats    streams, offsets, bytes, evictions, backlog per consumer cursor
 *   inspect  every batch header and every pending gap record
 *   verify   full checksum, GCM tag and decompression pass; exit 1 on
 *            corruption or a missing or wrong key
 * Sealed stores need --key-file F or --key-env NAME to read payloads.
 *   dump     events as JSON lines (stream, offset, source, time_ns, body)
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "schemas/event_json.h"
#include "common/common.h"
#include "sluice/v1/event.pb-c.h"
#include "store/store.h"

int sl_cmd_store(int argc, char **argv);

typedef struct cli {
  const char *dir;      /* -d DIR */
  const char *stream;   /* --stream S, NULL = all */
  uint64_t from, to;    /* --from N --to N (exclusive) */
  const char *key_file; /* --key-file F: encryption keys */
  const char *key_env;  /* --key-env NAME */
} cli_t;

static int usage(FILE *out) {
  fprintf(out,
          "usage: sluice store stats|inspect|verify|dump -d DIR "
          "[--stream S] [--from N] [--to N]\n"
          "       [--key-file F | --key-env NAME]\n"
          "  stats    streams, offsets, bytes, evictions, consumer backlog\n"
          "  inspect  batch headers and pending gap records\n"
          "  verify   check every batch's checksum and, when sealed, its GCM\n"
          "           tag (needs the keys); exit 1 on corruption or a\n"
          "           missing or wrong key\n"
          "  dump     events as JSON lines\n");
  return out == stderr ? 2 : 0;
}

static double mib(uint64_t b) {
  return (double)b / (1024.0 * 1024.0);
}

/* The stream ids to work on: one by name, or all. */
static int pick_streams(sl_store_t *st, const cli_t *c, uint32_t **ids,
                        size_t *n) {
  size_t total;
  int rc;

  if (c->stream) {
    *ids = malloc(sizeof(**ids));
    if (!*ids)
      return -1;
    *n = 1;
    if ((rc = sl_store_stream_lookup(st, c->stream, *ids))) {
      fprintf(stderr, "sluice store: stream '%s': %s\n", c->stream,
              sl_strerror(rc));
      free(*ids);
      return -1;
    }
    return 0;
  }
  if ((rc = sl_store_stream_list(st, NULL, 0, &total)) ||
      !(*ids = calloc(total ? total : 1, sizeof(**ids))) ||
      (rc = sl_store_stream_list(st, *ids, total, n))) {
    fprintf(stderr, "sluice store: listing streams: %s\n", sl_strerror(rc));
    return -1;
  }
  *n = SL_MIN(*n, total);
  return 0;
}

static const char *policy_name(sl_store_policy_t p) {
  switch (p) {
  case SL_STORE_POLICY_BLOCK:
    return "block";
  case SL_STORE_POLICY_DROP_OLDEST:
    return "drop_oldest";
  case SL_STORE_POLICY_EVICT_PRIORITY:
    return "evict_priority";
  }
  return "unknown";
}

static int cmd_stats(sl_store_t *st, const cli_t *c) {
  sl_store_consumer_t cons[64];
  sl_store_gap_t gaps[1];
  sl_store_info_t info;
  uint32_t *ids;
  size_t n, ng;

  sl_store_env_info(st, &info);
  printf("store %s: format %u, id %s, page %u, map %.1f MiB, file %.1f "
         "MiB, used %.1f MiB, quarantined %" PRIu64 "\n",
         c->dir, info.format_version, info.node_id, info.page_size,
         mib(info.map_size), mib(info.file_bytes), mib(info.used_bytes),
         info.quarantined);
  if (pick_streams(st, c, &ids, &n))
    return 1;
  for (size_t i = 0; i < n; i++) {
    sl_store_stream_stats_t ss;
    size_t nc;
    if (sl_store_stream_stats(st, ids[i], &ss))
      continue;
    printf("stream %s (id %u): offsets %" PRIu64 "..%" PRIu64 ", %" PRIu64
           " events in %" PRIu64 " batches, %.2f MiB (%.1f B/event), "
           "oldest event %" PRId64 " ns, policy %s, priority %u, ttl %" PRId64
           " ns, dict %u\n",
           ss.name, ss.id, ss.first_offset, ss.next_offset, ss.events,
           ss.batches, mib(ss.bytes),
           ss.events ? (double)ss.bytes / (double)ss.events : 0.0,
           ss.oldest_time_ns, policy_name(ss.conf.policy), ss.conf.priority,
           ss.conf.ttl_ns, ss.dict_id);
    for (int r = 0; r < SL_STORE_REASON_COUNT; r++)
      if (ss.evicted_events[r])
        printf("  evicted %s: %" PRIu64 " events, %" PRIu64 " bytes\n",
               sl_store_reason_name((sl_store_reason_t)r), ss.evicted_events[r],
               ss.evicted_bytes[r]);
    if (sl_store_consumer_list(st, ss.id, cons, SL_ARRAY_SIZE(cons), &nc))
      continue;
    for (size_t j = 0; j < SL_MIN(nc, SL_ARRAY_SIZE(cons)); j++)
      printf("  consumer %s: next %" PRIu64 ", backlog %" PRIu64 " events\n",
             cons[j].name, cons[j].next_offset,
             ss.next_offset > cons[j].next_offset
                 ? ss.next_offset - cons[j].next_offset
                 : 0);
    if (nc == 0)
      printf("  no consumer cursor: backlog %" PRIu64 " events\n", ss.events);
  }
  if (sl_store_gap_list(st, 0, gaps, 1, &ng) == 0)
    printf("gap records pending: %s\n", ng ? "yes" : "none");
  free(ids);
  return 0;
}

/* Walks the selected streams; inspect prints each batch, verify counts. */
static int walk(sl_store_t *st, const cli_t *c, int print) {
  uint64_t batches = 0, events = 0, bytes = 0, bad = 0, evicted = 0;
  uint32_t *ids;
  size_t n;

  if (pick_streams(st, c, &ids, &n))
    return 1;
  for (size_t i = 0; i < n; i++) {
    sl_store_cursor_t *cur;
    sl_store_rec_t rec;
    int rc;
    if ((rc = sl_store_cursor_open(st, ids[i], c->from, c->to, &cur))) {
      fprintf(stderr, "sluice store: stream %u: %s\n", ids[i], sl_strerror(rc));
      free(ids);
      return 1;
    }
    while ((rc = sl_store_cursor_next(cur, &rec)) == 0) {
      if (rec.status == SL_ECORRUPT) {
        bad++;
        printf("stream %u offsets %" PRIu64 "..%" PRIu64
               ": CORRUPT batch (checksum, header or decompression)\n",
               ids[i], rec.first_offset, rec.first_offset + rec.count - 1);
        continue;
      }
      if (rec.status == SL_EEVICTED) {
        evicted += rec.count;
        if (print)
          printf("stream %u offsets %" PRIu64 "..%" PRIu64 ": evicted\n",
                 ids[i], rec.first_offset, rec.first_offset + rec.count - 1);
        continue;
      }
      batches++;
      events += rec.count;
      bytes += rec.len;
      if (print)
        printf("stream %u offsets %" PRIu64 "..%" PRIu64 " count %" PRIu64
               " time %" PRId64 "..%" PRId64 " appended %" PRId64
               " payload %zu B dict %u\n",
               ids[i], rec.first_offset, rec.first_offset + rec.count - 1,
               rec.count, rec.min_time_ns, rec.max_time_ns, rec.append_time_ns,
               rec.len, rec.dict_id);
    }
    sl_store_cursor_close(cur);
    if (rc == SL_EKEY) {
      fprintf(stderr,
              "sluice store: stream %u: a batch is sealed with a key that "
              "was not given (--key-file/--key-env): %s\n",
              ids[i], sl_strerror(rc));
      free(ids);
      return 1;
    }
    if (rc != SL_ENOTFOUND) {
      fprintf(stderr, "sluice store: reading stream %u: %s\n", ids[i],
              sl_strerror(rc));
      free(ids);
      return 1;
    }
  }
  free(ids);
  if (print) {
    sl_store_gap_t gaps[256];
    size_t ng;
    uint64_t from = 0;
    do {
      if (sl_store_gap_list(st, from, gaps, SL_ARRAY_SIZE(gaps), &ng))
        break;
      for (size_t j = 0; j < ng; j++) {
        printf("gap %" PRIu64 ": stream %u offsets %" PRIu64 "..%" PRIu64
               " (%" PRIu64 " events) time %" PRId64 "..%" PRId64
               " reason %s\n",
               gaps[j].seq, gaps[j].stream, gaps[j].first_offset,
               gaps[j].first_offset + gaps[j].count - 1, gaps[j].count,
               gaps[j].min_time_ns, gaps[j].max_time_ns,
               sl_store_reason_name(gaps[j].reason));
        from = gaps[j].seq + 1;
      }
    } while (ng == SL_ARRAY_SIZE(gaps));
  }
  printf("%s: %" PRIu64 " batches, %" PRIu64 " events, %.2f MiB payload, "
         "%" PRIu64 " corrupt batches, %" PRIu64 " events evicted under the "
         "reader\n",
         bad ? "CORRUPT" : "ok", batches, events, mib(bytes), bad, evicted);
  return bad ? 1 : 0;
}

static int cmd_dump(sl_store_t *st, const cli_t *c) {
  uint32_t *ids;
  size_t n;
  int bad = 0;

  if (pick_streams(st, c, &ids, &n))
    return 1;
  for (size_t i = 0; i < n; i++) {
    sl_store_stream_stats_t ss;
    sl_store_cursor_t *cur;
    sl_store_rec_t rec;
    int rc;
    if (sl_store_stream_stats(st, ids[i], &ss) ||
        sl_store_cursor_open(st, ids[i], c->from, c->to, &cur))
      continue;
    while ((rc = sl_store_cursor_next(cur, &rec)) == 0) {
      Sluice__V1__EventBatch *eb;
      if (rec.status) {
        fprintf(stderr,
                "sluice store: %s offsets %" PRIu64 "..%" PRIu64 ": %s\n",
                ss.name, rec.first_offset, rec.first_offset + rec.count - 1,
                sl_strerror(rec.status));
        bad |= rec.status == SL_ECORRUPT;
        continue;
      }
      eb = sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
      if (!eb) {
        fprintf(stderr,
                "sluice store: %s offset %" PRIu64 ": not an EventBatch\n",
                ss.name, rec.first_offset);
        bad = 1;
        continue;
      }
      for (size_t j = 0; j < eb->n_events; j++) {
        uint64_t off = rec.first_offset + j;
        json_t *o;
        if (off < c->from || off >= c->to)
          continue;
        o = sl_event_json(ss.name, off, eb->events[j], rec.append_time_ns);
        json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(15));
        fputc('\n', stdout);
        json_decref(o);
      }
      sluice__v1__event_batch__free_unpacked(eb, NULL);
    }
    if (rc != SL_ENOTFOUND) {
      fprintf(stderr, "sluice store: %s: %s\n", ss.name, sl_strerror(rc));
      bad = 1;
    }
    sl_store_cursor_close(cur);
  }
  free(ids);
  return bad;
}

int sl_cmd_store(int argc, char **argv) {
  static const struct option longopts[] = {
      {"dir", required_argument, NULL, 'd'},
      {"stream", required_argument, NULL, 's'},
      {"from", required_argument, NULL, 'f'},
      {"to", required_argument, NULL, 't'},
      {"key-file", required_argument, NULL, 'k'},
      {"key-env", required_argument, NULL, 'e'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  cli_t c = {NULL, NULL, 0, SL_STORE_OFFSET_END, NULL, NULL};
  sl_store_opts_t opts;
  sl_store_t *st;
  const char *sub;
  char err[512];
  int opt, rc;

  if (argc < 2)
    return usage(stderr);
  sub = argv[1];
  if (!strcmp(sub, "help") || !strcmp(sub, "--help") || !strcmp(sub, "-h"))
    return usage(stdout);
  optind = 1;
  while ((opt = getopt_long(argc - 1, argv + 1, "d:h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'd':
      c.dir = optarg;
      break;
    case 's':
      c.stream = optarg;
      break;
    case 'f':
      c.from = strtoull(optarg, NULL, 10);
      break;
    case 't':
      c.to = strtoull(optarg, NULL, 10);
      break;
    case 'k':
      c.key_file = optarg;
      break;
    case 'e':
      c.key_env = optarg;
      break;
    case 'h':
      return usage(stdout);
    default:
      return usage(stderr);
    }
  }
  if (!c.dir || c.from > c.to)
    return usage(stderr);
  sl_store_opts_init(&opts);
  opts.flags = SL_STORE_RDONLY;
  opts.key_file = c.key_file;
  opts.key_env = c.key_env;
  if ((rc = sl_store_env_open(c.dir, &opts, &st, err, sizeof(err)))) {
    fprintf(stderr, "sluice store: %s: %s (%s)\n", c.dir, err, sl_errname(rc));
    return 1;
  }
  if (!strcmp(sub, "stats"))
    rc = cmd_stats(st, &c);
  else if (!strcmp(sub, "inspect"))
    rc = walk(st, &c, 1);
  else if (!strcmp(sub, "verify"))
    rc = walk(st, &c, 0);
  else if (!strcmp(sub, "dump"))
    rc = cmd_dump(st, &c);
  else
    rc = usage(stderr);
  sl_store_env_close(st);
  return rc;
}
