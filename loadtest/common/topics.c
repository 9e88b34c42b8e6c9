/*
 * sl_topics: creates topics for the benchmarks that run a broker with ACLs
 * (where the nodes may not auto-create them).
 *
 *   sl_topics BROKERS NAME:PARTITIONS[:compact] ...
 *
 * Existing topics are fine. Exit status 0, or 1 with the broker's reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

int main(int argc, char **argv) {
  char e[512];
  rd_kafka_NewTopic_t *nt[64];
  int n = 0, rc = 0;
  if (argc < 3 || argc - 2 > 64) {
    fprintf(stderr, "usage: sl_topics BROKERS NAME:PARTITIONS[:compact]...\n");
    return 2;
  }
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  if (rd_kafka_conf_set(c, "bootstrap.servers", argv[1], e, sizeof(e))) {
    fprintf(stderr, "sl_topics: %s\n", e);
    return 2;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
  if (!rk) {
    fprintf(stderr, "sl_topics: %s\n", e);
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    char name[256];
    int parts = 1;
    char *colon = strchr(argv[i], ':');
    snprintf(name, sizeof(name), "%.*s",
             colon ? (int)(colon - argv[i]) : (int)strlen(argv[i]), argv[i]);
    if (colon)
      parts = atoi(colon + 1);
    nt[n] = rd_kafka_NewTopic_new(name, parts > 0 ? parts : 1, 1, e, sizeof(e));
    if (!nt[n]) {
      fprintf(stderr, "sl_topics: %s: %s\n", name, e);
      return 2;
    }
    if (colon && strstr(colon, ":compact"))
      rd_kafka_NewTopic_set_config(nt[n], "cleanup.policy", "compact");
    n++;
  }
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, nt, (size_t)n, NULL, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
  if (!ev) {
    fprintf(stderr, "sl_topics: no answer from %s\n", argv[1]);
    rc = 1;
  } else {
    size_t cnt;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(
        rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
      rd_kafka_resp_err_t te = rd_kafka_topic_result_error(tr[i]);
      if (te && te != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        fprintf(stderr, "sl_topics: %s: %s\n",
                rd_kafka_topic_result_name(tr[i]),
                rd_kafka_topic_result_error_string(tr[i]));
        rc = 1;
      }
    }
    rd_kafka_event_destroy(ev);
  }
  for (int i = 0; i < n; i++)
    rd_kafka_NewTopic_destroy(nt[i]);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
  return rc;
}
