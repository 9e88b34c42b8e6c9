/*
 * Issue 26, item 1: wall clock steps never cost data. TTL ages batches by
 * the store clock (boot clock time, kept across restarts), so a wall clock
 * step forward expires nothing early and a step back does not stop expiry;
 * every step is counted in sl_store_env_info().clock, while running and
 * while stopped. The clocks are injected (sl_store_opts_t.clock_wall and
 * clock_boot): no libfaketime, fully deterministic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"
#include "store/store.h"

#define SEC 1000000000ll
#define HOUR (3600ll * SEC)
#define DAY (24ll * HOUR)
/* 2026-12-01T00:00:00Z: a sane wall clock to start from. */
#define T0 (1796083200ll * SEC)

typedef struct fake {
  _Atomic int64_t wall;
  _Atomic int64_t boot;
} fake_t;

static int64_t fake_wall(void *arg) {
  return atomic_load(&((fake_t *)arg)->wall);
}

static int64_t fake_boot(void *arg) {
  return atomic_load(&((fake_t *)arg)->boot);
}

/* Both clocks move together: real time passing. */
static void pass(fake_t *f, int64_t ns) {
  atomic_fetch_add(&f->boot, ns);
  atomic_fetch_add(&f->wall, ns);
}

static sl_store_t *open_fake(const char *dir, fake_t *f) {
  sl_store_opts_t o;

  sl_store_opts_init(&o);
  o.maintenance_ms = 5;
  o.clock_wall = fake_wall;
  o.clock_boot = fake_boot;
  o.clock_arg = f;
  return th_open(dir, &o);
}

typedef struct cond {
  sl_store_t *st;
  uint32_t s;
  uint64_t n;
} cond_t;

static int events_below(void *arg) {
  cond_t *c = arg;
  sl_store_stream_stats_t ss;
  return sl_store_stream_stats(c->st, c->s, &ss) == 0 && ss.events < c->n;
}

static int steps_seen(void *arg) {
  cond_t *c = arg;
  sl_store_info_t info;
  sl_store_env_info(c->st, &info);
  return info.clock.steps_forward + info.clock.steps_backward >= c->n;
}

static uint64_t events(sl_store_t *st, uint32_t s) {
  sl_store_stream_stats_t ss;
  assert_int_equal(sl_store_stream_stats(st, s, &ss), 0);
  return ss.events;
}

static uint64_t ttl_evicted(sl_store_t *st, uint32_t s) {
  sl_store_stream_stats_t ss;
  assert_int_equal(sl_store_stream_stats(st, s, &ss), 0);
  return ss.evicted_events[SL_STORE_REASON_TTL];
}

/* 10 batches of 100 events stamped with the node's wall clock. */
static void append_1000(sl_store_t *st, uint32_t s, fake_t *f) {
  for (int i = 0; i < 10; i++)
    assert_int_equal(
        th_append(st, s, (uint64_t)i + 1, 200, 100, fake_wall(f), NULL), 0);
}

/* No sweep in 300 ms (60 maintenance periods) takes an event. */
static void assert_kept(sl_store_t *st, uint32_t s, uint64_t n) {
  cond_t c = {st, s, n};
  assert_false(th_wait(events_below, &c, 300));
  assert_int_equal(events(st, s), n);
}

/* The case: 1 h TTL, +2 days on the wall clock while running. */
static void test_forward_step_running(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  fake_t f = {T0, 1000 * SEC};
  sl_store_info_t info;
  sl_store_t *st = open_fake(dir, &f);
  uint32_t s = th_stream(st, "t", SL_STORE_POLICY_BLOCK, 0, HOUR);
  cond_t c = {st, s, 1};

  append_1000(st, s, &f);
  pass(&f, SEC);
  atomic_fetch_add(&f.wall, 2 * DAY);
  assert_true(th_wait(steps_seen, &c, 5000));
  assert_kept(st, s, 1000);
  assert_int_equal(ttl_evicted(st, s), 0);
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_int_equal(info.clock.steps_forward, 1);
  assert_int_equal(info.clock.steps_backward, 0);
  assert_true(info.clock.last_step_ns > 2 * DAY - 3 * SEC &&
              info.clock.last_step_ns < 2 * DAY + 3 * SEC);
  assert_int_equal(info.clock.last_step_stopped, 0);
  assert_true(info.clock.offset_ns > 2 * DAY - 3 * SEC);

  /* Events from a producer whose clock was right all along look two days
   * old to the stepped node clock: they must not expire either. */
  assert_int_equal(
      th_append(st, s, 99, 200, 100, fake_wall(&f) - 2 * DAY, NULL), 0);
  assert_kept(st, s, 1100);

  /* The step is persisted: a restart in the same boot does not count it
   * again, and nothing expires either. */
  sl_store_env_close(st);
  st = open_fake(dir, &f);
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_int_equal(info.clock.steps_forward + info.clock.steps_backward, 0);
  assert_int_equal(info.clock.open, SL_STORE_CLOCK_BOOT);
  assert_kept(st, s, 1100);

  /* TTL still works by the store clock: an hour later, all expire. */
  pass(&f, HOUR + 2 * SEC);
  c.st = st; /* the reopened store (the old handle is freed) */
  c.n = 1;
  assert_true(th_wait(events_below, &c, 5000));
  assert_int_equal(events(st, s), 0);
  assert_int_equal(ttl_evicted(st, s), 1100);
  sl_store_env_close(st);
  th_cleanup(dir);
}

/* -3 h while running: expiry keeps its pace (the old guard stopped it for
 * three hours), the step is counted. */
