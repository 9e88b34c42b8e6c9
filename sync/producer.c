/*
 * sync/producer.c: the librdkafka producer: configuration (our settings,
 * then the operator's passthrough properties for TLS/SASL and tuning),
 * delivery reports, topic creation (the checkpoint topic's too) and the
 * produce call with a bounded queue; a JSON stream's record values; the
 * poison list (records refused for good); and the uplink's shared status
 * (errors, connected, stop and kick waits).
 *
 * The bottom of the uplink: the lanes, the checkpoints and the chunk phases
 * call down into this file; it calls none of them.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schemas/event_json.h"
#include "sync/sync_int.h"

void sync__set_error(sl_sync_t *up, int err, const char *fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&up->lock);
  up->stats.last_error = err;
  va_start(ap, fmt);
  vsnprintf(up->stats.last_error_text, sizeof(up->stats.last_error_text), fmt,
            ap);
  va_end(ap);
  pthread_mutex_unlock(&up->lock);
}

bool sync__stopping(sl_sync_t *up) {
  pthread_mutex_lock(&up->lock);
  bool stop = up->stop;
  pthread_mutex_unlock(&up->lock);
  return stop;
}

void sync__clear_error(sl_sync_t *up) {
  pthread_mutex_lock(&up->lock);
  up->stats.last_error = 0;
  up->stats.last_error_text[0] = '\0';
  pthread_mutex_unlock(&up->lock);
}

void sync__set_connected(sl_sync_t *up, int connected) {
  pthread_mutex_lock(&up->lock);
  up->stats.connected = connected;
  if (connected) {
    up->ever_connected = true;
    /* A timestamp refusal is not cured by a connection: it stays until
     * records get through (account_commit()). */
    if (!up->stats.ts_blocked) {
      up->stats.last_error = 0;
      up->stats.last_error_text[0] = '\0';
    }
  }
  pthread_mutex_unlock(&up->lock);
}

void sync__wait_ms(sl_sync_t *up, uint64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&up->lock);
  while (!up->stop && !up->kick)
    if (pthread_cond_timedwait(&up->cond, &up->lock, &ts) == ETIMEDOUT)
      break;
  up->kick = false;
  pthread_mutex_unlock(&up->lock);
}

/* librdkafka's queue depth for the stats (the rest is sampled by
 * sl_sync_stats(), sync/uplink_clock.c). */
void sync__update_rates(sl_sync_t *up) {
  uint32_t q = up->rk ? (uint32_t)rd_kafka_outq_len(up->rk) : 0;
  pthread_mutex_lock(&up->lock);
  up->stats.queue_depth = q;
  pthread_mutex_unlock(&up->lock);
}

void sync__note_waiting(sl_sync_t *up, uint64_t since_ns) {
  sync__update_rates(up);
  if (sl_now_mono_ns() - since_ns > 2000000000u) {
    pthread_mutex_lock(&up->lock);
    up->stats.connected = 0;
    pthread_mutex_unlock(&up->lock);
  }
}

void sl_sync_explain_error(const char *reason, int ever_connected, char *out,
                           size_t len) {
  /* librdkafka's guesses for a connection the broker closed: before
   * ApiVersion was answered, and after the connection was up. */
  static const char *const hints[] = {
      "might be caused by incorrect security.protocol",
      "verify that security.protocol is correctly configured"};
  const char *h = NULL;
  if (!len)
    return;
  for (size_t i = 0; i < SL_ARRAY_SIZE(hints) && !h; i++)
    h = strstr(reason, hints[i]);
  if (!h) {
    snprintf(out, len, "%s", reason);
    return;
  }
  size_t n = (size_t)(h - reason);
  while (n && (reason[n - 1] == ' ' || reason[n - 1] == ':'))
    n--;
  /* librdkafka's "(after N ms in state S...)" tail is kept. */
  const char *tail = strstr(h, " (after ");
  snprintf(out, len, "%.*s: the broker closed the connection (%s)%s",
           (int)SL_MIN(n, (size_t)200), reason,
           ever_connected
               ? "these settings reached it before: it is stopping, "
                 "starting or unreachable"
               : "it may be starting or stopping, or expect another "
                 "security.protocol or SASL: check kafka.properties if it "
                 "persists",
           tail ? tail : "");
}

