/*
 * cmd_fleet.c: `sluice fleet`, the fleet centre (docs/FLEET.md). Stateless
 * over Kafka: every command reads what it needs from the compacted fleet
 * topics and writes records to them.
 *   init                      create the topics (idempotent)
 *   policy apply FILE         write a policy (revision = previous + 1)
 *   policy delete NAME        write it again with deleted = true
 *   policy list               the policies and their rollouts
 *   render                    the service: render, sign, roll out
 *   status [--watch]          the nodes' table
 *   rollout status|pause|resume [NAME]
 *   decommission NODE         a signed decommission document
 * Exit codes: fleet_int.h (0 ok, 1 failed, 2 usage, 3 not found, 4 no
 * topics).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/textparse.h"
#include "daemon/cmd/fleet_int.h"

int sl_cmd_fleet(int argc, char **argv);

static int usage(FILE *out) {
  fprintf(out,
          "usage: sluice fleet <command> [options]\n"
          "\n"
          "commands:\n"
          "  init [--partitions N] [--replication N] [--events-retention DUR]\n"
          "  policy apply FILE.yaml|FILE.json\n"
          "  policy delete NAME\n"
          "  policy list [--json]\n"
          "  render --signing-key PEM [--interval DUR]   the render service\n"
          "  status [--watch] [--json]\n"
          "  rollout status [NAME] [--json] | pause NAME | resume NAME\n"
          "  decommission NODE --signing-key PEM [--reason TEXT]\n"
          "  enroll ..., acl ...  enrolment (docs/ENROLMENT.md)\n"
          "\n"
          "options of every command:\n"
          "  --brokers HOST:PORT[,...]    (or $SLUICE_FLEET_BROKERS)\n"
          "  --topic-prefix P             (default sluice.fleet.)\n"
          "  --kafka-property NAME=VALUE  librdkafka property, repeatable\n"
          "\n"
          "exit codes: 0 ok, 1 failed (Kafka, delivery, stopped rollout),\n"
          "2 usage or invalid input, 3 no such policy/rollout/node,\n"
          "4 the fleet topics do not exist (run `sluice fleet init`)\n");
  return out == stderr ? FLEET_EXIT_USAGE : 0;
}

static int parse_opts(int argc, char **argv, fleet_opts_t *o) {
  enum {
    O_BROKERS = 256,
    O_PREFIX,
    O_PROP,
    O_KEY,
    O_JSON,
    O_WATCH,
    O_PARTS,
    O_REPL,
    O_RET,
    O_REASON,
    O_INTERVAL
  };
  static const struct option lo[] = {
      {"brokers", required_argument, 0, O_BROKERS},
      {"topic-prefix", required_argument, 0, O_PREFIX},
      {"kafka-property", required_argument, 0, O_PROP},
      {"signing-key", required_argument, 0, O_KEY},
      {"json", no_argument, 0, O_JSON},
      {"watch", no_argument, 0, O_WATCH},
      {"partitions", required_argument, 0, O_PARTS},
      {"replication", required_argument, 0, O_REPL},
      {"events-retention", required_argument, 0, O_RET},
      {"reason", required_argument, 0, O_REASON},
      {"interval", required_argument, 0, O_INTERVAL},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  int c;
  uint64_t ms;
  char *end;

  memset(o, 0, sizeof(*o));
  o->k.brokers = getenv("SLUICE_FLEET_BROKERS");
  o->k.props = o->props;
  o->partitions = 6;
  o->replication = -1;
  o->retention_ms = 7LL * 24 * 3600 * 1000;
  o->interval_s = 0.2;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (c) {
    case O_BROKERS:
      o->k.brokers = optarg;
      break;
    case O_PREFIX:
      o->k.prefix = optarg;
      break;
    case O_PROP:
      if (o->k.n_props >= FLEET_MAX_PROPS || !strchr(optarg, '=')) {
        fprintf(stderr,
                "sluice fleet: --kafka-property %s: expected "
                "NAME=VALUE (at most %d)\n",
                optarg, FLEET_MAX_PROPS);
        return FLEET_EXIT_USAGE;
      }
      o->props[o->k.n_props++] = optarg;
      break;
    case O_KEY:
      o->signing_key = optarg;
      break;
    case O_JSON:
      o->json = true;
      break;
    case O_WATCH:
      o->watch = true;
      break;
    case O_PARTS:
    case O_REPL: {
      long v = strtol(optarg, &end, 10);
      if (*end || v < (c == O_REPL ? -1 : 1) || v > 10000) {
        fprintf(stderr, "sluice fleet: --%s %s: expected a number\n",
                c == O_PARTS ? "partitions" : "replication", optarg);
        return FLEET_EXIT_USAGE;
      }
      *(c == O_PARTS ? &o->partitions : &o->replication) = (int)v;
      break;
    }
    case O_RET:
    case O_INTERVAL:
      if (sl_duration_parse(optarg, 0, &ms)) {
        fprintf(stderr,
                "sluice fleet: %s: expected a duration (\"7d\", "
                "\"200ms\")\n",
                optarg);
        return FLEET_EXIT_USAGE;
      }
      if (c == O_RET)
        o->retention_ms = (int64_t)ms;
      else
        o->interval_s = (double)ms / 1000.0;
      break;
    case O_REASON:
      o->reason = optarg;
      break;
    case 'h':
      return usage(stdout) - 1; /* -1: printed help */
    default:
      return usage(stderr);
    }
  }
  for (int i = optind; i < argc; i++) {
    if (o->n_args >= 8)
      return usage(stderr);
    o->args[o->n_args++] = argv[i];
  }
  return 0;
}

