/*
 * tests/model/test_model_node.c: the node's model machine (model/model.h)
 * over a real store (its state in LMDB, as the daemon keeps it) and real
 * files: kill -9 (a forked child raising SIGKILL at each named step of the
 * download and the activation), resume from the first missing chunk, a
 * corrupted chunk, a wrong signature, a disk too small, the gate rolling a
 * bad version back and committing a good one, the load acknowledgement.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "model/model.h"
#include "store/store.h"

#define CHUNK 8192u

typedef struct host {
  char root[256], dir[300], store_dir[300], retained[300];
  sl_store_t *st;
  const char *crash_point; /* raise SIGKILL at its crash_nth hit */
  int crash_nth, hits;
  int64_t now;
  uint64_t fetched; /* chunk bytes handed to the machine */
  int statuses;
  char last_reason[64];
} host_t;

static sl_fleet_key_t *g_priv, *g_pub, *g_other;

static sl_fleet_key_t *gen_key(bool priv, sl_fleet_key_t **pub) {
  EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  BIO *b = BIO_new(BIO_s_mem());
  char *data, err[256];
  long n;
  sl_fleet_key_t *k = NULL;
  assert_non_null(pk);
  assert_int_equal(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL),
                   1);
  n = BIO_get_mem_data(b, &data);
  assert_int_equal(
      sl_fleet_key_parse(data, (size_t)n, priv, &k, err, sizeof(err)), 0);
  if (pub) {
    BIO *b2 = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(b2, pk), 1);
    n = BIO_get_mem_data(b2, &data);
    assert_int_equal(
        sl_fleet_key_parse(data, (size_t)n, false, pub, err, sizeof(err)), 0);
    BIO_free(b2);
  }
  BIO_free(b);
  EVP_PKEY_free(pk);
  return k;
}

/* ---- the host ----------------------------------------------------------- */

static int h_persist(void *o, const char *model, const void *state,
                     size_t len) {
  host_t *h = o;
  char key[256];
  sl_store_group_t *g;
  int rc = sl_store_group_new(h->st, &g);
  if (rc < 0)
    return rc;
  snprintf(key, sizeof(key), "model/%s", model);
  if ((rc = sl_store_group_state_put(g, key, strlen(key), state, len)) < 0) {
    sl_store_group_free(g);
    return rc;
  }
  return sl_store_group_commit(g, NULL, 0);
}

/* The broker's retained message, as a file replaced atomically. */
static void h_announce(void *o, const char *model, const char *version,
                       const char *sha, const char *path) {
  host_t *h = o;
  char tmp[400];
  FILE *f;
  (void)model;
  (void)path;
  snprintf(tmp, sizeof(tmp), "%s.tmp", h->retained);
  f = fopen(tmp, "w");
  assert_non_null(f);
  fprintf(f, "%s %s", version, sha);
  fclose(f);
  assert_int_equal(rename(tmp, h->retained), 0);
}

static void h_status(void *o, const char *model, const void *rec, size_t len) {
  host_t *h = o;
  (void)model;
  (void)rec;
  (void)len;
  h->statuses++;
}

static int64_t h_now(void *o) {
  return ((host_t *)o)->now;
}

static void h_step(void *o, const char *point) {
  host_t *h = o;
  if (h->crash_point && !strcmp(point, h->crash_point) &&
      ++h->hits == h->crash_nth)
    raise(SIGKILL);
}

static const sl_model_ops_t ops = {h_persist, h_announce, h_status, h_now,
                                   h_step};

static void host_init(host_t *h) {
  memset(h, 0, sizeof(*h));
  snprintf(h->root, sizeof(h->root), "/tmp/sl_model_XXXXXX");
  assert_non_null(mkdtemp(h->root));
  snprintf(h->dir, sizeof(h->dir), "%s/models", h->root);
  snprintf(h->store_dir, sizeof(h->store_dir), "%s/store", h->root);
  snprintf(h->retained, sizeof(h->retained), "%s/retained", h->root);
  h->now = 1000000000;
}

