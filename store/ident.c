/*
 * ident.c: the store's identity and file modes.
 *
 * A store gets a random 128-bit id when it is created (meta "node_id",
 * which the uplink also uses to key its checkpoints). It is kept again,
 * beside data.mdb, in the small text file DIR/store.id. A read-write open
 * compares the two: an empty, missing, replaced or foreign data.mdb (whose id
 * differs, or which has none) in a directory whose store.id names a store is
 * refused with SL_ESTOREID rather than silently becoming a new, empty store
 * (acknowledged events gone, offsets restarting at 0). SL_STORE_ACCEPT_NEW
 * opens it anyway and rewrites store.id. A new directory (neither file) gets
 * both.
 *
 * store.id also carries high-water marks: every stream's next offset as of
 * a durable commit (sync always) or fsync (sync interval), refreshed by the
 * writer at most every 10 s and at close. A data.mdb whose streams end
 * below them is an older copy (restored from a stale backup or snapshot):
 * acknowledged events are missing and their offsets would be handed out
 * again, so it is refused the same way. The marks only ever trail what is
 * durable, so a crash or power loss never trips them.
 *
 * Ordering: the meta id is committed before store.id is written, so a crash
 * between the two leaves a store whose sidecar is missing, which the next
 * open recreates from meta (never a sidecar naming an uncommitted store).
 * store.id is written to a temporary file, fsynced, renamed, and the
 * directory fsynced.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"

#define SIDE_NAME "store.id"
#define SIDE_MAX 4096

static void hex(char out[33], const uint8_t id[16]) {
  for (int i = 0; i < 16; i++)
    snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static int unhex(const char *s, size_t n, uint8_t *out) {
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1 ||
        !strchr("0123456789abcdef", s[2 * i]) ||
        !strchr("0123456789abcdef", s[2 * i + 1]))
      return -1;
    out[i] = (uint8_t)v;
  }
  return 0;
}

/* Parses store.id: "key=value" lines, '#' comments; store_id required. */
static int side_parse(sl_store_t *st, char *text) {
  bool have = false;
  char *save = NULL;
  size_t cap = 0;

  for (char *line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    char *eq = strchr(line, '=');
    if (line[0] == '#' || !eq)
      continue;
    *eq = '\0';
    if (!strcmp(line, "store_id") && strlen(eq + 1) == 32 &&
        unhex(eq + 1, 16, st->side_id) == 0)
      have = true;
    else if (!strcmp(line, "created_ns"))
      st->side_created_ns = strtoll(eq + 1, NULL, 10);
    else if (!strcmp(line, "hwm_ns"))
      st->side_hwm_ns = strtoll(eq + 1, NULL, 10);
    else if (!strncmp(line, "next.", 5)) {
      char *end;
      unsigned long id = strtoul(line + 5, &end, 10);
      unsigned long long next = strtoull(eq + 1, NULL, 10);
      if (*end || id == 0 || id > STORE_MAX_STREAMS)
        return -1;
      if (st->nside_hwm == cap) {
        size_t ncap = cap ? cap * 2 : 16;
        struct store_hwm *nh = realloc(st->side_hwm, ncap * sizeof(*nh));
        if (!nh)
          return -1;
        st->side_hwm = nh;
        cap = ncap;
      }
      st->side_hwm[st->nside_hwm].stream = (uint32_t)id;
      st->side_hwm[st->nside_hwm++].next = next;
    }
  }
  return have ? 0 : -1;
}

/* Sets mode on path unless it already is exactly that. A directory someone
 * else owns (e.g. root:sluice 0770 made by the installer) is left alone:
 * only its owner could change it. */
static int set_mode(const char *path, mode_t mode, char *errstr,
                    size_t errlen) {
  struct stat sb;

  if (stat(path, &sb) < 0) {
    if (errno == ENOENT)
      return 0;
    store__seterr(errstr, errlen, "cannot stat %s: %s", path, strerror(errno));
    return -errno;
  }
  if (S_ISDIR(sb.st_mode) && sb.st_uid != geteuid())
    return 0;
  if ((sb.st_mode & 07777) != mode && chmod(path, mode) < 0) {
    int rc = -errno;
    store__seterr(errstr, errlen, "cannot set mode %04o on %s: %s",
                  (unsigned)mode, path, strerror(errno));
    return rc;
  }
  return 0;
}

