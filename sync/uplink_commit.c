/*
 * sync/uplink_commit.c: the commit phase of a chunk and the committer
 * thread. A chunk's records are flushed (every delivery report served),
 * then its checkpoints commit with them: exactly-once by
 * commit_transaction() (on the committer thread when two producers take
 * turns, see sync/uplink.c), at least once by the flush alone. A
 * transaction is "sealed" from the moment it is complete until its commit
 * is confirmed; only a confirmed commit moves the checkpoints, the local
 * cursors and the delivered counts ("finalize").
 */
#include <assert.h>

#include "sync/sync_int.h"

static const char *const ts_names[] = {"node", "event", "broker_estimate"};

/* Seals the open transaction: its positions and counts move to the cm_*
 * fields until its commit is confirmed; the next transaction starts empty. */
static void seal(sl_sync_t *up) {
  assert(!up->committing); /* one sealed transaction at a time */
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    s->cm_cp = s->pend;
    s->cm_touched = s->touched;
    s->cm_events = s->txn_events;
    s->cm_bytes = s->txn_bytes;
    s->touched = false;
    s->txn_events = s->txn_bytes = 0;
  }
  up->cm_gap_pend = up->gap_pend;
  up->cm_gap_n = up->gap_txn_n;
  up->gap_txn_n = 0;
}

/* Forgets a sealed transaction whose commit failed. */
static void unseal(sl_sync_t *up) {
  for (size_t i = 0; i < up->nstreams; i++) {
    up->streams[i].cm_touched = false;
    up->streams[i].cm_events = up->streams[i].cm_bytes = 0;
  }
  up->cm_gap_n = 0;
}

static void account_commit(sl_sync_t *up, double commit_ms) {
  pthread_mutex_lock(&up->lock);
  up->stats.txn_commits++;
  up->stats.txn_commit_ms_last = commit_ms;
  if (commit_ms > up->stats.txn_commit_ms_max)
    up->stats.txn_commit_ms_max = commit_ms;
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    s->st.delivered += s->cm_events;
    s->st.delivered_bytes += s->cm_bytes;
    s->st.next_offset = s->cp.backlog_next;
    s->st.live_start = s->cp.live_start;
    s->st.live_next = s->cp.live_next;
    if (s->cm_events)
      up->stats.ts_blocked = 0; /* records get through again */
  }
  up->stats.queue_depth = up->rk ? (uint32_t)rd_kafka_outq_len(up->rk) : 0;
  up->stats.connected = 1;
  up->ever_connected = true;
  if (!up->stats.ts_blocked) { /* delivered: the last error is history */
    up->stats.last_error = 0;
    up->stats.last_error_text[0] = '\0';
  }
  pthread_mutex_unlock(&up->lock);
}

/* The sealed transaction is committed: its positions become the
 * checkpoints (then the local cursors and the stats). */
static void finalize(sl_sync_t *up, double commit_ms) {
  for (size_t i = 0; i < up->nstreams; i++)
    up->streams[i].cp = up->streams[i].cm_cp;
  account_commit(up, commit_ms);
  up->gap_cp = up->cm_gap_pend;
  sync__commit_local(up);
  if (up->cm_gap_n)
    sl_store_gap_ack(up->st, up->gap_cp);
  /* No gap pending: the stepped-over ranges have served (a later eviction
   * takes other offsets). */
  bool any = false;
  for (size_t i = 0; i < up->nstreams; i++)
    any |= up->streams[i].nskipped || up->streams[i].skip_overflow;
  sl_store_gap_t g;
  size_t ng = 1;
  if (any && sl_store_gap_list(up->st, up->gap_cp, &g, 1, &ng) == 0 && ng == 0)
    for (size_t i = 0; i < up->nstreams; i++) {
      up->streams[i].nskipped = 0;
      up->streams[i].skip_overflow = false;
    }
  unseal(up);
  up->backoff_ms = 0;
}

/*
 * commit_transaction() in slices of a second (a timed-out call may be made
 * again: the commit goes on in the background), up to the transaction
 * timeout, so that a stop need not wait out a broker that stopped
 * answering: SYNC_STOP_GRACE_MS after the stop the commit is given up (an
 * error: not confirmed, so not finalized; the next start resumes from the
 * checkpoints in Kafka). Any thread.
 */
static rd_kafka_error_t *commit_sliced(sl_sync_t *up, rd_kafka_t *rk) {
  uint64_t t0 = sl_now_mono_ns(), stop_ns = 0;
  uint64_t until = t0 + (uint64_t)up->o.txn_timeout_ms * 1000000u;
  for (;;) {
    rd_kafka_error_t *error = rd_kafka_commit_transaction(rk, 1000);
    uint64_t now = sl_now_mono_ns();
    if (!error || !rd_kafka_error_is_retriable(error) ||
        rd_kafka_error_code(error) != RD_KAFKA_RESP_ERR__TIMED_OUT ||
        now >= until)
      return error;
    if (!stop_ns && sync__stopping(up))
      stop_ns = now;
    if (stop_ns && now - stop_ns >= SYNC_STOP_GRACE_MS * 1000000ull)
      return error;
    rd_kafka_error_destroy(error);
  }
}