/* Errors that no retry will fix: the record goes to the dead letters. */
static bool permanent(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
         err == RD_KAFKA_RESP_ERR_INVALID_RECORD ||
         err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
         err == RD_KAFKA_RESP_ERR_INVALID_MSG;
}

bool sync__poisoned(const sl_sync_t *up, size_t idx, uint64_t off) {
  for (size_t i = 0; i < up->npoison; i++)
    if (up->poison[i].stream == idx && up->poison[i].offset == off)
      return true;
  return false;
}

bool sync__poison_add(sl_sync_t *up, size_t idx, uint64_t off, int err) {
  if (idx >= up->nstreams || sync__poisoned(up, idx, off))
    return false;
  if (up->npoison == SYNC_POISON_MAX) /* forget the oldest */
    memmove(up->poison, up->poison + 1,
            (SYNC_POISON_MAX - 1) * sizeof(up->poison[0]));
  else
    up->npoison++;
  sync_poison_t *p = &up->poison[up->npoison - 1];
  p->stream = (uint32_t)idx;
  p->offset = off;
  p->err = err;
  p->moved = false;
  pthread_mutex_lock(&up->lock);
  up->streams[idx].st.dead_lettered++;
  up->stats.dead_lettered++;
  pthread_mutex_unlock(&up->lock);
  return true;
}

/* A broker's append time (a LogAppendTime topic: the checkpoint topic
 * sluice creates, or a data topic so configured) tells its clock: the
 * estimate used by record_timestamp broker_estimate and shown as the
 * skew. The report comes after the append, so the estimate lags the
 * broker by the round trip (the records' timestamps a few ms early). */
static void note_append_time(sl_sync_t *up, const rd_kafka_message_t *m) {
  rd_kafka_timestamp_type_t tt;
  int64_t ts = rd_kafka_message_timestamp(m, &tt);
  uint64_t now = sl_now_mono_ns();
  if (tt != RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME || ts <= 0 ||
      (up->bt_known && now - up->bt_mono_ns < 100000000u))
    return; /* a LogAppendTime data topic: ten samples a second do */
  up->bt_known = true;
  up->bt_ns = ts * 1000000;
  up->bt_mono_ns = now;
  double skew = (double)(sync__now_wall(up) - up->bt_ns) / 1e9;
  pthread_mutex_lock(&up->lock);
  up->stats.skew_known = 1;
  up->stats.skew_s = skew;
  pthread_mutex_unlock(&up->lock);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  sl_sync_t *up = opaque;
  (void)rk;
  if (!m->err) {
    up->dr_ok++;
    note_append_time(up, m);
    return;
  }
  if (up->dr_failed++ == 0)
    up->dr_first_err = m->err;
  if (m->err == RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP) {
    /* The broker's timestamp window refused it (the node's clock, or the
     * event's time, is too far from the broker's): counted, named in the
     * status, and the next transaction measures the skew first. */
    up->need_probe = true;
    pthread_mutex_lock(&up->lock);
    up->stats.ts_refused++;
    up->stats.ts_blocked = 1;
    pthread_mutex_unlock(&up->lock);
  }
  uint64_t v = (uint64_t)(uintptr_t)m->_private;
  if (permanent(m->err))
    sync__poison_add(up, (size_t)(v >> 48), v & 0xffffffffffffu, m->err);
}

/* Credentials or ACLs: retrying at once will not help (and hammers the
 * broker's authenticator): the uplink drops its producers and waits
 * o.auth_backoff_ms (a minute) before it makes new ones. */
static bool auth_error(int err) {
  return err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
         err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED ||
         err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
         err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
         err == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED ||
         err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED;
}

