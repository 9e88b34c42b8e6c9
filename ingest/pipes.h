/*
 * Edge pipelines in the daemon: builds the process module's pipelines from
 * the config and runs them over each ingested batch before it is stored
 * (docs/PROCESSING.md, "Integration"). Private to the daemon layer.
 */
#ifndef SL_BROKER_PIPELINE_H
#define SL_BROKER_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "process/process.h"
#include "store/store.h"

typedef struct sl_ingest sl_ingest_t;
typedef struct sl_pipes sl_pipes_t;

/*
 * Builds every configured pipeline, checks that the streams they write to
 * exist, and loads their state from the store. *out: returns owned; free
 * with sl_pipes_free(). NULL is returned in *out (with 0) when the config
 * has no pipelines. Errors: SL_ECONFIG (reason in err), -ENOMEM, store
 * errors; a corrupt state record is skipped (SL_ECORRUPT is not fatal and
 * is reported through *warn).
 */
int sl_pipes_new(sl_ingest_t *ic, sl_pipes_t **out, char *err, size_t errlen,
                 char *warn, size_t warnlen);
void sl_pipes_free(sl_pipes_t *pp);

/* True when some pipeline may match events of stream idx. */
int sl_pipes_wants(const sl_pipes_t *pp, size_t sidx);

/* What sl_pipes_apply() put in the group. */
typedef struct sl_pipes_out {
  uint32_t own;     /* events stored in the input stream (first batch) */
  uint32_t stored;  /* events stored in every stream, results included */
  uint32_t batches; /* batches added to the group */
} sl_pipes_out_t;

/*
 * Runs the pipelines over events[0..n-1] of stream sidx (borrowed; batch
 * and len are the serialized EventBatch holding exactly these events, whose
 * untouched entries are stored byte for byte) and adds to g (borrowed) the
 * batches to store and the pipelines' changed state. When out->own > 0 the
 * input stream's batch is the first one added. Holds the pipelines' lock
 * until sl_pipes_finish(), which the caller must call on the same thread
 * whatever happens. Errors: -ENOMEM, SL_EPROTO (batch does not match
 * events), store errors from building batches; g is then unusable.
 */
int sl_pipes_apply(sl_pipes_t *pp, size_t sidx,
                   const Sluice__V1__Event *const *events, size_t n,
                   const uint8_t *batch, size_t len, sl_store_group_t *g,
                   sl_pipes_out_t *out);

/* Makes the run final (its group was submitted) or undoes it, and
 * releases the lock. */
void sl_pipes_finish(sl_pipes_t *pp, int submitted);

/*
 * A submitted group that carried pipeline state failed to commit (any
 * thread): the in-memory state is ahead of the disk, so it is reloaded
 * from the store before the next run. Thread-safe.
 */
void sl_pipes_commit_failed(sl_pipes_t *pp);

/*
 * How routes treat stream (borrowed): returns 1 when a `route: local` step
 * keeps it on the node (never sent upstream), else 0; *topic (may be NULL)
 * receives the topic of a `route: kafka` step for it, or NULL. A route
 * applies to its `stream`, or without one to its pipeline's match.stream.
 */
int sl_pipes_route_of(const sl_config_t *cfg, const char *stream,
                      const char **topic);

/* Publishes per-pipeline counters to the daemon's metrics (loop thread). */
void sl_pipes_metrics(sl_pipes_t *pp);

#endif /* SL_BROKER_PIPELINE_H */
