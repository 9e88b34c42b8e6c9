/*
 * enrol_centre: the centre's enrolment code (fleet/enroll/enroll.h) without
 * a broker. Keys, CSRs and the CA are made by the openssl CLI, and the
 * signed certificate is checked by the openssl CLI too (verify, text), so
 * the test does not trust the code it tests to read its own output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "fleet/enroll/enroll.h"

static char tmp[] = "/tmp/enrol_centre.XXXXXX";

static void sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  if (system(cmd) != 0)
    fail_msg("command failed: %s", cmd);
}

static char *slurp(const char *fmt, ...) {
  char path[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(path, sizeof(path), fmt, ap);
  va_end(ap);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char *buf = calloc(1, 1 << 16);
  size_t n = fread(buf, 1, (1 << 16) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

/* A key (P-256 or RSA) and a CSR with CN=cn; returns the CSR (owned) and
 * the key's SubjectPublicKeyInfo SHA-256 as the openssl CLI computes it. */
static char *mkcsr(const char *name, const char *cn, bool rsa, char sha[65]) {
  if (rsa)
    sh("openssl req -new -newkey rsa:2048 -nodes -keyout %s/%s.key -out "
       "%s/%s.csr -subj /CN=%s 2>/dev/null",
       tmp, name, tmp, name, cn);
  else
    sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
       "-keyout %s/%s.key -out %s/%s.csr -subj /CN=%s 2>/dev/null",
       tmp, name, tmp, name, cn);
  sh("openssl req -in %s/%s.csr -pubkey -noout | openssl pkey -pubin "
     "-outform DER | sha256sum | cut -c1-64 > %s/%s.sha",
     tmp, name, tmp, name);
  char *s = slurp("%s/%s.sha", tmp, name);
  memcpy(sha, s, 64);
  sha[64] = '\0';
  free(s);
  return slurp("%s/%s.csr", tmp, name);
}

static int setup(void **state) {
  (void)state;
  if (!mkdtemp(tmp))
    return -1;
  sh("openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
     "-nodes -keyout %s/ca.key -out %s/ca.pem -days 2 -subj '/CN=test fleet "
     "CA' -addext basicConstraints=critical,CA:TRUE -addext "
     "keyUsage=critical,keyCertSign 2>/dev/null && chmod 600 %s/ca.key",
     tmp, tmp, tmp);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  sh("rm -rf %s", tmp);
  return 0;
}

static sl_enroll_ca_t *load_ca(void) {
  char cert[300], key[300], err[512];
  sl_enroll_ca_t *ca;
  snprintf(cert, sizeof(cert), "%s/ca.pem", tmp);
  snprintf(key, sizeof(key), "%s/ca.key", tmp);
  int rc = sl_enroll_ca_load(cert, key, &ca, err, sizeof(err));
  if (rc)
    fail_msg("ca load: %s", err);
  return ca;
}

static void test_sign(void **state) {
  (void)state;
  char sha[65], hex[65], err[512], cn[128];
  char *csr = mkcsr("n1", "somebody-else", false, sha);
  sl_enroll_ca_t *ca = load_ca();
  char *cert;
  int64_t na, na2;
  int64_t now = (int64_t)time(NULL);

  assert_int_equal(sl_enroll_csr_check(csr, sha, hex, err, sizeof(err)), 0);
  assert_string_equal(hex, sha); /* the CLI's hash of the key */
  assert_int_equal(sl_enroll_sign(ca, csr, sha, "sl-node-1", 7 * 86400, now,
                                  &cert, &na, err, sizeof(err)),
                   0);
  assert_int_equal(na, now + 7 * 86400);
  bool by_ca = false;
  assert_int_equal(
      sl_enroll_cert_info(cert, ca, cn, sizeof(cn), hex, &na2, &by_ca), 0);
  assert_string_equal(cn, "sl-node-1"); /* forced, whatever the CSR said */
  assert_string_equal(hex, sha);
  assert_int_equal(na2, na);
  assert_true(by_ca);

  /* What the openssl CLI sees. */
  FILE *f = fopen("/dev/null", "r");
  fclose(f);
  char path[400];
  snprintf(path, sizeof(path), "%s/n1.crt", tmp);
  f = fopen(path, "w");
  fputs(cert, f);
  fclose(f);
  sh("openssl verify -CAfile %s/ca.pem -purpose sslclient %s/n1.crt "
     ">/dev/null",
     tmp, tmp);
  sh("openssl x509 -in %s/n1.crt -noout -text > %s/n1.txt", tmp, tmp);
  char *txt = slurp("%s/n1.txt", tmp);
  assert_non_null(strstr(txt, "Subject: CN = sl-node-1"));
  assert_non_null(strstr(txt, "TLS Web Client Authentication"));
  assert_non_null(strstr(txt, "Digital Signature"));
  assert_null(strstr(txt, "Certificate Sign"));
  assert_non_null(strstr(txt, "CA:FALSE"));
  assert_null(strstr(txt, "somebody-else"));
  free(txt);
  /* The serial: 128 bits (16 bytes, "xx:" each). */
  sh("openssl x509 -in %s/n1.crt -noout -serial | cut -d= -f2 | tr -d '\\n' "
     "> %s/n1.serial",
     tmp, tmp);
  char *serial = slurp("%s/n1.serial", tmp);
  assert_int_equal(strlen(serial), 32);
  /* Two signatures of one CSR: different serials. */
  char *cert2;
  assert_int_equal(sl_enroll_sign(ca, csr, sha, "sl-node-1", 3600, now, &cert2,
                                  &na, err, sizeof(err)),
                   0);
  snprintf(path, sizeof(path), "%s/n1b.crt", tmp);
  f = fopen(path, "w");
  fputs(cert2, f);
  fclose(f);
  sh("test \"$(openssl x509 -in %s/n1b.crt -noout -serial)\" != "
     "\"serial=%s\"",
     tmp, serial);
  free(serial);
  free(cert2);
  free(cert);
  free(csr);
  sl_enroll_ca_free(ca);
}

