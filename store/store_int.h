/*
 * store internals: shared by the store module's .c files only; no other
 * module includes this header.
 */
#ifndef SL_STORE_INT_H
#define SL_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "store/store.h"

/* ---- on-disk format (docs/STORAGE.md) ---------------------------------- */

/* meta "format": whole-store layout. 2: batches may be v3 and meta holds a
 * "clock" record; a read-write open upgrades 1 to 2. */
#define STORE_FORMAT_VERSION 2u
#define STORE_BATCH_MAGIC 0x534c4221u /* "SLB!" */
#define STORE_BATCH_V1 1u
#define STORE_BATCH_V2 2u      /* v1 header + flags; SEALED adds a seal block */
#define STORE_BATCH_V3 3u      /* v2 + the store clock at append (64 bytes) */
#define STORE_FLAG_SEALED 0x1u /* v2: payload is AES-256-GCM ciphertext */
#define STORE_SEAL_LEN 16u     /* after the header: key id BE32 + nonce */
#define STORE_NONCE_LEN 12u
#define STORE_TAG_LEN 16u /* after the ciphertext: the GCM tag */
#define STORE_KEY_BYTES 32u
#define STORE_KCV_LEN 16u
#define STORE_HDR_LEN 56u    /* v1, v2 */
#define STORE_HDR_LEN_V3 64u /* v3: + store time */
#define STORE_HDR_MAX STORE_HDR_LEN_V3
#define STORE_SUM_LEN 8u
#define STORE_KEY_LEN 12u /* stream id BE32 + first offset BE64 */
#define STORE_CODEC_NONE 0u
#define STORE_CODEC_ZSTD 1u
#define STORE_STREAM_MAGIC 0x534c5331u /* "SLS1" */
#define STORE_GAP_MAGIC 0x534c4731u    /* "SLG1" */
#define STORE_DICT_MAGIC 0x534c4431u   /* "SLD1" */
#define STORE_CLOCK_MAGIC 0x534c4b31u  /* "SLK1": meta "clock" record */
#define STORE_CLOCK_LEN 56u
#define STORE_MAX_STREAMS 4096u
#define STORE_STATE_KEY_MAX 200u
#define STORE_STATE_VAL_MAX (1u << 20)

/* Header field offsets (all integers big-endian). */
#define STORE_H_MAGIC 0
#define STORE_H_VERSION 4
#define STORE_H_CODEC 5
#define STORE_H_FLAGS 6
#define STORE_H_COUNT 8
#define STORE_H_DICT 12
#define STORE_H_FIRST 16
#define STORE_H_MINT 24
#define STORE_H_MAXT 32
#define STORE_H_APPEND 40
#define STORE_H_RAWLEN 48
#define STORE_H_PAYLEN 52
#define STORE_H_STIME 56 /* v3: store clock at append */

/* A decoded batch header; the payload is a view into the LMDB value. */
typedef struct store_hdr {
  uint32_t version;      /* batch format version */
  uint32_t codec;        /* STORE_CODEC_* */
  uint32_t flags;        /* reserved, 0 */
  uint32_t count;        /* events in the batch */
  uint32_t dict_id;      /* zstd dictionary, 0 = none */
  uint64_t first_offset; /* offset of the first event */
  int64_t min_time_ns;   /* event time range */
  int64_t max_time_ns;
  int64_t append_time_ns; /* node clock at append */
  int64_t store_time_ns;  /* v3: store clock at append; 0 before v3 */
  uint32_t hdr_len;       /* STORE_HDR_LEN or STORE_HDR_LEN_V3 */
  uint32_t raw_len;       /* uncompressed payload bytes */
  uint32_t pay_len;       /* stored payload bytes */
  const uint8_t *payload; /* view into the value, valid with its txn */
  const uint8_t *hdr;     /* the header bytes (STORE_HDR_LEN), same view */
  bool sealed;            /* v2 with STORE_FLAG_SEALED */
  uint32_t key_id;        /* sealed: key that sealed it */
  const uint8_t *nonce;   /* sealed: STORE_NONCE_LEN bytes */
  const uint8_t *tag;     /* sealed: STORE_TAG_LEN bytes */
} store_hdr_t;

/* One encryption key, as loaded at open; cleansed at close. */
typedef struct store_key {
  uint32_t id;                  /* from the key file, >= 1 */
  uint8_t key[STORE_KEY_BYTES]; /* AES-256 key */
  uint8_t kcv[STORE_KCV_LEN];   /* check value kept in meta */
} store_key_t;

/* ---- objects ----------------------------------------------------------- */