/* The committer thread: commits the transaction it is handed, one at a
 * time, and posts the result. */
static void *committer_main(void *arg) {
  sl_sync_t *up = arg;
  pthread_mutex_lock(&up->cm_lock);
  for (;;) {
    while (!up->cm_rk && !up->cm_quit)
      pthread_cond_wait(&up->cm_cond, &up->cm_lock);
    if (!up->cm_rk)
      break;
    rd_kafka_t *rk = up->cm_rk;
    pthread_mutex_unlock(&up->cm_lock);
    uint64_t t0 = sl_now_mono_ns();
    rd_kafka_error_t *error = commit_sliced(up, rk);
    double ms = (double)(sl_now_mono_ns() - t0) / 1e6;
    pthread_mutex_lock(&up->cm_lock);
    up->cm_error = error;
    up->cm_ms = ms;
    up->cm_rk = NULL;
    up->cm_done = true;
    pthread_cond_broadcast(&up->cm_cond);
  }
  pthread_mutex_unlock(&up->cm_lock);
  return NULL;
}

int sync__committer_start(sl_sync_t *up) {
  int rc = pthread_create(&up->cm_thread, NULL, committer_main, up);
  if (rc == 0)
    up->cm_started = true;
  return -rc;
}

void sync__committer_stop(sl_sync_t *up) {
  if (!up->cm_started)
    return;
  pthread_mutex_lock(&up->cm_lock);
  up->cm_quit = true;
  pthread_cond_broadcast(&up->cm_cond);
  pthread_mutex_unlock(&up->cm_lock);
  pthread_join(up->cm_thread, NULL);
  up->cm_started = false;
}

/* Hands the sealed, flushed transaction of the current producer to the
 * committer and makes the other producer current. */
static void hand_off(sl_sync_t *up) {
  /* Only the pipelined mode hands off, and it runs with the committer. */
  assert(up->nprod > 1 && up->cm_started && !up->committing);
  pthread_mutex_lock(&up->cm_lock);
  up->cm_rk = up->rk;
  up->cm_done = false;
  pthread_cond_broadcast(&up->cm_cond);
  pthread_mutex_unlock(&up->cm_lock);
  up->committing = true;
  up->in_txn = false;
  sync__producer_use(up, (up->cur + 1) % up->nprod);
}

/*
 * Collects the handed-off commit. Returns 0 when none is pending (or, with
 * !wait, it still runs), 1 when it was confirmed and finalized, or an error
 * with *fatal set (except SL_EFENCED): whether the commit happened is not
 * known here, so the producers are rebuilt and delivery resumes from the
 * checkpoints in Kafka.
 */
int sync__collect(sl_sync_t *up, bool wait, bool *fatal) {
  if (!up->committing)
    return 0;
  pthread_mutex_lock(&up->cm_lock);
  while (wait && !up->cm_done)
    pthread_cond_wait(&up->cm_cond, &up->cm_lock);
  bool done = up->cm_done;
  rd_kafka_error_t *error = up->cm_error;
  double ms = up->cm_ms;
  if (done) {
    up->cm_done = false;
    up->cm_error = NULL;
  }
  pthread_mutex_unlock(&up->cm_lock);
  if (!done)
    return 0;
  up->committing = false;
  if (error) {
    bool abortable, retriable;
    int rc = sync__txn_call(up, error, "commit_transaction", fatal, &abortable,
                            &retriable);
    if (rc != SL_EFENCED)
      *fatal = true;
    unseal(up);
    return rc < 0 ? rc : SL_EKAFKA;
  }
  finalize(up, ms);
  return 1;
}

/* Why the records of the chunk were not delivered, in the status. A
 * timestamp refusal says what to do about it (docs/DELIVERY.md "Clocks"). */
void sync__name_refusal(sl_sync_t *up) {
  if (!up->dr_failed) {
    sync__set_error(up, SL_EKAFKA,
                    "%u records not acknowledged within %u ms: no broker "
                    "answered",
                    up->rk ? (unsigned)rd_kafka_outq_len(up->rk) : 0u,
                    up->o.txn_timeout_ms);
    return;
  }
  if (up->dr_first_err != RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP) {
    sync__set_error(up, SL_EKAFKA, "%llu records not delivered: %s",
                    (unsigned long long)up->dr_failed,
                    rd_kafka_err2str(up->dr_first_err));
    return;
  }
  sync__set_error(
      up, SL_EKAFKA,
      "Kafka refused %llu records: INVALID_TIMESTAMP (timestamps from "
      "kafka.record_timestamp: %s are outside the broker's "
      "message.timestamp.after/before.max.ms; see clock_skew_s; fix the "
      "node's clock or use broker_estimate)",
      (unsigned long long)up->dr_failed,
      ts_names[(unsigned)up->o.record_timestamp % 3]);
}

