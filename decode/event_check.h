/*
 * decode/event_check: the one set of rules every ingest path (native,
 * HTTP, MQTT JSON, MQTT event, Sparkplug B) applies to an event a client
 * sent, after its own decoding and before pipelines and the store see it.
 * Private to the daemon layer.
 *
 * An event is refused (SL_EPROTO, with a reason naming the field) when
 *   - source is empty or over SL_INGEST_MAX_SOURCE bytes;
 *   - it has no body, a gap body (the node writes those for its evictions:
 *     a forged one would tell Kafka consumers that data is lost), or a
 *     status body without a state;
 *   - a reading carries no value and its quality is not bad (a null);
 *   - ingest_time_ns is set (the node sets it when it sends the event on);
 *   - it has over SL_INGEST_MAX_ATTRS attributes, or an attribute with an
 *     empty key;
 *   - its time is more than limits.max_future ahead of the node clock and
 *     limits.future_policy is reject.
 * With future_policy clamp (the default) such an event is kept: its time
 * becomes the node clock at receipt and the attribute
 * "sluice.time_clamped" holds the time it carried (nanoseconds, decimal).
 * So no event from the future reaches an aggregate's watermark
 * (docs/PROCESSING.md) and nothing is lost.
 *
 * The attribute "sluice.identity" is the node's word on who sent an event
 * (security/auth.h stamps it): a client's own is dropped, never stored, on
 * every path (a relay or a replayed dump may carry one; refusing those
 * would lose data for no gain).
 *
 * NaN and infinite readings are values, not errors: a PLC reports them for
 * a failed sensor, and aggregates count them apart (issue 25 keeps them end
 * to end); every path that can carry them accepts them.
 */
#ifndef SL_BROKER_INGEST_CHECK_H
#define SL_BROKER_INGEST_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "telemetry/metrics.h"
#include "sluice/v1/event.pb-c.h"

#define SL_INGEST_MAX_SOURCE 1024 /* bytes of Event.source */
#define SL_INGEST_MAX_ATTRS 1024  /* attributes per event */

/* What the check does with an event time beyond the bound. */
typedef enum sl_ingest_future {
  SL_INGEST_FUTURE_CLAMP = 0, /* node clock, original kept in an attribute */
  SL_INGEST_FUTURE_REJECT     /* refuse the event */
} sl_ingest_future_t;

/* The rules of one batch: the node clock is read once per batch. */
typedef struct sl_ingest_rules {
  int64_t now_ns;        /* node clock at receipt */
  int64_t max_future_ns; /* limits.max_future; 0 = no bound */
  int future_policy;     /* sl_ingest_future_t */
  sl_metric_t *clamped;  /* events whose time was clamped (may be NULL) */
  sl_metric_t *refused;  /* events refused for their time (may be NULL) */
} sl_ingest_rules_t;

/* What sl_ingest_event_fix() must do to an accepted event (bits). */
#define SL_INGEST_FIX_CLAMP 0x1u    /* time beyond limits.max_future */
#define SL_INGEST_FIX_IDENTITY 0x2u /* carries a sluice.identity to drop */

/* Room for the one attribute a clamp adds. Caller-owned (a stack value is
 * fine); holds the event's attribute array while it is changed. */
typedef struct sl_ingest_mark {
  Sluice__V1__Attribute attr;    /* sluice.time_clamped */
  Sluice__V1__Attribute **attrs; /* the event's attributes + attr, owned */
  Sluice__V1__Attribute **saved; /* the event's own array, restored */
  size_t saved_n;                /* its length */
  Sluice__V1__Event *ev;         /* the event changed, NULL = none */
  char value[24];                /* attr.value */
} sl_ingest_mark_t;

/*
 * Checks ev (borrowed, not changed) against r. Returns 0 when ev is
 * accepted as it is, a positive mask of SL_INGEST_FIX_* when it is
 * accepted once fixed (sl_ingest_event_fix()), SL_EPROTO with the reason
 * in why (refused, counted in r->refused when for its time).
 */
int sl_ingest_event_check(const sl_ingest_rules_t *r,
                          const Sluice__V1__Event *ev, char *why, size_t len);

/*
 * Applies the fixes in mask (SL_INGEST_FIX_*) to ev: CLAMP sets its time to
 * r->now_ns and adds the attribute sluice.time_clamped with the time it
 * carried (counted in r->clamped); IDENTITY drops its sluice.identity
 * attributes. ev's attribute array then points into mark: encode ev, then
 * call sl_ingest_mark_undo() before mark or ev's own memory goes away.
 * Errors: -ENOMEM (ev unchanged).
 */
int sl_ingest_event_fix(const sl_ingest_rules_t *r, Sluice__V1__Event *ev,
                        unsigned mask, sl_ingest_mark_t *mark);

/* Gives a clamped event its own attribute array back (its time stays
 * clamped) and frees what the mark held. A mark that changed nothing (or a
 * zeroed one) is a no-op. */
void sl_ingest_mark_undo(sl_ingest_mark_t *mark);

#endif /* SL_BROKER_INGEST_CHECK_H */