bool sync__auth_failed(sl_sync_t *up) {
  pthread_mutex_lock(&up->lock);
  bool f = up->auth_failed;
  pthread_mutex_unlock(&up->lock);
  return f;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
  sl_sync_t *up = opaque;
  (void)rk;
  if (auth_error(err)) {
    pthread_mutex_lock(&up->lock);
    up->auth_failed = true;
    up->stats.auth_failures++;
    pthread_mutex_unlock(&up->lock);
  }
  pthread_mutex_lock(&up->lock);
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
    up->stats.connected = 0;
  bool ever = up->ever_connected;
  pthread_mutex_unlock(&up->lock);
  char why[512];
  sl_sync_explain_error(reason ? reason : "", ever, why, sizeof(why));
  sync__set_error(up, SL_EKAFKA, "%s: %s", rd_kafka_err2name(err), why);
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v,
               char *errstr, size_t errlen) {
  char e[256];
  if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
    snprintf(errstr, errlen, "kafka property %s: %s", k, e);
    return SL_ECONFIG;
  }
  return 0;
}

/* librdkafka's socket callback: its default (socket() with SOCK_CLOEXEC)
 * plus TCP_USER_TIMEOUT. Why: when a link drops packets without a reset
 * (a cut uplink, a NAT that forgot us), a connection with a request in
 * flight hangs while TCP's retransmission timer doubles; the next
 * retransmission after a 30 s cut came ~50 s in, so a short partition
 * stalled the uplink for a minute (docs/BENCHMARKS.md, outage --cut
 * netns). With the timeout the kernel fails the connection after
 * link_timeout_ms without an ack and librdkafka connects anew. A slow but
 * working link keeps getting acks, so it is not cut. */
static int socket_cb(int domain, int type, int protocol, void *opaque) {
  sl_sync_t *up = opaque;
  int fd = socket(domain, type | SOCK_CLOEXEC, protocol);
  if (fd < 0 || !up->o.link_timeout_ms ||
      (domain != AF_INET && domain != AF_INET6))
    return fd;
  unsigned int ms = up->o.link_timeout_ms;
  /* Best effort: a kernel without it keeps its defaults. */
  (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
  return fd;
}

/* librdkafka's log lines, handed to the owner (sl_sync_opts_t.log_cb). */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf) {
  sl_sync_t *up = rd_kafka_opaque(rk);
  char why[1024];
  if (!up || !up->o.log_cb)
    return;
  pthread_mutex_lock(&up->lock);
  bool ever = up->ever_connected;
  pthread_mutex_unlock(&up->lock);
  sl_sync_explain_error(buf ? buf : "", ever, why, sizeof(why));
  up->o.log_cb(up->o.log_opaque, level, fac, why);
}

void sync__conf_link(sl_sync_t *up, rd_kafka_conf_t *conf) {
  char buf[32];
  char e[256];
  if (up->o.log_cb)
    rd_kafka_conf_set_log_cb(conf, log_cb);
  if (!up->o.link_timeout_ms)
    return;
  /* Connection set-up (TCP and TLS handshake, ApiVersion, SASL) gets the
   * same bound: a SYN sent into a cut link is otherwise retried for 30 s
   * with doubling gaps. librdkafka's lower limit is 1 s. */
  snprintf(buf, sizeof(buf), "%u", SL_MAX(up->o.link_timeout_ms, 1000u));
  (void)rd_kafka_conf_set(conf, "socket.connection.setup.timeout.ms", buf, e,
                          sizeof(e));
  rd_kafka_conf_set_socket_cb(conf, socket_cb);
}

