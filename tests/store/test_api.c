/*
 * The store's API paths and error codes: environment, streams, batches,
 * groups (sync and async), read cursors, consumer cursors, state, info.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"
#include "store/store_int.h"
#include "tests/store/helpers.h"

static const int64_t T0 = 1750000000ll * 1000000000ll;

static void test_opts_and_open_errors(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_opts_t o;
  sl_store_t *st = NULL;
  char err[256];

  sl_store_opts_init(&o);
  o.budget_bytes = 1000;
  assert_int_equal(sl_store_env_open(dir, &o, &st, err, sizeof(err)),
                   SL_ECONFIG);
  assert_non_null(strstr(err, "budget"));
  sl_store_opts_init(&o);
  o.sync = SL_STORE_SYNC_INTERVAL;
  o.sync_interval_ms = 0;
  assert_int_equal(sl_store_env_open(dir, &o, &st, err, sizeof(err)),
                   SL_ECONFIG);
  sl_store_opts_init(&o);
  o.queue_depth = 0;
  assert_int_equal(sl_store_env_open(dir, &o, &st, NULL, 0), SL_ECONFIG);
  sl_store_opts_init(&o);
  o.zstd_level = 99;
  assert_int_equal(sl_store_env_open(dir, &o, &st, NULL, 0), SL_ECONFIG);
  /* Read-only on an empty directory: nothing there. */
  sl_store_opts_init(&o);
  o.flags = SL_STORE_RDONLY;
  assert_int_equal(sl_store_env_open(dir, &o, &st, err, sizeof(err)),
                   SL_ENOTFOUND);
  assert_null(st);
  th_cleanup(dir);
}

