/*
 * fleet/enroll/acl.c: the Kafka ACLs of the claim and node principals as
 * data (enroll.h, docs/ENROLMENT.md "Kafka side: listener and ACLs").
 */
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "fleet/enroll/enroll.h"

/* Kafka's resource type TRANSACTIONAL_ID (5): librdkafka names it from
 * 2.6 on; before, its CreateAcls refuses the value (cmd_enroll.c falls
 * back to printing the kafka-acls command). */
#define SL_RESOURCE_TXN 5

static void put(sl_enroll_acl_t *out, size_t *n, int res, int pat, int op,
                const char *a, const char *b) {
  if (*n >= SL_ENROLL_MAX_ACLS)
    return;
  sl_enroll_acl_t *x = &out[(*n)++];
  x->resource = res;
  x->pattern = pat;
  x->operation = op;
  snprintf(x->name, sizeof(x->name), "%s%s", a, b ? b : "");
}

#define LIT RD_KAFKA_RESOURCE_PATTERN_LITERAL
#define PRE RD_KAFKA_RESOURCE_PATTERN_PREFIXED
#define TOPIC RD_KAFKA_RESOURCE_TOPIC
#define GROUP RD_KAFKA_RESOURCE_GROUP
#define READ RD_KAFKA_ACL_OPERATION_READ
#define WRITE RD_KAFKA_ACL_OPERATION_WRITE
#define DESCRIBE RD_KAFKA_ACL_OPERATION_DESCRIBE

static const char *pfx(const sl_enroll_acl_opts_t *o) {
  return o->prefix && *o->prefix ? o->prefix : "sluice.fleet.";
}

size_t sl_enroll_acls_claim(const sl_enroll_acl_opts_t *o,
                            sl_enroll_acl_t *out) {
  size_t n = 0;
  put(out, &n, TOPIC, LIT, WRITE, pfx(o), "enrol.requests");
  put(out, &n, TOPIC, LIT, READ, pfx(o), "enrol.responses");
  /* The node's enrolment consumer names group sluice-enrol-<node id>
   * (assign() only; librdkafka still asks the group's coordinator). */
  put(out, &n, GROUP, PRE, READ, "sluice-enrol-", NULL);
  return n;
}

size_t sl_enroll_acls_node(const sl_enroll_acl_opts_t *o, const char *node_id,
                           sl_enroll_acl_t *out) {
  size_t n = 0;
  const char *p = pfx(o);
  const char *data =
      o->data_prefix && *o->data_prefix ? o->data_prefix : "sluice.";
  const char *ck =
      o->checkpoint && *o->checkpoint ? o->checkpoint : "sluice.checkpoints";
  const char *tx = o->txn_prefix ? o->txn_prefix : "sluice-";
  char id[300];

  /* Data: the uplink writes its streams' topics (DESCRIBE for their
   * metadata; WRITE implies it, spelled out for the docs' table); its
   * checkpoint reader reads the checkpoint topic. */
  put(out, &n, TOPIC, PRE, WRITE, data, NULL);
  put(out, &n, TOPIC, PRE, DESCRIBE, data, NULL);
  put(out, &n, TOPIC, LIT, WRITE, ck, NULL);
  put(out, &n, TOPIC, LIT, READ, ck, NULL);
  /* The fleet: its status out, its desired document and enrolment in. */
  put(out, &n, TOPIC, LIT, WRITE, p, "status");
  put(out, &n, TOPIC, LIT, WRITE, p, "inventory");
  put(out, &n, TOPIC, LIT, WRITE, p, "events");
  put(out, &n, TOPIC, LIT, WRITE, p, "enrol.requests");
  put(out, &n, TOPIC, LIT, READ, p, "desired");
  put(out, &n, TOPIC, LIT, READ, p, "enrol.responses");
  /* Exactly-once: the producer id and its own transactional ids, literal
   * (a prefix "sluice-node-1" would also cover node-10's). */
  put(out, &n, RD_KAFKA_RESOURCE_BROKER, LIT,
      RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE, "kafka-cluster", NULL);
  snprintf(id, sizeof(id), "%s%s", tx, node_id);
  put(out, &n, SL_RESOURCE_TXN, LIT, WRITE, id, NULL);
  put(out, &n, SL_RESOURCE_TXN, LIT, DESCRIBE, id, NULL);
  put(out, &n, SL_RESOURCE_TXN, LIT, WRITE, id, ".1");
  put(out, &n, SL_RESOURCE_TXN, LIT, DESCRIBE, id, ".1");
  /* The group ids its consumers name (assign() only: nothing joins). */
  put(out, &n, GROUP, LIT, READ, id, "-checkpoint-reader");
  snprintf(id, sizeof(id), "sluice-fleet-%s", node_id);
  put(out, &n, GROUP, LIT, READ, id, NULL);
  snprintf(id, sizeof(id), "sluice-enrol-%s", node_id); /* renewals */
  put(out, &n, GROUP, LIT, READ, id, NULL);
  return n;
}
