/*
 * common/clock_step: notices when the node's wall clock stepped (NTP, a
 * technician, a dead RTC battery), by comparing how far it advanced with
 * the monotonic clock, which never steps. Used by the daemon for its edge
 * pipelines (ingest/pipes.c) and meant for every other part that keeps
 * wall-clock times (store TTL, uplink ages). Pure: the caller reads the
 * clocks (sl_now_wall_ns(), sl_now_mono_ns()), so tests feed it any
 * sequence. Not thread-safe: one reference per caller, under its lock.
 */
#ifndef SL_COMMON_CLOCK_STEP_H
#define SL_COMMON_CLOCK_STEP_H

#include <stdbool.h>
#include <stdint.h>

/* Smallest step reported: below this, NTP slews rather than steps
 * (ntpd steps from 128 ms, chrony's makestep is typically 1 s). */
#define SL_CLOCK_STEP_MIN_NS 1000000000LL
/* Drift allowed per elapsed monotonic ns, in parts per million: the most
 * an NTP slew changes the rate (500 ppm). */
#define SL_CLOCK_STEP_SLEW_PPM 500

/* The last pair of readings. Zero-initialise; the first call only sets it. */
typedef struct sl_clock_ref {
  int64_t wall_ns;  /* CLOCK_REALTIME at the last call */
  uint64_t mono_ns; /* CLOCK_MONOTONIC at the same moment */
  bool set;         /* a pair was recorded */
} sl_clock_ref_t;

/*
 * Compares the advance of wall_ns and mono_ns since the pair in ref, then
 * stores the new pair in ref. Returns the step in ns: negative when the
 * wall clock went back, positive when it jumped forward (a suspended host
 * looks like that too: the monotonic clock stops while suspended), 0 when
 * the two agree within SL_CLOCK_STEP_MIN_NS plus SL_CLOCK_STEP_SLEW_PPM of
 * the elapsed time, and on the first call.
 */
int64_t sl_clock_step(sl_clock_ref_t *ref, int64_t wall_ns, uint64_t mono_ns);

#endif /* SL_COMMON_CLOCK_STEP_H */
