/*
 * decode/event_check.c: the rules every ingest path shares (see the
 * header). Before it, the native path stored what HTTP refused (an empty
 * or 1 MiB source, events with no body, a client-set ingest time, forged
 * gap and status events), and one event stamped in 2040 poisoned an
 * aggregate's watermark for good.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode/event_check.h"
#include "schemas/event_json.h"
#include "common/common.h"

#define CLAMP_KEY "sluice.time_clamped"

static int refuse(char *why, size_t len, const char *msg) {
  snprintf(why, len, "%s", msg);
  return SL_EPROTO;
}

#define IDENTITY_KEY "sluice.identity"

/* Returns 0, SL_INGEST_FIX_IDENTITY, or SL_EPROTO. */
static int check_attrs(const Sluice__V1__Event *ev, char *why, size_t len) {
  int fix = 0;
  if (ev->n_attributes > SL_INGEST_MAX_ATTRS) {
    snprintf(why, len, "more than %d attributes", SL_INGEST_MAX_ATTRS);
    return SL_EPROTO;
  }
  for (size_t i = 0; i < ev->n_attributes; i++) {
    const Sluice__V1__Attribute *a = ev->attributes[i];
    if (!a || !a->key || !*a->key)
      return refuse(why, len, "an attribute has an empty key");
    if (!strcmp(a->key, IDENTITY_KEY))
      fix = SL_INGEST_FIX_IDENTITY;
  }
  return fix;
}

int sl_ingest_event_fix(const sl_ingest_rules_t *r, Sluice__V1__Event *ev,
                        unsigned mask, sl_ingest_mark_t *mark) {
  size_t n = ev->n_attributes, k = 0;
  Sluice__V1__Attribute **a = malloc((n + 1) * sizeof(*a));
  if (!a)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++)
    if (!(mask & SL_INGEST_FIX_IDENTITY) ||
        strcmp(ev->attributes[i]->key, IDENTITY_KEY) != 0)
      a[k++] = ev->attributes[i];
  if (mask & SL_INGEST_FIX_CLAMP) {
    sluice__v1__attribute__init(&mark->attr);
    snprintf(mark->value, sizeof(mark->value), "%lld", (long long)ev->time_ns);
    mark->attr.key = CLAMP_KEY;
    mark->attr.value = mark->value;
    a[k++] = &mark->attr;
    ev->time_ns = r->now_ns;
    if (r->clamped)
      sl_metric_add(r->clamped, 1);
  }
  mark->attrs = a;
  mark->saved = ev->attributes;
  mark->saved_n = n;
  mark->ev = ev;
  ev->attributes = a;
  ev->n_attributes = k;
  return 0;
}

int sl_ingest_event_check(const sl_ingest_rules_t *r,
                          const Sluice__V1__Event *ev, char *why, size_t len) {
  int fix;
  size_t sl;
  sl = ev->source ? strlen(ev->source) : 0;
  if (sl == 0 || sl > SL_INGEST_MAX_SOURCE) {
    snprintf(why, len, "source must be 1 to %d bytes", SL_INGEST_MAX_SOURCE);
    return SL_EPROTO;
  }
  switch (ev->body_case) {
  case SLUICE__V1__EVENT__BODY_READING:
    /* A reading without a value is a null (Sparkplug is_null): only with
     * quality bad. */
    if (!ev->reading ||
        (ev->reading->value_case == SLUICE__V1__READING__VALUE__NOT_SET &&
         ev->reading->quality != SLUICE__V1__QUALITY__QUALITY_BAD))
      return refuse(why, len, "a reading needs a value (or quality bad)");
    {
      const char *w;
      if (sl_event_reading_check(ev->reading, &w) < 0)
        return refuse(why, len, w);
    }
    break;
  case SLUICE__V1__EVENT__BODY_INFERENCE:
    if (!ev->inference)
      return refuse(why, len, "an event needs a body");
    break;
  case SLUICE__V1__EVENT__BODY_RAW:
    if (!ev->raw)
      return refuse(why, len, "an event needs a body");
    break;
  case SLUICE__V1__EVENT__BODY_STATUS:
    /* Connectors report their devices' state (sluice-modbus: device down);
     * the identity on the event (docs/SECURITY.md) says who claimed it. */
    if (!ev->status || !ev->status->state || !*ev->status->state)
      return refuse(why, len, "a status event needs a state");
    break;
  case SLUICE__V1__EVENT__BODY_GAP:
    return refuse(why, len,
                  "gap events are written by the node (evictions) only");
  default:
    return refuse(why, len,
                  "an event needs a body (reading, inference or raw)");
  }
  if (ev->ingest_time_ns != 0)
    return refuse(why, len, "ingest_time_ns is set by the node, not a client");
  if ((fix = check_attrs(ev, why, len)) < 0)
    return fix;
  if (r->max_future_ns > 0 && ev->time_ns > r->now_ns &&
      ev->time_ns - r->now_ns > r->max_future_ns) {
    if (r->future_policy == SL_INGEST_FUTURE_REJECT) {
      if (r->refused)
        sl_metric_add(r->refused, 1);
      snprintf(why, len,
               "time %lld ns is %.0f s ahead of the node clock (limit: "
               "limits.max_future %.0f s)",
               (long long)ev->time_ns, (double)(ev->time_ns - r->now_ns) / 1e9,
               (double)r->max_future_ns / 1e9);
      return SL_EPROTO;
    }
    fix |= SL_INGEST_FIX_CLAMP;
  }
  return fix;
}

void sl_ingest_mark_undo(sl_ingest_mark_t *mark) {
  if (!mark->ev)
    return;
  mark->ev->attributes = mark->saved;
  mark->ev->n_attributes = mark->saved_n;
  free(mark->attrs);
  mark->attrs = NULL;
  mark->ev = NULL;
}
