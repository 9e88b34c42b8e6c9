/*
 * End-to-end test of sluice-opcua against two independent OPC UA servers:
 * asyncua (Python, PyPI) and node-opcua (Node.js, npm), installed into a
 * cache by scripts/opcua-servers.sh and started here with a known address
 * space (tests/connectors/opcua/server.py, server.js). Every check is made
 * on what the real daemon stored.
 *
 *   opcua_test SLUICE SLUICE_OPCUA SERVERS_SCRIPT SERVER_DIR asyncua|nodeopcua
 *
 * The connector reaches the server through a TCP proxy inside the server
 * process, so the test can cut the connection. Steps: every item's first
 * value arrives with its type (Double, Int32, Boolean, String, UInt64,
 * Float, Int16, Byte, DateTime, Double[]), NodeIds of all four forms and a
 * browse path resolve, an unknown node and a wrong path give one bad
 * reading each; a value the test writes arrives with its source and server
 * timestamps; a deadband holds back a small change; a bad status becomes a
 * bad reading with the status code; the connection is cut while values
 * change (down, up, and the last value the server holds arrives; with
 * node-opcua, whose session outlives the connection, every change arrives
 * through TransferSubscriptions and Republish); the server restarts (down,
 * up, new values arrive). Without the servers (no network to install them)
 * the test exits 77 with the reason.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/connectors/e2e.h"

#define Q_GOOD SLUICE__V1__QUALITY__QUALITY_GOOD
#define Q_BAD SLUICE__V1__QUALITY__QUALITY_BAD

static const char *opcua_bin, *servers_script, *server_dir;
static char cache_dir[512];
static int is_node; /* node-opcua: namespace 1, sessions survive a cut */
static int ns;

typedef struct srv {
  pid_t pid;
  int in, out;
  int port, proxy;
} srv_t;

static void start_server(srv_t *s, int port, int proxy, const char *log) {
  char script[600], interp[600], ps[16], pps[16], line[128];
  snprintf(ps, sizeof(ps), "%d", port);
  snprintf(pps, sizeof(pps), "%d", proxy);
  if (is_node) {
    snprintf(interp, sizeof(interp), "/usr/bin/env");
    snprintf(script, sizeof(script), "%s/server.js", server_dir);
    char *argv[] = {interp,    "node",         script, "--port", ps,
                    "--proxy", "--proxy-port", pps,    NULL};
    s->pid = e2e_spawn_io(argv, log, &s->in, &s->out);
  } else {
    snprintf(interp, sizeof(interp), "%s/venv/bin/python", cache_dir);
    snprintf(script, sizeof(script), "%s/server.py", server_dir);
    char *argv[] = {interp,    script,         "--port", ps,
                    "--proxy", "--proxy-port", pps,      NULL};
    s->pid = e2e_spawn_io(argv, log, &s->in, &s->out);
  }
  /* node-opcua logs to stdout too: the line that matters starts "port". */
  do
    e2e_read_line(s->out, line, sizeof(line), 60000);
  while (strncmp(line, "port ", 5));
  CHECK(sscanf(line, "port %d proxy %d", &s->port, &s->proxy) == 2 &&
            s->port > 0 && s->proxy > 0,
        "server said %s", line);
}

