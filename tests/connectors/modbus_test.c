/*
 * End-to-end test of sluice-modbus: the real daemon, real Modbus TCP
 * servers (sl_test_modbus_server, libmodbus) and the connector binary, with
 * every check made on what the daemon stored.
 *
 *   modbus_test SLUICE SLUICE_MODBUS MODBUS_SERVER modbus
 *
 * Devices: "plc" (13 points of every table and type; one at an unmapped
 * address answers exception 2), "plc2" (one point, a second server), and
 * "broken" (a server answering every request with exception 4). The test
 * kills plc's server, checks the device-down status and bad readings while
 * plc2 keeps being polled, brings the server back on the same port with a
 * changed register, and checks the device-up status and the new value.
 * Then plc2's server is frozen (SIGSTOP: connections are accepted by the
 * kernel but never answered, the timeout path) and thawed again while plc
 * keeps being polled.
 */
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/connectors/e2e.h"

#define Q_GOOD SLUICE__V1__QUALITY__QUALITY_GOOD
#define Q_BAD SLUICE__V1__QUALITY__QUALITY_BAD

/* The points and the readings the registers of modbus_values.h must give,
 * computed the way the connector must compute them (raw * scale + offset).
 */
typedef struct tp {
  const char *name, *yaml, *unit;
  double v1, v2; /* generation 1 and 2 of the server */
  int is_bool;
} tp_t;

static const tp_t tps[] = {
    {"temp", "table: holding, address: 0, type: int16, scale: 0.1", "C",
     (double)-123 * 0.1 + 0, (double)-122 * 0.1 + 0, 0},
    {"pressure", "address: 1, type: uint16, scale: 0.01", "bar",
     5000.0 * 0.01 + 0, 5000.0 * 0.01 + 0, 0},
    {"energy", "address: 2, type: int32", "Wh", -100000.0, -100000.0, 0},
    {"count", "address: 4, type: uint32, word_order: little, scale: 0.001", "",
     3000000000.0 * 0.001 + 0, 3000000000.0 * 0.001 + 0, 0},
    {"flow", "address: 6, type: float32", "l/min", 21.5, 21.5, 0},
    {"level", "address: 8, type: float32, byte_order: little", "m", -3.25,
     -3.25, 0},
    {"total", "address: 10, type: float64", "m3", 12345.678, 12345.678, 0},
    {"answer", "address: 60, type: uint16, offset: 0.5", "", 42.0 * 1 + 0.5,
     42.0 * 1 + 0.5, 0},
    {"ambient",
     "table: input, address: 0, type: int16, scale: 0.1, "
     "offset: -10",
     "C", 250.0 * 0.1 + -10, 250.0 * 0.1 + -10, 0},
    {"running", "table: coil, address: 3", "", 1, 1, 1},
    {"door", "table: discrete, address: 5", "", 0, 0, 1},
    {"alarm", "table: discrete, address: 6", "", 1, 1, 1},
};
#define NTP (sizeof(tps) / sizeof(tps[0]))

static const char *server_bin;

static pid_t start_server(int port, int gen, int exceptions, int *bound,
                          const char *log) {
  char ps[16], gs[16], line[64];
  int fd;
  snprintf(ps, sizeof(ps), "%d", port);
  snprintf(gs, sizeof(gs), "%d", gen);
  char *argv[] = {(char *)server_bin,
                  "--port",
                  ps,
                  "--gen",
                  gs,
                  exceptions ? "--exceptions" : NULL,
                  NULL};
  pid_t pid = e2e_spawn(argv, log, &fd);
  e2e_read_line(fd, line, sizeof(line), 15000);
  close(fd);
  CHECK(sscanf(line, "port %d", bound) == 1 && *bound > 0, "server said %s",
        line);
  return pid;
}

