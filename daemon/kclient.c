/* daemon/kclient.c: the daemon's small Kafka clients' shared parts
 * (daemon/kclient.h). */
#include <stdio.h>
#include <string.h>

#include "daemon/kclient.h"
#include "telemetry/log.h"

static void klog(const rd_kafka_t *rk, int level, const char *fac,
                 const char *buf) {
  (void)rk;
  sl_log_kafka_cb(NULL, level, fac, buf);
}

rd_kafka_conf_t *sl_kclient_conf(void) {
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  char e[128];
  rd_kafka_conf_set_log_cb(c, klog);
  /* The fleet's topics are compacted and made by `sluice fleet init`: a
   * metadata request must never have the broker create one (it would be
   * created with the broker's defaults, not compacted). */
  (void)rd_kafka_conf_set(c, "allow.auto.create.topics", "false", e, sizeof(e));
  return c;
}

int sl_kclient_props(rd_kafka_conf_t *c, char *const *items, size_t n,
                     const char *skip_prefix, char *err, size_t errlen) {
  for (size_t i = 0; i < n; i++) {
    const char *p = items[i], *eq = strchr(p, '=');
    char k[128];
    if (!eq || (size_t)(eq - p) >= sizeof(k))
      continue; /* the config's checks refused such items already */
    snprintf(k, sizeof(k), "%.*s", (int)(eq - p), p);
    if (skip_prefix && !strncmp(k, skip_prefix, strlen(skip_prefix)))
      continue;
    if (rd_kafka_conf_set(c, k, eq + 1, err, errlen) != RD_KAFKA_CONF_OK)
      return -1;
  }
  return 0;
}

int32_t sl_kclient_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
                              rd_kafka_resp_err_t *why) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  rd_kafka_resp_err_t e;
  int32_t n = 0;
  if (!rkt)
    return 0;
  e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
  if (!e && md->topic_cnt == 1 && !md->topics[0].err)
    n = md->topics[0].partition_cnt;
  else if (!e)
    e = md->topic_cnt == 1 ? md->topics[0].err
                           : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
  if (why)
    *why = e;
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  return n;
}
