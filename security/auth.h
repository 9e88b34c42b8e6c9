/*
 * security/auth: who a client is and what it may write (docs/security/tls.md).
 *
 * Credentials come from the config: per listener a list of clients, each
 * with the hex SHA-256 of its bearer token and/or the subject CN of a client
 * certificate, and the streams (names or globs) it may write. Tokens are
 * never kept in clear: a presented token is hashed and compared with every
 * configured hash in constant time (CRYPTO_memcmp). The deprecated shared
 * listeners.native.token is hashed the same way at load.
 *
 * A listener without any configured credential is open (any client, no
 * identity), which is what sluice did before credentials existed.
 *
 * Thread-safety: every call may run on any thread (the loop thread for
 * native, libmicrohttpd's threads for HTTP and admin). sl_auth_swap() takes
 * the write side of an internal lock; lookups copy what they return.
 * Never logs (the daemon does).
 */
#ifndef SL_BROKER_AUTH_H
#define SL_BROKER_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "wire/frame.h"

typedef struct sl_auth sl_auth_t;

/* Listeners with a client list. */
typedef enum sl_auth_listener {
  SL_AUTH_NATIVE = 0,
  SL_AUTH_HTTP = 1,
  SL_AUTH_N
} sl_auth_listener_t;

/* Longest identity, NUL included (client names are at most 64 bytes). */
#define SL_AUTH_IDENT_MAX 72

/* The attribute the daemon sets on each event of an identified client. */
#define SL_AUTH_ATTR "sluice.identity"

/* Identity of a client that presented listeners.native.token. */
#define SL_AUTH_LEGACY_IDENT "native.token"

/*
 * Builds the credential tables of cfg (copied; cfg is borrowed). Returns 0
 * and *out (returns owned; free with sl_auth_free()) or -ENOMEM.
 */
int sl_auth_new(const sl_config_t *cfg, sl_auth_t **out);

/* Frees au. NULL is a no-op. */
void sl_auth_free(sl_auth_t *au);

/*
 * Replaces au's tables by those of nw and frees nw (ownership transferred):
 * the commit step of a reload, which cannot fail. Lookups running on other
 * threads see the old or the new tables, never a mix.
 */
void sl_auth_swap(sl_auth_t *au, sl_auth_t *nw);

/*
 * Authenticates a client of listener l. token: the presented bearer token
 * or NULL/""; cert_cn: the subject CN of a client certificate the TLS layer
 * verified, or NULL/"". A certificate mapped to a client wins over a token.
 * Returns 0 with the identity in ident (NUL-terminated, "" when the
 * listener is open and no certificate was shown; an open listener records
 * a verified certificate's CN), or SL_EDENIED when the listener has
 * credentials and none presented matches.
 */
int sl_auth_login(sl_auth_t *au, sl_auth_listener_t l, const char *token,
                  const char *cert_cn, char *ident, size_t identlen);

/*
 * May identity ident (from sl_auth_login(), looked up again so a reload
 * that revokes or narrows a client applies to open connections) write
 * stream? Returns 0 or SL_EDENIED.
 */
int sl_auth_allowed(sl_auth_t *au, sl_auth_listener_t l, const char *ident,
                    const char *stream);

/*
 * Admin endpoints that change state: token is the bearer token (or NULL),
 * cert_ok is 1 when the admin TLS layer verified a client certificate
 * against admin.tls.client_ca. Returns 0 or SL_EDENIED (also when the
 * admin has no credential configured at all).
 */
int sl_auth_admin(sl_auth_t *au, const char *token, int cert_ok);

/*
 * Sets the identity on every event of a serialized EventBatch: removes any
 * attribute named SL_AUTH_ATTR the client put there and, when ident is not
 * "", appends SL_AUTH_ATTR=ident. batch is rewritten only when something
 * changes (a quick scan finds no such attribute and ident is ""); the old
 * bytes then end in tmp (caller-owned, initialised; the caller closes it).
 * Returns 0, -ENOMEM or SL_EPROTO (batch does not parse; unchanged).
 */
int sl_auth_stamp(sl_frame_buf_t *batch, const char *ident,
                  sl_frame_buf_t *tmp);

/*
 * sl_auth_stamp() for ingest paths: the old bytes are freed here, and when
 * decode is set and the bytes changed, *decoded (else left NULL) receives
 * the new batch decoded, for code that reads events rather than bytes
 * (pipelines); free it with sluice__v1__event_batch__free_unpacked().
 * Returns 0, -ENOMEM or SL_EPROTO.
 */
int sl_auth_stamp_batch(sl_frame_buf_t *batch, const char *ident, int decode,
                        Sluice__V1__EventBatch **decoded);

/*
 * Writes the hex SHA-256 of s (65 bytes with the NUL) into hex. For tests
 * and `printf %s TOKEN | sha256sum` parity.
 */
void sl_auth_sha256_hex(const char *s, char hex[65]);

#endif /* SL_BROKER_AUTH_H */
