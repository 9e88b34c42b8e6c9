/*
 * Encryption at rest (issue 14): batches sealed with AES-256-GCM read back
 * intact and are not in clear on disk; a wrong or missing key is refused
 * with SL_EKEY (never garbage, never quarantine); rotation keeps old
 * batches readable; a tampered ciphertext or header fails its tag even
 * with a recomputed checksum; unsafe key files are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "store/store.h"
#include "tests/store/helpers.h"

static const int64_t T0 = 1750000000ll * 1000000000ll;

#define K1 "1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K1_WRONG                                                               \
  "1:ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K2 "2:2021222324252627282930313233343536373839404142434445464748494a4b"
#define MARKER "PLAINTEXT-MARKER-visible-if-not-sealed"

static char *path_in(const char *dir, const char *name) {
  char *p;
  assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
  return p;
}

/* Writes text to dir/keys with mode; returns the owned path. */
static char *key_file(const char *dir, const char *text, mode_t mode) {
  char *p = path_in(dir, "keys");
  int fd;

  unlink(p);
  fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  assert_int_equal(fchmod(fd, mode), 0);
  close(fd);
  return p;
}

static int open_keys(const char *dir, const char *kf, unsigned flags,
                     sl_store_t **stp, char *err, size_t errlen) {
  sl_store_opts_t o;

  sl_store_opts_init(&o);
  o.flags = flags;
  o.key_file = kf;
  return sl_store_env_open(dir, &o, stp, err, errlen);
}

static sl_store_t *must_open(const char *dir, const char *kf) {
  char err[512];
  sl_store_t *st = NULL;
  int rc = open_keys(dir, kf, 0, &st, err, sizeof(err));

  if (rc)
    fail_msg("open: %s (%s)", sl_strerror(rc), err);
  return st;
}

/* Batch i's payload: even ones compressible (MARKER repeated), odd ones
 * not; the first 8 bytes are i. */
static void make_buf(uint64_t i, uint8_t buf[2000]) {
  th_payload(i, buf, 2000);
  if (i % 2 == 0)
    for (size_t j = 16; j + sizeof(MARKER) < 2000; j += sizeof(MARKER))
      memcpy(buf + j, MARKER, sizeof(MARKER) - 1);
}

/* Appends batches from..from+n-1, one commit each. */
static void append(sl_store_t *st, uint32_t s, int from, int n) {
  for (int i = from; i < from + n; i++) {
    uint8_t buf[2000];
    sl_store_batch_t *b;
    sl_store_group_t *g;
    make_buf((uint64_t)i, buf);
    assert_int_equal(
        sl_store_batch_new(st, s, buf, sizeof(buf), 10, T0 + i, T0 + i, &b), 0);
    assert_int_equal(sl_store_group_new(st, &g), 0);
    assert_int_equal(sl_store_group_add(g, b), 0);
    assert_int_equal(sl_store_group_commit(g, NULL, 0), 0);
  }
}

/* Reads stream "s" from offset 0: returns batches read; *last_rc the
 * cursor's final code; every record must be intact. */
static int read_all(sl_store_t *st, int *last_rc, int *corrupt) {
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint32_t s;
  int n = 0, rc;

  *corrupt = 0;
  assert_int_equal(sl_store_stream_lookup(st, "s", &s), 0);
  assert_int_equal(sl_store_cursor_open(st, s, 0, SL_STORE_OFFSET_END, &cur),
                   0);
  while ((rc = sl_store_cursor_next(cur, &rec)) == 0) {
    uint64_t seed = rec.first_offset / 10;
    uint8_t want[2000];
    if (rec.status == SL_ECORRUPT) {
      (*corrupt)++;
      continue;
    }
    assert_int_equal(rec.status, 0);
    assert_int_equal(rec.len, 2000);
    assert_int_equal(seed, (uint64_t)n + (uint64_t)*corrupt);
    make_buf(seed, want);
    assert_memory_equal(rec.payload, want, 2000);
    n++;
  }
  *last_rc = rc;
  sl_store_cursor_close(cur);
  return n;
}

static int file_has(const char *dir, const char *needle) {
  char *p = path_in(dir, "data.mdb");
  FILE *f = fopen(p, "rb");
  size_t len = strlen(needle), n;
  char *m;
  int found = 0;

  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  n = (size_t)ftell(f);
  rewind(f);
  m = malloc(n);
  assert_int_equal(fread(m, 1, n, f), n);
  fclose(f);
  for (size_t i = 0; i + len <= n && !found; i++)
    found = memcmp(m + i, needle, len) == 0;
  free(m);
  free(p);
  return found;
}

