/*
 * Shared by the crash tests: a child that appends under load and reports
 * each append only after its completion fired, and the parent's check of
 * the reopened store against those reports.
 */
#ifndef SL_TESTS_STORE_CRASH_COMMON_H
#define SL_TESTS_STORE_CRASH_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* One completed append, as written to the report pipe (atomic write). */
typedef struct crash_rec {
  uint32_t stream; /* stream id */
  uint32_t count;  /* events */
  uint64_t first;  /* first offset */
  uint64_t hash;   /* XXH3 of the payload */
  uint64_t seed;   /* payload seed */
} crash_rec_t;

/* Appends until killed (or limit_ms passes), writing a crash_rec_t to fd
 * for each batch whose completion fired with success. async: submit with
 * callbacks (group commit), else one synchronous commit at a time. Never
 * returns: exits 0 at the time limit, 2 on an open error. */
void crash_child(const char *dir, int fd, uint64_t round, sl_store_sync_t sync,
                 int async, int limit_ms);

/* Appends records read from fd to *recs (n already there; grown, owned)
 * until there are want (SIZE_MAX: until EOF); returns the new count. */
size_t crash_read(int fd, crash_rec_t **recs, size_t *cap, size_t n,
                  size_t want);

/* Reopens dir and checks: every record present and intact; each stream
 * contiguous from its first offset; every batch at or past from[s] a
 * payload the child could have made. Updates from[] to the new ends. */
void crash_verify(const char *dir, const crash_rec_t *recs, size_t n,
                  uint64_t from[3]);

#endif