static void write_modbus_config(const char *path, int p1, int p2, int px) {
  FILE *f = fopen(path, "w");
  CHECK(f, "open %s", path);
  fprintf(f,
          "address: \"127.0.0.1:%d\"\n"
          "client_id: modbus-test\n"
          "stream: readings\n"
          "status_stream: status\n"
          "log_level: debug\n"
          "devices:\n"
          "  - name: plc\n"
          "    host: 127.0.0.1\n"
          "    port: %d\n"
          "    unit_id: 7\n"
          "    connect_timeout: 1s\n"
          "    response_timeout: 1s\n"
          "    backoff_min: 50ms\n"
          "    backoff_max: 300ms\n"
          "    points:\n",
          native_port, p1);
  for (size_t i = 0; i < NTP; i++)
    fprintf(f, "      - {name: %s, %s, unit: \"%s\", interval: 100ms}\n",
            tps[i].name, tps[i].yaml, tps[i].unit);
  fprintf(f,
          "      - {name: bad, address: 500, type: uint16, interval: 100ms}\n"
          "  - name: plc2\n"
          "    host: 127.0.0.1\n"
          "    port: %d\n"
          "    connect_timeout: 300ms\n"
          "    response_timeout: 300ms\n"
          "    backoff_min: 50ms\n"
          "    backoff_max: 300ms\n"
          "    points:\n"
          "      - {name: pressure, address: 1, type: uint16, scale: 0.01, "
          "interval: 100ms}\n"
          "  - name: broken\n"
          "    host: 127.0.0.1\n"
          "    port: %d\n"
          "    points:\n"
          "      - {name: temp, address: 0, type: int16, interval: 100ms}\n",
          p2, px);
  fclose(f);
}

/* ---- views of the store ------------------------------------------------- */

/* The i-th status event of source, or NULL. */
static const Sluice__V1__Event *status_at(const e2e_events_t *st,
                                          const char *src, size_t i) {
  for (size_t k = 0; k < st->n; k++)
    if (!strcmp(st->ev[k]->source, src) && i-- == 0)
      return st->ev[k];
  return NULL;
}

static size_t count(const e2e_events_t *rd, const char *src, int quality,
                    int64_t after_ns) {
  size_t n = 0;
  for (size_t k = 0; k < rd->n; k++) {
    const Sluice__V1__Event *e = rd->ev[k];
    if (!strcmp(e->source, src) && (int)e->reading->quality == quality &&
        e->time_ns > after_ns)
      n++;
  }
  return n;
}

static int has_value(const e2e_events_t *rd, const char *src, double v) {
  for (size_t k = 0; k < rd->n; k++)
    if (!strcmp(rd->ev[k]->source, src) &&
        rd->ev[k]->reading->quality == Q_GOOD &&
        rd->ev[k]->reading->double_value == v)
      return 1;
  return 0;
}

/* Polls the store (every 50 ms, up to 15 s) until cond(rd, st) holds. */
static void await(int (*cond)(const e2e_events_t *, const e2e_events_t *),
                  const char *what) {
  uint64_t deadline = now_ms() + 15000;
  for (;;) {
    e2e_events_t rd, st;
    e2e_read("readings", &rd);
    e2e_read("status", &st);
    int ok = cond(&rd, &st);
    e2e_events_free(&rd);
    e2e_events_free(&st);
    if (ok)
      return;
    CHECK(now_ms() < deadline, "timed out waiting for %s", what);
    usleep(50000); /* polling the store for a condition, with a deadline */
  }
}

static int64_t t_down;

static int all_up(const e2e_events_t *rd, const e2e_events_t *st) {
  char src[64];
  for (size_t i = 0; i < NTP; i++) {
    snprintf(src, sizeof(src), "plc/%s", tps[i].name);
    if (!count(rd, src, Q_GOOD, 0))
      return 0;
  }
  return count(rd, "plc/bad", Q_BAD, 0) && count(rd, "broken/temp", Q_BAD, 0) &&
         count(rd, "plc2/pressure", Q_GOOD, 0) && status_at(st, "plc", 0) &&
         status_at(st, "plc2", 0) && status_at(st, "broken", 0);
}

static int plc_down(const e2e_events_t *rd, const e2e_events_t *st) {
  const Sluice__V1__Event *e = status_at(st, "plc", 1);
  if (!e)
    return 0;
  t_down = e->time_ns;
  return count(rd, "plc/temp", Q_BAD, 0) == 1;
}

static int plc2_alive(const e2e_events_t *rd, const e2e_events_t *st) {
  (void)st;
  return count(rd, "plc2/pressure", Q_GOOD, t_down) >= 3;
}

static int plc_back(const e2e_events_t *rd, const e2e_events_t *st) {
  return status_at(st, "plc", 2) && has_value(rd, "plc/temp", tps[0].v2);
}

static int64_t t_frozen;

static int plc2_frozen(const e2e_events_t *rd, const e2e_events_t *st) {
  const Sluice__V1__Event *e = status_at(st, "plc2", 1);
  if (!e)
    return 0;
  t_frozen = e->time_ns;
  return count(rd, "plc2/pressure", Q_BAD, 0) == 1;
}

