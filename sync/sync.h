/*
 * sync: the Kafka uplink, the "forward" in store-and-forward.
 *
 * One uplink thread per daemon reads the store's streams with cursors (short
 * read transactions, bounded read-ahead: memory does not follow the backlog)
 * and produces one Kafka record per event: key = the event's source, value =
 * the protobuf sluice.v1.Event (ingest_time_ns filled in from the batch's
 * append time, D7), headers node, stream, offset, schema and, from the
 * backlog lane, historical. librdkafka's queue is capped small.
 *
 * Exactly-once (the default): a transactional producer whose
 * transactional.id is derived from the node id. Each transaction carries a
 * chunk of records of one or more streams plus, for every stream it touched,
 * the stream's checkpoint (a record keyed "<node>/<stream>" in a compacted
 * checkpoint topic). Only after the commit does the local consumer cursor
 * advance. On start the checkpoint topic is read back read_committed and
 * every stream resumes right after its checkpoint, whatever the local cursor
 * says. A second instance with the same node id fences this one: the uplink
 * stops and reports SL_SYNC_FENCED. At-least-once mode: an idempotent
 * producer and the local cursor only. docs/DELIVERY.md has the details
 * (lanes, checkpoint format, ordering guarantee, what consumers must set).
 *
 * Threads: sl_sync_* calls are made from one thread (the daemon's loop),
 * except sl_sync_stats() and sl_sync_kick(), which are safe from any
 * thread. The uplink never calls back into its owner. sync never logs: it
 * returns codes and exposes state and counters through sl_sync_stats().
 */
#ifndef SL_SYNC_H
#define SL_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "store/store.h"

typedef struct sl_sync sl_sync_t;

#define SL_SYNC_STREAMS_MAX 256 /* streams forwarded by one uplink */

/* Uplink states, as reported by sl_sync_stats(). */
typedef enum sl_sync_state {
  SL_SYNC_STOPPED = 0,     /* not started, or stopped */
  SL_SYNC_CONNECTING = 1,  /* creating the producer, init_transactions */
  SL_SYNC_RESUMING = 2,    /* reading the checkpoints back */
  SL_SYNC_RUNNING = 3,     /* delivering (or idle, caught up) */
  SL_SYNC_BACKOFF = 4,     /* an error: waiting before the next try */
  SL_SYNC_FENCED = 5,      /* fenced by another instance: stopped for good */
  SL_SYNC_FAILED = 6,      /* a fatal error that a restart will not fix */
  SL_SYNC_DISCONNECTED = 7 /* set up, but no broker answers: records wait
                              in the store, librdkafka reconnects (running
                              again once a broker answers) */
} sl_sync_state_t;

/* One stream to forward. */
typedef struct sl_sync_stream_conf {
  const char *name;  /* store stream name (borrowed, copied by new) */
  const char *topic; /* Kafka topic (borrowed, copied) */
  uint8_t priority;  /* 0..9, higher is served first */
  bool json;         /* values as JSON (sl_event_json) instead of protobuf */
  bool json_compact; /* with json: the compact layout (short keys, defaults
                        left out: sl_event_json_write_compact) */
  int compression;   /* SL_SYNC_COMPRESS_* (0: zstd) */
  int compression_level; /* 0: the codec's default; else checked by
                            sl_sync_compression_check() */
} sl_sync_stream_conf_t;

/* Record batch compression of a stream's topic (librdkafka's per-topic
 * compression.type). Streams sharing a topic must agree (librdkafka keeps
 * one setting per topic handle). Order = the config's enum. */
enum {
  SL_SYNC_COMPRESS_ZSTD = 0, /* the default: best ratio per CPU-µs */
  SL_SYNC_COMPRESS_LZ4 = 1,
  SL_SYNC_COMPRESS_GZIP = 2,
  SL_SYNC_COMPRESS_SNAPPY = 3,
  SL_SYNC_COMPRESS_NONE = 4
};

/* librdkafka's name of codec ("zstd", ..., "none"); NULL if unknown. */
const char *sl_sync_compression_name(int codec);

/* NULL when level suits codec (0 always does: the codec's default; zstd
 * and lz4 take 1..12, gzip 1..9, snappy and none only 0), else why not
 * (static text). */
const char *sl_sync_compression_check(int codec, int64_t level);

