/*
 * store: sluice's durable event log on LMDB.
 *
 * One environment per daemon (a directory holding data.mdb, lock.mdb and
 * sluice.lock). Streams are append-only logs of batches; a batch is an opaque,
 * serialized sluice.v1.EventBatch with a count of events and an event-time
 * range. Offsets are per stream and per event: a batch of 100 events appended
 * at offset 500 covers 500..599.
 *
 * Threads. Every function is safe to call from any thread, except where a
 * comment says otherwise. One internal writer thread is the only LMDB writer:
 * appends, cursor commits and every other change are queued to it and group
 * committed, many per transaction and fsync. Compression happens on the
 * caller's thread (sl_store_batch_new()), so the writer only assigns offsets,
 * checksums and puts.
 *
 * Completions. Completion callbacks run on the writer thread, after the
 * transaction that holds the group is committed (and, with
 * SL_STORE_SYNC_ALWAYS, fsynced). They must be short and must not call
 * sl_store_env_close() or any synchronous store call that waits for the
 * writer (sl_store_group_commit(), sl_store_stream_create(),
 * sl_store_consumer_commit(), sl_store_gap_ack(), sl_store_dict_train(),
 * sl_store_env_sync()); bounce work to your own loop instead.
 *
 * Errors. Fallible functions return 0 or a negative code: -errno for system
 * errors, SL_E* (common/common.h) for the store's own. After an MDB_PANIC the
 * store is poisoned: every later call returns SL_EPOISONED and the daemon
 * should exit (sl_store_env_info() reports it). The store never logs.
 *
 * The on-disk format is documented in docs/STORAGE.md.
 */
#ifndef SL_STORE_H
#define SL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Opaque handles. */
typedef struct sl_store sl_store_t;
typedef struct sl_store_batch sl_store_batch_t;
typedef struct sl_store_group sl_store_group_t;
typedef struct sl_store_cursor sl_store_cursor_t;

/* Limits. */
#define SL_STORE_NAME_MAX 200   /* stream and consumer names, bytes */
#define SL_STORE_PRIORITY_MAX 7 /* priority classes 0 (evicted first)..7 */
#define SL_STORE_BATCH_MAX (64u << 20) /* serialized payload, bytes */
#define SL_STORE_OFFSET_END UINT64_MAX /* "no upper bound" for cursors */

/* sl_store_opts_t.flags */
#define SL_STORE_RDONLY 0x1u /* read-only: no writer, no lock file */
/* Accept a store whose identity does not match DIR/store.id (an emptied,
 * replaced or foreign data.mdb): open it as it is (an empty file becomes a
 * new store) and rewrite store.id. Never set this by default. */
#define SL_STORE_ACCEPT_NEW 0x2u

/* sl_store_group_submit() flags */
#define SL_STORE_SUBMIT_BLOCK 0x1u /* wait for queue room, never fail full */

typedef enum sl_store_sync {
  SL_STORE_SYNC_ALWAYS = 0,  /* fsync every group commit (default) */
  SL_STORE_SYNC_INTERVAL = 1 /* fsync every sync_interval_ms */
} sl_store_sync_t;

typedef enum sl_store_policy {
  SL_STORE_POLICY_BLOCK = 0,         /* over budget: SL_EBACKPRESSURE */
  SL_STORE_POLICY_DROP_OLDEST = 1,   /* delete this stream's oldest */
  SL_STORE_POLICY_EVICT_PRIORITY = 2 /* evict lowest priority class first */
} sl_store_policy_t;

/* Why events left the store without being delivered. */
typedef enum sl_store_reason {
  SL_STORE_REASON_DROP_OLDEST = 0,
  SL_STORE_REASON_EVICT_PRIORITY = 1,
  SL_STORE_REASON_TTL = 2,
  SL_STORE_REASON_CORRUPT = 3,
  SL_STORE_REASON_COUNT
} sl_store_reason_t;

/* A clock for sl_store_opts_t (tests inject their own): returns ns. */
typedef int64_t (*sl_store_clock_cb)(void *arg);

