/*
 * sync internals: the uplink's private state. Only the sync module includes
 * this.
 *
 * Ownership and threads: everything below `thread-owned` is touched by the
 * uplink thread only; `lock` guards the stats snapshot and the control
 * flags shared with the owner's thread.
 */
#ifndef SL_SYNC_INT_H
#define SL_SYNC_INT_H

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "sluice/v1/event.pb-c.h"
#include "sync/sync.h"

#define SYNC_POISON_MAX 1024 /* remembered poison (stream, offset) pairs */
#define SYNC_GAPS_PER_TXN 64 /* gap records forwarded per transaction */
#define SYNC_DLQ_STREAM "_dlq"
#define SYNC_PRODUCERS 2   /* exactly-once: one commits, one takes records */
#define SYNC_SKIP_MAX 64   /* evicted ranges a stream's lanes stepped over */
#define SYNC_GAP_PIECES 16 /* a gap clipped into more pieces is sent whole */

/* A read position in one lane of one stream. */
typedef struct sync_lane {
  sl_store_cursor_t *cur; /* open cursor, or NULL (opened lazily) */
  sl_store_rec_t rec;     /* current record, valid while have_rec */
  bool have_rec;
  size_t pos;       /* byte position of the next event in rec.payload */
  uint64_t rec_off; /* offset of the event at pos */
  uint64_t start;   /* where the lane (or its newest-first block) began */
  uint64_t next;    /* next offset to send (in the open transaction) */
  uint64_t end;     /* exclusive bound, SL_STORE_OFFSET_END: none */
  bool historical;  /* records carry the historical header */
  bool caught_up;   /* the last pump reached the end of the data */
} sync_lane_t;

typedef struct sync_stream {
  char *name;  /* owned */
  char *topic; /* owned */
  uint32_t id; /* store stream id */
  uint8_t priority;
  bool json;             /* values as JSON */
  bool json_compact;     /* the compact JSON layout */
  int compression;       /* SL_SYNC_COMPRESS_* of its topic */
  int compression_level; /* 0: the codec's default */
  rd_kafka_topic_t *rkt; /* topic handle of the current producer */
  char ckpt_key[160];    /* "<node>/<stream>" */
  sl_sync_ckpt_t cp;     /* committed to Kafka (and then locally) */
  sl_sync_ckpt_t pend;   /* as of the records in the open transaction */
  bool touched;          /* the open transaction carries records of it */
  sync_lane_t live, backlog;
  uint64_t txn_events, txn_bytes; /* in the open transaction */
  /* The transaction handed to the committer (sealed, not yet confirmed):
   * its positions become cp once the commit is confirmed. */
  sl_sync_ckpt_t cm_cp;
  bool cm_touched;
  uint64_t cm_events, cm_bytes;
  int64_t oldest_ns; /* event time at the first undelivered */
  /* Evicted ranges the lanes stepped over (not sent as records) since the
   * last time no gap was pending: a gap record is clipped to the offsets
   * not sent as records, and these stay in it. On overflow, gaps are sent
   * unclipped (an offset may then be both a record and in a gap; none is
   * lost). */
  struct {
    uint64_t a, b;
  } skipped[SYNC_SKIP_MAX];
  size_t nskipped;
  bool skip_overflow;
  /* Rate, ETA and age bookkeeping (under up->lock: sl_sync_stats()
   * samples them on the caller's thread). obs_*: the oldest undelivered
   * offset as last seen, when (monotonic) and its age then. */
  uint64_t rate_delivered, rate_next;
  uint64_t progress_ns; /* monotonic: last delivery, or nothing behind */
  uint64_t obs_off, obs_mono_ns;
  int64_t obs_age_ns, obs_time_ns;
  bool obs_valid, obs_clamped;
  double ingest_rate; /* events/s stored, smoothed */
  /* Stats (under up->lock). */
  sl_sync_stream_stats_t st;
} sync_stream_t;

typedef struct sync_poison {
  uint32_t stream; /* index into up->streams */
  uint64_t offset;
  int err;    /* rd_kafka_resp_err_t that rejected it, or an SL_E* code */
  bool moved; /* copied to the dead-letter stream */
} sync_poison_t;

/* One librdkafka producer with its topic handles. */
typedef struct sync_prod {
  rd_kafka_t *rk;
  rd_kafka_topic_t **rkt; /* per stream (nstreams entries) */
  rd_kafka_topic_t *ckpt_rkt, *gap_rkt;
  char *txn_id; /* owned */
} sync_prod_t;

