#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "tests/store/crash_common.h"
#include "tests/store/helpers.h"

static const int64_t T0 = 1750000000ll * 1000000000ll;

/* Seeds encode what a batch must look like: count and length. */
static uint32_t seed_count(uint64_t seed) {
  return 1 + (uint32_t)((seed * 2654435761u) >> 7) % 17;
}

static size_t seed_len(uint64_t seed) {
  return 32 + (size_t)((seed * 40503u) >> 3) % 600;
}

typedef struct child_grp {
  int fd;
  size_t n;
  crash_rec_t recs[2];
} child_grp_t;

static void report(int fd, const crash_rec_t *r, size_t n) {
  /* One write per record: each is far below PIPE_BUF, so atomic. */
  for (size_t i = 0; i < n; i++)
    if (write(fd, &r[i], sizeof(*r)) != (ssize_t)sizeof(*r))
      _exit(4);
}

static void on_done(void *arg, int status, const uint64_t *offsets, size_t n) {
  child_grp_t *g = arg;

  if (status == 0) {
    for (size_t i = 0; i < n && i < g->n; i++)
      g->recs[i].first = offsets[i];
    report(g->fd, g->recs, g->n);
  }
  free(g);
}

void crash_child(const char *dir, int fd, uint64_t round, sl_store_sync_t sync,
                 int async, int limit_ms) {
  sl_store_stream_conf_t conf = {0, SL_STORE_POLICY_BLOCK, 0};
  uint64_t deadline = sl_now_mono_ns() + (uint64_t)limit_ms * 1000000u;
  sl_store_opts_t o;
  sl_store_t *st;
  uint32_t ids[2];
  uint8_t buf[1024];

  sl_store_opts_init(&o);
  o.sync = sync;
  o.sync_interval_ms = 5;
  o.queue_depth = 32;
  o.map_size = 1u << 20;
  if (sl_store_env_open(dir, &o, &st, NULL, 0) ||
      sl_store_stream_create(st, "a", &conf, &ids[0]) ||
      sl_store_stream_create(st, "b", &conf, &ids[1]))
    _exit(2);
  for (uint64_t seq = 0; sl_now_mono_ns() < deadline; seq++) {
    child_grp_t *cg = calloc(1, sizeof(*cg));
    sl_store_group_t *g;
    if (!cg || sl_store_group_new(st, &g))
      _exit(3);
    cg->fd = fd;
    cg->n = 1 + seq % 2; /* every other group spans both streams */
    for (size_t j = 0; j < cg->n; j++) {
      uint64_t seed = (round << 32) | (seq << 1) | j;
      size_t len = seed_len(seed);
      sl_store_batch_t *b;
      th_payload(seed, buf, len);
      crash_rec_t *r = &cg->recs[j];
      r->stream = ids[j];
      r->count = seed_count(seed);
      r->hash = XXH3_64bits(buf, len);
      r->seed = seed;
      if (sl_store_batch_new(st, ids[j], buf, len, r->count, T0, T0, &b) ||
          sl_store_group_add(g, b))
        _exit(3);
    }
    if (async) {
      if (sl_store_group_submit(g, SL_STORE_SUBMIT_BLOCK, on_done, cg))
        _exit(3);
    } else {
      uint64_t offs[2];
      if (sl_store_group_commit(g, offs, 2))
        _exit(3);
      for (size_t j = 0; j < cg->n; j++)
        cg->recs[j].first = offs[j];
      report(fd, cg->recs, cg->n);
      free(cg);
    }
  }
  sl_store_env_close(st);
  _exit(0);
}

size_t crash_read(int fd, crash_rec_t **recs, size_t *cap, size_t n,
                  size_t want) {
  size_t got = 0;
  uint8_t *p;

  for (;;) {
    ssize_t r;
    if (n == *cap) {
      *cap = *cap ? *cap * 2 : 256;
      *recs = realloc(*recs, *cap * sizeof(**recs));
      assert_non_null(*recs);
    }
    if (n >= want)
      return n;
    p = (uint8_t *)&(*recs)[n];
    r = read(fd, p + got, sizeof(crash_rec_t) - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return n; /* EOF: the child is gone */
    got += (size_t)r;
    if (got == sizeof(crash_rec_t)) {
      got = 0;
      n++;
    }
  }
}

void crash_verify(const char *dir, const crash_rec_t *recs, size_t n,
                  uint64_t from[3]) {
  sl_store_t *st = th_open(dir, NULL);
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint64_t seed;

  /* Every acknowledged append is there, whole and at its offset. */
  for (size_t i = 0; i < n; i++) {
    const crash_rec_t *r = &recs[i];
    assert_int_equal(
        sl_store_cursor_open(st, r->stream, r->first, r->first + 1, &cur), 0);
    if (sl_store_cursor_next(cur, &rec) != 0)
      fail_msg("acknowledged append lost: stream %u offset %llu", r->stream,
               (unsigned long long)r->first);
    assert_int_equal(rec.status, 0);
    assert_int_equal(rec.first_offset, r->first);
    assert_int_equal(rec.count, r->count);
    assert_true(XXH3_64bits(rec.payload, rec.len) == r->hash);
    sl_store_cursor_close(cur);
  }
  /* Offsets contiguous from where the last round ended; nothing invented:
   * each batch is one the child made (its seed tells count and length). */
  for (uint32_t s = 1; s <= 2; s++) {
    sl_store_stream_stats_t ss;
    uint64_t expect = from[s];
    if (sl_store_stream_stats(st, s, &ss) == SL_ENOTFOUND)
      continue; /* killed before it was created */
    assert_int_equal(
        sl_store_cursor_open(st, s, from[s], SL_STORE_OFFSET_END, &cur), 0);
    while (sl_store_cursor_next(cur, &rec) == 0) {
      assert_int_equal(rec.status, 0);
      assert_int_equal(rec.first_offset, expect);
      assert_int_equal(th_payload_check(rec.payload, rec.len, &seed), 0);
      assert_int_equal(rec.count, seed_count(seed));
      assert_int_equal(rec.len, seed_len(seed));
      expect += rec.count;
    }
    sl_store_cursor_close(cur);
    assert_int_equal(expect, ss.next_offset);
    assert_int_equal(ss.first_offset, 0);
    from[s] = expect;
  }
  sl_store_env_close(st);
}
