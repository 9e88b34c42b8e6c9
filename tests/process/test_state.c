/* Persisted step state: round trip through the put/get callbacks, corrupt
 * and foreign records, the store path, and the kill -9 test: a child
 * process runs windows over a deterministic input, committing each batch's
 * results, state and input position in one store transaction; the parent
 * kills it at random points and restarts it until the input is done. The
 * stored window results must equal those of an uninterrupted run. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "helpers.h"

#define S 1000000000LL

/* ---- an in-memory key-value store for the callbacks ------------------- */

typedef struct kv {
  char key[256];
  size_t klen;
  uint8_t *val;
  size_t vlen;
} kv_t;
static kv_t kvs[512];
static size_t nkv;

static kv_t *kv_find(const void *key, size_t klen) {
  for (size_t i = 0; i < nkv; i++)
    if (kvs[i].klen == klen && !memcmp(kvs[i].key, key, klen))
      return &kvs[i];
  return NULL;
}

static int kv_put(void *arg, const void *key, size_t klen, const void *val,
                  size_t vlen) {
  (void)arg;
  kv_t *e = kv_find(key, klen);
  if (!e) {
    e = &kvs[nkv++];
    memcpy(e->key, key, klen);
    e->klen = klen;
    e->val = NULL;
  }
  free(e->val);
  e->val = NULL;
  e->vlen = 0;
  if (val) {
    e->val = malloc(vlen);
    memcpy(e->val, val, vlen);
    e->vlen = vlen;
  }
  return 0;
}

static int kv_get(void *arg, const void *key, size_t klen, void *buf,
                  size_t cap, size_t *vlen) {
  (void)arg;
  kv_t *e = kv_find(key, klen);
  if (!e || !e->val)
    return SL_ENOTFOUND;
  *vlen = e->vlen;
  if (e->vlen > cap)
    return SL_ETOOBIG;
  memcpy(buf, e->val, e->vlen);
  return 0;
}

static void kv_clear(void) {
  for (size_t i = 0; i < nkv; i++)
    free(kvs[i].val);
  nkv = 0;
}

/* ---- the pipeline under test ------------------------------------------ */

static sl_process_t *mk(int64_t window) {
  sl_process_t *pr;
  char err[256];
  sl_process_step_conf_t steps[] = {
      {.kind = SL_PROCESS_DEADBAND, .deadband = 0.5, .heartbeat_ns = 30 * S},
      {.kind = SL_PROCESS_AGGREGATE,
       .window_ns = window,
       .lateness_ns = 2 * S,
       .funcs = SL_PROCESS_AGG_COUNT | SL_PROCESS_AGG_SUM | SL_PROCESS_AGG_MIN |
                SL_PROCESS_AGG_MAX,
       .into = "agg",
       .keep_raw = true}};
  sl_process_pipeline_conf_t pc = {
      .name = "crash", .steps = steps, .n_steps = 2};
  assert_int_equal(sl_process_new(&pr), 0);
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)), 0);
  return pr;
}

/* Deterministic input: event i of 40 sources, ~0.05 s apart, with jitter
 * backwards (some late) and values that move in steps of 0.25..1.0. */
static char srcnames[40][32];
static const Sluice__V1__Event *input(size_t i) {
  uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull;
  h ^= h >> 29;
  int src = (int)(h % 40);
  if (!srcnames[src][0])
    snprintf(srcnames[src], sizeof(srcnames[src]), "plant/m%02d/v", src);
  int64_t t = (int64_t)i * S / 20 - (int64_t)((h >> 8) % 60) * S / 20;
  double v = (double)((h >> 20) % 40) * 0.25;
  return ph_reading(srcnames[src], t, v);
}

/* One result as a comparable line. */
static void line(const Sluice__V1__Event *e, char *buf, size_t len) {
  snprintf(buf, len, "%s %lld %s %s %s %s", e->source, (long long)e->time_ns,
           ph_get(e, "count"), ph_get(e, "sum"), ph_get(e, "min"),
           ph_get(e, "max"));
}

