/*
 * libsluice: publish events into a sluice daemon over the native protocol
 * (TCP or a Unix socket; wire format in docs/PROTOCOL.md).
 *
 * Model. Events go into batches (one open batch at a time, per stream). A
 * batch is sealed when it reaches max_batch_events or max_batch_bytes, when
 * it has lingered linger_ms, on sl_client_flush(), or when an event for
 * another stream arrives. Sealed batches are sent as Publish frames, up to
 * max_in_flight unacknowledged at once (pipelining), by one I/O thread per
 * client. Each batch ends in exactly one call of the ack callback.
 *
 * Delivery contract (at-least-once):
 *   - An ack (ack_cb with err == 0) means the daemon has the whole batch in
 *     a committed, durable store transaction: it survives a daemon crash.
 *   - When the connection drops, every batch not yet acked is resent, in
 *     batch-id order, with the same batch ids, after reconnecting. If the
 *     daemon had committed a batch but its ack was lost, the daemon may
 *     store that batch twice: consumers that need exactly-once must
 *     deduplicate (e.g. on source + time_ns).
 *   - Per client, batches are acked to the caller in batch-id order as long
 *     as the daemon acks in order (the sluice daemon does).
 *   - A batch the daemon rejects with an Error frame fails with that code
 *     (ack_cb err < 0) and is not retried by the library.
 *   - sl_client_free() fails every batch still unacked with SL_ECLOSED.
 *
 * Threads. All functions except sl_client_free() may be called from any
 * thread concurrently. Callbacks run on the client's I/O thread, never with
 * an internal lock held; they must not block for long (they delay all I/O).
 * From a callback, sl_client_publish() never blocks (it returns
 * SL_EBACKPRESSURE instead of waiting) and sl_client_flush() returns
 * -EDEADLK.
 *
 * The library never logs: connection state changes and connection-level
 * errors are reported through state_cb.
 *
 * Errors are 0 or negative codes from common/common.h (SL_E*, -errno);
 * sl_strerror() describes them.
 */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <stdint.h>

#include "sluice/v1/event.pb-c.h"

typedef struct sl_client sl_client_t;

/* Connection states reported through state_cb. */
typedef enum sl_client_state {
  /* Handshake done (HelloAck received); batches flow. */
  SL_CLIENT_CONNECTED = 1,
  /* The connection is gone (err, reason say why); a reconnect is scheduled
   * after the backoff. Unacked batches will be resent. */
  SL_CLIENT_DISCONNECTED = 2,
  /* The daemon sent a connection-level Error frame (batch_id 0); err is its
   * code. A fatal one is followed by SL_CLIENT_DISCONNECTED. */
  SL_CLIENT_SERVER_ERROR = 3,
} sl_client_state_t;

/*
 * Called exactly once per batch, on the I/O thread. err == 0: durably stored as
 * offsets first_offset .. first_offset + count - 1 of the stream. err < 0: the
 * batch failed (an Error frame's code, SL_ETOOBIG when the batch exceeds the
 * daemon's limits, SL_ECLOSED on sl_client_free()); first_offset is 0 and count
 * is the number of events in the batch.
 */
typedef void (*sl_client_ack_cb)(sl_client_t *cl, uint64_t batch_id,
                                 uint64_t first_offset, uint32_t count, int err,
                                 void *opaque);

/* Called on the I/O thread on state changes; reason is borrowed for the
 * call only and may be "". */
typedef void (*sl_client_state_cb)(sl_client_t *cl, sl_client_state_t state,
                                   int err, const char *reason, void *opaque);

/*
 * Client options. Fill with sl_client_opts_init() (which sets the defaults
 * shown), then override. Strings are borrowed for the sl_client_new() call
 * only (the client copies them).
 */
