/*
 * cmd_enroll.c: `sluice fleet enroll` and `sluice fleet acl`, the centre's
 * side of zero-touch enrolment (docs/ENROLMENT.md). Stateless over Kafka:
 * the lobby is the requests without a final answer.
 *   enroll [serve] --ca-cert PEM --ca-key PEM [--rules FILE]   the service
 *   enroll init [--partitions N]      create the enrolment topics
 *   enroll list [--all]               the lobby (or every node)
 *   enroll approve NODE [--label k=v]... [--reason TEXT]
 *   enroll deny NODE [--reason TEXT]
 *   enroll revoke NODE [--reason TEXT]
 *   enroll rules-docs                 the rules file's reference
 *   acl apply --claim NAME | --node ID [--delete]
 * Exit codes: 0 ok, 1 failed, 2 usage, 3 no such node, 4 no topics.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/common.h"
#include "common/textparse.h"
#include "daemon/cmd/enroll_int.h"

int sl_cmd_fleet_enroll(int argc, char **argv);
int sl_cmd_fleet_acl(int argc, char **argv);

/* --txn-acl-command: how transactional-id ACLs are made (txn_acl_run). */
static const char *txn_acl_cmd;

static int usage(FILE *out) {
  fprintf(out,
          "usage: sluice fleet enroll [serve] --ca-cert PEM --ca-key PEM "
          "[--rules FILE] [--no-acls] [--txn-acl-command CMD]\n"
          "       [--txn-acl-helper CMD]\n"
          "       sluice fleet enroll init [--partitions N] [--replication N]\n"
          "       sluice fleet enroll list [--all]\n"
          "       sluice fleet enroll approve NODE [--label K=V]... "
          "[--reason TEXT]\n"
          "       sluice fleet enroll deny|revoke NODE [--reason TEXT]\n"
          "       sluice fleet enroll rules-docs\n"
          "       sluice fleet acl apply (--claim NAME | --node ID) "
          "[--delete]\n"
          "\n"
          "options of every command:\n"
          "  --brokers HOST:PORT[,...]    (or $SLUICE_FLEET_BROKERS)\n"
          "  --topic-prefix P             (default sluice.fleet.)\n"
          "  --kafka-property NAME=VALUE  librdkafka property, repeatable\n"
          "\n"
          "exit codes: 0 ok, 1 failed, 2 usage, 3 no such node, 4 the "
          "enrolment topics do not exist (sluice fleet enroll init)\n");
  return out == stderr ? 2 : 0;
}

enum {
  O_BROKERS = 256,
  O_PREFIX,
  O_PROP,
  O_CACERT,
  O_CAKEY,
  O_RULES,
  O_REASON,
  O_LABEL,
  O_ALL,
  O_PARTS,
  O_REPL,
  O_INTERVAL,
  O_CLAIM,
  O_NODE,
  O_DELETE,
  O_NOACLS,
  O_TXNCMD,
  O_TXNHELPER,
  O_DATA,
  O_ONCE
};

static const struct option lo[] = {
    {"brokers", required_argument, 0, O_BROKERS},
    {"topic-prefix", required_argument, 0, O_PREFIX},
    {"kafka-property", required_argument, 0, O_PROP},
    {"ca-cert", required_argument, 0, O_CACERT},
    {"ca-key", required_argument, 0, O_CAKEY},
    {"rules", required_argument, 0, O_RULES},
    {"reason", required_argument, 0, O_REASON},
    {"label", required_argument, 0, O_LABEL},
    {"all", no_argument, 0, O_ALL},
    {"partitions", required_argument, 0, O_PARTS},
    {"replication", required_argument, 0, O_REPL},
    {"interval", required_argument, 0, O_INTERVAL},
    {"claim", required_argument, 0, O_CLAIM},
    {"node", required_argument, 0, O_NODE},
    {"delete", no_argument, 0, O_DELETE},
    {"no-acls", no_argument, 0, O_NOACLS},
    {"txn-acl-command", required_argument, 0, O_TXNCMD},
    {"txn-acl-helper", required_argument, 0, O_TXNHELPER},
    {"data-prefix", required_argument, 0, O_DATA},
    {"once", no_argument, 0, O_ONCE},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};

