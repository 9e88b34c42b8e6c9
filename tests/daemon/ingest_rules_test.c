/*
 * The rules every ingest path shares (decode/event_check.h), end to end
 * against the real daemon: the issue-14 reproductions.
 *
 *   time       HTTP: a year past 2262 (stored as 1816 before), Feb 30 (was
 *              Mar 2), time and time_ns together are 400s naming the field;
 *              a time in 2040 is clamped to the node clock and marked, or
 *              refused with limits.future_policy: reject.
 *   watermark  one event stamped 2040 poisoned an aggregate (every later
 *              event "late", the state persisted): with the bound off the
 *              poisoning is shown, then a restart with the default bound
 *              sets the stored watermark back, emits the 2040 window once
 *              and aggregates the present again; with the bound on, the
 *              2040 event never reaches the watermark.
 *   native     what HTTP refuses, native refused too: empty or 1 MiB
 *              source, no body, a client-set ingest time, forged gap
 *              events, an empty attribute key; NaN is a value.
 *
 * ingest_rules_test SLUICE_BINARY time|watermark|native
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wire/frame.h"
#include "sluice/v1/event.pb-c.h"
#include "tests/common/daemon_fixture.h"

#define S 1000000000LL

static const char *AGG = "pipelines:\n"
                         "  - name: tenner\n"
                         "    match: {stream: readings}\n"
                         "    steps:\n"
                         "      - aggregate: [count, sum]\n"
                         "        window: 10s\n"
                         "        into: readings-10s\n"
                         "        keep_raw: true\n";

static int64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * S + ts.tv_nsec;
}

/* Dumps stream into buf (JSON lines of `sluice store dump`); the daemon
 * must be stopped. Returns the number of lines. */
static int dump(const char *stream, char *buf, size_t cap) {
  char cmd[700];
  size_t n = 0;
  int lines = 0;
  snprintf(cmd, sizeof(cmd), "%s store dump -d %s --stream %s 2>&1", sluice_bin,
           data_dir, stream);
  FILE *p = popen(cmd, "r");
  CHECK(p, "popen");
  char line[4096];
  while (fgets(line, sizeof(line), p)) {
    size_t l = strlen(line);
    if (n + l + 1 < cap) {
      memcpy(buf + n, line, l + 1);
      n += l;
    }
    lines++;
  }
  CHECK(pclose(p) == 0, "store dump failed: %s", buf);
  return lines;
}

static int post(const char *body, char *resp, size_t cap) {
  return http_req(http_port, "POST", "/v1/events?stream=readings",
                  "application/json", body, NULL, resp, cap);
}

static void post_ok(const char *source, int64_t t_ns, double v) {
  char body[256], resp[1024];
  snprintf(body, sizeof(body),
           "{\"source\":\"%s\",\"value\":%g,\"time_ns\":%lld}", source, v,
           (long long)t_ns);
  int code = post(body, resp, sizeof(resp));
  CHECK(code == 200, "POST %s: %d %s", body, code, resp);
}

