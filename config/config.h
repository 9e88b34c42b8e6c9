/*
 * config/: the daemon's configuration (library sl_config; it depends on
 * the engine sl_cfg (config/cfg.h), common/ and the library modules whose
 * options it carries, never on the daemon rooms). One declarative table
 * (config/schema/options.c, rows in the engine's format) drives parsing,
 * validation, defaults, environment overrides, reload classification, the
 * effective-config dump and the generated docs/CONFIGURATION.md.
 *
 * Precedence: built-in default < YAML file < environment (SLUICE_<PATH>).
 * Loading never logs: every problem is reported through errstr, one line per
 * error, each naming the origin (file:line:column or the environment
 * variable), the key and the offending value (secrets are never echoed).
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/common.h"
#include "config/cfg.h"

/* Largest configuration text accepted, file or string. */
#define SL_CONFIG_MAX_BYTES SL_CFG_MAX_BYTES
/* Deepest nesting of mappings and sequences accepted (the table needs 6). */
#define SL_CONFIG_MAX_DEPTH SL_CFG_MAX_DEPTH
/* At most this many errors are reported; the rest are counted. */
#define SL_CONFIG_MAX_ERRORS SL_CFG_MAX_ERRORS

/* store.sync */
typedef enum {
  SL_CONFIG_SYNC_ALWAYS = 0, /* fsync per group commit */
  SL_CONFIG_SYNC_INTERVAL    /* timed fsync every store.sync_interval */
} sl_config_sync_t;

/* log.level */
typedef enum {
  SL_CONFIG_LOG_ERROR = 0,
  SL_CONFIG_LOG_WARN,
  SL_CONFIG_LOG_INFO,
  SL_CONFIG_LOG_DEBUG
} sl_config_log_level_t;

/* log.format */
typedef enum {
  SL_CONFIG_LOG_PLAIN = 0,
  SL_CONFIG_LOG_JSON
} sl_config_log_fmt_t;

/*
 * The debug contexts of log.debug: the one list of their names. Context i
 * is bit 1 << i; the table's names (config/schema/options.c) and the daemon
 * log's contexts (telemetry/log.h, SL_LOG_CTX_*) are generated from it.
 */
#define SL_CONFIG_DBG_MAP(X)                                                   \
  X(STORE, "store")                                                            \
  X(INGEST, "ingest")                                                          \
  X(HTTP, "http")                                                              \
  X(MQTT, "mqtt")                                                              \
  X(SYNC, "sync")                                                              \
  X(CONFIG, "config")

enum {
#define SL__XDBG(id, name) SL_CONFIG_DBG_BIT_##id,
  SL_CONFIG_DBG_MAP(SL__XDBG)
#undef SL__XDBG
      SL_CONFIG_DBG_COUNT
};
/* log.debug bits: SL_CONFIG_DBG_STORE, ... */
enum {
#define SL__XDBG(id, name) SL_CONFIG_DBG_##id = 1u << SL_CONFIG_DBG_BIT_##id,
  SL_CONFIG_DBG_MAP(SL__XDBG)
#undef SL__XDBG
      SL_CONFIG_DBG_ALL = (1u << SL_CONFIG_DBG_COUNT) - 1
};

/* kafka.delivery */
typedef enum {
  SL_CONFIG_DELIVERY_EXACTLY_ONCE = 0,
  SL_CONFIG_DELIVERY_AT_LEAST_ONCE
} sl_config_delivery_t;

/* streams[].policy: what happens when store.budget_bytes is reached. */
typedef enum {
  SL_CONFIG_POLICY_BLOCK = 0,
  SL_CONFIG_POLICY_DROP_OLDEST,
  SL_CONFIG_POLICY_EVICT_PRIORITY
} sl_config_policy_t;

/* mqtt.version */
typedef enum {
  SL_CONFIG_MQTT_V5 = 0, /* MQTT 5 */
  SL_CONFIG_MQTT_V311    /* MQTT 3.1.1 */
} sl_config_mqtt_version_t;

/* mqtt.subscriptions[].decoder */
typedef enum {
  SL_CONFIG_MQTT_JSON = 0,  /* JSON object or array, field paths below */
  SL_CONFIG_MQTT_RAW,       /* bytes stored as Raw with a content type */
  SL_CONFIG_MQTT_SPARKPLUG, /* Sparkplug B protobuf payloads */
  SL_CONFIG_MQTT_EVENT,     /* sluice's own event JSON (docs/HTTP.md) */
  SL_CONFIG_MQTT_INFERENCE, /* inference JSON (docs/EDGE-AI.md) */
  SL_CONFIG_MQTT_OIP        /* OIP v2 responses (profile in oip) */
} sl_config_mqtt_decoder_t;

