/*
 * The smallest HTTP client `sluice ctl` needs: one HTTP/1.0 request per
 * connection ("Connection: close", the answer ends at EOF), blocking with
 * timeouts, TLS through OpenSSL (already linked for the listeners). Why not
 * libcurl: it would be a new dependency of the daemon's binary and image
 * for a client of our own admin endpoint, which answers short bodies to
 * four fixed requests; chunked encoding, redirects, proxies and keep-alive
 * are not needed. Why not libmicrohttpd: it is a server only.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "daemon/ctl.h"

#define CTL_MAX_ANSWER (4u << 20)

static int dial(const sl_ctl_target_t *t, char *err, size_t errlen) {
  struct addrinfo hints = {0}, *ai = NULL, *a;
  int fd = -1, rc, last = 0;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  if ((rc = getaddrinfo(t->host, t->port, &hints, &ai)) != 0) {
    snprintf(err, errlen, "%s: %s", t->host, gai_strerror(rc));
    return -EINVAL;
  }
  for (a = ai; a; a = a->ai_next) {
    struct pollfd p;
    if ((fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0)) < 0)
      continue;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    rc = connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
      socklen_t sl = sizeof(rc);
      p.fd = fd;
      p.events = POLLOUT;
      rc = poll(&p, 1, t->timeout_ms);
      if (rc == 1 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &last, &sl) && !last)
        rc = 0;
      else {
        if (rc == 0)
          last = ETIMEDOUT;
        rc = -1;
      }
    } else if (rc < 0)
      last = errno;
    if (rc == 0)
      break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) {
    snprintf(err, errlen, "cannot connect to %s:%s: %s", t->host, t->port,
             strerror(last ? last : ECONNREFUSED));
    return -(last ? last : ECONNREFUSED);
  }
  fcntl(fd, F_SETFL, 0);
  struct timeval tv = {t->timeout_ms / 1000, (t->timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

static void ssl_err(char *err, size_t errlen, const char *what) {
  char buf[256];
  unsigned long e = ERR_get_error();
  ERR_error_string_n(e, buf, sizeof(buf));
  snprintf(err, errlen, "%s: %s", what, e ? buf : "failed");
  ERR_clear_error();
}

static SSL *tls_open(const sl_ctl_target_t *t, int fd, SSL_CTX **pctx,
                     char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL *ssl = NULL;
  struct in6_addr a6;
  int is_ip = inet_pton(AF_INET, t->host, &a6) == 1 ||
              inet_pton(AF_INET6, t->host, &a6) == 1;
  if (!ctx) {
    ssl_err(err, errlen, "TLS");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (t->cafile) {
    if (SSL_CTX_load_verify_locations(ctx, t->cafile, NULL) != 1) {
      ssl_err(err, errlen, t->cafile);
      goto fail;
    }
    if (t->pinned) /* the chain's leaf itself is the trust anchor */
      X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx),
                                  X509_V_FLAG_PARTIAL_CHAIN);
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    ssl_err(err, errlen, "system CA certificates");
    goto fail;
  }
  if (t->cert && (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1 ||
                  SSL_CTX_use_PrivateKey_file(ctx, t->key ? t->key : t->cert,
                                              SSL_FILETYPE_PEM) != 1)) {
    ssl_err(err, errlen, "client certificate");
    goto fail;
  }
  if (!(ssl = SSL_new(ctx)))
    goto fail;
  SSL_set_fd(ssl, fd);
  if (!is_ip)
    SSL_set_tlsext_host_name(ssl, t->host);
  if (!t->pinned) {
    if (is_ip)
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), t->host);
    else
      SSL_set1_host(ssl, t->host);
  }
  if (SSL_connect(ssl) != 1) {
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
      snprintf(err, errlen, "TLS: server certificate: %s",
               X509_verify_cert_error_string(v));
    else
      ssl_err(err, errlen, "TLS handshake");
    goto fail;
  }
  *pctx = ctx;
  return ssl;
fail:
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return NULL;
}

int sl_ctl_http(const sl_ctl_target_t *t, const char *method, const char *path,
                char **body, char *err, size_t errlen) {
  char req[1024], *buf = NULL, *p;
  size_t len = 0, cap = 0;
  SSL_CTX *ctx = NULL;
  SSL *ssl = NULL;
  int fd, n, status = -EPROTO;

  *body = NULL;
  if ((fd = dial(t, err, errlen)) < 0)
    return fd;
  if (t->tls && !(ssl = tls_open(t, fd, &ctx, err, errlen))) {
    close(fd);
    return -EPROTO;
  }
  n = snprintf(req, sizeof(req),
               "%s %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: sluice-ctl\r\n"
               "Content-Length: 0\r\nConnection: close\r\n",
               method, path, t->host);
  if (t->token && *t->token)
    n += snprintf(req + n, sizeof(req) - (size_t)n,
                  "Authorization: Bearer %s\r\n", t->token);
  n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
  if ((size_t)n >= sizeof(req)) {
    snprintf(err, errlen, "request too long");
    goto done;
  }
  if ((ssl ? SSL_write(ssl, req, n)
           : (int)send(fd, req, (size_t)n, MSG_NOSIGNAL)) != n) {
    snprintf(err, errlen, "cannot send the request to %s:%s", t->host, t->port);
    goto done;
  }
  explicit_bzero(req, sizeof(req)); /* it held the token */
  for (;;) {
    if (cap - len < 4097) {
      if (cap >= CTL_MAX_ANSWER) {
        snprintf(err, errlen, "answer larger than %u bytes", CTL_MAX_ANSWER);
        goto done;
      }
      cap = cap ? cap * 2 : 16384;
      if (!(p = realloc(buf, cap))) {
        snprintf(err, errlen, "out of memory");
        goto done;
      }
      buf = p;
    }
    n = ssl ? SSL_read(ssl, buf + len, 4096)
            : (int)recv(fd, buf + len, 4096, 0);
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  if (!buf || len == 0) {
    snprintf(err, errlen, "no answer from %s:%s", t->host, t->port);
    goto done;
  }
  buf[len] = 0;
  if (sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1 ||
      !(p = strstr(buf, "\r\n\r\n"))) {
    snprintf(err, errlen, "not an HTTP answer from %s:%s", t->host, t->port);
    status = -EPROTO;
    goto done;
  }
  p += 4;
  memmove(buf, p, len - (size_t)(p - buf) + 1);
  *body = buf;
  buf = NULL;
done:
  explicit_bzero(req, sizeof(req));
  free(buf);
  if (ssl) {
    SSL_shutdown(ssl);
    SSL_free(ssl);
  }
  SSL_CTX_free(ctx);
  close(fd);
  return status;
}