struct sl_store_batch {
  sl_store_t *st;  /* store that encoded it (dictionary ids are per store) */
  uint32_t stream; /* target stream id */
  uint32_t count;  /* events */
  size_t len;      /* value bytes: header + payload + checksum */
  uint8_t *buf;    /* the LMDB value, patched by the writer */
};

/* What a queued item asks the writer to do. */
typedef enum store_op {
  STORE_OP_GROUP = 0,  /* appends, consumer cursors, state puts */
  STORE_OP_STREAM,     /* create or update a stream */
  STORE_OP_GAP_ACK,    /* delete gap records below a seq */
  STORE_OP_QUARANTINE, /* move a corrupt batch aside (fire and forget) */
  STORE_OP_DICT,       /* store a dictionary and select it */
  STORE_OP_SYNC        /* barrier; fsync in interval mode */
} store_op_t;

typedef struct store_cset {
  uint32_t stream;                  /* stream id */
  uint64_t next;                    /* next offset to deliver */
  char name[SL_STORE_NAME_MAX + 1]; /* consumer */
} store_cset_t;

typedef struct store_kv {
  uint8_t *key; /* owned */
  size_t klen;
  uint8_t *val; /* owned; NULL = delete */
  size_t vlen;
} store_kv_t;

/* A synchronous caller waiting on st->q_done; lives on its stack. */
typedef struct store_waiter {
  int done;          /* set by the writer under q_lock */
  int status;        /* result */
  uint64_t *offsets; /* where to copy first offsets, may be NULL */
  size_t cap;        /* entries in offsets */
  uint32_t id;       /* STORE_OP_STREAM/DICT result */
} store_waiter_t;

struct sl_store_group {
  sl_store_t *st;             /* owner store */
  store_op_t op;              /* what to do */
  sl_store_batch_t **batches; /* owned batches, in offset order */
  uint64_t *offsets;          /* first offsets, filled by the writer */
  size_t nbatches, bcap;
  store_cset_t *csets; /* consumer cursor updates */
  size_t ncsets, ccap;
  store_kv_t *kvs; /* state puts */
  size_t nkvs, kcap;
  sl_store_done_cb cb;    /* async completion, may be NULL */
  void *arg;              /* cb argument */
  store_waiter_t *waiter; /* sync completion, may be NULL */
  int status;             /* writer's verdict for this item */
  /* Arguments of control ops. */
  char name[SL_STORE_NAME_MAX + 1]; /* STREAM: name */
  sl_store_stream_conf_t conf;      /* STREAM: settings */
  uint32_t stream;                  /* QUARANTINE, DICT: stream id */
  uint64_t u64;                     /* QUARANTINE: offset; GAP_ACK: seq */
  uint8_t *blob;                    /* DICT: dictionary bytes (owned) */
  size_t blen;
};

/* Persistent per-stream state (the streams sub-db record). */
typedef struct store_stream {
  uint32_t id;
  char name[SL_STORE_NAME_MAX + 1];
  sl_store_stream_conf_t conf;
  uint32_t dict_id;      /* dictionary for new batches, 0 = none */
  uint64_t first_offset; /* oldest stored offset (== next when empty) */
  uint64_t next_offset;  /* next offset to assign */
  uint64_t bytes;        /* stored value bytes */
  uint64_t events;       /* stored events */
  uint64_t batches;      /* stored batches */
  uint64_t evicted_events[SL_STORE_REASON_COUNT];
  uint64_t evicted_bytes[SL_STORE_REASON_COUNT];
} store_stream_t;

/* A dictionary, loaded lazily, freed at close. */
typedef struct store_dict {
  uint32_t id;
  uint32_t stream;
  ZSTD_CDict *cdict; /* for encoders, NULL until needed */
  ZSTD_DDict *ddict; /* for readers, NULL until needed */
} store_dict_t;

/* State only the writer thread touches. */
typedef struct store_writer {
  store_stream_t *streams; /* index id-1: ids are dense and never reused */
  size_t nstreams, cap;
  uint8_t last_key[STORE_KEY_LEN]; /* >= the log's last key: MDB_APPEND */
  bool have_last_key;
  uint64_t gap_seq;        /* next gap record seq */
  sl_store_gap_t open_gap; /* last gap written this txn, for coalescing */
  bool open_gap_valid;
  int64_t newest_append_ns; /* newest append time ever written */
  bool unsynced;            /* interval mode: commits since last sync */
  uint64_t last_sync_mono;
  uint64_t next_maint_mono;
} store_writer_t;

#define STORE_CCTX_POOL 8

