/*
 * What the in-process uplink tests share (sync_mock_test, sync_clock_test,
 * sync_status_test): the uplink runs in the test's own process (sync/sync.h)
 * over a store in a scratch directory, against librdkafka's mock cluster or
 * a real broker, and a consumer reads the topic back by the stored offsets
 * the records carry in their "offset" header.
 */
#ifndef SL_TEST_SYNC_INPROC_H
#define SL_TEST_SYNC_INPROC_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "sluice/v1/event.pb-c.h"
#include "store/store.h"
#include "tests/common/check.h"

/* Events per stored batch (inproc_fill). */
#define INPROC_BATCH 500u

/* A store in a fresh directory (/tmp/sl_<tag>.XXXXXX) with the stream
 * "readings" (its id in *id); synced on an interval when interval_sync. */
sl_store_t *inproc_store_open(const char *tag, int interval_sync, uint32_t *id);
/* Closes the store and removes its directory (a warning when it cannot). */
void inproc_store_remove(sl_store_t *st);

/* Stores readings from..from+n-1 (whole INPROC_BATCH batches): value = the
 * offset, time = base_ns + offset ms, 16 sources. */
void inproc_fill(sl_store_t *st, uint32_t id, uint32_t from, uint32_t n,
                 int64_t base_ns);

/* librdkafka's mock cluster, in a client instance of its own. */
typedef struct inproc_mock {
  rd_kafka_t *rk;
  rd_kafka_mock_cluster_t *mc;
  const char *brokers; /* its bootstrap servers */
} inproc_mock_t;

/* A cluster of nbrokers with the topics named (NULL-terminated; one
 * partition, replicated on every broker: the mock does not implement
 * CreateTopics). 0, or 77 after a SKIP line naming prog when this
 * librdkafka has no mock cluster. */
int inproc_mock_new(inproc_mock_t *m, int nbrokers, const char *const *topics,
                    const char *prog);
void inproc_mock_free(inproc_mock_t *m);

/* Checks one record read back (off from its header; ev NULL when the value
 * does not decode). */
typedef void (*inproc_record_fn)(const rd_kafka_message_t *m, uint64_t off,
                                 const Sluice__V1__Event *ev);
/* Reads topic from the beginning to its end (60 s at most; read_committed
 * when committed): an offset header below n on every record, count[off]++,
 * then check(). Returns the records read. */
uint64_t inproc_consume(const char *brokers, const char *topic, int committed,
                        uint32_t n, uint32_t *count, inproc_record_fn check);

#endif /* SL_TEST_SYNC_INPROC_H */
