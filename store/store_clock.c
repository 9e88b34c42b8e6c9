/*
 * clock.c: the store clock, a time that never steps. It starts at the wall
 * clock when the store is created, advances by CLOCK_BOOTTIME while the
 * store is open (a clock no one can set, which counts suspend), and is kept
 * in the meta record "clock" with the wall and boot clocks read at the same
 * instant, so it survives restarts. TTL ages batches by it; the wall clock
 * only tells how old events already were when they arrived, and only while
 * it agrees with the store clock. A wall clock that moves more or less
 * than the boot clock between two samples has stepped: the step is counted
 * and reported through sl_store_env_info() (the store never logs).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "store/store_int.h"

static int64_t real_wall(void *arg) {
  (void)arg;
  return sl_now_wall_ns();
}

static int64_t real_boot(void *arg) {
  struct timespec ts;

  (void)arg;
  if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
    clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* The kernel's random id of this boot; zero when it cannot be read (then
 * every open counts as after a reboot, the careful side). */
static void read_boot_id(uint8_t id[16]) {
  char buf[64];
  ssize_t n;
  int fd, j = 0;

  memset(id, 0, 16);
  fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  for (ssize_t i = 0; i + 1 < n && j < 16; i++) {
    int hi = hexval(buf[i]), lo;
    if (hi < 0)
      continue;
    if ((lo = hexval(buf[i + 1])) < 0)
      break;
    id[j++] = (uint8_t)(hi << 4 | lo);
    i++;
  }
  if (j != 16)
    memset(id, 0, 16);
}

static bool id_zero(const uint8_t id[16]) {
  for (int i = 0; i < 16; i++)
    if (id[i])
      return false;
  return true;
}

void store__clock_init(sl_store_t *st) {
  store_clock_t *c = &st->clock;

  c->wall_fn = st->opts.clock_wall ? st->opts.clock_wall : real_wall;
  c->boot_fn = st->opts.clock_boot ? st->opts.clock_boot : real_boot;
  c->arg = st->opts.clock_arg;
  pthread_mutex_init(&c->lock, NULL);
  read_boot_id(c->boot_id);
}

void store__clock_free(sl_store_t *st) {
  pthread_mutex_destroy(&st->clock.lock);
}

static int64_t store_at(const store_clock_t *c, int64_t boot) {
  /* Only an injected boot clock can run backwards: hold, never step. */
  return c->base_store + (boot > c->base_boot ? boot - c->base_boot : 0);
}

int64_t sl_store_clock_now(sl_store_t *st) {
  return store_at(&st->clock, st->clock.boot_fn(st->clock.arg));
}

/* lock held */
static void count_step(store_clock_t *c, int64_t step, int64_t at,
                       bool stopped) {
  if (step > 0)
    c->info.steps_forward++;
  else
    c->info.steps_backward++;
  c->info.last_step_ns = step;
  c->info.last_step_at_ns = at;
  c->info.last_step_stopped = stopped;
  c->dirty = true;
}

static void encode(const store_clock_t *c, uint8_t *p, int64_t store,
                   int64_t wall, int64_t boot) {
  memset(p, 0, STORE_CLOCK_LEN);
  sl_put_be32(p, STORE_CLOCK_MAGIC);
  p[4] = 1; /* record version */
  sl_put_be64(p + 8, (uint64_t)store);
  sl_put_be64(p + 16, (uint64_t)wall);
  sl_put_be64(p + 24, (uint64_t)boot);
  memcpy(p + 32, c->boot_id, 16);
  sl_put_be64(p + 48, XXH3_64bits(p, 48));
}

static int put_record(sl_store_t *st, MDB_txn *txn, int64_t store, int64_t wall,
                      int64_t boot) {
  uint8_t b[STORE_CLOCK_LEN];
  int rc;

  encode(&st->clock, b, store, wall, boot);
  if ((rc = store__meta_put(txn, st->dbi_meta, "clock", 5, b, sizeof(b))))
    return rc;
  st->clock.persisted_boot = boot;
  st->clock.dirty = false;
  return 0;
}

