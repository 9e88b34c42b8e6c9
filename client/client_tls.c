/*
 * libsluice's TLS to the daemon (OpenSSL): a context built from the
 * options, and per connection a session on the non-blocking socket whose
 * read and write calls look like recv(2) and send(2) to the I/O loop.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "client/client_int.h"

static __thread char reason[256];

static void take_reason(const char *what) {
  unsigned long e = ERR_get_error();
  char buf[200] = "connection failed";
  if (e)
    ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  snprintf(reason, sizeof(reason), "TLS %s: %s", what, buf);
}

const char *client__tls_reason(void) {
  return reason;
}

int client__tls_ctx_new(const sl_client_opts_t *o, void **out) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx)
    return -ENOMEM;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  /* The I/O loop retries a write with the same bytes, not the same
   * pointer (a batch being resent after a reconnect). */
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (SSL_CTX_load_verify_locations(ctx, o->tls_ca_file, NULL) != 1 ||
      (o->tls_cert_file && *o->tls_cert_file &&
       (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o->tls_key_file ? o->tls_key_file : "",
                                    SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1))) {
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return SL_ECONFIG;
  }
  *out = ctx;
  return 0;
}

void client__tls_ctx_free(void *ctx) {
  SSL_CTX_free(ctx);
}

int client__tls_new(void *ctx, int fd, const char *name, void **out) {
  SSL *ssl = SSL_new(ctx);
  unsigned char ip[16];
  if (!ssl)
    return -ENOMEM;
  if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
  } else {
    SSL_set_tlsext_host_name(ssl, name);
    SSL_set1_host(ssl, name);
  }
  SSL_set_fd(ssl, fd);
  SSL_set_connect_state(ssl);
  *out = ssl;
  return 0;
}

void client__tls_free(void *ssl) {
  SSL_free(ssl);
}

/* Maps an SSL_read/SSL_write result to recv/send's. */
static ssize_t result(SSL *ssl, int n, bool *wait_read, const char *what) {
  if (n > 0)
    return n;
  switch (SSL_get_error(ssl, n)) {
  case SSL_ERROR_WANT_READ:
    if (wait_read)
      *wait_read = true;
    errno = EAGAIN;
    return -1;
  case SSL_ERROR_WANT_WRITE:
    errno = EAGAIN;
    return -1;
  case SSL_ERROR_ZERO_RETURN:
    return 0;
  default:
    if (SSL_get_verify_result(ssl) != X509_V_OK) {
      snprintf(reason, sizeof(reason), "TLS: daemon certificate refused: %s",
               X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
      ERR_clear_error();
    } else {
      take_reason(what);
    }
    errno = EPROTO;
    return -1;
  }
}

ssize_t client__tls_recv(void *ssl, void *buf, size_t n) {
  return result(ssl, SSL_read(ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n),
                NULL, "read");
}

ssize_t client__tls_send(void *ssl, const void *buf, size_t n,
                         bool *wait_read) {
  return result(ssl, SSL_write(ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n),
                wait_read, "write");
}
