/*
 * End-to-end tests of the Kafka uplink: the real `sluice` binary, the C
 * client library for ingest, and a read_committed consumer that checks,
 * per node/stream/offset, that every stored event arrives exactly once and,
 * per source and lane, in offset order. The store (opened read-only after
 * the daemon stopped) is the reference for what must arrive.
 *
 *   sync_test SLUICE basic    publish, deliver, verify (exactly-once)
 *   sync_test SLUICE kill9    kill -9 during a drain, SL_SYNC_KILL_ROUNDS
 *                             rounds (default 20), then verify
 *   sync_test SLUICE alo      at-least-once: kill -9 rounds, nothing
 *                             missing, duplicates counted
 *   sync_test SLUICE fence    two daemons with the same node id: the first
 *                             is fenced and sends nothing more
 *   sync_test SLUICE poison   a record the broker refuses is dead-lettered
 *                             and the stream goes on
 *   sync_test SLUICE gaps     undelivered data evicted while Kafka is out
 *                             of reach arrives as gap records
 *   sync_test SLUICE json     a stream with `format: json`: kill -9 rounds,
 *                             then every value is the JSON of its event
 *   sync_test SLUICE tsrefuse events stamped 2 days ahead, record_timestamp
 *                             event: refused, named in /v1/status and the
 *                             metric; broker_estimate: exactly once
 *   sync_test SLUICE headers  kafka.omit_headers node, schema, historical:
 *                             none of them on a record, kill -9 rounds,
 *                             exactly once
 *   sync_test SLUICE compress one daemon per codec (zstd by default, lz4,
 *                             none): the broker's stored batches carry it
 *   sync_test SLUICE sasl KAFKA_SH   a private Kafka with a SASL (PLAIN)
 *                             listener: a wrong password is counted and
 *                             delivers nothing, the right one everything
 *   sync_test SLUICE restart KAFKA_SH
 *                             a private Kafka stopped under load and
 *                             restarted on the same ports and data
 *
 * Needs SLUICE_TEST_KAFKA_BOOTSTRAP (scripts/harness run); exits 77
 * (skipped) without it. Every wait polls a condition with a deadline.
 */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loadtest/common/scrape.h"
#include "sluice/v1/event.pb-c.h"
#include "store/store.h"
#include "tests/sync/sync_common.h"

static const char *kafka_sh; /* scripts/kafka.sh (scenario restart) */
static int kafka_sasl;       /* the private broker gets a SASL listener */
static int kafka_cmd(const char *verb);

void check_fail_cleanup(void) {
  sync_kill_daemons();
  if (kafka_sh)
    kafka_cmd("clean"); /* the private broker, if one was started */
  sync_tail_logs(20);
}

/* ---- scenarios --------------------------------------------------------- */

static int scenario_basic(void) {
  sync_daemon_t a;
  sync_daemon_init(&a, "a", "node-basic", sync_bootstrap, 0, NULL);
  sync_daemon_stream(&a, "basic", NULL);
  sync_daemon_start(&a);
  uint64_t n = sync_publish(&a, 20000, 0, 0);
  sync_await_delivery("basic", "node-basic", n, 60000);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "SIGTERM exit status");
  sync_verify_exactly_once("basic", "node-basic", &a, false, NULL, 60000, NULL);
  return 0;
}

/* With big, the first round's 5000th event is a raw event of big bytes. */
static int kill_rounds(const char *topic, const char *node, const char *extra,
                       const char *stream_extra, int rounds, bool alo,
                       size_t big) {
  const char *e = getenv("SL_SYNC_KILL_ROUNDS");
  if (e)
    rounds = atoi(e);
  sync_daemon_t a;
  sync_daemon_init(&a, "a", node, sync_bootstrap, 0, extra);
  sync_daemon_stream(&a, topic, stream_extra);
  uint64_t total = 0;
  srand((unsigned)getpid());
  for (int r = 0; r < rounds; r++) {
    sync_daemon_start(&a);
    total += sync_publish(&a, 20000, r || !big ? 0 : 5000, r ? 0 : big);
    /* A random point of the drain: the uplink is reading, producing or
     * committing. (Fault injection timing, not synchronisation.) */
    usleep((useconds_t)(rand() % 1200) * 1000);
    sync_daemon_stop(&a, SIGKILL);
  }
  sync_daemon_start(&a);
  sync_await_delivery(topic, node, total, 120000);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "SIGTERM exit status");
  printf("%d kill -9 rounds, %" PRIu64 " events\n", rounds, total);
  sync_verify_exactly_once(topic, node, &a, alo, NULL, 60000, NULL);
  return 0;
}