typedef struct sl_store_opts {
  unsigned flags;             /* SL_STORE_RDONLY */
  uint64_t budget_bytes;      /* disk budget for the whole store */
  uint64_t map_size;          /* initial map size; grows up to budget_bytes */
  sl_store_sync_t sync;       /* durability mode */
  uint32_t sync_interval_ms;  /* SL_STORE_SYNC_INTERVAL period; default 100,
                               * the daemon table's store.sync_interval */
  uint32_t queue_depth;       /* writer queue capacity, in queued items */
  int zstd_level;             /* compression level used by batch_new */
  int64_t clock_tolerance_ns; /* TTL clock guard, see docs/STORAGE.md */
  uint32_t maintenance_ms;    /* TTL sweep and reader check period */
  /* Encryption at rest (docs/STORAGE.md): keys as "id:64-hex-digits"
   * entries, from a file (mode 0600 or stricter, owned by this user) or an
   * environment variable; at most one of the two. The highest id seals new
   * batches, every listed id opens old ones. Both NULL or "": no sealing.
   * Borrowed; read during sl_store_env_open() only. */
  const char *key_file;
  const char *key_env;
  /* Clocks (docs/STORAGE.md, "The store clock"). NULL: the real ones.
   * clock_wall: ns since the epoch, may step (CLOCK_REALTIME).
   * clock_boot: ns that never step and count suspend (CLOCK_BOOTTIME).
   * Both are called from the writer thread and from any thread calling
   * sl_store_env_info() or sl_store_clock_now(); clock_arg is passed. */
  sl_store_clock_cb clock_wall;
  sl_store_clock_cb clock_boot;
  void *clock_arg;
} sl_store_opts_t;

/* How the store clock was carried across the last stop (info.clock_open). */
typedef enum sl_store_clock_open {
  SL_STORE_CLOCK_NEW = 0,  /* no clock record: started at the wall clock */
  SL_STORE_CLOCK_BOOT = 1, /* same boot: advanced by CLOCK_BOOTTIME (exact) */
  SL_STORE_CLOCK_WALL = 2, /* after a reboot: advanced by the wall clock */
  SL_STORE_CLOCK_HELD = 3  /* after a reboot, wall clock behind: held */
} sl_store_clock_open_t;

/* The store clock: a time that never steps, kept across restarts. */
typedef struct sl_store_clock_info {
  int64_t store_ns;           /* store clock now */
  int64_t wall_ns;            /* wall clock now */
  int64_t offset_ns;          /* wall - store: the sum of every step */
  uint64_t steps_forward;     /* wall clock steps forward seen (this process) */
  uint64_t steps_backward;    /* steps backward seen (this process) */
  int64_t last_step_ns;       /* size of the last step, signed; 0 = none */
  int64_t last_step_at_ns;    /* store clock when it was seen */
  int last_step_stopped;      /* 1: the last step happened while stopped */
  sl_store_clock_open_t open; /* how the clock crossed the last stop */
  int64_t stopped_ns;         /* time credited for the stop at open */
} sl_store_clock_info_t;

typedef struct sl_store_stream_conf {
  uint8_t priority;         /* 0..SL_STORE_PRIORITY_MAX, 0 evicted first */
  sl_store_policy_t policy; /* what an append over budget does */
  int64_t ttl_ns;           /* expire batches older than this; 0 = never */
} sl_store_stream_conf_t;

typedef struct sl_store_stream_stats {
  uint32_t id;                      /* stream id (never 0) */
  char name[SL_STORE_NAME_MAX + 1]; /* NUL-terminated */
  sl_store_stream_conf_t conf;      /* current settings */
  uint32_t dict_id;                 /* dictionary used by new batches */
  uint64_t first_offset;            /* oldest stored event */
  uint64_t next_offset;             /* offset the next event gets */
  uint64_t bytes;                   /* stored value bytes */
  uint64_t events;                  /* stored events */
  uint64_t batches;                 /* stored batches */
  int64_t oldest_time_ns;           /* min event time of oldest batch */
  uint64_t evicted_events[SL_STORE_REASON_COUNT]; /* by reason */
  uint64_t evicted_bytes[SL_STORE_REASON_COUNT];  /* by reason */
} sl_store_stream_stats_t;

