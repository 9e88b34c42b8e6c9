/*
 * sync/uplink.c: the uplink thread and the public calls. One loop:
 * connect (producer, init_transactions), resume (checkpoints), then chunks:
 * begin a transaction, pump the lanes (live first, by stream priority),
 * forward gap records, add the checkpoints of the streams touched, commit,
 * then advance the local cursors.
 *
 * Pipelined commits (exactly-once, the default): two transactional
 * producers ("<prefix><node>" and "<prefix><node>.1") take turns. Once a
 * transaction's records are all acknowledged (flushed), the committer
 * thread runs its commit_transaction() (EndTxn and the markers) while this
 * thread begins the next transaction on the other producer. A commit used
 * to stall every live record for flush + EndTxn + the next
 * AddPartitionsToTxn, which the coordinator answers CONCURRENT_TRANSACTIONS
 * until its markers are written (librdkafka retries after 20 ms): ~30 ms
 * per commit, the live p99. Order holds: the next transaction's records
 * are produced only after every record of the previous one was appended,
 * and a transaction is committed only after the previous commit was
 * confirmed. A commit that fails leaves its outcome unknown here: both
 * producers are rebuilt (init_transactions aborts what was left open) and
 * delivery resumes from the checkpoints read back from Kafka.
 *
 * Errors:
 *   - abortable (a record failed, a timeout): abort, rewind every stream to
 *     its committed checkpoint, retry after a jittered backoff;
 *   - fenced: stop for good (SL_SYNC_FENCED), the newer instance owns the
 *     node's transactional id;
 *   - other fatal errors: destroy the producer, make a new one and resume
 *     from the checkpoints read back from Kafka.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync/sync_int.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define ABORT_TIMEOUT_MS 5000 /* abort_transaction(), then a new producer */
#define IDLE_POLL_MS 2        /* longest wait for a kick inside a transaction */
#define BACKLOG_SLICE 2000    /* backlog events per lane per round, at most */
#define NEWEST_BLOCK 1000     /* newest-first backlog: events per block */
/* While a live lane sent within LIVE_RECENT_MS, backlog lanes add records
 * only while librdkafka holds fewer than BACKLOG_QUEUE_LIVE messages. */
#define BACKLOG_QUEUE_LIVE 4000
#define LIVE_RECENT_MS 1000

static const char *const state_names[] = {"stopped", "connecting",  "resuming",
                                          "running", "backoff",     "fenced",
                                          "failed",  "disconnected"};

const char *sl_sync_state_name(sl_sync_state_t state) {
  return (unsigned)state < SL_ARRAY_SIZE(state_names) ? state_names[state]
                                                      : "?";
}

void sl_sync_opts_init(sl_sync_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->checkpoint_topic = "sluice.checkpoints";
  o->txn_id_prefix = "sluice-";
  o->consumer = "uplink";
  o->gap_topic = "";
  o->chunk_events = 50000;
  o->commit_interval_ms = 100;
  o->queue_max_messages = 20000;
  o->queue_max_kbytes = 8192;
  o->max_record_bytes = 1000000;
  o->backlog_share = 0.5;
  o->backlog_threshold = 100000;
  o->txn_timeout_ms = 60000;
}

static void set_state(sl_sync_t *up, sl_sync_state_t state) {
  pthread_mutex_lock(&up->lock);
  up->stats.state = state;
  pthread_mutex_unlock(&up->lock);
}

static bool stopping(sl_sync_t *up) {
  pthread_mutex_lock(&up->lock);
  bool stop = up->stop;
  pthread_mutex_unlock(&up->lock);
  return stop;
}

/* Waits up to ms for a kick or a stop. */
static void wait_ms(sl_sync_t *up, uint64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&up->lock);
  while (!up->stop && !up->kick)
    if (pthread_cond_timedwait(&up->cond, &up->lock, &ts) == ETIMEDOUT)
      break;
  up->kick = false;
  pthread_mutex_unlock(&up->lock);
}

/* Jittered exponential backoff, capped; a minute, jittered, after an
 * authentication failure (the producers were dropped: librdkafka would
 * otherwise retry on its own every reconnect.backoff.max.ms). */
static void backoff(sl_sync_t *up) {
  up->backoff_ms = up->backoff_ms ? SL_MIN(up->backoff_ms * 2, BACKOFF_MAX_MS)
                                  : BACKOFF_MIN_MS;
  uint64_t ms =
      up->backoff_ms / 2 + (uint64_t)rand() % (up->backoff_ms / 2 + 1);
  pthread_mutex_lock(&up->lock);
  bool auth = up->auth_failed;
  up->auth_failed = false;
  pthread_mutex_unlock(&up->lock);
  if (auth)
    ms = up->o.auth_backoff_ms / 2 +
         (uint64_t)rand() % (up->o.auth_backoff_ms / 2 + 1);
  set_state(up, SL_SYNC_BACKOFF);
  wait_ms(up, ms);
}

