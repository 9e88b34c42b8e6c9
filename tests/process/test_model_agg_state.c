/* The model_aggregate step's persistence (process/model_agg.c, state.c):
 * - its state (run-length encoded entries) survives a put and a load: the
 *   rest of a run gives the same results; a corrupt record is reported;
 * - kill -9 at random points of a store-backed run: the stored aggregates
 *   equal an uninterrupted run's. */
#include "model_agg_gen.h"

/* ---- state round trip through the put/get callbacks -----------------------
 */

typedef struct kv {
  char key[128];
  size_t klen, vlen;
  uint8_t *val;
} kv_t;
static kv_t kvs[512];
static size_t nkv;

static int kv_put(void *arg, const void *key, size_t klen, const void *val,
                  size_t vlen) {
  (void)arg;
  kv_t *e = NULL;
  for (size_t i = 0; i < nkv && !e; i++)
    if (kvs[i].klen == klen && !memcmp(kvs[i].key, key, klen))
      e = &kvs[i];
  if (!e) {
    assert_true(nkv < SL_ARRAY_SIZE(kvs) && klen < sizeof(kvs[0].key));
    e = &kvs[nkv++];
    memcpy(e->key, key, klen);
    e->klen = klen;
    e->val = NULL;
  }
  free(e->val);
  e->val = val ? malloc(vlen) : NULL;
  e->vlen = val ? vlen : 0;
  if (val)
    memcpy(e->val, val, vlen);
  return 0;
}

static int kv_get(void *arg, const void *key, size_t klen, void *buf,
                  size_t cap, size_t *vlen) {
  (void)arg;
  for (size_t i = 0; i < nkv; i++) {
    if (kvs[i].klen != klen || memcmp(kvs[i].key, key, klen) || !kvs[i].val)
      continue;
    *vlen = kvs[i].vlen;
    if (kvs[i].vlen > cap)
      return SL_ETOOBIG;
    memcpy(buf, kvs[i].val, kvs[i].vlen);
    return 0;
  }
  return SL_ENOTFOUND;
}

/* Results of evs[from..to) in batches of 100, packed bytes hashed. */
static uint64_t run_hash(sl_process_t *pr, size_t from, size_t to, uint64_t h) {
  for (size_t i = from; i < to; i += 100) {
    const Sluice__V1__Event *b[100];
    size_t n = SL_MIN(100, to - i);
    sl_process_result_t res;
    for (size_t k = 0; k < n; k++)
      b[k] = &evs[i + k].ev;
    assert_int_equal(sl_process_run(pr, "vision", b, n, &res), 0);
    for (size_t k = 0; k < res.nemit; k++) {
      const ProtobufCBinaryData *d = &res.emit[k].ev->raw->data;
      for (size_t j = 0; j < d->len; j++)
        h = (h ^ d->data[j]) * 1099511628211ull;
    }
    sl_process_commit(pr);
  }
  return h;
}

/* The state (run-length encoded entries) survives a put and a load into a
 * new pipeline set: the rest of the run gives the same results; a flipped
 * byte is reported as corrupt, never loaded. */
static void test_state_roundtrip(void **state) {
  (void)state;
  char err[256];
  gen(777);
  size_t half = (nev / 2) / 100 * 100;
  sl_process_t *a = mk(64);
  uint64_t ha = run_hash(a, 0, nev, 1469598103934665603ull);
  sl_process_free(a);
  sl_process_t *b = mk(64);
  uint64_t hb = run_hash(b, 0, half, 1469598103934665603ull);
  assert_int_equal(sl_process_state_put(b, kv_put, NULL), 0);
  sl_process_stats_t st;
  sl_process_stats(b, 0, &st);
  uint64_t keys = st.keys;
  size_t bytes = 0;
  for (size_t i = 0; i < nkv; i++)
    bytes += kvs[i].vlen;
  /* ~4.6 KB per entry raw; mostly zero bins are not written. */
  assert_true(keys > 20 && bytes < keys * 2000);
  sl_process_free(b);
  b = mk(64);
  assert_int_equal(sl_process_state_load(b, kv_get, NULL, err, sizeof(err)), 0);
  sl_process_stats(b, 0, &st);
  assert_int_equal(st.keys, keys);
  hb = run_hash(b, half, nev, hb);
  sl_process_free(b);
  assert_true(ha == hb);
  /* A flipped payload byte: skipped and named. */
  kv_t *v = NULL;
  for (size_t i = 0; i < nkv && !v; i++)
    if (kvs[i].vlen > 200)
      v = &kvs[i];
  assert_non_null(v);
  v->val[100] ^= 0x10;
  b = mk(64);
  assert_int_equal(sl_process_state_load(b, kv_get, NULL, err, sizeof(err)),
                   SL_ECORRUPT);
  assert_non_null(strstr(err, "corrupt state record sl.proc/ai/0/"));
  sl_process_free(b);
  for (size_t i = 0; i < nkv; i++)
    free(kvs[i].val);
  nkv = 0;
}

/* ---- kill -9 ----------------------------------------------------------------
 */

#define BSIZE 50