static void test_streams(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = th_open(dir, NULL);
  sl_store_stream_conf_t bad = {SL_STORE_PRIORITY_MAX + 1,
                                SL_STORE_POLICY_BLOCK, 0};
  sl_store_stream_stats_t ss;
  uint32_t a, b, id, ids[4];
  size_t n;

  a = th_stream(st, "plant1/temps", SL_STORE_POLICY_BLOCK, 3, 0);
  b = th_stream(st, "plant1/inference", SL_STORE_POLICY_DROP_OLDEST, 1, 0);
  assert_int_not_equal(a, b);
  /* Creating again updates settings and keeps the id. */
  assert_int_equal(
      th_stream(st, "plant1/temps", SL_STORE_POLICY_EVICT_PRIORITY, 5, 1000),
      a);
  assert_int_equal(sl_store_stream_create(st, "x", &bad, &id), SL_ECONFIG);
  assert_int_equal(sl_store_stream_create(st, "", &bad, &id), SL_ECONFIG);
  assert_int_equal(sl_store_stream_lookup(st, "plant1/inference", &id), 0);
  assert_int_equal(id, b);
  assert_int_equal(sl_store_stream_lookup(st, "nope", &id), SL_ENOTFOUND);
  assert_int_equal(sl_store_stream_list(st, ids, 4, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(ids[0], a);
  assert_int_equal(sl_store_stream_stats(st, a, &ss), 0);
  assert_string_equal(ss.name, "plant1/temps");
  assert_int_equal(ss.conf.priority, 5);
  assert_int_equal(ss.conf.policy, SL_STORE_POLICY_EVICT_PRIORITY);
  assert_int_equal(ss.conf.ttl_ns, 1000);
  assert_int_equal(ss.next_offset, 0);
  assert_int_equal(sl_store_stream_stats(st, 99, &ss), SL_ENOTFOUND);
  sl_store_env_close(st);

  /* Streams survive a reopen. */
  st = th_open(dir, NULL);
  assert_int_equal(sl_store_stream_lookup(st, "plant1/temps", &id), 0);
  assert_int_equal(id, a);
  sl_store_env_close(st);
  th_cleanup(dir);
}

static void test_batch_errors(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = th_open(dir, NULL), *st2;
  char *dir2 = th_tmpdir();
  sl_store_batch_t *b;
  sl_store_group_t *g;
  uint8_t buf[64] = {0};
  uint32_t s = th_stream(st, "s", SL_STORE_POLICY_BLOCK, 0, 0);

  assert_int_equal(sl_store_batch_new(st, 42, buf, 64, 1, 0, 0, &b),
                   SL_ENOTFOUND);
  assert_int_equal(sl_store_batch_new(st, s, buf, 64, 0, 0, 0, &b), SL_ECONFIG);
  assert_int_equal(sl_store_batch_new(st, s, buf, 64, 1, 5, 4, &b), SL_ECONFIG);
  assert_int_equal(
      sl_store_batch_new(st, s, buf, SL_STORE_BATCH_MAX + 1, 1, 0, 0, &b),
      SL_ETOOBIG);
  assert_int_equal(sl_store_batch_new(st, s, buf, 64, 1, 0, 0, &b), 0);
  assert_true(sl_store_batch_size(b) < 64 + 64 + 32);
  /* A batch from another store is refused and stays the caller's. */
  st2 = th_open(dir2, NULL);
  assert_int_equal(sl_store_group_new(st2, &g), 0);
  assert_int_equal(sl_store_group_add(g, b), SL_ECONFIG);
  sl_store_group_free(g);
  sl_store_batch_free(b);
  sl_store_batch_free(NULL);
  sl_store_group_free(NULL);
  sl_store_env_close(st2);
  sl_store_env_close(st);
  th_cleanup(dir);
  th_cleanup(dir2);
}

/* Appends across two streams in one group; offsets are per event. */
static void test_append_and_read(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = th_open(dir, NULL);
  uint32_t a = th_stream(st, "a", SL_STORE_POLICY_BLOCK, 0, 0);
  uint32_t b = th_stream(st, "b", SL_STORE_POLICY_BLOCK, 0, 0);
  sl_store_stream_stats_t ss;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint64_t off[3], seed, first;
  sl_store_group_t *g;
  uint8_t buf[3000];

  assert_int_equal(sl_store_group_new(st, &g), 0);
  for (int i = 0; i < 3; i++) {
    sl_store_batch_t *bt;
    th_payload(100 + i, buf, sizeof(buf));
    assert_int_equal(sl_store_batch_new(st, i == 1 ? b : a, buf, sizeof(buf),
                                        100, T0 + i, T0 + i + 10, &bt),
                     0);
    assert_int_equal(sl_store_group_add(g, bt), 0);
  }
  assert_int_equal(sl_store_group_commit(g, off, 3), 0);
  assert_int_equal(off[0], 0);
  assert_int_equal(off[1], 0);
  assert_int_equal(off[2], 100);
  assert_int_equal(th_append(st, a, 7, 500, 50, T0, &first), 0);
  assert_int_equal(first, 200);

  assert_int_equal(sl_store_stream_stats(st, a, &ss), 0);
  assert_int_equal(ss.first_offset, 0);
  assert_int_equal(ss.next_offset, 250);
  assert_int_equal(ss.events, 250);
  assert_int_equal(ss.batches, 3);
  assert_true(ss.bytes > 0);
  assert_true(ss.oldest_time_ns == T0);

  /* From the middle of a batch: the whole batch comes back. */
  assert_int_equal(sl_store_cursor_open(st, a, 150, SL_STORE_OFFSET_END, &cur),
                   0);
  assert_int_equal(sl_store_cursor_next(cur, &rec), 0);
  assert_int_equal(rec.status, 0);
  assert_int_equal(rec.first_offset, 100);
  assert_int_equal(rec.count, 100);
  assert_int_equal(rec.len, sizeof(buf));
  assert_int_equal(th_payload_check(rec.payload, rec.len, &seed), 0);
  assert_int_equal(seed, 102);
  assert_true(rec.min_time_ns == T0 + 2 && rec.max_time_ns == T0 + 12);
  assert_true(rec.append_time_ns > 0);
  assert_int_equal(sl_store_cursor_next(cur, &rec), 0);
  assert_int_equal(rec.first_offset, 200);
  assert_int_equal(sl_store_cursor_next(cur, &rec), SL_ENOTFOUND);
  /* Tailing: a new append shows up on the same cursor. */
  assert_int_equal(th_append(st, a, 8, 500, 5, T0, &first), 0);
  assert_int_equal(sl_store_cursor_next(cur, &rec), 0);
  assert_int_equal(rec.first_offset, 250);
  assert_int_equal(rec.count, 5);
  sl_store_cursor_close(cur);

  /* An upper bound stops before the batch at 200. */
  assert_int_equal(sl_store_cursor_open(st, a, 0, 200, &cur), 0);
  assert_int_equal(sl_store_cursor_next(cur, &rec), 0);
  assert_int_equal(rec.first_offset, 0);
  assert_int_equal(sl_store_cursor_next(cur, &rec), 0);
  assert_int_equal(rec.first_offset, 100);
  assert_int_equal(sl_store_cursor_next(cur, &rec), SL_ENOTFOUND);
  sl_store_cursor_close(cur);
  assert_int_equal(sl_store_cursor_open(st, 77, 0, 1, &cur), SL_ENOTFOUND);

  /* The first batch's event time from the headers alone: from the middle
   * of a batch, the batch holding it; past the end, none. */
  {
    int64_t t = 0;
    assert_int_equal(sl_store_first_time(st, a, 150, &t), 0);
    assert_true(t == T0 + 2);
    assert_int_equal(sl_store_first_time(st, a, 0, &t), 0);
    assert_true(t == T0);
    assert_int_equal(sl_store_first_time(st, a, 255, &t), SL_ENOTFOUND);
    assert_int_equal(sl_store_first_time(st, 77, 0, &t), SL_ENOTFOUND);
  }

  /* Data and offsets survive a reopen. */
  sl_store_env_close(st);
  st = th_open(dir, NULL);
  assert_int_equal(th_append(st, a, 9, 100, 1, T0, &first), 0);
  assert_int_equal(first, 255);
  sl_store_env_close(st);
  th_cleanup(dir);
}

/* Many batches: reading crosses several read-ahead fills. */
static void test_read_many(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = th_open(dir, NULL);
  uint32_t a = th_stream(st, "a", SL_STORE_POLICY_BLOCK, 0, 0);
  sl_store_group_t *g;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint8_t buf[200];
  uint64_t expect = 0, seed;
  int n = 0;

  assert_int_equal(sl_store_group_new(st, &g), 0);
  for (int i = 0; i < 1000; i++) {
    sl_store_batch_t *b;
    th_payload((uint64_t)i, buf, sizeof(buf));
    assert_int_equal(sl_store_batch_new(st, a, buf, sizeof(buf), 3, T0, T0, &b),
                     0);
    assert_int_equal(sl_store_group_add(g, b), 0);
  }
  assert_int_equal(sl_store_group_commit(g, NULL, 0), 0);
  assert_int_equal(sl_store_cursor_open(st, a, 0, SL_STORE_OFFSET_END, &cur),
                   0);
  while (sl_store_cursor_next(cur, &rec) == 0) {
    assert_int_equal(rec.status, 0);
    assert_int_equal(rec.first_offset, expect);
    assert_int_equal(th_payload_check(rec.payload, rec.len, &seed), 0);
    assert_int_equal(seed, (uint64_t)n);
    expect += rec.count;
    n++;
  }
  assert_int_equal(n, 1000);
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
  th_cleanup(dir);
}

typedef struct async_ctx {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int done;
  int status[64];
  uint64_t first[64];
  int gate; /* callbacks wait while gate == 1 */
} async_ctx_t;

typedef struct async_arg {
  async_ctx_t *ctx;
  int idx;
} async_arg_t;

static void on_done(void *arg, int status, const uint64_t *offsets, size_t n) {
  async_arg_t *a = arg;
  async_ctx_t *c = a->ctx;

  pthread_mutex_lock(&c->lock);
  while (c->gate)
    pthread_cond_wait(&c->cond, &c->lock);
  c->status[a->idx] = status;
  c->first[a->idx] = status == 0 && n ? offsets[0] : UINT64_MAX;
  c->done++;
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

static void test_async_and_backpressure(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_opts_t o;
  sl_store_t *st;
  async_ctx_t c = {
      PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}, {0}, 1};
  async_arg_t args[64];
  uint32_t a;
  int submitted = 0, refused = 0;
  uint8_t buf[100];

  sl_store_opts_init(&o);
  o.queue_depth = 4;
  st = th_open(dir, &o);
  a = th_stream(st, "a", SL_STORE_POLICY_BLOCK, 0, 0);
  /* The gate holds the writer in the first callback, so the queue fills
   * up: non-blocking submits then fail and keep ownership. */
  for (int i = 0; i < 12; i++) {
    sl_store_group_t *g;
    sl_store_batch_t *b;
    th_payload((uint64_t)i, buf, sizeof(buf));
    assert_int_equal(
        sl_store_batch_new(st, a, buf, sizeof(buf), 10, T0, T0, &b), 0);
    assert_int_equal(sl_store_group_new(st, &g), 0);
    assert_int_equal(sl_store_group_add(g, b), 0);
    args[submitted].ctx = &c;
    args[submitted].idx = submitted;
    int rc = sl_store_group_submit(g, 0, on_done, &args[submitted]);
    if (rc == SL_EBACKPRESSURE) {
      sl_store_group_free(g);
      refused++;
      continue;
    }
    assert_int_equal(rc, 0);
    submitted++;
  }
  assert_true(refused > 0);
  assert_true(submitted <= 4 + 1 + 4);
  pthread_mutex_lock(&c.lock);
  c.gate = 0;
  pthread_cond_broadcast(&c.cond);
  while (c.done < submitted)
    pthread_cond_wait(&c.cond, &c.lock);
  pthread_mutex_unlock(&c.lock);
  for (int i = 0; i < submitted; i++) {
    assert_int_equal(c.status[i], 0);
    assert_int_equal(c.first[i], (uint64_t)i * 10);
  }
  sl_store_env_close(st);
  th_cleanup(dir);
}

static void test_unknown_stream_fails_group(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = th_open(dir, NULL);
  uint32_t a = th_stream(st, "a", SL_STORE_POLICY_BLOCK, 0, 0);
  sl_store_group_t *g;
  uint64_t next;

  assert_int_equal(th_append(st, a, 1, 100, 10, T0, NULL), 0);
  /* A consumer offset past the end: -ERANGE, nothing applied. */
  assert_int_equal(sl_store_consumer_commit(st, "kafka", a, 11), -ERANGE);
  assert_int_equal(sl_store_consumer_get(st, "kafka", a, &next), SL_ENOTFOUND);
  assert_int_equal(sl_store_consumer_commit(st, "kafka", 9, 0), SL_ENOTFOUND);
  assert_int_equal(sl_store_group_new(st, &g), 0);
  assert_int_equal(sl_store_group_consumer_set(g, "", a, 0), SL_ECONFIG);
  sl_store_group_free(g);
  sl_store_env_close(st);
  th_cleanup(dir);
}

static void test_consumers_and_state(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = th_open(dir, NULL);
  uint32_t a = th_stream(st, "a", SL_STORE_POLICY_BLOCK, 0, 0);
  uint32_t b = th_stream(st, "b", SL_STORE_POLICY_BLOCK, 0, 0);
  sl_store_consumer_t cs[4];
  sl_store_group_t *g;
  sl_store_batch_t *bt;
  uint8_t buf[100], val[16];
  uint64_t next, off;
  size_t n, vlen;

  th_payload(1, buf, sizeof(buf));
  /* Append and commit a cursor past it in one transaction. */
  assert_int_equal(sl_store_group_new(st, &g), 0);
  assert_int_equal(sl_store_batch_new(st, a, buf, sizeof(buf), 20, T0, T0, &bt),
                   0);
  assert_int_equal(sl_store_group_add(g, bt), 0);
  assert_int_equal(sl_store_group_consumer_set(g, "kafka", a, 20), 0);
  assert_int_equal(sl_store_group_state_put(g, "win", 3, "abc", 3), 0);
  assert_int_equal(sl_store_group_state_put(g, "", 0, "abc", 3), SL_ECONFIG);
  assert_int_equal(sl_store_group_commit(g, &off, 1), 0);
  assert_int_equal(sl_store_consumer_get(st, "kafka", a, &next), 0);
  assert_int_equal(next, 20);
  assert_int_equal(sl_store_consumer_commit(st, "audit", a, 5), 0);
  assert_int_equal(sl_store_consumer_commit(st, "kafka", b, 0), 0);
  assert_int_equal(sl_store_consumer_list(st, a, cs, 4, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(cs[0].name, "audit");
  assert_int_equal(cs[0].next_offset, 5);
  assert_int_equal(sl_store_consumer_list(st, 0, cs, 1, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(sl_store_state_get(st, "win", 3, val, sizeof(val), &vlen),
                   0);
  assert_int_equal(vlen, 3);
  assert_memory_equal(val, "abc", 3);
  assert_int_equal(sl_store_state_get(st, "win", 3, val, 1, &vlen), SL_ETOOBIG);
  assert_int_equal(sl_store_state_get(st, "nope", 4, val, 16, &vlen),
                   SL_ENOTFOUND);
  /* Deleting state. */
  assert_int_equal(sl_store_group_new(st, &g), 0);
  assert_int_equal(sl_store_group_state_put(g, "win", 3, NULL, 0), 0);
  assert_int_equal(sl_store_group_commit(g, NULL, 0), 0);
  assert_int_equal(sl_store_state_get(st, "win", 3, val, 16, &vlen),
                   SL_ENOTFOUND);
  sl_store_env_close(st);
  th_cleanup(dir);
}

static void test_info_sync_and_modes(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_opts_t o;
  sl_store_info_t info;
  sl_store_t *st;
  uint32_t a;

  sl_store_opts_init(&o);
  o.sync = SL_STORE_SYNC_INTERVAL;
  o.sync_interval_ms = 20;
  st = th_open(dir, &o);
  a = th_stream(st, "a", SL_STORE_POLICY_BLOCK, 0, 0);
  assert_int_equal(th_append(st, a, 1, 1000, 10, T0, NULL), 0);
  assert_int_equal(sl_store_env_sync(st), 0);
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_int_equal(info.sync, SL_STORE_SYNC_INTERVAL);
  assert_int_equal(info.loss_window_ms, 20);
  assert_true(info.commits >= 2);
  assert_true(info.used_bytes > 0 && info.file_bytes >= info.used_bytes);
  assert_true(info.map_size > 0 && info.page_size >= 4096);
  assert_int_equal(info.format_version, 2);
  assert_int_equal(strlen(info.node_id), 32);
  assert_int_equal(info.poisoned, 0);
  sl_store_env_close(st);

  st = th_open(dir, NULL);
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_int_equal(info.sync, SL_STORE_SYNC_ALWAYS);
  assert_int_equal(info.loss_window_ms, 0);
  assert_int_equal(sl_store_env_sync(st), 0);
  sl_store_env_close(st);
  th_cleanup(dir);
}

/* A second handle or process on the same directory gets SL_ELOCKED; a
 * read-only open works while the writer holds the lock. */
static void test_lock(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = th_open(dir, NULL), *st2 = NULL, *ro;
  sl_store_opts_t o;
  char err[256];
  uint32_t a = th_stream(st, "a", SL_STORE_POLICY_BLOCK, 0, 0), id;
  sl_store_rec_t rec;
  sl_store_cursor_t *cur;
  pid_t pid;
  int status;

  assert_int_equal(th_append(st, a, 3, 300, 3, T0, NULL), 0);
  sl_store_opts_init(&o);
  assert_int_equal(sl_store_env_open(dir, &o, &st2, err, sizeof(err)),
                   SL_ELOCKED);
  assert_non_null(strstr(err, "in use by another process"));
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    sl_store_t *x = NULL;
    int rc = sl_store_env_open(dir, &o, &x, NULL, 0);
    _exit(rc == SL_ELOCKED ? 0 : 1);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  /* LMDB must not be opened twice in one process: read from a child. */
  th_stream(st, "late", SL_STORE_POLICY_BLOCK, 0, 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int bad = 0;
    o.flags = SL_STORE_RDONLY;
    bad |= sl_store_env_open(dir, &o, &ro, err, sizeof(err)) != 0;
    if (bad)
      _exit(10);
    bad |= sl_store_stream_lookup(ro, "a", &id) != 0;
    bad |= sl_store_cursor_open(ro, id, 0, SL_STORE_OFFSET_END, &cur) != 0;
    bad |= sl_store_cursor_next(cur, &rec) != 0 || rec.count != 3;
    sl_store_cursor_close(cur);
    bad |= sl_store_stream_lookup(ro, "late", &id) != 0;
    bad |= sl_store_group_new(ro, (sl_store_group_t **)&cur) != -EROFS;
    bad |= sl_store_env_sync(ro) != -EROFS;
    sl_store_env_close(ro);
    _exit(bad ? 11 : 0);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  sl_store_env_close(st);
  /* Released on close. */
  o.flags = 0;
  assert_int_equal(sl_store_env_open(dir, &o, &st2, err, sizeof(err)), 0);
  sl_store_env_close(st2);
  th_cleanup(dir);
}

static void test_poisoned(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = th_open(dir, NULL);
  uint32_t a = th_stream(st, "a", SL_STORE_POLICY_BLOCK, 0, 0), id;
  sl_store_info_t info;
  sl_store_group_t *g;
  sl_store_batch_t *b;
  sl_store_cursor_t *cur;

  /* What MDB_PANIC does, without corrupting LMDB to get one. */
  store__poison(st);
  assert_int_equal(sl_store_group_new(st, &g), SL_EPOISONED);
  assert_int_equal(sl_store_batch_new(st, a, "x", 1, 1, 0, 0, &b),
                   SL_EPOISONED);
  assert_int_equal(sl_store_cursor_open(st, a, 0, 1, &cur), SL_EPOISONED);
  assert_int_equal(sl_store_stream_lookup(st, "a", &id), SL_EPOISONED);
  assert_int_equal(sl_store_env_sync(st), SL_EPOISONED);
  assert_int_equal(sl_store_env_info(st, &info), SL_EPOISONED);
  assert_int_equal(info.poisoned, 1);
  assert_int_equal(sl_store_consumer_commit(st, "c", a, 0), SL_EPOISONED);
  sl_store_env_close(st);
  th_cleanup(dir);
}

/* A dictionary trained from the stream's own data is used by new batches
 * and named in their header; older batches stay readable. */
static void test_dictionary(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = th_open(dir, NULL);
  uint32_t a = th_stream(st, "a", SL_STORE_POLICY_BLOCK, 0, 0), did;
  sl_store_stream_stats_t ss;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint64_t seed;
  int with = 0, without = 0;

  assert_int_equal(sl_store_dict_train(st, a, 4096, &did), SL_ECONFIG);
  assert_int_equal(sl_store_dict_train(st, 9, 4096, &did), SL_ENOTFOUND);
  for (int i = 0; i < 300; i++)
    assert_int_equal(th_append(st, a, (uint64_t)i, 1500, 5, T0, NULL), 0);
  assert_int_equal(sl_store_dict_train(st, a, 8192, &did), 0);
  assert_int_equal(did, 1);
  assert_int_equal(sl_store_stream_stats(st, a, &ss), 0);
  assert_int_equal(ss.dict_id, 1);
  for (int i = 300; i < 310; i++)
    assert_int_equal(th_append(st, a, (uint64_t)i, 1500, 5, T0, NULL), 0);
  sl_store_env_close(st);
  st = th_open(dir, NULL); /* the dictionary comes back from disk */
  assert_int_equal(sl_store_cursor_open(st, a, 0, SL_STORE_OFFSET_END, &cur),
                   0);
  while (sl_store_cursor_next(cur, &rec) == 0) {
    assert_int_equal(rec.status, 0);
    assert_int_equal(th_payload_check(rec.payload, rec.len, &seed), 0);
    assert_int_equal(seed, rec.first_offset / 5);
    with += rec.dict_id == 1;
    without += rec.dict_id == 0;
  }
  sl_store_cursor_close(cur);
  assert_int_equal(with, 10);
  assert_int_equal(without, 300);
  sl_store_env_close(st);
  th_cleanup(dir);
}

static void test_reason_names(void **state) {
  (void)state;
  assert_string_equal(sl_store_reason_name(SL_STORE_REASON_DROP_OLDEST),
                      "drop_oldest");
  assert_string_equal(sl_store_reason_name(SL_STORE_REASON_TTL), "ttl");
  assert_string_equal(sl_store_reason_name(SL_STORE_REASON_COUNT), "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_opts_and_open_errors),
      cmocka_unit_test(test_streams),
      cmocka_unit_test(test_batch_errors),
      cmocka_unit_test(test_append_and_read),
      cmocka_unit_test(test_read_many),
      cmocka_unit_test(test_async_and_backpressure),
      cmocka_unit_test(test_unknown_stream_fails_group),
      cmocka_unit_test(test_consumers_and_state),
      cmocka_unit_test(test_info_sync_and_modes),
      cmocka_unit_test(test_lock),
      cmocka_unit_test(test_poisoned),
      cmocka_unit_test(test_dictionary),
      cmocka_unit_test(test_reason_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