/* Builds the producer's config; NULL on error (errstr says why). */
static rd_kafka_conf_t *producer_conf(sl_sync_t *up, const char *txn_id,
                                      char *errstr, size_t errlen) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char buf[32];
  int rc = 0;
  rc |= set(conf, "bootstrap.servers", up->brokers, errstr, errlen);
  rc |= set(conf, "client.id", txn_id, errstr, errlen);
  rc |= set(conf, "acks", "all", errstr, errlen);
  rc |= set(conf, "enable.idempotence", "true", errstr, errlen);
  rc |= set(conf, "linger.ms", "1", errstr, errlen);
  /* compression.type is set per stream's topic (stream_topic_conf()); the
   * checkpoint and gap records keep librdkafka's default (none). */
  rc |= set(conf, "batch.num.messages", "10000", errstr, errlen);
  rc |= set(conf, "reconnect.backoff.ms", "100", errstr, errlen);
  /* 1 s, not librdkafka's 10 s: after an outage each producer reconnects
   * on its own schedule, and with two producers taking turns the one not in
   * use waited up to 10 s once its turn came (the outage benchmark measured
   * 6-8 s of idle uplink after the first commit). An edge box retrying one
   * connection a second costs nothing; kafka.properties can override it. */
  rc |= set(conf, "reconnect.backoff.max.ms", "1000", errstr, errlen);
  sync__conf_link(up, conf);
  snprintf(buf, sizeof(buf), "%u", up->o.queue_max_messages);
  rc |= set(conf, "queue.buffering.max.messages", buf, errstr, errlen);
  snprintf(buf, sizeof(buf), "%u", up->o.queue_max_kbytes);
  rc |= set(conf, "queue.buffering.max.kbytes", buf, errstr, errlen);
  snprintf(buf, sizeof(buf), "%u", up->o.max_record_bytes + 1024);
  rc |= set(conf, "message.max.bytes", buf, errstr, errlen);
  if (!up->o.at_least_once) {
    rc |= set(conf, "transactional.id", txn_id, errstr, errlen);
    snprintf(buf, sizeof(buf), "%u", up->o.txn_timeout_ms);
    rc |= set(conf, "transaction.timeout.ms", buf, errstr, errlen);
  }
  /* The operator's properties last: TLS, SASL and tuning pass through. */
  for (size_t i = 0; !rc && i < up->o.nprops; i++) {
    char *eq = strchr(up->props[i], '=');
    if (!eq) {
      snprintf(errstr, errlen, "kafka property '%s' is not key=value",
               up->props[i]);
      rc = SL_ECONFIG;
      break;
    }
    *eq = '\0';
    rc = set(conf, up->props[i], eq + 1, errstr, errlen);
    *eq = '=';
  }
  if (rc) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_conf_set_opaque(conf, up);
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  return conf;
}

/* Maps a transaction API error: SL_EFENCED, or SL_EKAFKA (error text kept);
 * *fatal is set for errors that need a new producer. Frees error. */
static int txn_error(sl_sync_t *up, rd_kafka_error_t *error, const char *what,
                     bool *fatal) {
  rd_kafka_resp_err_t code = rd_kafka_error_code(error);
  int rc = SL_EKAFKA;
  *fatal = rd_kafka_error_is_fatal(error);
  if (code == RD_KAFKA_RESP_ERR__FENCED ||
      code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
      code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH)
    rc = SL_EFENCED;
  sync__set_error(up, rc, "%s: %s", what, rd_kafka_error_string(error));
  rd_kafka_error_destroy(error);
  return rc;
}

static const char *const codecs[] = {"zstd", "lz4", "gzip", "snappy", "none"};

const char *sl_sync_compression_name(int codec) {
  return codec >= 0 && (size_t)codec < SL_ARRAY_SIZE(codecs) ? codecs[codec]
                                                             : NULL;
}

const char *sl_sync_compression_check(int codec, int64_t level) {
  /* librdkafka's compression.level takes -1..12 whatever the codec (zstd
   * stops at 12 there, not 22); gzip's own range ends at 9. */
  static const int64_t max[] = {12, 12, 9, 0, 0};
  if (!sl_sync_compression_name(codec))
    return "is not zstd, lz4, gzip, snappy or none";
  if (level < 0 || level > max[codec])
    return max[codec] ? "compression_level is out of range for this codec "
                        "(0: its default; zstd and lz4 1..12, gzip 1..9)"
                      : "compression_level must be 0 for snappy and none "
                        "(they have no levels)";
  return NULL;
}

