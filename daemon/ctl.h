/*
 * daemon/ctl: `sluice ctl`, the admin endpoint's client (cmd_ctl.c) and
 * its one-request HTTP/1.0 client (ctl_http.c). Private to the daemon.
 */
#ifndef SL_DAEMON_CTL_H
#define SL_DAEMON_CTL_H

#include <stddef.h>

typedef struct sl_ctl_target {
  char host[256]; /* name or address, no brackets */
  char port[8];
  int tls;                /* https */
  const char *cafile;     /* trust these (PEM); NULL: the system's CAs */
  int pinned;             /* cafile is the daemon's own certificate chain:
                             trusted as is, no name check */
  const char *cert, *key; /* client certificate (admin.tls.client_ca) */
  const char *token;      /* admin bearer token, NULL = none; never printed */
  int timeout_ms;         /* per request: connect, send, receive */
} sl_ctl_target_t;

/* One request (no body); the status code, the body in *body (owned,
 * NUL-terminated, free()), or a negative error with err set. */
int sl_ctl_http(const sl_ctl_target_t *t, const char *method, const char *path,
                char **body, char *err, size_t errlen);

#endif /* SL_DAEMON_CTL_H */