typedef struct sl_store_info {
  sl_store_sync_t sync;    /* durability mode */
  uint64_t loss_window_ms; /* committed but maybe not durable: 0 = none */
  uint64_t budget_bytes;   /* configured budget */
  uint64_t limit_bytes;    /* live-data limit enforced inside the budget */
  uint64_t used_bytes;     /* live B-tree pages * page size */
  uint64_t file_bytes;     /* size of data.mdb */
  uint64_t map_size;       /* current LMDB map size */
  uint32_t page_size;      /* LMDB page size */
  uint32_t format_version; /* store format version */
  char node_id[33];        /* store identity, hex, random at creation; kept in
                              DIR/store.id too; the uplink keys checkpoints by it */
  int64_t created_ns; /* when the store was created, 0 = before this was kept */
  uint32_t seal_key_id;        /* key id sealing new batches, 0 = plain */
  uint64_t commits;            /* write transactions committed (this process) */
  uint64_t commit_errors;      /* write transactions that failed */
  uint64_t quarantined;        /* batches moved to quarantine (persistent) */
  uint64_t corrupt_seen;       /* corrupt batches met by readers (process) */
  uint64_t map_grows;          /* map resizes (this process) */
  uint64_t readers_cleared;    /* stale reader slots cleared */
  uint32_t queued;             /* items waiting for the writer */
  uint32_t committing;         /* items the writer is committing now */
  uint32_t queue_depth;        /* writer queue capacity */
  int last_error;              /* last commit error, 0 after a success */
  int poisoned;                /* 1 after MDB_PANIC: every call fails */
  sl_store_clock_info_t clock; /* the store clock and wall clock steps */
} sl_store_info_t;

/* One record returned by a read cursor: a whole batch, or a skipped range. */
typedef struct sl_store_rec {
  int status;            /* 0, SL_ECORRUPT or SL_EEVICTED (range skipped) */
  uint32_t stream;       /* stream id */
  uint64_t first_offset; /* first offset covered */
  uint64_t count;        /* events covered */
  int64_t min_time_ns;   /* event time range (0 when status != 0) */
  int64_t max_time_ns;
  int64_t append_time_ns; /* node clock when the writer appended it */
  int64_t store_time_ns;  /* store clock then (0: batch older than v3) */
  uint32_t dict_id;       /* dictionary the batch was compressed with */
  const void *payload;    /* serialized EventBatch; NULL when status != 0 */
  size_t len;             /* payload bytes */
} sl_store_rec_t;

/* A consumer cursor: consumer name + stream -> next offset to deliver. */
typedef struct sl_store_consumer {
  char name[SL_STORE_NAME_MAX + 1]; /* NUL-terminated */
  uint32_t stream;                  /* stream id */
  uint64_t next_offset;             /* next offset to deliver */
} sl_store_consumer_t;

/* A gap: undelivered events the store lost (evicted, expired, corrupt). */
typedef struct sl_store_gap {
  uint64_t seq;          /* store-wide sequence, ascending */
  uint32_t stream;       /* stream id */
  uint64_t first_offset; /* first lost offset */
  uint64_t count;        /* lost events: first_offset..+count-1 */
  int64_t min_time_ns;   /* event time range of the lost batches */
  int64_t max_time_ns;
  int64_t recorded_ns;      /* node clock when the gap was recorded */
  sl_store_reason_t reason; /* why */
} sl_store_gap_t;

/*
 * Completion of a submitted group. status is 0 or the error that failed the
 * whole group (the group is never half applied). offsets[i] is the first
 * offset given to the i-th batch added to the group; offsets is borrowed,
 * valid until the callback returns, and NULL when status != 0. Runs on the
 * writer thread after the commit (see the top of this file).
 */
typedef void (*sl_store_done_cb)(void *arg, int status, const uint64_t *offsets,
                                 size_t n);

/* ---- environment ------------------------------------------------------ */

/* Fills opts with the defaults: 1 GiB budget, 64 MiB initial map, sync
 * always, 50 ms interval, queue of 1024, zstd level 3, 5 min clock
 * tolerance, 1 s maintenance. */
void sl_store_opts_init(sl_store_opts_t *opts);