struct sl_sync {
  sl_store_t *st;
  sl_sync_opts_t o; /* strings below are owned copies */
  char *node_id, *brokers, *ckpt_topic, *txn_id, *consumer, *gap_topic;
  char **props; /* nprops owned "key=value" strings */
  char store_id[33];
  sync_stream_t *streams;
  size_t nstreams;
  size_t *order; /* stream indexes by priority, highest first */

  pthread_t thread;
  bool started, joined;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool stop;             /* under lock */
  bool kick;             /* under lock */
  bool auth_failed;      /* under lock: an authentication or authorization
                            error since the producers were made */
  bool ever_connected;   /* under lock: a producer was made and its
                            transactions initialised since start (the
                            brokers speak our security.protocol) */
  sl_sync_stats_t stats; /* under lock; streams[] mirror sync_stream_t.st */

  /* thread-owned. rk, the streams' rkt, ckpt_rkt and gap_rkt are those of
   * prod[cur], the producer that takes records now. */
  sync_prod_t prod[SYNC_PRODUCERS];
  int nprod, cur;
  rd_kafka_t *rk;
  bool in_txn;
  uint64_t probe_ns; /* last idle metadata probe while disconnected */
  /* Pipelined commits (exactly-once with two producers): the sealed
   * transaction of the other producer commits on the committer thread
   * while this thread fills the next one. committing: one was handed over
   * and is not yet collected; cm_gap_*: its gap bookkeeping. */
  bool committing;
  uint64_t cm_gap_pend, cm_gap_n;
  pthread_t cm_thread;
  bool cm_started;
  pthread_mutex_t cm_lock; /* guards the four fields below */
  pthread_cond_t cm_cond;
  rd_kafka_t *cm_rk; /* producer whose transaction to commit, or NULL */
  bool cm_done, cm_quit;
  rd_kafka_error_t *cm_error; /* the commit's result (owned) */
  double cm_ms;               /* the commit's latency */
  rd_kafka_topic_t *ckpt_rkt, *gap_rkt;
  uint64_t gap_cp, gap_pend; /* next gap seq: committed, in the txn */
  uint64_t gap_store_seq;    /* next gap seq the store has not acked */
  uint64_t gap_txn_n;        /* gap records in the open transaction */
  struct {
    size_t stream;
    uint64_t first, end;
  } gap_skip[SYNC_GAPS_PER_TXN]; /* evicted ranges forwarded this chunk */
  size_t ngap_skip;
  sl_sync_bucket_t bucket, backlog_bucket;
  bool live_throttled;   /* a live lane waited for tokens this round */
  bool backlog_held;     /* a backlog lane waited for queue room (live on) */
  uint64_t live_sent_ns; /* last time a live lane sent records */
  uint64_t throttle_ns;  /* shortest wait that stopped a pump */
  uint64_t throttled_ns; /* all waits for the cap, since start */
  uint64_t backoff_ms;
  uint64_t rate_t_ns; /* under lock: last rate sample (monotonic) */
  /* Broker clock (thread-owned): the last append time a delivery report
   * carried (LogAppendTime topics, e.g. the checkpoint topic sluice
   * creates) and the monotonic time it was seen. need_probe: the next
   * transaction first sends a checkpoint record to measure it. */
  bool bt_known, need_probe;
  int64_t bt_ns;
  uint64_t bt_mono_ns;
  uint8_t *scratch; /* value buffer for events that need ingest time */
  size_t scratch_cap;
  char *jbuf; /* JSON value buffer (format json) */
  /* Arena of the events decoded for json streams (sync__event_unpack()). */
  ProtobufCAllocator arena;
  uint8_t *arena_mem;
  size_t arena_cap, arena_used;
  bool arena_short; /* an allocation did not fit since the last reset */
  size_t jbuf_cap;
  sync_poison_t poison[SYNC_POISON_MAX];
  size_t npoison;
  uint32_t dlq_stream; /* store id of the dead-letter stream */
  bool has_dlq;        /* o.dead_letter_stream is set */
  /* Delivery reports of the current chunk (librdkafka's thread calls
   * dr_cb only from rd_kafka_poll/flush on the uplink thread). */
  uint64_t dr_ok, dr_failed;
  int dr_first_err;
};

/* uplink.c: the loop. Each chunk is produce (uplink_produce.c), commit
 * (uplink_commit.c) and, when a step failed, recover (uplink_recover.c).
 * Everything below runs on the uplink thread unless it says otherwise. */

/* uplink_produce.c */
/* Opens a second lane for streams further behind than
 * o.backlog_threshold: the live lane jumps to the end of the stored data,
 * the backlog lane keeps the old position. */