static void test_sign_refusals(void **state) {
  (void)state;
  char sha[65], sha2[65], hex[65], err[512];
  char *csr = mkcsr("n2", "x", false, sha);
  char *other = mkcsr("n3", "x", false, sha2);
  char *rsa = mkcsr("r1", "x", true, sha2);
  sl_enroll_ca_t *ca = load_ca();
  char *cert = NULL;
  int64_t na;

  /* The key_sha256 of another key. */
  assert_int_equal(sl_enroll_sign(ca, csr, sha2, "sl-a", 3600, 0, &cert, &na,
                                  err, sizeof(err)),
                   SL_EKEY);
  assert_null(cert);
  assert_non_null(strstr(err, "not the key_sha256"));
  /* RSA is refused: node keys are P-256. */
  assert_int_equal(sl_enroll_csr_check(rsa, NULL, hex, err, sizeof(err)),
                   SL_EKEY);
  /* A CSR whose signature does not match (one byte of the signature
   * flipped in the DER, re-encoded as PEM by the CLI). */
  sh("openssl req -in %s/n2.csr -outform DER -out %s/n2.der && "
     "python3 -c \"import sys; b=bytearray(open(sys.argv[1],'rb').read()); "
     "b[-5]^=1; open(sys.argv[1],'wb').write(b)\" %s/n2.der && "
     "openssl req -inform DER -in %s/n2.der -out %s/bad.csr 2>/dev/null",
     tmp, tmp, tmp, tmp, tmp);
  char *bad = slurp("%s/bad.csr", tmp);
  int rc = sl_enroll_csr_check(bad, NULL, hex, err, sizeof(err));
  assert_true(rc == SL_ESIGNATURE || rc == SL_EPROTO);
  /* Not a CSR at all; an id that cannot be a CN/principal. */
  assert_int_equal(sl_enroll_csr_check("hello", NULL, hex, err, sizeof(err)),
                   SL_EPROTO);
  assert_int_equal(sl_enroll_sign(ca, csr, sha, "a,CN=admin", 3600, 0, &cert,
                                  &na, err, sizeof(err)),
                   SL_ECONFIG);
  free(bad);
  free(csr);
  free(other);
  free(rsa);
  sl_enroll_ca_free(ca);
}

static void test_ca_load(void **state) {
  (void)state;
  char cert[300], key[300], err[512];
  sl_enroll_ca_t *ca = NULL;
  snprintf(cert, sizeof(cert), "%s/ca.pem", tmp);
  snprintf(key, sizeof(key), "%s/ca.key", tmp);
  sh("chmod 644 %s", key);
  assert_int_equal(sl_enroll_ca_load(cert, key, &ca, err, sizeof(err)),
                   SL_EKEY);
  assert_null(ca);
  assert_non_null(strstr(err, "chmod 600"));
  sh("chmod 600 %s", key);
  /* A key that is not the certificate's. */
  sh("openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out "
     "%s/other.key 2>/dev/null && chmod 600 %s/other.key",
     tmp, tmp);
  snprintf(key, sizeof(key), "%s/other.key", tmp);
  assert_int_equal(sl_enroll_ca_load(cert, key, &ca, err, sizeof(err)),
                   SL_EKEY);
  assert_non_null(strstr(err, "does not match"));
  /* A leaf certificate is not a CA. */
  sh("openssl req -x509 -new -key %s/other.key -out %s/leaf.pem -days 1 "
     "-subj /CN=leaf -addext basicConstraints=critical,CA:FALSE",
     tmp, tmp);
  snprintf(cert, sizeof(cert), "%s/leaf.pem", tmp);
  assert_int_equal(sl_enroll_ca_load(cert, key, &ca, err, sizeof(err)),
                   SL_EKEY);
  assert_non_null(strstr(err, "not a CA"));
}