static int plc_alive(const e2e_events_t *rd, const e2e_events_t *st) {
  (void)st;
  return count(rd, "plc/temp", Q_GOOD, t_frozen) >= 3;
}

static int plc2_back(const e2e_events_t *rd, const e2e_events_t *st) {
  const Sluice__V1__Event *e = status_at(st, "plc2", 2);
  return e && count(rd, "plc2/pressure", Q_GOOD, e->time_ns - 1) >= 1;
}

/* ---- final checks ------------------------------------------------------- */

static void check_point(const e2e_events_t *rd, const tp_t *t) {
  char src[64];
  size_t before = 0, after = 0, bad = 0;
  snprintf(src, sizeof(src), "plc/%s", t->name);
  for (size_t k = 0; k < rd->n; k++) {
    const Sluice__V1__Event *e = rd->ev[k];
    const Sluice__V1__Reading *r = e->reading;
    if (strcmp(e->source, src))
      continue;
    if (r->quality == Q_BAD) {
      const char *why = e2e_attr(e, "error");
      CHECK(why && !strncmp(why, "device down: ", 13), "%s: bad reason %s", src,
            why ? why : "(none)");
      CHECK(r->value_case == SLUICE__V1__READING__VALUE__NOT_SET,
            "%s: a bad reading carries a value", src);
      bad++;
      continue;
    }
    CHECK(r->quality == Q_GOOD, "%s: quality %d", src, r->quality);
    CHECK(!strcmp(r->unit, t->unit), "%s: unit %s, want %s", src, r->unit,
          t->unit);
    if (t->is_bool) {
      CHECK(r->value_case == SLUICE__V1__READING__VALUE_BOOL_VALUE &&
                r->bool_value == (t->v1 != 0),
            "%s: want bool %g", src, t->v1);
    } else {
      double want = bad ? t->v2 : t->v1;
      CHECK(r->value_case == SLUICE__V1__READING__VALUE_DOUBLE_VALUE &&
                r->double_value == want,
            "%s: value %.17g, want exactly %.17g", src, r->double_value, want);
    }
    if (bad)
      after++;
    else
      before++;
  }
  CHECK(bad == 1, "%s: %zu bad readings, want 1 (at the device-down)", src,
        bad);
  CHECK(before && after, "%s: %zu readings before the outage, %zu after", src,
        before, after);
}

static void check_store(void) {
  e2e_events_t rd, st;
  const char *want_status[3] = {"up", "down", "up"};
  e2e_read("readings", &rd);
  e2e_read("status", &st);

  for (size_t i = 0; i < NTP; i++)
    check_point(&rd, &tps[i]);
  /* No source the config does not name. */
  for (size_t k = 0; k < rd.n; k++) {
    const char *s = rd.ev[k]->source;
    int known = !strcmp(s, "plc/bad") || !strcmp(s, "plc2/pressure") ||
                !strcmp(s, "broken/temp");
    for (size_t i = 0; i < NTP && !known; i++)
      known = !strncmp(s, "plc/", 4) && !strcmp(s + 4, tps[i].name);
    CHECK(known, "unexpected source %s", s);
    CHECK(rd.ev[k]->body_case == SLUICE__V1__EVENT__BODY_READING,
          "non-reading in the readings stream");
  }
  /* An exception is bad quality once, not a dead device. */
  CHECK(count(&rd, "plc/bad", Q_BAD, 0) == 1 &&
            count(&rd, "plc/bad", Q_GOOD, 0) == 0,
        "plc/bad: want exactly one bad reading");
  for (size_t k = 0; k < rd.n; k++) {
    const char *why = e2e_attr(rd.ev[k], "error");
    if (!strcmp(rd.ev[k]->source, "plc/bad"))
      CHECK(why && strstr(why, "modbus exception 2"), "plc/bad: %s",
            why ? why : "(none)");
    if (!strcmp(rd.ev[k]->source, "broken/temp"))
      CHECK(why && strstr(why, "modbus exception 4"), "broken/temp: %s",
            why ? why : "(none)");
  }
  CHECK(count(&rd, "broken/temp", Q_BAD, 0) == 1 &&
            count(&rd, "broken/temp", Q_GOOD, 0) == 0,
        "broken/temp: want exactly one bad reading");
  CHECK(count(&rd, "plc2/pressure", Q_BAD, 0) == 1,
        "plc2: want one bad reading (frozen)");
  for (size_t k = 0; k < rd.n; k++) {
    const Sluice__V1__Event *e = rd.ev[k];
    const char *why = e2e_attr(e, "error");
    if (strcmp(e->source, "plc2/pressure"))
      continue;
    if (e->reading->quality == Q_BAD)
      CHECK(why && strstr(why, "device down: ") && strstr(why, "timed out"),
            "plc2 bad reason: %s", why ? why : "(none)");
    else
      CHECK(e->reading->double_value == 5000.0 * 0.01 + 0,
            "plc2/pressure = %.17g", e->reading->double_value);
  }

  /* Status: plc up, down, up; the others up once and never down. */
  for (size_t i = 0; i < 3; i++) {
    const Sluice__V1__Event *e = status_at(&st, "plc", i);
    CHECK(e && e->body_case == SLUICE__V1__EVENT__BODY_STATUS &&
              !strcmp(e->status->state, want_status[i]),
          "plc status %zu: want %s", i, want_status[i]);
  }
  CHECK(!status_at(&st, "plc", 3), "plc: more than 3 status events");
  for (size_t i = 0; i < 3; i++) {
    const Sluice__V1__Event *e = status_at(&st, "plc2", i);
    CHECK(e && !strcmp(e->status->state, want_status[i]),
          "plc2 status %zu: want %s", i, want_status[i]);
  }
  CHECK(!status_at(&st, "plc2", 3), "plc2: more than 3 status events");
  CHECK(status_at(&st, "broken", 0) &&
            !strcmp(status_at(&st, "broken", 0)->status->state, "up") &&
            !status_at(&st, "broken", 1),
        "broken: want exactly one status event (up)");
  e2e_events_free(&rd);
  e2e_events_free(&st);
}

