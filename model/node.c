/*
 * model/node.c: one model's machine on a node: offer, download, activate,
 * recover. The gate and rollback are model/gate.c's.
 *
 * On disk, under <dir>/<name>/:
 *   .partial/<sha256>.part   the pending version, written in place
 *   .staging-<version>/      the verified file moving into place
 *   <version>/<file>         a version (active, previous), with manifest.sig
 *   current -> <version>     the active one (swapped with rename)
 * The persisted state (ModelNodeState) is the truth; the files are made to
 * agree with it at open (model__reconcile).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "model/model.h"
#include "model/model_node_int.h"

const char *sl_model_phase_name(sl_model_phase_t p) {
  switch (p) {
  case SL_MODEL_IDLE:
    return "IDLE";
  case SL_MODEL_DOWNLOADING:
    return "DOWNLOADING";
  case SL_MODEL_WAITING_WINDOW:
    return "WAITING_WINDOW";
  case SL_MODEL_ACTIVATING:
    return "ACTIVATING";
  case SL_MODEL_TRIAL:
    return "TRIAL";
  case SL_MODEL_COMMITTED:
    return "COMMITTED";
  case SL_MODEL_ROLLED_BACK:
    return "ROLLED_BACK";
  case SL_MODEL_REJECTED:
    return "REJECTED";
  }
  return "UNKNOWN";
}

void model__step(sl_model_t *m, const char *point) {
  if (m->ops.step)
    m->ops.step(m->opaque, point);
}

int64_t model__now(sl_model_t *m) {
  return m->ops.now_ns ? m->ops.now_ns(m->opaque) : 0;
}

static void ref_clear(model_ref_t *r) {
  sl_model_manifest_free(r->mf);
  memset(r, 0, sizeof(*r));
}

static int ref_set(sl_model_t *m, model_ref_t *r, const void *rec, size_t len) {
  char err[256];
  sl_model_manifest_t *mf;
  int rc = sl_model_manifest_open(m->key, rec, len, &mf, err, sizeof(err));
  if (rc < 0)
    return rc;
  ref_clear(r);
  r->mf = mf;
  return 0;
}

void model__ref_move(model_ref_t *dst, model_ref_t *src) {
  ref_clear(dst);
  *dst = *src;
  memset(src, 0, sizeof(*src));
}

const char *model__ref_version(const model_ref_t *r) {
  return r->mf ? r->mf->m->version : "";
}
const char *model__ref_sha(const model_ref_t *r) {
  return r->mf ? r->mf->m->sha256 : "";
}

/* ---- paths -------------------------------------------------------------- */

void model__path(const sl_model_t *m, char *buf, size_t cap, const char *what,
                 const char *arg) {
  if (!strcmp(what, "part"))
    snprintf(buf, cap, "%s/%s/.partial/%s.part", m->dir, m->name, arg);
  else if (!strcmp(what, "staging"))
    snprintf(buf, cap, "%s/%s/.staging-%s", m->dir, m->name, arg);
  else if (!strcmp(what, "version"))
    snprintf(buf, cap, "%s/%s/%s", m->dir, m->name, arg);
  else if (!strcmp(what, "current"))
    snprintf(buf, cap, "%s/%s/current", m->dir, m->name);
  else
    snprintf(buf, cap, "%s/%s", m->dir, m->name);
}

int model__fsync_path(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int rc = 0;
  if (fd < 0)
    return -errno;
  if (fsync(fd) < 0)
    rc = -errno;
  close(fd);
  return rc;
}

static int mkdir_p(const char *path) {
  char tmp[1024];
  snprintf(tmp, sizeof(tmp), "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -errno;
      *p = '/';
    }
  if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
    return -errno;
  return 0;
}