static void store_open(host_t *h) {
  sl_store_opts_t o;
  char err[256];
  sl_store_opts_init(&o);
  assert_int_equal(
      sl_store_env_open(h->store_dir, &o, &h->st, err, sizeof(err)), 0);
}

static void store_close(host_t *h) {
  sl_store_env_close(h->st);
  h->st = NULL;
}

static sl_model_t *model_open(host_t *h, uint64_t max_bytes) {
  static uint8_t buf[1 << 20];
  size_t len = 0;
  sl_model_t *m = NULL;
  int rc = sl_store_state_get(h->st, "model/det", 9, buf, sizeof(buf), &len);
  sl_model_conf_t c = {.dir = h->dir,
                       .name = "det",
                       .key = g_pub,
                       .max_bytes = max_bytes,
                       .node_id = "n1"};
  assert_true(rc == 0 || rc == SL_ENOTFOUND);
  assert_int_equal(
      sl_model_open(&c, &ops, h, rc ? NULL : buf, rc ? 0 : len, &m), 0);
  return m;
}

static void rm_rf(const char *p) {
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p);
  assert_int_equal(system(cmd), 0);
}

/* ---- artifacts ---------------------------------------------------------- */

typedef struct art {
  uint8_t *data;
  size_t len;
  uint8_t *rec;
  size_t rec_len;
  char sha[65];
  const char *version;
} art_t;

static void art_make(art_t *a, const char *version, size_t len, unsigned seed,
                     const sl_model_gate_limits_t *gate,
                     const sl_fleet_key_t *signer) {
  sl_model_build_t b = {0};
  uint8_t *payload;
  size_t plen;
  char err[256], (*hashes)[65];
  size_t n;
  memset(a, 0, sizeof(*a));
  a->data = malloc(len);
  a->len = len;
  a->version = version;
  srand(seed);
  for (size_t i = 0; i < len; i++)
    a->data[i] = (uint8_t)rand();
  b.name = "det";
  b.version = version;
  b.file_name = "det.onnx";
  b.chunk_size = CHUNK;
  b.runtime = "onnxruntime";
  b.labels_json = "{\"0\": \"person\", \"1\": \"car\"}";
  if (gate)
    b.gate = *gate;
  assert_int_equal(sl_model_manifest_build(&b, a->data, len, &payload, &plen,
                                           err, sizeof(err)),
                   0);
  assert_int_equal(sl_fleet_sign(signer, SL_FLEET_MODEL, payload, plen, &a->rec,
                                 &a->rec_len),
                   0);
  free(payload);
  assert_int_equal(
      sl_model_hash_chunks(a->data, len, CHUNK, a->sha, &hashes, &n), 0);
  free(hashes);
}

static void art_free(art_t *a) {
  free(a->data);
  free(a->rec);
}

/* Fetches what is missing, in order, as the daemon's fetcher does. */
static void fetch_all(host_t *h, sl_model_t *m, const art_t *a) {
  int64_t i;
  while ((i = sl_model_next_chunk(m)) >= 0) {
    size_t off = (size_t)i * CHUNK,
           l = a->len - off < CHUNK ? a->len - off : CHUNK;
    h->fetched += l;
    assert_int_equal(sl_model_put_chunk(m, (uint32_t)i, a->data + off, l), 0);
  }
}