/* A stream's topic settings: the producer's defaults (the operator's
 * topic-level kafka.properties such as message.timeout.ms included) with
 * the stream's codec and level. Checked by sl_sync_new(), so the sets
 * cannot fail. Owned by rd_kafka_topic_new(). */
static rd_kafka_topic_conf_t *stream_topic_conf(rd_kafka_t *rk,
                                                const sync_stream_t *s) {
  rd_kafka_topic_conf_t *tc = rd_kafka_default_topic_conf_dup(rk);
  char e[256], lv[16];
  (void)rd_kafka_topic_conf_set(tc, "compression.type",
                                sl_sync_compression_name(s->compression), e,
                                sizeof(e));
  if (s->compression_level) {
    snprintf(lv, sizeof(lv), "%d", s->compression_level);
    (void)rd_kafka_topic_conf_set(tc, "compression.level", lv, e, sizeof(e));
  }
  return tc;
}

/* Opens producer p: with exactly-once, init_transactions() fences an older
 * instance with the same transactional.id and aborts what it left open. */
static int prod_open(sl_sync_t *up, sync_prod_t *p, char *errstr,
                     size_t errlen) {
  rd_kafka_conf_t *conf = producer_conf(up, p->txn_id, errstr, errlen);
  char e[512];
  int rc;
  if (!conf)
    return SL_ECONFIG;
  if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e)))) {
    rd_kafka_conf_destroy(conf);
    snprintf(errstr, errlen, "rd_kafka_new: %s", e);
    return SL_ECONFIG;
  }
  if (!up->o.at_least_once) {
    /* In slices of a second, serving the error callback in between: a
     * broker that refuses our SASL credentials fails the connection (the
     * error callback says _AUTHENTICATION) but init_transactions() itself
     * only times out, and the callback's queue went away with the
     * producer, so a real broker's refusal was never counted
     * (sync_sasl). A timed-out init_transactions() may be called again:
     * it resumes. */
    rd_kafka_error_t *error;
    uint64_t deadline = sl_now_mono_ns() + 30000000000ull;
    for (;;) {
      error = rd_kafka_init_transactions(p->rk, 1000);
      rd_kafka_poll(p->rk, 0);
      pthread_mutex_lock(&up->lock);
      bool stop = up->stop; /* sl_sync_stop() need not wait 30 s */
      pthread_mutex_unlock(&up->lock);
      if (!error ||
          rd_kafka_error_code(error) != RD_KAFKA_RESP_ERR__TIMED_OUT ||
          sl_now_mono_ns() >= deadline || sync__auth_failed(up) || stop)
        break;
      rd_kafka_error_destroy(error);
    }
    /* The error callback counted what it saw; count the call's own. */
    bool auth = sync__auth_failed(up);
    if (error && !auth && auth_error(rd_kafka_error_code(error))) {
      pthread_mutex_lock(&up->lock);
      up->auth_failed = true;
      up->stats.auth_failures++;
      pthread_mutex_unlock(&up->lock);
    }
    if (error) {
      bool fatal;
      snprintf(errstr, errlen, "init_transactions (%s): %s%s", p->txn_id,
               rd_kafka_error_string(error),
               auth ? " (the broker refused our credentials)" : "");
      rc = txn_error(up, error, "init_transactions", &fatal);
      goto fail;
    }
  }
  if (!p->rkt && !(p->rkt = calloc(up->nstreams + 1, sizeof(*p->rkt))))
    abort(); /* tiny control allocation */
  for (size_t i = 0; i < up->nstreams; i++)
    if (!(p->rkt[i] =
              rd_kafka_topic_new(p->rk, up->streams[i].topic,
                                 stream_topic_conf(p->rk, &up->streams[i])))) {
      snprintf(errstr, errlen, "topic %s: %s", up->streams[i].topic,
               rd_kafka_err2str(rd_kafka_last_error()));
      while (i-- > 0) {
        rd_kafka_topic_destroy(p->rkt[i]);
        p->rkt[i] = NULL;
      }
      rc = SL_ECONFIG;
      goto fail;
    }
  /* The checkpoint topic's handle comes after ensure_ckpt_topic():
   * a handle asks for the topic's metadata, and a broker with
   * auto.create.topics.enable then makes it with its defaults (not
   * compacted, CreateTime). */
  if (*up->gap_topic)
    p->gap_rkt = rd_kafka_topic_new(p->rk, up->gap_topic, NULL);
  return 0;