/* Hex SHA-256 of the first size bytes of path (-errno, SL_ECORRUPT short). */
int model__hash_file(const char *path, uint64_t off, uint64_t size,
                     char out[65]) {
  unsigned char buf[65536], d[SHA256_DIGEST_LENGTH];
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
  uint64_t left = size;
  if (fd < 0 || !c) {
    rc = fd < 0 ? -errno : -ENOMEM;
    goto fail;
  }
  EVP_DigestInit_ex(c, EVP_sha256(), NULL);
  while (left) {
    ssize_t n = pread(fd, buf, left < sizeof(buf) ? left : sizeof(buf),
                      (off_t)(off + size - left));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      rc = n < 0 ? -errno : SL_ECORRUPT;
      goto fail;
    }
    EVP_DigestUpdate(c, buf, (size_t)n);
    left -= (uint64_t)n;
  }
  EVP_DigestFinal_ex(c, d, NULL);
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
    snprintf(out + 2 * i, 3, "%02x", d[i]);
fail:
  if (fd >= 0)
    close(fd);
  EVP_MD_CTX_free(c);
  return rc;
}

/* ---- state -------------------------------------------------------------- */

static void ref_pack(const model_ref_t *r, Sluice__V1__ModelRef *p) {
  sluice__v1__model_ref__init(p);
  if (!r->mf)
    return;
  p->version = r->mf->m->version;
  p->sha256 = r->mf->m->sha256;
  p->manifest.data = r->mf->rec;
  p->manifest.len = r->mf->rec_len;
}

int model__persist(sl_model_t *m) {
  Sluice__V1__ModelNodeState s = SLUICE__V1__MODEL_NODE_STATE__INIT;
  Sluice__V1__ModelRef a, p;
  char *failed[SL_MODEL_MAX_FAILED];
  uint8_t *buf;
  size_t len;
  int rc;

  ref_pack(&m->active, &a);
  ref_pack(&m->previous, &p);
  s.active = &a;
  s.previous = &p;
  if (m->pending) {
    s.pending.data = m->pending->rec;
    s.pending.len = m->pending->rec_len;
    s.have.data = m->have;
    s.have.len = (m->pending->m->n_chunk_sha256 + 7) / 8;
  }
  s.phase = (Sluice__V1__ModelPhase)m->phase;
  s.reason = m->reason;
  s.message = m->message;
  for (size_t i = 0; i < m->nfailed; i++)
    failed[i] = m->failed[i];
  s.n_failed_sha256 = m->nfailed;
  s.failed_sha256 = failed;
  s.trial_start_ns = m->trial_start_ns;
  s.acked = m->acked;
  s.bytes_fetched = m->bytes_fetched;
  s.seq = ++m->seq;
  len = sluice__v1__model_node_state__get_packed_size(&s);
  if (!(buf = malloc(len ? len : 1)))
    return -ENOMEM;
  sluice__v1__model_node_state__pack(&s, buf);
  rc = m->ops.persist(m->opaque, m->name, buf, len);
  free(buf);
  return rc;
}

void model__set_phase(sl_model_t *m, sl_model_phase_t p, const char *reason,
                      const char *msg) {
  m->phase = p;
  snprintf(m->reason, sizeof(m->reason), "%s", reason ? reason : "");
  snprintf(m->message, sizeof(m->message), "%s", msg ? msg : "");
}

void model__report(sl_model_t *m) {
  uint8_t *rec;
  size_t len;
  if (!m->ops.status || sl_model_status(m, &rec, &len) < 0)
    return;
  m->ops.status(m->opaque, m->name, rec, len);
  free(rec);
}

void model__announce(sl_model_t *m) {
  char path[1024] = "";
  if (!m->ops.announce)
    return;
  if (m->active.mf)
    sl_model_active_path(m, path, sizeof(path));
  m->ops.announce(m->opaque, m->name, model__ref_version(&m->active),
                  model__ref_sha(&m->active), path);
}

void sl_model_active_path(const sl_model_t *m, char *buf, size_t cap) {
  if (!m->active.mf) {
    if (cap)
      buf[0] = 0;
    return;
  }
  model__path(m, buf, cap, "version", m->active.mf->m->version);
}

/* Points `current` at the active version (or removes it). */
int model__link(sl_model_t *m) {
  char cur[1024], tmp[1100], base[1024];
  model__path(m, cur, sizeof(cur), "current", NULL);
  model__path(m, base, sizeof(base), "base", NULL);
  if (!m->active.mf) {
    if (unlink(cur) < 0 && errno != ENOENT)
      return -errno;
    return 0;
  }
  snprintf(tmp, sizeof(tmp), "%s.tmp", cur);
  (void)unlink(tmp);
  if (symlink(m->active.mf->m->version, tmp) < 0)
    return -errno;
  if (rename(tmp, cur) < 0)
    return -errno;
  return model__fsync_path(base);
}