SL_SCENARIO(time) {
  char resp[2048], out[1 << 16];
  int port, code;
  write_config(NULL);
  pid_t pid = start_daemon(&port);
  code =
      post("{\"source\":\"x\",\"value\":1,\"time\":\"9999-12-31T23:59:59Z\"}",
           resp, sizeof(resp));
  CHECK(code == 400 && strstr(resp, "\\\"time\\\"") && strstr(resp, "9999"),
        "year 9999: %d %s", code, resp);
  code =
      post("{\"source\":\"x\",\"value\":1,\"time\":\"1600-01-01T00:00:00Z\"}",
           resp, sizeof(resp));
  CHECK(code == 400 && strstr(resp, "\\\"time\\\""), "year 1600: %d %s", code,
        resp);
  code =
      post("{\"source\":\"x\",\"value\":1,\"time\":\"2026-02-30T00:00:00Z\"}",
           resp, sizeof(resp));
  CHECK(code == 400 && strstr(resp, "not a real date"), "Feb 30: %d %s", code,
        resp);
  code = post("{\"source\":\"x\",\"value\":1,\"time\":\"2026-01-01T00:00:00Z\","
              "\"time_ns\":1}",
              resp, sizeof(resp));
  CHECK(code == 400 && strstr(resp, "together"), "time + time_ns: %d %s", code,
        resp);
  /* 2040 is clamped to the node clock (default policy) and marked. */
  int64_t before = wall_ns();
  code =
      post("{\"source\":\"fut\",\"value\":2,\"time\":\"2040-01-01T00:00:00Z\"}",
           resp, sizeof(resp));
  CHECK(code == 200, "2040: %d %s", code, resp);
  int64_t after = wall_ns();
  CHECK(metric("sluice_ingest_future_events_total{path=\"http\",action="
               "\"clamped\"}") == 1,
        "clamped counter");
  CHECK(stop_daemon(pid, SIGTERM) == 0, "clean stop");
  CHECK(dump("readings", out, sizeof(out)) == 1, "one event stored: %s", out);
  long long t = 0;
  char *tp = strstr(out, "\"time_ns\":");
  CHECK(tp && sscanf(tp, "\"time_ns\":%lld", &t) == 1, "time_ns in %s", out);
  CHECK(t >= before && t <= after, "clamped to the node clock: %lld", t);
  CHECK(strstr(out, "\"sluice.time_clamped\":\"2208988800000000000\""),
        "original time kept: %s", out);

  /* With future_policy reject the same event is a 400 naming the bound. */
  write_config("limits:\n  max_future: 1m\n  future_policy: reject\n");
  pid = start_daemon(&port);
  code =
      post("{\"source\":\"fut\",\"value\":2,\"time\":\"2040-01-01T00:00:00Z\"}",
           resp, sizeof(resp));
  CHECK(code == 400 && strstr(resp, "limits.max_future"), "reject: %d %s", code,
        resp);
  CHECK(metric("sluice_ingest_future_events_total{path=\"http\",action="
               "\"refused\"}") == 1,
        "refused counter");
  /* 30 s ahead is inside the bound. */
  post_ok("near", wall_ns() + 30 * S, 3);
  CHECK(stop_daemon(pid, SIGTERM) == 0, "clean stop");
  CHECK(dump("readings", out, sizeof(out)) == 2, "two events: %s", out);
}

/* Windows emitted into readings-10s, as "start:count" tokens. */
static void windows(char *outw, size_t cap) {
  static char out[1 << 18];
  int n = dump("readings-10s", out, sizeof(out));
  size_t used = 0;
  outw[0] = 0;
  char *line = out;
  for (int i = 0; i < n; i++) {
    long long t = 0;
    double count = -1;
    char *tp = strstr(line, "\"time_ns\":"), *cp = strstr(line, "\"count\":\"");
    if (tp)
      sscanf(tp, "\"time_ns\":%lld", &t);
    if (cp)
      count = atof(cp + 9);
    used += (size_t)snprintf(outw + used, cap - used, "%lld:%g ", t / S, count);
    line = strchr(line, '\n') + 1;
  }
}