fail:
  rd_kafka_destroy(p->rk);
  p->rk = NULL;
  return rc;
}

static void prod_close(sl_sync_t *up, sync_prod_t *p) {
  if (!p->rk)
    return;
  for (size_t i = 0; p->rkt && i < up->nstreams; i++) {
    if (p->rkt[i])
      rd_kafka_topic_destroy(p->rkt[i]);
    p->rkt[i] = NULL;
  }
  if (p->ckpt_rkt)
    rd_kafka_topic_destroy(p->ckpt_rkt);
  if (p->gap_rkt)
    rd_kafka_topic_destroy(p->gap_rkt);
  p->ckpt_rkt = p->gap_rkt = NULL;
  /* Nothing we still need is queued: an open transaction is aborted by the
   * next init_transactions() (or was aborted), and at-least-once chunks are
   * resent from the local cursor. */
  rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(p->rk, 0);
  rd_kafka_destroy(p->rk);
  p->rk = NULL;
}

void sync__producer_use(sl_sync_t *up, int k) {
  sync_prod_t *p = &up->prod[k];
  up->cur = k;
  up->rk = p->rk;
  for (size_t i = 0; i < up->nstreams; i++)
    up->streams[i].rkt = p->rkt ? p->rkt[i] : NULL;
  up->ckpt_rkt = p->ckpt_rkt;
  up->gap_rkt = p->gap_rkt;
}

/* Creates the checkpoint topic (compacted, LogAppendTime) unless the
 * cluster already has it (sync__producer_open(), before any handle of it): a
 * metadata request first, so that an operator-made topic works where
 * CreateTopics is not allowed (ACLs, or clusters that do not implement it). */
static int ensure_ckpt_topic(sl_sync_t *up, char *errstr, size_t errlen) {
  const rd_kafka_metadata_t *md = NULL;
  bool exists = false;
  /* All topics: a request naming the topic would have a broker with
   * auto.create.topics.enable create it, uncompacted. */
  if (rd_kafka_metadata(up->rk, 1, NULL, &md, 15000) == 0) {
    for (int i = 0; i < md->topic_cnt && !exists; i++)
      exists = !strcmp(md->topics[i].topic, up->ckpt_topic) &&
               !md->topics[i].err && md->topics[i].partition_cnt > 0;
    rd_kafka_metadata_destroy(md);
  }
  return exists ? 0
                : sync__ensure_topic(up, up->ckpt_topic, true, errstr, errlen);
}

int sync__producer_open(sl_sync_t *up, char *errstr, size_t errlen) {
  int rc;
  for (int k = 0; k < up->nprod; k++)
    if ((rc = prod_open(up, &up->prod[k], errstr, errlen)) < 0) {
      while (k-- > 0)
        prod_close(up, &up->prod[k]);
      return rc;
    }
  sync__producer_use(up, 0);
  if (!up->o.at_least_once) {
    if ((rc = ensure_ckpt_topic(up, errstr, errlen)) < 0) {
      sync__producer_close(up);
      return rc;
    }
    for (int k = 0; k < up->nprod; k++)
      up->prod[k].ckpt_rkt =
          rd_kafka_topic_new(up->prod[k].rk, up->ckpt_topic, NULL);
    sync__producer_use(up, 0);
  }
  /* Exactly-once: init_transactions() reached the coordinator. An
   * at-least-once producer has talked to no broker yet: its first commit
   * or the idle probe says so. */
  if (!up->o.at_least_once)
    sync__set_connected(up, 1);
  return 0;
}