/* Parses options after the subcommand (argv[0] = the subcommand); the one
 * positional argument goes to o->node. Returns -1 to go on, else an exit
 * code. claim/del: acl apply. */
static int parse(int argc, char **argv, enroll_opts_t *o, const char **claim,
                 bool *del) {
  int c;
  uint64_t ms;
  char *end;
  memset(o, 0, sizeof(*o));
  o->k.brokers = getenv("SLUICE_FLEET_BROKERS");
  o->k.props = o->props;
  o->partitions = 6;
  o->replication = -1;
  o->interval_s = 0.2;
  o->manage_acls = true;
  o->actor = getenv("USER");
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (c) {
    case O_BROKERS:
      o->k.brokers = optarg;
      break;
    case O_PREFIX:
      o->k.prefix = o->acl.prefix = optarg;
      break;
    case O_PROP:
      if (o->k.n_props >= ENROLL_MAX_PROPS || !strchr(optarg, '=')) {
        fprintf(stderr,
                "sluice fleet: --kafka-property %s: expected "
                "NAME=VALUE\n",
                optarg);
        return 2;
      }
      o->props[o->k.n_props++] = optarg;
      break;
    case O_CACERT:
      o->ca_cert = optarg;
      break;
    case O_CAKEY:
      o->ca_key = optarg;
      break;
    case O_RULES:
      o->rules = optarg;
      break;
    case O_REASON:
      o->reason = optarg;
      break;
    case O_LABEL:
      if (o->n_labels >= ENROLL_MAX_LABELS || !strchr(optarg, '=') ||
          optarg[0] == '=') {
        fprintf(stderr, "sluice fleet enroll: --label %s: expected K=V\n",
                optarg);
        return 2;
      }
      o->labels[o->n_labels++] = optarg;
      break;
    case O_ALL:
      o->all = true;
      break;
    case O_PARTS:
    case O_REPL: {
      long v = strtol(optarg, &end, 10);
      if (*end || v < (c == O_REPL ? -1 : 1) || v > 10000) {
        fprintf(stderr, "sluice fleet enroll: %s: expected a number\n", optarg);
        return 2;
      }
      *(c == O_PARTS ? &o->partitions : &o->replication) = (int)v;
      break;
    }
    case O_INTERVAL:
      if (sl_duration_parse(optarg, 0, &ms) || !ms) {
        fprintf(stderr,
                "sluice fleet enroll: --interval %s: expected a "
                "duration\n",
                optarg);
        return 2;
      }
      o->interval_s = (double)ms / 1000.0;
      break;
    case O_CLAIM:
      if (claim)
        *claim = optarg;
      break;
    case O_NODE:
      o->node = optarg;
      break;
    case O_DELETE:
      if (del)
        *del = true;
      break;
    case O_NOACLS:
      o->manage_acls = false;
      break;
    case O_TXNCMD:
      txn_acl_cmd = optarg;
      break;
    case O_TXNHELPER: /* enroll_serve.c: one process, a line per pass */
      o->txn_acl_helper = optarg;
      break;
    case O_DATA:
      o->acl.data_prefix = optarg;
      break;
    case O_ONCE:
      o->once = true;
      break;
    case 'h':
      return usage(stdout);
    default:
      return usage(stderr);
    }
  }
  if (optind < argc)
    o->node = argv[optind++];
  if (optind < argc) {
    fprintf(stderr, "sluice fleet: unexpected argument %s\n", argv[optind]);
    return 2;
  }
  if (!o->k.brokers || !*o->k.brokers) {
    fprintf(stderr, "sluice fleet: --brokers (or $SLUICE_FLEET_BROKERS) is "
                    "required\n");
    return 2;
  }
  return -1;
}

static int connect(const enroll_opts_t *o, sl_enroll_kafka_t **k) {
  char err[512];
  if (sl_enroll_kafka_open(&o->k, k, err, sizeof(err))) {
    fprintf(stderr, "sluice fleet: %s\n", err);
    return 1;
  }
  return 0;
}

