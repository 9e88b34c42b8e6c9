/*
 * sync/bucket.c: the token bucket behind the bandwidth cap. Tokens are
 * bytes; a take may overdraw the bucket (one record larger than what is
 * left), and later takes wait until the debt is paid, so the long-run rate
 * holds exactly whatever the record sizes.
 */
#include "sync/sync.h"

void sl_sync_bucket_init(sl_sync_bucket_t *b, double rate, double burst,
                         uint64_t now_ns) {
  b->rate = rate;
  b->burst = burst > 0 ? burst : rate / 10;
  b->tokens = b->burst;
  b->last_ns = now_ns;
}

static void refill(sl_sync_bucket_t *b, uint64_t now_ns) {
  if (now_ns > b->last_ns) {
    b->tokens += b->rate * (double)(now_ns - b->last_ns) / 1e9;
    if (b->tokens > b->burst)
      b->tokens = b->burst;
  }
  b->last_ns = now_ns;
}

uint64_t sl_sync_bucket_wait_ns(sl_sync_bucket_t *b, double n,
                                uint64_t now_ns) {
  if (b->rate <= 0)
    return 0;
  refill(b, now_ns);
  /* A record larger than the burst may go once the bucket is full. */
  double need = n < b->burst ? n : b->burst;
  if (b->tokens >= need)
    return 0;
  return (uint64_t)((need - b->tokens) / b->rate * 1e9) + 1;
}

void sl_sync_bucket_take(sl_sync_bucket_t *b, double n) {
  if (b->rate > 0)
    b->tokens -= n;
}