/*
 * Newest-first backlog (kafka.backlog_order: newest_first). The checkpoint
 * keeps its three offsets: delivered = [0, backlog_next) + [live_start,
 * live_next). The backlog lane reads a block of the newest NEWEST_BLOCK
 * undelivered events below live_start, oldest first, and when the block is
 * done live_start moves down over it. A block half sent is in no offset, so
 * a transaction ends only between blocks (finish_blocks()).
 */
static void backlog_block(sync_stream_t *s) {
  uint64_t lo = s->pend.backlog_next, hi = s->pend.live_start;
  sync__lane_reset(&s->backlog, hi - lo > NEWEST_BLOCK ? hi - NEWEST_BLOCK : lo,
                   hi, true);
}

/* After the backlog lane was pumped: the stream's positions follow it, and
 * a caught-up stream is one lane again. */
static void backlog_advance(sl_sync_t *up, sync_stream_t *s) {
  sync_lane_t *l = &s->backlog;
  if (!up->o.backlog_newest_first) {
    s->pend.backlog_next = l->next;
  } else if (l->next >= l->end) {
    s->pend.live_start = l->start; /* the block is delivered */
    s->touched = true;
    if (s->pend.backlog_next < s->pend.live_start)
      backlog_block(s);
  } else {
    return; /* inside a block */
  }
  if (s->pend.backlog_next >= s->pend.live_start) {
    s->pend.backlog_next = s->pend.live_start = s->pend.live_next;
    s->touched = true;
    sync__lane_reset(&s->backlog, 0, 0, true);
  }
}

/* Newest first: sends the rest of every block the open transaction has
 * started, so that it ends between blocks. */
static int finish_blocks(sl_sync_t *up) {
  uint64_t deadline =
      sl_now_mono_ns() + (uint64_t)up->o.txn_timeout_ms * 1000000u;
  if (!up->o.backlog_newest_first)
    return 0;
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    sync_lane_t *l = &s->backlog;
    while (s->pend.backlog_next < s->pend.live_start && l->next > l->start &&
           l->next < l->end) {
      up->throttle_ns = 0;
      up->live_throttled = false;
      long n = sync__lane_pump(up, s, l, l->end - l->next);
      if (n < 0)
        return (int)n;
      backlog_advance(up, s);
      if (n == 0) {
        if (stopping(up))
          return SL_ECLOSED;
        if (sl_now_mono_ns() > deadline)
          return SL_EKAFKA;
        rd_kafka_poll(up->rk, (int)(up->throttle_ns / 1000000u) + 1);
      }
    }
  }
  return 0;
}

/* After gap records went out: a lane whose next offset lies in a forwarded
 * evicted range moves past it (it may hold a record read before the
 * eviction, whose events are in the gap now). */
static void skip_gaps(sl_sync_t *up) {
  for (size_t k = 0; k < up->ngap_skip; k++) {
    sync_stream_t *s = &up->streams[up->gap_skip[k].stream];
    uint64_t a = up->gap_skip[k].first, b = up->gap_skip[k].end;
    sync_lane_t *l = &s->live;
    if (l->next >= a && l->next < b) {
      bool one = s->pend.backlog_next == s->pend.live_start;
      sync__lane_close(l);
      l->next = b;
      s->pend.live_next = b;
      if (one)
        s->pend.backlog_next = s->pend.live_start = b;
      s->touched = true;
    }
    l = &s->backlog;
    if (s->pend.backlog_next < s->pend.live_start && l->next >= a &&
        l->next < b && l->next < l->end) {
      sync__lane_close(l);
      l->next = SL_MIN(b, l->end);
      s->touched = true;
      backlog_advance(up, s);
    }
  }
  up->ngap_skip = 0;
}

/* Every stream back to its committed checkpoint (after an abort). */
static void rewind_all(sl_sync_t *up) {
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    s->pend = s->cp;
    s->touched = false;
    s->txn_events = s->txn_bytes = 0;
    sync__lane_reset(&s->live, s->cp.live_next, SL_STORE_OFFSET_END, false);
    if (s->cp.backlog_next < s->cp.live_start && up->o.backlog_newest_first)
      backlog_block(s);
    else if (s->cp.backlog_next < s->cp.live_start)
      sync__lane_reset(&s->backlog, s->cp.backlog_next, s->cp.live_start, true);
    else
      sync__lane_reset(&s->backlog, 0, 0, true);
  }
  up->gap_pend = up->gap_cp;
  up->gap_txn_n = 0;
}

/* Opens a second lane for streams further behind than the threshold: the
 * live lane jumps to the end of the stored data, the backlog lane keeps
 * the old position and ends where the live lane starts. */