static int cmd_init(fleet_opts_t *o) {
  sl_fleet_kafka_t *k;
  char err[512];
  int rc = fleet_connect(o, &k);
  if (rc)
    return rc;
  rc = sl_fleet_kafka_create_topics(k, o->partitions, o->replication,
                                    o->retention_ms, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "sluice fleet init: %s\n", err);
    sl_fleet_kafka_close(k);
    return FLEET_EXIT_FAIL;
  }
  for (int t = 0; t < SL_FT_COUNT; t++) {
    int32_t parts = 0;
    if ((rc = sl_fleet_kafka_partitions(k, t, &parts, err, sizeof(err)))) {
      fprintf(stderr, "sluice fleet init: %s\n", err);
      sl_fleet_kafka_close(k);
      return fleet_exit_for(rc);
    }
    printf("%-40s %d partitions%s\n", sl_fleet_kafka_topic(k, t), (int)parts,
           t == SL_FT_EVENTS ? " (time-retained)" : " (compacted)");
  }
  sl_fleet_kafka_close(k);
  return 0;
}

/* Writes p (revision and time set here) and waits for the ack. */
static int write_policy(sl_fleet_kafka_t *k, Sluice__V1__Policy *p) {
  char err[512];
  size_t n = sluice__v1__policy__get_packed_size(p);
  uint8_t *buf = malloc(n ? n : 1);
  int rc;
  if (!buf)
    return FLEET_EXIT_FAIL;
  sluice__v1__policy__pack(p, buf);
  rc = sl_fleet_kafka_produce(k, SL_FT_POLICIES, p->name, buf, n, err,
                              sizeof(err));
  free(buf);
  if (!rc)
    rc = sl_fleet_kafka_flush(k, 30000, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "sluice fleet policy: %s\n", err);
    return fleet_exit_for(rc);
  }
  fleet_event(k, p->name, "policy", 0, p->revision,
              p->deleted ? "deleted" : "applied", NULL);
  sl_fleet_kafka_flush(k, 5000, err, sizeof(err));
  return 0;
}

static int policy_apply(fleet_opts_t *o, const char *file) {
  FILE *f = fopen(file, "r");
  char *text = NULL, err[512];
  size_t cap = 0, len = 0;
  Sluice__V1__Policy *p = NULL;
  sl_fleet_kafka_t *k = NULL;
  fleet_view_t v;
  int rc;

  fv_init(&v);
  if (!f) {
    fprintf(stderr, "sluice fleet policy apply: %s: %s\n", file,
            strerror(errno));
    return FLEET_EXIT_USAGE;
  }
  for (;;) {
    if (len + 4096 > cap) {
      char *nt = realloc(text, cap = cap ? cap * 2 : 8192);
      if (!nt || cap > (1u << 20)) {
        free(nt ? nt : text);
        fclose(f);
        fprintf(stderr, "sluice fleet policy apply: %s: too large\n", file);
        return FLEET_EXIT_USAGE;
      }
      text = nt;
    }
    size_t r = fread(text + len, 1, cap - len - 1, f);
    if (!r)
      break;
    len += r;
  }
  fclose(f);
  text[len] = 0;
  if ((rc = sl_fleet_policy_parse(text, len, &p, err, sizeof(err)))) {
    fprintf(stderr, "sluice fleet policy apply: %s: %s\n", file, err);
    free(text);
    return FLEET_EXIT_USAGE;
  }
  free(text);
  if ((rc = fleet_connect(o, &k)) ||
      (rc = fleet_read_all(k, 1u << SL_FT_POLICIES, &v, NULL)))
    goto out;
  fv_pol_t *prev = fv_pol(&v, p->name, false);
  p->revision = prev && prev->p ? prev->p->revision + 1 : 1;
  p->updated_ns = sl_now_wall_ns();
  if (!(rc = write_policy(k, p)))
    printf("policy %s revision %llu written\n", p->name,
           (unsigned long long)p->revision);
out:
  sluice__v1__policy__free_unpacked(p, NULL);
  fv_free(&v);
  sl_fleet_kafka_close(k);
  return rc;
}