void sync__plan_lanes(sl_sync_t *up);
/* Some stream has records to send, or a gap record is pending. */
bool sync__has_work(sl_sync_t *up);
/* Newest first: points the backlog lane of s at its next block. */
void sync__backlog_block(sync_stream_t *s);
/* Measures the broker's clock with a checkpoint record (best effort). */
void sync__probe_clock(sl_sync_t *up);
/* Pumps the lanes into the open transaction until the chunk is done.
 * Returns 0 or an error (*fatal as sync__collect() sets it). */
int sync__chunk_produce(sl_sync_t *up, bool eos, bool *fatal);
/* Ends the chunk's records: newest-first blocks finished, gap records
 * sent. Returns 0 or an error. */
int sync__chunk_finish(sl_sync_t *up);

/* uplink_commit.c */
/* Commits the chunk: exactly-once (eos) adds the checkpoints and commits
 * the transaction, here or on the committer thread; at least once flushes.
 * Returns 1, or an error with *fatal when the producers must be rebuilt
 * (SL_ECLOSED: stopping, given up). */
int sync__chunk_commit(sl_sync_t *up, bool eos, bool *fatal);
/*
 * Collects the commit handed to the committer thread. Returns 0 when none
 * is pending (or, with !wait, it still runs), 1 when it was confirmed and
 * finalized, or an error with *fatal set (except SL_EFENCED): whether the
 * commit happened is not known here, so the producers are rebuilt and
 * delivery resumes from the checkpoints in Kafka.
 */
int sync__collect(sl_sync_t *up, bool wait, bool *fatal);
/* Starts the committer thread (pipelined commits). Returns 0 or -errno. */
int sync__committer_start(sl_sync_t *up);
/* Stops and joins it, if it was started. */
void sync__committer_stop(sl_sync_t *up);
/* Names why the chunk's records were not delivered in the status. */
void sync__name_refusal(sl_sync_t *up);

/* uplink_recover.c */
/* Every stream back to its committed checkpoint (no commit pending). */
void sync__rewind_all(sl_sync_t *up);
/* After a chunk failed with rc: aborts the open transaction (or sets
 * *fatal when only a new producer gets back to a clean state), names the
 * cause, collects a pending commit and rewinds. Returns 0 (SL_ECLOSED:
 * stopping), SL_EFENCED or another error (SL_EKAFKA if rc was none). */
int sync__chunk_recover(sl_sync_t *up, bool eos, int rc, bool *fatal);

/* producer.c */
/* Opens up->nprod producers (initialising transactions) and makes the
 * first one current. */
int sync__producer_open(sl_sync_t *up, char *errstr, size_t errlen);
void sync__producer_close(sl_sync_t *up);
/* Makes prod[k] the producer that takes records. */
void sync__producer_use(sl_sync_t *up, int k);
int sync__ensure_topic(sl_sync_t *up, const char *topic, bool compact,
                       char *errstr, size_t errlen);
/* The schema header of s's records: sluice.v1.Event, sluice.v1.Event+json
 * or sluice.v1.Event+json-compact. */
static inline const char *sync__schema(const sync_stream_t *s) {
  return !s->json          ? "sluice.v1.Event"
         : s->json_compact ? "sluice.v1.Event+json-compact"
                           : "sluice.v1.Event+json";
}

/* Decodes a stored event for a json stream's record into up's arena (one
 * reusable block: no allocation per event once it has grown to the largest
 * event; the previous result is invalid after the next call). NULL when the
 * bytes are no Event (corrupt); -ENOMEM is not distinguished: an arena that
 * cannot grow falls back to protobuf-c's malloc, whose result *own says
 * to free with sluice__v1__event__free_unpacked(e, NULL). */
Sluice__V1__Event *sync__event_unpack(sl_sync_t *up, const void *data,
                                      size_t len, bool *own);

/* Renders event e (offset off of stream s) as JSON into up->jbuf; returns
 * its length or a negative error. The value of a record of a json stream
 * (events from the lanes, gap records from checkpoint.c). */
long sync__json_value(sl_sync_t *up, const sync_stream_t *s, uint64_t off,
                      const Sluice__V1__Event *e, int64_t append_time_ns);
/* The poison list: records Kafka (a delivery report) or the lane refused
 * for good. */
bool sync__poisoned(const sl_sync_t *up, size_t idx, uint64_t off);
/* Remembers a record rejected for good and counts it as dead-lettered
 * (once). Returns true when it was new. */
bool sync__poison_add(sl_sync_t *up, size_t idx, uint64_t off, int err);
/* Waits up to ms for a kick or a stop. */
void sync__wait_ms(sl_sync_t *up, uint64_t ms);
/* librdkafka's queue depth into the stats. */
void sync__update_rates(sl_sync_t *up);
/* Records wait for the broker (it may be down for minutes): keep
 * /v1/status and /metrics honest meanwhile. The backlog and rates are
 * refreshed, and after 2 s without a delivery since since_ns the uplink
 * reports itself disconnected; the next commit reports it connected. */
