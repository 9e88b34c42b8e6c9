/*
 * security/identity.c: the node's key (made once, 0600, in a 0700
 * directory), its stable id, its CSR, and installing a certificate signed
 * by a CA made with the openssl CLI (another key's certificate and another
 * CA's are refused), then the decommission wipe.
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

#include "common/common.h"
#include "security/identity.h"

static char tmp[] = "/tmp/sl-identity-XXXXXX";

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  if (system(cmd) != 0)
    fail_msg("command failed: %s", cmd);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  char *buf = calloc(1, 65536);
  assert_non_null(f);
  assert_true(fread(buf, 1, 65535, f) > 0);
  fclose(f);
  return buf;
}

/* Signs the identity's CSR with the CA in tmp/ca.* into tmp/node.crt. */
static char *sign_csr(const sl_identity_t *id, const char *ca) {
  char *csr, path[600];
  assert_int_equal(sl_identity_csr(id, sl_identity_node_id(id), &csr), 0);
  snprintf(path, sizeof(path), "%s/req.csr", tmp);
  FILE *f = fopen(path, "w");
  fputs(csr, f);
  fclose(f);
  free(csr);
  sh("openssl req -in %s/req.csr -noout -verify 2>/dev/null", tmp);
  sh("openssl x509 -req -in %s/req.csr -CA %s/%s.crt -CAkey %s/%s.key "
     "-CAcreateserial -out %s/signed.crt -days 2 2>/dev/null",
     tmp, tmp, ca, tmp, ca, tmp);
  snprintf(path, sizeof(path), "%s/signed.crt", tmp);
  return slurp(path);
}

static void test_identity(void **state) {
  (void)state;
  char dir[600], err[512], path[700];
  struct stat sb;
  sl_identity_t *id, *again;
  assert_non_null(mkdtemp(tmp));
  snprintf(dir, sizeof(dir), "%s/identity", tmp);

  assert_int_equal(sl_identity_open(dir, false, &id, err, sizeof(err)),
                   SL_ENOTFOUND);
  assert_int_equal(sl_identity_open(dir, true, &id, err, sizeof(err)), 0);
  assert_int_equal(stat(dir, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0700);
  assert_int_equal(stat(sl_identity_key_path(id), &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  char nid[32];
  snprintf(nid, sizeof(nid), "%s", sl_identity_node_id(id));
  assert_int_equal(strlen(nid), 23);
  assert_memory_equal(nid, "sl-", 3);
  assert_memory_equal(nid + 3, sl_identity_key_sha256(id), 20);
  /* The same key, the same id. */
  assert_int_equal(sl_identity_open(dir, true, &again, err, sizeof(err)), 0);
  assert_string_equal(sl_identity_node_id(again), nid);
  sl_identity_free(again);
  int64_t nb, na;
  assert_int_equal(sl_identity_cert_times(id, &nb, &na), SL_ENOTFOUND);

  /* Two CAs made by the openssl CLI. */
  for (int i = 0; i < 2; i++)
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
       "-keyout %s/ca%d.key -out %s/ca%d.crt -subj /CN=test-ca-%d -days 2 "
       "2>/dev/null",
       tmp, i, tmp, i, i);
  snprintf(path, sizeof(path), "%s/ca0.crt", tmp);
  char *ca0 = slurp(path);
  snprintf(path, sizeof(path), "%s/ca1.crt", tmp);
  char *ca1 = slurp(path);

  /* Signed by CA 1, offered with CA 0: refused. */
  char *crt = sign_csr(id, "ca1");
  assert_int_equal(sl_identity_install(id, crt, ca0, err, sizeof(err)),
                   SL_EKEY);
  assert_non_null(strstr(err, "does not verify"));
  free(crt);
  /* Another key's certificate: refused. */
  char dir2[700];
  sl_identity_t *other;
  snprintf(dir2, sizeof(dir2), "%s/other", tmp);
  assert_int_equal(sl_identity_open(dir2, true, &other, err, sizeof(err)), 0);
  assert_string_not_equal(sl_identity_node_id(other), nid);
  crt = sign_csr(other, "ca0");
  assert_int_equal(sl_identity_install(id, crt, ca0, err, sizeof(err)),
                   SL_EKEY);
  assert_non_null(strstr(err, "not for this node's key"));
  free(crt);
  sl_identity_free(other);
  assert_int_equal(sl_identity_install(id, "junk", ca0, err, sizeof(err)),
                   SL_EPROTO);

  /* The right one: installed, and there after a reopen. */
  crt = sign_csr(id, "ca0");
  assert_int_equal(sl_identity_install(id, crt, ca0, err, sizeof(err)), 0);
  free(crt);
  assert_int_equal(sl_identity_cert_times(id, &nb, &na), 0);
  int64_t now = (int64_t)time(NULL) * 1000000000;
  assert_true(nb <= now + 60 * (int64_t)1000000000 && na > now);
  assert_int_equal(sl_identity_open(dir, true, &again, err, sizeof(err)), 0);
  assert_int_equal(sl_identity_cert_times(again, &nb, &na), 0);
  sl_identity_free(again);

  /* Decommission: the key is gone; a new start makes a new identity. */
  assert_int_equal(sl_identity_wipe(id), 0);
  assert_int_not_equal(stat(sl_identity_key_path(id), &sb), 0);
  assert_int_not_equal(stat(sl_identity_cert_path(id), &sb), 0);
  sl_identity_free(id);
  assert_int_equal(sl_identity_open(dir, true, &id, err, sizeof(err)), 0);
  assert_string_not_equal(sl_identity_node_id(id), nid);
  sl_identity_free(id);

  /* A key file others can read is refused. */
  snprintf(path, sizeof(path), "%s/node.key", dir);
  chmod(path, 0644);
  assert_int_equal(sl_identity_open(dir, true, &id, err, sizeof(err)), SL_EKEY);
  assert_non_null(strstr(err, "chmod 600"));
  free(ca0);
  free(ca1);
  sh("rm -rf %s", tmp);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_identity)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
