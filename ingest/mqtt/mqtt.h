/*
 * MQTT ingest and fan-out, private to the daemon layer (docs/MQTT.md).
 *
 * Files:
 *   ingest_mqtt.c        links: libmosquitto handles driven from the loop
 *                        (uv_poll, keepalive timer, connect on a worker
 *                        thread, reconnect backoff), start and stop
 *   ingest_mqtt_ack.c    messages -> batches -> store, PUBACK after commit
 *   ingest_mqtt_map.c    topic rules with captures, source templates,
 *                        JSON and raw payloads, dead letters
 *   decode_sparkplug.c   Sparkplug B payloads, alias tables, seq, births
 *   decode_json_mapped.c JSON payloads (json_scan.c: its lexer), no tree
 *   ingest_mqtt_fanout.c stored streams and node status published to MQTT
 *
 * Everything runs on the loop thread except the blocking connect, which
 * runs on libuv's thread pool while the loop leaves that handle alone.
 */
#ifndef SL_BROKER_MQTT_H
#define SL_BROKER_MQTT_H

#include <stdbool.h>
#include <stdint.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <uv.h>

#include "ingest/ingest.h"
#include "decode/decode_inference.h"
#include "decode/decode_json.h"

typedef struct sl_mqtt sl_mqtt_t;
typedef struct sl_mqtt_link sl_mqtt_link_t;
typedef struct sl_sp sl_sp_t;
typedef struct mqtt_redeliver mqtt_redeliver_t;

/* ---- links ------------------------------------------------------------ */

/* The retained node status when sluice is gone: the publish link's will
 * (it vanished) and its last publish on a graceful stop. */
#define MQTT_STATUS_OFFLINE "{\"state\":\"offline\"}"

typedef enum {
  LINK_DOWN = 0,   /* no socket; a reconnect timer may be armed */
  LINK_CONNECTING, /* the worker thread owns the handle */
  LINK_CONNECTED,  /* socket open, CONNECT sent or CONNACK pending */
  LINK_ACTIVE,     /* CONNACK accepted (and SUBACK for the ingest link) */
} sl_mqtt_link_state_t;

/* One MQTT client connection driven from the loop. */
struct sl_mqtt_link {
  sl_mqtt_t *mq;
  const char *role;       /* "ingest" or "publish", metrics and logs */
  char client_id[160];    /* fixed client id */
  bool persistent;        /* clean start off, session expiry set */
  struct mosquitto *mosq; /* the libmosquitto handle */
  uv_poll_t *poll_ptr;    /* on mosquitto_socket() while connected */
  int poll_fd;            /* fd poll was started on, -1 = none */
  int poll_events;        /* UV_READABLE | UV_WRITABLE currently asked */
  bool poll_closing;      /* uv_close on poll pending */
  uv_timer_t retry;       /* reconnect backoff */
  uv_work_t work;         /* blocking connect on the thread pool */
  int connect_rc;         /* result of the worker's connect */
  int connect_errno;      /* errno right after it (MOSQ_ERR_ERRNO), taken
                             on the worker thread that made the call */
  bool work_busy;         /* work queued or running */
  bool timer_open;        /* retry timer not yet closed */
  int state;              /* sl_mqtt_link_state_t */
  unsigned failures;      /* consecutive failed attempts (backoff) */
  uint64_t gen;           /* bumped at every disconnect */
  bool drop;              /* destroy the handle at the next safe point */
  bool paused;            /* reading stopped (ack-after-commit) */
  int subacks;            /* SUBACKs still expected */
  bool log_on;            /* libmosquitto's log callback is set */
  /* May queued packets be written now? The ingest link says no while a
   * PUBACK for an uncommitted message may be queued. */
  bool (*may_write)(sl_mqtt_link_t *l);
  void (*on_active)(sl_mqtt_link_t *l, bool session_present);
  /* A message read on this link (inside mosquitto_loop_read). May be
   * NULL (the publish link reads none). */
  void (*on_message)(sl_mqtt_link_t *l, const struct mosquitto_message *msg);
  /* After each burst of reads (the ingest link commits it). May be NULL. */
  void (*after_read)(sl_mqtt_link_t *l);
  sl_metric_t *connected;  /* gauge 0/1 */
  sl_metric_t *reconnects; /* counter */
};

/* Creates the handle and starts connecting. Returns 0 or -ENOMEM,
 * SL_EMQTT (libmosquitto refused an option) with errstr. */
int mqtt__link_init(sl_mqtt_t *mq, sl_mqtt_link_t *l, const char *role,
                    const char *client_id, bool persistent, char *errstr,
                    size_t errlen);
/* Re-arms the poll for the events the link wants now (read unless paused,
 * write when libmosquitto has output and may_write allows it). */
void mqtt__link_update(sl_mqtt_link_t *l);
/* Writes queued packets if may_write() allows it. */
void mqtt__link_flush(sl_mqtt_link_t *l);
/* Drops the connection without writing anything queued (a commit failed:
 * its PUBACKs must never leave). The broker redelivers. */
