/*
 * Disk full: the store lives on a small tmpfs (mounted by the test, which
 * needs root; exit 77 when mounting is not allowed). Commits that hit
 * ENOSPC fail their completions with -ENOSPC and nothing else; once space
 * returns, appends succeed again and all committed data is intact.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/store/helpers.h"

static const int64_t T0 = 1750000000ll * 1000000000ll;
static char *mnt;

static void test_enospc_and_recovery(void **state) {
  (void)state;
  char store_dir[4200], filler[4200];
  sl_store_opts_t o;
  sl_store_info_t info;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  sl_store_t *st;
  uint64_t firsts[512], seed;
  int ok = 0, rc = 0, fd;
  uint32_t s;
  uint8_t *junk = calloc(1, 1 << 20);

  snprintf(store_dir, sizeof(store_dir), "%s/store", mnt);
  snprintf(filler, sizeof(filler), "%s/filler", mnt);
  /* Take most of the 4 MiB file system with a filler file. */
  fd = open(filler, O_WRONLY | O_CREAT, 0600);
  assert_true(fd >= 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(write(fd, junk, 1 << 20), 1 << 20);
  close(fd);
  free(junk);

  sl_store_opts_init(&o);
  o.budget_bytes = 64u << 20; /* the disk fills long before the budget */
  o.map_size = 64u << 20;
  st = th_open(store_dir, &o);
  s = th_stream(st, "s", SL_STORE_POLICY_BLOCK, 0, 0);
  for (ok = 0; ok < 512; ok++) {
    rc = th_append(st, s, (uint64_t)ok, 8000, 10, T0, &firsts[ok]);
    if (rc)
      break;
  }
  assert_int_equal(rc, -ENOSPC);
  assert_true(ok > 0);
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_int_equal(info.last_error, -ENOSPC);
  assert_int_equal(info.poisoned, 0);
  /* Still full: fails again, cleanly. */
  assert_int_equal(th_append(st, s, 9999, 8000, 10, T0, NULL), -ENOSPC);

  /* Space returns: appends go through again, offsets continue. */
  assert_int_equal(unlink(filler), 0);
  assert_int_equal(th_append(st, s, (uint64_t)ok, 8000, 10, T0, &firsts[ok]),
                   0);
  assert_int_equal(firsts[ok], (uint64_t)ok * 10);
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_int_equal(info.last_error, 0);
  sl_store_env_close(st);

  /* Everything committed is intact after a reopen. */
  st = th_open(store_dir, &o);
  assert_int_equal(sl_store_cursor_open(st, s, 0, SL_STORE_OFFSET_END, &cur),
                   0);
  for (int i = 0; i <= ok; i++) {
    assert_int_equal(sl_store_cursor_next(cur, &rec), 0);
    assert_int_equal(rec.status, 0);
    assert_int_equal(rec.first_offset, firsts[i]);
    assert_int_equal(th_payload_check(rec.payload, rec.len, &seed), 0);
    assert_int_equal(seed, (uint64_t)i);
  }
  assert_int_equal(sl_store_cursor_next(cur, &rec), SL_ENOTFOUND);
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_enospc_and_recovery),
  };
  int rc;

  mnt = th_tmpdir();
  if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0) {
    fprintf(stderr, "cannot mount tmpfs (%s): skipped\n", strerror(errno));
    th_cleanup(mnt);
    return 77;
  }
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  umount2(mnt, MNT_DETACH);
  th_cleanup(mnt);
  return rc;
}