static int scenario_kill9(void) {
  /* Small chunks and a low lane threshold: kills land in every phase,
   * with two lanes too. */
  return kill_rounds("kill9", "node-kill9",
                     "  chunk_events: 5000\n  backlog_threshold: 30000\n", NULL,
                     20, false, 0);
}

/* The JSON values are decoded into the uplink's arena: a 300 kB raw event
 * (400 kB of base64) in the first round makes it grow. */
static int scenario_json(void) {
  sync_json_values = true;
  return kill_rounds("json", "node-json",
                     "  chunk_events: 5000\n  backlog_threshold: 30000\n",
                     "    format: json\n", 5, false, 300000);
}

static int scenario_alo(void) {
  return kill_rounds("alo", "node-alo",
                     "  delivery: at_least_once\n  chunk_events: 5000\n", NULL,
                     20, true, 0);
}

static int scenario_fence(void) {
  sync_daemon_t a, b;
  sync_daemon_init(&a, "a", "node-fence", sync_bootstrap, 0, NULL);
  sync_daemon_stream(&a, "fence-a", NULL);
  sync_daemon_init(&b, "b", "node-fence", sync_bootstrap, 0, NULL);
  sync_daemon_stream(&b, "fence-b", NULL);
  sync_daemon_start(&a);
  uint64_t na = sync_publish(&a, 5000, 0, 0);
  sync_await_delivery("fence-a", "node-fence", na, 60000);
  sync_daemon_start(&b); /* same node id: its init_transactions fences a */
  uint64_t nb = sync_publish(&b, 5000, 0, 0);
  sync_await_delivery("fence-b", "node-fence", nb, 60000);
  /* a learns it is fenced at its next transaction. */
  sync_publish(&a, 1000, 0, 0);
  uint64_t deadline = sync_now_ms() + 60000;
  while (!sync_log_has(&a, "uplink fenced")) {
    CHECK(sync_now_ms() < deadline, "daemon a never reported being fenced");
    usleep(50000); /* polling the log for a condition, with a deadline */
  }
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "a exit status");
  CHECK(sync_daemon_stop(&b, SIGTERM) == 0, "b exit status");
  /* a's topic holds exactly its first na events: nothing after fencing. */
  sync_expect_t ex;
  sync_seen_t s;
  char t[128];
  sync_read_store(&a, &ex);
  CHECK(ex.n == na + 1000, "a stored %" PRIu64, ex.n);
  ex.n = na + 1000;
  snprintf(t, sizeof(t), "%s-fence-a", sync_run_id);
  sync_consume(t, "node-fence", &ex, &s, 0, 60000);
  CHECK(s.distinct == na && s.dups == 0,
        "a's topic: %" PRIu64 " distinct, %" PRIu64 " dups, want %" PRIu64,
        s.distinct, s.dups, na);
  for (uint64_t k = na; k < ex.n; k++)
    CHECK(!s.count[k], "offset %" PRIu64 " sent after fencing", k);
  sync_seen_free(&s);
  sync_expect_free(&ex);
  sync_verify_exactly_once("fence-b", "node-fence", &b, false, NULL, 60000,
                           NULL);
  return 0;
}

/* The dead-letter stream holds the refused event (offset off, a raw body of
 * len bytes) once, with where it came from and why. */
