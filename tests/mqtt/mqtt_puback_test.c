/*
 * Pins the libmosquitto behaviour that MQTT ingest's ack-after-commit rests
 * on (docs/MQTT.md): with mosquitto_threaded_set(mosq, true) and the
 * application driving mosquitto_loop_read/write itself, the PUBACK of a
 * received QoS 1 message (and every other outgoing packet) is only queued,
 * and leaves the socket on mosquitto_loop_write() and never before.
 *
 * The test plays the broker itself on a loopback socket (no Mosquitto
 * needed): it accepts the client, answers CONNECT, sends QoS 1 PUBLISH
 * packets, lets the client read them all and run its keepalive check, and
 * then asserts that not one byte came back; after mosquitto_loop_write()
 * every PUBACK must arrive, in order. On loopback a write() is in the
 * peer's receive queue when it returns, so "nothing readable right after
 * the call" is exact, not a timing guess.
 *
 * If a future libmosquitto writes PUBACKs from inside loop_read (or on its
 * own thread), this test fails and ingest_mqtt*.c must be redesigned.
 *
 * It also pins ingest/mqtt/mqtt_dup.h (the DUP flag read from libmosquitto's
 * private message struct, for redelivery recognition): odd packet ids are
 * sent with DUP set and on_message must read exactly that.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mosquitto.h>

#include "ingest/mqtt/mqtt_dup.h"
#include "tests/common/check.h"

#define N_MSGS 50

static int received, connected;

static void on_connect(struct mosquitto *m, void *o, int rc) {
  (void)m;
  (void)o;
  connected = rc == 0 ? 1 : -1;
}

static void on_message(struct mosquitto *m, void *o,
                       const struct mosquitto_message *msg) {
  (void)m;
  (void)o;
  CHECK(msg->qos == 1, "qos %d", msg->qos);
  /* Odd packet ids are sent with DUP set (ingest/mqtt/mqtt_dup.h). */
  int dup = sl_mqtt_dup(msg, sl_mqtt_dup_known());
  CHECK(dup == (msg->mid & 1),
        "DUP read as %d for mid %d (sent %d): libmosquitto's private "
        "message layout changed; fix ingest/mqtt/mqtt_dup.h",
        dup, msg->mid, msg->mid & 1);
  received++;
}

/* Reads exactly n bytes within 5 s. */
static void read_exact(int fd, uint8_t *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK(poll(&p, 1, 5000) == 1, "peer: nothing within 5 s (%zu/%zu)", got, n);
    ssize_t r = recv(fd, buf + got, n - got, 0);
    CHECK(r > 0, "peer: recv: %s", r ? strerror(errno) : "EOF");
    got += (size_t)r;
  }
}

/* Asserts the client has written nothing the peer could read. */
static void expect_silence(int fd, const char *when) {
  uint8_t b;
  ssize_t r = recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
  CHECK(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
        "client wrote byte 0x%02x %s: PUBACK (or another packet) left "
        "before mosquitto_loop_write()",
        r > 0 ? b : 0, when);
}

