/*
 * Test helpers shared by the store's unit tests: temporary directories,
 * deterministic self-checking payloads and one-call appends.
 */
#ifndef SL_TESTS_STORE_HELPERS_H
#define SL_TESTS_STORE_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Makes a fresh directory under $TMPDIR (or /tmp); returns owned path. */
char *th_tmpdir(void);
/* Removes dir and everything below it, then frees dir. */
void th_cleanup(char *dir);
/* Opens dir with opts (defaults if NULL); fails the test on error. */
sl_store_t *th_open(const char *dir, const sl_store_opts_t *opts);
/* Creates stream name with the given policy; returns its id. */
uint32_t th_stream(sl_store_t *st, const char *name, sl_store_policy_t pol,
                   uint8_t prio, int64_t ttl_ns);
/* Writes a deterministic payload for seed: len bytes (len >= 16). */
void th_payload(uint64_t seed, uint8_t *buf, size_t len);
/* Returns 0 when p is a payload th_payload() could have made, and its
 * seed in *seed. */
int th_payload_check(const void *p, size_t len, uint64_t *seed);
/* Appends one batch (seed, len, count events at time t) synchronously.
 * Returns the commit status and the first offset in *first. */
int th_append(sl_store_t *st, uint32_t stream, uint64_t seed, size_t len,
              uint32_t count, int64_t t, uint64_t *first);
/* Waits up to ms for cond(arg) to hold, polling; returns cond's value. */
int th_wait(int (*cond)(void *), void *arg, int ms);

#endif