static const char *modbus_bin;

SL_SCENARIO(modbus) {
  char cfg[400], line[512];
  int p1, p2, px, st, planned = 0;
  pid_t s1, s2, sx, conn;

  e2e_config();
  start_daemon(NULL);
  s1 = start_server(0, 1, 0, &p1, "server1.log");
  s2 = start_server(0, 1, 0, &p2, "server2.log");
  sx = start_server(0, 1, 1, &px, "serverx.log");
  snprintf(cfg, sizeof(cfg), "%s/modbus.yaml", dir);
  write_modbus_config(cfg, p1, p2, px);
  {
    char *av[] = {(char *)modbus_bin, "-c", cfg, "--check", NULL};
    st = e2e_wait(e2e_spawn(av, "check.log", NULL), 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "--check exit status %d", st);
  }
  char *av[] = {(char *)modbus_bin, "-c", cfg, NULL};
  conn = e2e_spawn(av, "modbus.log", NULL);

  await(all_up, "every point read, the exceptions reported, 3 devices up");
  /* The plan: 13 points of plc in 6 requests (holding 0..13, holding 60,
   * holding 500, input 0, coil 3, discrete 5..6). */
  snprintf(line, sizeof(line), "%s/modbus.log", dir);
  FILE *f = fopen(line, "r");
  while (f && fgets(line, sizeof(line), f))
    if (strstr(line, "device plc: 13 points in 6 requests per round"))
      planned = 1;
  if (f)
    fclose(f);
  CHECK(planned, "contiguous registers are not read in one request");

  /* The device disappears. */
  st = e2e_stop(s1, SIGKILL);
  await(plc_down, "plc down: status event and one bad reading per point");
  await(plc2_alive, "plc2 still polled while plc is down");
  /* It comes back on the same port, with holding register 0 changed. */
  s1 = start_server(p1, 2, 0, &p1, "server1b.log");
  await(plc_back, "plc up again with the new value");
  /* plc2's server stops answering (timeouts), then answers again. */
  CHECK(kill(s2, SIGSTOP) == 0, "SIGSTOP");
  await(plc2_frozen, "plc2 down on timeouts, one bad reading");
  await(plc_alive, "plc still polled while plc2 times out");
  CHECK(kill(s2, SIGCONT) == 0, "SIGCONT");
  await(plc2_back, "plc2 up again");

  st = e2e_stop(conn, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
        "sluice-modbus exit status %d (1: events not acked)", st);
  e2e_stop(s1, SIGKILL);
  e2e_stop(s2, SIGKILL);
  e2e_stop(sx, SIGKILL);
  stop_daemon_ok();
  check_store();
}

static int setup(int argc, char **argv) {
  (void)argc;
  modbus_bin = argv[2];
  server_bin = argv[3];
  return 0;
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "modbus", "SLUICE_MODBUS MODBUS_SERVER",
                      setup);
}
