/*
 * daemon/kclient.h: what the daemon's own small Kafka clients share (the
 * fleet agent, enrolment; the uplink has sync/): librdkafka's logs in the
 * daemon's format, "key=value" property lists, partition counts. Private
 * to the daemon layer.
 */
#ifndef SL_KCLIENT_H
#define SL_KCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

/* A new conf with the daemon's log callback, no topic auto-creation. */
rd_kafka_conf_t *sl_kclient_conf(void);

/* Sets each "key=value" of items on c; keys with skip_prefix (or NULL)
 * are left out. Returns 0, or -1 with librdkafka's reason in err. */
int sl_kclient_props(rd_kafka_conf_t *c, char *const *items, size_t n,
                     const char *skip_prefix, char *err, size_t errlen);

/* Partitions of topic (metadata, at most timeout_ms), 0 when unknown;
 * why (may be NULL) receives the reason then (the request's or the
 * topic's error). */
int32_t sl_kclient_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
                              rd_kafka_resp_err_t *why);

#endif /* SL_KCLIENT_H */
