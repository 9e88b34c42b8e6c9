/*
 * sync/uplink_recover.c: the way back after a chunk failed. The open
 * transaction is aborted (or, when that cannot work, the producers are
 * marked for a rebuild: *fatal), the cause is named in the status, a
 * handed-off commit is collected (its outcome decides where to rewind to),
 * and every stream rewinds to its committed checkpoint: the records of the
 * failed chunk are sent again. Uplink thread only.
 */
#include <assert.h>

#include "sync/sync_int.h"

#define ABORT_TIMEOUT_MS 5000 /* abort_transaction(), then a new producer */

void sync__rewind_all(sl_sync_t *up) {
  /* A sealed transaction still committing would move cp under us. */
  assert(!up->committing);
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    s->pend = s->cp;
    s->touched = false;
    s->txn_events = s->txn_bytes = 0;
    sync__lane_reset(&s->live, s->cp.live_next, SL_STORE_OFFSET_END, false);
    if (s->cp.backlog_next < s->cp.live_start && up->o.backlog_newest_first)
      sync__backlog_block(s);
    else if (s->cp.backlog_next < s->cp.live_start)
      sync__lane_reset(&s->backlog, s->cp.backlog_next, s->cp.live_start, true);
    else
      sync__lane_reset(&s->backlog, 0, 0, true);
  }
  up->gap_pend = up->gap_cp;
  up->gap_txn_n = 0;
}

static void count_abort(sl_sync_t *up) {
  pthread_mutex_lock(&up->lock);
  up->stats.txn_aborts++;
  pthread_mutex_unlock(&up->lock);
}

/*
 * abort_transaction() purges what is queued and then waits until every
 * outstanding message's delivery report was served, and only
 * rd_kafka_poll() on this very thread serves them: called straight away
 * (a record the broker rejected for good, with the records behind it in
 * flight) it waited out its whole timeout, which is what made the poison
 * test flaky. So purge and serve the reports first, then abort, bounded;
 * an abort that still times out makes the producer new (*fatal:
 * init_transactions aborts the open transaction on the coordinator at
 * once). Returns rc, or SL_EFENCED.
 */
static int abort_txn(sl_sync_t *up, int rc, bool *fatal) {
  bool abortable, retriable;
  uint64_t deadline = sl_now_mono_ns() + ABORT_TIMEOUT_MS * 1000000ull;
  rd_kafka_purge(up->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  while (rd_kafka_outq_len(up->rk) > 0 && sl_now_mono_ns() < deadline)
    rd_kafka_poll(up->rk, 10);
  rd_kafka_error_t *error = rd_kafka_abort_transaction(
      up->rk, (int)SL_MIN(up->o.txn_timeout_ms, ABORT_TIMEOUT_MS));
  int arc = sync__txn_call(up, error, "abort_transaction", fatal, &abortable,
                           &retriable);
  if (arc == SL_EFENCED)
    rc = arc;
  else if (arc < 0)
    *fatal = true; /* cannot get back to a clean state: new producer */
  count_abort(up);
  return rc;
}

int sync__chunk_recover(sl_sync_t *up, bool eos, int rc, bool *fatal) {
  pthread_mutex_lock(&up->lock);
  up->stats.retries++;
  pthread_mutex_unlock(&up->lock);
  if (eos && up->in_txn && up->dr_failed &&
      up->dr_first_err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) {
    /* Records timed out: Kafka was out of reach for the whole message
     * timeout. abort_transaction() would wait (ABORT_TIMEOUT_MS) for a
     * coordinator that may still be away, and a failed abort makes the
     * producer new anyway; the outage benchmark measured the uplink idle
     * 1.4 s after Kafka was back, in that abort. A new producer's
     * init_transactions() waits for Kafka and aborts the open transaction
     * there, so make it new now. */
    *fatal = true;
    count_abort(up);
  }
  if (eos && up->in_txn && rc != SL_EFENCED && !*fatal)
    rc = abort_txn(up, rc, fatal);
  /* The reports are served now: a timestamp refusal is the cause, whatever
   * the produce call said after it ("Producing not allowed in
   * transactional state AbortableError"). */
  if (up->dr_failed && up->dr_first_err == RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP)
    sync__name_refusal(up);
  if (!eos && rc == SL_EKAFKA) {
    /* Purge what is left so the resend starts clean. */
    rd_kafka_purge(up->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(up->rk, 0);
    if (up->dr_failed &&
        up->dr_first_err == RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP)
      sync__name_refusal(up);
  }
  /* A fatal producer error (the idempotent producer's, in at-least-once
   * mode, is only visible here: "Producing not allowed since a previous
   * fatal error") needs a new producer; retrying with this one never
   * succeeds. */
  char ferr[256];
  if (!*fatal && up->rk &&
      rd_kafka_fatal_error(up->rk, ferr, sizeof(ferr)) !=
          RD_KAFKA_RESP_ERR_NO_ERROR) {
    sync__set_error(up, SL_EKAFKA, "fatal producer error: %s", ferr);
    *fatal = true;
  }
  up->in_txn = false;
  if (up->committing) {
    /* The previous transaction's commit decides where to rewind to. */
    bool f2 = false;
    int crc = sync__collect(up, true, &f2);
    if (crc == SL_EFENCED)
      rc = crc;
    else if (crc < 0)
      *fatal = true;
  }
  sync__rewind_all(up);
  if (rc == SL_ECLOSED)
    return 0;
  return rc < 0 ? rc : SL_EKAFKA;
}