static int policy_delete(fleet_opts_t *o, const char *name) {
  sl_fleet_kafka_t *k = NULL;
  fleet_view_t v;
  int rc;
  fv_init(&v);
  if ((rc = fleet_connect(o, &k)) ||
      (rc = fleet_read_all(k, 1u << SL_FT_POLICIES, &v, NULL)))
    goto out;
  fv_pol_t *fp = fv_pol(&v, name, false);
  if (!fp || !fp->p || fp->p->deleted) {
    fprintf(stderr, "sluice fleet policy delete: no policy '%s'%s\n", name,
            fp && fp->p ? " (already deleted)" : "");
    rc = FLEET_EXIT_NOTFOUND;
    goto out;
  }
  fp->p->deleted = true;
  fp->p->revision++;
  fp->p->updated_ns = sl_now_wall_ns();
  if (!(rc = write_policy(k, fp->p)))
    printf("policy %s deleted (revision %llu)\n", name,
           (unsigned long long)fp->p->revision);
out:
  fv_free(&v);
  sl_fleet_kafka_close(k);
  return rc;
}

static void fmt_time(int64_t ns, char *buf, size_t len) {
  time_t t = (time_t)(ns / 1000000000);
  struct tm tm;
  if (ns <= 0 || !gmtime_r(&t, &tm))
    snprintf(buf, len, "-");
  else
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int policy_list(fleet_opts_t *o) {
  sl_fleet_kafka_t *k = NULL;
  fleet_view_t v;
  int rc;
  fv_init(&v);
  if ((rc = fleet_connect(o, &k)) ||
      (rc = fleet_read_all(k, 1u << SL_FT_POLICIES | 1u << SL_FT_ROLLOUTS, &v,
                           NULL)))
    goto out;
  json_t *arr = json_array();
  if (!o->json)
    printf("%-24s %5s %8s %-9s %-24s %-20s %s\n", "NAME", "REV", "PRIORITY",
           "ROLLOUT", "SELECTOR", "UPDATED", "");
  for (size_t i = 0; i < v.n_pols; i++) {
    fv_pol_t *fp = v.pols[i];
    if (!fp->p)
      continue;
    const char *ro = fp->ro && fp->ro->revision == fp->p->revision
                         ? sl_fleet_rollout_state_name(fp->ro->state)
                         : "-";
    if (o->json) {
      json_t *j = sl_fleet_policy_to_json(fp->p);
      json_object_set_new(j, "rollout_state", json_string(ro));
      json_array_append_new(arr, j);
      continue;
    }
    char t[32];
    fmt_time(fp->p->updated_ns, t, sizeof(t));
    printf("%-24s %5llu %8d %-9s %-24s %-20s %s\n", fp->p->name,
           (unsigned long long)fp->p->revision, fp->p->priority, ro,
           *fp->p->selector ? fp->p->selector : "(all)", t,
           fp->p->deleted ? "deleted" : "");
  }
  if (o->json) {
    char *s = json_dumps(arr, JSON_INDENT(2));
    printf("%s\n", s ? s : "[]");
    free(s);
  }
  json_decref(arr);
out:
  fv_free(&v);
  sl_fleet_kafka_close(k);
  return rc;
}

static int decommission(fleet_opts_t *o, const char *node) {
  sl_fleet_kafka_t *k = NULL;
  sl_fleet_key_t *key = NULL;
  fleet_view_t v;
  char err[512];
  uint8_t *env = NULL;
  size_t envlen;
  int rc;

  fv_init(&v);
  if (!o->signing_key) {
    fprintf(stderr, "sluice fleet decommission: --signing-key PEM is "
                    "required (nodes only act on signed documents)\n");
    return FLEET_EXIT_USAGE;
  }
  if ((rc = sl_fleet_key_load(o->signing_key, true, &key, err, sizeof(err)))) {
    fprintf(stderr, "sluice fleet decommission: %s: %s\n", o->signing_key, err);
    return FLEET_EXIT_USAGE;
  }
  if ((rc = fleet_connect(o, &k)) ||
      (rc = fleet_read_all(
           k, 1u << SL_FT_DESIRED | 1u << SL_FT_STATUS | 1u << SL_FT_INVENTORY,
           &v, NULL)))
    goto out;
  fv_node_t *n = fv_node(&v, node, false);
  if (!n) {
    fprintf(stderr,
            "sluice fleet decommission: no node '%s' on the fleet "
            "topics\n",
            node);
    rc = FLEET_EXIT_NOTFOUND;
    goto out;
  }
  Sluice__V1__Decommission d = SLUICE__V1__DECOMMISSION__INIT;
  d.node_id = (char *)node;
  d.generation = n->gen + 1;
  d.reason = (char *)(o->reason ? o->reason : "decommissioned");
  d.time_ns = sl_now_wall_ns();
  uint8_t buf[1024];
  if (sluice__v1__decommission__get_packed_size(&d) > sizeof(buf)) {
    fprintf(stderr, "sluice fleet decommission: reason too long\n");
    rc = FLEET_EXIT_USAGE;
    goto out;
  }
  size_t len = sluice__v1__decommission__pack(&d, buf);
  if ((rc = sl_fleet_sign(key, SL_FLEET_DECOMMISSION, buf, len, &env,
                          &envlen)) ||
      (rc = sl_fleet_kafka_produce(k, SL_FT_DESIRED, node, env, envlen, err,
                                   sizeof(err))) ||
      (rc = sl_fleet_kafka_flush(k, 30000, err, sizeof(err)))) {
    fprintf(stderr, "sluice fleet decommission: %s\n",
            rc == SL_EKEY ? "signing failed" : err);
    rc = FLEET_EXIT_FAIL;
    goto out;
  }
  fleet_event(k, node, "decommission", SL_FLEET_DECOMMISSIONED, d.generation,
              d.reason, NULL);
  sl_fleet_kafka_flush(k, 5000, err, sizeof(err));
  printf("node %s decommissioned (generation %llu)\n", node,
         (unsigned long long)d.generation);
out:
  free(env);
  fv_free(&v);
  sl_fleet_key_free(key);
  sl_fleet_kafka_close(k);
  return rc;
}

int sl_cmd_fleet(int argc, char **argv) {
  fleet_opts_t o;
  if (argc < 2)
    return usage(stderr);
  const char *cmd = argv[1];
  const char *verb = NULL;
  int skip = 2;
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h"))
    return usage(stdout);
  if ((!strcmp(cmd, "policy") || !strcmp(cmd, "rollout")) && argc > 2 &&
      argv[2][0] != '-') {
    verb = argv[2];
    skip = 3;
  }
  int rc = parse_opts(argc - skip + 1, argv + skip - 1, &o);
  if (rc)
    return rc < 0 ? 0 : rc;
  if (!o.k.brokers || !*o.k.brokers) {
    fprintf(stderr, "sluice fleet: no brokers: give --brokers HOST:PORT or "
                    "set SLUICE_FLEET_BROKERS\n");
    return FLEET_EXIT_USAGE;
  }
  if (!strcmp(cmd, "init") && !o.n_args)
    return cmd_init(&o);
  if (!strcmp(cmd, "render") && !o.n_args)
    return fleet_cmd_render(&o);
  if (!strcmp(cmd, "status") && !o.n_args)
    return fleet_cmd_status(&o);
  if (!strcmp(cmd, "decommission") && o.n_args == 1)
    return decommission(&o, o.args[0]);
  if (!strcmp(cmd, "rollout") && verb)
    return fleet_cmd_rollout(&o, verb);
  if (!strcmp(cmd, "policy") && verb) {
    if (!strcmp(verb, "apply") && o.n_args == 1)
      return policy_apply(&o, o.args[0]);
    if (!strcmp(verb, "delete") && o.n_args == 1)
      return policy_delete(&o, o.args[0]);
    if (!strcmp(verb, "list") && !o.n_args)
      return policy_list(&o);
  }
  fprintf(stderr, "sluice fleet: unknown command or wrong arguments: %s%s%s\n",
          cmd, verb ? " " : "", verb ? verb : "");
  return usage(stderr);
}