static void test_backward_step_running(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  fake_t f = {T0, 1000 * SEC};
  sl_store_info_t info;
  sl_store_t *st = open_fake(dir, &f);
  uint32_t s = th_stream(st, "t", SL_STORE_POLICY_BLOCK, 0, HOUR);
  cond_t c = {st, s, 1};

  append_1000(st, s, &f);
  pass(&f, SEC);
  atomic_fetch_add(&f.wall, -3 * HOUR);
  assert_true(th_wait(steps_seen, &c, 5000));
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_int_equal(info.clock.steps_backward, 1);
  assert_true(info.clock.last_step_ns < -3 * HOUR + 3 * SEC &&
              info.clock.last_step_ns > -3 * HOUR - 3 * SEC);
  /* Stamped with the stepped-back node clock. */
  assert_int_equal(th_append(st, s, 50, 200, 100, fake_wall(&f), NULL), 0);
  pass(&f, 30 * 60 * SEC);
  assert_kept(st, s, 1100);
  pass(&f, 31 * 60 * SEC);
  c.n = 1;
  assert_true(th_wait(events_below, &c, 5000));
  assert_int_equal(ttl_evicted(st, s), 1100);
  sl_store_env_close(st);
  th_cleanup(dir);
}

/* Stopped, same boot: +2 days on the wall clock while the store was
 * closed. The boot clock tells the real 10 s; the step is counted. */
static void test_forward_step_stopped(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  fake_t f = {T0, 1000 * SEC};
  sl_store_info_t info;
  sl_store_t *st = open_fake(dir, &f);
  uint32_t s = th_stream(st, "t", SL_STORE_POLICY_BLOCK, 0, HOUR);
  int64_t before;

  append_1000(st, s, &f);
  before = sl_store_clock_now(st);
  sl_store_env_close(st);
  pass(&f, 10 * SEC);
  atomic_fetch_add(&f.wall, 2 * DAY);
  st = open_fake(dir, &f);
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_int_equal(info.clock.open, SL_STORE_CLOCK_BOOT);
  assert_int_equal(info.clock.stopped_ns, 10 * SEC);
  assert_int_equal(info.clock.steps_forward, 1);
  assert_int_equal(info.clock.last_step_stopped, 1);
  assert_int_equal(info.clock.last_step_ns, 2 * DAY);
  assert_int_equal(sl_store_clock_now(st), before + 10 * SEC);
  assert_kept(st, s, 1000);
  assert_int_equal(ttl_evicted(st, s), 0);
  sl_store_env_close(st);
  th_cleanup(dir);
}

/* After a reboot (the boot clock restarted) the wall clock is the only
 * witness: believed forward, never backward. */
static void test_reboot(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  fake_t f = {T0, 5000 * SEC};
  sl_store_info_t info;
  sl_store_t *st = open_fake(dir, &f);
  uint32_t s = th_stream(st, "t", SL_STORE_POLICY_BLOCK, 0, HOUR);
  uint32_t u = th_stream(st, "u", SL_STORE_POLICY_BLOCK, 0, HOUR);
  int64_t before;
  cond_t c = {st, s, 1}, cu = {st, u, 1};

  append_1000(st, s, &f);
  before = sl_store_clock_now(st);
  sl_store_env_close(st);

  /* Rebooted into the past (a dead RTC battery): no time credited, a
   * backward step counted, nothing expires. */
  atomic_store(&f.boot, 20 * SEC);
  atomic_fetch_add(&f.wall, -30 * DAY);
  st = open_fake(dir, &f);
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_int_equal(info.clock.open, SL_STORE_CLOCK_HELD);
  assert_int_equal(info.clock.stopped_ns, 0);
  assert_int_equal(info.clock.steps_backward, 1);
  assert_int_equal(info.clock.last_step_stopped, 1);
  assert_int_equal(sl_store_clock_now(st), before);
  assert_kept(st, s, 1000);
  /* Ingest goes on, stamped with the wrong clock (another stream: TTL
   * expires in log order). */
  assert_int_equal(th_append(st, u, 77, 200, 100, fake_wall(&f), NULL), 0);
  sl_store_env_close(st);

  /* NTP fixed the clock, and the node rebooted again 20 minutes after
   * the first stop: the wall clock moved 30 days and 20 minutes, but only
   * the 20 minutes that bring it back to the store clock are credited
   * (crediting 30 days would expire everything); the fix is a step. */
  atomic_store(&f.boot, 10 * SEC);
  atomic_store(&f.wall, T0 + 20 * 60 * SEC);
  st = open_fake(dir, &f);
  c.st = cu.st = st;
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_int_equal(info.clock.open, SL_STORE_CLOCK_WALL);
  assert_int_equal(info.clock.stopped_ns, 20 * 60 * SEC);
  assert_int_equal(info.clock.steps_forward, 1);
  assert_int_equal(info.clock.last_step_ns, 30 * DAY);
  assert_int_equal(info.clock.offset_ns, 0);
  /* The batch appended while the clock read 30 days ago is 20 minutes old,
   * not 30 days: it stays. */
  assert_kept(st, u, 100);
  assert_kept(st, s, 1000);
  /* 41 minutes more make it 61: the hour is up. */
  pass(&f, 41 * 60 * SEC);
  assert_true(th_wait(events_below, &c, 5000));
  assert_true(th_wait(events_below, &cu, 5000));
  assert_int_equal(ttl_evicted(st, s), 1000);
  assert_int_equal(ttl_evicted(st, u), 100);
  sl_store_env_close(st);
  th_cleanup(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forward_step_running),
      cmocka_unit_test(test_backward_step_running),
      cmocka_unit_test(test_forward_step_stopped),
      cmocka_unit_test(test_reboot),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
