/*
 * The native listener's Unix socket path (loop thread, at start).
 */
#ifndef SL_LISTEN_UNIX_H
#define SL_LISTEN_UNIX_H

#include <stddef.h>

#include <uv.h>

/*
 * Binds pipe to path with permissions mode_s (octal text, e.g. "0660",
 * validated by the config), whatever the umask. An existing path is removed
 * only when it is a socket nobody listens on (a stale one from a crashed
 * run); a regular file, a directory or a live socket is refused. Returns 0,
 * or -EEXIST (not a socket), -EADDRINUSE (live socket), a libuv error or
 * -errno, with the reason in errstr. pipe: initialised by the caller.
 */
int sl_unix_bind(uv_pipe_t *pipe, const char *path, const char *mode_s,
                 char *errstr, size_t errlen);

#endif /* SL_LISTEN_UNIX_H */