static void run(int version) {
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t sl = sizeof(sa);
  int lfd, sfd, rc;
  uint8_t buf[256];
  struct mosquitto *mosq;

  received = connected = 0;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK((lfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0, "socket");
  CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind");
  CHECK(listen(lfd, 1) == 0, "listen");
  CHECK(getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0, "getsockname");

  CHECK((mosq = mosquitto_new("pin-test", false, NULL)), "mosquitto_new");
  mosquitto_threaded_set(mosq, true);
  mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, version);
  mosquitto_connect_callback_set(mosq, on_connect);
  mosquitto_message_callback_set(mosq, on_message);
  rc = mosquitto_connect(mosq, "127.0.0.1", ntohs(sa.sin_port), 5);
  CHECK(rc == MOSQ_ERR_SUCCESS, "connect: %s", mosquitto_strerror(rc));
  CHECK((sfd = accept(lfd, NULL, NULL)) >= 0, "accept");

  /* Even CONNECT waits for loop_write in this mode. */
  expect_silence(sfd, "after mosquitto_connect");
  CHECK(mosquitto_want_write(mosq), "CONNECT not queued");
  CHECK(mosquitto_loop_write(mosq, 1) == MOSQ_ERR_SUCCESS, "write CONNECT");
  read_exact(sfd, buf, 2);
  CHECK(buf[0] == 0x10, "first packet 0x%02x is not CONNECT", buf[0]);
  read_exact(sfd, buf + 2, buf[1]); /* short CONNECT: one length byte */

  /* CONNACK (MQTT 5 adds an empty property length). */
  if (version == MQTT_PROTOCOL_V5) {
    uint8_t ack[] = {0x20, 3, 0, 0, 0};
    CHECK(send(sfd, ack, sizeof(ack), 0) == sizeof(ack), "send CONNACK");
  } else {
    uint8_t ack[] = {0x20, 2, 0, 0};
    CHECK(send(sfd, ack, sizeof(ack), 0) == sizeof(ack), "send CONNACK");
  }
  /* QoS 1 PUBLISH packets, mids 1..N. */
  for (int i = 1; i <= N_MSGS; i++) {
    uint8_t p[32];
    size_t n = 0;
    p[n++] = (uint8_t)(0x32 | ((i & 1) << 3)); /* DUP on odd ids */
    p[n++] = (uint8_t)(2 + 3 + 2 + (version == MQTT_PROTOCOL_V5) + 2);
    p[n++] = 0;
    p[n++] = 3;
    memcpy(p + n, "a/b", 3);
    n += 3;
    p[n++] = (uint8_t)(i >> 8);
    p[n++] = (uint8_t)i;
    if (version == MQTT_PROTOCOL_V5)
      p[n++] = 0; /* no properties */
    p[n++] = 'h';
    p[n++] = 'i';
    CHECK(send(sfd, p, n, 0) == (ssize_t)n, "send PUBLISH");
  }
  /* The client reads everything, as ingest does in a burst. */
  for (int spins = 0; received < N_MSGS && spins < 100000; spins++) {
    struct pollfd pf = {.fd = mosquitto_socket(mosq), .events = POLLIN};
    CHECK(poll(&pf, 1, 5000) == 1, "client: nothing to read (%d/%d)", received,
          N_MSGS);
    rc = mosquitto_loop_read(mosq, 1);
    CHECK(rc == MOSQ_ERR_SUCCESS, "loop_read: %s", mosquitto_strerror(rc));
    expect_silence(sfd, "inside mosquitto_loop_read");
  }
  CHECK(connected == 1, "no CONNACK seen");
  CHECK(received == N_MSGS, "received %d of %d", received, N_MSGS);
  /* Keepalive housekeeping must not flush the queue either. */
  CHECK(mosquitto_loop_misc(mosq) == MOSQ_ERR_SUCCESS, "loop_misc");
  expect_silence(sfd, "after mosquitto_loop_misc");
  CHECK(mosquitto_want_write(mosq), "no PUBACK queued");

  /* Now, and only now, every PUBACK leaves, in order. */
  for (int i = 0; i < 100 && mosquitto_want_write(mosq); i++)
    CHECK(mosquitto_loop_write(mosq, 1) == MOSQ_ERR_SUCCESS, "loop_write");
  for (int i = 1; i <= N_MSGS; i++) {
    size_t len = version == MQTT_PROTOCOL_V5 ? 4 : 4;
    read_exact(sfd, buf, 2);
    CHECK(buf[0] == 0x40, "packet 0x%02x is not PUBACK", buf[0]);
    CHECK(buf[1] >= 2 && buf[1] <= 4, "PUBACK length %u", buf[1]);
    read_exact(sfd, buf + 2, buf[1]);
    (void)len;
    CHECK(((buf[2] << 8) | buf[3]) == i, "PUBACK for mid %d, expected %d",
          (buf[2] << 8) | buf[3], i);
  }
  expect_silence(sfd, "after the PUBACKs");
  mosquitto_destroy(mosq);
  close(sfd);
  close(lfd);
  printf("libmosquitto %s: %d PUBACKs held until loop_write\n",
         version == MQTT_PROTOCOL_V5 ? "MQTT 5" : "MQTT 3.1.1", N_MSGS);
}

int main(void) {
  int maj, min, rev;
  mosquitto_lib_init();
  mosquitto_lib_version(&maj, &min, &rev);
  printf("libmosquitto %d.%d.%d\n", maj, min, rev);
  run(MQTT_PROTOCOL_V311);
  run(MQTT_PROTOCOL_V5);
  mosquitto_lib_cleanup();
  return 0;
}
