/*
 * connectors/opcua: one client connection to an OPC UA server (library
 * sl_opcua): OPC UA TCP (Hello/Acknowledge), a secure channel with
 * SecurityPolicy None (issued, renewed before its token expires, closed),
 * message chunking both ways, and a session (anonymous or user name).
 *
 * Not thread-safe: one thread owns a connection. Requests may be pipelined
 * (sl_ua_conn_send, then sl_ua_conn_recv); sl_ua_conn_call() is a send
 * that waits for its own response and hands every other response that
 * arrives meanwhile (Publish responses) to the on_other callback.
 *
 * Errors: 0 or negative codes (common/common.h): -ETIMEDOUT, -ECONNRESET,
 * -ECONNREFUSED and other -errno from the socket, SL_EPROTO for a server
 * that breaks the protocol, SL_ECLOSED after the server's ERR message,
 * SL_EDENIED when the identity cannot be sent safely or is rejected. The
 * last error's text (with the server's status name) is in
 * sl_ua_conn_error(). A service that answers with a Bad serviceResult is
 * not an error of the call: its status is in the response header.
 */
#ifndef SL_UA_CONN_H
#define SL_UA_CONN_H

#include "connectors/opcua/ua_msg.h"

typedef struct sl_ua_conn sl_ua_conn_t;

typedef struct sl_ua_conn_opts {
  const char *url;              /* opc.tcp://host:port[/path] */
  uint32_t timeout_ms;          /* connect and each request */
  uint32_t channel_lifetime_ms; /* requested token lifetime */
  double session_timeout_ms;    /* requested session timeout */
  const char *session_name;
  const char *user;     /* NULL: anonymous */
  const char *password; /* with user */
  /* Send a password over a channel without encryption (policy None). */
  bool allow_plaintext_password;
  uint32_t max_message; /* largest message accepted, bytes */
} sl_ua_conn_opts_t;

/* Responses that are not the one a call waits for (Publish). The message
 * and its arena are valid during the call only. */
typedef void (*sl_ua_other_cb)(sl_ua_conn_t *c, uint32_t request_id,
                               const sl_ua_msg_t *msg, void *opaque);

/*
 * Connects, says Hello, opens the secure channel, creates and activates a
 * session. Returns 0 or an error (see above; the text in err). Returns owned
 * in *out; free with sl_ua_conn_close().
 */
int sl_ua_conn_open(const sl_ua_conn_opts_t *o, sl_ua_conn_t **out, char *err,
                    size_t errlen);

/*
 * As sl_ua_conn_open(), for a connection that was lost: prev (borrowed;
 * dropped with sl_ua_conn_drop(), or NULL) gives its session, which is
 * reactivated on the new channel when the server still has it
 * (sl_ua_conn_resumed() then says so); a new session otherwise. Free prev
 * after a success; keep it for the next attempt after a failure. On
 * success err may still say why the session was not reactivated.
 */
int sl_ua_conn_reopen(const sl_ua_conn_opts_t *o, sl_ua_conn_t *prev,
                      sl_ua_conn_t **out, char *err, size_t errlen);
/* Closes the socket only: the session stays, for sl_ua_conn_reopen(). */
void sl_ua_conn_drop(sl_ua_conn_t *c);
bool sl_ua_conn_resumed(const sl_ua_conn_t *c);

/* Closes the session (delete_subs: its subscriptions too; best effort) and
 * the channel, and frees c. NULL is a no-op. */
void sl_ua_conn_close(sl_ua_conn_t *c, bool delete_subs);

/* Drops the connection without a goodbye (a session and its subscriptions
 * stay on the server for a successor to transfer). */
void sl_ua_conn_abort(sl_ua_conn_t *c);

/* The header fields of the next request (session token, a fresh handle). */
sl_ua_req_t sl_ua_conn_req(sl_ua_conn_t *c);

/* Sends one encoded request (ua_msg.h encoders) in as many chunks as the
 * server's buffer needs; its request id in *request_id. Renews the channel
 * first when its token is near its end. */
int sl_ua_conn_send(sl_ua_conn_t *c, const sl_ua_wr_t *req,
                    uint32_t *request_id);

/* Waits up to wait_ms for the next response and decodes it into msg (arena:
 * caller's, freed by the caller). -EAGAIN when none arrived in time. */
int sl_ua_conn_recv(sl_ua_conn_t *c, int wait_ms, sl_ua_arena_t *arena,
                    sl_ua_msg_t *msg, uint32_t *request_id);

/* send + wait for its response (bounded by the timeout); other responses go
 * to cb (may be NULL: dropped). A ServiceFault comes back as a message with
 * type UA_ID_SERVICE_FAULT and its status in hdr.result. */
int sl_ua_conn_call(sl_ua_conn_t *c, const sl_ua_wr_t *req,
                    sl_ua_arena_t *arena, sl_ua_msg_t *msg, sl_ua_other_cb cb,
                    void *opaque);

/* How often the channel's token was renewed on this connection. */
uint32_t sl_ua_conn_renewals(const sl_ua_conn_t *c);
/* The channel token's lifetime the server granted, ms. */
uint32_t sl_ua_conn_lifetime(const sl_ua_conn_t *c);

/* The text of the last error ("" when none). */
const char *sl_ua_conn_error(const sl_ua_conn_t *c);

/* The session's id and the server's revised session timeout. */
double sl_ua_conn_session_timeout(const sl_ua_conn_t *c);

/* Parses opc.tcp://host:port/path into host (cap bytes) and port. 0 or
 * -EINVAL. */
int sl_ua_url_parse(const char *url, char *host, size_t cap, uint16_t *port);

#endif /* SL_UA_CONN_H */