/* One command to the server; its answer must be "ok". */
static void cmd(srv_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void cmd(srv_t *s, const char *fmt, ...) {
  char buf[256], line[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
  va_end(ap);
  buf[n++] = '\n';
  CHECK(write(s->in, buf, (size_t)n) == n, "write to the server");
  do
    e2e_read_line(s->out, line, sizeof(line), 15000);
  while (strcmp(line, "ok") && strncmp(line, "error", 5));
  CHECK(!strcmp(line, "ok"), "server: %.*s -> %s", n - 1, buf, line);
}

static void write_opcua_config(const char *path, int port) {
  FILE *f = fopen(path, "w");
  CHECK(f, "open %s", path);
  fprintf(f,
          "address: \"127.0.0.1:%d\"\n"
          "client_id: opcua-test\n"
          "stream: readings\n"
          "status_stream: status\n"
          "log_level: debug\n"
          "servers:\n"
          "  - name: plant\n"
          "    url: opc.tcp://127.0.0.1:%d/sluice/\n"
          "    timeout: 2s\n"
          "    publishing_interval: 100ms\n"
          "    keepalive_count: 5\n"
          "    lifetime_count: 300\n"
          "    session_timeout: 60s\n"
          "    channel_lifetime: 3s\n"
          "    backoff_min: 100ms\n"
          "    backoff_max: 500ms\n"
          "    items:\n"
          "      - {name: temp, node: \"ns=%d;s=Plant.Temp\", interval: 50ms, "
          "unit: C}\n"
          "      - {name: temp_db, node: \"ns=%d;s=Plant.Temp\", interval: "
          "50ms, deadband: "
          "absolute, deadband_value: 5}\n"
          "      - {name: count, node: \"ns=%d;i=1001\", interval: 0, "
          "queue_size: 100}\n"
          "      - {name: running, node: "
          "\"ns=%d;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63\"}\n"
          "      - {name: label, node: \"ns=%d;b=AQIDBA==\"}\n"
          "      - {name: big, node: \"ns=%d;s=Plant.Big\"}\n"
          "      - {name: ratio, node: \"ns=%d;s=Plant.Ratio\"}\n"
          "      - {name: small, node: \"ns=%d;s=Plant.Small\"}\n"
          "      - {name: octet, node: \"ns=%d;s=Plant.Octet\"}\n"
          "      - {name: when, node: \"ns=%d;s=Plant.When\"}\n"
          "      - {name: vector, node: \"ns=%d;s=Plant.Vector\"}\n"
          "      - {name: sensor, node: \"ns=%d;s=Plant.Sensor\"}\n"
          "      - {name: blob, node: \"ns=%d;s=Plant.Blob\"}\n"
          "      - {name: speed, path: \"%d:Plant/%d:Line1/%d:Speed\"}\n"
          "      - {name: speed_poll, path: \"%d:Plant/%d:Line1/%d:Speed\", "
          "mode: periodic, interval: 200ms}\n"
          "      - {name: missing, node: \"ns=%d;s=Plant.Nope\"}\n"
          "      - {name: nopath, path: \"%d:Plant/%d:Nope\"}\n",
          native_port, port, ns, ns, ns, ns, ns, ns, ns, ns, ns, ns, ns, ns, ns,
          ns, ns, ns, ns, ns, ns, ns, ns, ns);
  fclose(f);
}

/* ---- views of the store ------------------------------------------------- */

static const Sluice__V1__Event *nth(const e2e_events_t *ev, const char *src,
                                    size_t i) {
  for (size_t k = 0; k < ev->n; k++)
    if (!strcmp(ev->ev[k]->source, src) && i-- == 0)
      return ev->ev[k];
  return NULL;
}

static size_t count(const e2e_events_t *rd, const char *src, int quality) {
  size_t n = 0;
  for (size_t k = 0; k < rd->n; k++)
    if (!strcmp(rd->ev[k]->source, src) &&
        (quality < 0 || (int)rd->ev[k]->reading->quality == quality))
      n++;
  return n;
}

static const Sluice__V1__Event *with_double(const e2e_events_t *rd,
                                            const char *src, double v) {
  for (size_t k = 0; k < rd->n; k++)
    if (!strcmp(rd->ev[k]->source, src) &&
        rd->ev[k]->reading->value_case ==
            SLUICE__V1__READING__VALUE_DOUBLE_VALUE &&
        rd->ev[k]->reading->double_value == v)
      return rd->ev[k];
  return NULL;
}

static int has_int(const e2e_events_t *rd, const char *src, int64_t v) {
  for (size_t k = 0; k < rd->n; k++)
    if (!strcmp(rd->ev[k]->source, src) &&
        rd->ev[k]->reading->value_case ==
            SLUICE__V1__READING__VALUE_INT_VALUE &&
        rd->ev[k]->reading->int_value == v)
      return 1;
  return 0;
}

static size_t nstatus(const e2e_events_t *st) {
  return count(st, "plant", -1);
}

typedef int (*cond_fn)(const e2e_events_t *, const e2e_events_t *);

static void await(cond_fn cond, const char *what, int timeout_ms) {
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    e2e_events_t rd, st;
    e2e_read("readings", &rd);
    e2e_read("status", &st);
    int ok = cond(&rd, &st);
    e2e_events_free(&rd);
    e2e_events_free(&st);
    if (ok)
      return;
    if (now_ms() >= deadline && getenv("SL_TEST_KEEP_LOG")) {
      char c[600];
      snprintf(c, sizeof(c), "cp %s/opcua.log %s", dir,
               getenv("SL_TEST_KEEP_LOG"));
      if (system(c)) {
      }
    }
    CHECK(now_ms() < deadline, "timed out waiting for %s", what);
    usleep(50000); /* polling the store for a condition, with a deadline */
  }
}

static const char *const first_items[] = {
    "plant/temp",  "plant/temp_db",    "plant/count",  "plant/running",
    "plant/label", "plant/big",        "plant/ratio",  "plant/small",
    "plant/octet", "plant/when",       "plant/vector", "plant/sensor",
    "plant/speed", "plant/speed_poll", "plant/blob"};

static int all_first(const e2e_events_t *rd, const e2e_events_t *st) {
  for (size_t i = 0; i < sizeof(first_items) / sizeof(first_items[0]); i++)
    if (!count(rd, first_items[i], Q_GOOD))
      return 0;
  return count(rd, "plant/missing", Q_BAD) &&
         count(rd, "plant/nopath", Q_BAD) && nstatus(st) >= 1;
}

static int temp_30(const e2e_events_t *rd, const e2e_events_t *st) {
  (void)st;
  return with_double(rd, "plant/temp", 30.25) &&
         with_double(rd, "plant/temp", 32.0) &&
         with_double(rd, "plant/temp_db", 30.25);
}

static int sensor_bad(const e2e_events_t *rd, const e2e_events_t *st) {
  (void)st;
  return count(rd, "plant/sensor", Q_BAD) >= 1;
}

static size_t want_status;
static int64_t want_count;

static int status_n(const e2e_events_t *rd, const e2e_events_t *st) {
  (void)rd;
  return nstatus(st) >= want_status;
}

static int count_back(const e2e_events_t *rd, const e2e_events_t *st) {
  return nstatus(st) >= want_status && has_int(rd, "plant/count", want_count);
}

static int count_all(const e2e_events_t *rd, const e2e_events_t *st) {
  (void)st;
  return has_int(rd, "plant/count", 42) && has_int(rd, "plant/count", 43) &&
         has_int(rd, "plant/count", 44);
}

static int temp_50(const e2e_events_t *rd, const e2e_events_t *st) {
  return nstatus(st) >= want_status && with_double(rd, "plant/temp", 50.0);
}

static int poll_many(const e2e_events_t *rd, const e2e_events_t *st) {
  (void)st;
  return count(rd, "plant/speed_poll", Q_GOOD) >= 5;
}

/* ---- final checks ------------------------------------------------------- */

static void check_first(const e2e_events_t *rd, const char *src, int datatype,
                        int value_case, const char *ua_type) {
  const Sluice__V1__Event *e = nth(rd, src, 0);
  CHECK(e && e->body_case == SLUICE__V1__EVENT__BODY_READING, "%s: none", src);
  const Sluice__V1__Reading *r = e->reading;
  const char *t = e2e_attr(e, "opcua_type");
  CHECK(r->quality == Q_GOOD && r->status_code == 0, "%s: quality %d code %x",
        src, r->quality, r->status_code);
  CHECK((int)r->datatype == datatype, "%s: datatype %d, want %d", src,
        r->datatype, datatype);
  CHECK((int)r->value_case == value_case, "%s: value case %d, want %d", src,
        r->value_case, value_case);
  CHECK(t && !strcmp(t, ua_type), "%s: opcua_type %s, want %s", src,
        t ? t : "(none)", ua_type);
  CHECK(e2e_attr(e, "server_time_ns") && e->time_ns > 0,
        "%s: timestamps missing", src);
}

static void check_store(int64_t t_set0, int64_t t_set1) {
  e2e_events_t rd, st;
  const Sluice__V1__Event *e;
  e2e_read("readings", &rd);
  e2e_read("status", &st);

  check_first(&rd, "plant/temp", SLUICE__V1__DATA_TYPE__DATA_TYPE_DOUBLE,
              SLUICE__V1__READING__VALUE_DOUBLE_VALUE, "Double");
  CHECK(nth(&rd, "plant/temp", 0)->reading->double_value == 21.5 &&
            !strcmp(nth(&rd, "plant/temp", 0)->reading->unit, "C"),
        "temp: first value or unit");
  check_first(&rd, "plant/count", SLUICE__V1__DATA_TYPE__DATA_TYPE_INT32,
              SLUICE__V1__READING__VALUE_INT_VALUE, "Int32");
  CHECK(nth(&rd, "plant/count", 0)->reading->int_value == -7, "count: %lld",
        (long long)nth(&rd, "plant/count", 0)->reading->int_value);
  check_first(&rd, "plant/running", SLUICE__V1__DATA_TYPE__DATA_TYPE_BOOLEAN,
              SLUICE__V1__READING__VALUE_BOOL_VALUE, "Boolean");
  CHECK(nth(&rd, "plant/running", 0)->reading->bool_value, "running: false");
  check_first(&rd, "plant/label", SLUICE__V1__DATA_TYPE__DATA_TYPE_STRING,
              SLUICE__V1__READING__VALUE_STRING_VALUE, "String");
  CHECK(!strcmp(nth(&rd, "plant/label", 0)->reading->string_value, "hello"),
        "label");
  check_first(&rd, "plant/big", SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT64,
              SLUICE__V1__READING__VALUE_UINT_VALUE, "UInt64");
  CHECK(nth(&rd, "plant/big", 0)->reading->uint_value == UINT64_MAX, "big");
  check_first(&rd, "plant/ratio", SLUICE__V1__DATA_TYPE__DATA_TYPE_FLOAT,
              SLUICE__V1__READING__VALUE_DOUBLE_VALUE, "Float");
  CHECK(nth(&rd, "plant/ratio", 0)->reading->double_value == 0.25, "ratio");
  check_first(&rd, "plant/small", SLUICE__V1__DATA_TYPE__DATA_TYPE_INT16,
              SLUICE__V1__READING__VALUE_INT_VALUE, "Int16");
  CHECK(nth(&rd, "plant/small", 0)->reading->int_value == -300, "small");
  check_first(&rd, "plant/octet", SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT8,
              SLUICE__V1__READING__VALUE_INT_VALUE, "Byte");
  CHECK(nth(&rd, "plant/octet", 0)->reading->int_value == 200, "octet");
  check_first(&rd, "plant/when", SLUICE__V1__DATA_TYPE__DATA_TYPE_DATETIME,
              SLUICE__V1__READING__VALUE_INT_VALUE, "DateTime");
  CHECK(nth(&rd, "plant/when", 0)->reading->int_value == 1704164645000ll,
        "when: %lld", (long long)nth(&rd, "plant/when", 0)->reading->int_value);
  check_first(&rd, "plant/vector", SLUICE__V1__DATA_TYPE__DATA_TYPE_UNSPECIFIED,
              SLUICE__V1__READING__VALUE_STRING_VALUE, "Double[]");
  CHECK(!strcmp(nth(&rd, "plant/vector", 0)->reading->string_value,
                "[1.5,-2,3.25]"),
        "vector: %s", nth(&rd, "plant/vector", 0)->reading->string_value);
  /* 150000 bytes: the Publish response came in several chunks. */
  check_first(&rd, "plant/blob", SLUICE__V1__DATA_TYPE__DATA_TYPE_STRING,
              SLUICE__V1__READING__VALUE_STRING_VALUE, "String");
  CHECK(strlen(nth(&rd, "plant/blob", 0)->reading->string_value) == 150000 &&
            !strncmp(nth(&rd, "plant/blob", 0)->reading->string_value + 149990,
                     "0123456789", 10),
        "blob: %zu bytes",
        strlen(nth(&rd, "plant/blob", 0)->reading->string_value));
  check_first(&rd, "plant/speed", SLUICE__V1__DATA_TYPE__DATA_TYPE_DOUBLE,
              SLUICE__V1__READING__VALUE_DOUBLE_VALUE, "Double");
  CHECK(nth(&rd, "plant/speed", 0)->reading->double_value == 12.5, "speed");

  /* The written value: source timestamp within the write, server's too. */
  e = with_double(&rd, "plant/temp", 30.25);
  CHECK(e->time_ns >= t_set0 - 1000000000ll && e->time_ns <= t_set1,
        "temp 30.25: source time %lld outside [%lld, %lld]",
        (long long)e->time_ns, (long long)t_set0, (long long)t_set1);
  CHECK(atoll(e2e_attr(e, "server_time_ns")) >= t_set0 - 1000000000ll,
        "temp 30.25: server time");

  /* Refused items: one bad reading each with the status name. */
  for (int k = 0; k < 2; k++) {
    const char *src = k ? "plant/nopath" : "plant/missing";
    e = nth(&rd, src, 0);
    const char *why = e2e_attr(e, "error");
    CHECK(count(&rd, src, Q_GOOD) == 0, "%s: a good reading", src);
    CHECK(why && strstr(why, k ? "browse path" : "CreateMonitoredItems") &&
              strstr(why, k ? "BadNoMatch" : "BadNodeIdUnknown"),
          "%s: error %s", src, why ? why : "(none)");
  }
  /* The bad status: quality bad, the code, its name, no value. */
  for (size_t k = 0; (e = nth(&rd, "plant/sensor", k)); k++)
    if (e->reading->quality == Q_BAD && e->reading->status_code) {
      CHECK(e->reading->status_code == 0x808C0000u &&
                e->reading->value_case == SLUICE__V1__READING__VALUE__NOT_SET &&
                e2e_attr(e, "error") &&
                !strcmp(e2e_attr(e, "error"), "BadSensorFailure"),
            "sensor: bad reading code %x", e->reading->status_code);
      break;
    }
  CHECK(e, "sensor: no reading with BadSensorFailure");
  /* Status: up, down (cut), up, down (restart), up. */
  static const char *const want[] = {"up", "down", "up", "down", "up"};
  for (size_t i = 0; i < 5; i++) {
    e = nth(&st, "plant", i);
    CHECK(e && e->body_case == SLUICE__V1__EVENT__BODY_STATUS &&
              !strcmp(e->status->state, want[i]),
          "status %zu: want %s", i, want[i]);
  }
  /* Nothing else went down: the channel renewals (3 s tokens) were
   * seamless. */
  CHECK(!nth(&st, "plant", 5), "more than 5 status events");
  e2e_events_free(&rd);
  e2e_events_free(&st);
}

/* `sluice-opcua browse`: the address space listed; a password is refused
 * over policy None unless allowed; node-opcua offers no user name login
 * without encryption (a clear error), asyncua accepts one in plain text. */
static void check_browse(int port) {
  char url[128], log[400];
  int st;
  snprintf(url, sizeof(url), "opc.tcp://127.0.0.1:%d/sluice/", port);
  char *anon[] = {(char *)opcua_bin, "browse", url, NULL};
  st = e2e_wait(e2e_spawn(anon, "browse.log", NULL), 30000);
  snprintf(log, sizeof(log), "%s/browse.log", dir);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "browse exit status %d", st);
  {
    char line[160];
    snprintf(line, sizeof(line),
             "ns=%d;s=Plant.Temp\t%d:Plant/%d:temp\tDouble\t21.5", ns, ns, ns);
    CHECK(file_count(log, line) == 1, "browse: no line %s", line);
    snprintf(line, sizeof(line), "ns=%d;i=2001\t%d:Plant/%d:Line1/%d:Speed", ns,
             ns, ns, ns);
    CHECK(file_count(log, line) == 1, "browse: no line %s", line);
  }
  CHECK(file_count(log, "Plant.Temp") == 1 && file_count(log, "Line1/") == 1 &&
            file_count(log, "Double[]") == 1,
        "browse output lacks the test variables");
  setenv("SL_TEST_OPCUA_PW", "s3cret", 1);
  char *refused[] = {(char *)opcua_bin,  "browse",   url,
                     "--user",           "operator", "--password-env",
                     "SL_TEST_OPCUA_PW", NULL};
  st = e2e_wait(e2e_spawn(refused, "browse_pw1.log", NULL), 30000);
  snprintf(log, sizeof(log), "%s/browse_pw1.log", dir);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 &&
            file_count(log, is_node ? "offers no user name login"
                                    : "refusing to send a password over an "
                                      "unencrypted channel") == 1 &&
            file_count(log, "s3cret") == 0,
        "a plaintext password was not refused (status %d)", st);
  char *allowed[] = {(char *)opcua_bin,
                     "browse",
                     url,
                     "--user",
                     "operator",
                     "--password-env",
                     "SL_TEST_OPCUA_PW",
                     "--allow-plaintext-password",
                     NULL};
  st = e2e_wait(e2e_spawn(allowed, "browse_pw2.log", NULL), 30000);
  snprintf(log, sizeof(log), "%s/browse_pw2.log", dir);
  if (is_node)
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 &&
              file_count(log, "offers no user name login") == 1,
          "node-opcua: want a clear error for user name (status %d)", st);
  else
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
              file_count(log, "Plant.Temp") == 1,
          "asyncua: user name login failed (status %d)", st);
}