typedef struct sl_client_opts {
  /* "host:port", "[v6addr]:port" or "unix:/path/to/socket". Required. */
  const char *address;
  /* Names this client in the daemon's logs and metrics. Default "libsluice".
   */
  const char *client_id;
  /* Token for listeners that require one (docs/security/tls.md). Default ""
   * (none). */
  const char *token;
  /* TLS to a TCP address (docs/security/tls.md). Setting tls_ca_file turns
   * it on: the daemon's certificate must verify against that CA file (PEM)
   * and name the address's host (or tls_server_name when set). tls_cert_file
   * and tls_key_file: a client certificate for mutual TLS (its subject CN
   * can stand for the token). Default NULL: plain TCP. Unix sockets are
   * always plain. */
  const char *tls_ca_file;
  const char *tls_cert_file;
  const char *tls_key_file;
  const char *tls_server_name;
  /* Size knobs: a batch is sealed at this many events (default 1000) or
   * serialized bytes (default 256 KiB). A single larger event goes alone. */
  uint32_t max_batch_events;
  uint32_t max_batch_bytes;
  /* Latency knob: longest time an open batch waits for more events
   * (default 5 ms; 0 seals as soon as the I/O thread sees the batch). */
  uint32_t linger_ms;
  /* Pipelining: sent-but-unacked batches at most (default 8). */
  uint32_t max_in_flight;
  /* Bound on local memory: events published but not yet acked or failed
   * (default 100000). When reached, publish waits up to publish_timeout_ms
   * (default 0: fail at once) and then returns SL_EBACKPRESSURE; -1 waits
   * without limit. */
  uint32_t max_buffered_events;
  int32_t publish_timeout_ms;
  /* Reconnect backoff: jittered exponential from min to max
   * (defaults 100 ms and 10 s); reset by a successful handshake. */
  uint32_t reconnect_backoff_min_ms;
  uint32_t reconnect_backoff_max_ms;
  /* Time allowed for connect + handshake (default 5 s). */
  uint32_t connect_timeout_ms;
  /* Largest frame accepted from the daemon (default 1 MiB). */
  uint32_t max_frame_bytes;
  sl_client_ack_cb ack_cb;     /* optional */
  sl_client_state_cb state_cb; /* optional */
  void *opaque;                /* passed to the callbacks */
} sl_client_opts_t;

/* Counters; a consistent snapshot taken under the client's lock. */
typedef struct sl_client_stats {
  uint64_t published;  /* events accepted by sl_client_publish() */
  uint64_t acked;      /* events acked by the daemon */
  uint64_t failed;     /* events whose batch failed */
  uint64_t batches;    /* batches sealed */
  uint64_t resent;     /* batches sent again after a reconnect */
  uint64_t reconnects; /* connections established after the first */
  uint32_t in_flight;  /* batches sent and awaiting their ack */
  uint32_t buffered;   /* events published, not yet acked or failed */
  int connected;       /* 1 when the handshake is done */
} sl_client_stats_t;

/* Sets every option to its default; address stays NULL. */
void sl_client_opts_init(sl_client_opts_t *opts);

/*
 * Creates a client and starts its I/O thread, which connects in the
 * background (a daemon that is down is not an error: publishing works and
 * batches wait for the connection, bounded by max_buffered_events).
 * Returns 0, SL_ECONFIG (bad address or option; nothing is started),
 * -ENOMEM, or an -errno from thread or pipe creation.
 * Returns owned in *out; free with sl_client_free().
 */
int sl_client_new(const sl_client_opts_t *opts, sl_client_t **out);

/*
 * Stops the I/O thread and frees the client. Batches not yet acked are
 * failed with SL_ECLOSED through ack_cb (on the I/O thread, in batch-id
 * order, before this returns); call sl_client_flush() first to wait for
 * them instead.
 * Must not be called concurrently with other calls on cl. Called from a
 * callback, it detaches instead: the I/O thread frees the client when the
 * callback returns. NULL is a no-op.
 */
void sl_client_free(sl_client_t *cl);

/*
 * Serializes ev (borrowed: not referenced after the call) into the open
 * batch for stream (NULL or "" means the listener's default stream).
 * On success *batch_id (if not NULL) is the id of the batch the event went
 * into; ack_cb reports that batch's fate.
 * Returns 0; SL_EBACKPRESSURE when max_buffered_events are outstanding and
 * publish_timeout_ms passed; SL_ETOOBIG for an event larger than the frame
 * limit; SL_ECLOSED after sl_client_free() started; -ENOMEM.
 * A failing call stores nothing and fires no callback.
 */
int sl_client_publish(sl_client_t *cl, const char *stream,
                      const Sluice__V1__Event *ev, uint64_t *batch_id);

/*
 * Convenience for connectors: publishes one reading with a double value.
 * source and unit are borrowed; time_ns 0 means "now" (wall clock).
 * Returns as sl_client_publish().
 */
int sl_client_publish_reading(sl_client_t *cl, const char *stream,
                              const char *source, int64_t time_ns, double value,
                              Sluice__V1__Quality quality, const char *unit,
                              uint64_t *batch_id);

/*
 * Seals the open batch and waits until every event published before the
 * call is acked or failed. Returns 0 (whatever the individual outcomes:
 * see ack_cb), -ETIMEDOUT after timeout_ms (-1 waits without limit),
 * -EDEADLK from a callback, SL_ECLOSED when the client is shutting down.
 */
int sl_client_flush(sl_client_t *cl, int timeout_ms);

/* Fills *stats with a snapshot of the client's counters. */
void sl_client_stats(sl_client_t *cl, sl_client_stats_t *stats);

#endif /* SLUICE_CLIENT_H */
