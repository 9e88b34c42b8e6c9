/* Unit tests for libsluice (include/sluice/client.h) against fake_server. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/common.h"
#include "sluice/client.h"
#include "tests/client/fake_server.h"

#define MAX_REC 4096
#define WAIT_MS 20000

/* Everything the callbacks saw. */
typedef struct rec {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t ids[MAX_REC];
  uint64_t offs[MAX_REC];
  uint32_t counts[MAX_REC];
  int errs[MAX_REC];
  size_t n;
  int connected;
  int disconnected;
  int server_errors;
  int last_server_err;
} rec_t;

static rec_t *rec_new(void) {
  rec_t *r = calloc(1, sizeof(*r));
  assert_non_null(r);
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  return r;
}

static void rec_free(rec_t *r) {
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r);
}

static void on_ack(sl_client_t *cl, uint64_t batch_id, uint64_t first_offset,
                   uint32_t count, int err, void *opaque) {
  rec_t *r = opaque;
  pthread_mutex_lock(&r->mu);
  if (r->n < MAX_REC) {
    r->ids[r->n] = batch_id;
    r->offs[r->n] = first_offset;
    r->counts[r->n] = count;
    r->errs[r->n] = err;
    r->n++;
  }
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void on_state(sl_client_t *cl, sl_client_state_t state, int err,
                     const char *reason, void *opaque) {
  rec_t *r = opaque;
  pthread_mutex_lock(&r->mu);
  if (state == SL_CLIENT_CONNECTED)
    r->connected++;
  else if (state == SL_CLIENT_DISCONNECTED)
    r->disconnected++;
  else if (state == SL_CLIENT_SERVER_ERROR) {
    r->server_errors++;
    r->last_server_err = err;
  }
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* Waits until *counter (read under r->mu) reaches want, or times out. */
static bool rec_wait(rec_t *r, const void *counter, bool is_size, size_t want,
                     int timeout_ms) {
  uint64_t end = sl_now_mono_ns() + (uint64_t)timeout_ms * 1000000u;
  bool ok;

  pthread_mutex_lock(&r->mu);
  for (;;) {
    size_t v =
        is_size ? *(const size_t *)counter : (size_t) * (const int *)counter;
    ok = v >= want;
    if (ok || sl_now_mono_ns() >= end)
      break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 10 * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
  }
  pthread_mutex_unlock(&r->mu);
  return ok;
}

static bool wait_acks(rec_t *r, size_t n) {
  return rec_wait(r, &r->n, true, n, WAIT_MS);
}

static sl_client_t *client_for(fake_server_t *fs, rec_t *r,
                               sl_client_opts_t *o) {
  sl_client_t *cl = NULL;
  o->address = fake_address(fs);
  o->ack_cb = on_ack;
  o->state_cb = on_state;
  o->opaque = r;
  o->reconnect_backoff_min_ms = 1;
  o->reconnect_backoff_max_ms = 20;
  assert_int_equal(sl_client_new(o, &cl), 0);
  return cl;
}

static void publish_n(sl_client_t *cl, int n) {
  for (int i = 0; i < n; i++)
    assert_int_equal(sl_client_publish_reading(
                         cl, "plant", "dev/temp", 0, i * 0.5,
                         SLUICE__V1__QUALITY__QUALITY_GOOD, "degC", NULL),
                     0);
}

/*
 * Every batch id 1..n acked once, in order; with contiguous offsets unless
 * the server may have stored a batch twice (a lost ack: a close with unread
 * data sends a RST, which can discard acks the client had not read yet).
 */
static void check_in_order(rec_t *r, size_t n, uint32_t per_batch,
                           bool contiguous) {
  uint64_t off = r->offs[0];
  assert_int_equal(r->n, n);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(r->errs[i], 0);
    assert_int_equal(r->ids[i], i + 1);
    if (contiguous)
      assert_int_equal(r->offs[i], off);
    assert_true(r->offs[i] >= off);
    if (per_batch)
      assert_int_equal(r->counts[i], per_batch);
    off = r->offs[i] + r->counts[i];
  }
}

static void happy_path(bool unix_socket) {
  fake_opts_t fo = {.unix_socket = unix_socket};
  fake_server_t *fs;
  rec_t *r = rec_new();
  sl_client_opts_t o;
  sl_client_stats_t st;
  char id[64], tok[64];

  assert_int_equal(fake_start(&fo, &fs), 0);
  sl_client_opts_init(&o);
  o.client_id = "test-client";
  o.token = "s3cret";
  o.max_batch_events = 10;
  o.linger_ms = 60000; /* size-based batches only, then flush */
  o.max_in_flight = 8;
  sl_client_t *cl = client_for(fs, r, &o);
  publish_n(cl, 10000);
  assert_int_equal(sl_client_flush(cl, WAIT_MS), 0);
  check_in_order(r, 1000, 10, true);
  sl_client_stats(cl, &st);
  assert_int_equal(st.published, 10000);
  assert_int_equal(st.acked, 10000);
  assert_int_equal(st.failed, 0);
  assert_int_equal(st.batches, 1000);
  assert_int_equal(st.buffered, 0);
  assert_int_equal(st.in_flight, 0);
  assert_int_equal(st.connected, 1);
  assert_int_equal(fake_received(fs, NULL, 0), 1000);
  fake_hello(fs, id, tok, sizeof(id));
  assert_string_equal(id, "test-client");
  assert_string_equal(tok, "s3cret");
  sl_client_free(cl);
  assert_int_equal(r->n, 1000); /* nothing left to fail */
  fake_stop(fs);
  rec_free(r);
}

static void test_happy_path_pipelined(void **state) {
  happy_path(false);
}

static void test_unix_socket(void **state) {
  happy_path(true);
}

static void test_linger_flush(void **state) {
  fake_opts_t fo = {0};
  fake_server_t *fs;
  rec_t *r = rec_new();
  sl_client_opts_t o;

  assert_int_equal(fake_start(&fo, &fs), 0);
  sl_client_opts_init(&o);
  o.linger_ms = 20;
  sl_client_t *cl = client_for(fs, r, &o);
  uint64_t t0 = sl_now_mono_ns();
  publish_n(cl, 3);
  assert_true(wait_acks(r, 1)); /* no flush: the linger timer sends it */
  assert_true(sl_now_mono_ns() - t0 >= 20u * 1000000u);
  assert_int_equal(r->counts[0], 3);
  assert_int_equal(r->errs[0], 0);
  sl_client_free(cl);
  fake_stop(fs);
  rec_free(r);
}

static void test_size_flush(void **state) {
  fake_opts_t fo = {0};
  fake_server_t *fs;
  rec_t *r = rec_new();
  sl_client_opts_t o;

  assert_int_equal(fake_start(&fo, &fs), 0);
  sl_client_opts_init(&o);
  o.linger_ms = 600000;
  o.max_batch_events = 5;
  sl_client_t *cl = client_for(fs, r, &o);
  publish_n(cl, 5);
  assert_true(wait_acks(r, 1));
  assert_int_equal(r->counts[0], 5);
  sl_client_free(cl);
  /* By bytes: ~40-byte events, 200-byte batches. */
  r->n = 0;
  o.max_batch_events = 1000;
  o.max_batch_bytes = 200;
  cl = client_for(fs, r, &o);
  publish_n(cl, 20);
  assert_true(wait_acks(r, 2));
  assert_true(r->counts[0] > 1 && r->counts[0] < 10);
  sl_client_free(cl); /* the open remainder fails with SL_ECLOSED */
  assert_int_equal(r->errs[r->n - 1], SL_ECLOSED);
  fake_stop(fs);
  rec_free(r);
}

static void test_backpressure(void **state) {
  fake_opts_t fo = {0};
  fake_server_t *fs;
  rec_t *r = rec_new();
  sl_client_opts_t o;
  sl_client_stats_t st;

  assert_int_equal(fake_start(&fo, &fs), 0);
  fake_stall(fs, true);
  sl_client_opts_init(&o);
  o.max_buffered_events = 10;
  o.max_batch_events = 4;
  o.linger_ms = 1;
  o.publish_timeout_ms = 100;
  sl_client_t *cl = client_for(fs, r, &o);
  publish_n(cl, 10);
  uint64_t t0 = sl_now_mono_ns();
  assert_int_equal(sl_client_publish_reading(cl, NULL, "x", 0, 1, 0, "", NULL),
                   SL_EBACKPRESSURE);
  assert_true(sl_now_mono_ns() - t0 >= 100u * 1000000u);
  sl_client_stats(cl, &st);
  assert_int_equal(st.buffered, 10);
  assert_int_equal(st.published, 10);
  /* Acks free room: publishing resumes. */
  fake_stall(fs, false);
  uint64_t end = sl_now_mono_ns() + (uint64_t)WAIT_MS * 1000000u;
  int rc;
  do
    rc = sl_client_publish_reading(cl, NULL, "x", 0, 1, 0, "", NULL);
  while (rc == SL_EBACKPRESSURE && sl_now_mono_ns() < end);
  assert_int_equal(rc, 0);
  assert_int_equal(sl_client_flush(cl, WAIT_MS), 0);
  sl_client_stats(cl, &st);
  assert_int_equal(st.acked, 11);
  sl_client_free(cl);
  fake_stop(fs);
  rec_free(r);
}

static void test_backpressure_nonblocking(void **state) {
  fake_opts_t fo = {0};
  fake_server_t *fs;
  rec_t *r = rec_new();
  sl_client_opts_t o;

  assert_int_equal(fake_start(&fo, &fs), 0);
  fake_stall(fs, true);
  sl_client_opts_init(&o);
  o.max_buffered_events = 3;
  sl_client_t *cl = client_for(fs, r, &o);
  publish_n(cl, 3);
  assert_int_equal(sl_client_publish_reading(cl, NULL, "x", 0, 1, 0, "", NULL),
                   SL_EBACKPRESSURE);
  sl_client_free(cl);
  fake_stop(fs);
  rec_free(r);
}

static void test_reconnect_resend(void **state) {
  fake_opts_t fo = {.drop_every = 3, .max_drops = 4};
  fake_server_t *fs;
  rec_t *r = rec_new();
  sl_client_opts_t o;
  sl_client_stats_t st;
  fake_pub_t pubs[200];

  assert_int_equal(fake_start(&fo, &fs), 0);
  sl_client_opts_init(&o);
  o.max_batch_events = 10;
  o.max_in_flight = 4;
  o.linger_ms = 60000;
  sl_client_t *cl = client_for(fs, r, &o);
  publish_n(cl, 500);
  assert_int_equal(sl_client_flush(cl, WAIT_MS), 0);
  /* Each batch acked exactly once to the caller, in order. */
  check_in_order(r, 50, 10, false);
  sl_client_stats(cl, &st);
  assert_int_equal(st.acked, 500);
  assert_true(st.reconnects >= 4);
  assert_true(st.resent >= 4);
  assert_true(fake_connections(fs) >= 5);
  /* The server saw resends with the same ids, in order per connection. */
  size_t n = fake_received(fs, pubs, SL_ARRAY_SIZE(pubs));
  assert_true(n > 50 && n < SL_ARRAY_SIZE(pubs));
  for (size_t i = 1; i < n; i++)
    if (pubs[i].conn == pubs[i - 1].conn)
      assert_true(pubs[i].batch_id == pubs[i - 1].batch_id + 1);
    else
      assert_true(pubs[i].batch_id <= pubs[i - 1].batch_id);
  sl_client_free(cl);
  fake_stop(fs);
  rec_free(r);
}

static void test_server_error_frame(void **state) {
  fake_opts_t fo = {.error_batch = 2};
  fake_server_t *fs;
  rec_t *r = rec_new();
  sl_client_opts_t o;
  sl_client_stats_t st;

  assert_int_equal(fake_start(&fo, &fs), 0);
  sl_client_opts_init(&o);
  o.max_batch_events = 10;
  sl_client_t *cl = client_for(fs, r, &o);
  publish_n(cl, 30);
  assert_int_equal(sl_client_flush(cl, WAIT_MS), 0);
  assert_int_equal(r->n, 3);
  assert_int_equal(r->ids[0], 1);
  assert_int_equal(r->errs[0], 0);
  assert_int_equal(r->ids[1], 2);
  assert_int_equal(r->errs[1], SL_ESTORE);
  assert_int_equal(r->counts[1], 10);
  assert_int_equal(r->ids[2], 3);
  assert_int_equal(r->errs[2], 0);
  sl_client_stats(cl, &st);
  assert_int_equal(st.failed, 10);
  assert_int_equal(st.acked, 20);
  sl_client_free(cl);
  fake_stop(fs);
  rec_free(r);
}

static void test_hello_rejected(void **state) {
  fake_opts_t fo = {.hello_error = true};
  fake_server_t *fs;
  rec_t *r = rec_new();
  sl_client_opts_t o;

  assert_int_equal(fake_start(&fo, &fs), 0);
  sl_client_opts_init(&o);
  sl_client_t *cl = client_for(fs, r, &o);
  assert_true(rec_wait(r, &r->server_errors, false, 1, WAIT_MS));
  assert_true(rec_wait(r, &r->disconnected, false, 1, WAIT_MS));
  assert_int_equal(r->last_server_err, SL_ECONFIG);
  assert_int_equal(r->connected, 0);
  sl_client_free(cl);
  fake_stop(fs);
  rec_free(r);
}

static void test_flush_timeout(void **state) {
  fake_opts_t fo = {0};
  fake_server_t *fs;
  rec_t *r = rec_new();
  sl_client_opts_t o;

  assert_int_equal(fake_start(&fo, &fs), 0);
  fake_stall(fs, true);
  sl_client_opts_init(&o);
  sl_client_t *cl = client_for(fs, r, &o);
  publish_n(cl, 5);
  uint64_t t0 = sl_now_mono_ns();
  assert_int_equal(sl_client_flush(cl, 100), -ETIMEDOUT);
  assert_true(sl_now_mono_ns() - t0 >= 100u * 1000000u);
  assert_int_equal(sl_client_flush(cl, 0), -ETIMEDOUT);
  fake_stall(fs, false);
  assert_int_equal(sl_client_flush(cl, WAIT_MS), 0);
  assert_int_equal(r->n, 1);
  assert_int_equal(r->errs[0], 0);
  sl_client_free(cl);
  fake_stop(fs);
  rec_free(r);
}

static void test_free_with_unacked(void **state) {
  fake_opts_t fo = {0};
  fake_server_t *fs;
  rec_t *r = rec_new();
  sl_client_opts_t o;
  sl_client_stats_t st;

  assert_int_equal(fake_start(&fo, &fs), 0);
  fake_stall(fs, true);
  sl_client_opts_init(&o);
  o.max_batch_events = 2;
  o.linger_ms = 60000;
  sl_client_t *cl = client_for(fs, r, &o);
  publish_n(cl, 5); /* batches 1 and 2 sent and held, 3 open */
  assert_true(rec_wait(r, &r->connected, false, 1, WAIT_MS));
  uint64_t end = sl_now_mono_ns() + (uint64_t)WAIT_MS * 1000000u;
  do
    sl_client_stats(cl, &st);
  while (st.in_flight < 2 && sl_now_mono_ns() < end);
  assert_int_equal(st.in_flight, 2);
  sl_client_free(cl);
  assert_int_equal(r->n, 3);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(r->ids[i], i + 1);
    assert_int_equal(r->errs[i], SL_ECLOSED);
  }
  assert_int_equal(r->counts[2], 1);
  fake_stop(fs);
  rec_free(r);
}

