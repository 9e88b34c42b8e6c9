/*
 * config/schema/bootstrap.c: the enrolment bootstrap file (enrol.bootstrap,
 * docs/ENROLMENT.md): what a new box needs to enrol itself, one file for a
 * whole fleet, shipped in the image or a ConfigMap. Its own table on the
 * shared engine, so it gets the same errors, file-mode checks and docs.
 */
#include <stddef.h>
#include <stdlib.h>

#include "config/config_int.h"

#define BOPT(n, t, f, d, fl, desc_, ...)                                       \
  {                                                                            \
    .name = n, .type = SL_CFG_##t, .off = offsetof(sl_config_bootstrap_t, f),  \
    .def = d, .flags = fl, .desc = desc_, __VA_ARGS__                          \
  }

static const sl_cfg_opt_t bootstrap_opts[] = {
    BOPT("brokers", STRING, brokers, NULL, SL_CFG_REQUIRED,
         "The fleet's Kafka bootstrap servers (their SSL listener), comma "
         "separated."),
    BOPT("ca", PATH, ca, NULL, SL_CFG_REQUIRED | SL_CFG_TRUST_FILE,
         "CA bundle (PEM) the brokers' certificates are checked against."),
    BOPT("claim.cert", PATH, claim_cert, NULL,
         SL_CFG_REQUIRED | SL_CFG_TRUST_FILE,
         "The fleet-wide claim certificate (PEM): Kafka's ACLs let it only "
         "send enrolment requests and read the answers."),
    BOPT("claim.key", PATH, claim_key, NULL,
         SL_CFG_REQUIRED | SL_CFG_SECRET_FILE,
         "Key of the claim certificate (PEM); not readable by others."),
    BOPT("claim.name", STRING, claim_name, "default", 0,
         "Which claim this is, sent with each request (the service's rules "
         "may accept some claims only)."),
    BOPT("topic_prefix", STRING, topic_prefix, "sluice.fleet.", 0,
         "Prefix of the fleet and enrolment topics."),
    BOPT("labels", LIST, labels, "", 0,
         "Labels the node asks for, key=value (the service approves them)."),
    BOPT("verify_key", PATH, verify_key, NULL,
         SL_CFG_REQUIRED | SL_CFG_TRUST_FILE,
         "The fleet's Ed25519 public key (PEM) desired documents are signed "
         "with (fleet.verify_key when that is not set)."),
    BOPT("properties", LIST, properties, "", SL_CFG_KV_SECRETS,
         "More librdkafka properties for the fleet's brokers, key=value "
         "(e.g. ssl.endpoint.identification.algorithm=none on a lab).",
         .printable = config__kv_printable, .kv_file = config__kv_file),
};

static const sl_cfg_section_t bootstrap_root = {
    .name = "",
    .opts = bootstrap_opts,
    .n_opts = SL_ARRAY_SIZE(bootstrap_opts),
    .size = sizeof(sl_config_bootstrap_t),
    .flags = SL_CFG_SEC_PRIVATE_FILE,
};

int sl_config_bootstrap_load(const char *path, sl_config_bootstrap_t **out,
                             char *errstr, size_t errlen) {
  void *obj;
  int rc = sl_cfg_load_file(&bootstrap_root, path, NULL, &obj, errstr, errlen);
  *out = rc < 0 ? NULL : obj;
  return rc;
}

void sl_config_bootstrap_free(sl_config_bootstrap_t *b) {
  if (!b)
    return;
  sl_cfg_obj_free(&bootstrap_root, b);
  free(b);
}

void sl_config_bootstrap_doc(FILE *out) {
  sl_cfg_doc_table(out, &bootstrap_root, "", NULL, false);
}
