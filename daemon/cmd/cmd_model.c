/*
 * daemon/cmd/cmd_model.c: `sluice model publish FILE --name N --version V
 * --signing-key KEY --brokers B [...]`: writes the artifact's chunks to
 * <prefix>model.chunks (key "<sha256>/<index>", all on one partition, in
 * order), then the manifest (with each chunk's offset, so a node seeks to
 * its first missing chunk), signed with the fleet key, to <prefix>models
 * (compacted, key = model name). docs/EDGE-AI.md "Model distribution".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "fleet/fleet.h"
#include "model/model.h"

int sl_cmd_model(int argc, char **argv);

static int usage(void) {
  fprintf(stderr,
          "usage: sluice model publish FILE --name NAME --version VERSION\n"
          "         --signing-key KEY.pem --brokers HOST:PORT[,...]\n"
          "         [--topic-prefix sluice.fleet.] [--chunk-size BYTES]\n"
          "         [--file-name NAME] [--runtime R] [--format F]\n"
          "         [--role primary|canary|shadow] [--labels JSON]\n"
          "         [--reference P1,...,P20] [--previous-version V]\n"
          "         [--gate key=value,...] [--partitions N] [-X prop=value]\n"
          "gate keys: max_error_rate max_empty_rate max_p95_latency_ms "
          "max_psi\n"
          "  min_events windows ack_timeout_ms timeout_ms min_agreement\n"
          "  max_error_rate_delta\n");
  return 2;
}

typedef struct pub {
  int64_t *offsets;
  size_t n, done, failed;
  char err[256];
} pub_t;

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  pub_t *p = opaque;
  size_t i = (size_t)(uintptr_t)m->_private;
  (void)rk;
  if (m->err) {
    p->failed++;
    snprintf(p->err, sizeof(p->err), "%s", rd_kafka_err2str(m->err));
    return;
  }
  if (i && i <= p->n)
    p->offsets[i - 1] = m->offset;
  p->done++;
}

static int parse_gate(const char *s, sl_model_gate_limits_t *g) {
  char *copy = strdup(s), *save = NULL, *tok;
  int rc = 0;
  if (!copy)
    return -ENOMEM;
  for (tok = strtok_r(copy, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '='), *end;
    double v;
    if (!eq) {
      rc = -EINVAL;
      break;
    }
    *eq = 0;
    v = strtod(eq + 1, &end);
    if (*end || v < 0) {
      rc = -EINVAL;
      break;
    }
#define G(name, field, T)                                                      \
  if (!strcmp(tok, name)) {                                                    \
    g->field = (T)v;                                                           \
    continue;                                                                  \
  }
    G("max_error_rate", max_error_rate, double)
    G("max_empty_rate", max_empty_rate, double)
    G("max_p95_latency_ms", max_p95_latency_ms, double)
    G("max_psi", max_psi, double)
    G("min_events", min_events, uint64_t)
    G("windows", windows, uint32_t)
    G("ack_timeout_ms", ack_timeout_ms, uint64_t)
    G("timeout_ms", timeout_ms, uint64_t)
    G("min_agreement", min_agreement, double)
    G("max_error_rate_delta", max_error_rate_delta, double)
#undef G
    fprintf(stderr, "sluice model: unknown gate key '%s'\n", tok);
    rc = -EINVAL;
    break;
  }
  free(copy);
  return rc;
}

/* Creates the topic (compacted) unless it exists. */
static int ensure_topic(rd_kafka_t *rk, const char *name, int partitions) {
  rd_kafka_NewTopic_t *nt;
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_event_t *ev;
  char err[256];
  int rc = 0;
  nt = rd_kafka_NewTopic_new(name, partitions, -1, err, sizeof(err));
  if (!nt) {
    fprintf(stderr, "sluice model: %s: %s\n", name, err);
    rd_kafka_queue_destroy(q);
    return SL_EKAFKA;
  }
  rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
  rd_kafka_NewTopic_set_config(nt, "max.message.bytes", "1048576");
  rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
  ev = rd_kafka_queue_poll(q, 30000);
  if (!ev) {
    fprintf(stderr, "sluice model: %s: no answer to CreateTopics\n", name);
    rc = SL_EKAFKA;
  } else {
    const rd_kafka_CreateTopics_result_t *r =
        rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t **tr =
        r ? rd_kafka_CreateTopics_result_topics(r, &n) : NULL;
    if (rd_kafka_event_error(ev)) {
      fprintf(stderr, "sluice model: %s: %s\n", name,
              rd_kafka_event_error_string(ev));
      rc = SL_EKAFKA;
    }
    for (size_t i = 0; i < n; i++) {
      rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
      if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        fprintf(stderr, "sluice model: %s: %s\n", name,
                rd_kafka_topic_result_error_string(tr[i]));
        rc = SL_EKAFKA;
      }
    }
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_queue_destroy(q);
  return rc;
}