static void run(void) {
  char cfg[400], log[400];
  srv_t s;
  int st;
  pid_t conn;
  int64_t t0, t1;

  e2e_config();
  start_daemon(NULL);
  start_server(&s, 0, 0, "server1.log");
  check_browse(s.port);
  snprintf(cfg, sizeof(cfg), "%s/opcua.yaml", dir);
  write_opcua_config(cfg, s.proxy);
  {
    char *av[] = {(char *)opcua_bin, "-c", cfg, "--check", NULL};
    st = e2e_wait(e2e_spawn(av, "check.log", NULL), 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "--check exit status %d", st);
  }
  char *av[] = {(char *)opcua_bin, "-c", cfg, NULL};
  conn = e2e_spawn(av, "opcua.log", NULL);
  await(all_first, "every item's first value, the refused items bad", 30000);

  t0 = sl_now_wall_ns();
  cmd(&s, "set temp 30.25");
  usleep(300000); /* two values apart in time; the next await checks both */
  cmd(&s, "set temp 32");
  t1 = sl_now_wall_ns() + 1000000000ll;
  await(temp_30, "written values and the deadband", 15000);
  {
    /* The deadband (5): 21.5 -> 30.25 passed, 30.25 -> 32 must not (a
     * later reconnect's initial values may carry 32: checked now). Both
     * items sample at 50 ms, so a 32 would have come with temp's. */
    e2e_events_t rd;
    e2e_read("readings", &rd);
    CHECK(!with_double(&rd, "plant/temp_db", 32.0),
          "temp_db: a change below the deadband was reported");
    e2e_events_free(&rd);
  }
  cmd(&s, "bad sensor");
  await(sensor_bad, "the bad status", 15000);
  await(poll_many, "periodic reads", 15000);

  /* Cut the connection while the value changes. */
  cmd(&s, "cut 1500");
  for (int v = 42; v <= 44; v++) {
    cmd(&s, "set count %d", v);
    /* Apart by more than the server's fastest sampling, so each value is
     * a change the server holds (not a way of waiting for something). */
    usleep(250000);
  }
  want_status = 3;
  want_count = 44;
  await(count_back, "down, up, and the last value set during the cut", 30000);
  if (is_node) {
    /* The session outlived the connection: it was reactivated on the new
     * channel and every change the server held arrived, not only the last
     * one. */
    snprintf(log, sizeof(log), "%s/opcua.log", dir);
    CHECK(file_count(log, "session reactivated") >= 1,
          "node-opcua: the session was not reactivated");
    await(count_all, "node-opcua: every change made during the cut", 15000);
  }

  /* Restart the server on the same ports. */
  e2e_stop(s.pid, SIGKILL);
  close(s.in);
  close(s.out);
  want_status = 4;
  await(status_n, "down after the server died", 15000);
  start_server(&s, s.port, s.proxy, "server2.log");
  want_status = 5;
  await(status_n, "up after the restart", 30000);
  cmd(&s, "set temp 50");
  await(temp_50, "a value after the restart", 15000);

  /* The channel's token (3 s) is renewed at 75% of its lifetime without
   * the server going down (checked at the end: five status events). */
  snprintf(log, sizeof(log), "%s/opcua.log", dir);
  for (uint64_t end = now_ms() + 10000;
       file_count(log, "secure channel renewed") < 1;) {
    CHECK(now_ms() < end, "the secure channel was never renewed");
    usleep(100000); /* polling the log for a line, with a deadline */
  }
  st = e2e_stop(conn, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
        "sluice-opcua exit status %d (1: events not acked)", st);
  cmd(&s, "quit");
  e2e_wait(s.pid, 15000);
  stop_daemon_ok();
  check_store(t0, t1);
}