static void plan_lanes(sl_sync_t *up) {
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    sl_store_stream_stats_t ss;
    if (s->pend.backlog_next < s->pend.live_start || !up->o.backlog_threshold)
      continue; /* already two lanes, or lanes off */
    if (sl_store_stream_stats(up->st, s->id, &ss) < 0)
      continue;
    if (ss.next_offset <= s->pend.live_next ||
        ss.next_offset - s->pend.live_next <= up->o.backlog_threshold)
      continue;
    s->pend.live_start = s->pend.live_next = ss.next_offset;
    if (up->o.backlog_newest_first)
      backlog_block(s);
    else
      sync__lane_reset(&s->backlog, s->pend.backlog_next, ss.next_offset, true);
    sync__lane_reset(&s->live, ss.next_offset, SL_STORE_OFFSET_END, false);
    s->touched = true; /* the checkpoint must record the split */
  }
}

/* Pumps every lane once; returns events sent or a negative error. */
static long pump_round(sl_sync_t *up, uint64_t budget) {
  long total = 0, n;
  uint64_t now = sl_now_mono_ns();
  up->live_throttled = false;
  up->backlog_held = false;
  up->throttle_ns = 0;
  for (size_t k = 0; k < up->nstreams; k++) {
    sync_stream_t *s = &up->streams[up->order[k]];
    if ((n = sync__lane_pump(up, s, &s->live, budget)) < 0)
      return n;
    if (n > 0)
      up->live_sent_ns = now;
    total += n;
    s->pend.live_next = s->live.next;
    if (s->pend.backlog_next == s->pend.live_start)
      s->pend.backlog_next = s->pend.live_start = s->pend.live_next;
  }
  bool live_recent =
      up->live_sent_ns && now - up->live_sent_ns < LIVE_RECENT_MS * 1000000u;
  for (size_t k = 0; k < up->nstreams; k++) {
    sync_stream_t *s = &up->streams[up->order[k]];
    if (s->pend.backlog_next >= s->pend.live_start)
      continue;
    /* Slices small enough that live data is picked up between them. */
    uint64_t slice = SL_MIN(budget, BACKLOG_SLICE);
    if (live_recent) {
      /* Live records queue behind backlog records of the same partition
       * in librdkafka: while live data flows, keep the backlog's part of
       * the queue short (the live lane's latency is that queue). */
      uint64_t q = (uint64_t)rd_kafka_outq_len(up->rk);
      slice =
          q >= BACKLOG_QUEUE_LIVE ? 0 : SL_MIN(slice, BACKLOG_QUEUE_LIVE - q);
      if (!slice) {
        up->backlog_held = true;
        continue;
      }
    }
    if ((n = sync__lane_pump(up, s, &s->backlog, slice)) < 0)
      return n;
    total += n;
    backlog_advance(up, s);
  }
  return total;
}

static bool has_work(sl_sync_t *up) {
  sl_store_gap_t g;
  size_t n = 0;
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    sl_store_stream_stats_t ss;
    if (s->pend.backlog_next < s->pend.live_start)
      return true;
    if (sl_store_stream_stats(up->st, s->id, &ss) == 0 &&
        ss.next_offset > s->pend.live_next)
      return true;
  }
  return sl_store_gap_list(up->st, up->gap_pend, &g, 1, &n) == 0 && n > 0;
}

static bool any_touched(const sl_sync_t *up) {
  for (size_t i = 0; i < up->nstreams; i++)
    if (up->streams[i].touched)
      return true;
  return false;
}

static void account_commit(sl_sync_t *up, double commit_ms);

/* Seals the open transaction: its positions and counts move to the cm_*
 * fields until its commit is confirmed; the next transaction starts empty. */