void mqtt__link_abort(sl_mqtt_link_t *l);
/* Disconnects (DISCONNECT only when may_write allows it), destroys the
 * handle and closes the poll and timer. Called again by the connect
 * completion when a connect was running. */
void mqtt__link_stop(sl_mqtt_link_t *l);
/* Handles (poll, timer, work) not yet closed. */
/* Mirrors libmosquitto's log callback to the link's state (loop thread). */
void mqtt__link_log_sync(sl_mqtt_link_t *l);
int mqtt__link_open_handles(const sl_mqtt_link_t *l);

/* ---- subscription rules ------------------------------------------------ */

#define MQTT_MAX_CAPTURES 16

typedef struct mqtt_rule {
  const sl_config_mqtt_sub_t *conf; /* borrowed from mq->cfg */
  char *filter;  /* the filter sent to the broker ("+name" -> "+") */
  char **levels; /* filter levels, captures as "+" */
  char **names;  /* capture name per level, NULL if none */
  size_t nlevels;
  bool hash;             /* last level is '#' */
  size_t stream;         /* index in ic->streams */
  sl_json_map_t map;     /* JSON field paths */
  sl_metric_t *messages; /* messages matched */
  sl_metric_t *bytes;    /* payload bytes matched */
} mqtt_rule_t;

/* Compiles every subscription. Errors: SL_ECONFIG (unknown stream), with
 * errstr; -ENOMEM. */
int mqtt__rules_init(sl_mqtt_t *mq, char *errstr, size_t errlen);
void mqtt__rules_free(sl_mqtt_t *mq);
/* First rule matching topic, or NULL; caps[] receive the captured levels
 * (views into topic, with lengths). */
const mqtt_rule_t *mqtt__rule_match(sl_mqtt_t *mq, const char *topic,
                                    const char **caps, size_t *caplens);
/* Expands a source template into out (cap bytes). Returns 0 or SL_ETOOBIG. */
int mqtt__source_expand(const mqtt_rule_t *r, const char *tmpl,
                        const char *topic, const char *const *caps,
                        const size_t *caplens, char *out, size_t cap);
/* True when s (len bytes) is valid UTF-8 without NUL and U+D800-DFFF. */
bool mqtt__utf8_ok(const char *s, size_t len);

/* ---- batches and ack-after-commit -------------------------------------- */

/* Appends one received message (already mapped and decoded) to the batch
 * being built. Called from on_message. */
/* Pauses or resumes reading the ingest link from the state of the burst
 * and the commits (acks.c). */
void mqtt__update_pause(sl_mqtt_t *mq);
void mqtt__on_message(sl_mqtt_t *mq, const struct mosquitto_message *msg);
/* Submits what the burst built. Returns 0, or SL_EBACKPRESSURE when the
 * writer queue is full (the batch stays, reading pauses). */
int mqtt__flush(sl_mqtt_t *mq);
/* Counts a rejected payload and records it in the dead-letter stream. */
void mqtt__dead_letter(sl_mqtt_t *mq, const char *topic, const void *payload,
                       size_t len, const char *decoder, const char *reason,
                       const char *detail);
/* The per-stream batch being built for stream index idx. */
sl_json_batch_t *mqtt__batch(sl_mqtt_t *mq, size_t idx);
/* Adds an alias-table put to the group being built. Takes ownership of
 * val (malloc'd). */
int mqtt__state_put(sl_mqtt_t *mq, const char *key, void *val, size_t vlen);
/* Counts one decode error by reason. */
void mqtt__count_error(sl_mqtt_t *mq, const char *reason);

/* ---- redeliveries (ingest_mqtt_redeliver.c) ------------------------------ */

/* Loads the record of the last messages committed for session client_id.
 * Returns 0 or -ENOMEM. */
int mqtt__redeliver_init(sl_mqtt_t *mq, const char *client_id);
void mqtt__redeliver_free(sl_mqtt_t *mq);
/* The ingest link got its CONNACK. */
void mqtt__redeliver_connected(sl_mqtt_t *mq, bool session_present);
/* Records a QoS 1 message of the ingest link; true when it is a
 * redelivery of a message already stored (acknowledge, do not store). */
bool mqtt__redeliver_seen(sl_mqtt_t *mq, const struct mosquitto_message *msg);
/* True when the record must be written with the next group. */
bool mqtt__redeliver_dirty(const sl_mqtt_t *mq);
/* Adds the record to g; mqtt__redeliver_submitted() once g is submitted
 * returns the last record it holds, for mqtt__redeliver_durable() once g
 * is committed. */
int mqtt__redeliver_put(sl_mqtt_t *mq, sl_store_group_t *g);
uint64_t mqtt__redeliver_submitted(sl_mqtt_t *mq);
void mqtt__redeliver_durable(sl_mqtt_t *mq, uint64_t upto);
/* A commit failed: back to the record the store holds. */
void mqtt__redeliver_failed(sl_mqtt_t *mq);

/* ---- Sparkplug B -------------------------------------------------------- */

/* Decodes one Sparkplug message on a rule with decoder sparkplug. topic is
 * "spBv1.0/group/TYPE/node[/device]". Appends events to the rule's stream
 * batch; undecodable payloads go to the dead letters. */