/* mqtt.subscriptions[].json_time_unit: unit of numeric timestamps. */
typedef enum {
  SL_CONFIG_TIME_MS = 0,
  SL_CONFIG_TIME_S,
  SL_CONFIG_TIME_US,
  SL_CONFIG_TIME_NS
} sl_config_time_unit_t;

/* One element of mqtt.subscriptions: a topic filter mapped to a stream. */
typedef struct sl_config_mqtt_sub {
  char *filter;        /* MQTT filter; "+name" levels capture */
  char *stream;        /* configured stream name */
  char *source;        /* source template: "{name}" captures, "{topic}" */
  int decoder;         /* sl_config_mqtt_decoder_t */
  uint64_t qos;        /* 0 or 1 */
  char *json_value;    /* dotted path of the value ("" = whole payload) */
  char *json_time;     /* dotted path of the event time, "" = none */
  int json_time_unit;  /* sl_config_time_unit_t for numeric times */
  char *json_quality;  /* dotted path of the quality, "" = none */
  char *json_unit;     /* dotted path of the unit, "" = none */
  char *json_datatype; /* dotted path of the datatype name, "" = none */
  char *content_type;  /* raw decoder: content type stored */
  char *oip;           /* oip decoder: the oip profile's name */
} sl_config_mqtt_sub_t;

/* One element of mqtt.fanout: a stored stream published to MQTT. */
typedef struct sl_config_mqtt_fanout {
  char *stream;               /* configured stream name */
  char *topic;                /* topic template: "{source}", "{stream}" */
  uint64_t qos;               /* 0 or 1 */
  bool retain;                /* publish retained */
  uint64_t message_expiry_ms; /* MQTT 5 message expiry, 0 = none */
} sl_config_mqtt_fanout_t;

/* A list of owned strings (list-typed options; config/cfg.h). */
typedef sl_cfg_strlist_t sl_config_strlist_t;

/* One element of oip: how an OIP v2 response becomes an inference event
 * (docs/EDGE-AI.md; decode/decode_inference.h sl_oip_map_t). */
typedef struct sl_config_oip {
  char *name;                 /* profile name, unique */
  char *model;                /* when the response has no model_name */
  char *model_version;        /* when the response has no model_version */
  char *model_digest;         /* "" = none */
  int task;                   /* Sluice__V1__InferenceTask (1..4) */
  char *output;               /* output tensor name, "" = the first */
  sl_config_strlist_t labels; /* label map: class i's name */
  char *label_map_digest;     /* "" = none */
  double score_threshold;
  uint64_t top_k;
  int role; /* Sluice__V1__InferenceRole (1..3) */
} sl_config_oip_t;

/* TLS of one listener (security/tls.h); cert "" = plain TCP. */
typedef struct sl_config_tls {
  char *cert;      /* server certificate chain (PEM), "" = no TLS */
  char *key;       /* its private key (PEM) */
  char *client_ca; /* CA (PEM) verifying client certificates, "" = none */
} sl_config_tls_t;

/* One element of listeners.native.clients / listeners.http.clients. */
typedef struct sl_config_client {
  char *name;                  /* identity recorded on the client's events */
  char *token_sha256;          /* hex SHA-256 of the token, "" = none */
  char *cert_cn;               /* client certificate subject CN, "" = none */
  sl_config_strlist_t streams; /* stream names or globs it may write */
} sl_config_client_t;

/* A list of clients (security/auth.h). */
typedef struct sl_config_clients {
  sl_config_client_t *v; /* n owned elements */
  size_t n;
} sl_config_clients_t;

/* One element of the streams: list. */
typedef struct sl_config_stream {
  char *name;        /* [a-z0-9._-]+, unique */
  uint64_t priority; /* 0..9, higher is more important */
  int policy;        /* sl_config_policy_t */
  uint64_t ttl_ms;   /* retention age, 0 = none */
  char *topic;       /* Kafka topic, default "sluice.<name>" */
  int format;        /* Kafka values: 0 protobuf, 1 json */
  int json_layout;   /* format json: 0 full, 1 compact */
  int compression;   /* SL_SYNC_COMPRESS_* (zstd lz4 gzip snappy none) */
  uint64_t compression_level; /* 0: the codec's default */
  char *dedupe_key;           /* "" off, "attr.NAME" or "source+time" */
  uint64_t dedupe_window_ms;
  uint64_t dedupe_max_keys;
} sl_config_stream_t;