static void check_dead_letter(const sync_daemon_t *d, uint64_t off,
                              size_t len) {
  sl_store_opts_t so;
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint32_t id;
  char err[256], want[24];
  size_t events = 0;
  int rc;
  sl_store_opts_init(&so);
  so.flags = SL_STORE_RDONLY;
  CHECK(sl_store_env_open(d->data, &so, &st, err, sizeof(err)) == 0,
        "open store: %s", err);
  CHECK(sl_store_stream_lookup(st, "dead", &id) == 0, "dead-letter stream");
  CHECK(sl_store_cursor_open(st, id, 0, SL_STORE_OFFSET_END, &cur) == 0, "cur");
  snprintf(want, sizeof(want), "%" PRIu64, off);
  while ((rc = sl_store_cursor_next(cur, &rec)) == 0) {
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b, "dead-letter batch");
    for (size_t i = 0; i < b->n_events; i++, events++) {
      const Sluice__V1__Event *e = b->events[i];
      CHECK(e->body_case == SLUICE__V1__EVENT__BODY_RAW &&
                e->raw->data.len == len,
            "dead letter %zu is not the refused event", events);
      const char *stream = NULL, *o = NULL, *reason = NULL;
      for (size_t k = 0; k < e->n_attributes; k++) {
        const char *key = e->attributes[k]->key;
        if (!strcmp(key, "dlq.stream"))
          stream = e->attributes[k]->value;
        else if (!strcmp(key, "dlq.offset"))
          o = e->attributes[k]->value;
        else if (!strcmp(key, "dlq.reason"))
          reason = e->attributes[k]->value;
      }
      CHECK(stream && !strcmp(stream, "readings"), "dlq.stream");
      CHECK(o && !strcmp(o, want), "dlq.offset %s, want %s", o ? o : "-", want);
      CHECK(reason && *reason, "dlq.reason");
      printf("dead letter: stream %s offset %s reason %s\n", stream, o, reason);
    }
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
  CHECK(events == 1, "%zu dead letters, want 1", events);
}

static int scenario_poison(void) {
  sync_daemon_t a;
  /* sluice lets 4 MiB through; the broker's limit (1 MiB) refuses it. */
  sync_daemon_init(&a, "a", "node-poison", sync_bootstrap, 0,
                   "  max_record_bytes: 4MiB\n  dead_letter_stream: dead\n");
  sync_daemon_stream(&a, "poison", "  - name: dead\n");
  sync_daemon_start(&a);
  uint64_t n = sync_publish(&a, 3000, 1500, 1500000);
  CHECK(n == 3000, "acked %" PRIu64, n);
  /* Everything but the big one arrives: the lane did not stall. */
  sync_await_delivery("poison", "node-poison", 2999, 60000);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "exit");
  uint64_t missing = 0;
  sync_verify_exactly_once("poison", "node-poison", &a, false, &missing, 60000,
                           NULL);
  CHECK(missing == 1, "%" PRIu64 " missing, want just the poison", missing);
  check_dead_letter(&a, 1500, 1500000);
  return 0;
}

static int scenario_gaps(void) {
  sync_daemon_t a;
  /* Kafka out of reach first: an unused port. */
  sync_daemon_init(&a, "a", "node-gaps", "127.0.0.1:1", 0,
                   "store:\n  budget_bytes: 2MiB\n");
  sync_daemon_stream(&a, "gaps", "    policy: drop_oldest\n");
  sync_daemon_start(&a);
  sync_publish(&a, 300000, 0, 0);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "exit");
  sync_daemon_init(&a, "a", "node-gaps", sync_bootstrap, 0,
                   "store:\n  budget_bytes: 2MiB\n");
  sync_daemon_stream(&a, "gaps", "    policy: drop_oldest\n");
  sync_daemon_start(&a);
  sync_expect_t ex;
  sync_read_store(&a, &ex); /* read-only open works beside the daemon */
  uint64_t n = ex.n;
  bool evicted = n > 0 && !ex.present[0];
  sync_expect_free(&ex);
  sync_await_delivery("gaps", "node-gaps", n, 60000);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "exit");
  sync_verify_exactly_once("gaps", "node-gaps", &a, false, NULL, 60000, NULL);
  CHECK(evicted, "nothing was evicted: no gap to check");
  return 0;
}

/* kafka.backlog_order: newest_first: a backlog stored while Kafka was out of
 * reach is sent newest block first while live events flow, across a
 * kill -9 in the middle of the drain; exactly once, and the historical
 * records came newest first. */
/* Starts d and waits until its uplink reports itself running (its log is
 * appended to across starts: a new line is awaited). */
static void start_until_running(sync_daemon_t *d) {
  int n = sync_log_count(d, "uplink running");
  uint64_t deadline = sync_now_ms() + 60000;
  sync_daemon_start(d);
  while (sync_log_count(d, "uplink running") <= n) {
    CHECK(sync_now_ms() < deadline, "uplink not running in 60 s");
    usleep(20000); /* polling the daemon's log, with a deadline */
  }
}