/*
 * Opens (creating if needed, unless read-only) the store in directory dir,
 * and starts its writer thread. Takes an exclusive flock on dir/sluice.lock
 * unless SL_STORE_RDONLY; a read-only open works while a daemon runs.
 * Clears stale LMDB reader slots. dir and opts are borrowed; on success *stp
 * is owned: close with sl_store_env_close(). On failure a reason is written
 * to errstr (may be NULL).
 * Identity: a read-write open compares the id in the store's meta with
 * DIR/store.id and refuses an empty, missing, replaced or foreign data.mdb
 * when store.id names a store that existed here (see SL_STORE_ACCEPT_NEW).
 * A new directory gets both. The directory is set to 0700, the files to 0600.
 * Errors: SL_ELOCKED (another process or handle holds the lock),
 * SL_ECONFIG (bad opts), SL_ECORRUPT (not an LMDB file, truncated, foreign
 * data), SL_EVERSION (store format from a newer sluice), SL_ENOTFOUND
 * (read-only and no store there), SL_ESTOREID (identity mismatch, see
 * above), SL_EKEY (key file unsafe or malformed, a key that does not match
 * the one that sealed batches, a key the store needs is missing),
 * -errno (directory, files, threads).
 */
int sl_store_env_open(const char *dir, const sl_store_opts_t *opts,
                      sl_store_t **stp, char *errstr, size_t errlen);

/*
 * Stops accepting work, commits everything already queued (firing its
 * completions), syncs, joins the writer and frees the store. Every cursor
 * must be closed first. Must not be called from a completion callback.
 * st: ownership transferred (freed). Never fails.
 */
void sl_store_env_close(sl_store_t *st);

/* Fills info (borrowed) with a snapshot of the store's state and counters.
 * Errors: SL_EPOISONED (info is still filled), SL_ESTORE. */
int sl_store_env_info(sl_store_t *st, sl_store_info_t *info);

/* Returns the store clock now: ns on a scale that started at the wall
 * clock when the store was created and has advanced by a clock that never
 * steps since (docs/STORAGE.md). Comparable with rec.store_time_ns. Never
 * fails. */
int64_t sl_store_clock_now(sl_store_t *st);

/* Waits until everything committed so far is on disk (an explicit fsync in
 * interval mode; a no-op barrier in always mode).
 * Errors: SL_EPOISONED, SL_ECLOSED, -EROFS (read-only), -errno from fsync. */
int sl_store_env_sync(sl_store_t *st);

/* ---- streams ---------------------------------------------------------- */

/*
 * Creates stream name with conf, or updates conf of an existing stream of
 * that name; *id receives its id. Synchronous (one writer transaction).
 * name and conf are borrowed.
 * Errors: SL_ECONFIG (bad name or conf), SL_ETOOBIG (too many streams),
 * -EROFS, SL_EPOISONED, SL_ECLOSED, commit errors (-ENOSPC, -EIO, ...).
 */
int sl_store_stream_create(sl_store_t *st, const char *name,
                           const sl_store_stream_conf_t *conf, uint32_t *id);

/* Looks up the id of stream name (borrowed).
 * Errors: SL_ENOTFOUND, SL_EPOISONED. */
int sl_store_stream_lookup(sl_store_t *st, const char *name, uint32_t *id);

/* Writes up to cap stream ids (ascending) to ids (borrowed) and the total
 * number of streams to *n. Errors: SL_EPOISONED, SL_ESTORE. */
int sl_store_stream_list(sl_store_t *st, uint32_t *ids, size_t cap, size_t *n);

/* Fills stats (borrowed) for stream id, as of the last commit.
 * Errors: SL_ENOTFOUND, SL_ECORRUPT (bad stream record), SL_EPOISONED. */
int sl_store_stream_stats(sl_store_t *st, uint32_t id,
                          sl_store_stream_stats_t *stats);

/* ---- batches ---------------------------------------------------------- */

/*
 * Encodes one batch for stream: compresses payload (len bytes of a
 * serialized sluice.v1.EventBatch holding count events whose event times
 * span min_time_ns..max_time_ns) on the calling thread, with the stream's
 * dictionary if it has one. payload is borrowed (copied). On success *bp
 * is owned: free with sl_store_batch_free() or hand to
 * sl_store_group_add().
 * Errors: SL_ENOTFOUND (no such stream), SL_ETOOBIG (len over
 * SL_STORE_BATCH_MAX), SL_ECONFIG (count 0 or min > max), -ENOMEM,
 * SL_ESTORE (compressor failure), SL_EPOISONED.
 */