static void file_sha(const char *path, char out[65]) {
  FILE *f = fopen(path, "rb");
  unsigned char buf[65536], d[32];
  size_t n;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  assert_non_null(f);
  EVP_DigestInit_ex(c, EVP_sha256(), NULL);
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
    EVP_DigestUpdate(c, buf, n);
  fclose(f);
  EVP_DigestFinal_ex(c, d, NULL);
  EVP_MD_CTX_free(c);
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* `active` names a fully verified digest: the file under current/ and
 * under <version>/ hashes to it; the retained message says the same. */
static void check_active(host_t *h, sl_model_t *m, const art_t *const *arts,
                         size_t narts) {
  sl_model_info_t in;
  char p[600], sha[65], ret[200] = "", want[200];
  FILE *f;
  sl_model_info(m, &in);
  if (!*in.active_version) {
    snprintf(p, sizeof(p), "%s/det/current", h->dir);
    assert_int_equal(access(p, F_OK), -1);
    return;
  }
  bool known = false;
  for (size_t i = 0; i < narts; i++)
    if (!strcmp(arts[i]->version, in.active_version)) {
      assert_string_equal(arts[i]->sha, in.active_sha256);
      known = true;
    }
  assert_true(known);
  snprintf(p, sizeof(p), "%s/det/current/det.onnx", h->dir);
  file_sha(p, sha);
  assert_string_equal(sha, in.active_sha256);
  snprintf(p, sizeof(p), "%s/det/%s/det.onnx", h->dir, in.active_version);
  file_sha(p, sha);
  assert_string_equal(sha, in.active_sha256);
  f = fopen(h->retained, "r");
  assert_non_null(f);
  assert_non_null(fgets(ret, sizeof(ret), f));
  fclose(f);
  snprintf(want, sizeof(want), "%s %s", in.active_version, in.active_sha256);
  assert_string_equal(ret, want);
}

/* ---- kill -9 at every step ---------------------------------------------- */

static const struct {
  const char *point;
  int nth;
} crashes[] = {
    {"chunk.half", 1},       {"chunk.half", 4},         {"chunk.persisted", 3},
    {"chunk.persisted", 10}, {"activate.begin", 1},     {"activate.staged", 1},
    {"activate.renamed", 1}, {"activate.persisted", 1}, {"activate.linked", 1},
};

/* One run in a child that dies at the point; returns the chunk bytes it
 * fetched (through a pipe) before it died. */
static uint64_t run_child(host_t *h, const art_t *a, const char *point,
                          int nth) {
  int fds[2], status;
  pid_t pid;
  uint64_t got = 0;
  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    sl_model_t *m;
    int64_t i;
    close(fds[0]);
    store_open(h);
    h->crash_point = point;
    h->crash_nth = nth;
    m = model_open(h, 0);
    if (sl_model_offer(m, a->rec, a->rec_len) < 0)
      _exit(3);
    while ((i = sl_model_next_chunk(m)) >= 0) {
      size_t off = (size_t)i * CHUNK,
             l = a->len - off < CHUNK ? a->len - off : CHUNK;
      uint64_t n = l;
      if (write(fds[1], &n, sizeof(n)) != sizeof(n))
        _exit(4);
      if (sl_model_put_chunk(m, (uint32_t)i, a->data + off, l) < 0)
        _exit(5);
    }
    if (sl_model_activate(m) < 0)
      _exit(6);
    _exit(0); /* the point was never reached */
  }
  close(fds[1]);
  for (;;) {
    uint64_t n;
    ssize_t r = read(fds[0], &n, sizeof(n));
    if (r != sizeof(n))
      break;
    got += n;
  }
  close(fds[0]);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGKILL);
  return got;
}

