/*
 * fleet/enroll/enroll.h: the centre's side of zero-touch enrolment (library
 * sl_enroll, docs/ENROLMENT.md): the fleet CA signing node certificates from
 * their CSRs (OpenSSL X509 API), the approval rules (a YAML file loaded by
 * the config engine), the decision over one request, the Kafka ACLs a
 * principal needs, and the enrolment topics over librdkafka. No logging:
 * `sluice fleet enroll` and `sluice fleet acl` (daemon/cmd/cmd_enroll.c)
 * print.
 *
 * Records are the messages of schemas/sluice/v1/enrol.proto.
 */
#ifndef SL_ENROLL_H
#define SL_ENROLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "config/cfg.h"
#include "sluice/v1/enrol.pb-c.h"

/* ---- the fleet CA (ca.c) ----------------------------------------------- */

typedef struct sl_enroll_ca sl_enroll_ca_t;

/*
 * Loads the fleet CA: its certificate (PEM; the first certificate is the
 * signer, the rest of the file is the chain sent to nodes) and its private
 * key (PEM, ECDSA P-256 or any key OpenSSL signs with). Refuses a key file
 * that group or others may read or write, a key that does not match the
 * certificate, and a certificate that is not a CA. *out owned: free with
 * sl_enroll_ca_free(). Errors (message in err): -errno, SL_EKEY.
 */
int sl_enroll_ca_load(const char *cert_path, const char *key_path,
                      sl_enroll_ca_t **out, char *err, size_t errlen);
void sl_enroll_ca_free(sl_enroll_ca_t *ca);

/* The CA chain as PEM (borrowed, valid while ca lives). */
const char *sl_enroll_ca_pem(const sl_enroll_ca_t *ca);

/*
 * Checks a CSR (PEM): parses it, verifies its self-signature (proof that
 * the requester holds the key), requires an ECDSA P-256 key, and computes
 * the hex SHA-256 of its SubjectPublicKeyInfo (DER) into key_hex. When
 * want_sha256 is not NULL/"" it must equal that hash. Errors (message in
 * err): SL_EPROTO (not a CSR), SL_ESIGNATURE (the signature does not
 * verify), SL_EKEY (wrong key type, or not the key of want_sha256).
 */
int sl_enroll_csr_check(const char *csr_pem, const char *want_sha256,
                        char key_hex[65], char *err, size_t errlen);

/*
 * Signs the CSR's key (checked as above) into a client certificate: subject
 * CN = node_id (whatever the CSR asked), issuer = the CA's subject, a random
 * 128-bit serial, notBefore = now_s - 5 minutes (clock skew), notAfter =
 * now_s + lifetime_s, basicConstraints CA:FALSE, keyUsage
 * digitalSignature, extendedKeyUsage clientAuth, subject and authority key
 * ids. *cert_pem owned (free()); *not_after_s set. Errors as
 * sl_enroll_csr_check(), SL_ECONFIG (an unusable node id), -ENOMEM.
 */
int sl_enroll_sign(const sl_enroll_ca_t *ca, const char *csr_pem,
                   const char *want_sha256, const char *node_id,
                   uint64_t lifetime_s, int64_t now_s, char **cert_pem,
                   int64_t *not_after_s, char *err, size_t errlen);

/* What a certificate (PEM) says: subject CN, hex SHA-256 of its public
 * key, notAfter (seconds since the epoch), whether issuer signed it (when
 * ca is not NULL). Returns 0 or SL_EPROTO. cn may be NULL. */
int sl_enroll_cert_info(const char *cert_pem, const sl_enroll_ca_t *ca,
                        char *cn, size_t cnlen, char key_hex[65],
                        int64_t *not_after_s, bool *signed_by_ca);

/* ---- rules (rules.c) --------------------------------------------------- */

typedef struct sl_enroll_label_rule {
  char *key;               /* a label key nodes may ask for */
  sl_cfg_strlist_t values; /* globs its value must match (empty: any) */
} sl_enroll_label_rule_t;

