/*
 * batch_hdr.c: batch keys and headers as the log holds them: the key of a
 * batch, and the header decoder every reader uses (the writer, the cursor,
 * eviction, quarantine, stream stats). Pure functions over disk bytes,
 * below everything else in the store; batch.c encodes what these read.
 */
#include <xxhash.h>

#include "store/store_int.h"

void store__key(uint8_t key[STORE_KEY_LEN], uint32_t stream, uint64_t off) {
  sl_put_be32(key, stream);
  sl_put_be64(key + 4, off);
}

static uint16_t get_be16(const uint8_t *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}

/* Version 1, 2 and 3 headers (2 adds flags: SEALED puts a seal block after
 * the header and a tag after the payload; 3 adds the store clock at append,
 * making the header 64 bytes). Every field is checked: this is disk input. */
static int hdr_v1(const uint8_t *p, size_t len, store_hdr_t *h) {
  size_t extra = 0, hl;

  hl = h->version >= STORE_BATCH_V3 ? STORE_HDR_LEN_V3 : STORE_HDR_LEN;
  if (len < hl + STORE_SUM_LEN)
    return SL_ECORRUPT;
  h->hdr = p;
  h->hdr_len = (uint32_t)hl;
  h->codec = p[STORE_H_CODEC];
  h->flags = get_be16(p + STORE_H_FLAGS);
  h->count = sl_get_be32(p + STORE_H_COUNT);
  h->dict_id = sl_get_be32(p + STORE_H_DICT);
  h->first_offset = sl_get_be64(p + STORE_H_FIRST);
  h->min_time_ns = (int64_t)sl_get_be64(p + STORE_H_MINT);
  h->max_time_ns = (int64_t)sl_get_be64(p + STORE_H_MAXT);
  h->append_time_ns = (int64_t)sl_get_be64(p + STORE_H_APPEND);
  h->store_time_ns = h->version >= STORE_BATCH_V3
                         ? (int64_t)sl_get_be64(p + STORE_H_STIME)
                         : 0;
  h->raw_len = sl_get_be32(p + STORE_H_RAWLEN);
  h->pay_len = sl_get_be32(p + STORE_H_PAYLEN);
  h->payload = p + hl;
  h->sealed = false;
  h->key_id = 0;
  h->nonce = h->tag = NULL;
  /* Unknown flags are ignored (docs/STORAGE.md); SEALED exists from v2. */
  if (h->version >= STORE_BATCH_V2 && (h->flags & STORE_FLAG_SEALED)) {
    extra = STORE_SEAL_LEN + STORE_TAG_LEN;
    if (len < hl + extra + STORE_SUM_LEN)
      return SL_ECORRUPT;
    h->sealed = true;
    h->key_id = sl_get_be32(p + hl);
    h->nonce = p + hl + 4;
    h->payload = p + hl + STORE_SEAL_LEN;
    h->tag = h->payload + h->pay_len;
  }
  if (h->codec > STORE_CODEC_ZSTD || h->count == 0 ||
      h->min_time_ns > h->max_time_ns ||
      (uint64_t)h->pay_len + hl + extra + STORE_SUM_LEN != len ||
      h->raw_len > SL_STORE_BATCH_MAX ||
      (h->codec == STORE_CODEC_NONE && h->raw_len != h->pay_len) ||
      (h->codec == STORE_CODEC_NONE && h->dict_id != 0))
    return SL_ECORRUPT;
  return 0;
}

int store__hdr_peek(const void *val, size_t len, store_hdr_t *h) {
  const uint8_t *p = val;

  if (len < STORE_HDR_LEN + STORE_SUM_LEN ||
      sl_get_be32(p + STORE_H_MAGIC) != STORE_BATCH_MAGIC)
    return SL_ECORRUPT;
  h->version = p[STORE_H_VERSION];
  /* One reader per past version: 2 is 1 plus the flags, 3 is 2 plus the
   * store time. */
  switch (h->version) {
  case STORE_BATCH_V1:
  case STORE_BATCH_V2:
  case STORE_BATCH_V3:
    return hdr_v1(p, len, h);
  default:
    return h->version == 0 ? SL_ECORRUPT : SL_EVERSION;
  }
}

int store__hdr_decode(const void *val, size_t len, store_hdr_t *h) {
  int rc = store__hdr_peek(val, len, h);

  if (rc)
    return rc;
  if (XXH3_64bits(val, len - STORE_SUM_LEN) !=
      sl_get_be64((const uint8_t *)val + len - STORE_SUM_LEN))
    return SL_ECORRUPT;
  return 0;
}