static void test_kill9_everywhere(void **state) {
  (void)state;
  art_t v1, v2;
  /* 12.5 chunks: the last one short. */
  art_make(&v1, "1.0.0", CHUNK * 12 + 100, 1, NULL, g_priv);
  art_make(&v2, "2.0.0", CHUNK * 12 + 300, 2, NULL, g_priv);
  const art_t *arts[] = {&v1, &v2};
  for (size_t c = 0; c < sizeof(crashes) / sizeof(crashes[0]); c++) {
    for (int which = 0; which < 2; which++) {
      host_t h;
      sl_model_t *m;
      sl_model_info_t in;
      const art_t *a = which ? &v2 : &v1;
      uint64_t before, after;
      host_init(&h);
      if (which) { /* v1 active first, the crash while v2 comes */
        store_open(&h);
        m = model_open(&h, 0);
        assert_int_equal(sl_model_offer(m, v1.rec, v1.rec_len), 0);
        fetch_all(&h, m, &v1);
        assert_int_equal(sl_model_activate(m), 0);
        sl_model_free(m);
        store_close(&h);
      }
      before = run_child(&h, a, crashes[c].point, crashes[c].nth);
      /* Restart: what is active is whole and verified, the retained
       * message agrees, the download goes on from the first missing
       * chunk. */
      store_open(&h);
      m = model_open(&h, 0);
      check_active(&h, m, arts, 2);
      sl_model_info(m, &in);
      if (!strncmp(crashes[c].point, "chunk.", 6)) {
        assert_string_equal(in.active_version, which ? "1.0.0" : "");
        assert_int_equal(in.phase, SL_MODEL_DOWNLOADING);
        /* Every chunk persisted before the kill is kept. */
        uint32_t persisted = !strcmp(crashes[c].point, "chunk.persisted")
                                 ? (uint32_t)crashes[c].nth
                                 : (uint32_t)crashes[c].nth - 1;
        assert_int_equal(in.chunks_have, persisted);
        assert_int_equal(sl_model_next_chunk(m), persisted);
      }
      /* Offering the same record again (the daemon re-reads the topic)
       * changes nothing; then finish. */
      assert_int_equal(sl_model_offer(m, a->rec, a->rec_len), 0);
      h.fetched = 0;
      fetch_all(&h, m, a);
      after = h.fetched;
      if (sl_model_info(m, &in), in.phase == SL_MODEL_DOWNLOADING)
        assert_int_equal(sl_model_activate(m), 0);
      sl_model_info(m, &in);
      assert_string_equal(in.active_version, a->version);
      assert_string_equal(in.active_sha256, a->sha);
      /* No gate limits, no ack asked for: committed at once. */
      assert_int_equal(in.phase, SL_MODEL_COMMITTED);
      if (which)
        assert_string_equal(in.previous_version, "1.0.0");
      check_active(&h, m, arts, 2);
      /* Never refetched more than the chunk torn by the kill. */
      assert_true(before + after <= a->len + CHUNK);
      if (which) {
        char p[600];
        snprintf(p, sizeof(p), "%s/det/1.0.0/det.onnx", h.dir);
        assert_int_equal(access(p, R_OK), 0); /* previous kept on disk */
      }
      sl_model_free(m);
      store_close(&h);
      rm_rf(h.root);
    }
  }
  art_free(&v1);
  art_free(&v2);
}

/* ---- refusals ----------------------------------------------------------- */

static void test_corrupt_chunk(void **state) {
  (void)state;
  host_t h;
  art_t v1;
  sl_model_t *m;
  sl_model_info_t in;
  uint8_t bad[CHUNK];
  host_init(&h);
  store_open(&h);
  art_make(&v1, "1.0.0", CHUNK * 4, 3, NULL, g_priv);
  m = model_open(&h, 0);
  assert_int_equal(sl_model_offer(m, v1.rec, v1.rec_len), 0);
  memcpy(bad, v1.data, CHUNK);
  bad[100] ^= 1;
  /* A flipped bit: refused, not marked, fetched again. */
  assert_int_equal(sl_model_put_chunk(m, 0, bad, CHUNK), SL_ECORRUPT);
  assert_int_equal(sl_model_next_chunk(m), 0);
  assert_int_equal(sl_model_put_chunk(m, 0, v1.data, CHUNK), 0);
  assert_int_equal(sl_model_next_chunk(m), 1);
  /* The same chunk bad three times in a row: the version is refused. */
  memcpy(bad, v1.data + CHUNK, CHUNK);
  bad[0] ^= 0x80;
  for (int i = 0; i < 3; i++)
    assert_int_equal(sl_model_put_chunk(m, 1, bad, CHUNK), SL_ECORRUPT);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_REJECTED);
  assert_string_equal(in.reason, "chunk");
  assert_string_equal(in.active_version, "");
  assert_true(h.statuses > 0);
  /* Not retried when offered again; nothing activated. */
  assert_int_equal(sl_model_offer(m, v1.rec, v1.rec_len), 0);
  assert_int_equal(sl_model_next_chunk(m), -1);
  assert_int_equal(sl_model_activate(m), SL_ENOTFOUND);
  sl_model_free(m);
  store_close(&h);
  rm_rf(h.root);
  art_free(&v1);
}