/* The committer must not be inside commit_transaction() (the uplink
 * collects its result before closing). */
void sync__producer_close(sl_sync_t *up) {
  for (int k = 0; k < up->nprod; k++)
    prod_close(up, &up->prod[k]);
  pthread_mutex_lock(&up->lock);
  up->stats.connected = 0; /* a new producer must reach a broker again */
  pthread_mutex_unlock(&up->lock);
  sync__producer_use(up, 0);
  up->in_txn = false;
}

int sync__ensure_topic(sl_sync_t *up, const char *topic, bool compact,
                       char *errstr, size_t errlen) {
  char e[256];
  int rc = SL_EKAFKA;
  rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 1, -1, e, sizeof(e));
  rd_kafka_AdminOptions_t *opts = NULL;
  rd_kafka_queue_t *q = NULL;
  rd_kafka_event_t *ev = NULL;
  if (!nt) {
    snprintf(errstr, errlen, "topic %s: %s", topic, e);
    return SL_ECONFIG;
  }
  if (compact) {
    rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
    /* The checkpoint topic: the broker stamps its records, and the
     * delivery reports carry that time, which is how the uplink learns
     * the broker's clock (record_timestamp broker_estimate, the skew). */
    rd_kafka_NewTopic_set_config(nt, "message.timestamp.type", "LogAppendTime");
  }
  opts = rd_kafka_AdminOptions_new(up->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_request_timeout(opts, 15000, e, sizeof(e));
  rd_kafka_AdminOptions_set_operation_timeout(opts, 15000, e, sizeof(e));
  q = rd_kafka_queue_new(up->rk);
  rd_kafka_CreateTopics(up->rk, &nt, 1, opts, q);
  /* In slices, so that a stop need not wait 20 s for a broker that went
   * away after init_transactions. */
  uint64_t deadline = sl_now_mono_ns() + 20000000000ull;
  while (!(ev = rd_kafka_queue_poll(q, 200)) && sl_now_mono_ns() < deadline &&
         !sync__stopping(up))
    ;
  if (!ev) {
    snprintf(errstr, errlen, "create topic %s: %s", topic,
             sync__stopping(up) ? "stopped" : "timed out");
    rc = sync__stopping(up) ? SL_ECLOSED : SL_EKAFKA;
    goto fail;
  }
  if (rd_kafka_event_error(ev)) {
    snprintf(errstr, errlen, "create topic %s: %s", topic,
             rd_kafka_event_error_string(ev));
    goto fail;
  }
  size_t cnt = 0;
  const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(
      rd_kafka_event_CreateTopics_result(ev), &cnt);
  if (cnt == 1 && rd_kafka_topic_result_error(res[0]) &&
      rd_kafka_topic_result_error(res[0]) !=
          RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    snprintf(errstr, errlen, "create topic %s: %s", topic,
             rd_kafka_topic_result_error_string(res[0]));
    goto fail;
  }
  rc = 0;
fail:
  if (ev)
    rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_NewTopic_destroy(nt);
  return rc;
}

static void *arena_alloc(void *data, size_t size) {
  sl_sync_t *up = data;
  size_t at = (up->arena_used + 15) & ~(size_t)15; /* max_align_t */
  if (at > up->arena_cap || size > up->arena_cap - at) {
    up->arena_short = true;
    return NULL;
  }
  up->arena_used = at + size;
  return up->arena_mem + at;
}

static void arena_free(void *data, void *ptr) {
  (void)data;
  (void)ptr; /* the whole arena is reset by the next decode */
}

