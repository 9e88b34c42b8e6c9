/*
 * dict.c: per-stream zstd dictionaries, trained from the stream's own
 * recent payloads and stored in the dicts sub-db under a new id. A batch's
 * header names the dictionary it was compressed with, so old batches stay
 * readable after a retrain.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zdict.h>

#include "store/store_int.h"

#define DICT_SAMPLE_LEN 2048u       /* payloads are cut into samples */
#define DICT_TRAIN_BYTES (8u << 20) /* read at most this much */
#define DICT_TRAIN_EVENTS 200000u   /* from this far back */

int sl_store_dict_train(sl_store_t *st, uint32_t stream, size_t dict_size,
                        uint32_t *dict_id) {
  sl_store_stream_stats_t ss;
  store_waiter_t wt = {0};
  sl_store_cursor_t *cur = NULL;
  sl_store_group_t *g = NULL;
  uint8_t *samples = NULL;
  size_t *sizes = NULL, nsamples = 0, used = 0, maxs;
  size_t dlen;
  sl_store_rec_t rec;
  int rc;

  if ((rc = store__check(st)))
    return rc;
  if (st->rdonly)
    return -EROFS;
  if (dict_size < 1024 || dict_size > (1u << 20))
    return SL_ECONFIG;
  /* A dictionary is made of event samples and is stored in clear: never
   * train one while batches are sealed. */
  if (st->seal)
    return SL_ECONFIG;
  if ((rc = sl_store_stream_stats(st, stream, &ss)))
    return rc;
  maxs = DICT_TRAIN_BYTES / DICT_SAMPLE_LEN + 1;
  samples = malloc(DICT_TRAIN_BYTES);
  sizes = malloc(maxs * sizeof(*sizes));
  if (!samples || !sizes) {
    rc = -ENOMEM;
    goto fail;
  }
  rc = sl_store_cursor_open(st, stream,
                            ss.next_offset > DICT_TRAIN_EVENTS
                                ? ss.next_offset - DICT_TRAIN_EVENTS
                                : 0,
                            SL_STORE_OFFSET_END, &cur);
  if (rc)
    goto fail;
  while (used < DICT_TRAIN_BYTES &&
         (rc = sl_store_cursor_next(cur, &rec)) == 0) {
    for (size_t off = 0; rec.status == 0 && off < rec.len &&
                         used < DICT_TRAIN_BYTES && nsamples < maxs;) {
      size_t n = SL_MIN(SL_MIN((size_t)DICT_SAMPLE_LEN, rec.len - off),
                        (size_t)DICT_TRAIN_BYTES - used);
      memcpy(samples + used, (const uint8_t *)rec.payload + off, n);
      sizes[nsamples++] = n;
      used += n;
      off += n;
    }
  }
  sl_store_cursor_close(cur);
  cur = NULL;
  if (rc && rc != SL_ENOTFOUND)
    goto fail;
  if (used < dict_size * 4 || nsamples < 16) {
    rc = SL_ECONFIG; /* not enough data to learn from */
    goto fail;
  }
  if (!(g = store__item_new(st, STORE_OP_DICT)) ||
      !(g->blob = malloc(8 + dict_size))) {
    rc = -ENOMEM;
    goto fail;
  }
  dlen = ZDICT_trainFromBuffer(g->blob + 8, dict_size, samples, sizes,
                               (unsigned)nsamples);
  if (ZDICT_isError(dlen)) {
    rc = SL_ECONFIG;
    goto fail;
  }
  sl_put_be32(g->blob, STORE_DICT_MAGIC);
  sl_put_be32(g->blob + 4, stream);
  g->blen = 8 + dlen;
  g->stream = stream;
  free(samples);
  free(sizes);
  samples = NULL;
  sizes = NULL;
  rc = store__submit_wait(st, g, &wt);
  g = NULL;
  if (rc)
    goto fail;
  *dict_id = wt.id;
  return 0;

fail:
  if (g)
    store__item_free(g);
  sl_store_cursor_close(cur);
  free(samples);
  free(sizes);
  return rc;
}
