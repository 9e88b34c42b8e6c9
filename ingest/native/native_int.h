/*
 * Private to the native listener (ingest/native/native.c: protocol,
 * reading, backpressure; ingest/native/native_conn.c: connection lifetime,
 * listeners, node-wide limits and deadlines). Loop thread only.
 */
#ifndef SL_NATIVE_INT_H
#define SL_NATIVE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/ingest.h"
#include "wire/frame.h"

/* Why a connection is not reading (bitmask). */
enum {
  PAUSE_INFLIGHT = 1, /* too many batches waiting for their commit */
  PAUSE_OUTPUT = 2,   /* too many unsent bytes: the client reads slowly */
  PAUSE_STORE = 4,    /* the store's writer queue is full */
};

#define READ_CHUNK (64u * 1024u)
/* Largest frame before the Hello is accepted (a Hello is ~100 bytes), and
 * the read chunk until then. */
#define PREAUTH_FRAME_BYTES 4096u
/* Input buffer every authenticated connection may hold outside the
 * node-wide budget (what reading READ_CHUNK at a time needs). */
#define BASE_IN_BYTES (2u * READ_CHUNK)
#define OUTPUT_HIGH_WATER (1u << 20)
#define ARENA_BYTES (8u << 20)

typedef struct conn conn_t;

typedef struct listener {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_handle_t h;
    uv_stream_t s;
  } u;
  sl_native_t *nt;
  int is_unix;
} listener_t;

struct sl_native {
  sl_ingest_t *ic;
  listener_t tcp;
  listener_t unix_;
  int have_tcp, have_unix;
  int handles_open; /* listeners and connections not yet closed */
  conn_t *conns;    /* every open connection */
  unsigned nconns;
  int stopping;
  sl_frame_arena_t *arena; /* one decode at a time on the loop thread */
  sl_metric_t *timeouts;   /* Hello or frame not complete in time */
  sl_frame_buf_t scratch;  /* EventBatch bytes being built */
};

struct conn {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_handle_t h;
    uv_stream_t s;
  } u;
  sl_native_t *nt;
  conn_t *prev, *next;
  char peer[80];
  sl_frame_buf_t in;  /* received, not yet parsed */
  sl_frame_buf_t out; /* encoded, not yet handed to uv_write */
  int writing;        /* a uv_write is in progress */
  int hello_done;
  int goodbye;       /* the stop's Error frame is queued or written */
  int closing;       /* close requested: stop reading, flush, close */
  int closed;        /* unlinked and uv_close called */
  int handle_closed; /* uv_close finished; freed when inflight is 0 too */
  int reading;       /* uv_read_start active */
  int paused;        /* PAUSE_* bits */
  int counted;       /* holds one of the node's limits.max_connections */
  int over_budget;   /* the last buffer growth was refused */
  unsigned inflight;
  size_t charged;            /* c->in bytes taken from the node's budget */
  uint64_t accepted_ns;      /* for the Hello deadline */
  uint64_t partial_since_ns; /* a frame started arriving, 0 = none */
  uint64_t last_active_ns;
  sl_tls_conn_t *tls;  /* TLS session, NULL = plain (security/tls.h) */
  sl_frame_buf_t tout; /* TLS records not yet handed to uv_write */
  char ident[SL_AUTH_IDENT_MAX]; /* identity from Hello (security/auth.h) */
};

typedef struct pending {
  sl_done_t d;
  conn_t *c;
  size_t stream; /* index in ic->streams */
  uint32_t own;  /* events stored in that stream (pipelines may drop) */
  int piped;     /* the group carries pipeline state */
  uint64_t batch_id;
  uint32_t count;
  size_t bytes;
  uint64_t t0_ns;
} pending_t;

typedef struct wreq {
  uv_write_t req;
  uint8_t *data; /* owned buffer being written */
} wreq_t;

/* ingest_native.c */
/* A closing connection that owes nothing more (no batch in flight, no
 * output): closes it. When the daemon stops, a client that said Hello is
 * first told so (a fatal Error frame, SL_ECLOSED "shutting down", after
 * every ack); the connection closes once that frame is written. */
void native__finish(conn_t *c);
/* Parses and handles the whole frames in c->in; stops reading and closes
 * when c is closing and nothing is owed any more. */
void native__process(conn_t *c);
/* Starts or stops reading after the pause reasons or closing changed. */
void native__update_reading(conn_t *c);
/* Queues an Error frame (counted as a refusal); fatal closes after it. */
void native__send_error(conn_t *c, uint64_t batch_id, int code,
                        const char *reason, int fatal);
/* Charges c->in's capacity beyond BASE_IN_BYTES to the node's budget.
 * Returns 0 or SL_EBACKPRESSURE (nothing taken). */
int native__charge_in(conn_t *c, size_t cap);
/* Frees an empty input buffer larger than the base (its bytes go back). */
void native__trim_in(conn_t *c);

/* native_conn.c */
/* Unlinks c and closes its handle; c is freed once no commit points at
 * it any more. */
void native__close(conn_t *c);
void native__conn_free(conn_t *c);

#endif /* SL_NATIVE_INT_H */