/* Runs batches [from, to) of bsize events through pr, appending result
 * lines and keep strings to the given buffers. */
static void run_range(sl_process_t *pr, size_t from, size_t to, size_t bsize,
                      char *lines, size_t llen, char *keeps, size_t klen) {
  const Sluice__V1__Event *b[256];
  for (size_t bi = from; bi < to; bi++) {
    sl_process_result_t res;
    ph_reset();
    for (size_t k = 0; k < bsize; k++)
      b[k] = input(bi * bsize + k);
    assert_int_equal(sl_process_run(pr, "s", b, bsize, &res), 0);
    for (size_t k = 0; k < res.nemit; k++) {
      size_t l = strlen(lines);
      line(res.emit[k].ev, lines + l, llen - l - 1);
      strcat(lines + l, "\n");
    }
    for (size_t k = 0; k < bsize && keeps; k++) {
      size_t l = strlen(keeps);
      if (l + 2 < klen) {
        keeps[l] = res.keep[k] ? '1' : '0';
        keeps[l + 1] = '\0';
      }
    }
    sl_process_commit(pr);
  }
}

static char la[1 << 20], lb[1 << 20], ka[1 << 16], kb[1 << 16];

static void test_roundtrip(void **state) {
  (void)state;
  kv_clear();
  la[0] = lb[0] = ka[0] = kb[0] = '\0';
  /* Uninterrupted: 40 batches. */
  sl_process_t *a = mk(5 * S);
  run_range(a, 0, 40, 50, la, sizeof(la), ka, sizeof(ka));
  sl_process_free(a);
  /* Interrupted after 17 batches: state put, a new set loads it. */
  sl_process_t *b = mk(5 * S);
  run_range(b, 0, 17, 50, lb, sizeof(lb), kb, sizeof(kb));
  assert_int_equal(sl_process_state_put(b, kv_put, NULL), 0);
  assert_true(nkv > 10); /* shards of both steps + meta */
  sl_process_free(b);
  b = mk(5 * S);
  char err[256];
  assert_int_equal(sl_process_state_load(b, kv_get, NULL, err, sizeof(err)), 0);
  run_range(b, 17, 40, 50, lb, sizeof(lb), kb, sizeof(kb));
  sl_process_free(b);
  assert_true(strlen(la) > 1000);
  assert_string_equal(la, lb);
  assert_string_equal(ka, kb);
  /* Without the state the second half differs (sanity: the test can
   * fail). */
  lb[0] = kb[0] = '\0';
  b = mk(5 * S);
  run_range(b, 0, 17, 50, lb, sizeof(lb), kb, sizeof(kb));
  sl_process_free(b);
  b = mk(5 * S);
  run_range(b, 17, 40, 50, lb, sizeof(lb), kb, sizeof(kb));
  sl_process_free(b);
  assert_string_not_equal(ka, kb);
  kv_clear();
}