static void test_roundtrip(void **state) {
  (void)state;
  char *dir = th_tmpdir(), *kf = key_file(dir, "# test key\n" K1 "\n", 0600);
  sl_store_info_t info;
  sl_store_t *st;
  int rc, bad;

  st = must_open(dir, kf);
  sl_store_env_info(st, &info);
  assert_int_equal(info.seal_key_id, 1);
  append(st, th_stream(st, "s", SL_STORE_POLICY_BLOCK, 0, 0), 0, 6);
  assert_int_equal(read_all(st, &rc, &bad), 6);
  assert_int_equal(rc, SL_ENOTFOUND);
  assert_int_equal(bad, 0);
  {
    /* A dictionary (event samples, stored in clear) is refused. */
    uint32_t s, did;
    assert_int_equal(sl_store_stream_lookup(st, "s", &s), 0);
    assert_int_equal(sl_store_dict_train(st, s, 4096, &did), SL_ECONFIG);
  }
  sl_store_env_close(st);
  assert_false(file_has(dir, MARKER));
  /* Read-only with the key, as `sluice store verify --key-file` does. */
  assert_int_equal(open_keys(dir, kf, SL_STORE_RDONLY, &st, NULL, 0), 0);
  assert_int_equal(read_all(st, &rc, &bad), 6);
  assert_int_equal(rc, SL_ENOTFOUND);
  sl_store_env_close(st);
  free(kf);
  th_cleanup(dir);
}

/* The keys may come from the environment instead. */
static void test_env_keys(void **state) {
  (void)state;
  char *dir = th_tmpdir(), err[512];
  sl_store_opts_t o;
  sl_store_t *st;
  int rc, bad;

  sl_store_opts_init(&o);
  o.key_env = "SL_TEST_STORE_KEYS";
  unsetenv("SL_TEST_STORE_KEYS");
  assert_int_equal(sl_store_env_open(dir, &o, &st, err, sizeof(err)), SL_EKEY);
  assert_non_null(strstr(err, "not set"));
  setenv("SL_TEST_STORE_KEYS", K1 "," K2, 1);
  assert_int_equal(sl_store_env_open(dir, &o, &st, err, sizeof(err)), 0);
  append(st, th_stream(st, "s", SL_STORE_POLICY_BLOCK, 0, 0), 0, 2);
  assert_int_equal(read_all(st, &rc, &bad), 2);
  sl_store_env_close(st);
  assert_false(file_has(dir, MARKER));
  unsetenv("SL_TEST_STORE_KEYS");
  th_cleanup(dir);
}

static void test_wrong_or_missing_key(void **state) {
  (void)state;
  char *dir = th_tmpdir(), *kf = key_file(dir, K1, 0600), err[512];
  sl_store_info_t info;
  sl_store_t *st;
  int rc, bad;

  st = must_open(dir, kf);
  append(st, th_stream(st, "s", SL_STORE_POLICY_BLOCK, 0, 0), 0, 4);
  sl_store_env_close(st);

  /* Same id, other bytes: refused at open, by the check value. */
  free(kf);
  kf = key_file(dir, K1_WRONG, 0600);
  assert_int_equal(open_keys(dir, kf, 0, &st, err, sizeof(err)), SL_EKEY);
  assert_non_null(strstr(err, "key id 1 is not the key"));
  assert_null(strstr(err, "ff0102")); /* key bytes never printed */
  assert_int_equal(open_keys(dir, kf, SL_STORE_RDONLY, &st, err, sizeof(err)),
                   SL_EKEY);
  /* No key configured: the daemon refuses, naming the options. */
  assert_int_equal(open_keys(dir, NULL, 0, &st, err, sizeof(err)), SL_EKEY);
  assert_non_null(strstr(err, "store.encryption_key_file"));
  /* Only a newer key: key 1 is still needed. */
  free(kf);
  kf = key_file(dir, K2, 0600);
  assert_int_equal(open_keys(dir, kf, 0, &st, err, sizeof(err)), SL_EKEY);
  assert_non_null(strstr(err, "key id 1"));

  /* A read-only tool without keys opens, but a sealed batch is an error,
   * not garbage and not a corrupt record. */
  assert_int_equal(open_keys(dir, NULL, SL_STORE_RDONLY, &st, err, sizeof(err)),
                   0);
  assert_int_equal(read_all(st, &rc, &bad), 0);
  assert_int_equal(rc, SL_EKEY);
  assert_int_equal(bad, 0);
  sl_store_env_info(st, &info);
  assert_int_equal(info.quarantined, 0);
  assert_int_equal(info.corrupt_seen, 0);
  sl_store_env_close(st);

  /* Nothing was lost: the right key reads all four. */
  free(kf);
  kf = key_file(dir, K1, 0600);
  st = must_open(dir, kf);
  assert_int_equal(read_all(st, &rc, &bad), 4);
  assert_int_equal(bad, 0);
  sl_store_env_close(st);
  free(kf);
  th_cleanup(dir);
}

