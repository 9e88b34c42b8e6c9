/*
 * Corrupt stores: bit flips inside a batch are found by the checksum,
 * quarantined, counted and recorded as a gap while the store keeps
 * serving; truncated, zeroed, garbage, foreign and newer-format files are
 * refused at open with a clear error, never a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"
#include "tests/store/helpers.h"

static const int64_t T0 = 1750000000ll * 1000000000ll;

static char *data_path(const char *dir) {
  char *p;
  assert_true(asprintf(&p, "%s/data.mdb", dir) > 0);
  return p;
}

/* Ten batches of incompressible payload in one commit (no stale copies). */
static void make_store(const char *dir, uint32_t *s) {
  sl_store_t *st = th_open(dir, NULL);
  sl_store_group_t *g;
  uint8_t buf[3000];

  *s = th_stream(st, "s", SL_STORE_POLICY_BLOCK, 0, 0);
  assert_int_equal(sl_store_group_new(st, &g), 0);
  for (int i = 0; i < 10; i++) {
    sl_store_batch_t *b;
    for (size_t j = 0; j < sizeof(buf); j++)
      buf[j] = (uint8_t)((i * 7919 + j * 104729) ^ (j >> 3) * 31);
    th_payload((uint64_t)i, buf, 16 + 200);
    assert_int_equal(
        sl_store_batch_new(st, *s, buf, sizeof(buf), 10, T0, T0, &b), 0);
    assert_int_equal(sl_store_group_add(g, b), 0);
  }
  assert_int_equal(sl_store_group_commit(g, NULL, 0), 0);
  sl_store_env_close(st);
}

/* Flips one byte 100 bytes after the nth batch magic in data.mdb. */
static void flip_in_batch(const char *dir, int nth) {
  char *path = data_path(dir);
  int fd = open(path, O_RDWR);
  struct stat sb;
  uint8_t *m;
  int seen = 0;

  assert_true(fd >= 0);
  assert_int_equal(fstat(fd, &sb), 0);
  m = malloc((size_t)sb.st_size);
  assert_int_equal(pread(fd, m, (size_t)sb.st_size, 0), sb.st_size);
  for (off_t i = 0; i + 4 < sb.st_size; i++) {
    if (memcmp(m + i, "SLB!", 4) == 0 && seen++ == nth) {
      uint8_t c = m[i + 100] ^ 0x10;
      assert_int_equal(pwrite(fd, &c, 1, i + 100), 1);
      break;
    }
  }
  assert_true(seen > nth);
  free(m);
  close(fd);
  free(path);
}

typedef struct qwait {
  sl_store_t *st;
} qwait_t;

static int quarantined(void *arg) {
  sl_store_info_t info;
  return sl_store_env_info(((qwait_t *)arg)->st, &info) == 0 &&
         info.quarantined == 1;
}

