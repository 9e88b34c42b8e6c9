/*
 * security/identity.h: the node's own key and client certificate for Kafka
 * (zero-touch enrolment, docs/ENROLMENT.md). The key is made on the node
 * (ECDSA P-256: every TLS stack takes it) and never leaves it; the node id
 * is derived from it; the certificate comes back from the fleet's
 * enrolment service. Files in one directory (mode 0700): node.key (0600),
 * node.crt and ca.pem (0644), each replaced atomically (write, fsync,
 * rename). Never logs.
 */
#ifndef SL_IDENTITY_H
#define SL_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_identity sl_identity_t;

/*
 * Opens the identity in dir: loads dir/node.key, or with create makes the
 * directory (0700) and a new key (0600) when there is none; loads
 * dir/node.crt when present. *out owned: sl_identity_free().
 * Errors (message in err): SL_ENOTFOUND (no key and !create), SL_EKEY (a
 * key file that is not a private key, or readable by others), -errno.
 */
int sl_identity_open(const char *dir, bool create, sl_identity_t **out,
                     char *err, size_t errlen);

/* "sl-" and the first 20 hex digits of the SHA-256 of the public key
 * (SubjectPublicKeyInfo, DER): stable for the key, printable, a valid
 * node.id. */
const char *sl_identity_node_id(const sl_identity_t *id);

/* Hex SHA-256 of the public key (SubjectPublicKeyInfo, DER). */
const char *sl_identity_key_sha256(const sl_identity_t *id);

/* Paths of the key, the certificate and the CA chain (borrowed). */
const char *sl_identity_key_path(const sl_identity_t *id);
const char *sl_identity_cert_path(const sl_identity_t *id);
const char *sl_identity_ca_path(const sl_identity_t *id);

/* A PKCS#10 request (PEM) with subject CN=cn signed by the node's key.
 * *pem owned (free()). Errors: SL_EKEY, -ENOMEM. */
int sl_identity_csr(const sl_identity_t *id, const char *cn, char **pem);

/*
 * Installs a certificate from the enrolment service: checks that cert_pem
 * holds the node's public key, that it verifies against ca_pem and is
 * valid now (a clock off by up to 5 minutes is tolerated), then writes
 * node.crt and ca.pem. Errors (message in err): SL_EKEY (another key, does
 * not verify, expired), SL_EPROTO (not PEM), -errno.
 */
int sl_identity_install(sl_identity_t *id, const char *cert_pem,
                        const char *ca_pem, char *err, size_t errlen);

/* Validity of the installed certificate (ns since the epoch). Errors:
 * SL_ENOTFOUND (none installed). */
int sl_identity_cert_times(const sl_identity_t *id, int64_t *not_before_ns,
                           int64_t *not_after_ns);

/* Decommission: overwrites and removes the key, removes the certificate.
 * The identity is unusable afterwards. Returns 0 or -errno. */
int sl_identity_wipe(sl_identity_t *id);

void sl_identity_free(sl_identity_t *id);

#endif /* SL_IDENTITY_H */