/* Plain batches, then key 1, then keys 1+2: all readable; new batches
 * sealed with 2. */
static void test_rotation(void **state) {
  (void)state;
  char *dir = th_tmpdir(), *kf;
  sl_store_info_t info;
  sl_store_t *st;
  uint32_t s;
  int rc, bad;

  st = th_open(dir, NULL);
  s = th_stream(st, "s", SL_STORE_POLICY_BLOCK, 0, 0);
  append(st, s, 0, 2);
  sl_store_env_close(st);
  assert_true(file_has(dir, MARKER)); /* plain, as before */

  kf = key_file(dir, K1, 0600);
  st = must_open(dir, kf);
  append(st, s, 2, 2);
  sl_store_env_close(st);

  free(kf);
  kf = key_file(dir, K1 "\n" K2 "\n", 0600);
  st = must_open(dir, kf);
  sl_store_env_info(st, &info);
  assert_int_equal(info.seal_key_id, 2);
  append(st, s, 4, 2);
  assert_int_equal(read_all(st, &rc, &bad), 6);
  assert_int_equal(rc, SL_ENOTFOUND);
  assert_int_equal(bad, 0);
  sl_store_env_close(st);

  /* Key 2 alone opens read-only: the plain batches and key 2's batches
   * read, key 1's stop the cursor with SL_EKEY. */
  free(kf);
  kf = key_file(dir, K2, 0600);
  assert_int_equal(open_keys(dir, kf, SL_STORE_RDONLY, &st, NULL, 0), 0);
  assert_int_equal(read_all(st, &rc, &bad), 2);
  assert_int_equal(rc, SL_EKEY);
  sl_store_env_close(st);
  free(kf);
  th_cleanup(dir);
}

/* Header bytes of a batch of version v: 56 (v1, v2) or 64 (v3). */
#define HDR_LEN(v) ((v) >= 3 ? 64u : 56u)

/* Finds the nth sealed batch value in data.mdb: offset and length. */
static long find_sealed(const uint8_t *m, size_t n, int nth, size_t *len) {
  int seen = 0;
  for (size_t i = 0; i + 80 < n; i++) {
    if (memcmp(m + i, "SLB!", 4) == 0 && m[i + 4] >= 2 && m[i + 4] <= 3 &&
        (m[i + 7] & 1) && seen++ == nth) {
      uint32_t pay = (uint32_t)m[i + 52] << 24 | (uint32_t)m[i + 53] << 16 |
                     (uint32_t)m[i + 54] << 8 | m[i + 55];
      *len = HDR_LEN(m[i + 4]) + 16 + pay + 16 + 8;
      return (long)i;
    }
  }
  return -1;
}

/* Changes one byte at off within the nth sealed batch and recomputes its
 * xxh3 checksum, so that only the GCM tag can notice. */
static void tamper(const char *dir, int nth, size_t off) {
  char *p = path_in(dir, "data.mdb");
  int fd = open(p, O_RDWR);
  struct stat sb;
  uint8_t *m;
  size_t len = 0;
  long at;
  uint64_t sum;

  assert_true(fd >= 0);
  assert_int_equal(fstat(fd, &sb), 0);
  m = malloc((size_t)sb.st_size);
  assert_int_equal(pread(fd, m, (size_t)sb.st_size, 0), sb.st_size);
  at = find_sealed(m, (size_t)sb.st_size, nth, &len);
  assert_true(at >= 0);
  m[at + (long)off] ^= 0x01;
  sum = XXH3_64bits(m + at, len - 8);
  for (int i = 0; i < 8; i++)
    m[at + (long)len - 8 + i] = (uint8_t)(sum >> (56 - 8 * i));
  assert_int_equal(pwrite(fd, m + at, len, at), (ssize_t)len);
  close(fd);
  free(m);
  free(p);
}

