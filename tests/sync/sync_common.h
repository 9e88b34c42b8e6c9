/*
 * Helpers shared by the uplink's end-to-end tests (sync_test.c,
 * sync_netns_test.c): a scratch directory and run id, the real daemon
 * (`sluice run`, generated config, ports read from its ready line), the C
 * client publishing readings, the store read back read-only as the reference
 * of what must arrive, and a read_committed consumer that checks, per
 * node/stream/offset, that every stored event arrives exactly once and, per
 * source and lane, in offset order.
 *
 * Failures go through CHECK (tests/common/check.h): each program defines
 * check_fail_cleanup() with sync_kill_daemons() and sync_tail_logs() plus
 * what it started itself (a private Kafka, a network namespace).
 */
#ifndef SL_TEST_SYNC_COMMON_H
#define SL_TEST_SYNC_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sluice/client.h"
#include "tests/common/check.h"

/* ---- the run ------------------------------------------------------------ */

extern const char *sync_bin;       /* the sluice binary */
extern const char *sync_bootstrap; /* Kafka of the consumer (and daemons) */
extern char sync_dir[256];         /* scratch: configs, logs, data dirs */
extern char sync_run_id[64];       /* prefix of this run's topics */
extern bool sync_json_values;      /* the stream has `format: json` */
extern bool sync_json_compact;     /* ... with `json_layout: compact` */
/* Headers no data record may carry (kafka.omit_headers), NULL-ended. */
extern const char *sync_headers_absent[6];
/* kafka.backlog_order: newest_first: historical records come in blocks
 * from the newest down, so their order per source is not checked (the
 * seen_t's hist_* fields describe it instead). */
extern bool sync_hist_newest_first;
extern uint64_t sync_seq; /* value of the next published reading */
/* Added to the event times of published readings (a device clock ahead). */
extern int64_t sync_time_offset_ns;

/* Sets sync_run_id to "<kind>-<scenario>-<pid>-<ms>" and creates sync_dir
 * as /tmp/sl_<kind>_test.XXXXXX. */
void sync_run_init(const char *kind, const char *scenario);
/* Removes sync_dir (after a passing scenario; a failure keeps it). */
void sync_run_remove(void);
uint64_t sync_now_ms(void);

/* For check_fail_cleanup(): SIGKILL every daemon started and not stopped,
 * and print the last lines of every log in sync_dir to stderr. */
void sync_kill_daemons(void);
void sync_tail_logs(int lines);

/* ---- the daemon --------------------------------------------------------- */

typedef struct sync_daemon {
  char name[32]; /* "a", "b": names its config, log and data dir */
  char cfg[320], log[320], data[320];
  bool admin;     /* admin listener on: start waits for its port too */
  pid_t pid;      /* 0 when not running */
  int port;       /* native TCP port, from the ready line */
  int admin_port; /* admin port, from the ready line (with admin only) */
} sync_daemon_t;

/* sync_daemon_init() flags. */
#define SYNC_ADMIN 1    /* admin listener on 127.0.0.1:0 (default off) */
#define SYNC_NO_KAFKA 2 /* kafka.enabled: false (default true) */

/*
 * Writes the config DIR/<name>.yaml: node id, data dir DIR/data-<name>,
 * native TCP on port 0, no HTTP, the uplink to brokers with checkpoint topic
 * <run>-ckpt; extra (may be NULL) is appended to the kafka section. The log
 * is DIR/<name>.log (appended to by every start).
 */
void sync_daemon_init(sync_daemon_t *d, const char *name, const char *node,
                      const char *brokers, int flags, const char *extra);
/* Appends the streams section: one stream "readings" on topic
 * <run>-<topic>; extra (may be NULL) follows it. */
void sync_daemon_stream(sync_daemon_t *d, const char *topic, const char *extra);
/* Starts the daemon; waits (30 s) for this start's ready line. */
void sync_daemon_start(sync_daemon_t *d);
/* Sends sig, waits (60 s) for the exit; returns the wait status. */
int sync_daemon_stop(sync_daemon_t *d, int sig);
/* Whether a line of d's log contains needle; how many do. */
bool sync_log_has(const sync_daemon_t *d, const char *needle);
int sync_log_count(const sync_daemon_t *d, const char *needle);