static char *tmpdir(void) {
  const char *base = getenv("TMPDIR");
  char *d = malloc(512);
  snprintf(d, 512, "%s/sl_magg_XXXXXX", base ? base : "/tmp");
  assert_non_null(mkdtemp(d));
  return d;
}

static sl_store_t *open_store(const char *dir, uint32_t *sid) {
  sl_store_t *st;
  sl_store_opts_t o;
  char err[256];
  sl_store_stream_conf_t sc = {.priority = 5};
  sl_store_opts_init(&o);
  o.map_size = 64u << 20;
  if (sl_store_env_open(dir, &o, &st, err, sizeof(err)))
    return NULL;
  if (sl_store_stream_create(st, "models", &sc, sid)) {
    sl_store_env_close(st);
    return NULL;
  }
  return st;
}

/* One result as a line: source, window, FNV-1a of the packed aggregate. */
static void line(const Sluice__V1__Event *e, char *buf, size_t len) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < e->raw->data.len; i++)
    h = (h ^ e->raw->data.data[i]) * 1099511628211ull;
  snprintf(buf, len, "%s %lld %016llx\n", e->source, (long long)e->time_ns,
           (unsigned long long)h);
}

/* Resumes from the stored position; one group per batch (results, state,
 * position); reports each commit on fd. */
static int child(const char *dir, int fd) {
  uint32_t sid;
  sl_store_t *st = open_store(dir, &sid);
  sl_process_t *pr = mk(64);
  char err[256];
  uint64_t pos = 0;
  size_t vlen;
  if (!st || sl_process_state_load_store(pr, st, err, sizeof(err)))
    return 3;
  if (sl_store_state_get(st, "test/pos", 8, &pos, sizeof(pos), &vlen) == 0 &&
      vlen != sizeof(pos))
    return 4;
  for (; pos * BSIZE < nev; pos++) {
    const Sluice__V1__Event *b[BSIZE];
    sl_process_result_t res;
    sl_store_group_t *g;
    size_t n = SL_MIN(BSIZE, nev - pos * BSIZE);
    for (size_t k = 0; k < n; k++)
      b[k] = &evs[pos * BSIZE + k].ev;
    if (sl_process_run(pr, "vision", b, n, &res) || sl_store_group_new(st, &g))
      return 5;
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
      if (sl_store_batch_new(st, sid, buf, len, (uint32_t)res.nemit, tmin, tmax,
                             &sb) ||
          sl_store_group_add(g, sb))
        return 7;
      free(buf);
    }
    uint64_t next = pos + 1;
    if (sl_process_state_put_group(pr, g) ||
        sl_store_group_state_put(g, "test/pos", 8, &next, sizeof(next)) ||
        sl_store_group_commit(g, NULL, 0))
      return 8;
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

static size_t sorted_lines(char *buf, char **v, size_t cap) {
  size_t n = 0;
  for (char *p = strtok(buf, "\n"); p && n < cap; p = strtok(NULL, "\n"))
    v[n++] = p;
  qsort(v, n, sizeof(v[0]), cmp_str);
  return n;
}

static char la[1 << 20], lb[1 << 20];
static char *va[8000], *vb[8000];

static void test_kill9(void **state) {
  (void)state;
  char *dir = tmpdir();
  uint64_t r = (uint64_t)getpid() * 2654435761u;
  int kills = 0, rounds = 0;
  gen(31337);
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
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    int want = kills < 6 ? 2 + (int)((r >> 33) % 12) : -1;
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
  uint32_t sid;
  sl_store_t *st = open_store(dir, &sid);
  assert_non_null(st);
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  assert_int_equal(sl_store_cursor_open(st, sid, 0, SL_STORE_OFFSET_END, &cur),
                   0);
  size_t l = 0;
  lb[0] = '\0';
  while (sl_store_cursor_next(cur, &rec) == 0) {
    Sluice__V1__EventBatch *eb =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    assert_non_null(eb);
    for (size_t k = 0; k < eb->n_events; k++) {
      line(eb->events[k], lb + l, sizeof(lb) - l);
      l += strlen(lb + l);
    }
    sluice__v1__event_batch__free_unpacked(eb, NULL);
  }
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
  /* The uninterrupted run, same batches. */
  sl_process_t *pr = mk(64);
  l = 0;
  la[0] = '\0';
  for (size_t pos = 0; pos * BSIZE < nev; pos++) {
    const Sluice__V1__Event *b[BSIZE];
    sl_process_result_t res;
    size_t n = SL_MIN(BSIZE, nev - pos * BSIZE);
    for (size_t k = 0; k < n; k++)
      b[k] = &evs[pos * BSIZE + k].ev;
    assert_int_equal(sl_process_run(pr, "vision", b, n, &res), 0);
    for (size_t k = 0; k < res.nemit; k++) {
      line(res.emit[k].ev, la + l, sizeof(la) - l);
      l += strlen(la + l);
    }
    sl_process_commit(pr);
  }
  sl_process_free(pr);
  size_t na = sorted_lines(la, va, 8000), nb = sorted_lines(lb, vb, 8000);
  assert_true(na > 100);
  assert_int_equal(na, nb);
  for (size_t i = 0; i < na; i++)
    assert_string_equal(va[i], vb[i]);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_state_roundtrip),
      cmocka_unit_test(test_kill9),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