static int scenario_newest(void) {
  const char *kafka = "  backlog_threshold: 10000\n  chunk_events: 5000\n"
                      "  backlog_order: newest_first\n";
  sync_daemon_t a;
  sync_hist_newest_first = true;
  sync_daemon_init(&a, "a", "node-newest", "127.0.0.1:1", 0, kafka);
  sync_daemon_stream(&a, "newest", NULL);
  sync_daemon_start(&a);
  uint64_t backlog = sync_publish(&a, 200000, 0, 0);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "exit");
  sync_daemon_init(&a, "a", "node-newest", sync_bootstrap, 0, kafka);
  sync_daemon_stream(&a, "newest", NULL);
  start_until_running(&a);
  srand((unsigned)getpid());
  usleep((useconds_t)(rand() % 300) * 1000); /* a random point of the drain */
  sync_daemon_stop(&a, SIGKILL);
  start_until_running(&a);
  /* Live events while the rest of the backlog drains. */
  uint64_t total = backlog + sync_publish(&a, 20000, 0, 0);
  total += sync_publish(&a, 10000, 0, 0);
  sync_await_delivery("newest", "node-newest", total, 120000);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "exit");
  sync_seen_t s;
  sync_verify_exactly_once("newest", "node-newest", &a, false, NULL, 60000, &s);
  printf("historical: %" PRIu64 " records, first offset %" PRId64
         ", last %" PRId64 ", %" PRIu64 " descents\n",
         s.historical, s.hist_first_off, s.hist_last_off, s.hist_descents);
  CHECK(s.historical >= backlog / 2, "only %" PRIu64 " historical records",
        s.historical);
  CHECK(s.historical < total, "no live record: the drain never ran beside "
                              "live ingest");
  /* The first historical record is in the newest block of the stored
   * backlog (later bursts of live events may open backlogs of their own). */
  CHECK(s.hist_first_off >= (int64_t)backlog - 1000,
        "the backlog did not start with its newest block (first historical "
        "offset %" PRId64 " of %" PRIu64 ")",
        s.hist_first_off, backlog);
  CHECK(s.hist_descents >= s.historical / 1000 / 2,
        "%" PRIu64 " descents for %" PRIu64 " historical records: not in "
        "blocks from the newest down",
        s.hist_descents, s.historical);
  sync_seen_free(&s);
  return 0;
}

/* ---- a private Kafka (scenario restart) -------------------------------- */

/* Runs `scripts/kafka.sh VERB` on the private broker in DIR/kafka. */
static int kafka_cmd(const char *verb) {
  char cmd[1200];
  snprintf(cmd, sizeof(cmd),
           "SLUICE_KAFKA_SASL=%d SLUICE_KAFKA_DIR=%s/kafka %s %s "
           ">>%s/kafka-sh.log 2>&1",
           kafka_sasl, sync_dir, kafka_sh, verb, sync_dir);
  int st = system(cmd);
  return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

/* Starts `scripts/kafka.sh VERB` in a child; returns its pid. */
static pid_t kafka_cmd_async(const char *verb) {
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0)
    _exit(kafka_cmd(verb));
  return pid;
}

static void kafka_cmd_wait(pid_t pid, const char *verb) {
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && !WEXITSTATUS(st),
        "kafka.sh %s failed (see %s/kafka-sh.log)", verb, sync_dir);
}

/*
 * Kafka stopped under load and started again with the same data and ports
 * (a private broker: the shared one serves other tests). Events published
 * before, while it stops, while it is down and while it comes back must
 * all arrive exactly once.
 */