SL_SCENARIO(watermark) {
  char cfg[1024], w[4096], want[256];
  int port;
  const int64_t y2040 = 2208988800LL * S;
  /* Windows a minute in the past: all times are the node's present. */
  int64_t t0 = (wall_ns() - 60 * S) / (10 * S) * (10 * S);

  /* 1. The bound off: the old behaviour, poisoned. */
  snprintf(cfg, sizeof(cfg),
           "  - name: readings-10s\nlimits:\n  max_future: "
           "0s\n%s",
           AGG);
  write_config(cfg);
  pid_t pid = start_daemon(&port);
  post_ok("d1/t", y2040 + 3 * S, 7);
  post_ok("d1/t", t0 + 1 * S, 1);
  post_ok("d1/t", t0 + 2 * S, 2);
  post_ok("d1/t", t0 + 15 * S, 4);
  await_metric("sluice_pipeline_events_total{pipeline=\"tenner\"}", 4);
  CHECK(metric("sluice_pipeline_late_total{pipeline=\"tenner\"}") == 3,
        "poisoned: every later event late");
  CHECK(stop_daemon(pid, SIGTERM) == 0, "clean stop");
  windows(w, sizeof(w));
  CHECK(strlen(w) == 0, "nothing aggregated while poisoned: %s", w);

  /* 2. The same stored state, the default bound: recovered at start (the
   * watermark set back to the node clock). Windows of the present: from
   * t1, 20-30 s ahead of the node clock (within limits.max_future). */
  int64_t t1 = (wall_ns() + 30 * S) / (10 * S) * (10 * S);
  snprintf(cfg, sizeof(cfg), "  - name: readings-10s\n%s", AGG);
  write_config(cfg);
  pid = start_daemon(&port);
  CHECK(metric("sluice_pipeline_watermark_resets_total") == 1,
        "watermark reset at start");
  post_ok("d1/t", t1 + 1 * S, 10);
  post_ok("d1/t", t1 + 2 * S, 20);
  post_ok("d1/t", t1 + 15 * S, 40);
  await_metric("sluice_pipeline_events_total{pipeline=\"tenner\"}", 3);
  CHECK(metric("sluice_pipeline_late_total{pipeline=\"tenner\"}") == 0,
        "no late event after the reset: %g",
        metric("sluice_pipeline_late_total{pipeline=\"tenner\"}"));
  /* 3. A new event from 2040 is clamped to the node clock (behind t1, so
   * late itself) and moves no watermark: t1+21 still counts. */
  post_ok("d1/t", y2040, 99);
  post_ok("d1/t", t1 + 21 * S, 1);
  post_ok("d1/t", t1 + 35 * S, 2);
  await_metric("sluice_pipeline_events_total{pipeline=\"tenner\"}", 6);
  CHECK(metric("sluice_pipeline_late_total{pipeline=\"tenner\"}") == 1,
        "only the clamped event is late: %g",
        metric("sluice_pipeline_late_total{pipeline=\"tenner\"}"));
  CHECK(stop_daemon(pid, SIGTERM) == 0, "clean stop");
  windows(w, sizeof(w));
  /* The 2040 window (flushed once, with its one event), then the present:
   * t1 (two events), t1+10 and t1+20 (one each). */
  snprintf(want, sizeof(want), "%lld:1 %lld:2 %lld:1 %lld:1 ",
           (long long)(y2040 / S), (long long)(t1 / S),
           (long long)(t1 / S + 10), (long long)(t1 / S + 20));
  CHECK(!strcmp(w, want), "windows: got '%s', want '%s'", w, want);
}

/* Publishes one event on a fresh native connection; returns 0 on an Ack,
 * else copies the Error's reason to why. */
static int native_one(int port, Sluice__V1__Event *ev, char *why, size_t len) {
  sl_frame_buf_t out, in;
  sl_frame_arena_t *ar;
  Sluice__V1__Event *evs[1] = {ev};
  int fd = tcp_connect(port), rc = -1;
  sl_frame_buf_init(&out);
  sl_frame_buf_init(&in);
  CHECK(sl_frame_arena_new(8 << 20, &ar) == 0, "arena");
  CHECK(sl_frame_encode_hello(&out, SL_PROTOCOL_VERSION_MAX, "rules", NULL) ==
            0,
        "hello");
  write_all(fd, out.data, out.len);
  CHECK(await_frame(fd, &in, ar, SLUICE__V1__FRAME__KIND_HELLO_ACK) == 0,
        "hello ack");
  out.len = 0;
  CHECK(sl_frame_encode_publish(&out, 1, "readings", evs, 1, 8 << 20) == 0,
        "encode publish");
  write_all(fd, out.data, out.len);
  why[0] = 0;
  for (;;) {
    const uint8_t *body;
    size_t consumed, blen;
    const Sluice__V1__Frame *fr;
    CHECK(sl_frame_parse(in.data, in.len, 1 << 20, &consumed, &body, &blen) >=
              0,
          "parse");
    if (consumed) {
      CHECK(sl_frame_decode(ar, body, blen, SL_FRAME_FROM_SERVER, &fr, NULL,
                            0) == 0,
            "decode");
      sl_frame_buf_consume(&in, consumed);
      if (fr->kind_case == SLUICE__V1__FRAME__KIND_ACK) {
        rc = 0;
        break;
      }
      if (fr->kind_case == SLUICE__V1__FRAME__KIND_ERROR) {
        snprintf(why, len, "%s", fr->error->reason ? fr->error->reason : "");
        break;
      }
      continue;
    }
    CHECK(sl_frame_buf_reserve(&in, 4096) == 0, "reserve");
    ssize_t r = read(fd, in.data + in.len, in.cap - in.len);
    CHECK(r > 0, "no answer to the publish");
    in.len += (size_t)r;
  }
  close(fd);
  sl_frame_arena_free(ar);
  sl_frame_buf_close(&out);
  sl_frame_buf_close(&in);
  return rc;
}