int sl_store_batch_new(sl_store_t *st, uint32_t stream, const void *payload,
                       size_t len, uint32_t count, int64_t min_time_ns,
                       int64_t max_time_ns, sl_store_batch_t **bp);

/* Frees a batch the caller still owns. NULL is a no-op. */
void sl_store_batch_free(sl_store_batch_t *b);

/* Returns the encoded size of b (borrowed): header, compressed payload and
 * checksum, i.e. the bytes it will take as an LMDB value. */
size_t sl_store_batch_size(const sl_store_batch_t *b);

/* ---- groups: one atomic unit of appends and cursor commits ------------ */

/* Makes an empty group. On success *gp is owned: free with
 * sl_store_group_free() or hand to sl_store_group_submit()/_commit().
 * Errors: -ENOMEM, -EROFS, SL_EPOISONED. */
int sl_store_group_new(sl_store_t *st, sl_store_group_t **gp);

/* Frees a group the caller still owns and every batch in it. NULL: no-op. */
void sl_store_group_free(sl_store_group_t *g);

/* Adds batch b to g; batches get offsets in the order added.
 * b: ownership transferred on success only. Errors: -ENOMEM, SL_ECONFIG
 * (b encoded by another store). */
int sl_store_group_add(sl_store_group_t *g, sl_store_batch_t *b);

/* Sets consumer's cursor on stream to next_offset in the same transaction
 * as g's appends (applied after them). consumer is borrowed (copied).
 * Errors: SL_ECONFIG (bad name), -ENOMEM. At commit: -ERANGE when
 * next_offset is past the stream's next offset, SL_ENOTFOUND. */
int sl_store_group_consumer_set(sl_store_group_t *g, const char *consumer,
                                uint32_t stream, uint64_t next_offset);

/* Puts key -> val in the state sub-database in g's transaction (window
 * state, aliases); val NULL deletes key. key, val borrowed (copied).
 * Errors: SL_ECONFIG (key empty or over 200 bytes), SL_ETOOBIG, -ENOMEM. */
int sl_store_group_state_put(sl_store_group_t *g, const void *key, size_t klen,
                             const void *val, size_t vlen);

/*
 * Queues g for the writer; cb(arg, ...) fires once, on the writer thread,
 * after the commit that holds g (see sl_store_done_cb). With
 * SL_STORE_SUBMIT_BLOCK the call waits for queue room; without it a full
 * queue returns SL_EBACKPRESSURE. A call that returns an error never fires
 * cb. g: ownership transferred on success only.
 * Completion errors: SL_EBACKPRESSURE (budget full under the block policy),
 * SL_ENOTFOUND (unknown stream), -ERANGE (consumer offset), SL_ETOOBIG
 * (more than 16 streams in one group), -ENOSPC, -EIO, SL_ESTORE,
 * SL_EPOISONED. A group never fails half applied.
 */
int sl_store_group_submit(sl_store_group_t *g, unsigned flags,
                          sl_store_done_cb cb, void *arg);

/*
 * Submits g (blocking for queue room) and waits for its commit. offsets
 * (borrowed, cap entries, may be NULL) receives the first offset of each
 * batch. g: ownership transferred always (freed whatever the result).
 * Errors: those of sl_store_group_submit() and of its completion.
 */
int sl_store_group_commit(sl_store_group_t *g, uint64_t *offsets, size_t cap);

/* ---- read cursors ----------------------------------------------------- */

/*
 * Opens a cursor over stream's events from offset from (inclusive) to to
 * (exclusive; SL_STORE_OFFSET_END for none). Records are whole batches, so
 * the first one may start before from. Reads use short read transactions
 * and a bounded read-ahead, never the whole backlog. On success *curp is
 * owned: close with sl_store_cursor_close().
 * Errors: SL_ENOTFOUND (no such stream), -ENOMEM, SL_EPOISONED.
 */
int sl_store_cursor_open(sl_store_t *st, uint32_t stream, uint64_t from,
                         uint64_t to, sl_store_cursor_t **curp);