/* ---- rules -----------------------------------------------------------------
 */

static const char rules_yaml[] = "auto_approve: true\n"
                                 "cert_lifetime: 30d\n"
                                 "serials: [\"SN-2026-*\", LAB-1]\n"
                                 "claims: [plant-7]\n"
                                 "labels:\n"
                                 "  - key: site\n"
                                 "    values: [\"plant-*\"]\n"
                                 "  - key: line\n";

typedef struct req {
  Sluice__V1__EnrolRequest r;
  Sluice__V1__EnrolRequest__LabelsEntry e[4], *ep[4];
  char id[32];
} req_t;

/* A request from a node whose key hash is sha (its id derived from it). */
static void mkreq(req_t *q, const char *sha, const char *serial,
                  const char *claim, const char *k1, const char *v1) {
  memset(q, 0, sizeof(*q));
  sluice__v1__enrol_request__init(&q->r);
  snprintf(q->id, sizeof(q->id), "sl-%.20s", sha);
  q->r.node_id = q->id;
  q->r.key_sha256 = (char *)sha;
  q->r.dmi_serial = (char *)serial;
  q->r.claim = (char *)claim;
  q->r.time_ns = 1000;
  if (k1) {
    sluice__v1__enrol_request__labels_entry__init(&q->e[0]);
    q->e[0].key = (char *)k1;
    q->e[0].value = (char *)v1;
    q->ep[0] = &q->e[0];
    q->r.labels = q->ep;
    q->r.n_labels = 1;
  }
}

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void test_rules(void **state) {
  (void)state;
  sl_enroll_rules_t *r;
  char err[1024], why[300];
  req_t q;
  sl_enroll_state_t st = {.now_ns = 5000};
  assert_int_equal(sl_enroll_rules_load(NULL, "rules.yaml", rules_yaml,
                                        strlen(rules_yaml), &r, err,
                                        sizeof(err)),
                   0);
  assert_int_equal(r->cert_lifetime, 30ull * 86400 * 1000);

  mkreq(&q, SHA_A, "SN-2026-0042", "plant-7", "site", "plant-7");
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_APPROVED);
  mkreq(&q, SHA_A, "SN-1999-1", "plant-7", "site", "plant-7");
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_PENDING);
  assert_non_null(strstr(why, "allow-list"));
  mkreq(&q, SHA_A, "LAB-1", "other-claim", NULL, NULL);
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_DENIED);
  mkreq(&q, SHA_A, "LAB-1", "plant-7", "site", "office");
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_PENDING);
  assert_non_null(strstr(why, "site=office"));
  mkreq(&q, SHA_A, "LAB-1", "plant-7", "root", "yes");
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_PENDING);
  r->labels_strict = true;
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_DENIED);
  r->labels_strict = false;
  mkreq(&q, SHA_A, "LAB-1", "plant-7", "line", "anything");
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_APPROVED);
  /* An id of the derived form that is not the key's; a pinned id. */
  q.r.key_sha256 = SHA_B;
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_DENIED);
  q.r.key_sha256 = SHA_A;
  q.r.node_id = "press-07";
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_PENDING);
  r->pinned_ids = true;
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_APPROVED);
  /* auto_approve off: the lobby. No rules at all: the lobby. */
  r->auto_approve = false;
  mkreq(&q, SHA_A, "LAB-1", "plant-7", NULL, NULL);
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_PENDING);
  assert_int_equal(sl_enroll_decide(NULL, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_PENDING);
  r->auto_approve = true;

  /* Operator decisions, renewals, revocation. */
  Sluice__V1__EnrolDecision d = SLUICE__V1__ENROL_DECISION__INIT;
  Sluice__V1__EnrolResponse ok = SLUICE__V1__ENROL_RESPONSE__INIT;
  mkreq(&q, SHA_A, "SN-1999-1", "plant-7", NULL, NULL); /* not by rule */
  d.decision = SL_ENROLL_APPROVED;
  d.time_ns = 2000;
  st.decision = &d;
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_APPROVED);
  /* ... but not for a key the derived id is not: an operator approving
   * "the node" must not approve a stranger's key that took its place in
   * the lobby. */
  q.r.key_sha256 = SHA_B;
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_DENIED);
  q.r.key_sha256 = SHA_A;
  d.decision = SL_ENROLL_DENIED;
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_DENIED);
  /* Approved at 3000 (after the decision), valid until 10000: a renewal
   * with the same key is approved, with another key it waits. */
  d.decision = SL_ENROLL_APPROVED;
  ok.decision = SL_ENROLL_APPROVED;
  ok.key_sha256 = SHA_A;
  ok.time_ns = 3000;
  ok.not_after_ns = 10000;
  st.approved = &ok;
  q.r.renewal = true;
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_APPROVED);
  assert_non_null(strstr(why, "renewal"));
  r->auto_renew = false;
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_PENDING);
  r->auto_renew = true;
  q.r.key_sha256 = SHA_B;
  q.r.node_id = "press-07";
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_PENDING);
  assert_non_null(strstr(why, "another key"));
  /* Expired: a renewal with the same key is a new enrolment (rules). */
  q.r.key_sha256 = SHA_A;
  snprintf(q.id, sizeof(q.id), "sl-%.20s", SHA_A);
  q.r.node_id = q.id;
  st.now_ns = 20000;
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_PENDING); /* serial SN-1999-1: not by rule */
  st.revoked = true;
  assert_int_equal(sl_enroll_decide(r, &q.r, &st, why, sizeof(why)),
                   SL_ENROLL_REVOKED);
  sl_enroll_rules_free(r);

  /* Errors name the line and the key. */
  const char bad[] = "auto_approve: maybe\nserialz: [a]\n";
  assert_int_not_equal(sl_enroll_rules_load(NULL, "bad.yaml", bad, strlen(bad),
                                            &r, err, sizeof(err)),
                       0);
  assert_non_null(strstr(err, "bad.yaml:1:"));
  assert_non_null(strstr(err, "serialz"));
}