static void test_corrupt_and_foreign(void **state) {
  (void)state;
  char err[256];
  kv_clear();
  la[0] = '\0';
  sl_process_t *a = mk(5 * S);
  run_range(a, 0, 10, 50, la, sizeof(la), NULL, 0);
  assert_int_equal(sl_process_state_put(a, kv_put, NULL), 0);
  sl_process_stats_t st;
  sl_process_stats(a, 0, &st);
  uint64_t keys = st.keys;
  sl_process_free(a);
  /* Flip one payload byte of one shard: that record is skipped and named,
   * the others load. */
  kv_t *victim = NULL;
  for (size_t i = 0; i < nkv && !victim; i++)
    if (kvs[i].vlen > 40 && kvs[i].key[kvs[i].klen - 1] != 'm')
      victim = &kvs[i];
  assert_non_null(victim);
  victim->val[30] ^= 0x40;
  a = mk(5 * S);
  assert_int_equal(sl_process_state_load(a, kv_get, NULL, err, sizeof(err)),
                   SL_ECORRUPT);
  assert_non_null(strstr(err, "corrupt state record sl.proc/crash/"));
  sl_process_stats(a, 0, &st);
  assert_true(st.keys > 0 && st.keys < keys);
  sl_process_free(a);
  /* Truncated record: also corrupt. */
  victim->val[30] ^= 0x40;
  victim->vlen -= 9;
  a = mk(5 * S);
  assert_int_equal(sl_process_state_load(a, kv_get, NULL, err, sizeof(err)),
                   SL_ECORRUPT);
  sl_process_free(a);
  victim->vlen += 9;
  /* A different window length: the aggregate starts empty, the deadband
   * (unchanged layout) keeps its keys; no error. */
  a = mk(6 * S);
  assert_int_equal(sl_process_state_load(a, kv_get, NULL, err, sizeof(err)), 0);
  sl_process_stats(a, 0, &st);
  assert_int_equal(st.keys, keys / 2);
  sl_process_free(a);
  kv_clear();
}

/* ---- store-backed and kill -9 ------------------------------------------ */

#define CRASH_BATCHES 120
#define CRASH_BSIZE 50

static char *tmpdir(void) {
  const char *base = getenv("TMPDIR");
  char *d = malloc(512);
  snprintf(d, 512, "%s/sl_process_XXXXXX", base ? base : "/tmp");
  assert_non_null(mkdtemp(d));
  return d;
}

static void rmdir_all(const char *d) {
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
  assert_int_equal(system(cmd), 0);
}

static sl_store_t *open_store(const char *dir, uint32_t *agg) {
  sl_store_t *st;
  sl_store_opts_t o;
  char err[256];
  sl_store_stream_conf_t sc = {.priority = 5};
  sl_store_opts_init(&o);
  o.map_size = 16u << 20;
  if (sl_store_env_open(dir, &o, &st, err, sizeof(err)))
    return NULL;
  if (sl_store_stream_create(st, "agg", &sc, agg)) {
    sl_store_env_close(st);
    return NULL;
  }
  return st;
}

/* The child: resume from the stored position, commit one group per batch
 * (results + state + position), report each commit on fd. */