static int scenario_restart(void) {
  static char boot[128];
  char path[400];
  CHECK(kafka_sh, "restart needs the path of scripts/kafka.sh");
  CHECK(kafka_cmd("start") == 0 && kafka_cmd("wait-ready") == 0,
        "private kafka did not start (see %s/kafka-sh.log)", sync_dir);
  snprintf(path, sizeof(path), "%s/kafka/bootstrap", sync_dir);
  FILE *f = fopen(path, "r");
  CHECK(f && fgets(boot, sizeof(boot), f), "read %s", path);
  fclose(f);
  boot[strcspn(boot, "\n")] = '\0';
  sync_bootstrap = boot; /* the consumer reads the private broker too */

  sync_daemon_t a;
  sync_daemon_init(&a, "a", "node-restart", sync_bootstrap, 0,
                   "  chunk_events: 5000\n");
  sync_daemon_stream(&a, "restart", NULL);
  sync_daemon_start(&a);
  uint64_t n = sync_publish(&a, 30000, 0, 0);
  /* Stop Kafka while the uplink drains and the load goes on. */
  pid_t k = kafka_cmd_async("stop");
  n += sync_publish(&a, 30000, 0, 0);
  kafka_cmd_wait(k, "stop");
  int errs = sync_log_count(&a, "warn  sync: uplink: ");
  n += sync_publish(&a, 20000, 0, 0); /* stored while Kafka is down */
  uint64_t deadline = sync_now_ms() + 60000;
  while (sync_log_count(&a, "warn  sync: uplink: ") == errs) {
    CHECK(sync_now_ms() < deadline, "the uplink never noticed Kafka was down");
    usleep(50000); /* polling the log for a condition, with a deadline */
  }
  /* Back on the same ports with the same data, under load again. */
  k = kafka_cmd_async("restart");
  n += sync_publish(&a, 20000, 0, 0);
  kafka_cmd_wait(k, "restart");
  CHECK(kafka_cmd("wait-ready") == 0, "kafka not ready after restart");
  n += sync_publish(&a, 20000, 0, 0);
  sync_await_delivery("restart", "node-restart", n, 180000);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "SIGTERM exit status");
  sync_verify_exactly_once("restart", "node-restart", &a, false, NULL, 60000,
                           NULL);
  kafka_cmd("clean"); /* stop, and free its log (on tmpfs: RAM) */
  return 0;
}

/*
 * SASL against a real broker: a private Kafka with a SASL_PLAINTEXT (PLAIN)
 * listener beside its plain one (SLUICE_KAFKA_SASL=1). With a wrong
 * password the uplink delivers nothing, counts the failure in
 * sluice_uplink_auth_failures_total and says so in its log; restarted
 * with the right one, it delivers every stored event exactly once (the
 * consumer reads through the plain listener of the same broker).
 */
#define M_AUTH "sluice_uplink_auth_failures_total"
#define M_SASL_DELIVERED "sluice_uplink_delivered_total{stream=\"readings\"}"
#define SASL_PROPS(pw)                                                         \
  "  properties:\n"                                                            \
  "    - security.protocol=SASL_PLAINTEXT\n"                                   \
  "    - sasl.mechanism=PLAIN\n"                                               \
  "    - sasl.username=sluice\n"                                               \
  "    - sasl.password=" pw "\n"

static double sasl_metric(const sync_daemon_t *d, const char *series) {
  double v;
  return sl_scrape_metric(d->admin_port, series, &v) == 0 ? v : NAN;
}

static int scenario_sasl(void) {
  static char boot[128], sasl[128];
  char path[400];
  CHECK(kafka_sh, "sasl needs the path of scripts/kafka.sh");
  CHECK(kafka_cmd("start") == 0 && kafka_cmd("wait-ready") == 0,
        "private kafka did not start (see %s/kafka-sh.log)", sync_dir);
  const char *names[2] = {"bootstrap", "sasl_bootstrap"};
  char *bufs[2] = {boot, sasl};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof(path), "%s/kafka/%s", sync_dir, names[i]);
    FILE *f = fopen(path, "r");
    CHECK(f && fgets(bufs[i], 128, f), "read %s", path);
    fclose(f);
    bufs[i][strcspn(bufs[i], "\n")] = '\0';
  }
  sync_bootstrap = boot; /* the verifying consumer: the plain listener */

  /* A wrong password: nothing delivered, the failure counted and logged. */
  sync_daemon_t a;
  sync_daemon_init(&a, "a", "node-sasl", sasl, SYNC_ADMIN,
                   SASL_PROPS("not-the-password"));
  sync_daemon_stream(&a, "sasl", NULL);
  sync_daemon_start(&a);
  uint64_t n = sync_publish(&a, 3000, 0, 0);
  uint64_t deadline = sync_now_ms() + 60000;
  double fails = 0;
  while (!((fails = sasl_metric(&a, M_AUTH)) > 0)) {
    CHECK(sync_now_ms() < deadline,
          "no authentication failure counted in 60 s (metric %.0f)", fails);
    usleep(200000); /* polling /metrics for a condition, with a deadline */
  }
  double delivered = sasl_metric(&a, M_SASL_DELIVERED);
  printf("wrong password: %.0f authentication failures counted, %.0f "
         "delivered\n",
         fails, delivered);
  /* The series is registered at start, so it must be there and 0. */
  CHECK(delivered == 0, "%.0f events delivered with a wrong password",
        delivered);
  CHECK(sync_log_has(&a, "uthentication"),
        "the log does not mention the authentication failure");
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "SIGTERM exit status");

  /* The right password, same store: everything arrives, exactly once. */
  sync_daemon_init(&a, "a", "node-sasl", sasl, SYNC_ADMIN,
                   SASL_PROPS("sluice-test"));
  sync_daemon_stream(&a, "sasl", NULL);
  sync_daemon_start(&a);
  n += sync_publish(&a, 2000, 0, 0);
  sync_await_delivery("sasl", "node-sasl", n, 120000);
  double f2 = sasl_metric(&a, M_AUTH);
  CHECK(f2 == 0, "%.0f authentication failures with the right password", f2);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "SIGTERM exit status");
  sync_verify_exactly_once("sasl", "node-sasl", &a, false, NULL, 60000, NULL);
  printf("right password: %" PRIu64 " events delivered exactly once\n", n);
  kafka_cmd("clean");
  return 0;
}