int store__clock_open(sl_store_t *st, MDB_txn *txn, char *errstr,
                      size_t errlen) {
  store_clock_t *c = &st->clock;
  int64_t wall = c->wall_fn(c->arg), boot = c->boot_fn(c->arg);
  MDB_val k = {5, "clock"}, v;
  const uint8_t *p;
  int rc;

  rc = mdb_get(txn, st->dbi_meta, &k, &v);
  if (rc == MDB_NOTFOUND) {
    /* New store, or one from before the store clock: start at the wall
     * clock (batches older than v3 carry wall clock append times). */
    c->base_store = wall;
    c->info.open = SL_STORE_CLOCK_NEW;
  } else if (rc) {
    return rc;
  } else {
    int64_t p_store, p_wall, p_boot, elapsed;
    p = v.mv_data;
    if (v.mv_size != STORE_CLOCK_LEN || sl_get_be32(p) != STORE_CLOCK_MAGIC ||
        p[4] != 1 || XXH3_64bits(p, 48) != sl_get_be64(p + 48)) {
      store__seterr(errstr, errlen, "bad store clock record in meta");
      return SL_ECORRUPT;
    }
    p_store = (int64_t)sl_get_be64(p + 8);
    p_wall = (int64_t)sl_get_be64(p + 16);
    p_boot = (int64_t)sl_get_be64(p + 24);
    if (!id_zero(c->boot_id) && !memcmp(c->boot_id, p + 32, 16) &&
        boot >= p_boot) {
      /* Same boot: the boot clock knows exactly how long we were gone;
       * whatever else the wall clock moved is a step while stopped. */
      int64_t step;
      elapsed = boot - p_boot;
      step = (wall - p_wall) - elapsed;
      c->info.open = SL_STORE_CLOCK_BOOT;
      if (step > STORE_CLOCK_STEP_NS || step < -STORE_CLOCK_STEP_NS)
        count_step(c, step, p_store + elapsed, true);
    } else {
      /* After a reboot the wall clock is the only witness. Believe it
       * forward, but never past where it would put the store clock ahead
       * of the wall clock's own reading (a clock fixed while we were down
       * must not credit again what it had lost), and never backward. The
       * daemon logs what was credited. */
      int64_t wd = wall - p_wall, ws = wall - p_store;
      elapsed = SL_MAX(0, SL_MIN(wd, ws));
      c->info.open = elapsed > 0 ? SL_STORE_CLOCK_WALL : SL_STORE_CLOCK_HELD;
      if (wd - elapsed > STORE_CLOCK_STEP_NS ||
          wd - elapsed < -STORE_CLOCK_STEP_NS)
        count_step(c, wd - elapsed, p_store + elapsed, true);
    }
    c->base_store = p_store + elapsed;
    c->info.stopped_ns = elapsed;
  }
  c->base_boot = boot;
  c->last_wall = wall;
  c->last_boot = boot;
  if (st->rdonly)
    return 0;
  return put_record(st, txn, c->base_store, wall, boot);
}

void store__clock_sample(sl_store_t *st, int64_t *wall_out,
                         int64_t *store_out) {
  store_clock_t *c = &st->clock;
  int64_t wall = c->wall_fn(c->arg), boot = c->boot_fn(c->arg);
  int64_t store = store_at(c, boot), skew;

  pthread_mutex_lock(&c->lock);
  if (boot < c->last_boot)
    boot = c->last_boot; /* injected clocks only */
  skew = (wall - c->last_wall) - (boot - c->last_boot);
  if (skew > STORE_CLOCK_STEP_NS || skew < -STORE_CLOCK_STEP_NS)
    count_step(c, skew, store, false);
  c->last_wall = wall;
  c->last_boot = boot;
  pthread_mutex_unlock(&c->lock);
  if (wall_out)
    *wall_out = wall;
  if (store_out)
    *store_out = store;
}

int store__clock_persist(sl_store_t *st, MDB_txn *txn) {
  store_clock_t *c = &st->clock;
  int64_t wall, boot;
  bool due;

  /* The last sample's pair, not a fresh read: a step not yet sampled must
   * still show at the next open (as a step while stopped). */
  pthread_mutex_lock(&c->lock);
  wall = c->last_wall;
  boot = c->last_boot;
  due = c->dirty || boot - c->persisted_boot >= STORE_CLOCK_PERSIST_NS;
  pthread_mutex_unlock(&c->lock);
  if (!due)
    return 0;
  return put_record(st, txn, store_at(c, boot), wall, boot);
}

void store__clock_info(sl_store_t *st, sl_store_clock_info_t *ci) {
  store_clock_t *c = &st->clock;

  pthread_mutex_lock(&c->lock);
  *ci = c->info;
  pthread_mutex_unlock(&c->lock);
  ci->wall_ns = c->wall_fn(c->arg);
  ci->store_ns = sl_store_clock_now(st);
  ci->offset_ns = ci->wall_ns - ci->store_ns;
}
