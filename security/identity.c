/*
 * security/identity.c: the node's key, id and certificate
 * (security/identity.h) with OpenSSL's EVP, X509 and PEM APIs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/common.h"
#include "security/identity.h"

struct sl_identity {
  char dir[512];
  char key_path[600], cert_path[600], ca_path[600];
  EVP_PKEY *key;
  X509 *cert; /* NULL until installed */
  char key_sha[65];
  char node_id[24];
};

static void spki_hash(EVP_PKEY *k, char hex[65]) {
  unsigned char *der = NULL, d[SHA256_DIGEST_LENGTH];
  int n = i2d_PUBKEY(k, &der);
  SHA256(der, n > 0 ? (size_t)n : 0, d);
  OPENSSL_free(der);
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
    snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* Writes len bytes to path atomically with mode (tmp, fsync, rename, fsync
 * of the directory). */
static int write_atomic(const char *dir, const char *path, const void *buf,
                        size_t len, mode_t mode) {
  char tmp[700];
  int fd, rc = 0;
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0)
    return -errno;
  if (fchmod(fd, mode) < 0 || write(fd, buf, len) != (ssize_t)len ||
      fsync(fd) < 0)
    rc = errno ? -errno : -EIO;
  close(fd);
  if (!rc && rename(tmp, path) < 0)
    rc = -errno;
  if (rc) {
    unlink(tmp);
    return rc;
  }
  if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  return 0;
}

static int load_cert(sl_identity_t *id) {
  FILE *f = fopen(id->cert_path, "re");
  if (!f)
    return errno == ENOENT ? 0 : -errno;
  id->cert = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  /* A certificate for another key (the key was replaced) is no
   * certificate: the node enrols again. */
  if (id->cert && X509_check_private_key(id->cert, id->key) != 1) {
    X509_free(id->cert);
    id->cert = NULL;
  }
  return 0;
}

static int new_key(sl_identity_t *id, char *err, size_t errlen) {
  EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  BIO *b = BIO_new(BIO_s_mem());
  char *data;
  long n;
  int rc;
  if (!k || !b) {
    EVP_PKEY_free(k);
    BIO_free(b);
    snprintf(err, errlen, "cannot make a key pair");
    return SL_EKEY;
  }
  PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
  n = BIO_get_mem_data(b, &data);
  rc = write_atomic(id->dir, id->key_path, data, (size_t)n, 0600);
  OPENSSL_cleanse(data, (size_t)n);
  BIO_free(b);
  if (rc < 0) {
    snprintf(err, errlen, "%s: cannot write: %s", id->key_path, strerror(-rc));
    EVP_PKEY_free(k);
    return rc;
  }
  id->key = k;
  return 0;
}

int sl_identity_open(const char *dir, bool create, sl_identity_t **out,
                     char *err, size_t errlen) {
  sl_identity_t *id;
  struct stat sb;
  FILE *f;
  int rc;

  *out = NULL;
  if (!(id = calloc(1, sizeof(*id))))
    return -ENOMEM;
  snprintf(id->dir, sizeof(id->dir), "%s", dir);
  snprintf(id->key_path, sizeof(id->key_path), "%s/node.key", dir);
  snprintf(id->cert_path, sizeof(id->cert_path), "%s/node.crt", dir);
  snprintf(id->ca_path, sizeof(id->ca_path), "%s/ca.pem", dir);
  if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
    rc = -errno;
    snprintf(err, errlen, "%s: cannot create: %s", dir, strerror(errno));
    goto fail;
  }
  if ((f = fopen(id->key_path, "re"))) {
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 0077)) {
      fclose(f);
      snprintf(err, errlen,
               "%s is accessible by group or others (mode %04o): run chmod "
               "600 on it",
               id->key_path, (unsigned)(sb.st_mode & 07777));
      rc = SL_EKEY;
      goto fail;
    }
    id->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!id->key) {
      snprintf(err, errlen, "%s: not a PEM private key", id->key_path);
      rc = SL_EKEY;
      goto fail;
    }
  } else if (errno != ENOENT) {
    rc = -errno;
    snprintf(err, errlen, "%s: %s", id->key_path, strerror(errno));
    goto fail;
  } else if (!create) {
    snprintf(err, errlen, "%s: no node key", id->key_path);
    rc = SL_ENOTFOUND;
    goto fail;
  } else if ((rc = new_key(id, err, errlen)) < 0) {
    goto fail;
  }
  spki_hash(id->key, id->key_sha);
  snprintf(id->node_id, sizeof(id->node_id), "sl-%.20s", id->key_sha);
  if ((rc = load_cert(id)) < 0) {
    snprintf(err, errlen, "%s: %s", id->cert_path, strerror(-rc));
    goto fail;
  }
  *out = id;
  return 0;
fail:
  sl_identity_free(id);
  return rc;
}

const char *sl_identity_node_id(const sl_identity_t *id) {
  return id->node_id;
}
const char *sl_identity_key_sha256(const sl_identity_t *id) {
  return id->key_sha;
}
const char *sl_identity_key_path(const sl_identity_t *id) {
  return id->key_path;
}
const char *sl_identity_cert_path(const sl_identity_t *id) {
  return id->cert_path;
}
const char *sl_identity_ca_path(const sl_identity_t *id) {
  return id->ca_path;
}