static int decide_cmd(const enroll_opts_t *o, int kind) {
  sl_enroll_kafka_t *k;
  Sluice__V1__EnrolDecision d = SLUICE__V1__ENROL_DECISION__INIT;
  Sluice__V1__EnrolDecision__LabelsEntry ents[ENROLL_MAX_LABELS],
      *ep[ENROLL_MAX_LABELS];
  char kv[ENROLL_MAX_LABELS][256];
  char err[512];
  int rc;
  if (!o->node || !*o->node) {
    fprintf(stderr, "sluice fleet enroll: which NODE?\n");
    return 2;
  }
  if ((rc = connect(o, &k)))
    return rc;
  d.node_id = (char *)o->node;
  d.decision = (Sluice__V1__EnrolDecisionKind)kind;
  d.reason = (char *)(o->reason ? o->reason : "");
  d.actor = (char *)(o->actor ? o->actor : "");
  d.time_ns = sl_now_wall_ns();
  for (size_t i = 0; i < o->n_labels; i++) {
    snprintf(kv[i], sizeof(kv[i]), "%s", o->labels[i]);
    char *eq = strchr(kv[i], '=');
    *eq = '\0';
    sluice__v1__enrol_decision__labels_entry__init(&ents[i]);
    ents[i].key = kv[i];
    ents[i].value = eq + 1;
    ep[i] = &ents[i];
  }
  d.n_labels = o->n_labels;
  d.labels = ep;
  size_t len = sluice__v1__enrol_decision__get_packed_size(&d);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) {
    sl_enroll_kafka_close(k);
    return 1;
  }
  sluice__v1__enrol_decision__pack(&d, buf);
  rc = sl_enroll_produce(k, SL_ENROLL_T_DECISIONS, o->node, buf, len, err,
                         sizeof(err));
  free(buf);
  sl_enroll_kafka_close(k);
  if (rc) {
    fprintf(stderr, "sluice fleet enroll: %s\n", err);
    return rc == SL_ENOTFOUND ? 4 : 1;
  }
  printf("%s: %s\n", o->node, sl_enroll_decision_name(kind));
  return 0;
}

static void fmt_labels(char *buf, size_t len, size_t n,
                       Sluice__V1__EnrolRequest__LabelsEntry **l) {
  size_t off = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && off < len; i++)
    off += (size_t)snprintf(buf + off, len - off, "%s%s=%s", i ? "," : "",
                            l[i]->key, l[i]->value);
}

static int list_cmd(const enroll_opts_t *o) {
  sl_enroll_kafka_t *k;
  enroll_view_t v = {0};
  int rc;
  if ((rc = connect(o, &k)))
    return rc;
  if ((rc = ev_read_all(k, &v, NULL))) {
    sl_enroll_kafka_close(k);
    return rc;
  }
  printf("%-24s %-9s %-16s %-16s %-20s %s\n", "NODE", "STATE", "KEY", "SERIAL",
         "HOSTNAME", "LABELS / REASON");
  for (size_t i = 0; i < v.n; i++) {
    ev_node_t *n = &v.nodes[i];
    Sluice__V1__EnrolRequest *r = n->req;
    bool answered = r && n->resp && n->resp->key_sha256 && r->key_sha256 &&
                    !strcmp(n->resp->key_sha256, r->key_sha256) &&
                    n->resp->time_ns >= r->time_ns;
    int state = n->resp ? (int)n->resp->decision : SL_ENROLL_PENDING;
    bool lobby = r && (!answered || state == SL_ENROLL_PENDING);
    if (!o->all && !lobby)
      continue;
    char labels[512];
    if (r)
      fmt_labels(labels, sizeof(labels), r->n_labels, r->labels);
    else
      labels[0] = '\0';
    printf("%-24s %-9s %-16.16s %-16.16s %-20.20s %s%s%s\n", n->id,
           lobby ? "PENDING" : sl_enroll_decision_name(state),
           r && r->key_sha256 ? r->key_sha256 : "-",
           r && r->dmi_serial && *r->dmi_serial ? r->dmi_serial : "-",
           r && r->hostname && *r->hostname ? r->hostname : "-", labels,
           n->resp && n->resp->reason && *n->resp->reason ? " / " : "",
           n->resp && n->resp->reason ? n->resp->reason : "");
  }
  ev_free(&v);
  sl_enroll_kafka_close(k);
  return 0;
}

