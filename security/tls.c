/*
 * Native TLS over memory BIOs (security/tls.h). OpenSSL never sees the
 * socket: the loop reads ciphertext into the session's read buffer,
 * sl_tls_conn_decrypt() feeds it to the read BIO and pulls plaintext out;
 * sl_tls_conn_encrypt() pushes plaintext in and drains the write BIO.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "security/tls.h"

/* One TLS record's worth of ciphertext per read. */
#define RBUF_BYTES (16u * 1024u + 512u)

struct sl_tls_server {
  SSL_CTX *ctx;
  char desc[256]; /* for logs */
};

struct sl_tls_conn {
  SSL *ssl;
  BIO *rbio, *wbio; /* owned by ssl */
  char peer_cn[128];
  int peer_checked;
  char rbuf[RBUF_BYTES];
};

static void ossl_reason(char *why, size_t len, const char *what) {
  unsigned long e = ERR_get_error();
  char buf[200] = "unknown error";
  if (e)
    ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  snprintf(why, len, "%s: %s", what, buf);
}

static void describe(SSL_CTX *ctx, char *buf, size_t len) {
  X509 *crt = SSL_CTX_get0_certificate(ctx);
  char cn[128] = "?", serial[80] = "?", until[40] = "?";
  if (crt) {
    X509_NAME_get_text_by_NID(X509_get_subject_name(crt), NID_commonName, cn,
                              sizeof(cn));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(crt), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex)
      snprintf(serial, sizeof(serial), "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem && ASN1_TIME_print(mem, X509_get0_notAfter(crt)) > 0) {
      int n = BIO_read(mem, until, sizeof(until) - 1);
      until[n > 0 ? n : 0] = 0;
    }
    BIO_free(mem);
  }
  snprintf(buf, len, "CN=%s serial=%s not after %s", cn, serial, until);
}

int sl_tls_server_new(const sl_config_tls_t *conf, sl_tls_server_t **out,
                      char *errstr, size_t errlen) {
  sl_tls_server_t *srv = calloc(1, sizeof(*srv));
  char what[400];
  int rc = SL_ECONFIG;

  if (!srv)
    return -ENOMEM;
  ERR_clear_error();
  if (!(srv->ctx = SSL_CTX_new(TLS_server_method()))) {
    rc = -ENOMEM;
    goto fail;
  }
  SSL_CTX_set_min_proto_version(srv->ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(srv->ctx, SSL_OP_NO_RENEGOTIATION);
  /* Records may be written from a buffer that moved: the loop's output
   * buffer is handed to libuv and replaced between writes. */
  SSL_CTX_set_mode(srv->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_ENABLE_PARTIAL_WRITE);
  if (SSL_CTX_use_certificate_chain_file(srv->ctx, conf->cert) != 1) {
    snprintf(what, sizeof(what), "certificate %s", conf->cert);
    ossl_reason(errstr, errlen, what);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(srv->ctx, conf->key, SSL_FILETYPE_PEM) != 1) {
    snprintf(what, sizeof(what), "key %s", conf->key);
    ossl_reason(errstr, errlen, what);
    goto fail;
  }
  if (SSL_CTX_check_private_key(srv->ctx) != 1) {
    snprintf(what, sizeof(what), "key %s does not match certificate %s",
             conf->key, conf->cert);
    ossl_reason(errstr, errlen, what);
    goto fail;
  }
  if (*conf->client_ca) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(conf->client_ca);
    if (!names ||
        SSL_CTX_load_verify_locations(srv->ctx, conf->client_ca, NULL) != 1) {
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      snprintf(what, sizeof(what), "client CA %s", conf->client_ca);
      ossl_reason(errstr, errlen, what);
      goto fail;
    }
    SSL_CTX_set_client_CA_list(srv->ctx, names);
    /* Asked for, not required: a client may use a token instead. One that
     * is presented must verify, or the handshake fails. */
    SSL_CTX_set_verify(srv->ctx, SSL_VERIFY_PEER, NULL);
  }
  describe(srv->ctx, srv->desc, sizeof(srv->desc));
  *out = srv;
  return 0;
fail:
  sl_tls_server_free(srv);
  return rc;
}

void sl_tls_server_free(sl_tls_server_t *srv) {
  if (!srv)
    return;
  SSL_CTX_free(srv->ctx); /* sessions hold their own reference */
  free(srv);
}

void sl_tls_server_describe(const sl_tls_server_t *srv, char *buf, size_t len) {
  snprintf(buf, len, "%s", srv->desc);
}

