/*
 * process/deadband.c: report by exception. Per source, a reading is sent
 * when it moved more than the deadband from the last value SENT (not the
 * last seen: slow drifts still get through), when its quality differs from
 * the last sent quality, when it is the first of its source, or when the
 * heartbeat (max silence, in event time) has elapsed since the last sent
 * value. Everything else is dropped with reason "deadband".
 *
 * Only readings are subject to the deadband; other kinds pass untouched.
 * Numbers (double, int, bool as 0/1) compare numerically; string values
 * pass when they differ from the last sent string (compared by hash).
 * NaN: a change to or from NaN passes, NaN followed by NaN does not.
 * Integers (int_value, uint_value) after one of the same kind compare
 * exactly (a double holds 53 bits: a counter near 2^64 moving by 1 would
 * not move as doubles); the percent form compares as doubles.
 */
#include <math.h>
#include <string.h>

#include "process/process_int.h"

static bool moved(const pstep_t *s, double last, double v) {
  if (isnan(last) || isnan(v))
    return isnan(last) != isnan(v);
  double d = fabs(v - last);
  if (s->c.percent)
    return d > fabs(last) * s->c.deadband / 100.0;
  return d > s->c.deadband;
}

/* 3 int_value, 4 uint_value (pdeadband_t.kind), 0 other; *bits the value. */
static int int_kind(const Sluice__V1__Reading *rd, uint64_t *bits) {
  if (rd->value_case == SLUICE__V1__READING__VALUE_INT_VALUE) {
    *bits = (uint64_t)rd->int_value;
    return 3;
  }
  if (rd->value_case == SLUICE__V1__READING__VALUE_UINT_VALUE) {
    *bits = rd->uint_value;
    return 4;
  }
  return 0;
}

static bool moved_exact(const pstep_t *s, int kind, uint64_t last, uint64_t v) {
  uint64_t d;
  if (kind == 4)
    d = v > last ? v - last : last - v;
  else
    d = (int64_t)v > (int64_t)last ? v - last : last - v; /* mod 2^64 */
  return (double)d > s->c.deadband;
}

pstep_verdict_t process__deadband(sl_process_t *pr, pstep_t *s,
                                  const Sluice__V1__Event *ev, uint64_t hash,
                                  sl_process_reason_t *reason) {
  const Sluice__V1__Reading *rd = ev->reading;
  const char *src = ev->source ? ev->source : "";
  pdeadband_t *db;
  bool full, num, send;
  double v = 0;
  uint64_t sh = 0;
  int ik;

  if (ev->body_case != SLUICE__V1__EVENT__BODY_READING || !rd)
    return STEP_PASS;
  num = process__reading_num(ev, &v);
  if (!num) {
    const char *sv = rd->value_case == SLUICE__V1__READING__VALUE_STRING_VALUE
                         ? rd->string_value
                         : NULL;
    sh = sv ? process__hash(sv, strlen(sv)) : 0;
  }
  ik = num ? int_kind(rd, &sh) : 0;
  db = process__table_get(pr, &s->tab, hash, src, strlen(src), true, &full);
  if (!db)
    return STEP_PASS; /* untracked (max_keys or poisoned): never suppress */
  if (db->kind == 0)
    send = true;
  else if ((int64_t)rd->quality != db->quality)
    send = true;
  else if (s->c.heartbeat_ns > 0 &&
           ev->time_ns - db->last_t >= s->c.heartbeat_ns)
    send = true;
  else if (num && ik && db->kind == ik && !s->c.percent)
    send = moved_exact(s, ik, db->last_s, sh);
  else if (num)
    send = (db->kind != 1 && db->kind != 3 && db->kind != 4) ||
           moved(s, db->last, v);
  else
    send = db->kind != 2 || db->last_s != sh;
  if (!send) {
    *reason = SL_PROCESS_R_DEADBAND;
    return STEP_DROP;
  }
  db->kind = ik ? ik : num ? 1 : 2;
  db->last = num ? v : 0;
  db->last_s = sh;
  db->last_t = ev->time_ns;
  db->quality = (int64_t)rd->quality;
  return STEP_PASS;
}