/* The rules file (docs/ENROLMENT.md "The enrolment service"). */
typedef struct sl_enroll_rules {
  bool auto_approve;        /* approve requests the rules accept */
  bool auto_renew;          /* approve renewals of the same key */
  uint64_t cert_lifetime;   /* ms */
  sl_cfg_strlist_t serials; /* dmi_serial globs (empty: any serial) */
  sl_cfg_strlist_t claims;  /* allowed claim ids (empty: any claim) */
  sl_cfg_array_t labels;    /* sl_enroll_label_rule_t: allowed labels */
  bool pinned_ids;          /* rules may approve ids not derived from the
                               key */
  bool labels_strict;       /* a label outside the rules: DENIED (else
                               PENDING) */
} sl_enroll_rules_t;

/* The rules' table (for the docs: sl_cfg_doc_table()). */
extern const sl_cfg_section_t sl_enroll_rules_section;

/* Loads a rules file (YAML) or text (path NULL: yaml/len, named name).
 * *out owned: sl_enroll_rules_free(). Errors: as sl_cfg_load(). */
int sl_enroll_rules_load(const char *path, const char *name, const char *yaml,
                         size_t len, sl_enroll_rules_t **out, char *err,
                         size_t errlen);
void sl_enroll_rules_free(sl_enroll_rules_t *r);

/* EnrolDecisionKind values (as the generated enum's). */
#define SL_ENROLL_PENDING SLUICE__V1__ENROL_DECISION_KIND__ENROL_PENDING
#define SL_ENROLL_APPROVED SLUICE__V1__ENROL_DECISION_KIND__ENROL_APPROVED
#define SL_ENROLL_DENIED SLUICE__V1__ENROL_DECISION_KIND__ENROL_DENIED
#define SL_ENROLL_REVOKED SLUICE__V1__ENROL_DECISION_KIND__ENROL_REVOKED

/* Static name of a decision ("APPROVED"). */
const char *sl_enroll_decision_name(int d);

/* What the centre knows of a node besides its request. */
typedef struct sl_enroll_state {
  const Sluice__V1__EnrolDecision *decision; /* latest operator decision */
  const Sluice__V1__EnrolResponse *approved; /* latest APPROVED response */
  bool revoked;   /* a REVOKED decision or response stands */
  int64_t now_ns; /* the clock */
} sl_enroll_state_t;

/*
 * Decides one request (its CSR already checked): returns SL_ENROLL_* and a
 * reason (static text or formatted into reason). In order: a revoked node
 * is REVOKED; an id of the derived form ("sl-" + 20 hex digits of
 * key_sha256) that is not the key's is DENIED, whoever approves; an
 * operator's decision newer than the node's approval is that decision; a
 * renewal of the approved key while its certificate is valid is APPROVED
 * (with auto_renew); a new key for a node id that holds a valid approval
 * waits for an operator (PENDING); a pinned id waits unless r->pinned_ids;
 * then the rules (claim, labels, serial, auto_approve). r may be NULL (no
 * rules: every new request waits).
 */
int sl_enroll_decide(const sl_enroll_rules_t *r,
                     const Sluice__V1__EnrolRequest *req,
                     const sl_enroll_state_t *st, char *reason,
                     size_t reasonlen);

/* ---- ACLs (acl.c) ------------------------------------------------------ */

/* One ACL binding (librdkafka's numbering of resource, pattern and
 * operation types: rd_kafka_ResourceType_t, rd_kafka_ResourcePatternType_t,
 * rd_kafka_AclOperation_t). */
typedef struct sl_enroll_acl {
  int resource; /* RD_KAFKA_RESOURCE_TOPIC, _GROUP, _BROKER (cluster), ... */
  char name[320];
  int pattern; /* RD_KAFKA_RESOURCE_PATTERN_LITERAL or _PREFIXED */
  int operation;
} sl_enroll_acl_t;

typedef struct sl_enroll_acl_opts {
  const char *prefix;      /* fleet topics, "sluice.fleet." */
  const char *data_prefix; /* data topics, "sluice." */
  const char *checkpoint;  /* "sluice.checkpoints" */
  const char *txn_prefix;  /* "sluice-" */
} sl_enroll_acl_opts_t;

#define SL_ENROLL_MAX_ACLS 24

/* The ACLs of the claim principal (User:claim-<name>): WRITE
 * <prefix>enrol.requests, READ <prefix>enrol.responses. Returns the count
 * written to out (at most SL_ENROLL_MAX_ACLS). */
size_t sl_enroll_acls_claim(const sl_enroll_acl_opts_t *o,
                            sl_enroll_acl_t *out);

/* The ACLs of node principal User:<node_id> (docs/ENROLMENT.md). */
size_t sl_enroll_acls_node(const sl_enroll_acl_opts_t *o, const char *node_id,
                           sl_enroll_acl_t *out);