static int init_cmd(const enroll_opts_t *o) {
  sl_enroll_kafka_t *k;
  char err[512];
  int rc;
  if ((rc = connect(o, &k)))
    return rc;
  rc = sl_enroll_kafka_init(k, o->partitions, o->replication, err, sizeof(err));
  if (rc)
    fprintf(stderr, "sluice fleet enroll init: %s\n", err);
  else
    printf("topics %s, %s, %s: ready\n",
           sl_enroll_topic(k, SL_ENROLL_T_REQUESTS),
           sl_enroll_topic(k, SL_ENROLL_T_RESPONSES),
           sl_enroll_topic(k, SL_ENROLL_T_DECISIONS));
  sl_enroll_kafka_close(k);
  return rc ? 1 : 0;
}

int sl_cmd_fleet_enroll(int argc, char **argv) {
  enroll_opts_t o;
  const char *verb = argc > 1 && argv[1][0] != '-' ? argv[1] : "serve";
  int shift = argc > 1 && argv[1][0] != '-' ? 1 : 0;
  int rc;
  if (!strcmp(verb, "help"))
    return usage(stdout);
  if (!strcmp(verb, "rules-docs")) { /* the table in docs/ENROLMENT.md */
    sl_cfg_doc_table(stdout, &sl_enroll_rules_section, "", NULL, false);
    return 0;
  }
  if ((rc = parse(argc - shift, argv + shift, &o, NULL, NULL)) >= 0)
    return rc;
  if (!strcmp(verb, "serve")) {
    if (!o.ca_cert || !o.ca_key) {
      fprintf(stderr, "sluice fleet enroll: --ca-cert and --ca-key are "
                      "required\n");
      return 2;
    }
    return enroll_serve(&o);
  }
  if (!strcmp(verb, "init"))
    return init_cmd(&o);
  if (!strcmp(verb, "list"))
    return list_cmd(&o);
  if (!strcmp(verb, "approve"))
    return decide_cmd(&o, SL_ENROLL_APPROVED);
  if (!strcmp(verb, "deny"))
    return decide_cmd(&o, SL_ENROLL_DENIED);
  if (!strcmp(verb, "revoke"))
    return decide_cmd(&o, SL_ENROLL_REVOKED);
  fprintf(stderr, "sluice fleet enroll: unknown command '%s'\n", verb);
  return usage(stderr);
}

/* Only what principals and resource names are made of here (node ids,
 * prefixes): anything else never reaches a shell. */
static bool shell_safe(const char *s) {
  return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789._-:") == strlen(s);
}

/*
 * librdkafka before 2.6 cannot name a TRANSACTIONAL_ID in CreateAcls, and
 * Debian 12 ships 2.0: with --txn-acl-command CMD those ACLs are made by
 * one run of `CMD --add|--remove --force --allow-principal P --operation
 * Write --operation Describe --transactional-id ID...` (Kafka's own
 * kafka-acls.sh, or `scripts/kafka.sh acls` on the test broker). 0, or -1
 * when it failed.
 */
