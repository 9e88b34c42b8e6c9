/*
 * security/tls: TLS for the listeners (docs/security/tls.md).
 *
 * Native TCP uses OpenSSL over memory BIOs, driven by the libuv loop in
 * ingest/native/native.c: ciphertext read from the socket is fed in, the
 * plaintext comes out into the connection's input buffer, and what OpenSSL
 * wants to send (handshake, records) is drained into a buffer the loop
 * writes. Nothing here touches a socket or blocks.
 *
 * HTTP ingest and admin use libmicrohttpd's own TLS (GnuTLS, which the
 * Debian libmicrohttpd is built with): sl_tls_mhd_t hands it a certificate
 * callback, so a reload changes the certificate new connections get, and
 * verifies client certificates against a CA that reloads too.
 *
 * Reload is two-phase: build a new server object from the new config (may
 * fail: the running one stays), then swap it in (cannot fail). Connections
 * keep the certificate they were accepted with.
 *
 * Threads: a sl_tls_server_t and its connections belong to the loop thread;
 * sl_tls_mhd_t may be used from libmicrohttpd's threads (internal lock).
 * Never logs: errors come back as codes with a reason.
 */
#ifndef SL_BROKER_TLS_H
#define SL_BROKER_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "wire/frame.h"

/* ---- native (OpenSSL) --------------------------------------------------- */

typedef struct sl_tls_server sl_tls_server_t;
typedef struct sl_tls_conn sl_tls_conn_t;

/*
 * Loads conf's certificate chain, key (checked to match) and optional client
 * CA into a new server context (TLS 1.2 or later). conf: borrowed. Returns 0
 * and *out (returns owned; free with sl_tls_server_free()), or SL_ECONFIG
 * with the file and OpenSSL's reason in errstr, or -ENOMEM.
 */
int sl_tls_server_new(const sl_config_tls_t *conf, sl_tls_server_t **out,
                      char *errstr, size_t errlen);

/* Frees srv; connections made from it keep working. NULL is a no-op. */
void sl_tls_server_free(sl_tls_server_t *srv);

/* "subject CN, serial, not after" of srv's certificate, for logs. */
void sl_tls_server_describe(const sl_tls_server_t *srv, char *buf, size_t len);

/* A server-side TLS session. Returns 0 and *out (owned; free with
 * sl_tls_conn_free()) or -ENOMEM. srv: borrowed (referenced by the
 * session, may be freed first). */
int sl_tls_conn_new(sl_tls_server_t *srv, sl_tls_conn_t **out);
void sl_tls_conn_free(sl_tls_conn_t *tc);

/* The buffer ciphertext should be read into (valid until the next
 * sl_tls_conn_decrypt() or free). */
void sl_tls_conn_rbuf(sl_tls_conn_t *tc, char **buf, size_t *len);

/*
 * Takes n bytes just read into the rbuf, runs the handshake and appends
 * every decrypted byte to plain. Returns 0, SL_ECLOSED when the peer sent
 * close_notify, SL_EPROTO (handshake or record failure, including a client
 * certificate the CA does not verify; reason in why) or -ENOMEM.
 */
int sl_tls_conn_decrypt(sl_tls_conn_t *tc, size_t n, sl_frame_buf_t *plain,
                        char *why, size_t whylen);

/*
 * Once the handshake is done, encrypts all of plain (consumed) and appends
 * the records to cipher; before that, plain is kept. Appends any other
 * pending TLS output (handshake, alerts) too. Returns 0, SL_EPROTO or
 * -ENOMEM.
 */
int sl_tls_conn_encrypt(sl_tls_conn_t *tc, sl_frame_buf_t *plain,
                        sl_frame_buf_t *cipher);

/* 1 once the handshake has completed. */
int sl_tls_conn_ready(const sl_tls_conn_t *tc);

/* The subject CN of the client certificate, "" when none was presented
 * (a presented one that does not verify fails the handshake). Valid until
 * the session is freed. */
const char *sl_tls_conn_peer_cn(const sl_tls_conn_t *tc);

/* ---- HTTP and admin (libmicrohttpd + GnuTLS) --------------------------- */

typedef struct sl_tls_mhd sl_tls_mhd_t;
struct MHD_OptionItem;
struct MHD_Connection;

/*
 * Loads conf for a libmicrohttpd server. Returns 0 and *out (returns owned;
 * free with sl_tls_mhd_free() after the server stopped), SL_ECONFIG with
 * the reason, -ENOMEM, or -EMFILE when more than 4 such servers exist (the
 * certificate callback has no user pointer: each server takes a slot).
 */
int sl_tls_mhd_new(const sl_config_tls_t *conf, sl_tls_mhd_t **out,
                   char *errstr, size_t errlen);

/* Installs nw's certificate, key and CA in cur (new connections use them)
 * and frees nw (ownership transferred). Cannot fail. */
void sl_tls_mhd_swap(sl_tls_mhd_t *cur, sl_tls_mhd_t *nw);

void sl_tls_mhd_free(sl_tls_mhd_t *t);

/* MHD_USE_TLS when t is not NULL, else 0. */
unsigned sl_tls_mhd_flags(const sl_tls_mhd_t *t);

/*
 * Fills items (room for 4) with the options of MHD_OPTION_ARRAY and the
 * terminating MHD_OPTION_END; t NULL gives just the end. t: borrowed, must
 * outlive the server.
 */
void sl_tls_mhd_options(sl_tls_mhd_t *t, struct MHD_OptionItem *items);

/*
 * The subject CN of conn's client certificate when one was presented and
 * verifies against the current client CA: returns 1 and cn; else 0 and "".
 */
int sl_tls_mhd_peer_cn(sl_tls_mhd_t *t, struct MHD_Connection *conn, char *cn,
                       size_t cnlen);

#endif /* SL_BROKER_TLS_H */
