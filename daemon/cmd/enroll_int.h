/*
 * daemon/cmd/enroll_int.h: what `sluice fleet enroll` and `sluice fleet
 * acl` share (cmd_enroll.c, enroll_serve.c): options and the view of the
 * enrolment topics (latest request, decision and response per node).
 */
#ifndef SL_DAEMON_ENROLL_INT_H
#define SL_DAEMON_ENROLL_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "fleet/enroll/enroll.h"

#define ENROLL_MAX_PROPS 64
#define ENROLL_MAX_LABELS 32

typedef struct enroll_opts {
  sl_enroll_kconf_t k;
  const char *props[ENROLL_MAX_PROPS];
  const char *ca_cert, *ca_key, *rules;
  const char *reason, *actor;
  const char *labels[ENROLL_MAX_LABELS]; /* --label k=v */
  size_t n_labels;
  const char *node; /* positional NODE */
  bool all, json, once;
  int partitions, replication;
  double interval_s;
  sl_enroll_acl_opts_t acl; /* acl apply: topic names */
  bool manage_acls;         /* the service creates/deletes node ACLs */
  /* --txn-acl-helper: a command (deploy/kafka/TxnAclHelper.java) started
   * once that makes transactional-id ACLs, a batch per line. */
  const char *txn_acl_helper;
} enroll_opts_t;

typedef struct ev_node {
  char *id;
  Sluice__V1__EnrolRequest *req;
  Sluice__V1__EnrolDecision *dec;
  Sluice__V1__EnrolResponse *resp;     /* latest */
  Sluice__V1__EnrolResponse *approved; /* latest APPROVED */
  bool dirty;
} ev_node_t;

typedef struct enroll_view {
  ev_node_t *nodes;
  size_t n, cap;
} enroll_view_t;

void ev_free(enroll_view_t *v);
/* sl_enroll_record_cb over an enroll_view_t. */
void ev_record(void *opaque, int t, const char *key, size_t klen,
               const void *val, size_t vlen);
/* Reads the three topics to their end into v: 0 or an exit code (printed). */
int ev_read_all(sl_enroll_kafka_t *k, enroll_view_t *v,
                sl_enroll_reader_t **keep);

/* The service (enroll_serve.c). */
int enroll_serve(const enroll_opts_t *o);

/* Applies (or removes) a principal's ACLs; prints what it could not apply
 * and how (kafka-acls). 0 or SL_EKAFKA. */
int enroll_acls(sl_enroll_kafka_t *k, const char *principal,
                const sl_enroll_acl_t *acls, size_t n, bool del);

#endif /* SL_DAEMON_ENROLL_INT_H */
