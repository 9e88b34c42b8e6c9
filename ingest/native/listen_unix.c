#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ingest/native/listen_unix.h"

/*
 * Makes path free for bind: nothing there, or a stale socket of ours from a
 * crashed run (the store's exclusive lock proves no other sluice serves
 * this node). Anything else is refused, never removed: a regular file or a
 * directory at a mistyped path, or a socket someone still listens on.
 */
static int path_free(const char *path, char *errstr, size_t errlen) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  struct stat st;
  int fd, rc;

  if (lstat(path, &st) < 0) {
    if (errno == ENOENT)
      return 0;
    rc = -errno;
    snprintf(errstr, errlen, "listeners.native.unix: cannot check %s: %s", path,
             strerror(errno));
    return rc;
  }
  if (!S_ISSOCK(st.st_mode)) {
    snprintf(errstr, errlen,
             "listeners.native.unix: %s exists and is not a socket; "
             "refusing to remove it (choose another path or remove it)",
             path);
    return -EEXIST;
  }
  if (strlen(path) >= sizeof(sa.sun_path)) {
    snprintf(errstr, errlen, "listeners.native.unix: %s is too long", path);
    return -ENAMETOOLONG;
  }
  memcpy(sa.sun_path, path, strlen(path) + 1);
  if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
    rc = -errno;
    snprintf(errstr, errlen, "listeners.native.unix: socket: %s",
             strerror(errno));
    return rc;
  }
  rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
  close(fd);
  if (rc == 0) {
    snprintf(errstr, errlen,
             "listeners.native.unix: %s is a socket another process "
             "listens on; refusing to take it over",
             path);
    return -EADDRINUSE;
  }
  if (unlink(path) < 0 && errno != ENOENT) {
    rc = -errno;
    snprintf(errstr, errlen,
             "listeners.native.unix: cannot remove stale %s: %s", path,
             strerror(errno));
    return rc;
  }
  return 0;
}

int sl_unix_bind(uv_pipe_t *pipe, const char *path, const char *mode_s,
                 char *errstr, size_t errlen) {
  mode_t mode = (mode_t)strtoul(mode_s, NULL, 8), old;
  int rc;
  if ((rc = path_free(path, errstr, errlen)) < 0)
    return rc;
  /* The socket is created owner-only whatever the umask, then opened up to
   * the configured mode before anyone can connect (listen comes later).
   * No other thread creates files while the listeners start. */
  old = umask(0177);
  rc = uv_pipe_bind(pipe, path);
  umask(old);
  if (rc < 0) {
    snprintf(errstr, errlen, "listeners.native.unix: cannot bind %s: %s", path,
             uv_strerror(rc));
    return rc;
  }
  if (chmod(path, mode) < 0) {
    rc = -errno;
    snprintf(errstr, errlen, "listeners.native.unix: chmod %s %04o: %s", path,
             (unsigned)mode, strerror(errno));
    return rc;
  }
  return 0;
}