static int child(const char *dir, int fd) {
  uint32_t agg;
  sl_store_t *st = open_store(dir, &agg);
  sl_process_t *pr = mk(5 * S);
  char err[256];
  uint64_t pos = 0;
  size_t vlen;
  if (!st)
    return 2;
  int rc = sl_process_state_load_store(pr, st, err, sizeof(err));
  if (rc)
    return 3;
  if (sl_store_state_get(st, "test/pos", 8, &pos, sizeof(pos), &vlen) == 0 &&
      vlen != sizeof(pos))
    return 4;
  for (; pos < CRASH_BATCHES; pos++) {
    const Sluice__V1__Event *b[CRASH_BSIZE];
    sl_process_result_t res;
    sl_store_group_t *g;
    ph_reset();
    for (size_t k = 0; k < CRASH_BSIZE; k++)
      b[k] = input(pos * CRASH_BSIZE + k);
    if (sl_process_run(pr, "s", b, CRASH_BSIZE, &res))
      return 5;
    if (sl_store_group_new(st, &g))
      return 6;
    if (res.nemit) {
      Sluice__V1__EventBatch eb = SLUICE__V1__EVENT_BATCH__INIT;
      Sluice__V1__Event *evp[512];
      int64_t tmin = INT64_MAX, tmax = INT64_MIN;
      for (size_t k = 0; k < res.nemit; k++) {
        evp[k] = (Sluice__V1__Event *)res.emit[k].ev;
        tmin = SL_MIN(tmin, evp[k]->time_ns);
        tmax = SL_MAX(tmax, evp[k]->time_ns);
      }
      eb.n_events = res.nemit;
      eb.events = evp;
      size_t len = sluice__v1__event_batch__get_packed_size(&eb);
      uint8_t *buf = malloc(len);
      sluice__v1__event_batch__pack(&eb, buf);
      sl_store_batch_t *sb;
      if (sl_store_batch_new(st, agg, buf, len, (uint32_t)res.nemit, tmin, tmax,
                             &sb) ||
          sl_store_group_add(g, sb))
        return 7;
      free(buf);
    }
    uint64_t next = pos + 1;
    if (sl_process_state_put_group(pr, g) ||
        sl_store_group_state_put(g, "test/pos", 8, &next, sizeof(next)))
      return 8;
    if (sl_store_group_commit(g, NULL, 0))
      return 9;
    sl_process_commit(pr);
    if (write(fd, "x", 1) != 1)
      return 10;
  }
  sl_process_free(pr);
  sl_store_env_close(st);
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the lines of buf in place (results of one flush may come in a
 * different order after a restart; the set must be equal). */
static void sort_lines(char *buf) {
  static char *v[20000];
  static char copy[1 << 20];
  size_t n = 0;
  for (char *p = strtok(buf, "\n"); p; p = strtok(NULL, "\n"))
    v[n++] = p;
  qsort(v, n, sizeof(v[0]), cmp_str);
  copy[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    strcat(copy, v[i]);
    strcat(copy, "\n");
  }
  strcpy(buf, copy);
}

static void test_kill9_windows(void **state) {
  (void)state;
  char *dir = tmpdir();
  uint64_t rng = (uint64_t)getpid() * 2654435761u;
  int kills = 0, rounds = 0;
  for (;;) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(p[0]);
      _exit(child(dir, p[1]));
    }
    close(p[1]);
    rounds++;
    /* Let it commit a random number of batches, then kill it wherever it
     * is (processing, encoding, inside the commit). The last rounds run to
     * the end. */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    int want = kills < 6 ? 3 + (int)((rng >> 33) % 25) : -1;
    int got = 0;
    char c;
    while ((want < 0 || got < want) && read(p[0], &c, 1) == 1)
      got++;
    if (want >= 0 && got == want) {
      kill(pid, SIGKILL);
      kills++;
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(p[0]);
    if (WIFEXITED(status)) {
      assert_int_equal(WEXITSTATUS(status), 0);
      break;
    }
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_true(rounds < 50);
  }
  assert_true(kills >= 1);
  /* Read back every stored result. */
  uint32_t agg;
  sl_store_t *st = open_store(dir, &agg);
  assert_non_null(st);
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  assert_int_equal(sl_store_cursor_open(st, agg, 0, SL_STORE_OFFSET_END, &cur),
                   0);
  lb[0] = '\0';
  size_t n = 0;
  while (sl_store_cursor_next(cur, &rec) == 0) {
    assert_int_equal(rec.status, 0);
    Sluice__V1__EventBatch *eb =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    assert_non_null(eb);
    for (size_t k = 0; k < eb->n_events; k++) {
      size_t l = strlen(lb);
      line(eb->events[k], lb + l, sizeof(lb) - l - 1);
      strcat(lb + l, "\n");
      n++;
    }
    sluice__v1__event_batch__free_unpacked(eb, NULL);
  }
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
  /* The uninterrupted run of the same input. */
  la[0] = '\0';
  sl_process_t *pr = mk(5 * S);
  run_range(pr, 0, CRASH_BATCHES, CRASH_BSIZE, la, sizeof(la), NULL, 0);
  sl_process_free(pr);
  assert_true(n > 500);
  sort_lines(la);
  sort_lines(lb);
  assert_string_equal(la, lb);
  print_message("kill -9: %d kills in %d rounds, %zu results equal\n", kills,
                rounds, n);
  rmdir_all(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_corrupt_and_foreign),
      cmocka_unit_test(test_kill9_windows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