/* One step of a pipeline (docs/PROCESSING.md). Exactly one of the head
 * keys filter, deadband, sample, rate_limit, aggregate, route is set; the
 * other fields are that step's options. */
typedef struct sl_config_step {
  char *filter;          /* expression; "" = not a filter step */
  int action;            /* keep|drop|tag */
  char *tag;             /* "key=value" for action tag */
  char *deadband;        /* "0.5" absolute or "2%" relative; "" = none */
  uint64_t heartbeat_ms; /* deadband: resend unchanged after this */
  uint64_t sample;       /* keep 1 in N; 0 = not a sample step */
  uint64_t rate_limit;   /* N per source per interval; 0 = none */
  uint64_t interval_ms;  /* rate_limit interval */
  sl_config_strlist_t aggregate; /* functions; empty = not an aggregate */
  uint64_t window_ms, hop_ms, lateness_ms;
  int late;             /* drop|correct */
  char *group_by;       /* source|none|attr.NAME|a capture */
  char *into;           /* stream of the results */
  bool keep_raw;        /* keep the aggregated events too */
  uint64_t max_keys;    /* distinct keys tracked */
  char *route;          /* kafka|mqtt|local; "" = not a route step */
  char *stream;         /* route: store the events in this stream */
  char *topic;          /* route: Kafka or MQTT topic */
  char *key;            /* route: Kafka key */
  int format;           /* route: protobuf|json */
  bool model_aggregate; /* per model version aggregates (docs/EDGE-AI.md) */
  uint64_t model_keys;  /* model_aggregate: keys held (fixed memory) */
  sl_config_strlist_t reference; /* model_aggregate: 20 PSI proportions */
  uint64_t reference_windows;    /* model_aggregate: learnt reference */
} sl_config_step_t;

typedef struct sl_config_pipeline {
  char *name;                           /* unique, [a-z0-9._-] */
  char *match_stream;                   /* "" = any stream */
  char *match_source;                   /* glob with {captures}; "" = any */
  uint32_t match_kinds;                 /* SL_PROCESS_KIND_* bits; 0 = any */
  sl_config_strlist_t match_attributes; /* "key=glob", all must hold */
  struct {
    sl_config_step_t *v; /* n owned elements */
    size_t n;
  } steps;
} sl_config_pipeline_t;

/*
 * The effective configuration. Every field is set (defaults filled in) once
 * a load succeeded. Strings are owned by the config and never NULL (unset
 * optional strings are ""). Durations are in milliseconds, sizes in bytes.
 */