Sluice__V1__Event *sync__event_unpack(sl_sync_t *up, const void *data,
                                      size_t len, bool *own) {
  *own = false;
  for (;;) {
    up->arena_used = 0;
    up->arena_short = false;
    if (up->arena_mem) {
      up->arena.alloc = arena_alloc;
      up->arena.free = arena_free;
      up->arena.allocator_data = up;
      Sluice__V1__Event *e = sluice__v1__event__unpack(&up->arena, len, data);
      if (e || !up->arena_short)
        return e; /* decoded, or corrupt */
    }
    /* Too small (or none yet): grow to fit, bounded (an event is at most
     * kafka.max_record_bytes stored; its structures take a few times
     * that). */
    size_t cap = up->arena_cap ? up->arena_cap * 2 : 65536;
    while (cap < 4 * len + 4096)
      cap *= 2;
    uint8_t *m = cap <= (size_t)64 << 20 ? malloc(cap) : NULL;
    if (!m) {
      *own = true;
      return sluice__v1__event__unpack(NULL, len, data);
    }
    free(up->arena_mem);
    up->arena_mem = m;
    up->arena_cap = cap;
  }
}

long sync__json_value(sl_sync_t *up, const sync_stream_t *s, uint64_t off,
                      const Sluice__V1__Event *e, int64_t append_time_ns) {
  /* Straight from the event into the reusable buffer (no jansson tree). */
  sl_jbuf_t b = {.p = up->jbuf, .cap = up->jbuf_cap};
  long n = s->json_compact
               ? sl_event_json_write_compact(&b, e, append_time_ns)
               : sl_event_json_write(&b, s->name, off, e, append_time_ns);
  up->jbuf = b.p;
  up->jbuf_cap = b.cap;
  return n;
}

int sync__produce(sl_sync_t *up, rd_kafka_topic_t *rkt, const void *key,
                  size_t klen, const void *val, size_t vlen,
                  const rd_kafka_vu_t *hdrs, size_t nhdrs, void *opaque,
                  int64_t ts_ms) {
  rd_kafka_vu_t vu[16];
  size_t n = 0;
  vu[n].vtype = RD_KAFKA_VTYPE_RKT;
  vu[n++].u.rkt = rkt;
  vu[n].vtype = RD_KAFKA_VTYPE_KEY;
  vu[n].u.mem.ptr = (void *)key;
  vu[n++].u.mem.size = klen;
  vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
  vu[n].u.mem.ptr = (void *)val;
  vu[n++].u.mem.size = vlen;
  vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  vu[n++].u.i = RD_KAFKA_MSG_F_COPY;
  vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
  vu[n++].u.ptr = opaque;
  vu[n].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
  vu[n++].u.i64 = ts_ms;
  for (size_t i = 0; i < nhdrs && n < SL_ARRAY_SIZE(vu); i++)
    vu[n++] = hdrs[i];
  for (;;) {
    rd_kafka_error_t *error = rd_kafka_produceva(up->rk, vu, n);
    if (!error)
      return 0;
    rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    if (code == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_error_destroy(error);
      /* The queue is capped small on purpose: serve delivery reports
       * until there is room. */
      rd_kafka_poll(up->rk, 5);
      pthread_mutex_lock(&up->lock);
      bool stop = up->stop, auth = up->auth_failed;
      pthread_mutex_unlock(&up->lock);
      if (stop)
        return SL_ECLOSED;
      if (auth)
        return SL_EKAFKA;
      continue;
    }
    int rc =
        code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? SL_ETOOBIG : SL_EKAFKA;
    sync__set_error(up, rc, "produce: %s", rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
    return rc;
  }
}

int sync__txn_call(sl_sync_t *up, rd_kafka_error_t *error, const char *what,
                   bool *fatal, bool *abortable, bool *retriable) {
  *fatal = *abortable = *retriable = false;
  if (!error)
    return 0;
  *abortable = rd_kafka_error_txn_requires_abort(error);
  *retriable = rd_kafka_error_is_retriable(error);
  return txn_error(up, error, what, fatal);
}
