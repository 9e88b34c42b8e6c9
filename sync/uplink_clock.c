/*
 * sync/uplink_clock.c: the clocks of the uplink, and the numbers that depend on
 * them: record timestamps (o.record_timestamp), the backlog, drain rate,
 * catch-up ETA and the age of the oldest undelivered event.
 *
 * The node's wall clock steps (a dead RTC, NTP, a technician). Ages are
 * measured so that a step does not move them: when the uplink first sees
 * an offset as a stream's oldest undelivered, its age is taken from the
 * wall clock (event time to now), then it grows with the monotonic clock.
 * An event time ahead of the node's clock (the clock stepped back after
 * the event was stamped) would give a negative age: the age then follows
 * the previous oldest (same source of time), or is clamped at 0, and
 * age_clamped says so.
 *
 * The backlog and the ETA are sampled on the caller's thread of
 * sl_sync_stats() from the positions the uplink committed (or, before the
 * first connection, the local checkpoint) and the store's own counts: they
 * are right whatever the uplink thread is doing (waiting for a broker that
 * never answers, backing off). The ETA is -1 (not catching up) when the
 * uplink is not running, nothing was delivered for STALL_NS, or the drain
 * rate is not above the ingest rate.
 */
#include <stdio.h>
#include <string.h>

#include "sync/sync_int.h"

#define STALL_NS                                                               \
  3000000000ull /* no delivery this long: stalled (at least                    \
                   three commit intervals) */
#define SEC_NS 1000000000ull

int64_t sync__now_wall(const sl_sync_t *up) {
  return up->o.wall_clock_ns ? up->o.wall_clock_ns(up->o.clock_opaque)
                             : sl_now_wall_ns();
}

int64_t sync__record_ts_ms(const sl_sync_t *up, int64_t event_ns) {
  if (up->o.record_timestamp == SL_SYNC_TS_EVENT && event_ns > 0)
    return event_ns / 1000000;
  if (up->o.record_timestamp != SL_SYNC_TS_NODE && up->bt_known)
    return (up->bt_ns + (int64_t)(sl_now_mono_ns() - up->bt_mono_ns)) / 1000000;
  return sync__now_wall(up) / 1000000;
}

/* Event time of the first stored event at or after off; -1: none. From
 * the batch headers: decompressing a cursor's read-ahead (up to 4 MiB) for
 * one timestamp cost more than the drain itself at every status sample. */
static int oldest_time(sl_sync_t *up, const sync_stream_t *s, uint64_t off,
                       int64_t *t) {
  return sl_store_first_time(up->st, s->id, off, t) == 0 ? 0 : -1;
}

/* The oldest undelivered event's age (see the top of the file). */
static void sample_age(sl_sync_t *up, sync_stream_t *s, uint64_t now,
                       int64_t wall) {
  sl_sync_stream_stats_t *st = &s->st;
  uint64_t off = st->next_offset;
  int64_t t;
  if ((!s->obs_valid || s->obs_off != off) &&
      oldest_time(up, s, off, &t) == 0) {
    int64_t age = wall - t;
    bool clamped = age < 0;
    if (clamped && s->obs_valid) /* from the previous oldest */
      age = s->obs_age_ns + (int64_t)(now - s->obs_mono_ns) -
            (t - s->obs_time_ns);
    s->obs_clamped = clamped;
    s->obs_age_ns = age < 0 ? 0 : age;
    s->obs_valid = true;
    s->obs_off = off;
    s->obs_mono_ns = now;
    s->obs_time_ns = t;
  }
  if (!s->obs_valid)
    return;
  st->oldest_undelivered_ns = s->obs_time_ns;
  st->oldest_age_s =
      (double)(s->obs_age_ns + (int64_t)(now - s->obs_mono_ns)) / 1e9;
  st->age_clamped = s->obs_clamped;
}

void sync__sample(sl_sync_t *up) {
  uint64_t now = sl_now_mono_ns();
  bool due = now - up->rate_t_ns >= SEC_NS;
  double dt = (double)(now - up->rate_t_ns) / 1e9;
  int64_t wall = sync__now_wall(up);
  bool running = up->stats.state == SL_SYNC_RUNNING;
  uint64_t stall_ns =
      SL_MAX(STALL_NS, 3ull * up->o.commit_interval_ms * 1000000ull);
  if (due)
    up->rate_t_ns = now;
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    sl_sync_stream_stats_t *st = &s->st;
    sl_store_stream_stats_t ss;
    if (sl_store_stream_stats(up->st, s->id, &ss) < 0)
      continue;
    /* Delivered: [0, next_offset) + [live_start, live_next). */
    uint64_t live = st->live_next - SL_MIN(st->live_next, st->live_start);
    uint64_t behind = ss.next_offset - SL_MIN(ss.next_offset, st->next_offset);
    behind -= SL_MIN(behind, live);
    st->backlog_events = behind;
    st->backlog_bytes =
        ss.events
            ? (uint64_t)((double)ss.bytes * (double)behind / (double)ss.events)
            : 0;
    if (due) {
      double drain = (double)(st->delivered - s->rate_delivered) / dt;
      double ingest = s->rate_next
                          ? (double)(ss.next_offset -
                                     SL_MIN(ss.next_offset, s->rate_next)) /
                                dt
                          : 0;
      /* Progress is a delivery: a backlog that appears after an idle
       * spell has no ETA until records move again. */
      if (st->delivered != s->rate_delivered)
        s->progress_ns = now;
      s->rate_delivered = st->delivered;
      s->rate_next = ss.next_offset;
      st->drain_rate = 0.5 * st->drain_rate + 0.5 * drain;
      s->ingest_rate = 0.5 * s->ingest_rate + 0.5 * ingest;
    }
    bool stalled = !s->progress_ns || now - s->progress_ns >= stall_ns;
    if (stalled)
      st->drain_rate = 0; /* not a decaying rate that never reaches 0 */
    if (!behind)
      st->eta_s = 0;
    else if (!running || stalled || st->drain_rate <= s->ingest_rate)
      st->eta_s = -1;
    else
      st->eta_s = (double)behind / (st->drain_rate - s->ingest_rate);
    if (!behind) {
      st->oldest_undelivered_ns = 0;
      st->oldest_age_s = 0;
      st->age_clamped = 0;
      s->obs_valid = false;
    } else {
      sample_age(up, s, now, wall);
    }
  }
}