static void test_bitflip_quarantine(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_stream_stats_t ss;
  sl_store_cursor_t *cur;
  sl_store_info_t info;
  sl_store_gap_t gaps[4];
  sl_store_rec_t rec;
  sl_store_t *st;
  uint64_t bad_first = UINT64_MAX, bad_count = 0, total = 0;
  size_t n;
  uint32_t s;
  int good = 0;

  make_store(dir, &s);
  flip_in_batch(dir, 4);
  st = th_open(dir, NULL);
  assert_int_equal(sl_store_cursor_open(st, s, 0, SL_STORE_OFFSET_END, &cur),
                   0);
  while (sl_store_cursor_next(cur, &rec) == 0) {
    if (rec.status == SL_ECORRUPT) {
      assert_null(rec.payload);
      bad_first = rec.first_offset;
      bad_count = rec.count;
    } else {
      assert_int_equal(rec.status, 0);
      good++;
    }
    total += rec.count;
  }
  sl_store_cursor_close(cur);
  assert_int_equal(good, 9);
  assert_int_equal(bad_count, 10);
  assert_int_equal(total, 100);
  qwait_t w = {st};
  assert_true(th_wait(quarantined, &w, 5000));
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_true(info.corrupt_seen >= 1);
  assert_int_equal(sl_store_stream_stats(st, s, &ss), 0);
  assert_int_equal(ss.evicted_events[SL_STORE_REASON_CORRUPT], 10);
  assert_int_equal(ss.events, 90);
  assert_int_equal(ss.batches, 9);
  assert_int_equal(sl_store_gap_list(st, 0, gaps, 4, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(gaps[0].reason, SL_STORE_REASON_CORRUPT);
  assert_int_equal(gaps[0].first_offset, bad_first);
  assert_int_equal(gaps[0].count, 10);
  /* Readers now skip the hole without tripping on it again. */
  assert_int_equal(sl_store_cursor_open(st, s, bad_first, bad_first + 10, &cur),
                   0);
  assert_int_equal(sl_store_cursor_next(cur, &rec), 0);
  assert_int_equal(rec.status, SL_EEVICTED);
  assert_int_equal(rec.count, 10);
  sl_store_cursor_close(cur);
  /* And the store keeps serving appends. */
  assert_int_equal(th_append(st, s, 99, 500, 5, T0, &total), 0);
  assert_int_equal(total, 100);
  sl_store_env_close(st);
  th_cleanup(dir);
}

/* Flip the first batch: a read-only reader reports it and moves on. */
static void test_bitflip_readonly(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_opts_t o;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  sl_store_t *st;
  uint32_t s;
  int bad = 0, good = 0;

  make_store(dir, &s);
  flip_in_batch(dir, 0);
  sl_store_opts_init(&o);
  o.flags = SL_STORE_RDONLY;
  st = th_open(dir, &o);
  assert_int_equal(sl_store_cursor_open(st, s, 0, SL_STORE_OFFSET_END, &cur),
                   0);
  while (sl_store_cursor_next(cur, &rec) == 0) {
    bad += rec.status == SL_ECORRUPT;
    good += rec.status == 0;
  }
  assert_int_equal(bad, 1);
  assert_int_equal(good, 9);
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
  th_cleanup(dir);
}

static int open_rc(const char *dir, char *err, size_t errlen) {
  sl_store_opts_t o;
  sl_store_t *st = NULL;
  int rc;

  sl_store_opts_init(&o);
  rc = sl_store_env_open(dir, &o, &st, err, errlen);
  if (rc == 0)
    sl_store_env_close(st);
  return rc;
}

static void test_truncated(void **state) {
  (void)state;
  char *dir = th_tmpdir(), *path = data_path(dir);
  struct stat sb;
  char err[256];
  uint32_t s;

  make_store(dir, &s);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(truncate(path, sb.st_size / 2), 0);
  assert_int_equal(open_rc(dir, err, sizeof(err)), SL_ECORRUPT);
  assert_non_null(strstr(err, "truncated"));
  free(path);
  th_cleanup(dir);
}

static void fill_file(const char *path, int garbage, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
  uint8_t *b = calloc(1, len);

  assert_true(fd >= 0);
  for (size_t i = 0; garbage && i < len; i++)
    b[i] = (uint8_t)(i * 2654435761u >> 13);
  assert_int_equal(write(fd, b, len), (ssize_t)len);
  close(fd);
  free(b);
}

static void test_zeroed_and_garbage(void **state) {
  (void)state;
  char *dir = th_tmpdir(), *path = data_path(dir);
  char err[256];
  uint32_t s;

  make_store(dir, &s);
  fill_file(path, 0, 65536);
  assert_int_equal(open_rc(dir, err, sizeof(err)), SL_ECORRUPT);
  assert_non_null(strstr(err, "not an LMDB file"));
  fill_file(path, 1, 65536);
  assert_int_equal(open_rc(dir, err, sizeof(err)), SL_ECORRUPT);
  fill_file(path, 0, 10);
  assert_int_equal(open_rc(dir, err, sizeof(err)), SL_ECORRUPT);
  free(path);
  th_cleanup(dir);
}

/* A valid LMDB environment that is not ours; then a newer format. */
static void test_foreign_and_version(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_val k = {3, "foo"}, v = {3, "bar"};
  uint8_t ver[4] = {0, 0, 0, 9};
  char err[256];
  uint32_t s;

  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_open(env, dir, 0, 0640), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
  assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  assert_int_equal(open_rc(dir, err, sizeof(err)), SL_ECORRUPT);
  assert_non_null(strstr(err, "foreign"));
  th_cleanup(dir);

  dir = th_tmpdir();
  make_store(dir, &s);
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
  assert_int_equal(mdb_env_open(env, dir, 0, 0640), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
  k.mv_size = 6;
  k.mv_data = "format";
  v.mv_size = 4;
  v.mv_data = ver;
  assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  assert_int_equal(open_rc(dir, err, sizeof(err)), SL_EVERSION);
  assert_non_null(strstr(err, "version 9"));
  th_cleanup(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bitflip_quarantine),
      cmocka_unit_test(test_bitflip_readonly),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_zeroed_and_garbage),
      cmocka_unit_test(test_foreign_and_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