/* ---- the enrolment topics over librdkafka (kafka.c) ------------------- */

enum {
  SL_ENROLL_T_REQUESTS = 0,
  SL_ENROLL_T_RESPONSES,
  SL_ENROLL_T_DECISIONS,
  SL_ENROLL_T_N
};

typedef struct sl_enroll_kafka sl_enroll_kafka_t;

typedef struct sl_enroll_kconf {
  const char *brokers;
  const char *prefix;       /* NULL: "sluice.fleet." */
  const char *const *props; /* librdkafka "name=value" */
  size_t n_props;
} sl_enroll_kconf_t;

/* Opens a producer and an admin handle. *out owned (sl_enroll_kafka_close).
 * Errors: SL_ECONFIG, SL_EKAFKA (message in err). */
int sl_enroll_kafka_open(const sl_enroll_kconf_t *c, sl_enroll_kafka_t **out,
                         char *err, size_t errlen);
void sl_enroll_kafka_close(sl_enroll_kafka_t *k);

/* Topic name of SL_ENROLL_T_* (borrowed). */
const char *sl_enroll_topic(const sl_enroll_kafka_t *k, int t);

/* Creates the three topics (compacted) when missing: partitions,
 * replication (-1 = the broker's default). 0 or SL_EKAFKA. */
int sl_enroll_kafka_init(sl_enroll_kafka_t *k, int partitions, int replication,
                         char *err, size_t errlen);

/* Partition count of topic t (metadata), or a negative error. */
int sl_enroll_partitions(sl_enroll_kafka_t *k, int t, char *err, size_t errlen);

/* Produces value (len bytes) keyed by node_id to topic t, on partition
 * sl_fleet_partition(node_id), and waits for its delivery. 0, SL_EKAFKA. */
int sl_enroll_produce(sl_enroll_kafka_t *k, int t, const char *node_id,
                      const void *val, size_t len, char *err, size_t errlen);

/* A record read back: the callback gets topic index, key and value. */
typedef void (*sl_enroll_record_cb)(void *opaque, int t, const char *key,
                                    size_t klen, const void *val, size_t vlen);

typedef struct sl_enroll_reader sl_enroll_reader_t;

/* A consumer assigned every partition of the three topics from the start
 * (no group joined). Errors: SL_ENOTFOUND (a topic is missing), SL_EKAFKA. */
int sl_enroll_reader_open(sl_enroll_kafka_t *k, sl_enroll_reader_t **out,
                          char *err, size_t errlen);
void sl_enroll_reader_close(sl_enroll_reader_t *r);

/* Delivers what arrives within timeout_ms to cb. Returns the number of
 * records, or SL_EKAFKA. *caught_up: every partition reached its end at
 * least once. */
int sl_enroll_reader_poll(sl_enroll_reader_t *r, int timeout_ms,
                          sl_enroll_record_cb cb, void *opaque,
                          bool *caught_up);

/* CreateAcls for principal ("User:x") over n ACLs (host "*", ALLOW), or
 * DeleteAcls of everything the principal was given (del). 0 or SL_EKAFKA
 * with the broker's reason in err. */
int sl_enroll_acls_apply(sl_enroll_kafka_t *k, const char *principal,
                         const sl_enroll_acl_t *acls, size_t n, bool del,
                         char *err, size_t errlen);

/* The same for np principals at once (principals[p] gets acls[p][0 ..
 * n[p]-1]): one CreateAcls (DeleteAcls) request, one controller commit, for
 * a whole pass of approvals. */
int sl_enroll_acls_apply_many(sl_enroll_kafka_t *k, size_t np,
                              const char *const *principals,
                              const sl_enroll_acl_t *const *acls,
                              const size_t *n, bool del, char *err,
                              size_t errlen);

/* Produces n records (vals[i], lens[i]) keyed by ids[i] to topic t, each on
 * its node's partition, and waits for every delivery: errs[i] is 0 or
 * SL_EKAFKA. Returns 0 when all were delivered (else the last error in
 * err). */
int sl_enroll_produce_many(sl_enroll_kafka_t *k, int t, size_t n,
                           const char *const *ids, const void *const *vals,
                           const size_t *lens, int *errs, char *err,
                           size_t errlen);

#endif /* SL_ENROLL_H */