int store__ident_pre(sl_store_t *st, char *errstr, size_t errlen) {
  static const char *const files[] = {"data.mdb", "lock.mdb", "sluice.lock",
                                      SIDE_NAME};
  char path[4096], buf[SIDE_MAX + 1];
  struct stat sb;
  ssize_t n;
  int fd, rc;

  /* Explicit modes, whatever the umask: the log holds the plant's data. */
  if ((rc = set_mode(st->dir, 0700, errstr, errlen)))
    return rc;
  for (size_t i = 0; i < SL_ARRAY_SIZE(files); i++) {
    snprintf(path, sizeof(path), "%s/%s", st->dir, files[i]);
    if ((rc = set_mode(path, 0600, errstr, errlen)))
      return rc;
  }

  snprintf(path, sizeof(path), "%s/%s", st->dir, SIDE_NAME);
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT)
      return 0;
    rc = -errno;
    store__seterr(errstr, errlen, "cannot read %s: %s", path, strerror(errno));
    return rc;
  }
  n = read(fd, buf, SIDE_MAX);
  close(fd);
  buf[n > 0 ? n : 0] = '\0';
  if (n <= 0 || side_parse(st, buf) < 0) {
    store__seterr(
        errstr, errlen,
        "%s is unreadable or has no store_id line: restore it, or start "
        "with --accept-new-store to accept the store in %s as it is",
        path, st->dir);
    if (!(st->opts.flags & SL_STORE_ACCEPT_NEW))
      return SL_ESTOREID;
    if (errstr && errlen)
      errstr[0] = '\0';
    return 0; /* accepted: rewritten after the open */
  }
  st->have_side = true;

  /* A store existed here: LMDB would turn a missing or zero-length
   * data.mdb into a new one. Refuse before it touches anything. */
  snprintf(path, sizeof(path), "%s/data.mdb", st->dir);
  if (!(st->opts.flags & SL_STORE_ACCEPT_NEW) &&
      (stat(path, &sb) < 0 || sb.st_size == 0)) {
    char id[33];
    hex(id, st->side_id);
    store__seterr(
        errstr, errlen,
        "%s is %s, but %s/" SIDE_NAME " says store %s was created here: "
        "its events and offsets are gone. Restore data.mdb from a backup "
        "(with its store.id), or start once with --accept-new-store to "
        "begin a new, empty store",
        path, stat(path, &sb) < 0 ? "missing" : "empty (0 bytes)", st->dir, id);
    return SL_ESTOREID;
  }
  return 0;
}

/* Records the creation time in meta. */
static int put_created(sl_store_t *st, MDB_txn *txn) {
  uint8_t b[8];

  st->created_ns = sl_now_wall_ns();
  sl_put_be64(b, (uint64_t)st->created_ns);
  return store__err(st,
                    store__meta_put(txn, st->dbi_meta, "created_ns", 10, b, 8));
}

int store__ident_check(sl_store_t *st, MDB_txn *txn, bool fresh, char *errstr,
                       size_t errlen) {
  bool accept = (st->opts.flags & SL_STORE_ACCEPT_NEW) != 0;
  MDB_val k = {7, "node_id"}, v;
  char side[33], mine[33];
  int rc;

  /* The identity is meta "node_id", made with the format record (so also
   * in this txn when fresh); the uplink keys its checkpoints by it too. */
  if (mdb_get(txn, st->dbi_meta, &k, &v) != 0 || v.mv_size != 16) {
    store__seterr(errstr, errlen, "store has no identity record (node_id)");
    return SL_ECORRUPT;
  }
  memcpy(st->store_id, v.mv_data, 16);
  k.mv_size = 10;
  k.mv_data = "created_ns";
  if (mdb_get(txn, st->dbi_meta, &k, &v) == 0 && v.mv_size == 8)
    st->created_ns = (int64_t)sl_get_be64(v.mv_data);
  if (st->rdonly)
    return 0; /* tools read what is there; only the daemon enforces */
  if (st->have_side && memcmp(st->store_id, st->side_id, 16) == 0)
    return 0;
  if (st->have_side && !accept) {
    hex(side, st->side_id);
    hex(mine, st->store_id);
    store__seterr(
        errstr, errlen,
        "%s/data.mdb %s%s, but %s/" SIDE_NAME " says store %s was "
        "created here: the data file was emptied or replaced, and the "
        "events of store %s are not in it. Put the right data.mdb back, "
        "or start once with --accept-new-store to use this one",
        st->dir, fresh ? "is a new, empty store" : "belongs to store ",
        fresh ? "" : mine, st->dir, side, side);
    return SL_ESTOREID;
  }
  /* A new store, an accepted one, a lost sidecar, or a store made before
   * sidecars existed: store.id follows the data. */
  if (fresh && (rc = put_created(st, txn)))
    return rc;
  st->write_side = true;
  return 0;
}

