/*
 * TLS for the libmicrohttpd servers (security/tls.h): GnuTLS, which the
 * Debian libmicrohttpd is built with.
 *
 * libmicrohttpd loads a certificate given as an option once, at start. To
 * reload it, the server is given a certificate callback
 * (MHD_OPTION_HTTPS_CERT_CALLBACK) that answers each handshake with the
 * current generation. A generation is never freed while the server runs
 * (a session may still point at its certificate), only when the object is:
 * each reload keeps one more (a few KiB).
 *
 * The callback has no user pointer, so each object takes one of a few
 * static slots, each with its own trampoline.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "security/tls.h"

#define MAX_CERTS 8
#define SLOTS 4

typedef struct gen {
  struct gen *older;
  gnutls_pcert_st pcert[MAX_CERTS];
  unsigned npcert;
  gnutls_privkey_t key;
  gnutls_x509_trust_list_t trust; /* client CA, NULL = none */
} gen_t;

struct sl_tls_mhd {
  pthread_mutex_t lock;
  gen_t *cur;   /* current generation; older ones chained behind it */
  char *ca_pem; /* client CA text given to libmicrohttpd at start */
  int slot;     /* index in slots[] */
};

static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static sl_tls_mhd_t *slots[SLOTS];

static int retrieve(int slot, gnutls_pcert_st **pcert, unsigned *n,
                    gnutls_privkey_t *key) {
  sl_tls_mhd_t *t;
  pthread_mutex_lock(&slots_lock);
  t = slots[slot];
  pthread_mutex_unlock(&slots_lock);
  if (!t)
    return -1;
  pthread_mutex_lock(&t->lock);
  *pcert = t->cur->pcert;
  *n = t->cur->npcert;
  *key = t->cur->key;
  pthread_mutex_unlock(&t->lock);
  return 0;
}

#define TRAMPOLINE(i)                                                          \
  static int cert_cb##i(gnutls_session_t s, const gnutls_datum_t *rdn,         \
                        int nrdn, const gnutls_pk_algorithm_t *algos,          \
                        int nalgos, gnutls_pcert_st **pcert, unsigned *n,      \
                        gnutls_privkey_t *key) {                               \
    (void)s, (void)rdn, (void)nrdn, (void)algos, (void)nalgos;                 \
    return retrieve(i, pcert, n, key);                                         \
  }
TRAMPOLINE(0)
TRAMPOLINE(1)
TRAMPOLINE(2)
TRAMPOLINE(3)
static gnutls_certificate_retrieve_function2 *const trampolines[SLOTS] = {
    cert_cb0, cert_cb1, cert_cb2, cert_cb3};

static void gen_free(gen_t *g) {
  while (g) {
    gen_t *older = g->older;
    for (unsigned i = 0; i < g->npcert; i++)
      gnutls_pcert_deinit(&g->pcert[i]);
    if (g->key)
      gnutls_privkey_deinit(g->key);
    if (g->trust)
      gnutls_x509_trust_list_deinit(g->trust, 1);
    free(g);
    g = older;
  }
}

static int gnutls_fail(char *errstr, size_t errlen, const char *what,
                       const char *file, int err) {
  snprintf(errstr, errlen, "%s %s: %s", what, file, gnutls_strerror(err));
  return SL_ECONFIG;
}

