/*
 * The config's identity and the config directory watch (daemon/daemon.h).
 *
 * Identity: the SHA-256 of the file's bytes, a generation (1 at start, +1
 * per applied reload), when it was applied, and the last reload's result;
 * /v1/status shows them as "config" so an operator (or `sluice ctl reload
 * --wait-healthy`) sees which file runs.
 *
 * Watch (config.watch): inotify (libuv's uv_fs_event) on the directory
 * holding the config file, not on the file: Kubernetes updates a ConfigMap
 * volume by writing a new timestamped directory and renaming a new `..data`
 * symlink over the old one (the file name is a symlink through `..data`, so
 * the file itself never changes), and editors write a temporary file and
 * rename it over the old one (a watch on the old inode would go deaf). An
 * event on the file's name or on `..data` restarts a debounce timer; when it
 * fires, a reload round runs like SIGHUP's (parse on the pool, two-phase apply
 * on the loop), except that a file whose hash equals the running one is left
 * alone.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "daemon/daemon.h"
#include "telemetry/log.h"

/* Events closer together than this make one reload. */
#define WATCH_DEBOUNCE_MS 500u

struct sl_cfgwatch {
  uv_fs_event_t ev;
  uv_timer_t debounce;
  int on;
  char dir[4096];
  char base[256];       /* the config file's name in dir */
  pthread_mutex_t lock; /* the identity below (the admin thread reads it) */
  char sha[65];         /* applied */
  uint64_t generation;
  int64_t applied_ns;   /* wall clock */
  char last_result[16]; /* "", "applied", "refused" */
  char last_sha[65];
  int64_t last_ns;
  char last_error[512];
};