typedef struct sl_config {
  struct {
    char *id;       /* node identity, [A-Za-z0-9._-]{1,64} */
    char *data_dir; /* absolute path of the LMDB environment */
  } node;
  struct {
    char *user;  /* drop root to this user after binding, "" = stay */
    char *group; /* and this group, "" = the user's primary group */
  } run;
  struct {
    uint64_t budget_bytes;     /* disk budget for the log */
    int sync;                  /* sl_config_sync_t */
    uint64_t sync_interval_ms; /* with sync = interval */
    uint64_t queue_depth;      /* ingest -> writer queue, in batches */
    char *encryption_key_file; /* encryption at rest: key file, "" = none */
    char *encryption_key_env;  /* ... or environment variable, "" = none */
    bool accept_new;           /* accept a store whose identity changed */
  } store;
  struct {
    char *native_tcp;                   /* host:port, "" = off */
    char *native_unix;                  /* socket path, "" = off */
    char *native_token;                 /* secret: shared token, "" = none */
    char *http_address;                 /* host:port, "" = off */
    sl_config_tls_t native_tls;         /* TLS of the native TCP listener */
    sl_config_tls_t http_tls;           /* TLS of the HTTP listener */
    sl_config_clients_t native_clients; /* credentials, empty = none */
    sl_config_clients_t http_clients;   /* credentials, empty = none */
    char *native_unix_mode;             /* octal mode of the socket, "0660" */
    sl_config_strlist_t http_origins; /* Origins allowed, none = any refused */
  } listeners;
  struct {
    char *address;       /* host:port, "" = off */
    sl_config_tls_t tls; /* TLS of the admin server */
    char *token_sha256;  /* hex SHA-256 of the admin token, "" = none */
  } admin;
  struct {
    bool watch; /* reload when the config file's directory changes */
  } reload;
  struct {
    char *bootstrap;    /* bootstrap file, "" = no enrolment */
    char *identity_dir; /* "" = <data_dir>/identity */
    double renew_at;    /* share of the lifetime */
    uint64_t retry_ms;
  } enrol;
  struct {
    bool enabled;               /* desired state from the fleet topics */
    char *brokers;              /* "" = kafka.brokers */
    char *topic_prefix;         /* "sluice.fleet." */
    char *verify_key;           /* Ed25519 public key (PEM) of documents */
    sl_config_strlist_t labels; /* "key=value" */
    uint64_t max_trial_starts;  /* starts of a trial before crash loop */
    uint64_t heartbeat_ms;      /* status re-published this often */
  } fleet;
  struct {
    bool enabled;                   /* model distribution (daemon/models.c) */
    char *dir;                      /* "" = <node.data_dir>/models */
    char *brokers;                  /* "" = fleet.brokers, kafka.brokers */
    char *topic_prefix;             /* "" = fleet.topic_prefix */
    char *verify_key;               /* "" = fleet.verify_key */
    sl_config_strlist_t names;      /* models this node takes, empty = all */
    uint64_t bandwidth_bytes_per_s; /* download cap, 0 = none */
    char *window;                   /* "HH:MM-HH:MM" UTC, "" = always */
    uint64_t max_bytes;             /* disk for all versions, 0 = the disk's */
    char *gate_stream;              /* model_aggregate's into stream */
  } models;
  struct {
    uint64_t max_frame_bytes;
    uint64_t max_connections;
    uint64_t max_batch_events;
    uint64_t idle_timeout_ms; /* 0 = never */
    uint64_t max_inflight_batches_per_conn;
    uint64_t max_inflight_bytes; /* client bytes buffered, all listeners */
    uint64_t request_timeout_ms; /* accept -> complete request (or Hello) */
    uint64_t max_future_ms;      /* 0 = event times are not bounded */
    int future_policy;           /* sl_ingest_future_t (decode/event_check.h) */
  } limits;
  struct {
    int level;      /* sl_config_log_level_t */
    int format;     /* sl_config_log_fmt_t */
    uint32_t debug; /* SL_CONFIG_DBG_* bits */
  } log;
  struct {
    bool enabled;
    char *brokers;          /* bootstrap servers, comma separated */
    int delivery;           /* sl_config_delivery_t */
    char *ssl_key_location; /* private key file, "" = none */
    /* Uplink (sync/sync.h); see docs/DELIVERY.md. */
    char *checkpoint_topic;         /* compacted checkpoint topic */
    char *transactional_id_prefix;  /* transactional.id = prefix + node.id */
    char *gap_topic;                /* "" = each stream's own topic */
    char *dead_letter_stream;       /* refused records, "" = count only */
    sl_config_strlist_t properties; /* librdkafka "key=value" passthrough */
    uint64_t chunk_events;          /* records per transaction */
    uint64_t commit_interval_ms;    /* transaction length */
    uint64_t link_timeout_ms;       /* TCP_USER_TIMEOUT, 0 = off */
    bool commit_pipeline;           /* two producers, commits overlap */
    uint64_t queue_max_messages;    /* librdkafka queue cap, messages */
    uint64_t queue_max_bytes;       /* librdkafka queue cap, bytes */
    uint64_t max_record_bytes;      /* larger events are dead-lettered */
    uint64_t bandwidth_bytes_per_s; /* global cap, 0 = none */
    double backlog_share;           /* backlog lane's part of the cap */
    uint64_t backlog_threshold;     /* events behind that open two lanes */
    int backlog_order;              /* 0 oldest_first, 1 newest_first */
    int record_timestamp;           /* SL_SYNC_TS_*: node, event, broker */
    uint32_t omit_headers;          /* SL_SYNC_HDR_* bits not written */
  } kafka;
  struct {
    bool enabled;
    char *host;
    uint64_t port;
    char *tls_keyfile;            /* private key file, "" = none */
    int version;                  /* sl_config_mqtt_version_t */
    char *client_id;              /* fixed client id (persistent session) */
    uint64_t session_expiry_ms;   /* MQTT 5 session expiry */
    uint64_t keepalive_ms;        /* MQTT keepalive */
    uint64_t receive_maximum;     /* MQTT 5 receive maximum */
    char *username;               /* "" = none */
    char *password;               /* secret, "" = none */
    char *tls_ca;                 /* CA file, "" = plain TCP */
    char *tls_cert;               /* client certificate, "" = none */
    uint64_t reconnect_min_ms;    /* first reconnect delay */
    uint64_t reconnect_max_ms;    /* reconnect delay cap */
    uint64_t max_payload_bytes;   /* larger payloads are rejected */
    uint64_t sparkplug_max_nodes; /* nodes + devices tracked */
    uint64_t sparkplug_max_table_bytes; /* alias tables in memory */
    char *dead_letter_stream;           /* stream for undecodable payloads */
    char *status_topic;                 /* retained node status, "" = off */
    uint64_t status_interval_ms;        /* status publish period */
    struct {
      sl_config_mqtt_sub_t *v; /* n owned elements */
      size_t n;
    } subscriptions;
    struct {
      sl_config_mqtt_fanout_t *v; /* n owned elements */
      size_t n;
    } fanout;
  } mqtt;
  struct {
    sl_config_stream_t *v; /* n owned elements */
    size_t n;
  } streams;
  struct {
    sl_config_pipeline_t *v; /* n owned elements */
    size_t n;
  } pipelines;
  struct {
    sl_config_oip_t *v; /* n owned elements */
    size_t n;
  } oip;
} sl_config_t;

