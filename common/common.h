/*
 * common: error codes, clocks and byte-order helpers shared by every sluice
 * module. This module depends on nothing and never logs.
 */
#ifndef SL_COMMON_H
#define SL_COMMON_H

#include <stddef.h>
#include <stdint.h>

/*
 * Error codes. Fallible functions return 0 or a negative code: system errors
 * as -errno, sluice's own errors in the reserved band below SL_EBASE. This one
 * list makes both the enum and sl_strerror()'s table, so they cannot drift.
 */
#define SL_EBASE (-10000)
#define SL_ERRNO_MAP(X)                                                        \
  X(EPROTO, "protocol violation by peer")                                      \
  X(ECORRUPT, "corrupt data (bad magic, header or checksum)")                  \
  X(EVERSION, "unsupported format or protocol version")                        \
  X(EBACKPRESSURE, "budget or queue full: retry later")                        \
  X(ECONFIG, "invalid configuration")                                          \
  X(ENOTFOUND, "not found")                                                    \
  X(EEXIST, "already exists")                                                  \
  X(ELOCKED, "locked by another process")                                      \
  X(EPOISONED, "object unusable after an earlier failure")                     \
  X(ETOOBIG, "too large")                                                      \
  X(ECLOSED, "closed or shutting down")                                        \
  X(ESTORE, "storage engine error")                                            \
  X(EKAFKA, "Kafka client error")                                              \
  X(EMQTT, "MQTT client error")                                                \
  X(EFENCED, "fenced by a newer instance with the same identity")              \
  X(EEVICTED, "data was evicted by the retention policy")                      \
  X(ERANGE, "value out of range")                                              \
  X(EDENIED, "not authorised: missing, unknown or insufficient credential")    \
  X(ESTOREID, "store identity mismatch: data file empty, replaced or foreign") \
  X(EKEY, "encryption key missing, wrong or unsafe")                           \
  X(ESIGNATURE, "signature missing, invalid or by an unknown key")

typedef enum sl_errno {
  SL__EFIRST = SL_EBASE,
#define SL__XENUM(name, msg) SL_##name,
  SL_ERRNO_MAP(SL__XENUM)
#undef SL__XENUM
      SL__ELAST
} sl_errno_t;

/*
 * Returns a static, human-readable description of err (0, -errno or an
 * SL_E* code). Never returns NULL; valid for the life of the process.
 */
const char *sl_strerror(int err);

/*
 * Returns the symbolic name of err ("SL_ECORRUPT", "ENOSPC", "OK"), static.
 * Used in metrics labels and error frames.
 */
const char *sl_errname(int err);

/* Monotonic clock in nanoseconds: timers, latencies, rate limits. */
uint64_t sl_now_mono_ns(void);

/* Wall clock in nanoseconds since the Unix epoch: event and ingest times. */
int64_t sl_now_wall_ns(void);

/* Parses an RFC 3339 timestamp of exactly len bytes (no NUL needed), e.g.
 * "2026-11-27T02:00:00.123456789Z" or "...+01:00", to nanoseconds since the
 * Unix epoch. Fractions past 9 digits are truncated; a leap second (:60)
 * counts as the next minute's first instant. Returns 0, SL_EPROTO when the
 * text is not RFC 3339, or SL_ERANGE for a date that does not exist (Feb 30,
 * hour 24) or an instant outside int64 nanoseconds (before 1677-09-21 or
 * after 2262-04-11). *out is written on success only. */
int sl_rfc3339_parse(const char *s, size_t len, int64_t *out);

/* Big-endian encode/decode, used by on-disk keys and wire frames. */
static inline void sl_put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline uint32_t sl_get_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static inline void sl_put_be64(uint8_t *p, uint64_t v) {
  sl_put_be32(p, (uint32_t)(v >> 32));
  sl_put_be32(p + 4, (uint32_t)v);
}
static inline uint64_t sl_get_be64(const uint8_t *p) {
  return ((uint64_t)sl_get_be32(p) << 32) | sl_get_be32(p + 4);
}

/* Little-endian encode/decode of the low n bytes (1..8), used by the
 * daemon's state records. */
static inline void sl_put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t sl_get_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

#define SL_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif /* SL_COMMON_H */