/* The store clock (clock.c). base_* are fixed at open; the rest is under
 * lock (the writer samples, any thread reads). */
typedef struct store_clock {
  sl_store_clock_cb wall_fn; /* never NULL after open */
  sl_store_clock_cb boot_fn;
  void *arg;
  int64_t base_store; /* store clock at open ... */
  int64_t base_boot;  /* ... when boot_fn read this */
  pthread_mutex_t lock;
  int64_t last_wall, last_boot; /* last sample, for step detection */
  int64_t persisted_boot;       /* writer: boot time of the last record */
  bool dirty;                   /* writer: a record is due */
  uint8_t boot_id[16];          /* this boot; zero when unknown */
  sl_store_clock_info_t info;   /* counters; times filled on read */
} store_clock_t;

struct sl_store {
  MDB_env *env;
  MDB_dbi dbi_streams, dbi_log, dbi_cursors, dbi_state, dbi_meta;
  MDB_dbi dbi_dlq, dbi_quarantine, dbi_gaps, dbi_dicts;
  sl_store_opts_t opts; /* as opened, validated */
  bool rdonly;
  int lock_fd;    /* flock'd sluice.lock, -1 when read-only */
  int data_fd;    /* LMDB's data.mdb descriptor, for fstat */
  uint32_t psize; /* LMDB page size */
  char node_id[33];
  uint32_t format_version;
  atomic_int poisoned;

  /* Identity (ident.c). */
  char *dir;           /* the directory as opened (owned) */
  bool have_side;      /* DIR/store.id was read */
  uint8_t side_id[16]; /* its id */
  int64_t side_created_ns;
  uint8_t store_id[16]; /* meta "node_id" (the store's identity) */
  int64_t created_ns;
  bool write_side; /* (re)write store.id after the open commits */
  /* High-water marks read from store.id: stream id -> next offset that
   * was durable when it was written (owned; freed after the open). */
  struct store_hwm {
    uint32_t stream;
    uint64_t next;
  } * side_hwm;
  size_t nside_hwm;
  int64_t side_hwm_ns;    /* when they were written */
  uint64_t next_hwm_mono; /* writer: next periodic store.id refresh */

  /* Encryption (crypt.c). keys is sorted by id; seal is the highest. */
  store_key_t *keys;
  size_t nkeys;
  const store_key_t *seal; /* NULL: new batches are plain */
  char key_src[300];       /* "key file PATH" / "environment variable X" */
  void *aes;               /* EVP_CIPHER * for AES-256-GCM, fetched once */
  uint8_t nonce_base[STORE_NONCE_LEN];
  _Atomic uint64_t nonce_ctr;

  /* Readers hold it shared while a read txn is live; the writer takes it
   * exclusive to resize the map (LMDB forbids live txns then). */
  pthread_rwlock_t map_lock;
  _Atomic uint64_t map_size;

  /* Stream table for callers' threads: ids, names, conf, dict ids as of the
   * last commit. The writer updates it after commits. */
  pthread_mutex_t streams_lock;
  store_stream_t *streams;
  size_t nstreams, scap;

  /* Compression contexts for callers' threads, and loaded dictionaries. */
  pthread_mutex_t pool_lock;
  ZSTD_CCtx *cctx_pool[STORE_CCTX_POOL];
  int ncctx;
  store_dict_t *dicts;
  size_t ndicts, dcap;

  /* Writer queue: a fixed ring, never grows. */
  pthread_mutex_t q_lock;
  pthread_cond_t q_nonempty; /* writer waits for work */
  pthread_cond_t q_nonfull;  /* blocked submitters */
  pthread_cond_t q_done;     /* synchronous waiters */
  sl_store_group_t **q;
  uint32_t q_cap, q_head, q_len;
  uint32_t q_busy; /* groups the writer took and has not completed */
  bool stopping;
  bool writer_started;
  pthread_t writer;
  store_writer_t w;
  store_clock_t clock;

  /* Counters. */
  _Atomic uint64_t limit_bytes;
  _Atomic uint64_t used_bytes;
  _Atomic uint64_t commits, commit_errors, corrupt_seen, map_grows;
  _Atomic uint64_t readers_cleared, quarantined;
  atomic_int last_error;
};

/* ---- base.c: below every other part ------------------------------------ */

