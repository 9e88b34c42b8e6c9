/*
 * Per-stream dedupe window (streams[].dedupe_key, docs/DELIVERY.md "Dedupe
 * window"): an event whose key (an attribute, or source and time) was
 * stored within the window is dropped before storage and counted. Run by
 * ingest/pipes.c, where every ingest path meets before the store, under
 * its lock; state is written to the store's state db in the same group as
 * the events. Private to the daemon layer.
 */
#ifndef SL_BROKER_DEDUPE_H
#define SL_BROKER_DEDUPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/v1/event.pb-c.h"
#include "store/store.h"

typedef struct sl_ingest sl_ingest_t;
typedef struct sl_dedupe sl_dedupe_t;

/* Builds the windows of the streams that have one and loads their state.
 * *out is NULL (and 0 returned) when no stream has one. -ENOMEM. */
int sl_dedupe_new(sl_ingest_t *ic, sl_dedupe_t **out);
void sl_dedupe_free(sl_dedupe_t *dd);
/* True when stream sidx has a window. */
bool sl_dedupe_wants(const sl_dedupe_t *dd, size_t sidx);
/* Marks in keep[0..n-1] (0 = duplicate) the events of stream sidx to drop,
 * remembers the others' keys provisionally, adds the changed state to g.
 * Returns the number dropped, or -ENOMEM / store errors. */
int sl_dedupe_run(sl_dedupe_t *dd, size_t sidx,
                  const Sluice__V1__Event *const *events, size_t n,
                  uint8_t *keep, sl_store_group_t *g);
/* Makes the run final (counted) or undoes it. */
void sl_dedupe_finish(sl_dedupe_t *dd, int submitted);
/* A group failed to commit: reloads every window from the store. */
void sl_dedupe_reload(sl_dedupe_t *dd);

#endif /* SL_BROKER_DEDUPE_H */
