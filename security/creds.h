/*
 * security/creds: the credentials and TLS contexts the listeners use now
 * (docs/security/tls.md). The daemon builds them at start and swaps their
 * contents on reload (daemon/security.h); the ingest paths and the admin
 * server only read them. Private to the daemon layer.
 */
#ifndef SL_SECURITY_CREDS_H
#define SL_SECURITY_CREDS_H

#include <stddef.h>

#include "security/auth.h"
#include "security/tls.h"

struct MHD_Connection;

typedef struct sl_creds {
  sl_auth_t *auth;         /* credentials; fixed pointer, swapped inside */
  sl_tls_server_t *native; /* native TCP TLS or NULL; loop thread only,
                              replaced on reload */
  sl_tls_mhd_t *http;      /* HTTP TLS or NULL; fixed pointer */
  sl_tls_mhd_t *admin;     /* admin TLS or NULL; fixed pointer */
} sl_creds_t;

/* The token of an "Authorization: Bearer" header of conn, or NULL.
 * Borrowed from libmicrohttpd for the request's lifetime. */
const char *sl_creds_bearer(struct MHD_Connection *conn);

/*
 * HTTP ingest: authenticates the request on conn (Authorization: Bearer, or
 * a verified client certificate). Returns 0 with the identity in ident, or
 * SL_EDENIED. Any thread.
 */
int sl_creds_http_login(const sl_creds_t *c, struct MHD_Connection *conn,
                        char *ident, size_t identlen);

/* Admin: 0 when the request on conn carries the admin token or a client
 * certificate verified by admin.tls.client_ca, else SL_EDENIED. */
int sl_creds_admin_allowed(const sl_creds_t *c, struct MHD_Connection *conn);

#endif /* SL_SECURITY_CREDS_H */