static void test_tamper_detected(void **state) {
  (void)state;
  char *dir = th_tmpdir(), *kf = key_file(dir, K1, 0600);
  sl_store_t *st;
  int rc, bad;

  sl_store_group_t *g;
  uint32_t s;

  /* One commit: no stale page copies of the batches in the file. */
  st = must_open(dir, kf);
  s = th_stream(st, "s", SL_STORE_POLICY_BLOCK, 0, 0);
  assert_int_equal(sl_store_group_new(st, &g), 0);
  for (int i = 0; i < 4; i++) {
    uint8_t buf[2000];
    sl_store_batch_t *b;
    make_buf((uint64_t)i, buf);
    assert_int_equal(
        sl_store_batch_new(st, s, buf, sizeof(buf), 10, T0 + i, T0 + i, &b), 0);
    assert_int_equal(sl_store_group_add(g, b), 0);
  }
  assert_int_equal(sl_store_group_commit(g, NULL, 0), 0);
  sl_store_env_close(st);
  tamper(dir, 1, HDR_LEN(3) + 16 + 5); /* ciphertext (v3 header) */
  tamper(dir, 2, 24);                  /* header: min time (authenticated) */
  assert_int_equal(open_keys(dir, kf, SL_STORE_RDONLY, &st, NULL, 0), 0);
  assert_int_equal(read_all(st, &rc, &bad), 2);
  assert_int_equal(bad, 2);
  assert_int_equal(rc, SL_ENOTFOUND);
  sl_store_env_close(st);
  free(kf);
  th_cleanup(dir);
}

static void test_key_file_refused(void **state) {
  (void)state;
  char *dir = th_tmpdir(), *kf, err[512], link[600];
  sl_store_t *st;

  static const mode_t loose[] = {0640, 0604, 0660, 0602, 0620};
  for (size_t i = 0; i < sizeof(loose) / sizeof(loose[0]); i++) {
    kf = key_file(dir, K1, loose[i]);
    assert_int_equal(open_keys(dir, kf, 0, &st, err, sizeof(err)), SL_EKEY);
    assert_non_null(strstr(err, "mode"));
    free(kf);
  }
  kf = key_file(dir, K1, 0400);
  assert_int_equal(open_keys(dir, kf, 0, &st, err, sizeof(err)), 0);
  sl_store_env_close(st);
  /* A symlink is not followed. */
  snprintf(link, sizeof(link), "%s/keylink", dir);
  assert_int_equal(symlink(kf, link), 0);
  assert_int_equal(open_keys(dir, link, 0, &st, err, sizeof(err)), SL_EKEY);
  free(kf);
  /* Owned by someone else (needs root to arrange). */
  if (geteuid() == 0) {
    kf = key_file(dir, K1, 0600);
    assert_int_equal(chown(kf, 65534, 65534), 0);
    assert_int_equal(open_keys(dir, kf, 0, &st, err, sizeof(err)), SL_EKEY);
    assert_non_null(strstr(err, "owned"));
    free(kf);
  }
  th_cleanup(dir);
}

static void test_key_file_malformed(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",                   /* no key */
      "# only a comment\n", /* no key */
      "1:0001",             /* short */
      "0:" K1 "\n",         /* id 0 */
      "x:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
      "1:zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
      K1 "\n" K1 "\n", /* duplicate id */
      "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
  };
  char *dir = th_tmpdir(), err[512];
  sl_store_t *st;

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char *kf = key_file(dir, bad[i], 0600);
    assert_int_equal(open_keys(dir, kf, 0, &st, err, sizeof(err)), SL_EKEY);
    assert_null(strstr(err, "0405060708")); /* key bytes never printed */
    free(kf);
  }
  th_cleanup(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_env_keys),
      cmocka_unit_test(test_wrong_or_missing_key),
      cmocka_unit_test(test_rotation),
      cmocka_unit_test(test_tamper_detected),
      cmocka_unit_test(test_key_file_refused),
      cmocka_unit_test(test_key_file_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
