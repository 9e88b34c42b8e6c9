/*
 * fleet/enroll/ca.c: the fleet CA (enroll.h): loading it safely, checking a
 * node's CSR, signing its client certificate with OpenSSL's X509 API.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fleet/enroll/enroll.h"

struct sl_enroll_ca {
  X509 *cert;
  EVP_PKEY *key;
  char *chain_pem;
};

/* The last OpenSSL error as text (or "unknown"). */
static const char *ossl_err(char *buf, size_t len) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e)
    return "unknown error";
  ERR_error_string_n(e, buf, len);
  return buf;
}

static char *read_all(const char *path, int *rc, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0, cap = 0;
  if (!f) {
    *rc = -errno;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NULL;
  }
  for (;;) {
    if (n + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 8192;
      char *nb = realloc(buf, cap);
      if (!nb || cap > (1u << 24)) {
        free(nb ? nb : buf);
        fclose(f);
        *rc = -ENOMEM;
        snprintf(err, errlen, "%s: too large", path);
        return NULL;
      }
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0)
      break;
  }
  fclose(f);
  buf[n] = '\0';
  *rc = 0;
  return buf;
}

int sl_enroll_ca_load(const char *cert_path, const char *key_path,
                      sl_enroll_ca_t **out, char *err, size_t errlen) {
  char eb[256];
  struct stat st;
  int rc = SL_EKEY;
  BIO *b = NULL;
  sl_enroll_ca_t *ca = calloc(1, sizeof(*ca));
  *out = NULL;
  if (!ca)
    return -ENOMEM;
  if (stat(key_path, &st) < 0) {
    rc = -errno;
    snprintf(err, errlen, "%s: %s", key_path, strerror(errno));
    goto fail;
  }
  if (st.st_mode & 0027) {
    snprintf(err, errlen,
             "%s: the CA key may be read by others or written by its group "
             "(mode %03o): chmod 600 it",
             key_path, (unsigned)(st.st_mode & 0777));
    goto fail;
  }
  if (!(ca->chain_pem = read_all(cert_path, &rc, err, errlen)))
    goto fail;
  rc = SL_EKEY;
  if (!(b = BIO_new_mem_buf(ca->chain_pem, -1)) ||
      !(ca->cert = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
    snprintf(err, errlen, "%s: not a PEM certificate: %s", cert_path,
             ossl_err(eb, sizeof(eb)));
    goto fail;
  }
  BIO_free(b);
  if (!(b = BIO_new_file(key_path, "r")) ||
      !(ca->key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL))) {
    snprintf(err, errlen, "%s: not a PEM private key: %s", key_path,
             ossl_err(eb, sizeof(eb)));
    goto fail;
  }
  if (X509_check_private_key(ca->cert, ca->key) != 1) {
    ERR_clear_error();
    snprintf(err, errlen, "%s: the key does not match the certificate %s",
             key_path, cert_path);
    goto fail;
  }
  if (X509_check_ca(ca->cert) < 1) {
    snprintf(err, errlen, "%s: not a CA certificate (basicConstraints)",
             cert_path);
    goto fail;
  }
  BIO_free(b);
  *out = ca;
  return 0;
fail:
  BIO_free(b);
  sl_enroll_ca_free(ca);
  return rc;
}

void sl_enroll_ca_free(sl_enroll_ca_t *ca) {
  if (!ca)
    return;
  X509_free(ca->cert);
  EVP_PKEY_free(ca->key);
  free(ca->chain_pem);
  free(ca);
}

const char *sl_enroll_ca_pem(const sl_enroll_ca_t *ca) {
  return ca->chain_pem;
}

static void key_hash(EVP_PKEY *k, char hex[65]) {
  unsigned char *der = NULL, md[32];
  int n = i2d_PUBKEY(k, &der);
  hex[0] = '\0';
  if (n <= 0)
    return;
  SHA256(der, (size_t)n, md);
  OPENSSL_free(der);
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* Parses and checks a CSR; *req owned on success. */
static int csr_parse(const char *pem, const char *want, char key_hex[65],
                     X509_REQ **req, char *err, size_t errlen) {
  char eb[256], group[64];
  size_t glen = 0;
  BIO *b = BIO_new_mem_buf(pem ? pem : "", -1);
  X509_REQ *r = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  *req = NULL;
  if (!r) {
    snprintf(err, errlen, "not a PEM certificate request: %s",
             ossl_err(eb, sizeof(eb)));
    return SL_EPROTO;
  }
  EVP_PKEY *k = X509_REQ_get0_pubkey(r);
  if (!k || X509_REQ_verify(r, k) != 1) {
    ERR_clear_error();
    snprintf(err, errlen,
             "the request's signature does not verify with "
             "its key");
    X509_REQ_free(r);
    return SL_ESIGNATURE;
  }
  if (!EVP_PKEY_is_a(k, "EC") ||
      !EVP_PKEY_get_group_name(k, group, sizeof(group), &glen) ||
      (strcmp(group, "prime256v1") && strcmp(group, "P-256"))) {
    snprintf(err, errlen, "the request's key is not ECDSA P-256");
    X509_REQ_free(r);
    return SL_EKEY;
  }
  key_hash(k, key_hex);
  if (want && *want && strcasecmp(want, key_hex)) {
    snprintf(err, errlen,
             "the request's key (sha256 %.16s...) is not the key_sha256 it "
             "names (%.16s...)",
             key_hex, want);
    X509_REQ_free(r);
    return SL_EKEY;
  }
  *req = r;
  return 0;
}

int sl_enroll_csr_check(const char *csr_pem, const char *want_sha256,
                        char key_hex[65], char *err, size_t errlen) {
  X509_REQ *r;
  int rc = csr_parse(csr_pem, want_sha256, key_hex, &r, err, errlen);
  X509_REQ_free(r);
  return rc;
}

/* Node ids become a certificate's CN, a Kafka principal and part of a
 * transactional id: [A-Za-z0-9._-], 1..64. */
static bool id_ok(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n > 64)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *val) {
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, val);
  int ok = e && X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  return ok ? 0 : -1;
}