/*
 * Flushes the chunk's records (delivery reports first: a record rejected
 * for good fails the transaction, and commit_transaction() would otherwise
 * wait for its whole timeout flushing the rest). Returns 0 when every
 * record is acknowledged; SL_ECLOSED (*fatal) when stopping and Kafka does
 * not answer, SL_EKAFKA (*fatal after an authentication error) otherwise.
 */
static int flush_txn(sl_sync_t *up, bool *fatal) {
  uint64_t c0 = sl_now_mono_ns();
  uint64_t flush_until = c0 + (uint64_t)up->o.txn_timeout_ms * 1000000u;
  while (rd_kafka_outq_len(up->rk) > 0 && !up->dr_failed &&
         sl_now_mono_ns() < flush_until && !sync__auth_failed(up)) {
    if (sync__stopping(up)) /* a grace for the records in flight, no more */
      flush_until = SL_MIN(flush_until,
                           sl_now_mono_ns() + SYNC_STOP_GRACE_MS * 1000000ull);
    rd_kafka_poll(up->rk, 5);
    sync__note_waiting(up, c0);
  }
  if (sync__stopping(up) && rd_kafka_outq_len(up->rk) > 0) {
    /* Stopping and Kafka does not answer: give the transaction up.
     * abort_transaction() would wait for the same broker; the next
     * start's init_transactions() aborts it (or the broker times it
     * out), and its records are sent again from the checkpoints. */
    *fatal = true;
    return SL_ECLOSED;
  }
  if (sync__auth_failed(up)) {
    *fatal = true; /* drop the producers, retry in a minute */
    return SL_EKAFKA;
  }
  if (up->dr_failed) {
    sync__name_refusal(up);
    return SL_EKAFKA;
  }
  return 0;
}

/* Exactly-once: the checkpoints of the streams touched join the
 * transaction, which is flushed and then committed (handed to the
 * committer, or here with one producer). */
static int commit_txn(sl_sync_t *up, bool *fatal) {
  bool abortable, retriable;
  int rc;
  for (size_t i = 0; i < up->nstreams; i++)
    if (up->streams[i].touched &&
        (rc = sync__produce_ckpt(up, &up->streams[i])) < 0)
      return rc;
  uint64_t c0 = sl_now_mono_ns();
  if ((rc = flush_txn(up, fatal)) < 0)
    return rc;
  if (up->nprod > 1) {
    /* Every record is appended: the commit runs on the committer thread
     * once the previous one is confirmed, and the other producer takes
     * the next records meanwhile. */
    if ((rc = sync__collect(up, true, fatal)) < 0)
      return rc;
    seal(up);
    hand_off(up);
    return 1;
  }
  rd_kafka_error_t *error = commit_sliced(up, up->rk);
  rc = sync__txn_call(up, error, "commit_transaction", fatal, &abortable,
                      &retriable);
  if (rc < 0)
    return rc;
  up->in_txn = false;
  /* Committed: the transaction's positions become the checkpoints. */
  seal(up);
  finalize(up, (double)(sl_now_mono_ns() - c0) / 1e6);
  return 1;
}

/* At least once (no transaction): the chunk is delivered once every
 * record is acknowledged; finalize() then moves the checkpoints. */
static int commit_flush(sl_sync_t *up) {
  uint64_t c0 = sl_now_mono_ns();
  uint64_t flush_until = c0 + (uint64_t)up->o.txn_timeout_ms * 1000000u;
  while (rd_kafka_outq_len(up->rk) > 0 && !up->dr_failed &&
         sl_now_mono_ns() < flush_until) {
    if (sync__stopping(up)) /* a grace for the records in flight, no more */
      flush_until = SL_MIN(flush_until,
                           sl_now_mono_ns() + SYNC_STOP_GRACE_MS * 1000000ull);
    rd_kafka_flush(up->rk, 100);
    sync__note_waiting(up, c0);
  }
  if (up->dr_failed || rd_kafka_outq_len(up->rk) > 0) {
    if (sync__stopping(up) && !up->dr_failed)
      return SL_ECLOSED; /* resent from the local cursor at the next start */
    sync__name_refusal(up);
    return SL_EKAFKA;
  }
  seal(up);
  finalize(up, (double)(sl_now_mono_ns() - c0) / 1e6);
  return 1;
}

int sync__chunk_commit(sl_sync_t *up, bool eos, bool *fatal) {
  return eos ? commit_txn(up, fatal) : commit_flush(up);
}