static void seal(sl_sync_t *up) {
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
    if (!stop_ns && stopping(up))
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

/* Hands the sealed, flushed transaction of the current producer to the
 * committer and makes the other producer current. */
static void hand_off(sl_sync_t *up) {
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
static int collect(sl_sync_t *up, bool wait, bool *fatal) {
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

/*
 * Idle and disconnected: nothing commits that would say the brokers are
 * back, so ask one for metadata (brokers only), at most once a second,
 * for at most 500 ms. An answer makes the uplink connected (and clears
 * last_error); the status would otherwise say disconnected until the next
 * event arrives.
 */
static void probe_idle(sl_sync_t *up) {
  const struct rd_kafka_metadata *md = NULL;
  uint64_t now = sl_now_mono_ns();
  pthread_mutex_lock(&up->lock);
  bool connected = up->stats.connected;
  pthread_mutex_unlock(&up->lock);
  if (connected || !up->rk || now - up->probe_ns < 1000000000u)
    return;
  up->probe_ns = now;
  if (rd_kafka_metadata(up->rk, 0, NULL, &md, 500) ==
          RD_KAFKA_RESP_ERR_NO_ERROR &&
      md) {
    if (md->broker_cnt > 0)
      sync__set_connected(up, 1);
  }
  if (md)
    rd_kafka_metadata_destroy(md);
}

static void update_rates(sl_sync_t *up);

/*
 * Records wait for the broker (it may be down for minutes): keep /v1/status
 * and /metrics honest meanwhile. The backlog and rates are refreshed once
 * a second, and after 2 s without a delivery the uplink reports itself
 * disconnected; the next commit reports it connected again.
 */
static void note_waiting(sl_sync_t *up, uint64_t since_ns) {
  update_rates(up);
  if (sl_now_mono_ns() - since_ns > 2000000000u) {
    pthread_mutex_lock(&up->lock);
    up->stats.connected = 0;
    pthread_mutex_unlock(&up->lock);
  }
}

static const char *const ts_names[] = {"node", "event", "broker_estimate"};

/* Why the records of the chunk were not delivered, in the status. A
 * timestamp refusal says what to do about it (docs/DELIVERY.md "Clocks"). */
static void name_refusal(sl_sync_t *up) {
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
 * broker_estimate, or after a timestamp refusal: sends the first stream's
 * checkpoint (its value as of the open transaction, so unchanged) and
 * waits for the report, which on a LogAppendTime checkpoint topic carries
 * the broker's clock (dr_cb). The stream counts as touched, so the
 * transaction still ends with its checkpoint. Best effort: without a
 * broker time the records keep the node's clock.
 */
static void probe_clock(sl_sync_t *up) {
  up->need_probe = false;
  if (!up->nstreams || !up->ckpt_rkt ||
      sync__produce_ckpt(up, &up->streams[0]) < 0)
    return;
  up->streams[0].touched = true;
  uint64_t deadline = sl_now_mono_ns() + 10000000000ull;
  while (rd_kafka_outq_len(up->rk) > 0 && !up->dr_failed &&
         sl_now_mono_ns() < deadline && !stopping(up))
    rd_kafka_poll(up->rk, 5);
}

/*
 * One chunk. Returns 1 when something was committed, 0 when idle,
 * SL_EFENCED, or SL_EKAFKA with *fatal when the producer must be rebuilt.
 */
static int run_chunk(sl_sync_t *up, bool *fatal) {
  bool eos = !up->o.at_least_once, abortable, retriable;
  rd_kafka_error_t *error;
  long n;
  int rc = 0;
  double commit_ms = 0;
  *fatal = false;

  if ((rc = collect(up, false, fatal)) < 0)
    goto fail;
  bool collected = rc == 1;
  rc = 0;
  plan_lanes(up);
  if (!has_work(up))
    return collected ? 1 : 0;
  if (eos) {
    error = rd_kafka_begin_transaction(up->rk);
    if ((rc = sync__txn_call(up, error, "begin_transaction", fatal, &abortable,
                             &retriable)) < 0)
      return rc;
    up->in_txn = true;
  }
  up->dr_ok = up->dr_failed = 0;
  up->dr_first_err = 0;
  if (eos && up->need_probe)
    probe_clock(up);
  uint64_t t0 = sl_now_mono_ns(), left = up->o.chunk_events;
  uint64_t until = t0 + (uint64_t)up->o.commit_interval_ms * 1000000u;
  for (;;) {
    if (up->committing && (rc = collect(up, false, fatal)) < 0)
      goto fail;
    rc = 0;
    if ((n = pump_round(up, left)) < 0) {
      rc = (int)n;
      goto fail;
    }
    left -= SL_MIN(left, (uint64_t)n);
    rd_kafka_poll(up->rk, 0);
    uint64_t now = sl_now_mono_ns();
    if (!left || now >= until || stopping(up))
      break;
    if (n == 0 && up->backlog_held) {
      /* The backlog waits for room in the queue: serve reports. */
      rd_kafka_poll(up->rk, 1);
      note_waiting(up, t0);
      continue;
    }
    if (n == 0) {
      if (!up->throttle_ns) {
        /* Caught up everywhere. Exactly-once keeps the transaction open
         * until the commit interval and sends what arrives meanwhile at
         * once: a commit stalls the producer (flush, EndTxn, then the
         * next transaction's AddPartitionsToTxn, which the coordinator
         * answers CONCURRENT_TRANSACTIONS until its markers are written:
         * librdkafka retries after 20 ms), so committing on every wake-up
         * put that stall in front of most live records. */
        if (!eos || !any_touched(up))
          break;
        uint64_t w = SL_MIN(until - now, (uint64_t)IDLE_POLL_MS * 1000000u);
        wait_ms(up, w / 1000000u + 1);
        rd_kafka_poll(up->rk, 0);
        continue;
      }
      uint64_t w = SL_MIN(up->throttle_ns, until - now);
      pthread_mutex_lock(&up->lock);
      /* Waits are mostly under a millisecond: count nanoseconds. */
      up->throttled_ns += w;
      up->stats.throttled_ms = up->throttled_ns / 1000000u;
      pthread_mutex_unlock(&up->lock);
      rd_kafka_poll(up->rk, (int)(w / 1000000u) + 1);
    }
  }
  up->ngap_skip = 0;
  if ((rc = finish_blocks(up)) < 0 || (rc = sync__produce_gaps(up)) < 0)
    goto fail;
  /* Lanes move past the ranges just forwarded as gaps; a newest-first
   * block that this left started is finished too. */
  skip_gaps(up);
  if ((rc = finish_blocks(up)) < 0)
    goto fail;
  if (eos) {
    for (size_t i = 0; i < up->nstreams; i++)
      if (up->streams[i].touched &&
          (rc = sync__produce_ckpt(up, &up->streams[i])) < 0)
        goto fail;
    uint64_t c0 = sl_now_mono_ns();
    /* Serve delivery reports first: a record rejected for good fails the
     * transaction, and commit_transaction() would otherwise wait for its
     * whole timeout flushing the rest. */
    uint64_t flush_until = c0 + (uint64_t)up->o.txn_timeout_ms * 1000000u;
    while (rd_kafka_outq_len(up->rk) > 0 && !up->dr_failed &&
           sl_now_mono_ns() < flush_until && !sync__auth_failed(up)) {
      if (stopping(up)) /* a grace for the records in flight, no more */
        flush_until = SL_MIN(flush_until, sl_now_mono_ns() +
                                              SYNC_STOP_GRACE_MS * 1000000ull);
      rd_kafka_poll(up->rk, 5);
      note_waiting(up, c0);
    }
    if (stopping(up) && rd_kafka_outq_len(up->rk) > 0) {
      /* Stopping and Kafka does not answer: give the transaction up.
       * abort_transaction() would wait for the same broker; the next
       * start's init_transactions() aborts it (or the broker times it
       * out), and its records are sent again from the checkpoints. */
      *fatal = true;
      rc = SL_ECLOSED;
      goto fail;
    }
    if (sync__auth_failed(up)) {
      *fatal = true; /* drop the producers, retry in a minute */
      rc = SL_EKAFKA;
      goto fail;
    }
    if (up->dr_failed) {
      name_refusal(up);
      rc = SL_EKAFKA;
      goto fail;
    }
    if (up->nprod > 1) {
      /* Every record is appended: the commit runs on the committer thread
       * once the previous one is confirmed, and the other producer takes
       * the next records meanwhile. */
      if ((rc = collect(up, true, fatal)) < 0)
        goto fail;
      seal(up);
      hand_off(up);
      return 1;
    }
    error = commit_sliced(up, up->rk);
    rc = sync__txn_call(up, error, "commit_transaction", fatal, &abortable,
                        &retriable);
    if (rc < 0)
      goto fail;
    up->in_txn = false;
    commit_ms = (double)(sl_now_mono_ns() - c0) / 1e6;
  } else {
    uint64_t c0 = sl_now_mono_ns();
    uint64_t flush_until = c0 + (uint64_t)up->o.txn_timeout_ms * 1000000u;
    while (rd_kafka_outq_len(up->rk) > 0 && !up->dr_failed &&
           sl_now_mono_ns() < flush_until) {
      if (stopping(up)) /* a grace for the records in flight, no more */
        flush_until = SL_MIN(flush_until, sl_now_mono_ns() +
                                              SYNC_STOP_GRACE_MS * 1000000ull);
      rd_kafka_flush(up->rk, 100);
      note_waiting(up, c0);
    }
    if (up->dr_failed || rd_kafka_outq_len(up->rk) > 0) {
      if (stopping(up) && !up->dr_failed) {
        rc = SL_ECLOSED; /* resent from the local cursor at the next start */
        goto fail;
      }
      name_refusal(up);
      rc = SL_EKAFKA;
      goto fail;
    }
    commit_ms = (double)(sl_now_mono_ns() - c0) / 1e6;
  }
  /* Committed: the transaction's positions become the checkpoints. */
  seal(up);
  finalize(up, commit_ms);
  return 1;

fail:
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
    pthread_mutex_lock(&up->lock);
    up->stats.txn_aborts++;
    pthread_mutex_unlock(&up->lock);
  }
  if (eos && up->in_txn && rc != SL_EFENCED && !*fatal) {
    /* abort_transaction() purges what is queued and then waits until
     * every outstanding message's delivery report was served, and only
     * rd_kafka_poll() on this very thread serves them: called straight
     * away (a record the broker rejected for good, with the records
     * behind it in flight) it waited out its whole timeout, which is
     * what made the poison test flaky. So purge and serve the reports
     * first, then abort, bounded; an abort that still times out makes
     * the producer new below (init_transactions aborts the open
     * transaction on the coordinator at once). */
    uint64_t deadline = sl_now_mono_ns() + ABORT_TIMEOUT_MS * 1000000ull;
    rd_kafka_purge(up->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    while (rd_kafka_outq_len(up->rk) > 0 && sl_now_mono_ns() < deadline)
      rd_kafka_poll(up->rk, 10);
    error = rd_kafka_abort_transaction(
        up->rk, (int)SL_MIN(up->o.txn_timeout_ms, ABORT_TIMEOUT_MS));
    int arc = sync__txn_call(up, error, "abort_transaction", fatal, &abortable,
                             &retriable);
    if (arc == SL_EFENCED)
      rc = arc;
    else if (arc < 0)
      *fatal = true; /* cannot get back to a clean state: new producer */
    pthread_mutex_lock(&up->lock);
    up->stats.txn_aborts++;
    pthread_mutex_unlock(&up->lock);
  }
  /* The reports are served now: a timestamp refusal is the cause, whatever
   * the produce call said after it ("Producing not allowed in
   * transactional state AbortableError"). */
  if (up->dr_failed && up->dr_first_err == RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP)
    name_refusal(up);
  if (!eos && rc == SL_EKAFKA) {
    /* Purge what is left so the resend starts clean. */
    rd_kafka_purge(up->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(up->rk, 0);
    if (up->dr_failed &&
        up->dr_first_err == RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP)
      name_refusal(up);
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
    int crc = collect(up, true, &f2);
    if (crc == SL_EFENCED)
      rc = crc;
    else if (crc < 0)
      *fatal = true;
  }
  rewind_all(up);
  if (rc == SL_ECLOSED)
    return 0;
  return rc < 0 ? rc : SL_EKAFKA;
}

/* librdkafka's queue depth for the stats (the rest is sampled by
 * sl_sync_stats(), sync/uplink_clock.c). */
static void update_rates(sl_sync_t *up) {
  uint32_t q = up->rk ? (uint32_t)rd_kafka_outq_len(up->rk) : 0;
  pthread_mutex_lock(&up->lock);
  up->stats.queue_depth = q;
  pthread_mutex_unlock(&up->lock);
}

static void *uplink_main(void *arg) {
  sl_sync_t *up = arg;
  char err[512];
  int rc;
  bool fatal;

  if (up->nprod > 1) {
    if (pthread_create(&up->cm_thread, NULL, committer_main, up) == 0)
      up->cm_started = true;
    else
      up->nprod = 1; /* serial commits */
  }
  while (!stopping(up)) {
    if (!up->rk) {
      set_state(up, SL_SYNC_CONNECTING);
      if ((rc = sync__producer_open(up, err, sizeof(err))) < 0) {
        sync__set_error(up, rc, "%s", err);
        if (rc == SL_EFENCED || rc == SL_ECONFIG) {
          set_state(up, rc == SL_EFENCED ? SL_SYNC_FENCED : SL_SYNC_FAILED);
          break;
        }
        backoff(up);
        continue;
      }
      set_state(up, SL_SYNC_RESUMING);
      if ((rc = sync__resume(up, err, sizeof(err))) < 0) {
        sync__set_error(up, rc, "%s", err);
        sync__producer_close(up);
        backoff(up);
        continue;
      }
      if (up->gap_cp)
        sl_store_gap_ack(up->st, up->gap_cp); /* sent before a crash */
      rewind_all(up);
      pthread_mutex_lock(&up->lock);
      for (size_t i = 0; i < up->nstreams; i++) {
        sync_stream_t *s = &up->streams[i];
        s->st.next_offset = s->cp.backlog_next;
        s->st.live_start = s->cp.live_start;
        s->st.live_next = s->cp.live_next;
      }
      pthread_mutex_unlock(&up->lock);
      /* broker_estimate: learn the broker's clock before the first
       * record (the first transaction sends a checkpoint record first). */
      up->need_probe = up->o.record_timestamp != SL_SYNC_TS_NODE;
      set_state(up, SL_SYNC_RUNNING);
    }
    rc = run_chunk(up, &fatal);
    update_rates(up);
    if (rc == 1) {
      set_state(up, SL_SYNC_RUNNING);
      continue;
    }
    if (rc == 0) {
      rd_kafka_poll(up->rk, 0);
      probe_idle(up);
      if (up->nprod > 1 && !up->committing)
        rd_kafka_poll(up->prod[(up->cur + 1) % up->nprod].rk, 0);
      wait_ms(up, 2);
      continue;
    }
    if (rc == SL_EFENCED) {
      set_state(up, SL_SYNC_FENCED);
      break;
    }
    if (fatal || sync__auth_failed(up)) {
      pthread_mutex_lock(&up->lock);
      up->stats.producer_restarts++;
      pthread_mutex_unlock(&up->lock);
      sync__producer_close(up);
    }
    backoff(up);
  }
  if (up->committing) {
    bool f;
    collect(up, true, &f);
  }
  if (up->rk && up->in_txn) {
    rd_kafka_error_t *e =
        rd_kafka_abort_transaction(up->rk, SYNC_STOP_GRACE_MS);
    if (e)
      rd_kafka_error_destroy(e);
  }
  if (up->cm_started) {
    pthread_mutex_lock(&up->cm_lock);
    up->cm_quit = true;
    pthread_cond_broadcast(&up->cm_cond);
    pthread_mutex_unlock(&up->cm_lock);
    pthread_join(up->cm_thread, NULL);
    up->cm_started = false;
  }
  sync__producer_close(up);
  for (size_t i = 0; i < up->nstreams; i++) {
    sync__lane_close(&up->streams[i].live);
    sync__lane_close(&up->streams[i].backlog);
  }
  pthread_mutex_lock(&up->lock);
  if (up->stats.state != SL_SYNC_FENCED && up->stats.state != SL_SYNC_FAILED)
    up->stats.state = SL_SYNC_STOPPED;
  up->stats.connected = 0;
  pthread_mutex_unlock(&up->lock);
  return NULL;
}

/* ---- public ----------------------------------------------------------- */

static char *dup_or(const char *s, const char *def) {
  char *p = strdup(s && *s ? s : def);
  if (!p)
    abort(); /* tiny control allocation */
  return p;
}

int sl_sync_new(sl_store_t *st, const sl_sync_opts_t *opts, sl_sync_t **out,
                char *errstr, size_t errlen) {
  sl_sync_t *up;
  sl_store_info_t info;
  int rc;
  char tmp[64];

  *out = NULL;
  if (!opts->node_id || !*opts->node_id || !opts->brokers || !*opts->brokers) {
    snprintf(errstr, errlen, "sync: node id and brokers are required");
    return SL_ECONFIG;
  }
  if (opts->nstreams > SL_SYNC_STREAMS_MAX) {
    snprintf(errstr, errlen, "sync: %zu streams, at most %d", opts->nstreams,
             SL_SYNC_STREAMS_MAX);
    return SL_ETOOBIG;
  }
  if (!(up = calloc(1, sizeof(*up))))
    return -ENOMEM;
  pthread_mutex_init(&up->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&up->cond, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&up->cm_lock, NULL);
  pthread_cond_init(&up->cm_cond, NULL);
  up->st = st;
  up->o = *opts;
  up->node_id = dup_or(opts->node_id, "");
  up->brokers = dup_or(opts->brokers, "");
  up->ckpt_topic = dup_or(opts->checkpoint_topic, "sluice.checkpoints");
  up->consumer = dup_or(opts->consumer, "uplink");
  up->gap_topic = dup_or(opts->gap_topic, "");
  if (opts->dead_letter_stream && *opts->dead_letter_stream) {
    if ((rc = sl_store_stream_lookup(st, opts->dead_letter_stream,
                                     &up->dlq_stream)) < 0) {
      snprintf(errstr, errlen, "sync: dead-letter stream '%s': %s",
               opts->dead_letter_stream, sl_strerror(rc));
      goto fail;
    }
    up->has_dlq = true;
  }
  snprintf(tmp, sizeof(tmp), "%.60s",
           opts->txn_id_prefix ? opts->txn_id_prefix : "sluice-");
  size_t tl = strlen(tmp) + strlen(up->node_id) + 1;
  if (!(up->txn_id = malloc(tl)))
    abort();
  snprintf(up->txn_id, tl, "%s%s", tmp, up->node_id);
  up->nprod = !up->o.at_least_once && !up->o.serial_commits ? 2 : 1;
  for (int k = 0; k < up->nprod; k++) {
    if (!(up->prod[k].txn_id = malloc(tl + 8)))
      abort();
    if (k)
      snprintf(up->prod[k].txn_id, tl + 8, "%s.%d", up->txn_id, k);
    else
      snprintf(up->prod[k].txn_id, tl + 8, "%s", up->txn_id);
  }
  if (!up->o.chunk_events)
    up->o.chunk_events = 50000;
  if (!up->o.commit_interval_ms)
    up->o.commit_interval_ms = 100;
  if (!up->o.queue_max_messages)
    up->o.queue_max_messages = 20000;
  if (!up->o.queue_max_kbytes)
    up->o.queue_max_kbytes = 8192;
  if (!up->o.max_record_bytes)
    up->o.max_record_bytes = 1000000;
  if (!up->o.txn_timeout_ms)
    up->o.txn_timeout_ms = 60000;
  if (!up->o.auth_backoff_ms)
    up->o.auth_backoff_ms = 60000;
  if (opts->nprops && !(up->props = calloc(opts->nprops, sizeof(char *))))
    abort();
  for (size_t i = 0; i < opts->nprops; i++)
    up->props[i] = dup_or(opts->props[i], "");
  up->o.props = NULL;
  up->o.streams = NULL;

  if ((rc = sl_store_env_info(st, &info)) < 0) {
    snprintf(errstr, errlen, "sync: store: %s", sl_strerror(rc));
    goto fail;
  }
  snprintf(up->store_id, sizeof(up->store_id), "%s", info.node_id);
  if (!(up->streams = calloc(opts->nstreams ? opts->nstreams : 1,
                             sizeof(*up->streams))) ||
      !(up->order =
            calloc(opts->nstreams ? opts->nstreams : 1, sizeof(size_t))))
    abort();
  for (size_t i = 0; i < opts->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    const sl_sync_stream_conf_t *c = &opts->streams[i];
    s->name = dup_or(c->name, "");
    s->topic = dup_or(c->topic, "");
    s->priority = c->priority;
    s->json = c->json;
    up->nstreams++;
    if ((rc = sl_store_stream_lookup(st, s->name, &s->id)) < 0) {
      snprintf(errstr, errlen, "sync: stream '%s': %s", s->name,
               sl_strerror(rc));
      goto fail;
    }
    snprintf(s->ckpt_key, sizeof(s->ckpt_key), "%s/%s", up->node_id, s->name);
    snprintf(s->st.name, sizeof(s->st.name), "%s", s->name);
    up->order[i] = i;
  }
  /* Priority order, stable: higher first. */
  for (size_t i = 1; i < up->nstreams; i++)
    for (size_t j = i; j > 0 && up->streams[up->order[j]].priority >
                                    up->streams[up->order[j - 1]].priority;
         j--) {
      size_t t = up->order[j];
      up->order[j] = up->order[j - 1];
      up->order[j - 1] = t;
    }
  up->stats.nstreams = up->nstreams;
  sync__local_positions(up); /* the backlog before the first connection */
  up->rate_t_ns = sl_now_mono_ns();
  if (opts->bandwidth_bytes_per_s) {
    double rate = (double)opts->bandwidth_bytes_per_s;
    double share = opts->backlog_share > 0 && opts->backlog_share <= 1
                       ? opts->backlog_share
                       : 0.5;
    uint64_t now = sl_now_mono_ns();
    sl_sync_bucket_init(&up->bucket, rate, SL_MAX(rate / 20, 16384), now);
    sl_sync_bucket_init(&up->backlog_bucket, rate * share,
                        SL_MAX(rate * share / 20, 16384), now);
  }
  /* Validate the librdkafka properties now, not on the uplink thread. */
  {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[256];
    for (size_t i = 0; i < up->o.nprops; i++) {
      char *eq = strchr(up->props[i], '=');
      if (!eq) {
        snprintf(errstr, errlen, "kafka property '%s' is not key=value",
                 up->props[i]);
        rc = SL_ECONFIG;
        rd_kafka_conf_destroy(conf);
        goto fail;
      }
      *eq = '\0';
      rd_kafka_conf_res_t r =
          rd_kafka_conf_set(conf, up->props[i], eq + 1, e, sizeof(e));
      *eq = '=';
      if (r != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errlen, "kafka property %s", e);
        rc = SL_ECONFIG;
        rd_kafka_conf_destroy(conf);
        goto fail;
      }
    }
    rd_kafka_conf_destroy(conf);
  }
  *out = up;
  return 0;
fail:
  sl_sync_free(up);
  return rc;
}

int sl_sync_start(sl_sync_t *up) {
  int rc;
  if (up->started)
    return SL_ECLOSED;
  up->rate_t_ns = sl_now_mono_ns();
  if ((rc = pthread_create(&up->thread, NULL, uplink_main, up)) != 0)
    return -rc;
  up->started = true;
  return 0;
}

void sl_sync_kick(sl_sync_t *up) {
  pthread_mutex_lock(&up->lock);
  up->kick = true;
  pthread_cond_signal(&up->cond);
  pthread_mutex_unlock(&up->lock);
}

void sl_sync_stop(sl_sync_t *up, int timeout_ms) {
  (void)timeout_ms; /* every blocking call on the thread is bounded */
  if (!up->started || up->joined)
    return;
  pthread_mutex_lock(&up->lock);
  up->stop = true;
  pthread_cond_signal(&up->cond);
  pthread_mutex_unlock(&up->lock);
  pthread_join(up->thread, NULL);
  up->joined = true;
}

void sl_sync_free(sl_sync_t *up) {
  if (!up)
    return;
  sl_sync_stop(up, 0);
  for (size_t i = 0; i < up->nstreams; i++) {
    free(up->streams[i].name);
    free(up->streams[i].topic);
  }
  for (size_t i = 0; i < up->o.nprops; i++)
    free(up->props ? up->props[i] : NULL);
  free(up->props);
  free(up->streams);
  free(up->order);
  free(up->scratch);
  free(up->jbuf);
  free(up->node_id);
  free(up->brokers);
  free(up->ckpt_topic);
  free(up->txn_id);
  for (int k = 0; k < SYNC_PRODUCERS; k++) {
    free(up->prod[k].txn_id);
    free(up->prod[k].rkt);
  }
  pthread_cond_destroy(&up->cm_cond);
  pthread_mutex_destroy(&up->cm_lock);
  free(up->consumer);
  free(up->gap_topic);
  pthread_cond_destroy(&up->cond);
  pthread_mutex_destroy(&up->lock);
  free(up);
}

void sl_sync_stats(sl_sync_t *up, sl_sync_stats_t *stats) {
  pthread_mutex_lock(&up->lock);
  sync__sample(up);
  *stats = up->stats;
  for (size_t i = 0; i < up->nstreams; i++)
    stats->streams[i] = up->streams[i].st;
  pthread_mutex_unlock(&up->lock);
  /* State and connection agree: "running" means a broker answers. */
  if (stats->state == SL_SYNC_RUNNING && !stats->connected)
    stats->state = SL_SYNC_DISCONNECTED;
}