/* The oip profile named name, or NULL. */
const sl_config_oip_t *sl_config_oip_find(const sl_config_t *cfg,
                                          const char *name);

/*
 * Loads the YAML file at path, applies the environment overrides from the
 * process environment, validates everything and fills in defaults.
 * Returns 0 and *out (returns owned; free with sl_config_free()), or:
 *   SL_ECONFIG  invalid configuration: errstr lists every error found (up to
 *               SL_CONFIG_MAX_ERRORS), one per line;
 *   SL_ETOOBIG  the file is larger than SL_CONFIG_MAX_BYTES;
 *   -errno      the file could not be read (errstr names it).
 * On error *out is NULL. path and errstr are borrowed; errstr is always
 * NUL-terminated when errlen > 0 and truncated to fit.
 */
int sl_config_load_file(const char *path, sl_config_t **out, char *errstr,
                        size_t errlen);

/*
 * The first half of sl_config_load_file(): reads the file at path once
 * (refusing one that group or others may write, or larger than
 * SL_CONFIG_MAX_BYTES) into *text (returns owned, free(); not
 * NUL-terminated) and *len, for a caller that also needs the bytes (the
 * daemon hashes them). Returns 0, SL_ECONFIG, SL_ETOOBIG or -errno with
 * errstr; *text is NULL on error.
 */
int sl_config_read_file(const char *path, char **text, size_t *len,
                        char *errstr, size_t errlen);

/*
 * Same as sl_config_load_file() for len bytes of YAML text (need not be
 * NUL-terminated) named name in messages (e.g. "sluice.yaml" or
 * "desired-config v12"). envp is a NULL-terminated "NAME=value" array to
 * take SLUICE_* overrides from (pass environ for the process environment),
 * or NULL to apply none. Errors: SL_ECONFIG, SL_ETOOBIG as above. All
 * arguments are borrowed; *out: returns owned; free with sl_config_free().
 */
int sl_config_load_string(const char *name, const char *yaml, size_t len,
                          char *const *envp, sl_config_t **out, char *errstr,
                          size_t errlen);

/*
 * sl_config_load_string() with the fleet's remote layer (docs/FLEET.md):
 * when the text sets fleet.enabled, keys owned by the fleet may not be set
 * by the text or the environment, and remote_json (a JSON or YAML mapping
 * of fleet-owned keys only; NULL or "{}" for none) sets them, its errors
 * named by remote_name ("fleet generation 7"). Without fleet.enabled,
 * remote_json must be NULL. Errors: as sl_config_load_string().
 */
/* The enrolment bootstrap file (enrol.bootstrap; docs/ENROLMENT.md),
 * loaded with its own table (config/schema/bootstrap.c). */