/* Compares the streams as loaded with store.id's high-water marks. */
static int hwm_check(sl_store_t *st, char *errstr, size_t errlen) {
  const store_writer_t *w = &st->w;

  if (!st->have_side || st->write_side ||
      memcmp(st->store_id, st->side_id, 16) != 0)
    return 0; /* no marks for this store (new, recreated or accepted) */
  for (size_t i = 0; i < st->nside_hwm; i++) {
    const struct store_hwm *h = &st->side_hwm[i];
    uint64_t have =
        h->stream <= w->nstreams ? w->streams[h->stream - 1].next_offset : 0;
    if (have >= h->next)
      continue;
    if (st->opts.flags & SL_STORE_ACCEPT_NEW) {
      st->write_side = true;
      return 0;
    }
    store__seterr(
        errstr, errlen,
        "%s/data.mdb is older than %s/" SIDE_NAME ": stream %s%s%s (id "
        "%u) ends at offset %" PRIu64 " but offsets up to %" PRIu64
        " were durable before; an older copy of data.mdb was restored "
        "and %" PRIu64 " or more acknowledged events are missing. "
        "Restore the newest copy, or start once with --accept-new-store "
        "to continue from this data (offsets from %" PRIu64
        " will be given again)",
        st->dir, st->dir, h->stream <= w->nstreams ? "'" : "",
        h->stream <= w->nstreams ? w->streams[h->stream - 1].name : "(missing)",
        h->stream <= w->nstreams ? "'" : "", h->stream, have, h->next,
        h->next - have, have);
    return SL_ESTOREID;
  }
  return 0;
}

/* Writes store.id: id, creation time and, when hwm, every stream's next
 * offset. dir_sync: also fsync the directory (the first write). */
static int side_write(sl_store_t *st, bool hwm, bool dir_sync, char *errstr,
                      size_t errlen) {
  const store_writer_t *w = &st->w;
  char path[4096], tmp[4200], id[33], *text;
  size_t cap = 512 + (hwm ? w->nstreams * 40 : 0);
  int fd, dfd, len, rc;

  if (!(text = malloc(cap)))
    return -ENOMEM;
  hex(id, st->store_id);
  len = snprintf(text, cap,
                 "# sluice store identity: compared with data.mdb at every "
                 "start; do not edit or copy (docs/STORAGE.md)\n"
                 "store_id=%s\ncreated_ns=%" PRId64 "\n",
                 id, st->created_ns);
  if (hwm) {
    len += snprintf(text + len, cap - (size_t)len, "hwm_ns=%" PRId64 "\n",
                    sl_now_wall_ns());
    for (size_t i = 0; i < w->nstreams; i++)
      len += snprintf(text + len, cap - (size_t)len, "next.%u=%" PRIu64 "\n",
                      w->streams[i].id, w->streams[i].next_offset);
  }
  snprintf(path, sizeof(path), "%s/" SIDE_NAME, st->dir);
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    goto fail_errno;
  errno = 0;
  if (fchmod(fd, 0600) < 0 || write(fd, text, (size_t)len) != len ||
      fsync(fd) < 0) {
    rc = errno ? -errno : -EIO;
    close(fd);
    unlink(tmp);
    free(text);
    store__seterr(errstr, errlen, "cannot write %s: %s", tmp, sl_strerror(rc));
    return rc;
  }
  close(fd);
  free(text);
  text = NULL;
  /* The contents are durable before the rename makes them current, so a
   * crash leaves the old file or the new one, never an empty one. */
  if (rename(tmp, path) < 0) {
    unlink(tmp);
    goto fail_errno;
  }
  if (dir_sync &&
      (dfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
    rc = fsync(dfd);
    close(dfd);
    if (rc < 0)
      goto fail_errno;
  }
  return 0;

fail_errno:
  rc = -errno;
  free(text);
  store__seterr(errstr, errlen, "cannot write %s: %s", path, strerror(errno));
  return rc;
}

int store__ident_post(sl_store_t *st, char *errstr, size_t errlen) {
  int rc = 0;

  if (!st->rdonly && (rc = hwm_check(st, errstr, errlen)) == 0 &&
      st->write_side && (rc = side_write(st, false, true, errstr, errlen)) == 0)
    st->write_side = false;
  free(st->side_hwm);
  st->side_hwm = NULL;
  st->nside_hwm = 0;
  return rc;
}

void store__ident_hwm(sl_store_t *st, bool force) {
  uint64_t now = sl_now_mono_ns();

  if (st->rdonly || atomic_load(&st->poisoned) ||
      (!force && now < st->next_hwm_mono))
    return;
  st->next_hwm_mono = now + STORE_HWM_PERIOD_NS;
  side_write(st, true, false, NULL, 0);
}
