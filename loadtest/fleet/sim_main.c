/*
 * sl_fleet_sim: the fleet benchmark's two programs in one binary.
 *
 *   sl_fleet_sim nodes BROKERS PREFIX VERIFY_KEY COUNT [ID_PREFIX]
 *       COUNT simulated nodes (sim.h: the real node machine, one consumer
 *       and one producer for all) until SIGTERM; prints "ready" on stdout
 *       once every inventory is acknowledged.
 *   sl_fleet_sim watch BROKERS PREFIX T0_NS EXPECT TIMEOUT_S
 *       follows the desired and status topics from their beginning until
 *       EXPECT nodes have a desired document rendered after T0_NS and every
 *       one of them reports COMMITTED (or REJECTED/ROLLED_BACK) of that
 *       generation on the status topic, or TIMEOUT_S passed; prints one
 *       JSON object: nodes, committed, rejected, p50_s, p99_s, max_s (from
 *       T0_NS to the arrival of the node's COMMITTED status here),
 *       wrong_generation (nodes whose committed generation is not the
 *       newest one written for them).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadtest/fleet/sim.h"
#include "sluice/v1/fleet.pb-c.h"

static volatile sig_atomic_t stop_flag;
static void on_signal(int s) {
  (void)s;
  stop_flag = 1;
}

static int run_nodes(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: sl_fleet_sim nodes BROKERS PREFIX VERIFY_KEY "
                    "COUNT [ID_PREFIX]\n");
    return 2;
  }
  fsim_conf_t c = {.brokers = argv[2],
                   .prefix = argv[3],
                   .verify_key = argv[4],
                   .nodes = (size_t)strtoull(argv[5], NULL, 10),
                   .id_prefix = argc > 6 ? argv[6] : "sim",
                   .sites = 10,
                   .heartbeat_ms = 10000};
  fsim_t *s;
  char err[512];
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  if (fsim_open(&c, &s, err, sizeof(err))) {
    fprintf(stderr, "sl_fleet_sim: %s\n", err);
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  while (!stop_flag)
    if (fsim_poll(s, 50, err, sizeof(err))) {
      fprintf(stderr, "sl_fleet_sim: %s\n", err);
      break;
    }
  if (fsim_bad_partitions(s))
    fprintf(stderr, "sl_fleet_sim: %u desired record(s) on a wrong partition\n",
            fsim_bad_partitions(s));
  fsim_close(s);
  return 0;
}

/* ---- watch ------------------------------------------------------------------
 */

typedef struct wnode {
  char *id;
  uint64_t gen;      /* newest desired generation rendered after t0 */
  uint64_t done_gen; /* generation of its final status */
  int64_t done_ns;   /* arrival of COMMITTED (or failure) */
  int phase;
} wnode_t;

typedef struct watch {
  int64_t t0;
  wnode_t *n;
  size_t count, cap;
  size_t *slot;
  size_t slot_cap;
} watch_t;

static wnode_t *wfind(watch_t *w, const char *key, size_t klen, bool add) {
  size_t h = sl_fleet_murmur2(key, klen) & (w->slot_cap - 1);
  for (;;) {
    size_t v = w->slot[h];
    if (v == SIZE_MAX)
      break;
    if (strlen(w->n[v].id) == klen && !memcmp(w->n[v].id, key, klen))
      return &w->n[v];
    h = (h + 1) & (w->slot_cap - 1);
  }
  if (!add || w->count * 2 >= w->slot_cap || w->count == w->cap)
    return NULL;
  w->n[w->count] = (wnode_t){.id = strndup(key, klen)};
  w->slot[h] = w->count;
  return &w->n[w->count++];
}

