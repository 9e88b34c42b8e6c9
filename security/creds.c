/*
 * security/creds.c: logins of HTTP requests against the listeners'
 * credentials (security/creds.h).
 */
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "security/creds.h"

const char *sl_creds_bearer(struct MHD_Connection *conn) {
  const char *h =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
  if (!h || strncasecmp(h, "Bearer ", 7))
    return NULL;
  for (h += 7; *h == ' '; h++)
    ;
  return *h ? h : NULL;
}

int sl_creds_http_login(const sl_creds_t *c, struct MHD_Connection *conn,
                        char *ident, size_t identlen) {
  char cn[128];
  sl_tls_mhd_peer_cn(c->http, conn, cn, sizeof(cn));
  return sl_auth_login(c->auth, SL_AUTH_HTTP, sl_creds_bearer(conn), cn, ident,
                       identlen);
}

int sl_creds_admin_allowed(const sl_creds_t *c, struct MHD_Connection *conn) {
  char cn[128];
  int cert_ok = sl_tls_mhd_peer_cn(c->admin, conn, cn, sizeof(cn));
  return sl_auth_admin(c->auth, sl_creds_bearer(conn), cert_ok);
}