static void test_wrong_signature(void **state) {
  (void)state;
  host_t h;
  art_t v1, forged;
  sl_model_t *m;
  sl_model_info_t in;
  host_init(&h);
  store_open(&h);
  art_make(&v1, "1.0.0", CHUNK * 2, 4, NULL, g_priv);
  art_make(&forged, "6.6.6", CHUNK * 2, 5, NULL, g_other);
  m = model_open(&h, 0);
  assert_int_equal(sl_model_offer(m, v1.rec, v1.rec_len), 0);
  fetch_all(&h, m, &v1);
  assert_int_equal(sl_model_activate(m), 0);
  assert_int_equal(sl_model_offer(m, forged.rec, forged.rec_len),
                   SL_ESIGNATURE);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_REJECTED);
  assert_string_equal(in.reason, "signature");
  assert_string_equal(in.active_version, "1.0.0");
  assert_int_equal(sl_model_next_chunk(m), -1);
  /* A bit flipped in the signed bytes: refused as well. */
  forged.rec[forged.rec_len / 2] ^= 1;
  assert_true(sl_model_offer(m, forged.rec, forged.rec_len) < 0);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_REJECTED);
  assert_string_equal(in.active_version, "1.0.0");
  sl_model_free(m);
  store_close(&h);
  rm_rf(h.root);
  art_free(&v1);
  art_free(&forged);
}

static void test_disk_too_small(void **state) {
  (void)state;
  host_t h;
  art_t v1;
  sl_model_t *m;
  sl_model_info_t in;
  int status;
  pid_t pid;
  host_init(&h);
  art_make(&v1, "1.0.0", CHUNK * 8, 6, NULL, g_priv);
  /* models.max_bytes below the artifact. */
  store_open(&h);
  m = model_open(&h, CHUNK * 4);
  assert_int_equal(sl_model_offer(m, v1.rec, v1.rec_len), -ENOSPC);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_REJECTED);
  assert_string_equal(in.reason, "disk");
  assert_string_equal(in.active_version, "");
  sl_model_free(m);
  store_close(&h);
  rm_rf(h.root);
  /* The file system refusing the reservation (a file size limit stands in
   * for a full disk: posix_fallocate fails, nothing is fetched). */
  host_init(&h);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct rlimit rl = {CHUNK * 4, CHUNK * 4};
    store_open(&h); /* before the limit: LMDB's own file */
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
      _exit(2);
    m = model_open(&h, 0);
    int rc = sl_model_offer(m, v1.rec, v1.rec_len);
    sl_model_info(m, &in);
    _exit(rc < 0 && in.phase == SL_MODEL_REJECTED &&
                  !strcmp(in.reason, "disk") && sl_model_next_chunk(m) < 0
              ? 0
              : 1);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  store_open(&h);
  m = model_open(&h, 0);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_REJECTED); /* persisted */
  assert_string_equal(in.active_version, "");
  sl_model_free(m);
  store_close(&h);
  rm_rf(h.root);
  art_free(&v1);
}

/* ---- the gate ----------------------------------------------------------- */

static void window(sl_model_window_t *w, uint64_t events, double err_rate,
                   double p95) {
  memset(w, 0, sizeof(*w));
  w->events = events;
  w->status[3] = (uint64_t)((double)events * err_rate);
  w->status[1] = events - w->status[3];
  w->p95_latency_ms = p95;
  for (int i = 0; i < SL_MODEL_HIST_BINS; i++)
    w->score_hist[i] = events / SL_MODEL_HIST_BINS;
}