int sl_cfgwatch_hash_file(const char *path, char hex[65]) {
  unsigned char md[EVP_MAX_MD_SIZE], buf[16384];
  unsigned mdlen = 0;
  EVP_MD_CTX *ctx;
  FILE *f;
  size_t n;
  int rc = 0;

  hex[0] = 0;
  if (!(f = fopen(path, "rb")))
    return -errno;
  if (!(ctx = EVP_MD_CTX_new())) {
    fclose(f);
    return -ENOMEM;
  }
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
    EVP_DigestUpdate(ctx, buf, n);
  if (ferror(f))
    rc = -EIO;
  EVP_DigestFinal_ex(ctx, md, &mdlen);
  EVP_MD_CTX_free(ctx);
  fclose(f);
  if (rc < 0)
    return rc;
  for (unsigned i = 0; i < mdlen && i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
  return 0;
}

static void hash_bytes(const char *buf, size_t len, char hex[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  hex[0] = 0;
  if (EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) != 1)
    return;
  for (unsigned i = 0; i < mdlen && i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

int sl_cfgwatch_load(sl_daemon_t *dm, int skip_same, sl_config_t **out,
                     char sha[65], int *unchanged, char *err, size_t errlen) {
  char *buf;
  size_t len;
  int rc;

  *out = NULL;
  *unchanged = 0;
  sha[0] = 0;
  /* One read: a FIFO or a file replaced meanwhile gives one set of bytes. */
  if ((rc = sl_config_read_file(dm->config_path, &buf, &len, err, errlen)) < 0)
    return rc;
  hash_bytes(buf, len, sha);
  if (skip_same && sl_cfgwatch_same(dm, sha))
    *unchanged = 1;
  else
    rc = sl_config_load_layers(dm->config_path, buf, len, dm->reload_remote,
                               "fleet layer", environ, out, err, errlen);
  free(buf);
  return rc;
}

static int64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int sl_cfgwatch_init(sl_daemon_t *dm, const char *sha) {
  struct sl_cfgwatch *w = calloc(1, sizeof(*w));
  if (!w)
    return -ENOMEM;
  pthread_mutex_init(&w->lock, NULL);
  snprintf(w->sha, sizeof(w->sha), "%s", sha);
  w->generation = 1;
  w->applied_ns = wall_ns();
  dm->cwatch = w;
  return 0;
}

void sl_cfgwatch_result(sl_daemon_t *dm, int rc, const char *sha,
                        const char *err) {
  struct sl_cfgwatch *w = dm->cwatch;
  if (!w)
    return;
  pthread_mutex_lock(&w->lock);
  w->last_ns = wall_ns();
  snprintf(w->last_result, sizeof(w->last_result), "%s",
           rc == 0 ? "applied" : "refused");
  snprintf(w->last_sha, sizeof(w->last_sha), "%s", sha ? sha : "");
  snprintf(w->last_error, sizeof(w->last_error), "%s",
           rc == 0 || !err ? "" : err);
  if (rc == 0) {
    snprintf(w->sha, sizeof(w->sha), "%s", sha ? sha : "");
    w->generation++;
    w->applied_ns = w->last_ns;
  }
  pthread_mutex_unlock(&w->lock);
}

int sl_cfgwatch_same(sl_daemon_t *dm, const char *sha) {
  struct sl_cfgwatch *w = dm->cwatch;
  int same;
  if (!w || !*sha)
    return 0;
  pthread_mutex_lock(&w->lock);
  same = !strcmp(w->sha, sha);
  pthread_mutex_unlock(&w->lock);
  return same;
}

static json_t *time_json(int64_t ns) {
  char buf[40];
  struct tm tm;
  time_t s = (time_t)(ns / 1000000000);
  gmtime_r(&s, &tm);
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return json_string(buf);
}

void sl_cfgwatch_status(sl_daemon_t *dm, json_t *root) {
  struct sl_cfgwatch *w = dm->cwatch;
  json_t *o, *last;
  if (!w)
    return;
  o = json_object();
  pthread_mutex_lock(&w->lock);
  json_object_set_new(o, "path", json_string(dm->config_path));
  json_object_set_new(o, "sha256", json_string(w->sha));
  json_object_set_new(o, "generation", json_integer((json_int_t)w->generation));
  json_object_set_new(o, "applied_at", time_json(w->applied_ns));
  json_object_set_new(o, "watch", json_boolean(w->on));
  if (*w->last_result) {
    last = json_object();
    json_object_set_new(last, "result", json_string(w->last_result));
    json_object_set_new(last, "sha256", json_string(w->last_sha));
    json_object_set_new(last, "at", time_json(w->last_ns));
    if (*w->last_error)
      json_object_set_new(last, "error", json_string(w->last_error));
    json_object_set_new(o, "last_reload", last);
  }
  pthread_mutex_unlock(&w->lock);
  json_object_set_new(root, "config", o);
}

static void on_debounce(uv_timer_t *t) {
  sl_daemon_t *dm = t->data;
  if (!dm->stopping)
    sl_daemon__reload_watch(dm);
}

static void on_event(uv_fs_event_t *ev, const char *name, int events,
                     int status) {
  sl_daemon_t *dm = ev->data;
  struct sl_cfgwatch *w = dm->cwatch;
  (void)events;
  if (status < 0) {
    sl_warn(SL_LOG_CTX_CONFIG, NULL, "config watch on %s: %s", w->dir,
            uv_strerror(status));
    return;
  }
  /* Only the file itself and kubelet's ..data count: a log or a socket in
   * the same directory must not keep pushing the reload back. */
  if (name && strcmp(name, w->base) && strcmp(name, "..data"))
    return;
  sl_debug(SL_LOG_CTX_CONFIG, NULL, "config watch: %s changed",
           name ? name : w->dir);
  uv_timer_start(&w->debounce, on_debounce, WATCH_DEBOUNCE_MS, 0);
}

int sl_cfgwatch_start(sl_daemon_t *dm) {
  struct sl_cfgwatch *w = dm->cwatch;
  char copy[4096];
  int rc;
  if (!w || !dm->in.cfg->reload.watch)
    return 0;
  snprintf(copy, sizeof(copy), "%s", dm->config_path);
  snprintf(w->dir, sizeof(w->dir), "%s", dirname(copy));
  snprintf(copy, sizeof(copy), "%s", dm->config_path);
  snprintf(w->base, sizeof(w->base), "%s", basename(copy));
  uv_fs_event_init(&dm->loop, &w->ev);
  uv_timer_init(&dm->loop, &w->debounce);
  w->ev.data = w->debounce.data = dm;
  if ((rc = uv_fs_event_start(&w->ev, on_event, w->dir, 0)) < 0) {
    sl_error(SL_LOG_CTX_CONFIG, NULL, "config watch on %s: %s", w->dir,
             uv_strerror(rc));
    uv_close((uv_handle_t *)&w->ev, NULL);
    uv_close((uv_handle_t *)&w->debounce, NULL);
    return rc;
  }
  pthread_mutex_lock(&w->lock);
  w->on = 1;
  pthread_mutex_unlock(&w->lock);
  sl_info(SL_LOG_CTX_CONFIG, NULL,
          "config watch: reloading when %s changes (debounce %u ms)", w->dir,
          WATCH_DEBOUNCE_MS);
  return 0;
}

void sl_cfgwatch_close(sl_daemon_t *dm) {
  struct sl_cfgwatch *w = dm->cwatch;
  if (!w || !w->on)
    return;
  uv_close((uv_handle_t *)&w->ev, NULL);
  uv_close((uv_handle_t *)&w->debounce, NULL);
  pthread_mutex_lock(&w->lock);
  w->on = 0;
  pthread_mutex_unlock(&w->lock);
}

void sl_cfgwatch_free(sl_daemon_t *dm) {
  struct sl_cfgwatch *w = dm->cwatch;
  if (!w)
    return;
  pthread_mutex_destroy(&w->lock);
  free(w);
  dm->cwatch = NULL;
}