typedef struct sl_sync_opts {
  const char *node_id;            /* node identity (config node.id) */
  const char *brokers;            /* bootstrap.servers */
  int at_least_once;              /* 0: exactly-once (transactions) */
  const char *checkpoint_topic;   /* compacted; "" or NULL: default */
  const char *txn_id_prefix;      /* transactional.id = prefix + node_id */
  const char *consumer;           /* local consumer cursor name */
  const char *gap_topic;          /* "" or NULL: the stream's own topic */
  const char *dead_letter_stream; /* store stream that receives records
                                     Kafka refuses for good; "" or NULL:
                                     counted only. Not forwarded. */
  const char *const *props;       /* extra librdkafka "key=value" pairs */
  size_t nprops;
  const sl_sync_stream_conf_t *streams; /* nstreams entries */
  size_t nstreams;
  uint32_t chunk_events;          /* records per transaction, at most */
  uint32_t commit_interval_ms;    /* transaction length, at most */
  uint32_t queue_max_messages;    /* queue.buffering.max.messages */
  uint32_t queue_max_kbytes;      /* queue.buffering.max.kbytes */
  uint32_t max_record_bytes;      /* larger values are dead-lettered */
  uint64_t bandwidth_bytes_per_s; /* global cap, 0 = none */
  double backlog_share;           /* backlog lane's part of the cap */
  uint64_t backlog_threshold;     /* events behind that open two lanes */
  int backlog_newest_first;       /* backlog lane in blocks, newest first */
  uint32_t txn_timeout_ms;        /* transaction.timeout.ms */
  uint32_t auth_backoff_ms;       /* wait after an authentication failure
                                     (0: 60000) */
  uint32_t link_timeout_ms;       /* a broker connection with data unacked
                                     this long is dropped and remade
                                     (TCP_USER_TIMEOUT; also librdkafka's
                                     socket.connection.setup.timeout.ms);
                                     0: the kernel's and librdkafka's
                                     defaults */
  int serial_commits;             /* exactly-once with one producer: each commit
                                     stalls the next transaction (default 0: two
                                     producers, commits overlap the next one) */
  /* librdkafka's own log lines (level: syslog 0..7, facility, text) go
   * here instead of stderr, called from librdkafka's threads (so it must
   * be thread-safe, and not call sl_sync_*). sync itself never logs: the
   * owner decides. NULL: librdkafka's default (raw lines on stderr). */
  void (*log_cb)(void *opaque, int level, const char *fac, const char *msg);
  void *log_opaque; /* passed to log_cb */
  /* Which time a record carries as its Kafka timestamp (a broker refuses
   * records outside [its clock - message.timestamp.before.max.ms, its
   * clock + message.timestamp.after.max.ms]); the event's own time is in
   * the value whatever this says. */
  int record_timestamp; /* SL_SYNC_TS_* (default node) */
  /* Record headers left off data records (SL_SYNC_HDR_* bits; 0: all
   * written). Gap records always carry all of theirs. Exactly-once does not
   * need any of them (the checkpoints carry the positions); consumers of
   * at-least-once records drop repeats by node, stream and offset. */
  uint32_t omit_headers;
  /* The node's wall clock (record timestamps, ages); NULL:
   * sl_now_wall_ns(). Tests inject a clock that runs ahead or steps. */
  int64_t (*wall_clock_ns)(void *opaque);
  void *clock_opaque; /* passed to wall_clock_ns */
} sl_sync_opts_t;

/* sl_sync_opts_t.omit_headers (bit i = the config's name i) */
enum {
  SL_SYNC_HDR_NODE = 1,       /* node: node.id */
  SL_SYNC_HDR_STREAM = 2,     /* stream: the store stream */
  SL_SYNC_HDR_OFFSET = 4,     /* offset: the store offset, decimal */
  SL_SYNC_HDR_SCHEMA = 8,     /* schema: sluice.v1.Event[+json[-compact]] */
  SL_SYNC_HDR_HISTORICAL = 16 /* historical: 1 on backlog-lane records */
};

/* sl_sync_opts_t.record_timestamp */
enum {
  SL_SYNC_TS_NODE = 0,  /* the node's clock at produce (librdkafka's way) */
  SL_SYNC_TS_EVENT = 1, /* the event's time_ns (node clock when it has none) */
  SL_SYNC_TS_BROKER = 2 /* the node's clock corrected by the estimated skew
                           against the broker (node clock until known) */
};