/* Maps an LMDB or errno result to a store code, poisoning st on panic. */
int store__err(sl_store_t *st, int rc);
/* Begins a short read txn (map_lock held shared until store__rtxn_end). */
int store__rtxn_begin(sl_store_t *st, MDB_txn **txn);
void store__rtxn_end(sl_store_t *st, MDB_txn *txn);
/* Grows the map (no txn may be open in this thread). */
int store__map_grow(sl_store_t *st);
/* Live bytes from B-tree page counts in txn. */
uint64_t store__used_bytes(sl_store_t *st, MDB_txn *txn);
int store__check(sl_store_t *st);
void store__poison(sl_store_t *st);
/* printf into errstr (errlen bytes); a NULL or empty errstr is skipped. */
__attribute__((format(printf, 3, 4))) void
store__seterr(char *errstr, size_t errlen, const char *fmt, ...);
int store__meta_put(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen,
                    const void *val, size_t len);

/* ---- batch_hdr.c: keys and header decoding (pure) ---------------------- */

void store__key(uint8_t key[STORE_KEY_LEN], uint32_t stream, uint64_t off);
/* Decodes and fully checks a batch value (magic, version, lengths,
 * checksum). Never trusts the input. Returns 0 or SL_ECORRUPT/SL_EVERSION. */
int store__hdr_decode(const void *val, size_t len, store_hdr_t *h);
/* Decodes the header only (no checksum): for eviction bookkeeping. */
int store__hdr_peek(const void *val, size_t len, store_hdr_t *h);

/* ---- batch.c ----------------------------------------------------------- */

/* Writer: patches offset, append time and (v3) store time, then the
 * checksum. */
void store__batch_seal(sl_store_batch_t *b, uint64_t first, int64_t now_ns,
                       int64_t store_ns);
/* Decrypts (when sealed) and decompresses h's payload into *buf (grown as
 * needed). Errors: SL_ECORRUPT, SL_EKEY (sealed with a key not loaded),
 * -ENOMEM. */
int store__batch_inflate(sl_store_t *st, ZSTD_DCtx *dctx, uint32_t stream,
                         const store_hdr_t *h, uint8_t **buf, size_t *cap);
ZSTD_CCtx *store__cctx_get(sl_store_t *st);
void store__cctx_put(sl_store_t *st, ZSTD_CCtx *cctx);
/* Dictionary handles, borrowed, valid until close. NULL if missing. */
const ZSTD_CDict *store__dict_cdict(sl_store_t *st, uint32_t id);
const ZSTD_DDict *store__dict_ddict(sl_store_t *st, uint32_t id);
void store__dicts_free(sl_store_t *st);

/* ---- ident.c ----------------------------------------------------------- */

/* Before LMDB opens: reads DIR/store.id, refuses a missing or empty
 * data.mdb when it exists. Sets the directory and file modes. */
int store__ident_pre(sl_store_t *st, char *errstr, size_t errlen);
/* Inside the open txn: compares or creates the id in meta. */
int store__ident_check(sl_store_t *st, MDB_txn *txn, bool fresh, char *errstr,
                       size_t errlen);
/* After load_state: refuses a data.mdb older than store.id's high-water
 * marks (a stale copy restored), then writes store.id when needed. */
int store__ident_post(sl_store_t *st, char *errstr, size_t errlen);
/* Writer thread, after a durable commit or sync: rewrites store.id with
 * every stream's next offset, at most every STORE_HWM_PERIOD_NS unless
 * force. Best effort: a failure is retried at the next period. */
void store__ident_hwm(sl_store_t *st, bool force);
#define STORE_HWM_PERIOD_NS (10ull * 1000000000ull)

/* ---- crypt.c ----------------------------------------------------------- */

/* Loads the keys named by opts (none: st->seal stays NULL). */
int store__keys_load(sl_store_t *st, char *errstr, size_t errlen);
/* Inside the open txn: checks keys against the check values in meta and
 * records the sealing key's. */
int store__keys_check(sl_store_t *st, MDB_txn *txn, char *errstr,
                      size_t errlen);
void store__keys_free(sl_store_t *st);
/* Seals len payload bytes at p in place with st->seal; the header (already
 * written, offset and append time zero) and stream are authenticated.
 * Writes the seal block before p and the tag after p + len. */
int store__seal(sl_store_t *st, uint32_t stream, uint8_t *hdr, uint8_t *p,
                size_t len);
/* Decrypts h's payload into out (pay_len bytes) and checks the tag.
 * Returns 0, SL_EKEY (key id not loaded) or SL_ECORRUPT (tag). */
int store__unseal(sl_store_t *st, uint32_t stream, const store_hdr_t *h,
                  uint8_t *out);

/* ---- stream.c ---------------------------------------------------------- */