int sl_identity_csr(const sl_identity_t *id, const char *cn, char **pem) {
  X509_REQ *r = X509_REQ_new();
  X509_NAME *nm = X509_NAME_new();
  BIO *b = BIO_new(BIO_s_mem());
  char *data;
  long n;
  int rc = SL_EKEY;

  *pem = NULL;
  if (!r || !nm || !b)
    goto out;
  if (!X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8,
                                  (const unsigned char *)cn, -1, -1, 0) ||
      !X509_REQ_set_subject_name(r, nm) || !X509_REQ_set_pubkey(r, id->key) ||
      !X509_REQ_sign(r, id->key, EVP_sha256()) || !PEM_write_bio_X509_REQ(b, r))
    goto out;
  n = BIO_get_mem_data(b, &data);
  if (!(*pem = malloc((size_t)n + 1))) {
    rc = -ENOMEM;
    goto out;
  }
  memcpy(*pem, data, (size_t)n);
  (*pem)[n] = '\0';
  rc = 0;
out:
  X509_REQ_free(r);
  X509_NAME_free(nm);
  BIO_free(b);
  return rc;
}

static int64_t asn1_ns(const ASN1_TIME *t) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
    return 0;
  return (int64_t)timegm(&tm) * 1000000000;
}

int sl_identity_install(sl_identity_t *id, const char *cert_pem,
                        const char *ca_pem, char *err, size_t errlen) {
  BIO *b = BIO_new_mem_buf(cert_pem, -1), *cb = BIO_new_mem_buf(ca_pem, -1);
  X509 *c = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  STACK_OF(X509_INFO) *cas =
      cb ? PEM_X509_INFO_read_bio(cb, NULL, NULL, NULL) : NULL;
  int rc = SL_EKEY, ncas = 0;

  if (!c || !cas) {
    snprintf(err, errlen, "%s is not PEM", !c ? "the certificate" : "the CA");
    rc = SL_EPROTO;
    goto out;
  }
  if (X509_check_private_key(c, id->key) != 1) {
    snprintf(err, errlen, "the certificate is not for this node's key");
    goto out;
  }
  for (int i = 0; i < sk_X509_INFO_num(cas); i++) {
    X509_INFO *xi = sk_X509_INFO_value(cas, i);
    if (xi->x509 && X509_STORE_add_cert(store, xi->x509) == 1)
      ncas++;
  }
  if (!ncas) {
    snprintf(err, errlen, "no CA certificate in the answer");
    goto out;
  }
  /* Tolerate a node clock a little behind the CA's. */
  X509_STORE_CTX_init(ctx, store, c, NULL);
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), time(NULL) + 300);
  if (X509_verify_cert(ctx) != 1) {
    snprintf(err, errlen, "the certificate does not verify against the CA: %s",
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    goto out;
  }
  if ((rc = write_atomic(id->dir, id->ca_path, ca_pem, strlen(ca_pem), 0644)) <
          0 ||
      (rc = write_atomic(id->dir, id->cert_path, cert_pem, strlen(cert_pem),
                         0644)) < 0) {
    snprintf(err, errlen, "cannot write the certificate: %s", strerror(-rc));
    goto out;
  }
  X509_free(id->cert);
  id->cert = c;
  c = NULL;
  rc = 0;
out:
  X509_free(c);
  sk_X509_INFO_pop_free(cas, X509_INFO_free);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  BIO_free(b);
  BIO_free(cb);
  return rc;
}

int sl_identity_cert_times(const sl_identity_t *id, int64_t *not_before_ns,
                           int64_t *not_after_ns) {
  if (!id->cert)
    return SL_ENOTFOUND;
  *not_before_ns = asn1_ns(X509_get0_notBefore(id->cert));
  *not_after_ns = asn1_ns(X509_get0_notAfter(id->cert));
  return 0;
}

int sl_identity_wipe(sl_identity_t *id) {
  int fd = open(id->key_path, O_WRONLY | O_CLOEXEC), rc = 0;
  if (fd >= 0) {
    struct stat sb;
    static const char zeros[4096];
    if (fstat(fd, &sb) == 0)
      for (off_t o = 0; o < sb.st_size; o += (off_t)sizeof(zeros))
        if (write(fd, zeros, sizeof(zeros)) < 0)
          break;
    (void)fsync(fd);
    close(fd);
  }
  if (unlink(id->key_path) < 0 && errno != ENOENT)
    rc = -errno;
  if (unlink(id->cert_path) < 0 && errno != ENOENT && !rc)
    rc = -errno;
  EVP_PKEY_free(id->key);
  id->key = NULL;
  X509_free(id->cert);
  id->cert = NULL;
  return rc;
}

void sl_identity_free(sl_identity_t *id) {
  if (!id)
    return;
  EVP_PKEY_free(id->key);
  X509_free(id->cert);
  free(id);
}