static int txn_acl_run(const char *principal, const sl_enroll_acl_t *acls,
                       size_t n, bool del) {
  char cmd[4096];
  size_t len;
  int st, ids = 0;
  if (!txn_acl_cmd || !shell_safe(principal))
    return -1;
  len = (size_t)snprintf(cmd, sizeof(cmd),
                         "%s %s --allow-principal %s --operation Write "
                         "--operation Describe",
                         txn_acl_cmd, del ? "--remove --force" : "--add",
                         principal);
  for (size_t i = 0; i < n && len < sizeof(cmd); i++) {
    bool dup = false;
    if (acls[i].resource != 5)
      continue;
    if (!shell_safe(acls[i].name))
      return -1;
    for (size_t j = 0; j < i; j++)
      dup |= acls[j].resource == 5 && !strcmp(acls[j].name, acls[i].name);
    if (!dup) {
      len += (size_t)snprintf(cmd + len, sizeof(cmd) - len,
                              " --transactional-id %s", acls[i].name);
      ids++;
    }
  }
  if (!ids)
    return 0;
  if (len + 24 >= sizeof(cmd))
    return -1;
  snprintf(cmd + len, sizeof(cmd) - len, " >/dev/null 2>&1");
  st = system(cmd);
  return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int enroll_acls(sl_enroll_kafka_t *k, const char *principal,
                const sl_enroll_acl_t *acls, size_t n, bool del) {
  sl_enroll_acl_t main_acls[SL_ENROLL_MAX_ACLS];
  size_t nm = 0;
  char err[512];
  int rc = 0;
  /* librdkafka before 2.6 has no TRANSACTIONAL_ID resource (5): those go
   * one by one, and a refusal prints the kafka-acls command. */
  for (size_t i = 0; i < n; i++)
    if (acls[i].resource != 5)
      main_acls[nm++] = acls[i];
  if (nm && sl_enroll_acls_apply(k, principal, main_acls, nm, del, err,
                                 sizeof(err))) {
    fprintf(stderr, "sluice fleet acl: %s\n", err);
    rc = SL_EKAFKA;
  }
  if (txn_acl_cmd) {
    /* librdkafka cannot name them: one run of the configured command. */
    bool any = false;
    for (size_t i = 0; i < n; i++)
      any |= acls[i].resource == 5;
    if (any && txn_acl_run(principal, acls, n, del) < 0) {
      fprintf(stderr,
              "sluice fleet acl: --txn-acl-command failed for %s's "
              "transactional ids\n",
              principal);
      rc = SL_EKAFKA;
    }
    return rc;
  }
  for (size_t i = 0; i < n; i++) {
    if (acls[i].resource != 5)
      continue;
    int r =
        sl_enroll_acls_apply(k, principal, &acls[i], 1, del, err, sizeof(err));
    if (r == SL_ECONFIG)
      fprintf(stderr,
              "sluice fleet acl: this librdkafka cannot name transactional "
              "ids; run: kafka-acls.sh --bootstrap-server ADMIN %s "
              "--allow-principal %s --operation %s --transactional-id %s "
              "(or give the service --txn-acl-command)\n",
              del ? "--remove --force" : "--add", principal,
              acls[i].operation == 4 ? "Write" : "Describe", acls[i].name);
    else if (r) {
      fprintf(stderr, "sluice fleet acl: %s\n", err);
      rc = SL_EKAFKA;
    }
  }
  return rc;
}

int sl_cmd_fleet_acl(int argc, char **argv) {
  enroll_opts_t o;
  const char *claim = NULL;
  bool del = false;
  sl_enroll_acl_t acls[SL_ENROLL_MAX_ACLS];
  sl_enroll_kafka_t *k;
  char principal[300];
  int rc;
  if (argc < 2 || strcmp(argv[1], "apply"))
    return usage(stderr);
  if ((rc = parse(argc - 1, argv + 1, &o, &claim, &del)) >= 0)
    return rc;
  if (!claim == !o.node) {
    fprintf(stderr, "sluice fleet acl apply: one of --claim NAME or --node "
                    "ID\n");
    return 2;
  }
  size_t n = claim ? sl_enroll_acls_claim(&o.acl, acls)
                   : sl_enroll_acls_node(&o.acl, o.node, acls);
  snprintf(principal, sizeof(principal), "User:%s%s", claim ? "claim-" : "",
           claim ? claim : o.node);
  if ((rc = connect(&o, &k)))
    return rc;
  rc = enroll_acls(k, principal, acls, n, del);
  sl_enroll_kafka_close(k);
  if (!rc)
    printf("%s: %zu ACLs %s\n", principal, n, del ? "removed" : "applied");
  return rc ? 1 : 0;
}