int store__stream_decode(const void *val, size_t len, store_stream_t *s);
size_t store__stream_encode(const store_stream_t *s, uint8_t *buf, size_t cap);
/* Loads every stream record into *out (owned, free()). */
int store__streams_load(sl_store_t *st, MDB_txn *txn, store_stream_t **out,
                        size_t *n);
/* Copies the caller-visible stream table entry for id. */
int store__stream_get(sl_store_t *st, uint32_t id, store_stream_t *s);
/* Writer: replaces the shared table with the writer's view. */
int store__streams_publish(sl_store_t *st);
int store__stream_put(sl_store_t *st, MDB_txn *txn, const store_stream_t *s);

/* ---- writer.c / group.c ------------------------------------------------ */

int store__writer_start(sl_store_t *st);
void store__writer_stop(sl_store_t *st);
/* Queues an item; block waits for room. Ownership transferred on success. */
int store__enqueue(sl_store_t *st, sl_store_group_t *g, bool block);
/* Queues g and waits for its completion; g is always consumed. */
int store__submit_wait(sl_store_t *st, sl_store_group_t *g, store_waiter_t *wt);
sl_store_group_t *store__item_new(sl_store_t *st, store_op_t op);
void store__item_free(sl_store_group_t *g);

/* ---- budget.c ---------------------------------------------------------- */

/* Makes room for need bytes for stream s per policies; SL_EBACKPRESSURE if
 * it cannot. Runs inside the writer's txn. */
int store__budget_reserve(sl_store_t *st, MDB_txn *txn, const uint32_t *ids,
                          const uint64_t *need, size_t n);
/* Expires batches by TTL (bounded work). */
int store__ttl_sweep(sl_store_t *st, MDB_txn *txn, int64_t store_now_ns);
/* Deletes the oldest batch of stream s, recording a gap when undelivered. */
int store__evict_oldest(sl_store_t *st, MDB_txn *txn, store_stream_t *s,
                        sl_store_reason_t reason, uint64_t *freed);
/* Appends (or extends) a gap record. */
int store__gap_record(sl_store_t *st, MDB_txn *txn, uint32_t stream,
                      uint64_t first, uint64_t count, int64_t mint,
                      int64_t maxt, sl_store_reason_t reason);
/* Lowest committed consumer cursor on stream, or 0 when none. */
int store__min_cursor(sl_store_t *st, MDB_txn *txn, uint32_t stream,
                      uint64_t *min);
/* Offset after the batch at key (next batch's first or stream next). */
uint64_t store__batch_end(sl_store_t *st, MDB_txn *txn, uint32_t stream,
                          uint64_t first, uint64_t stream_next);

/* ---- clock.c ----------------------------------------------------------- */

/* Before LMDB opens: picks the clocks, reads the boot id. */
void store__clock_init(sl_store_t *st);
void store__clock_free(sl_store_t *st);
/* Inside the open txn: reads the clock record and carries the store clock
 * across the stop (docs/STORAGE.md); a fresh or upgraded store starts at
 * the wall clock. Writes the record when txn is read-write.
 * Errors: SL_ECORRUPT (bad record), LMDB codes. */
int store__clock_open(sl_store_t *st, MDB_txn *txn, char *errstr,
                      size_t errlen);
/* Writer: reads both clocks, counts a wall clock step. *wall and *store
 * (may be NULL) receive the wall and store clock now. */
void store__clock_sample(sl_store_t *st, int64_t *wall, int64_t *store);
/* Writer, inside a write txn: puts the clock record when one is due (at
 * most every STORE_CLOCK_PERSIST_NS, or after a step). */
int store__clock_persist(sl_store_t *st, MDB_txn *txn);
void store__clock_info(sl_store_t *st, sl_store_clock_info_t *ci);
/* A wall clock that moves this much more or less than the boot clock
 * between two samples has stepped. */
#define STORE_CLOCK_STEP_NS (2ll * 1000000000ll)
#define STORE_CLOCK_PERSIST_NS (1ll * 1000000000ll)
/* 2024-01-01T00:00:00Z: a node clock before this is not trusted. */
#define STORE_CLOCK_FLOOR_NS (1704067200ll * 1000000000ll)

/* ---- quarantine.c ------------------------------------------------------ */

/* Reader side: asks the writer to move the batch aside (never blocks). */
void store__quarantine_request(sl_store_t *st, uint32_t stream, uint64_t first);
/* Writer side: moves it if it is still corrupt. */
int store__quarantine_apply(sl_store_t *st, MDB_txn *txn, uint32_t stream,
                            uint64_t first);

#endif /* SL_STORE_INT_H */