static void test_acls(void **state) {
  (void)state;
  sl_enroll_acl_t a[SL_ENROLL_MAX_ACLS];
  sl_enroll_acl_opts_t o = {.prefix = "sluice.fleet."};
  size_t n = sl_enroll_acls_claim(&o, a);
  /* The claim: write requests, read responses, its consumer's group;
   * nothing else. */
  assert_int_equal(n, 3);
  assert_int_equal(a[2].resource, RD_KAFKA_RESOURCE_GROUP);
  assert_string_equal(a[2].name, "sluice-enrol-");
  assert_string_equal(a[0].name, "sluice.fleet.enrol.requests");
  assert_int_equal(a[0].operation, RD_KAFKA_ACL_OPERATION_WRITE);
  assert_int_equal(a[0].pattern, RD_KAFKA_RESOURCE_PATTERN_LITERAL);
  assert_string_equal(a[1].name, "sluice.fleet.enrol.responses");
  assert_int_equal(a[1].operation, RD_KAFKA_ACL_OPERATION_READ);

  n = sl_enroll_acls_node(&o, "sl-1", a);
  bool txn = false, txn1 = false, desired = false, idem = false;
  for (size_t i = 0; i < n; i++) {
    if (a[i].resource == 5) {
      /* Literal: a prefix would cover sl-10's transactional id too. */
      assert_int_equal(a[i].pattern, RD_KAFKA_RESOURCE_PATTERN_LITERAL);
      txn |= !strcmp(a[i].name, "sluice-sl-1");
      txn1 |= !strcmp(a[i].name, "sluice-sl-1.1");
    }
    if (!strcmp(a[i].name, "sluice.fleet.desired")) {
      assert_int_equal(a[i].operation, RD_KAFKA_ACL_OPERATION_READ);
      desired = true;
    }
    idem |= a[i].resource == RD_KAFKA_RESOURCE_BROKER &&
            a[i].operation == RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE;
    /* Nothing to read in another's name, never ALL. */
    assert_int_not_equal(a[i].operation, RD_KAFKA_ACL_OPERATION_ALL);
  }
  assert_true(txn && txn1 && desired && idem);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sign),    cmocka_unit_test(test_sign_refusals),
      cmocka_unit_test(test_ca_load), cmocka_unit_test(test_rules),
      cmocka_unit_test(test_acls),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
