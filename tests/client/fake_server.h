/*
 * A fake sluice daemon for the client tests: one thread, one listening
 * socket on an ephemeral TCP port (127.0.0.1:0) or a Unix socket in a fresh
 * temporary directory, speaking the native protocol with the frame codec.
 * It answers Hello with HelloAck and Publish with Ack (made-up offsets,
 * counting from 0), and can misbehave on request.
 */
#ifndef SL_TESTS_FAKE_SERVER_H
#define SL_TESTS_FAKE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fake_server fake_server_t;

typedef struct fake_opts {
  bool unix_socket;          /* listen on a Unix socket instead of TCP */
  int drop_every;            /* close the connection, unacked, on every Nth
                                Publish of a connection (0: never) */
  int max_drops;             /* stop dropping after this many drops */
  uint64_t error_batch;      /* answer this batch id with Error(SL_ESTORE) */
  bool hello_error;          /* answer Hello with a fatal Error(SL_ECONFIG) */
  uint32_t max_batch_events; /* HelloAck's limit (0: none) */
} fake_opts_t;

/* A Publish as the server received it. */
typedef struct fake_pub {
  uint64_t batch_id;
  uint32_t count;
  int conn; /* connection number, from 1 */
} fake_pub_t;

int fake_start(const fake_opts_t *opts, fake_server_t **out);
void fake_stop(fake_server_t *fs);
/* "127.0.0.1:PORT" or "unix:/tmp/.../s"; valid until fake_stop(). */
const char *fake_address(fake_server_t *fs);
/* Holds acks back (true) or sends the held ones and resumes (false). */
void fake_stall(fake_server_t *fs, bool stall);
/* Copies up to max received publishes in arrival order; returns the total. */
size_t fake_received(fake_server_t *fs, fake_pub_t *out, size_t max);
int fake_connections(fake_server_t *fs);
/* The last Hello's client_id and token (copied into the caller's buffers). */
void fake_hello(fake_server_t *fs, char *id, char *token, size_t len);

#endif