void sl_sp_handle(sl_mqtt_t *mq, const mqtt_rule_t *r, const char *topic,
                  const void *payload, size_t len, int64_t now_ns);
int sl_sp_new(sl_mqtt_t *mq, sl_sp_t **out);
void sl_sp_free(sl_sp_t *sp);

/* ---- fan-out and node status -------------------------------------------- */

int mqtt__fanout_init(sl_mqtt_t *mq, char *errstr, size_t errlen);
/* Publishes new events of fan-out streams; called from the housekeeping
 * timer and after commits. */
void mqtt__fanout_poll(sl_mqtt_t *mq);
void mqtt__fanout_free(sl_mqtt_t *mq);
/* Publishes on the publish link (QoS, retain, expiry in seconds or 0).
 * Returns 0, SL_ECLOSED (no publish link) or SL_EMQTT. */
int mqtt__publish(sl_mqtt_t *mq, const char *topic, const void *payload,
                  size_t len, int qos, bool retain, uint32_t expiry_s);
/* Publishes the retained status now. */
void mqtt__status_publish(sl_mqtt_t *mq);

/* ---- the module ---------------------------------------------------------- */

typedef struct mqtt_stream_batch {
  sl_json_batch_t jb; /* events for this stream in the burst being built */
  bool used;          /* jb initialised */
} mqtt_stream_batch_t;

typedef struct mqtt_state_put {
  struct mqtt_state_put *next;
  char *key;
  void *val;
  size_t vlen;
} mqtt_state_put_t;

typedef struct mqtt_fanout mqtt_fanout_t;

struct sl_mqtt {
  sl_ingest_t *ic;
  const sl_config_t *cfg; /* ic->cfg at start: every mqtt key is restart */
  sl_mqtt_link_t in;      /* ingest: persistent session, subscriptions */
  sl_mqtt_link_t out;     /* publish: fan-out, status, Sparkplug NCMD */
  bool have_out;
  bool stopping;
  uv_timer_t misc; /* 1 s: keepalive (loop_misc), status, fan-out */
  bool misc_closed;

  mqtt_rule_t *rules;
  size_t nrules;
  size_t dlq;                 /* dead-letter stream index, SIZE_MAX = none */
  uint32_t max_events;        /* events per message */
  sl_ingest_rules_t ev_rules; /* event rules; now_ns set per message */

  /* The burst being built (ack-after-commit, ingest_mqtt_ack.c). */
  mqtt_stream_batch_t *sb;   /* one per configured stream */
  mqtt_stream_batch_t evtmp; /* decoder event: one message, then into sb */
  sl_infer_dec_t *infdec;    /* decoder inference (made at first use) */
  mqtt_state_put_t *puts;    /* state puts for the same group */
  uint32_t built_events;     /* events in sb[] */
  uint32_t built_qos1;       /* QoS 1 messages in sb[] (ingest link gen) */
  uint64_t unacked;          /* QoS 1 messages read, commit not durable */
  unsigned commits;          /* groups submitted, not completed */
  /* A new connection of the ingest link reads nothing until the commits
   * of the previous one completed: the broker resends what it did not see
   * acknowledged, and a resend must meet a durable record to be known for
   * one (ingest/mqtt/redeliver.c). */
  bool settle;
  bool store_full;     /* the last submit met a full writer queue */
  uint64_t durable_ns; /* when unacked last reached 0, for latency */

  mqtt_redeliver_t *rd; /* redeliveries already stored */
  sl_sp_t *sp;          /* Sparkplug state */
  bool sp_used;         /* a rule uses the sparkplug decoder */
  mqtt_fanout_t *fan;   /* fan-out readers */
  size_t nfan;
  uint64_t status_next_ns; /* next status publish */

  /* Metrics. */
  sl_metric_t *puback_latency; /* commit durable -> PUBACKs written */
  sl_metric_t *messages;       /* all messages received */
  sl_metric_t *too_big;        /* also in decode errors */
  sl_metric_t *published;      /* fan-out publishes */
  sl_metric_t *sp_gaps;        /* Sparkplug seq gaps */
  sl_metric_t *sp_rebirths;    /* rebirth requests sent */
};

/* While stopping: once nothing is left to commit or acknowledge, stops the
 * links and the timer. */
void mqtt__try_finish(sl_mqtt_t *mq);

/* Entry points used by daemon/daemon.c. */
int sl_mqtt_start(sl_ingest_t *ic, sl_mqtt_t **out, char *errstr,
                  size_t errlen);
/* Stops reading; once the last commit is acknowledged, disconnects and
 * closes every handle. NULL: no-op. */
void sl_mqtt_stop(sl_mqtt_t *mq);
/* Store completions arrived: retries a batch refused by a full queue. */
void sl_mqtt_resume(sl_mqtt_t *mq);
/* Handles not yet closed (0 once stopped). NULL: 0. */
int sl_mqtt_open_handles(const sl_mqtt_t *mq);
/* Frees everything once sl_mqtt_open_handles() is 0. NULL: no-op. */
void sl_mqtt_free(sl_mqtt_t *mq);

#endif /* SL_BROKER_MQTT_H */