/*
 * Events stamped 2 days ahead (a device clock; limits.max_future: 0 keeps
 * their times) sent with kafka.record_timestamp: event: Kafka 4 refuses
 * every record (message.timestamp.after.max.ms, 1 h by default). The
 * refusal must be named in /v1/status (uplink.last_error says
 * INVALID_TIMESTAMP, timestamp_blocked) and counted in
 * sluice_uplink_timestamp_refused_total, with nothing delivered. Restarted
 * with broker_estimate, every event arrives exactly once.
 */
#define M_TS_REFUSED "sluice_uplink_timestamp_refused_total"
#define M_TS_DELIVERED "sluice_uplink_delivered_total{stream=\"readings\"}"

static int scenario_tsrefuse(void) {
  sync_daemon_t a;
  char cmd[200], status[8192];
  sync_time_offset_ns = 2 * 86400 * 1000000000ll;
  sync_daemon_init(&a, "a", "node-ts", sync_bootstrap, SYNC_ADMIN,
                   "  record_timestamp: event\n");
  sync_daemon_stream(&a, "ts", "limits:\n  max_future: 0\n");
  sync_daemon_start(&a);
  uint64_t n = sync_publish(&a, 2000, 0, 0);
  uint64_t deadline = sync_now_ms() + 60000;
  double refused = 0;
  for (;;) {
    refused = sasl_metric(&a, M_TS_REFUSED);
    snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/v1/status",
             a.admin_port);
    FILE *p = popen(cmd, "r");
    CHECK(p, "curl");
    size_t len = fread(status, 1, sizeof(status) - 1, p);
    status[len] = '\0';
    pclose(p);
    if (refused > 0 && strstr(status, "INVALID_TIMESTAMP") &&
        strstr(status, "\"timestamp_blocked\":true"))
      break;
    CHECK(sync_now_ms() < deadline,
          "refusal not named in 60 s: metric %.0f, status %s", refused, status);
    usleep(200000); /* polling /metrics and /v1/status, with a deadline */
  }
  double delivered = sasl_metric(&a, M_TS_DELIVERED);
  printf("event times +2 d: %.0f records refused, %.0f delivered\n", refused,
         delivered);
  CHECK(delivered == 0, "%.0f delivered with refused timestamps", delivered);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "SIGTERM exit status");

  sync_daemon_init(&a, "a", "node-ts", sync_bootstrap, SYNC_ADMIN,
                   "  record_timestamp: broker_estimate\n");
  sync_daemon_stream(&a, "ts", "limits:\n  max_future: 0\n");
  sync_daemon_start(&a);
  n += sync_publish(&a, 1000, 0, 0);
  sync_await_delivery("ts", "node-ts", n, 120000);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "SIGTERM exit status");
  sync_verify_exactly_once("ts", "node-ts", &a, false, NULL, 60000, NULL);
  printf("broker_estimate: %" PRIu64 " events delivered exactly once\n", n);
  return 0;
}