static int gen_load(const sl_config_tls_t *conf, gen_t **out, char *errstr,
                    size_t errlen) {
  gnutls_datum_t data = {NULL, 0};
  gnutls_certificate_credentials_t check = NULL;
  gen_t *g = calloc(1, sizeof(*g));
  int rc, err;

  if (!g)
    return -ENOMEM;
  /* The pair is checked by loading it as GnuTLS would at start. */
  if ((err = gnutls_certificate_allocate_credentials(&check)) < 0) {
    rc = -ENOMEM;
    goto fail;
  }
  if ((err = gnutls_certificate_set_x509_key_file2(
           check, conf->cert, conf->key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
    snprintf(errstr, errlen, "certificate %s with key %s: %s", conf->cert,
             conf->key, gnutls_strerror(err));
    rc = SL_ECONFIG;
    goto fail;
  }
  if ((err = gnutls_load_file(conf->cert, &data)) < 0) {
    rc = gnutls_fail(errstr, errlen, "certificate", conf->cert, err);
    goto fail;
  }
  g->npcert = MAX_CERTS;
  if ((err = gnutls_pcert_list_import_x509_raw(g->pcert, &g->npcert, &data,
                                               GNUTLS_X509_FMT_PEM, 0)) < 0) {
    g->npcert = 0;
    rc = gnutls_fail(errstr, errlen, "certificate", conf->cert, err);
    goto fail;
  }
  gnutls_free(data.data);
  data.data = NULL;
  if ((err = gnutls_load_file(conf->key, &data)) < 0 ||
      (err = gnutls_privkey_init(&g->key)) < 0 ||
      (err = gnutls_privkey_import_x509_raw(g->key, &data, GNUTLS_X509_FMT_PEM,
                                            NULL, 0)) < 0) {
    rc = gnutls_fail(errstr, errlen, "key", conf->key, err);
    goto fail;
  }
  if (*conf->client_ca) {
    if ((err = gnutls_x509_trust_list_init(&g->trust, 0)) < 0) {
      rc = -ENOMEM;
      goto fail;
    }
    err = gnutls_x509_trust_list_add_trust_file(g->trust, conf->client_ca, NULL,
                                                GNUTLS_X509_FMT_PEM, 0, 0);
    if (err <= 0) {
      rc = gnutls_fail(errstr, errlen, "client CA", conf->client_ca,
                       err ? err : GNUTLS_E_NO_CERTIFICATE_FOUND);
      goto fail;
    }
  }
  gnutls_free(data.data);
  gnutls_certificate_free_credentials(check);
  *out = g;
  return 0;
fail:
  gnutls_free(data.data);
  if (check)
    gnutls_certificate_free_credentials(check);
  gen_free(g);
  return rc;
}

int sl_tls_mhd_new(const sl_config_tls_t *conf, sl_tls_mhd_t **out,
                   char *errstr, size_t errlen) {
  sl_tls_mhd_t *t = calloc(1, sizeof(*t));
  gnutls_datum_t ca = {NULL, 0};
  int rc;

  if (!t)
    return -ENOMEM;
  pthread_mutex_init(&t->lock, NULL);
  t->slot = -1;
  if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
      MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES) {
    snprintf(errstr, errlen,
             "this libmicrohttpd is built without TLS (GnuTLS): terminate "
             "TLS in front of sluice instead (docs/security/tls.md)");
    rc = SL_ECONFIG;
    goto fail;
  }
  if ((rc = gen_load(conf, &t->cur, errstr, errlen)) < 0)
    goto fail;
  if (*conf->client_ca) {
    if (gnutls_load_file(conf->client_ca, &ca) < 0 ||
        !(t->ca_pem = strndup((const char *)ca.data, ca.size))) {
      snprintf(errstr, errlen, "client CA %s: cannot read", conf->client_ca);
      rc = SL_ECONFIG;
      goto fail;
    }
  }
  pthread_mutex_lock(&slots_lock);
  for (int i = 0; i < SLOTS && t->slot < 0; i++)
    if (!slots[i]) {
      slots[i] = t;
      t->slot = i;
    }
  pthread_mutex_unlock(&slots_lock);
  if (t->slot < 0) {
    snprintf(errstr, errlen, "too many TLS servers");
    rc = -EMFILE;
    goto fail;
  }
  gnutls_free(ca.data);
  *out = t;
  return 0;
fail:
  gnutls_free(ca.data);
  sl_tls_mhd_free(t);
  return rc;
}

void sl_tls_mhd_swap(sl_tls_mhd_t *cur, sl_tls_mhd_t *nw) {
  gen_t *g;
  pthread_mutex_lock(&nw->lock);
  g = nw->cur;
  nw->cur = NULL;
  pthread_mutex_unlock(&nw->lock);
  pthread_mutex_lock(&cur->lock);
  g->older = cur->cur;
  cur->cur = g;
  pthread_mutex_unlock(&cur->lock);
  sl_tls_mhd_free(nw);
}

void sl_tls_mhd_free(sl_tls_mhd_t *t) {
  if (!t)
    return;
  if (t->slot >= 0) {
    pthread_mutex_lock(&slots_lock);
    slots[t->slot] = NULL;
    pthread_mutex_unlock(&slots_lock);
  }
  gen_free(t->cur);
  free(t->ca_pem);
  pthread_mutex_destroy(&t->lock);
  free(t);
}

unsigned sl_tls_mhd_flags(const sl_tls_mhd_t *t) {
  return t ? MHD_USE_TLS : 0;
}

void sl_tls_mhd_options(sl_tls_mhd_t *t, struct MHD_OptionItem *items) {
  size_t n = 0;
  if (t) {
    items[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0,
                                         (void *)trampolines[t->slot]};
    items[n++] = (struct MHD_OptionItem){
        MHD_OPTION_HTTPS_PRIORITIES, 0,
        (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"};
    /* With a trust list libmicrohttpd asks clients for a certificate (not
     * required: a token works too); verification is ours, against the
     * current CA, in sl_tls_mhd_peer_cn(). */
    if (t->ca_pem)
      items[n++] =
          (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, t->ca_pem};
  }
  items[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
}

int sl_tls_mhd_peer_cn(sl_tls_mhd_t *t, struct MHD_Connection *conn, char *cn,
                       size_t cnlen) {
  const union MHD_ConnectionInfo *ci;
  const gnutls_datum_t *peers;
  gnutls_x509_crt_t chain[MAX_CERTS];
  unsigned n = 0, status = 1, i;
  size_t len = cnlen;
  int ok = 0;

  *cn = 0;
  if (!t ||
      !(ci = MHD_get_connection_info(conn,
                                     MHD_CONNECTION_INFO_GNUTLS_SESSION)) ||
      !ci->tls_session ||
      !(peers = gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session,
                                             &n)) ||
      n == 0)
    return 0;
  if (n > MAX_CERTS)
    n = MAX_CERTS;
  for (i = 0; i < n; i++) {
    if (gnutls_x509_crt_init(&chain[i]) < 0)
      break;
    if (gnutls_x509_crt_import(chain[i], &peers[i], GNUTLS_X509_FMT_DER) < 0) {
      gnutls_x509_crt_deinit(chain[i]);
      break;
    }
  }
  if (i == n) {
    pthread_mutex_lock(&t->lock);
    if (t->cur->trust &&
        gnutls_x509_trust_list_verify_crt(t->cur->trust, chain, n, 0, &status,
                                          NULL) == 0 &&
        status == 0)
      ok = 1;
    pthread_mutex_unlock(&t->lock);
  }
  if (ok && (gnutls_x509_crt_get_dn_by_oid(
                 chain[0], GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &len) < 0 ||
             strlen(cn) != len))
    ok = 0;
  for (unsigned k = 0; k < i; k++)
    gnutls_x509_crt_deinit(chain[k]);
  if (!ok)
    *cn = 0;
  return ok;
}