/* v1 committed; v2 with gate on trial. */
static sl_model_t *setup_trial(host_t *h, art_t *v1, art_t *v2,
                               const sl_model_gate_limits_t *g) {
  sl_model_t *m;
  sl_model_info_t in;
  host_init(h);
  store_open(h);
  art_make(v1, "1.0.0", CHUNK * 3, 7, NULL, g_priv);
  art_make(v2, "2.0.0", CHUNK * 3, 8, g, g_priv);
  m = model_open(h, 0);
  assert_int_equal(sl_model_offer(m, v1->rec, v1->rec_len), 0);
  fetch_all(h, m, v1);
  assert_int_equal(sl_model_activate(m), 0);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_COMMITTED); /* no gate, no ack */
  assert_int_equal(sl_model_offer(m, v2->rec, v2->rec_len), 0);
  fetch_all(h, m, v2);
  assert_int_equal(sl_model_activate(m), 0);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_TRIAL);
  assert_string_equal(in.active_version, "2.0.0");
  return m;
}

static void teardown_trial(host_t *h, sl_model_t *m, art_t *v1, art_t *v2) {
  sl_model_free(m);
  store_close(h);
  rm_rf(h->root);
  art_free(v1);
  art_free(v2);
}

static void test_gate_rolls_back(void **state) {
  (void)state;
  host_t h;
  art_t v1, v2;
  sl_model_window_t w;
  sl_model_info_t in;
  sl_model_gate_limits_t g = {.max_error_rate = 0.05,
                              .max_p95_latency_ms = 50,
                              .min_events = 200,
                              .windows = 3,
                              .ack_timeout_ms = 30000,
                              .timeout_ms = 600000};
  sl_model_t *m = setup_trial(&h, &v1, &v2, &g);
  const art_t *arts[] = {&v1, &v2};
  assert_int_equal(sl_model_ack(m, "2.0.0", true, NULL), 0);
  /* Two windows: not yet judged, whatever they hold. */
  window(&w, 100, 0.2, 10);
  sl_model_gate_window(m, &w, NULL);
  sl_model_gate_window(m, &w, NULL);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_TRIAL);
  /* The third: 20% errors over 300 runs > 5%: back to 1.0.0. */
  sl_model_gate_window(m, &w, NULL);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_ROLLED_BACK);
  assert_string_equal(in.reason, "gate");
  assert_non_null(strstr(in.message, "error rate"));
  assert_string_equal(in.active_version, "1.0.0");
  check_active(&h, m, arts, 2);
  /* Persisted: a restart keeps 1.0.0 and never retries 2.0.0. */
  sl_model_free(m);
  m = model_open(&h, 0);
  sl_model_info(m, &in);
  assert_string_equal(in.active_version, "1.0.0");
  assert_int_equal(in.phase, SL_MODEL_ROLLED_BACK);
  check_active(&h, m, arts, 2);
  assert_int_equal(sl_model_offer(m, v2.rec, v2.rec_len), 0);
  assert_int_equal(sl_model_next_chunk(m), -1);
  teardown_trial(&h, m, &v1, &v2);
}

static void test_gate_latency_and_canary(void **state) {
  (void)state;
  host_t h;
  art_t v1, v2;
  sl_model_window_t w, p;
  sl_model_info_t in;
  sl_model_gate_limits_t g = {
      .max_p95_latency_ms = 50, .min_agreement = 0.9, .windows = 1};
  sl_model_t *m = setup_trial(&h, &v1, &v2, &g);
  window(&w, 100, 0, 80); /* p95 80 ms > 50 */
  window(&p, 100, 0, 20);
  sl_model_gate_window(m, &w, &p);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_ROLLED_BACK);
  assert_non_null(strstr(in.message, "p95"));
  teardown_trial(&h, m, &v1, &v2);

  m = setup_trial(&h, &v1, &v2, &g);
  window(&w, 100, 0, 10);
  w.agree = 70;
  w.disagree = 30; /* 0.7 < 0.9 */
  sl_model_gate_window(m, &w, &p);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_ROLLED_BACK);
  assert_non_null(strstr(in.message, "agreement"));
  teardown_trial(&h, m, &v1, &v2);
}