static void on_rec(void *opaque, int topic, int32_t partition, int64_t offset,
                   const char *key, size_t klen, const void *val, size_t vlen) {
  watch_t *w = opaque;
  (void)partition;
  (void)offset;
  if (!key || !val)
    return;
  if (topic == SL_FT_DESIRED) {
    Sluice__V1__Signed *s = sluice__v1__signed__unpack(NULL, vlen, val);
    if (!s)
      return;
    Sluice__V1__DesiredConfig *d =
        s->kind == SLUICE__V1__SIGNED__KIND__DESIRED
            ? sluice__v1__desired_config__unpack(NULL, s->payload.len,
                                                 s->payload.data)
            : NULL;
    if (d && d->rendered_ns >= w->t0) {
      wnode_t *n = wfind(w, key, klen, true);
      if (n && d->generation > n->gen)
        n->gen = d->generation;
    }
    if (d)
      sluice__v1__desired_config__free_unpacked(d, NULL);
    sluice__v1__signed__free_unpacked(s, NULL);
    return;
  }
  Sluice__V1__FleetStatus *st =
      sluice__v1__fleet_status__unpack(NULL, vlen, val);
  if (!st)
    return;
  wnode_t *n = wfind(w, key, klen, false);
  if (n && n->gen && !n->done_ns) {
    bool ok = st->phase == SLUICE__V1__FLEET_PHASE__COMMITTED &&
              st->lkg_generation >= n->gen;
    bool bad = (st->phase == SLUICE__V1__FLEET_PHASE__REJECTED ||
                st->phase == SLUICE__V1__FLEET_PHASE__ROLLED_BACK) &&
               st->observed_generation >= n->gen;
    if (ok || bad) {
      n->done_ns = sl_now_wall_ns();
      n->done_gen = ok ? st->lkg_generation : st->observed_generation;
      n->phase = st->phase;
    }
  }
  sluice__v1__fleet_status__free_unpacked(st, NULL);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int run_watch(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: sl_fleet_sim watch BROKERS PREFIX T0_NS EXPECT "
                    "TIMEOUT_S\n");
    return 2;
  }
  sl_fleet_kconf_t kc = {.brokers = argv[2], .prefix = argv[3]};
  watch_t w = {.t0 = strtoll(argv[4], NULL, 10)};
  size_t expect = (size_t)strtoull(argv[5], NULL, 10);
  uint64_t deadline =
      sl_now_mono_ns() + strtoull(argv[6], NULL, 10) * 1000000000ull;
  sl_fleet_kafka_t *k;
  sl_fleet_reader_t *r;
  char err[512];
  w.cap = expect * 2 + 16;
  w.slot_cap = 1024;
  while (w.slot_cap < w.cap * 2)
    w.slot_cap *= 2;
  w.n = calloc(w.cap, sizeof(*w.n));
  w.slot = malloc(w.slot_cap * sizeof(size_t));
  if (!w.n || !w.slot)
    return 1;
  for (size_t i = 0; i < w.slot_cap; i++)
    w.slot[i] = SIZE_MAX;
  if (sl_fleet_kafka_open(&kc, &k, err, sizeof(err)) ||
      sl_fleet_reader_open(k, 1u << SL_FT_DESIRED | 1u << SL_FT_STATUS, &r, err,
                           sizeof(err))) {
    fprintf(stderr, "sl_fleet_sim watch: %s\n", err);
    return 1;
  }
  size_t done = 0;
  while (sl_now_mono_ns() < deadline) {
    if (sl_fleet_reader_poll(r, 200, false, on_rec, &w, NULL, err,
                             sizeof(err)) < 0) {
      fprintf(stderr, "sl_fleet_sim watch: %s\n", err);
      break;
    }
    done = 0;
    for (size_t i = 0; i < w.count; i++)
      done += w.n[i].done_ns != 0;
    if (w.count >= expect && done >= w.count)
      break;
  }
  double *lat = calloc(w.count ? w.count : 1, sizeof(double));
  size_t committed = 0, rejected = 0, wrong = 0;
  for (size_t i = 0; i < w.count; i++) {
    wnode_t *n = &w.n[i];
    if (n->phase == SLUICE__V1__FLEET_PHASE__COMMITTED) {
      lat[committed++] = (double)(n->done_ns - w.t0) / 1e9;
      if (n->done_gen != n->gen)
        wrong++;
    } else if (n->phase) {
      rejected++;
    }
  }
  qsort(lat, committed, sizeof(double), cmp_d);
#define PCT(p) (committed ? lat[(size_t)((double)(committed - 1) * (p))] : -1.0)
  printf("{\"nodes\": %zu, \"committed\": %zu, \"rejected\": %zu, "
         "\"p50_s\": %.3f, \"p99_s\": %.3f, \"max_s\": %.3f, "
         "\"wrong_generation\": %zu}\n",
         w.count, committed, rejected, PCT(0.5), PCT(0.99), PCT(1.0), wrong);
  free(lat);
  sl_fleet_reader_close(r);
  sl_fleet_kafka_close(k);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "nodes"))
    return run_nodes(argc, argv);
  if (argc > 1 && !strcmp(argv[1], "watch"))
    return run_watch(argc, argv);
  fprintf(stderr, "usage: sl_fleet_sim nodes|watch ...\n");
  return 2;
}