static void test_bad_options(void **state) {
  static const char *const bad[] = {"",        "nohost", "host:", ":80",
                                    "h:99999", "h:8x",   "unix:", "[::1:80"};
  sl_client_opts_t o;
  sl_client_t *cl = (sl_client_t *)&o;

  sl_client_opts_init(&o);
  for (size_t i = 0; i < SL_ARRAY_SIZE(bad); i++) {
    o.address = bad[i];
    assert_int_equal(sl_client_new(&o, &cl), SL_ECONFIG);
    assert_null(cl);
  }
  o.address = NULL;
  assert_int_equal(sl_client_new(&o, &cl), SL_ECONFIG);
  o.address = "127.0.0.1:1";
  o.max_in_flight = 0;
  assert_int_equal(sl_client_new(&o, &cl), SL_ECONFIG);
  sl_client_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_happy_path_pipelined),
      cmocka_unit_test(test_unix_socket),
      cmocka_unit_test(test_linger_flush),
      cmocka_unit_test(test_size_flush),
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_backpressure_nonblocking),
      cmocka_unit_test(test_reconnect_resend),
      cmocka_unit_test(test_server_error_frame),
      cmocka_unit_test(test_hello_rejected),
      cmocka_unit_test(test_flush_timeout),
      cmocka_unit_test(test_free_with_unacked),
      cmocka_unit_test(test_bad_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