/* kafka.omit_headers: records without node, schema and historical, kill -9
 * rounds, exactly once. One lane: the consumer's order check tells the
 * lanes apart by the historical header. */
static int scenario_headers(void) {
  sync_headers_absent[0] = "node";
  sync_headers_absent[1] = "schema";
  sync_headers_absent[2] = "historical";
  const char *e = getenv("SL_SYNC_KILL_ROUNDS");
  int rounds = e ? atoi(e) : 3;
  sync_daemon_t a;
  sync_daemon_init(&a, "a", "node-headers", sync_bootstrap, 0,
                   "  chunk_events: 5000\n  backlog_threshold: 0\n"
                   "  omit_headers: [node, schema, historical]\n");
  sync_daemon_stream(&a, "headers", NULL);
  uint64_t total = 0;
  for (int r = 0; r < rounds; r++) {
    sync_daemon_start(&a);
    total += sync_publish(&a, 20000, 0, 0);
    usleep((useconds_t)(rand() % 1200) * 1000); /* fault injection timing */
    sync_daemon_stop(&a, SIGKILL);
  }
  sync_daemon_start(&a);
  sync_await_delivery("headers", NULL, total, 120000);
  CHECK(sync_daemon_stop(&a, SIGTERM) == 0, "SIGTERM exit status");
  sync_verify_exactly_once("headers", NULL, &a, false, NULL, 60000, NULL);
  printf("%d kill -9 rounds, %" PRIu64 " events without node, schema and "
         "historical headers, exactly once\n",
         rounds, total);
  return 0;
}

/* ---- compression: the record batches as the broker stored them --------- */

/* Reads the broker's log segments of <run>-<topic> partition 0 (the
 * harness's data dir, SLUICE_TEST_KAFKA_DATA): each record batch's header
 * (baseOffset int64, batchLength int32, leaderEpoch int32, magic int8, crc
 * uint32, attributes int16 (bits 0-2 codec, bit 5 control), ...,
 * records int32 at byte 57). Counts data batches whose codec is not want;
 * returns their records and bytes (headers included). */
typedef struct seg_stats {
  uint64_t batches, records, bytes, wrong, control;
  int wrong_codec;
} seg_stats_t;

static void read_segments(const char *datadir, const char *topic, int want,
                          seg_stats_t *st) {
  char dir[600], path[900];
  memset(st, 0, sizeof(*st));
  snprintf(dir, sizeof(dir), "%s/%s-%s-0", datadir, sync_run_id, topic);
  DIR *d = opendir(dir);
  CHECK(d, "open the broker's log dir %s", dir);
  for (struct dirent *de; (de = readdir(d));) {
    size_t n = strlen(de->d_name);
    if (n < 5 || strcmp(de->d_name + n - 4, ".log"))
      continue;
    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    FILE *f = fopen(path, "rb");
    CHECK(f, "open %s", path);
    uint8_t h[61];
    while (fread(h, 1, sizeof(h), f) == sizeof(h)) {
      uint32_t len = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 |
                     (uint32_t)h[10] << 8 | h[11];
      CHECK(h[16] == 2 && len >= 49, "%s: not a v2 record batch", path);
      int attrs = h[21] << 8 | h[22];
      uint32_t recs = (uint32_t)h[57] << 24 | (uint32_t)h[58] << 16 |
                      (uint32_t)h[59] << 8 | h[60];
      CHECK(fseek(f, (long)len - 49, SEEK_CUR) == 0, "seek in %s", path);
      if (attrs & 0x20) {
        st->control++; /* a transaction marker: never compressed */
        continue;
      }
      st->batches++;
      st->records += recs;
      st->bytes += 12 + (uint64_t)len;
      if ((attrs & 7) != want) {
        st->wrong++;
        st->wrong_codec = attrs & 7;
      }
    }
    fclose(f);
  }
  closedir(d);
}

/* One daemon per codec, `format: json`: every data batch on the broker
 * carries the stream's codec (Kafka's topic default compression.type
 * producer keeps the producer's batches), delivered exactly once; prints
 * the stored record bytes per event of each. */