/* ---- publishing --------------------------------------------------------- */

typedef struct sync_pub {
  sl_client_t *cl;
  char addr[64];
  uint64_t sent; /* events published through this client */
} sync_pub_t;

/* Opens a client to d's native port. */
void sync_pub_open(sync_pub_t *p, const sync_daemon_t *d,
                   const char *client_id);
/* Publishes reading sync_seq (value sync_seq, one of 16 sources). */
void sync_pub_one(sync_pub_t *p);
/* Flushes and frees the client; fails if an event failed or, with
 * all_acked, if not every event sent was acked. Returns events acked. */
uint64_t sync_pub_close(sync_pub_t *p, bool all_acked);
/* Publishes n readings over 16 sources (client "sync-test"); with big, the
 * big_at-th is instead a raw event of big incompressible bytes. Returns the
 * events acked. */
uint64_t sync_publish(const sync_daemon_t *d, uint64_t n, size_t big_at,
                      size_t big);

/* ---- the reference: what the store holds -------------------------------- */

typedef struct sync_expect {
  uint64_t n;    /* offsets 0..n-1 */
  double *value; /* per offset: the reading's value; -1 for non-readings */
  bool *present; /* false: evicted (must be covered by a gap) */
} sync_expect_t;

/* Reads stream "readings" of d's store (read-only: works beside the
 * daemon). Free with sync_expect_free(). */
void sync_read_store(const sync_daemon_t *d, sync_expect_t *ex);
void sync_expect_free(sync_expect_t *ex);

/* ---- the consumer ------------------------------------------------------- */

typedef struct sync_seen {
  uint32_t *count; /* per offset: records (or gaps) that carried it */
  uint64_t n, distinct, dups, records, gaps, gap_events, historical;
  uint64_t order_errors, missing; /* missing: set by verify only */
  char first_error[256];          /* the first order error */
  int64_t last_hist_ms;           /* latest CreateTime of a historical record */
  /* Historical records in arrival order (first deliveries): the first and
   * the last offset, and how often an offset was below the one before. */
  int64_t hist_first_off, hist_last_off;
  uint64_t hist_descents;
  int64_t *live_ts;  /* per offset: CreateTime of a live record, or 0 */
  int64_t *event_ms; /* per offset: the event's time (publish time) */
} sync_seen_t;

/*
 * Reads topic (all partitions, read_committed) from the beginning and checks
 * every record against ex: stream and offset headers, the offset stored and
 * not evicted, the reading's value; gap records cover evicted offsets. With
 * node, also the node and schema headers, key = source and an ingest time;
 * NULL checks none of these four. Order is checked on first deliveries.
 * With want > 0 it returns once `want` distinct offsets were seen; with
 * want == 0 it reads to the end of every partition (call it when no
 * producer is active). Fails after timeout_ms. Free s with sync_seen_free().
 */
void sync_consume(const char *topic, const char *node, const sync_expect_t *ex,
                  sync_seen_t *s, uint64_t want, int timeout_ms);
void sync_seen_free(sync_seen_t *s);

/*
 * Every offset of d's store (d stopped) exactly once on <run>-<topic>, or in
 * exactly one gap, in order; node as for sync_consume(). With allow_dups,
 * duplicates are counted only; with missing_allowed, the missing count is
 * returned there instead of failing. With s, the consumer's result is
 * returned there (free with sync_seen_free()).
 */
void sync_verify_exactly_once(const char *topic, const char *node,
                              const sync_daemon_t *d, bool allow_dups,
                              uint64_t *missing_allowed, int timeout_ms,
                              sync_seen_t *s);
/* Waits until <run>-<topic> holds every offset 0..n-1 the running daemon
 * stored (content is checked by sync_verify_exactly_once()). */
void sync_await_delivery(const char *topic, const char *node, uint64_t n,
                         int timeout_ms);

#endif