SL_SCENARIO(asyncua) {
  run();
}
SL_SCENARIO(nodeopcua) {
  run();
}

static int setup(int argc, char **argv) {
  char cmdline[1200];
  opcua_bin = argv[2];
  servers_script = argv[3];
  server_dir = argv[4];
  is_node = !strcmp(argv[argc - 1], "nodeopcua");
  ns = is_node ? 1 : 2;
  /* The servers come from PyPI and npm, installed into a cache. */
  snprintf(cmdline, sizeof(cmdline), "%s %s --print", servers_script,
           is_node ? "node" : "python");
  FILE *p = popen(cmdline, "r");
  if (!p || !fgets(cache_dir, sizeof(cache_dir), p)) {
    if (p)
      pclose(p);
    fprintf(stderr,
            "SKIP: cannot install the %s OPC UA server (%s failed; "
            "no network to PyPI/npm?)\n",
            is_node ? "node-opcua" : "asyncua", cmdline);
    return 77;
  }
  if (pclose(p) != 0) {
    fprintf(stderr, "SKIP: %s failed\n", cmdline);
    return 77;
  }
  cache_dir[strcspn(cache_dir, "\n")] = '\0';
  if (is_node) {
    char np[700];
    snprintf(np, sizeof(np), "%s/node/node_modules", cache_dir);
    setenv("NODE_PATH", np, 1);
  }
  return 0;
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "opcua",
                      "SLUICE_OPCUA SERVERS_SCRIPT SERVER_DIR", setup);
}