void sync__note_waiting(sl_sync_t *up, uint64_t since_ns);
/* Produces one record; waits (serving callbacks) while the queue is full.
 * Returns 0, SL_ETOOBIG (permanently refused: size) or SL_EKAFKA. */
int sync__produce(sl_sync_t *up, rd_kafka_topic_t *rkt, const void *key,
                  size_t klen, const void *val, size_t vlen,
                  const rd_kafka_vu_t *hdrs, size_t nhdrs, void *opaque,
                  int64_t ts_ms);
/* Maps a transaction call's error (consumed): 0 when error is NULL, else
 * SL_EFENCED or SL_EKAFKA with its class in the flags. */
int sync__txn_call(sl_sync_t *up, rd_kafka_error_t *error, const char *what,
                   bool *fatal, bool *abortable, bool *retriable);
/* An authentication or authorization error was reported since the
 * producers were made. */
bool sync__auth_failed(sl_sync_t *up);
/* Bounds how long a broker connection may hang on a silent link
 * (o.link_timeout_ms): TCP_USER_TIMEOUT and the connection set-up timeout;
 * also routes librdkafka's log lines to o.log_cb. conf's opaque must be up. */
void sync__conf_link(sl_sync_t *up, rd_kafka_conf_t *conf);

/* The node's wall clock (o.wall_clock_ns or sl_now_wall_ns()). */
int64_t sync__now_wall(const sl_sync_t *up);
/* The Kafka timestamp (ms) of a record per o.record_timestamp; event_ns:
 * the event's time, 0 when the record has none. */
int64_t sync__record_ts_ms(const sl_sync_t *up, int64_t event_ns);
/* Backlog, rates, ETA and ages into up->stats (caller holds up->lock). */
void sync__sample(sl_sync_t *up);

/* A stop was asked (under the lock). */
bool sync__stopping(sl_sync_t *up);

/* Once a stop is asked, records in flight and a commit get this long
 * before they are given up (not confirmed: the next start resumes from
 * the checkpoints in Kafka and sends them again). Bounds sl_sync_stop()
 * when Kafka stopped answering (docs/DELIVERY.md "Stopping"). */
#define SYNC_STOP_GRACE_MS 2000

/* Clears last_error (the uplink works again). */
void sync__clear_error(sl_sync_t *up);
/* Marks the brokers reachable (1) or not (0); 1 clears last_error. */
void sync__set_connected(sl_sync_t *up, int connected);
void sync__set_error(sl_sync_t *up, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* checkpoint.c */
int sync__resume(sl_sync_t *up, char *errstr, size_t errlen);
/* The stats' positions of every stream from the local checkpoint (or the
 * consumer cursor), before the first connection. */
void sync__local_positions(sl_sync_t *up);
int sync__produce_ckpt(sl_sync_t *up, sync_stream_t *s);
int sync__produce_gaps(sl_sync_t *up);
void sync__commit_local(sl_sync_t *up);

/* lane.c */
void sync__lane_reset(sync_lane_t *l, uint64_t next, uint64_t end,
                      bool historical);
void sync__lane_close(sync_lane_t *l);
/* Sends up to max events of lane l of stream s. Returns the number sent
 * or a negative error. */
long sync__lane_pump(sl_sync_t *up, sync_stream_t *s, sync_lane_t *l,
                     uint64_t max);
/* Notes that a lane of s stepped over the evicted range [a, b). */
void sync__note_skip(sync_stream_t *s, uint64_t a, uint64_t b);
/* Copies poisoned event (offset off of stream s, its stored bytes) to the
 * dead-letter stream once, with why it was rejected. */
void sync__dead_letter(sl_sync_t *up, sync_stream_t *s, uint64_t off,
                       const void *data, size_t len, int64_t append_time_ns);

/* Encodes stream index and offset into a message opaque: the index in the
 * top 16 bits (0xffff: a checkpoint or gap record), the offset in the low
 * 48. */
static_assert(sizeof(void *) >= sizeof(uint64_t),
              "a delivery opaque carries 64 bits");
static_assert(SL_SYNC_STREAMS_MAX < 0xffff,
              "stream indexes stay below the 0xffff marker");
static inline void *sync__opaque(size_t idx, uint64_t off) {
  return (void *)(uintptr_t)(((uint64_t)idx << 48) | (off & 0xffffffffffffu));
}

#endif /* SL_SYNC_INT_H */