static int32_t partitions_of(rd_kafka_t *rk, const char *topic) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  int32_t n = -1;
  for (int tries = 0; tries < 30 && n <= 0; tries++) {
    if (rd_kafka_metadata(rk, 0, t, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (md->topic_cnt == 1 && !md->topics[0].err)
        n = md->topics[0].partition_cnt;
      rd_kafka_metadata_destroy(md);
    }
    if (n <= 0)
      usleep(200000);
  }
  rd_kafka_topic_destroy(t);
  return n;
}

static int publish(int argc, char **argv) {
  const char *file = NULL, *name = NULL, *version = NULL, *keyp = NULL,
             *brokers = NULL, *prefix = "sluice.fleet.", *gate = NULL,
             *ref = NULL;
  const char *props[32];
  size_t nprops = 0;
  sl_model_build_t b = {0};
  double reference[SL_MODEL_HIST_BINS];
  int partitions = 1, fd = -1, rc = 1;
  uint8_t *data = MAP_FAILED, *payload = NULL, *env = NULL;
  size_t len = 0, plen, elen;
  sl_fleet_key_t *key = NULL;
  rd_kafka_t *rk = NULL;
  rd_kafka_conf_t *conf;
  pub_t p = {0};
  char err[512], whole[65], (*hashes)[65] = NULL, topic[3][300];
  struct stat sb;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(flag, dst)                                                         \
  if (!strcmp(a, flag)) {                                                      \
    if (!v)                                                                    \
      return usage();                                                          \
    dst = v;                                                                   \
    i++;                                                                       \
    continue;                                                                  \
  }
    ARG("--name", name)
    ARG("--version", version)
    ARG("--signing-key", keyp)
    ARG("--brokers", brokers)
    ARG("--topic-prefix", prefix)
    ARG("--file-name", b.file_name)
    ARG("--runtime", b.runtime)
    ARG("--format", b.format)
    ARG("--role", b.role)
    ARG("--labels", b.labels_json)
    ARG("--previous-version", b.previous_version)
    ARG("--gate", gate)
    ARG("--reference", ref)
#undef ARG
    if (!strcmp(a, "--chunk-size") && v) {
      b.chunk_size = (uint32_t)strtoul(v, NULL, 10);
      i++;
    } else if (!strcmp(a, "--partitions") && v) {
      partitions = atoi(v);
      i++;
    } else if (!strcmp(a, "-X") && v && nprops < 32) {
      props[nprops++] = v;
      i++;
    } else if (a[0] != '-' && !file) {
      file = a;
    } else {
      fprintf(stderr, "sluice model publish: unexpected '%s'\n", a);
      return usage();
    }
  }
  if (!file || !name || !version || !keyp || !brokers || partitions < 1)
    return usage();
  if (b.role && strcmp(b.role, "primary") && strcmp(b.role, "canary") &&
      strcmp(b.role, "shadow")) {
    fprintf(stderr, "sluice model publish: --role primary|canary|shadow\n");
    return 2;
  }
  if (gate && parse_gate(gate, &b.gate) < 0) {
    fprintf(stderr, "sluice model publish: --gate key=value,... (numbers "
                    ">= 0)\n");
    return 2;
  }
  if (ref) {
    char *end = (char *)ref;
    for (int i = 0; i < SL_MODEL_HIST_BINS; i++) {
      reference[i] = strtod(end, &end);
      if (*end == ',')
        end++;
      else if (i < SL_MODEL_HIST_BINS - 1 || *end) {
        fprintf(stderr,
                "sluice model publish: --reference takes %d "
                "proportions, comma separated\n",
                SL_MODEL_HIST_BINS);
        return 2;
      }
    }
    b.reference = reference;
  }
  b.name = name;
  b.version = version;
  if (sl_fleet_key_load(keyp, true, &key, err, sizeof(err)) < 0) {
    fprintf(stderr, "sluice model publish: %s\n", err);
    return 1;
  }
  if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) < 0 ||
      !(len = (size_t)sb.st_size) ||
      (data = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
    fprintf(stderr, "sluice model publish: %s: %s\n", file,
            len || fd < 0 ? strerror(errno) : "empty");
    goto out;
  }
  if (!b.file_name) {
    const char *s = strrchr(file, '/');
    b.file_name = s ? s + 1 : file;
  }
  /* The manifest is built once first: it checks everything before a
   * single byte is sent. */
  if (sl_model_manifest_build(&b, data, len, &payload, &plen, err,
                              sizeof(err)) < 0) {
    fprintf(stderr, "sluice model publish: %s\n", err);
    goto out;
  }
  free(payload);
  payload = NULL;
  if (sl_model_hash_chunks(data, len, b.chunk_size, whole, &hashes, &p.n) < 0 ||
      !(p.offsets = calloc(p.n, sizeof(*p.offsets))))
    goto out;
  for (size_t i = 0; i < p.n; i++)
    p.offsets[i] = -1;
  snprintf(topic[0], sizeof(topic[0]), "%smodel.chunks", prefix);
  snprintf(topic[1], sizeof(topic[1]), "%smodels", prefix);
  snprintf(topic[2], sizeof(topic[2]), "%smodel.status", prefix);

  conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ||
      rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)) ||
      rd_kafka_conf_set(conf, "linger.ms", "20", err, sizeof(err)) ||
      rd_kafka_conf_set(conf, "message.max.bytes", "1000000", err,
                        sizeof(err))) {
    fprintf(stderr, "sluice model publish: %s\n", err);
    rd_kafka_conf_destroy(conf);
    goto out;
  }
  for (size_t i = 0; i < nprops; i++) {
    char k[128];
    const char *eq = strchr(props[i], '=');
    if (!eq || (size_t)(eq - props[i]) >= sizeof(k)) {
      fprintf(stderr, "sluice model publish: -X key=value\n");
      rd_kafka_conf_destroy(conf);
      goto out;
    }
    memcpy(k, props[i], (size_t)(eq - props[i]));
    k[eq - props[i]] = 0;
    if (rd_kafka_conf_set(conf, k, eq + 1, err, sizeof(err))) {
      fprintf(stderr, "sluice model publish: %s\n", err);
      rd_kafka_conf_destroy(conf);
      goto out;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
  rd_kafka_conf_set_opaque(conf, &p);
  if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)))) {
    fprintf(stderr, "sluice model publish: %s\n", err);
    goto out;
  }
  if (ensure_topic(rk, topic[0], partitions) < 0 ||
      ensure_topic(rk, topic[1], partitions) < 0 ||
      ensure_topic(rk, topic[2], partitions) < 0)
    goto out;
  int32_t cparts = partitions_of(rk, topic[0]);
  int32_t mparts = partitions_of(rk, topic[1]);
  if (cparts <= 0 || mparts <= 0) {
    fprintf(stderr, "sluice model publish: the topics are not there\n");
    goto out;
  }
  /* Every chunk of one artifact on one partition, in order. */
  b.chunk_partition = sl_fleet_partition(whole, 64, cparts);
  for (size_t i = 0; i < p.n; i++) {
    char k[100];
    size_t cs = b.chunk_size ? b.chunk_size : SL_MODEL_MAX_CHUNK, off = i * cs,
           l = len - off < cs ? len - off : cs;
    rd_kafka_resp_err_t e;
    snprintf(k, sizeof(k), "%s/%zu", whole, i);
    do {
      e = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(topic[0]),
          RD_KAFKA_V_PARTITION(b.chunk_partition), RD_KAFKA_V_KEY(k, strlen(k)),
          RD_KAFKA_V_VALUE(data + off, l), RD_KAFKA_V_MSGFLAGS(0),
          RD_KAFKA_V_OPAQUE((void *)(uintptr_t)(i + 1)), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 100);
    } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
    if (e) {
      fprintf(stderr, "sluice model publish: chunk %zu: %s\n", i,
              rd_kafka_err2str(e));
      goto out;
    }
    rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 120000);
  if (p.failed || p.done != p.n) {
    fprintf(stderr, "sluice model publish: %zu of %zu chunks written (%s)\n",
            p.done, p.n, p.failed ? p.err : "timed out");
    goto out;
  }
  b.chunk_offsets = p.offsets;
  b.published_ns = (int64_t)time(NULL) * 1000000000LL;
  if (sl_model_manifest_build(&b, data, len, &payload, &plen, err,
                              sizeof(err)) < 0 ||
      sl_fleet_sign(key, SL_FLEET_MODEL, payload, plen, &env, &elen) < 0) {
    fprintf(stderr, "sluice model publish: cannot build or sign: %s\n", err);
    goto out;
  }
  p.n = 0; /* the manifest's report is not a chunk */
  p.done = 0;
  if (rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(topic[1]),
          RD_KAFKA_V_PARTITION(sl_fleet_partition(name, strlen(name), mparts)),
          RD_KAFKA_V_KEY(name, strlen(name)), RD_KAFKA_V_VALUE(env, elen),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) ||
      rd_kafka_flush(rk, 60000) || p.failed || p.done != 1) {
    fprintf(stderr, "sluice model publish: the manifest was not written%s%s\n",
            p.failed ? ": " : "", p.failed ? p.err : "");
    goto out;
  }
  printf("{\"name\":\"%s\",\"version\":\"%s\",\"sha256\":\"%s\",\"size\":%zu,"
         "\"chunks\":%zu,\"chunk_partition\":%d,\"first_offset\":%lld,"
         "\"key_id\":\"%s\"}\n",
         name, version, whole, len,
         (len + (b.chunk_size ? b.chunk_size : SL_MODEL_MAX_CHUNK) - 1) /
             (b.chunk_size ? b.chunk_size : SL_MODEL_MAX_CHUNK),
         b.chunk_partition, (long long)b.chunk_offsets[0],
         sl_fleet_key_id(key));
  rc = 0;
out:
  if (rk)
    rd_kafka_destroy(rk);
  if (data != MAP_FAILED)
    munmap(data, len);
  if (fd >= 0)
    close(fd);
  free(hashes);
  free(p.offsets);
  free(payload);
  free(env);
  sl_fleet_key_free(key);
  return rc;
}

int sl_cmd_model(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "publish"))
    return publish(argc - 1, argv + 1);
  return usage();
}