static int scenario_compress(void) {
  const char *datadir = getenv("SLUICE_TEST_KAFKA_DATA");
  if (!datadir || !*datadir) {
    printf("sync_test: SKIP: SLUICE_TEST_KAFKA_DATA is not set (the broker's "
           "log dir; scripts/harness run sets it)\n");
    return 77;
  }
  static const struct {
    const char *name, *extra;
    int codec; /* Kafka's attribute value */
  } cases[] = {
      {"zstd", "    format: json\n", 4}, /* the default */
      {"lz4", "    format: json\n    compression: lz4\n", 3},
      {"none", "    format: json\n    compression: none\n", 0},
      /* the compact layout (docs/SCHEMAS.md), both codecs */
      {"compact-none",
       "    format: json\n    json_layout: compact\n    compression: none\n",
       0},
      {"compact-zstd", "    format: json\n    json_layout: compact\n", 4},
  };
  sync_json_values = true;
  for (size_t i = 0; i < SL_ARRAY_SIZE(cases); i++) {
    sync_json_compact = !strncmp(cases[i].name, "compact", 7);
    sync_daemon_t d;
    char node[32], topic[32];
    snprintf(node, sizeof(node), "node-%s", cases[i].name);
    snprintf(topic, sizeof(topic), "compress-%s", cases[i].name);
    sync_daemon_init(&d, cases[i].name, node, sync_bootstrap, 0, NULL);
    sync_daemon_stream(&d, topic, cases[i].extra);
    sync_daemon_start(&d);
    uint64_t n = sync_publish(&d, 20000, 0, 0);
    sync_await_delivery(topic, node, n, 60000);
    CHECK(sync_daemon_stop(&d, SIGTERM) == 0, "SIGTERM exit status");
    sync_verify_exactly_once(topic, node, &d, false, NULL, 60000, NULL);
    seg_stats_t st;
    read_segments(datadir, topic, cases[i].codec, &st);
    CHECK(st.records >= n && st.batches > 0,
          "%s: %" PRIu64 " records in the broker's batches, want %" PRIu64,
          cases[i].name, st.records, n);
    CHECK(!st.wrong,
          "%s: %" PRIu64 " of %" PRIu64 " batches have codec %d, want %d",
          cases[i].name, st.wrong, st.batches, st.wrong_codec, cases[i].codec);
    printf("compression %s: %" PRIu64 " batches, %" PRIu64 " records, %.1f "
           "stored bytes per record\n",
           cases[i].name, st.batches, st.records,
           (double)st.bytes / (double)st.records);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: sync_test SLUICE_BINARY SCENARIO [KAFKA_SH]\n");
    return 2;
  }
  sync_bin = argv[1];
  kafka_sh = argc == 4 ? argv[3] : NULL;
  sync_bootstrap = getenv("SLUICE_TEST_KAFKA_BOOTSTRAP");
  if (!sync_bootstrap || !*sync_bootstrap) {
    printf("sync_test: SKIP: SLUICE_TEST_KAFKA_BOOTSTRAP is not set (run "
           "under scripts/harness run)\n");
    return 77;
  }
  sync_run_init("sync", argv[2]);
  int rc;
  if (!strcmp(argv[2], "basic"))
    rc = scenario_basic();
  else if (!strcmp(argv[2], "kill9"))
    rc = scenario_kill9();
  else if (!strcmp(argv[2], "alo"))
    rc = scenario_alo();
  else if (!strcmp(argv[2], "fence"))
    rc = scenario_fence();
  else if (!strcmp(argv[2], "poison"))
    rc = scenario_poison();
  else if (!strcmp(argv[2], "gaps"))
    rc = scenario_gaps();
  else if (!strcmp(argv[2], "restart"))
    rc = scenario_restart();
  else if (!strcmp(argv[2], "json"))
    rc = scenario_json();
  else if (!strcmp(argv[2], "newest"))
    rc = scenario_newest();
  else if (!strcmp(argv[2], "tsrefuse"))
    rc = scenario_tsrefuse();
  else if (!strcmp(argv[2], "compress"))
    rc = scenario_compress();
  else if (!strcmp(argv[2], "headers"))
    rc = scenario_headers();
  else if (!strcmp(argv[2], "sasl")) {
    kafka_sasl = 1;
    rc = scenario_sasl();
  } else {
    fprintf(stderr, "unknown scenario %s\n", argv[2]);
    return 2;
  }
  if (rc == 0) {
    sync_run_remove();
    printf("sync_test %s: ok\n", argv[2]);
  }
  return rc;
}