static void test_gate_commits(void **state) {
  (void)state;
  host_t h;
  art_t v1, v2;
  sl_model_window_t w;
  sl_model_info_t in;
  sl_model_gate_limits_t g = {.max_error_rate = 0.05,
                              .min_events = 200,
                              .windows = 2,
                              .ack_timeout_ms = 30000};
  sl_model_t *m = setup_trial(&h, &v1, &v2, &g);
  window(&w, 150, 0.01, 10);
  sl_model_gate_window(m, &w, NULL);
  sl_model_gate_window(m, &w, NULL);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_TRIAL); /* waits for the ack */
  assert_int_equal(sl_model_ack(m, "1.0.0", true, NULL), SL_ENOTFOUND);
  assert_int_equal(sl_model_ack(m, "2.0.0", true, NULL), 0);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_COMMITTED);
  assert_string_equal(in.active_version, "2.0.0");
  assert_string_equal(in.previous_version, "1.0.0");
  teardown_trial(&h, m, &v1, &v2);
}

static void test_ack(void **state) {
  (void)state;
  host_t h;
  art_t v1, v2;
  sl_model_info_t in;
  sl_model_gate_limits_t g = {.windows = 1, .ack_timeout_ms = 5000};
  /* The app cannot load it. */
  sl_model_t *m = setup_trial(&h, &v1, &v2, &g);
  assert_int_equal(sl_model_ack(m, "2.0.0", false, "bad opset"), 0);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_ROLLED_BACK);
  assert_string_equal(in.reason, "load");
  assert_string_equal(in.active_version, "1.0.0");
  teardown_trial(&h, m, &v1, &v2);
  /* No acknowledgement in time. */
  m = setup_trial(&h, &v1, &v2, &g);
  h.now += 4000000000LL;
  sl_model_tick(m);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_TRIAL);
  h.now += 1000000000LL;
  sl_model_tick(m);
  sl_model_info(m, &in);
  assert_int_equal(in.phase, SL_MODEL_ROLLED_BACK);
  assert_string_equal(in.reason, "ack_timeout");
  assert_string_equal(in.active_version, "1.0.0");
  teardown_trial(&h, m, &v1, &v2);
}

static void test_rollback_crash(void **state) {
  (void)state;
  /* kill -9 right after the rollback's transition: the restart links and
   * announces the previous version. */
  host_t h;
  art_t v1, v2;
  sl_model_window_t w;
  sl_model_gate_limits_t g = {.max_error_rate = 0.01, .windows = 1};
  sl_model_t *m = setup_trial(&h, &v1, &v2, &g);
  const art_t *arts[] = {&v1, &v2};
  sl_model_info_t in;
  int status;
  pid_t pid;
  sl_model_free(m);
  store_close(&h);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    store_open(&h);
    h.crash_point = "rollback.persisted";
    h.crash_nth = 1;
    m = model_open(&h, 0);
    window(&w, 100, 0.5, 1);
    sl_model_gate_window(m, &w, NULL);
    _exit(0);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  store_open(&h);
  m = model_open(&h, 0);
  sl_model_info(m, &in);
  assert_string_equal(in.active_version, "1.0.0");
  check_active(&h, m, arts, 2);
  teardown_trial(&h, m, &v1, &v2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kill9_everywhere),
      cmocka_unit_test(test_corrupt_chunk),
      cmocka_unit_test(test_wrong_signature),
      cmocka_unit_test(test_disk_too_small),
      cmocka_unit_test(test_gate_rolls_back),
      cmocka_unit_test(test_gate_latency_and_canary),
      cmocka_unit_test(test_gate_commits),
      cmocka_unit_test(test_ack),
      cmocka_unit_test(test_rollback_crash),
  };
  int rc;
  g_priv = gen_key(true, &g_pub);
  g_other = gen_key(true, NULL);
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  sl_fleet_key_free(g_priv);
  sl_fleet_key_free(g_pub);
  sl_fleet_key_free(g_other);
  return rc;
}