/*
 * Returns the next record in rec (borrowed). The payload is valid until the
 * next call on cur or its close. A corrupt batch is not returned but
 * reported once as status SL_ECORRUPT with the offsets it covered (and sent
 * to quarantine unless read-only); events evicted under the cursor are
 * reported as SL_EEVICTED with the skipped range. Reading resumes after
 * either. A sealed batch whose GCM tag does not verify is corrupt. At the
 * end returns SL_ENOTFOUND; a later call sees new appends.
 * Errors: SL_ENOTFOUND (end), SL_EPOISONED, SL_ESTORE, -ENOMEM, SL_EKEY (the
 * next batch is sealed with a key this handle was not given: the cursor
 * stays on it, nothing is skipped or quarantined).
 */
int sl_store_cursor_next(sl_store_cursor_t *cur, sl_store_rec_t *rec);

/* Closes cur and frees it. NULL is a no-op. */
void sl_store_cursor_close(sl_store_cursor_t *cur);

/*
 * The event time (min_time_ns) of the first intact batch of stream holding
 * an offset at or after from, looking at up to 64 batches: one short read
 * transaction over the batch headers (checksummed, not decompressed, no
 * quarantine). For status figures such as the oldest undelivered event's
 * age. Errors: SL_ENOTFOUND (none), SL_EPOISONED, SL_ESTORE.
 */
int sl_store_first_time(sl_store_t *st, uint32_t stream, uint64_t from,
                        int64_t *min_time_ns);

/* ---- consumer cursors ------------------------------------------------- */

/* Reads consumer's next offset on stream into *next. consumer borrowed.
 * Errors: SL_ENOTFOUND (never committed), SL_EPOISONED. */
int sl_store_consumer_get(sl_store_t *st, const char *consumer, uint32_t stream,
                          uint64_t *next);

/* Commits consumer's next offset on stream (synchronous). Errors: those of
 * sl_store_group_consumer_set() and sl_store_group_commit(). */
int sl_store_consumer_commit(sl_store_t *st, const char *consumer,
                             uint32_t stream, uint64_t next);

/* Writes up to cap consumer cursors of stream (0: all streams) to out
 * (borrowed) and their total number to *n.
 * Errors: SL_EPOISONED, SL_ESTORE. */
int sl_store_consumer_list(sl_store_t *st, uint32_t stream,
                           sl_store_consumer_t *out, size_t cap, size_t *n);

/* ---- state ------------------------------------------------------------ */

/* Copies the state value of key into buf (cap bytes) and its length to
 * *vlen. Errors: SL_ENOTFOUND, SL_ETOOBIG (*vlen still set), SL_EPOISONED. */
int sl_store_state_get(sl_store_t *st, const void *key, size_t klen, void *buf,
                       size_t cap, size_t *vlen);

/* ---- gaps ------------------------------------------------------------- */

/* Writes up to cap gap records with seq >= from_seq, ascending, to gaps
 * (borrowed); *n receives how many. Errors: SL_ECORRUPT (bad record),
 * SL_EPOISONED. */
int sl_store_gap_list(sl_store_t *st, uint64_t from_seq, sl_store_gap_t *gaps,
                      size_t cap, size_t *n);

/* Deletes every gap record with seq < upto_seq (after the sync layer has
 * forwarded them). Synchronous. Errors: -EROFS, SL_EPOISONED, SL_ECLOSED,
 * commit errors. */
int sl_store_gap_ack(sl_store_t *st, uint64_t upto_seq);

/* Returns the static name of reason ("drop_oldest", "ttl", ...). */
const char *sl_store_reason_name(sl_store_reason_t reason);

/* ---- dictionaries ----------------------------------------------------- */

/*
 * Trains a zstd dictionary of at most dict_size bytes from the stream's own
 * recent payloads, stores it under a new dict id and makes it the stream's
 * dictionary for batches encoded from now on (older batches keep theirs).
 * *dict_id receives the id. Synchronous; runs on the calling thread.
 * Refused with SL_ECONFIG while the store seals batches (a dictionary is
 * made of event samples and is not encrypted).
 * Errors: SL_ENOTFOUND (no stream), SL_ECONFIG (too little data to train),
 * -ENOMEM, SL_ESTORE, -EROFS, SL_EPOISONED, commit errors.
 */
int sl_store_dict_train(sl_store_t *st, uint32_t stream, size_t dict_size,
                        uint32_t *dict_id);

#endif /* SL_STORE_H */