/* Per stream counters and gauges (a snapshot). */
typedef struct sl_sync_stream_stats {
  char name[SL_STORE_NAME_MAX + 1];
  uint64_t backlog_events;       /* stored, not yet delivered */
  uint64_t backlog_bytes;        /* estimate: stored bytes pro rata */
  int64_t oldest_undelivered_ns; /* event time of the oldest, 0 = none */
  /* Age of the oldest undelivered event: its event-time age when the
   * uplink first saw it as the oldest (wall clock, clamped at 0), grown
   * since by the monotonic clock, so a wall clock step does not move it.
   * 0 when nothing is undelivered. */
  double oldest_age_s;
  int age_clamped;    /* its event time was ahead of the node's clock: 0 */
  uint64_t delivered; /* events committed to Kafka (this process) */
  uint64_t delivered_bytes; /* record bytes committed */
  uint64_t dead_lettered;   /* events rejected for good */
  uint64_t gaps;            /* gap records forwarded */
  uint64_t next_offset;     /* backlog lane: first undelivered offset */
  uint64_t live_start;      /* live lane start (== next_offset: one lane) */
  uint64_t live_next;       /* live lane: next offset */
  double drain_rate;        /* events/s delivered, smoothed */
  double eta_s;             /* backlog / (drain - ingest); -1 when not catching
                               up: not running, nothing delivered for 3 s, or
                               drain not above ingest */
} sl_sync_stream_stats_t;

typedef struct sl_sync_stats {
  sl_sync_state_t state;      /* never RUNNING while !connected: DISCONNECTED */
  int last_error;             /* SL_E* or -errno of the last failure; 0 (and the
                                 text "") once the uplink works again: a commit,
                                 or a broker answering again while idle */
  char last_error_text[256];  /* librdkafka's words for it */
  uint64_t txn_commits;       /* transactions (chunks) committed */
  uint64_t txn_aborts;        /* transactions aborted and retried */
  uint64_t retries;           /* retried chunks, any cause */
  uint64_t producer_restarts; /* producers recreated after fatal errors */
  uint64_t auth_failures;     /* authentication/authorization errors */
  uint64_t dlq_copy_failed;   /* refused events not copied to the dead-letter
                                 stream (still in their own stream) */
  uint64_t dead_lettered;     /* all streams */
  uint64_t throttled_ms;      /* time waiting for the bandwidth cap */
  double txn_commit_ms_last;  /* last commit_transaction() latency */
  double txn_commit_ms_max;   /* since start */
  uint32_t queue_depth;       /* librdkafka's queued messages */
  int connected;       /* 1 when a broker answered last: set by a commit, a
                          successful (re)connection or, while idle, a metadata
                          probe once a second; 0 when all brokers are down or no
                          delivery for 2 s */
  uint64_t ts_refused; /* records refused INVALID_TIMESTAMP */
  int ts_blocked;      /* the last try was refused for its timestamps (until a
                          commit delivers events) */
  int skew_known;      /* a broker append time was seen (LogAppendTime) */
  double skew_s;       /* node clock minus the broker's, estimated */
  size_t nstreams;
  sl_sync_stream_stats_t streams[SL_SYNC_STREAMS_MAX];
} sl_sync_stats_t;

/* Fills opts with the defaults: exactly-once, checkpoint topic
 * "sluice.checkpoints", prefix "sluice-", consumer "uplink", chunks of 50000
 * records or 100 ms, queue 20000 messages / 8 MiB, records up to 1000000
 * bytes, no bandwidth cap, backlog share 0.5, two lanes beyond 100000
 * events, transaction timeout 60 s. */
void sl_sync_opts_init(sl_sync_opts_t *opts);

/*
 * Makes an uplink for st (borrowed: must outlive the uplink) with opts
 * (borrowed, copied). Streams must exist in the store. Does not connect.
 * On success *out is owned: free with sl_sync_free(). On failure a reason is
 * written to errstr.
 * Errors: SL_ECONFIG (bad opts or a librdkafka property), SL_ENOTFOUND (a
 * stream is not in the store), SL_ETOOBIG (too many streams), -ENOMEM.
 */
int sl_sync_new(sl_store_t *st, const sl_sync_opts_t *opts, sl_sync_t **out,
                char *errstr, size_t errlen);

/* Starts the uplink thread. Errors: SL_ECLOSED (already started or
 * stopped), -errno (pthread_create). */
