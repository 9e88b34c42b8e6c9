/*
 * sync/uplink_produce.c: the produce phase of a chunk. Plans the lanes
 * (a stream far behind gets a backlog lane beside its live lane), pumps
 * them (live first, by stream priority; the backlog in slices, held back
 * while live data flows), and closes the chunk's records: the rest of a
 * newest-first block, gap records, lanes moved past forwarded gaps.
 * Uplink thread only (sync/uplink.c has the loop this serves).
 */
#include <assert.h>

#include "sync/sync_int.h"

#define IDLE_POLL_MS 2     /* longest wait for a kick inside a transaction */
#define BACKLOG_SLICE 2000 /* backlog events per lane per round, at most */
#define NEWEST_BLOCK 1000  /* newest-first backlog: events per block */
/* While a live lane sent within LIVE_RECENT_MS, backlog lanes add records
 * only while librdkafka holds fewer than BACKLOG_QUEUE_LIVE messages. */
#define BACKLOG_QUEUE_LIVE 4000
#define LIVE_RECENT_MS 1000

/*
 * Newest-first backlog (kafka.backlog_order: newest_first). The checkpoint
 * keeps its three offsets: delivered = [0, backlog_next) + [live_start,
 * live_next). The backlog lane reads a block of the newest NEWEST_BLOCK
 * undelivered events below live_start, oldest first, and when the block is
 * done live_start moves down over it. A block half sent is in no offset, so
 * a transaction ends only between blocks (finish_blocks()).
 */
void sync__backlog_block(sync_stream_t *s) {
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
      sync__backlog_block(s);
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
        if (sync__stopping(up))
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

/* Opens a second lane for streams further behind than the threshold: the
 * live lane jumps to the end of the stored data, the backlog lane keeps
 * the old position and ends where the live lane starts. */
void sync__plan_lanes(sl_sync_t *up) {
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
      sync__backlog_block(s);
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

bool sync__has_work(sl_sync_t *up) {
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

/*
 * broker_estimate, or after a timestamp refusal: sends the first stream's
 * checkpoint (its value as of the open transaction, so unchanged) and
 * waits for the report, which on a LogAppendTime checkpoint topic carries
 * the broker's clock (dr_cb). The stream counts as touched, so the
 * transaction still ends with its checkpoint. Best effort: without a
 * broker time the records keep the node's clock.
 */
void sync__probe_clock(sl_sync_t *up) {
  up->need_probe = false;
  if (!up->nstreams || !up->ckpt_rkt ||
      sync__produce_ckpt(up, &up->streams[0]) < 0)
    return;
  up->streams[0].touched = true;
  uint64_t deadline = sl_now_mono_ns() + 10000000000ull;
  while (rd_kafka_outq_len(up->rk) > 0 && !up->dr_failed &&
         sl_now_mono_ns() < deadline && !sync__stopping(up))
    rd_kafka_poll(up->rk, 5);
}

/*
 * Pumps the lanes into the open transaction until the chunk is full
 * (o.chunk_events), the commit interval is up, a stop is asked, or (at
 * least once, or nothing sent yet) every lane is caught up. A handed-off
 * commit is collected on the way. Returns 0 or an error (*fatal as
 * sync__collect() sets it).
 */
int sync__chunk_produce(sl_sync_t *up, bool eos, bool *fatal) {
  uint64_t t0 = sl_now_mono_ns(), left = up->o.chunk_events;
  uint64_t until = t0 + (uint64_t)up->o.commit_interval_ms * 1000000u;
  long n;
  int rc;
  for (;;) {
    if (up->committing && (rc = sync__collect(up, false, fatal)) < 0)
      return rc;
    if ((n = pump_round(up, left)) < 0)
      return (int)n;
    left -= SL_MIN(left, (uint64_t)n);
    rd_kafka_poll(up->rk, 0);
    uint64_t now = sl_now_mono_ns();
    if (!left || now >= until || sync__stopping(up))
      break;
    if (n == 0 && up->backlog_held) {
      /* The backlog waits for room in the queue: serve reports. */
      rd_kafka_poll(up->rk, 1);
      sync__note_waiting(up, t0);
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
        sync__wait_ms(up, w / 1000000u + 1);
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
  return 0;
}

/*
 * Ends the chunk's records: the rest of a newest-first block, then the gap
 * records; lanes move past the ranges just forwarded as gaps, and a
 * newest-first block that this left started is finished too. Returns 0 or
 * an error.
 */
int sync__chunk_finish(sl_sync_t *up) {
  int rc;
  up->ngap_skip = 0;
  if ((rc = finish_blocks(up)) < 0 || (rc = sync__produce_gaps(up)) < 0)
    return rc;
  skip_gaps(up);
  return finish_blocks(up);
}