SL_SCENARIO(native) {
  char why[512], out[1 << 16];
  int port;
  write_config(NULL);
  pid_t pid = start_daemon(&port);
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  rd.double_value = 1.5;
  Sluice__V1__Gap gap = SLUICE__V1__GAP__INIT;
  Sluice__V1__Status st = SLUICE__V1__STATUS__INIT;
  Sluice__V1__Attribute at = SLUICE__V1__ATTRIBUTE__INIT, *pat = &at;
  static char big[(1 << 20) + 1];
  memset(big, 'a', sizeof(big) - 1);
  struct {
    const char *name, *want;
    Sluice__V1__Event ev;
  } cases[] = {
      {"empty source", "source must be", SLUICE__V1__EVENT__INIT},
      {"1 MiB source", "source must be", SLUICE__V1__EVENT__INIT},
      {"no body", "needs a body", SLUICE__V1__EVENT__INIT},
      {"no value", "needs a value", SLUICE__V1__EVENT__INIT},
      {"ingest time", "ingest_time_ns", SLUICE__V1__EVENT__INIT},
      {"forged gap", "written by the node", SLUICE__V1__EVENT__INIT},
      {"status without state", "needs a state", SLUICE__V1__EVENT__INIT},
      {"empty attribute key", "empty key", SLUICE__V1__EVENT__INIT},
  };
  Sluice__V1__Reading empty = SLUICE__V1__READING__INIT;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    Sluice__V1__Event *e = &cases[i].ev;
    e->source = "ok/src";
    e->time_ns = wall_ns();
    e->body_case = SLUICE__V1__EVENT__BODY_READING;
    e->reading = &rd;
  }
  cases[0].ev.source = "";
  cases[1].ev.source = big;
  cases[2].ev.body_case = SLUICE__V1__EVENT__BODY__NOT_SET;
  cases[2].ev.reading = NULL;
  cases[3].ev.reading = &empty;
  cases[4].ev.ingest_time_ns = 5;
  cases[5].ev.body_case = SLUICE__V1__EVENT__BODY_GAP;
  cases[5].ev.gap = &gap;
  cases[6].ev.body_case = SLUICE__V1__EVENT__BODY_STATUS;
  cases[6].ev.status = &st;
  at.key = "";
  at.value = "admin";
  cases[7].ev.n_attributes = 1;
  cases[7].ev.attributes = &pat;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int rc = native_one(port, &cases[i].ev, why, sizeof(why));
    CHECK(rc < 0 && strstr(why, cases[i].want), "%s: rc %d, reason '%s'",
          cases[i].name, rc, why);
  }
  /* Accepted: NaN (a value), a null reading with quality bad, and a 2040
   * time clamped. */
  Sluice__V1__Event ok = SLUICE__V1__EVENT__INIT;
  ok.source = "ok/nan";
  ok.time_ns = wall_ns();
  ok.body_case = SLUICE__V1__EVENT__BODY_READING;
  ok.reading = &rd;
  rd.double_value = NAN;
  CHECK(native_one(port, &ok, why, sizeof(why)) == 0, "NaN: %s", why);
  empty.quality = SLUICE__V1__QUALITY__QUALITY_BAD;
  ok.reading = &empty;
  ok.source = "ok/null";
  CHECK(native_one(port, &ok, why, sizeof(why)) == 0, "null bad: %s", why);
  ok.reading = &rd;
  rd.double_value = 7;
  ok.source = "ok/future";
  ok.time_ns = 2208988800LL * S;
  CHECK(native_one(port, &ok, why, sizeof(why)) == 0, "2040: %s", why);
  CHECK(metric("sluice_ingest_future_events_total{path=\"native\",action="
               "\"clamped\"}") == 1,
        "native clamped counter");
  CHECK(stop_daemon(pid, SIGTERM) == 0, "clean stop");
  CHECK(dump("readings", out, sizeof(out)) == 3, "three events stored: %s",
        out);
  CHECK(strstr(out, "\"ok/future\"") &&
            strstr(out, "\"sluice.time_clamped\":\"2208988800000000000\""),
        "clamped native event marked: %s", out);
  CHECK(!strstr(out, "2208988800000000000,"), "2040 not stored as time: %s",
        out);
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "daemon", NULL, NULL);
}