typedef struct sl_config_bootstrap {
  char *brokers;                  /* the fleet's SSL bootstrap servers */
  char *ca;                       /* CA bundle: the brokers' and the fleet CA */
  char *claim_cert;               /* claim certificate (PEM) */
  char *claim_key;                /* its key: secret */
  char *claim_name;               /* which claim */
  char *topic_prefix;             /* the fleet topics' prefix */
  sl_config_strlist_t labels;     /* default labels, key=value */
  char *verify_key;               /* the fleet's document-signing key */
  sl_config_strlist_t properties; /* more librdkafka properties */
} sl_config_bootstrap_t;

/* Loads the bootstrap file at path: 0 and *out (free with
 * sl_config_bootstrap_free()), or an error with every problem in errstr. */
int sl_config_bootstrap_load(const char *path, sl_config_bootstrap_t **out,
                             char *errstr, size_t errlen);
void sl_config_bootstrap_free(sl_config_bootstrap_t *b);
/* The Markdown table of the bootstrap file's keys (docs/ENROLMENT.md). */
void sl_config_bootstrap_doc(FILE *out);

int sl_config_load_layers(const char *name, const char *yaml, size_t len,
                          const char *remote_json, const char *remote_name,
                          char *const *envp, sl_config_t **out, char *errstr,
                          size_t errlen);

/*
 * Adds configured pipeline p to pr (process/process.h): the conversion the
 * loader uses to check every pipeline and the daemon uses to build them.
 * Returns 0, SL_ECONFIG with the reason in why ("steps[1]: filter: column
 * 8: ..."), or -ENOMEM. p, why: borrowed; pr: borrowed, gains the pipeline
 * on success only.
 */
struct sl_process;
int sl_config_pipeline_add(struct sl_process *pr, const sl_config_pipeline_t *p,
                           char *why, size_t len);

/* Libraries whose options structs rows of the table are bound to. */
typedef enum {
  SL_CONFIG_LIB_NONE = 0,
  SL_CONFIG_LIB_STORE, /* sl_store_opts_t (store/store.h) */
  SL_CONFIG_LIB_SYNC   /* sl_sync_opts_t (sync/sync.h) */
} sl_config_lib_t;

/*
 * Copies the value of every table row bound to lib into opts, the library's
 * options struct after its *_opts_init(): a library-bound option is one
 * table row (with its binding) plus the library code that reads the field.
 * Numbers are stored in the field's width (the rows' ranges fit it), enums
 * as their index, strings as pointers borrowed from cfg (valid until
 * sl_config_free()). Cannot fail. cfg: borrowed; opts: caller-owned.
 */
void sl_config_bind(const sl_config_t *cfg, sl_config_lib_t lib, void *opts);

/* Frees cfg and everything it owns. NULL is a no-op. */
void sl_config_free(sl_config_t *cfg);

/* sl_config_diff() verdicts and result (the engine's, config/cfg.h). */
typedef sl_cfg_verdict_t sl_config_verdict_t;
#define SL_CONFIG_SAME SL_CFG_SAME
#define SL_CONFIG_RELOADABLE SL_CFG_RELOADABLE
#define SL_CONFIG_RESTART SL_CFG_RESTART
#define SL_CONFIG_DIFF_MAX SL_CFG_DIFF_MAX
typedef sl_cfg_diff_t sl_config_diff_t;

/*
 * Compares two loaded configs key by key and classifies the change: the
 * verdict is RESTART as soon as one changed key is not reloadable. Adding or
 * removing list elements (streams) counts as a change of the list key.
 * Cannot fail. old, nw: borrowed; d: caller-owned, overwritten.
 */
void sl_config_diff(const sl_config_t *old, const sl_config_t *nw,
                    sl_config_diff_t *d);

/*
 * Writes the effective configuration as YAML that sl_config_load_string()
 * accepts, every key included, secrets replaced by "<redacted>". Returns 0
 * or -EIO when writing to out failed. cfg, out: borrowed.
 */
int sl_config_dump(const sl_config_t *cfg, FILE *out);

/*
 * Writes the Markdown reference of every option (docs/CONFIGURATION.md),
 * generated from the table. Returns 0 or -EIO. out: borrowed.
 */
int sl_config_doc_markdown(FILE *out);

/*
 * Subcommands (daemon/cmd/cmd_config.c), called by main() with argv[0] being
 * the subcommand name. Return the process exit code.
 *   check-config -c FILE [--print]: 0 and "FILE: ok", or the errors and 1.
 *   config-docs: the Markdown reference on stdout.
 */
int sl_config_cmd_check(int argc, char **argv);
int sl_config_cmd_docs(int argc, char **argv);

#endif /* SL_CONFIG_H */