int sl_enroll_sign(const sl_enroll_ca_t *ca, const char *csr_pem,
                   const char *want_sha256, const char *node_id,
                   uint64_t lifetime_s, int64_t now_s, char **cert_pem,
                   int64_t *not_after_s, char *err, size_t errlen) {
  char key_hex[65], eb[256];
  unsigned char serial[16];
  X509_REQ *req = NULL;
  X509 *x = NULL;
  BIGNUM *bn = NULL;
  BIO *b = NULL;
  X509V3_CTX ctx;
  int rc;

  *cert_pem = NULL;
  if (!id_ok(node_id)) {
    snprintf(err, errlen,
             "node id \"%.64s\" is not 1-64 characters of [A-Za-z0-9._-]",
             node_id);
    return SL_ECONFIG;
  }
  if ((rc = csr_parse(csr_pem, want_sha256, key_hex, &req, err, errlen)) < 0)
    return rc;
  rc = -ENOMEM;
  if (RAND_bytes(serial, sizeof(serial)) != 1) {
    snprintf(err, errlen, "no randomness for the serial");
    goto fail;
  }
  serial[0] &= 0x7f; /* positive */
  serial[0] |= 0x01; /* and 128 bits long, never a short encoding */
  if (!(x = X509_new()) || !X509_set_version(x, X509_VERSION_3) ||
      !(bn = BN_bin2bn(serial, sizeof(serial), NULL)) ||
      !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
    goto ossl;
  X509_NAME *subj = X509_get_subject_name(x);
  if (!X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_ASC,
                                  (const unsigned char *)node_id, -1, -1, 0) ||
      !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
      !X509_set_pubkey(x, X509_REQ_get0_pubkey(req)) ||
      !ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(now_s - 300)) ||
      !ASN1_TIME_set(X509_getm_notAfter(x),
                     (time_t)(now_s + (int64_t)lifetime_s)))
    goto ossl;
  X509V3_set_ctx(&ctx, ca->cert, x, NULL, NULL, 0);
  if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
      add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") ||
      add_ext(x, &ctx, NID_ext_key_usage, "clientAuth") ||
      add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
      add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always"))
    goto ossl;
  const EVP_MD *md = EVP_PKEY_is_a(ca->key, "ED25519") ? NULL : EVP_sha256();
  if (!X509_sign(x, ca->key, md))
    goto ossl;
  BUF_MEM *mem;
  if (!(b = BIO_new(BIO_s_mem())) || !PEM_write_bio_X509(b, x))
    goto ossl;
  BIO_get_mem_ptr(b, &mem);
  if (!(*cert_pem = malloc(mem->length + 1)))
    goto fail;
  memcpy(*cert_pem, mem->data, mem->length);
  (*cert_pem)[mem->length] = '\0';
  *not_after_s = now_s + (int64_t)lifetime_s;
  rc = 0;
  goto done;
ossl:
  rc = SL_EKEY;
  snprintf(err, errlen, "signing failed: %s", ossl_err(eb, sizeof(eb)));
fail:
done:
  BIO_free(b);
  BN_free(bn);
  X509_free(x);
  X509_REQ_free(req);
  return rc;
}

int sl_enroll_cert_info(const char *cert_pem, const sl_enroll_ca_t *ca,
                        char *cn, size_t cnlen, char key_hex[65],
                        int64_t *not_after_s, bool *signed_by_ca) {
  BIO *b = BIO_new_mem_buf(cert_pem ? cert_pem : "", -1);
  X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  struct tm tm;
  BIO_free(b);
  ERR_clear_error();
  if (!x)
    return SL_EPROTO;
  if (cn && cnlen &&
      X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                                (int)cnlen) < 0)
    cn[0] = '\0';
  key_hash(X509_get0_pubkey(x), key_hex);
  if (not_after_s) {
    memset(&tm, 0, sizeof(tm));
    *not_after_s =
        ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) ? (int64_t)timegm(&tm) : 0;
  }
  if (signed_by_ca)
    *signed_by_ca = ca && X509_verify(x, X509_get0_pubkey(ca->cert)) == 1;
  ERR_clear_error();
  X509_free(x);
  return 0;
}
