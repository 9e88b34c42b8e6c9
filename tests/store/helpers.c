#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/store/helpers.h"

char *th_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  char *dir;

  if (!base || !*base)
    base = "/tmp";
  assert_true(asprintf(&dir, "%s/sl_store_test.XXXXXX", base) > 0);
  assert_non_null(mkdtemp(dir));
  return dir;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

void th_cleanup(char *dir) {
  if (!dir)
    return;
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(dir);
}

sl_store_t *th_open(const char *dir, const sl_store_opts_t *opts) {
  sl_store_opts_t o;
  sl_store_t *st = NULL;
  char err[256];
  int rc;

  if (!opts) {
    sl_store_opts_init(&o);
    opts = &o;
  }
  rc = sl_store_env_open(dir, opts, &st, err, sizeof(err));
  if (rc)
    fail_msg("open %s: %s (%s)", dir, sl_strerror(rc), err);
  return st;
}

uint32_t th_stream(sl_store_t *st, const char *name, sl_store_policy_t pol,
                   uint8_t prio, int64_t ttl_ns) {
  sl_store_stream_conf_t conf = {prio, pol, ttl_ns};
  uint32_t id = 0;

  assert_int_equal(sl_store_stream_create(st, name, &conf, &id), 0);
  assert_true(id > 0);
  return id;
}

static uint64_t mix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Layout: seed (8), len (8), then text-like bytes from the seed: half
 * repeated words (compressible), half noise. */
void th_payload(uint64_t seed, uint8_t *buf, size_t len) {
  uint64_t x = seed;

  memcpy(buf, &seed, 8);
  uint64_t l = len;
  memcpy(buf + 8, &l, 8);
  for (size_t i = 16; i < len; i++) {
    uint64_t r = mix(&x);
    buf[i] = (r & 1) ? (uint8_t)("sensor/temp/"[i % 12]) : (uint8_t)(r >> 8);
  }
}

int th_payload_check(const void *p, size_t len, uint64_t *seed) {
  uint8_t *want;
  uint64_t l;
  int rc;

  if (len < 16)
    return -1;
  memcpy(seed, p, 8);
  memcpy(&l, (const uint8_t *)p + 8, 8);
  if (l != len)
    return -1;
  want = malloc(len);
  th_payload(*seed, want, len);
  rc = memcmp(want, p, len) ? -1 : 0;
  free(want);
  return rc;
}

int th_append(sl_store_t *st, uint32_t stream, uint64_t seed, size_t len,
              uint32_t count, int64_t t, uint64_t *first) {
  uint8_t *buf = malloc(len);
  sl_store_batch_t *b;
  sl_store_group_t *g;
  uint64_t off = 0;
  int rc;

  th_payload(seed, buf, len);
  rc = sl_store_batch_new(st, stream, buf, len, count, t, t, &b);
  free(buf);
  if (rc)
    return rc;
  if ((rc = sl_store_group_new(st, &g))) {
    sl_store_batch_free(b);
    return rc;
  }
  assert_int_equal(sl_store_group_add(g, b), 0);
  rc = sl_store_group_commit(g, &off, 1);
  if (first)
    *first = off;
  return rc;
}

int th_wait(int (*cond)(void *), void *arg, int ms) {
  struct timespec ts = {0, 2 * 1000 * 1000};

  for (int waited = 0; waited < ms; waited += 2) {
    if (cond(arg))
      return 1;
    nanosleep(&ts, NULL);
  }
  return cond(arg);
}