static void drop_part(sl_model_t *m) {
  char part[1024];
  if (m->part_fd >= 0) {
    close(m->part_fd);
    m->part_fd = -1;
  }
  if (m->pending) {
    model__path(m, part, sizeof(part), "part", m->pending->m->sha256);
    (void)unlink(part);
  }
}

void model__clear_pending(sl_model_t *m) {
  drop_part(m);
  sl_model_manifest_free(m->pending);
  m->pending = NULL;
  free(m->have);
  m->have = NULL;
  m->bad_streak = 0;
}

bool model__failed(const sl_model_t *m, const char *sha) {
  for (size_t i = 0; i < m->nfailed; i++)
    if (!strcmp(m->failed[i], sha))
      return true;
  return false;
}

void model__add_failed(sl_model_t *m, const char *sha) {
  if (model__failed(m, sha))
    return;
  if (m->nfailed == SL_MODEL_MAX_FAILED) {
    memmove(m->failed[0], m->failed[1],
            sizeof(m->failed[0]) * (m->nfailed - 1));
    m->nfailed--;
  }
  snprintf(m->failed[m->nfailed++], 65, "%s", sha);
}

/* Removes what is neither active, previous, pending nor `current`. */
void model__gc(sl_model_t *m) {
  char base[1024], path[1400];
  DIR *d;
  struct dirent *e;
  model__path(m, base, sizeof(base), "base", NULL);
  if (!(d = opendir(base)))
    return;
  while ((e = readdir(d))) {
    const char *n = e->d_name;
    if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "current") ||
        !strcmp(n, ".partial"))
      continue;
    if (m->active.mf && !strcmp(n, m->active.mf->m->version))
      continue;
    if (m->previous.mf && !strcmp(n, m->previous.mf->m->version))
      continue;
    if (!strncmp(n, ".staging-", 9) && m->pending &&
        !strcmp(n + 9, m->pending->m->version))
      continue;
    snprintf(path, sizeof(path), "%s/%s", base, n);
    model__rmtree(path);
  }
  closedir(d);
  snprintf(path, sizeof(path), "%s/.partial", base);
  if ((d = opendir(path))) {
    while ((e = readdir(d))) {
      char want[80] = "";
      if (e->d_name[0] == '.')
        continue;
      if (m->pending)
        snprintf(want, sizeof(want), "%s.part", m->pending->m->sha256);
      if (strcmp(e->d_name, want)) {
        char f[1700];
        snprintf(f, sizeof(f), "%s/%s", path, e->d_name);
        (void)unlink(f);
      }
    }
    closedir(d);
  }
}

void model__rmtree(const char *path) {
  DIR *d = opendir(path);
  struct dirent *e;
  if (!d) {
    (void)unlink(path);
    return;
  }
  while ((e = readdir(d))) {
    char f[1400];
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    snprintf(f, sizeof(f), "%s/%s", path, e->d_name);
    model__rmtree(f);
  }
  closedir(d);
  (void)rmdir(path);
}

/* ---- download ----------------------------------------------------------- */

static uint64_t chunk_len(const Sluice__V1__ModelManifest *mf, uint32_t i) {
  uint64_t off = (uint64_t)i * mf->chunk_size;
  return mf->size - off < mf->chunk_size ? mf->size - off : mf->chunk_size;
}

static bool have(const sl_model_t *m, uint32_t i) {
  return m->have[i / 8] & (1u << (i % 8));
}