int sl_sync_start(sl_sync_t *s);

/* Wakes the uplink at once (new data was committed). Any thread. */
void sl_sync_kick(sl_sync_t *s);

/*
 * Stops the uplink thread: an open transaction is committed if Kafka
 * acknowledges it within 2 s of the stop, else given up (its records are
 * sent again, once, by the next start), the producers are closed and the
 * thread joined. Bounded whatever Kafka does (about 3 s; docs/DELIVERY.md
 * "Stopping"); timeout_ms is not used. Never fails; safe when never
 * started.
 */
void sl_sync_stop(sl_sync_t *s, int timeout_ms);

/* Stops (if needed) and frees s. NULL is a no-op. */
void sl_sync_free(sl_sync_t *s);

/* Copies a snapshot of the state and counters to stats (borrowed). Any
 * thread. Never fails. */
void sl_sync_stats(sl_sync_t *s, sl_sync_stats_t *stats);

/* Static name of a state ("running", "fenced", ...). */
const char *sl_sync_state_name(sl_sync_state_t state);

/* ---- building blocks, exposed for tests and the benchmarks ------------ */

/* A stream's delivered set: [0, backlog_next) + [live_start, live_next).
 * One lane when backlog_next == live_start. */
typedef struct sl_sync_ckpt {
  uint64_t backlog_next; /* backlog lane: next offset to send */
  uint64_t live_start;   /* first offset of the live lane */
  uint64_t live_next;    /* live lane: next offset to send */
  char store_id[33];     /* sl_store_info_t.node_id of the store */
} sl_sync_ckpt_t;

#define SL_SYNC_CKPT_BYTES 68 /* encoded size */

/* Encodes c into buf (SL_SYNC_CKPT_BYTES). */
void sl_sync_ckpt_encode(const sl_sync_ckpt_t *c, uint8_t *buf);

/* Decodes len bytes at buf. Errors: SL_ECORRUPT (size, magic or checksum),
 * SL_EVERSION (a newer format). */
int sl_sync_ckpt_decode(const void *buf, size_t len, sl_sync_ckpt_t *c);

/* One Event sliced out of a serialized EventBatch, without decoding it. */
typedef struct sl_sync_event {
  const uint8_t *data; /* the Event's bytes (view into the batch) */
  size_t len;
  const char *source; /* view of Event.source, not NUL-terminated */
  size_t source_len;
  int has_ingest_time; /* Event.ingest_time_ns is present and non-zero */
  int64_t time_ns;     /* Event.time_ns, 0 when absent */
} sl_sync_event_t;

/*
 * Returns the event at *pos in the EventBatch payload (len bytes) and
 * advances *pos past it. Views are valid while payload is.
 * Errors: SL_ENOTFOUND (end), SL_ECORRUPT (malformed protobuf).
 */
int sl_sync_event_next(const void *payload, size_t len, size_t *pos,
                       sl_sync_event_t *ev);

/*
 * librdkafka's words for a connection error, made true for the uplink:
 * "might be caused by incorrect security.protocol configuration
 * (connecting to a SSL listener?) or broker version is < 0.10" is what
 * librdkafka says of any connection the broker closes before answering
 * ApiVersion, which is also what a broker stopping or starting does. With
 * ever_connected (these settings reached the brokers before) that hint is
 * replaced by what is known; otherwise it is kept as one possibility.
 * Writes at most len bytes (NUL-terminated) to out.
 */
void sl_sync_explain_error(const char *reason, int ever_connected, char *out,
                           size_t len);

/* Token bucket: rate bytes/s, burst bytes. rate 0 = unlimited. */
typedef struct sl_sync_bucket {
  double rate;   /* tokens (bytes) per second */
  double burst;  /* bucket size */
  double tokens; /* current fill; may go negative after a large take */
  uint64_t last_ns;
} sl_sync_bucket_t;

void sl_sync_bucket_init(sl_sync_bucket_t *b, double rate, double burst,
                         uint64_t now_ns);
/* Refills by the time elapsed; returns the ns to wait before n bytes may
 * be taken (0: take now). */
uint64_t sl_sync_bucket_wait_ns(sl_sync_bucket_t *b, double n, uint64_t now_ns);
/* Takes n tokens (the fill may go negative: later takes wait). */
void sl_sync_bucket_take(sl_sync_bucket_t *b, double n);

#endif /* SL_SYNC_H */