int sl_tls_conn_new(sl_tls_server_t *srv, sl_tls_conn_t **out) {
  sl_tls_conn_t *tc = calloc(1, sizeof(*tc));
  if (!tc)
    return -ENOMEM;
  if (!(tc->ssl = SSL_new(srv->ctx)) || !(tc->rbio = BIO_new(BIO_s_mem())) ||
      !(tc->wbio = BIO_new(BIO_s_mem()))) {
    BIO_free(tc->rbio);
    BIO_free(tc->wbio);
    SSL_free(tc->ssl);
    free(tc);
    ERR_clear_error();
    return -ENOMEM;
  }
  /* A read BIO that runs dry asks for more instead of reporting EOF. */
  BIO_set_mem_eof_return(tc->rbio, -1);
  SSL_set_bio(tc->ssl, tc->rbio, tc->wbio);
  SSL_set_accept_state(tc->ssl);
  *out = tc;
  return 0;
}

void sl_tls_conn_free(sl_tls_conn_t *tc) {
  if (!tc)
    return;
  SSL_free(tc->ssl);
  free(tc);
}

void sl_tls_conn_rbuf(sl_tls_conn_t *tc, char **buf, size_t *len) {
  *buf = tc->rbuf;
  *len = sizeof(tc->rbuf);
}

int sl_tls_conn_ready(const sl_tls_conn_t *tc) {
  return SSL_is_init_finished(tc->ssl);
}

/* The CN of a verified client certificate; names with a NUL or that are
 * not text are treated as absent. */
static void take_peer_cn(sl_tls_conn_t *tc) {
  X509 *crt;
  tc->peer_checked = 1;
  if (!(crt = SSL_get0_peer_certificate(tc->ssl)) ||
      SSL_get_verify_result(tc->ssl) != X509_V_OK)
    return;
  X509_NAME *nm = X509_get_subject_name(crt);
  int i = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
  unsigned char *utf8 = NULL;
  int n;
  if (i < 0 ||
      (n = ASN1_STRING_to_UTF8(
           &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i)))) < 0)
    return;
  if ((size_t)n < sizeof(tc->peer_cn) && !memchr(utf8, 0, (size_t)n)) {
    memcpy(tc->peer_cn, utf8, (size_t)n);
    tc->peer_cn[n] = 0;
  }
  OPENSSL_free(utf8);
}

const char *sl_tls_conn_peer_cn(const sl_tls_conn_t *tc) {
  return tc->peer_cn;
}

int sl_tls_conn_decrypt(sl_tls_conn_t *tc, size_t n, sl_frame_buf_t *plain,
                        char *why, size_t whylen) {
  if (n && BIO_write(tc->rbio, tc->rbuf, (int)n) != (int)n)
    return -ENOMEM;
  for (;;) {
    if (sl_frame_buf_reserve(plain, 16384) < 0)
      return -ENOMEM;
    int got = SSL_read(tc->ssl, plain->data + plain->len,
                       (int)(plain->cap - plain->len > (1u << 30)
                                 ? (1u << 30)
                                 : plain->cap - plain->len));
    if (got > 0) {
      plain->len += (size_t)got;
      continue;
    }
    int err = SSL_get_error(tc->ssl, got);
    if (!tc->peer_checked && SSL_is_init_finished(tc->ssl))
      take_peer_cn(tc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
      return 0;
    if (err == SSL_ERROR_ZERO_RETURN)
      return SL_ECLOSED;
    if (err == SSL_ERROR_SSL) {
      long v = SSL_get_verify_result(tc->ssl);
      if (v != X509_V_OK) {
        snprintf(why, whylen, "TLS: client certificate refused: %s",
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
      } else {
        ossl_reason(why, whylen, "TLS");
      }
      return SL_EPROTO;
    }
    ossl_reason(why, whylen, "TLS");
    return SL_EPROTO;
  }
}

int sl_tls_conn_encrypt(sl_tls_conn_t *tc, sl_frame_buf_t *plain,
                        sl_frame_buf_t *cipher) {
  size_t pending;
  if (plain->len && SSL_is_init_finished(tc->ssl)) {
    size_t off = 0;
    while (off < plain->len) {
      size_t w = 0;
      if (SSL_write_ex(tc->ssl, plain->data + off, plain->len - off, &w) != 1) {
        ERR_clear_error();
        return SL_EPROTO;
      }
      off += w;
    }
    plain->len = 0;
  }
  while ((pending = BIO_ctrl_pending(tc->wbio)) > 0) {
    if (sl_frame_buf_reserve(cipher, pending) < 0)
      return -ENOMEM;
    int got = BIO_read(tc->wbio, cipher->data + cipher->len, (int)pending);
    if (got <= 0)
      break;
    cipher->len += (size_t)got;
  }
  return 0;
}