/* Opens (creating and reserving) the part file of the pending version. */
static int open_part(sl_model_t *m) {
  char part[1024], dir[1024];
  int rc;
  if (m->part_fd >= 0)
    return 0;
  model__path(m, dir, sizeof(dir), "base", NULL);
  strncat(dir, "/.partial", sizeof(dir) - strlen(dir) - 1);
  if ((rc = mkdir_p(dir)) < 0)
    return rc;
  model__path(m, part, sizeof(part), "part", m->pending->m->sha256);
  if ((m->part_fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
    return -errno;
  if ((rc = posix_fallocate(m->part_fd, 0, (off_t)m->pending->m->size))) {
    close(m->part_fd);
    m->part_fd = -1;
    (void)unlink(part);
    return -rc;
  }
  return 0;
}

/* Re-checks every chunk marked as there (a write the crash tore). */
static int recheck(sl_model_t *m) {
  const Sluice__V1__ModelManifest *mf = m->pending->m;
  char part[1024], h[65];
  bool changed = false;
  model__path(m, part, sizeof(part), "part", mf->sha256);
  for (uint32_t i = 0; i < mf->n_chunk_sha256; i++) {
    if (!have(m, i))
      continue;
    if (model__hash_file(part, (uint64_t)i * mf->chunk_size, chunk_len(mf, i),
                         h) < 0 ||
        strcmp(h, mf->chunk_sha256[i])) {
      m->have[i / 8] &= (uint8_t) ~(1u << (i % 8));
      changed = true;
    }
  }
  return changed ? model__persist(m) : 0;
}

static int reject(sl_model_t *m, const char *reason, const char *msg, int err) {
  if (m->pending && strcmp(reason, "signature") && strcmp(reason, "manifest"))
    model__add_failed(m, m->pending->m->sha256);
  model__clear_pending(m);
  model__set_phase(m, SL_MODEL_REJECTED, reason, msg);
  m->n_rejected++;
  (void)model__persist(m);
  model__report(m);
  return err;
}

int sl_model_offer(sl_model_t *m, const void *rec, size_t len) {
  sl_model_manifest_t *mf = NULL;
  char err[512];
  int rc;
  uint64_t used = 0;

  if ((rc = sl_model_manifest_open(m->key, rec, len, &mf, err, sizeof(err))) <
      0)
    return reject(m, rc == SL_ESIGNATURE ? "signature" : "manifest", err, rc);
  if (strcmp(mf->m->name, m->name)) {
    sl_model_manifest_free(mf);
    return SL_ENOTFOUND; /* another model's record */
  }
  if ((m->active.mf && !strcmp(mf->m->sha256, m->active.mf->m->sha256)) ||
      (m->pending && !strcmp(mf->m->sha256, m->pending->m->sha256)) ||
      model__failed(m, mf->m->sha256)) {
    sl_model_manifest_free(mf);
    return 0;
  }
  model__clear_pending(m);
  m->pending = mf;
  if (m->active.mf)
    used += m->active.mf->m->size;
  if (m->previous.mf)
    used += m->previous.mf->m->size;
  if (m->max_bytes && used + mf->m->size > m->max_bytes) {
    snprintf(
        err, sizeof(err),
        "%s %s needs %llu bytes, models.max_bytes %llu leaves %llu",
        mf->m->name, mf->m->version, (unsigned long long)mf->m->size,
        (unsigned long long)m->max_bytes,
        (unsigned long long)(m->max_bytes > used ? m->max_bytes - used : 0));
    return reject(m, "disk", err, -ENOSPC);
  }
  if ((rc = open_part(m)) < 0) {
    snprintf(err, sizeof(err), "%s %s: cannot reserve %llu bytes: %s",
             mf->m->name, mf->m->version, (unsigned long long)mf->m->size,
             sl_strerror(rc));
    return reject(m, "disk", err, rc);
  }
  if (!(m->have = calloc((mf->m->n_chunk_sha256 + 7) / 8, 1)))
    return -ENOMEM;
  m->bytes_fetched = 0;
  model__set_phase(m, SL_MODEL_DOWNLOADING, "", "");
  if ((rc = model__persist(m)) < 0)
    return rc;
  model__report(m);
  return 0;
}

int64_t sl_model_next_chunk(const sl_model_t *m) {
  if (!m->pending || m->phase != SL_MODEL_DOWNLOADING)
    return -1;
  for (uint32_t i = 0; i < m->pending->m->n_chunk_sha256; i++)
    if (!have(m, i))
      return i;
  return -1;
}

const sl_model_manifest_t *sl_model_pending(const sl_model_t *m) {
  return m->pending;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off) {
  while (n) {
    ssize_t w = pwrite(fd, p, n, off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    p += w;
    n -= (size_t)w;
    off += w;
  }
  return 0;
}

int sl_model_put_chunk(sl_model_t *m, uint32_t index, const void *data,
                       size_t len) {
  const Sluice__V1__ModelManifest *mf;
  unsigned char d[SHA256_DIGEST_LENGTH];
  char h[65], msg[256];
  off_t off;
  int rc;

  if (!m->pending || m->phase != SL_MODEL_DOWNLOADING)
    return SL_ENOTFOUND;
  mf = m->pending->m;
  if (index >= mf->n_chunk_sha256)
    return -ERANGE;
  m->bytes_fetched += len;
  if (have(m, index))
    return 0;
  SHA256(data, len, d);
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
    snprintf(h + 2 * i, 3, "%02x", d[i]);
  if (len != chunk_len(mf, index) || strcmp(h, mf->chunk_sha256[index])) {
    m->n_corrupt++;
    m->bad_streak = m->bad_index == index ? m->bad_streak + 1 : 1;
    m->bad_index = index;
    if (m->bad_streak >= 3) {
      snprintf(msg, sizeof(msg),
               "%s %s: chunk %u failed its hash %u times in a row", mf->name,
               mf->version, index, m->bad_streak);
      reject(m, "chunk", msg, SL_ECORRUPT);
    }
    return SL_ECORRUPT;
  }
  m->bad_streak = 0;
  if ((rc = open_part(m)) < 0)
    return rc;
  off = (off_t)((uint64_t)index * mf->chunk_size);
  /* Two writes so the crash test can stop between them (a torn chunk). */
  if ((rc = pwrite_all(m->part_fd, data, len / 2, off)) < 0)
    return rc;
  model__step(m, "chunk.half");
  if ((rc = pwrite_all(m->part_fd, (const uint8_t *)data + len / 2,
                       len - len / 2, off + (off_t)(len / 2))) < 0)
    return rc;
  if (fdatasync(m->part_fd) < 0)
    return -errno;
  m->have[index / 8] |= (uint8_t)(1u << (index % 8));
  if ((rc = model__persist(m)) < 0) {
    m->have[index / 8] &= (uint8_t) ~(1u << (index % 8));
    return rc;
  }
  model__step(m, "chunk.persisted");
  return 0;
}

/* ---- activation --------------------------------------------------------- */

/* From the staged or renamed file to the persisted transition. */
static int finish_activation(sl_model_t *m) {
  char ver[1024];
  sl_model_manifest_t *mf = m->pending;
  int rc;

  /* The transition: one persisted state makes it active. */
  model__ref_move(&m->previous, &m->active);
  m->active.mf = mf;
  m->pending = NULL;
  free(m->have);
  m->have = NULL;
  m->trial_start_ns = model__now(m);
  m->acked = false;
  model__gate_reset(m);
  model__set_phase(m, SL_MODEL_TRIAL, "", "");
  if ((rc = model__persist(m)) < 0)
    return rc;
  m->n_activated++;
  model__step(m, "activate.persisted");
  model__path(m, ver, sizeof(ver), "version", mf->m->version);
  if ((rc = model__link(m)) < 0)
    return rc;
  model__step(m, "activate.linked");
  model__announce(m);
  model__report(m);
  model__gc(m);
  model__gate_check(m); /* a version with nothing to wait for commits */
  return 0;
}

/* Moves the verified file into <version>/ (staging, fsync, rename). */
static int place(sl_model_t *m, const char *from) {
  const Sluice__V1__ModelManifest *mf = m->pending->m;
  char stg[1024], ver[1024], file[1400], sig[1400], base[1024];
  const char *fname = mf->n_files ? mf->files[0]->path : "model.bin";
  int fd, rc;

  model__path(m, stg, sizeof(stg), "staging", mf->version);
  model__path(m, ver, sizeof(ver), "version", mf->version);
  model__path(m, base, sizeof(base), "base", NULL);
  if ((rc = mkdir_p(stg)) < 0)
    return rc;
  snprintf(file, sizeof(file), "%s/%s", stg, fname);
  if (strcmp(from, file) && rename(from, file) < 0)
    return -errno;
  snprintf(sig, sizeof(sig), "%s/manifest.sig", stg);
  if ((fd = open(sig, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
    return -errno;
  rc = pwrite_all(fd, m->pending->rec, m->pending->rec_len, 0);
  if (!rc && fsync(fd) < 0)
    rc = -errno;
  close(fd);
  if (rc < 0 || (rc = model__fsync_path(file)) < 0 ||
      (rc = model__fsync_path(stg)) < 0)
    return rc;
  model__step(m, "activate.staged");
  /* A directory of the same version left from a failed try goes first. */
  if (!(m->active.mf && !strcmp(m->active.mf->m->version, mf->version)) &&
      !(m->previous.mf && !strcmp(m->previous.mf->m->version, mf->version)))
    model__rmtree(ver);
  else
    return SL_EEXIST;
  if (rename(stg, ver) < 0)
    return -errno;
  if ((rc = model__fsync_path(base)) < 0)
    return rc;
  model__step(m, "activate.renamed");
  return 0;
}

int sl_model_activate(sl_model_t *m) {
  const Sluice__V1__ModelManifest *mf;
  sl_model_manifest_t *again = NULL;
  char part[1024], h[65], err[512];
  int rc;

  if (!m->pending || m->phase != SL_MODEL_DOWNLOADING ||
      sl_model_next_chunk(m) >= 0)
    return m->pending ? SL_EBACKPRESSURE : SL_ENOTFOUND;
  mf = m->pending->m;
  model__step(m, "activate.begin");
  /* The signature again (the key may have been rotated) and the whole
   * file's hash. */
  if ((rc = sl_model_manifest_open(m->key, m->pending->rec, m->pending->rec_len,
                                   &again, err, sizeof(err))) < 0)
    return reject(m, "signature", err, rc);
  sl_model_manifest_free(again);
  model__path(m, part, sizeof(part), "part", mf->sha256);
  if (m->part_fd >= 0 && fsync(m->part_fd) < 0)
    return -errno;
  if ((rc = model__hash_file(part, 0, mf->size, h)) < 0 ||
      strcmp(h, mf->sha256)) {
    snprintf(err, sizeof(err),
             "%s %s: the whole file's SHA-256 is %s, the "
             "manifest says %s",
             mf->name, mf->version, rc < 0 ? "?" : h, mf->sha256);
    return reject(m, "digest", err, SL_ECORRUPT);
  }
  if (m->part_fd >= 0) {
    close(m->part_fd);
    m->part_fd = -1;
  }
  model__set_phase(m, SL_MODEL_ACTIVATING, "", "");
  if ((rc = model__persist(m)) < 0)
    return rc;
  if ((rc = place(m, part)) < 0) {
    snprintf(err, sizeof(err), "%s %s: cannot move into place: %s", mf->name,
             mf->version, sl_strerror(rc));
    return reject(m, "activate", err, rc);
  }
  return finish_activation(m);
}

/* ---- open and recovery -------------------------------------------------- */

/* ACTIVATING at open: wherever the file got to, finish or start over. */
static int recover_activation(sl_model_t *m) {
  const Sluice__V1__ModelManifest *mf = m->pending->m;
  const char *fname = mf->n_files ? mf->files[0]->path : "model.bin";
  char p[1400], d[1024], h[65];

  model__path(m, d, sizeof(d), "version", mf->version);
  snprintf(p, sizeof(p), "%s/%s", d, fname);
  if (model__hash_file(p, 0, mf->size, h) == 0 && !strcmp(h, mf->sha256))
    return finish_activation(m); /* renamed, not persisted */
  model__path(m, d, sizeof(d), "staging", mf->version);
  snprintf(p, sizeof(p), "%s/%s", d, fname);
  if (model__hash_file(p, 0, mf->size, h) == 0 && !strcmp(h, mf->sha256)) {
    int rc = place(m, p);
    return rc < 0 ? rc : finish_activation(m);
  }
  /* Back to the part file (or to fetching again what is not there). */
  m->phase = SL_MODEL_DOWNLOADING;
  if (open_part(m) == 0 && recheck(m) == 0 && sl_model_next_chunk(m) < 0)
    return sl_model_activate(m);
  return model__persist(m);
}

static int load_state(sl_model_t *m, const void *state, size_t len) {
  Sluice__V1__ModelNodeState *s =
      sluice__v1__model_node_state__unpack(NULL, len, state);
  int rc = 0;
  if (!s)
    return SL_ECORRUPT;
  if (s->active && s->active->manifest.len &&
      (rc = ref_set(m, &m->active, s->active->manifest.data,
                    s->active->manifest.len)) < 0)
    goto out;
  if (s->previous && s->previous->manifest.len &&
      (rc = ref_set(m, &m->previous, s->previous->manifest.data,
                    s->previous->manifest.len)) < 0)
    goto out;
  if (s->pending.len) {
    char err[256];
    if (sl_model_manifest_open(m->key, s->pending.data, s->pending.len,
                               &m->pending, err, sizeof(err)) < 0) {
      m->pending = NULL; /* e.g. the key changed: fetch it again */
    } else {
      size_t bl = (m->pending->m->n_chunk_sha256 + 7) / 8;
      if (!(m->have = calloc(bl, 1))) {
        rc = -ENOMEM;
        goto out;
      }
      if (s->have.len == bl)
        memcpy(m->have, s->have.data, bl);
    }
  }
  m->phase = (sl_model_phase_t)s->phase;
  snprintf(m->reason, sizeof(m->reason), "%s", s->reason);
  snprintf(m->message, sizeof(m->message), "%s", s->message);
  for (size_t i = 0; i < s->n_failed_sha256; i++)
    model__add_failed(m, s->failed_sha256[i]);
  m->trial_start_ns = s->trial_start_ns;
  m->acked = s->acked;
  m->bytes_fetched = s->bytes_fetched;
  m->seq = s->seq;
out:
  sluice__v1__model_node_state__free_unpacked(s, NULL);
  return rc;
}

int sl_model_open(const sl_model_conf_t *conf, const sl_model_ops_t *ops,
                  void *opaque, const void *state, size_t len,
                  sl_model_t **out) {
  sl_model_t *m;
  int rc;

  *out = NULL;
  if (!model__safe_component(conf->name))
    return SL_ECONFIG;
  if (!(m = calloc(1, sizeof(*m))))
    return -ENOMEM;
  m->part_fd = -1;
  m->ops = *ops;
  m->opaque = opaque;
  m->key = conf->key;
  m->max_bytes = conf->max_bytes;
  m->dir = strdup(conf->dir);
  m->name = strdup(conf->name);
  m->node_id = strdup(conf->node_id ? conf->node_id : "");
  m->phase = SL_MODEL_IDLE;
  if (!m->dir || !m->name || !m->node_id) {
    rc = -ENOMEM;
    goto fail;
  }
  if (state && len && (rc = load_state(m, state, len)) < 0)
    goto fail;
  {
    char base[1024];
    model__path(m, base, sizeof(base), "base", NULL);
    if ((rc = mkdir_p(base)) < 0)
      goto fail;
  }
  if (m->pending && m->phase == SL_MODEL_ACTIVATING) {
    if ((rc = recover_activation(m)) < 0)
      goto fail;
  } else if (m->pending) {
    m->phase = SL_MODEL_DOWNLOADING;
    if ((rc = open_part(m)) < 0 || (rc = recheck(m)) < 0)
      goto fail;
  }
  /* The link and the apps follow the persisted state. */
  (void)model__link(m);
  model__gc(m);
  model__announce(m);
  model__gate_check(m); /* a trial with nothing to wait for commits */
  *out = m;
  return 0;
fail:
  sl_model_free(m);
  return rc;
}

void sl_model_free(sl_model_t *m) {
  if (!m)
    return;
  if (m->part_fd >= 0)
    close(m->part_fd);
  sl_model_manifest_free(m->pending);
  free(m->have);
  ref_clear(&m->active);
  ref_clear(&m->previous);
  free(m->dir);
  free(m->name);
  free(m->node_id);
  free(m);
}
