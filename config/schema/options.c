/*
 * config/schema/options.c: every configuration option, one row each. Adding
 * an option = a field in sl_config_t (config/config.h) + one OPT() row here;
 * parsing, validation, environment override, reload classification, dump and
 * docs/CONFIGURATION.md follow from the row (regenerate the doc with
 * `sluice config-docs > docs/CONFIGURATION.md`). An option a library reads
 * (sl_store_opts_t, sl_sync_opts_t) adds BIND(LIB, T, field) to its row:
 * sl_config_bind() copies it, the daemon's wiring never names it. Every row
 * must be read by some code (tests/config: config_keys_read).
 *
 * Rows of one section must stay together: the dump and the docs group keys
 * by their dotted prefix in table order (tests/config checks this).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/addr.h"
#include "config/config_int.h"
#include "store/store.h"
#include "sync/sync.h"

/* OPT(key, TYPE, C field, default text, flags, description, extras...) */
#define OPT_IN(T, name_, type_, field_, def_, flags_, desc_, ...)              \
  {                                                                            \
    .name = name_, .type = SL_CFG_##type_, .off = offsetof(T, field_),         \
    .def = def_, .flags = flags_, .desc = desc_, __VA_ARGS__                   \
  }
#define OPT(...) OPT_IN(sl_config_t, __VA_ARGS__)
/* The row also sets field f of a library's options struct (config/bind.c). */
#define BIND SL_CFG_BIND
#define STREAM_OPT(...) OPT_IN(sl_config_stream_t, __VA_ARGS__)

/* Flags spelled out so every row states its reload class. */
#define RELOAD SL_CFG_RELOAD
#define RESTART 0u
#define REQUIRED SL_CFG_REQUIRED
#define SECRET SL_CFG_SECRET
#define SECRET_FILE SL_CFG_SECRET_FILE
#define KV_SECRETS SL_CFG_KV_SECRETS
#define TRUST_FILE SL_CFG_TRUST_FILE
/* Owned by the fleet when fleet.enabled (docs/FLEET.md). */
#define FLEET SL_CFG_REMOTE

static const char *const sync_modes[] = {"always", "interval", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug",
                                         NULL};
static const char *const log_formats[] = {"plain", "json", NULL};
/* Bit i of log.debug is debug_contexts[i] (SL_CONFIG_DBG_MAP). */
static const char *const debug_contexts[] = {
#define SL__XDBG(id, name) name,
    SL_CONFIG_DBG_MAP(SL__XDBG)
#undef SL__XDBG
        NULL};
static const char *const deliveries[] = {"exactly_once", "at_least_once", NULL};
static const char *const policies[] = {"block", "drop_oldest", "evict_priority",
                                       NULL};
static const char *const value_formats[] = {"protobuf", "json", NULL};
static const char *const json_layouts[] = {"full", "compact", NULL};
/* Order of SL_SYNC_COMPRESS_* (sync/sync.h). */
static const char *const compressions[] = {"zstd",   "lz4",  "gzip",
                                           "snappy", "none", NULL};
/* Order of sl_ingest_future_t. */
static const char *const future_policies[] = {"clamp", "reject", NULL};
static const char *const backlog_orders[] = {"oldest_first", "newest_first",
                                             NULL};
/* Bit i of kafka.omit_headers is SL_SYNC_HDR_* 1 << i (sync/sync.h). */
static const char *const record_headers[] = {"node",   "stream",     "offset",
                                             "schema", "historical", NULL};
_Static_assert(SL_SYNC_HDR_NODE == 1 && SL_SYNC_HDR_STREAM == 2 &&
                   SL_SYNC_HDR_OFFSET == 4 && SL_SYNC_HDR_SCHEMA == 8 &&
                   SL_SYNC_HDR_HISTORICAL == 16,
               "kafka.omit_headers names follow SL_SYNC_HDR_*");
/* Order of SL_SYNC_TS_* (sync/sync.h). */
static const char *const record_timestamps[] = {"node", "event",
                                                "broker_estimate", NULL};
/* Bound enums are copied as their index (config/bind.c). */
_Static_assert(SL_CONFIG_SYNC_INTERVAL == (int)SL_STORE_SYNC_INTERVAL &&
                   SL_CONFIG_SYNC_ALWAYS == (int)SL_STORE_SYNC_ALWAYS,
               "store.sync names follow sl_store_sync_t");
_Static_assert(SL_CONFIG_DELIVERY_AT_LEAST_ONCE == 1,
               "kafka.delivery index is sl_sync_opts_t.at_least_once");
_Static_assert(SL_SYNC_TS_NODE == 0 && SL_SYNC_TS_EVENT == 1 &&
                   SL_SYNC_TS_BROKER == 2,
               "kafka.record_timestamp names follow SL_SYNC_TS_*");

static bool all_chars(const char *s, const char *extra, bool upper) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          (upper && c >= 'A' && c <= 'Z') || strchr(extra, c)))
      return false;
  }
  return true;
}

static const char *check_env_name(const char *s) {
  if (!*s)
    return NULL;
  if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
    return "is not an environment variable name";
  for (; *s; s++)
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
          (*s >= '0' && *s <= '9') || *s == '_'))
      return "is not an environment variable name";
  return NULL;
}

static const char *check_node_id(const char *s) {
  if (!*s || strlen(s) > 64 || !all_chars(s, "._-", true))
    return "is not a node id (1-64 characters of A-Z a-z 0-9 . _ -)";
  return NULL;
}

static const char *check_node_id_or_empty(const char *s) {
  return *s ? check_node_id(s) : NULL;
}

static const char *check_stream_name(const char *s) {
  if (!*s || strlen(s) > 64 || !all_chars(s, "._-", false))
    return "is not a stream name (1-64 characters of a-z 0-9 . _ -)";
  return NULL;
}

/* "host:port" or "[v6]:port" with a port in 1..65535 (0 too when
 * allow_zero: listen on a free port), or "" (off). */
static const char *hostport(const char *s, bool allow_zero) {
  if (!*s || !sl_hostport_split(s, allow_zero ? SL_HOSTPORT_ANY_PORT : 0, NULL,
                                0, NULL))
    return NULL;
  return "is not host:port (expected e.g. 127.0.0.1:7000, [::1]:7000, or "
         "\"\" for off)";
}

/* An address to connect to: the port must be given. */
static const char *check_hostport(const char *s) {
  return hostport(s, false);
}

/* An address to listen on: port 0 picks a free port, which the daemon
 * logs in its "ready" line (tests rely on it; no fixed ports). */
static const char *check_listen(const char *s) {
  return hostport(s, true);
}

/* "HH:MM-HH:MM" (UTC) or "": models.window. */
static const char *check_window(const char *s) {
  unsigned h1, m1, h2, m2;
  char end;
  if (!*s)
    return NULL;
  if (sscanf(s, "%2u:%2u-%2u:%2u%c", &h1, &m1, &h2, &m2, &end) != 4 ||
      h1 > 23 || h2 > 23 || m1 > 59 || m2 > 59)
    return "is not a UTC window \"HH:MM-HH:MM\" (e.g. 01:00-05:00)";
  return NULL;
}

/* "host:port,host:port": what librdkafka's bootstrap.servers takes. */
static const char *check_brokers(const char *s) {
  char one[300];
  for (const char *p = s; *s; s = *p ? p + 1 : p) {
    p = s + strcspn(s, ",");
    if ((size_t)(p - s) >= sizeof(one) || p == s)
      return "is not a list of host:port (expected e.g. k1:9092,k2:9092)";
    memcpy(one, s, (size_t)(p - s));
    one[p - s] = '\0';
    if (check_hostport(one))
      return "is not a list of host:port (expected e.g. k1:9092,k2:9092)";
  }
  return NULL;
}

/* sockaddr_un.sun_path holds 108 bytes including the NUL. */
static const char *check_unix_path(const char *s) {
  return strlen(s) > 107 ? "is too long for a Unix socket (107 bytes at most)"
                         : NULL;
}

/* An octal file mode such as 0660 (no setuid/setgid/sticky bits). */
static const char *check_mode(const char *s) {
  char *end;
  unsigned long m = strtoul(s, &end, 8);
  if (!*s || *end || m > 0777 || strspn(s, "01234567") != strlen(s))
    return "is not an octal permission mode (e.g. 0660)";
  return NULL;
}

static const char *check_topic(const char *s) {
  if (strlen(s) > 249 || !all_chars(s, "._-", true))
    return "is not a Kafka topic name (up to 249 of A-Z a-z 0-9 . _ -)";
  return NULL;
}

/* streams[].dedupe_key: "", "source+time" or "attr.NAME". */
static const char *check_dedupe_key(const char *s) {
  if (!*s || !strcmp(s, "source+time") ||
      (!strncmp(s, "attr.", 5) && s[5] && strlen(s) <= 256))
    return NULL;
  return "is not \"source+time\" or \"attr.NAME\"";
}

/* A kafka.properties item: "key=value" with a non-empty key. */
static const char *check_kv(const char *s) {
  const char *eq = strchr(s, '=');
  if (!eq || eq == s)
    return "is not key=value";
  return NULL;
}

static void stream_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  sl_config_stream_t *s = obj;
  if (!*s->topic && *s->name) {
    size_t n = strlen(s->name) + sizeof("sluice.");
    char *t = malloc(n);
    if (!t)
      abort();
    SL_CFG_FMT(t, n, "sluice.%s", s->name);
    free(s->topic);
    s->topic = t;
  }
  const char *why =
      sl_sync_compression_check(s->compression, (int64_t)s->compression_level);
  if (why)
    sl_cfg_errf_at(errs, "compression_level", "%s", why);
  if (s->json_layout && s->format != 1)
    sl_cfg_errf_at(errs, "json_layout", "applies to format: json only");
}

static const sl_cfg_opt_t stream_opts[] = {
    STREAM_OPT("name", STRING, name, NULL, REQUIRED | RESTART,
               "Stream name, unique; [a-z0-9._-], at most 64 characters.",
               .check = check_stream_name),
    STREAM_OPT("priority", UINT, priority, "5", RELOAD,
               "Priority class; higher is delivered first and evicted last.",
               .min = "0", .max = "9"),
    STREAM_OPT("policy", ENUM, policy, "block", RELOAD,
               "What happens when store.budget_bytes is reached: block "
               "ingest (backpressure), drop this stream's oldest data, or "
               "evict the lowest priority class first. Evicting undelivered "
               "data always writes a gap record.",
               .enums = policies),
    STREAM_OPT("ttl", DURATION, ttl_ms, "0", RELOAD,
               "Delete data older than this, delivered or not (gap records "
               "are written); 0 keeps data until the budget needs room."),
    STREAM_OPT("topic", STRING, topic, "", RESTART,
               "Kafka topic the stream is delivered to.", .check = check_topic,
               .doc_def = "sluice.<name>"),
    STREAM_OPT("format", ENUM, format, "protobuf", RESTART,
               "Kafka record values: protobuf (sluice.v1.Event, header "
               "schema: sluice.v1.Event) or json (the object `sluice store "
               "dump` prints, header schema: sluice.v1.Event+json). Keys "
               "and headers are the same in both.",
               .enums = value_formats),
    STREAM_OPT("json_layout", ENUM, json_layout, "full", RESTART,
               "format json: full (the object above) or compact (short keys, "
               "members at their defaults left out, stream and offset only "
               "in the headers; header schema: sluice.v1.Event+json-compact; "
               "docs/SCHEMAS.md \"Compact JSON\"): about half the bytes "
               "of a typical reading.",
               .enums = json_layouts),
    STREAM_OPT("compression", ENUM, compression, "zstd", RESTART,
               "Kafka record batch compression of the stream's topic: zstd "
               "(fewest bytes: for a metered uplink), lz4 (less CPU), gzip, "
               "snappy or none. Streams sharing a topic "
               "must agree. The broker keeps the batches as sent when the "
               "topic has compression.type=producer (Kafka's default; "
               "docs/DELIVERY.md \"Compression\").",
               .enums = compressions),
    STREAM_OPT("compression_level", UINT, compression_level, "0", RESTART,
               "Codec level (librdkafka's compression.level): 0 = the "
               "codec's default (zstd 3, lz4 fast, gzip 6); zstd and lz4 "
               "1..12, gzip 1..9; snappy and none have none. Higher: fewer "
               "bytes, more CPU.",
               .min = "0", .max = "12"),
    STREAM_OPT("dedupe_key", STRING, dedupe_key, "", RESTART,
               "Drop replayed events (docs/DELIVERY.md#dedupe-window): "
               "attr.NAME (an attribute such as a message id) or "
               "source+time; an event whose key was stored within "
               "dedupe_window is dropped and counted in "
               "sluice_ingest_duplicates_total. \"\" (default) = off.",
               .check = check_dedupe_key),
    STREAM_OPT("dedupe_window", DURATION, dedupe_window_ms, "10m", RESTART,
               "How long a dedupe key is remembered (node clock at "
               "ingest)."),
    STREAM_OPT("dedupe_max_keys", UINT, dedupe_max_keys, "100000", RESTART,
               "Dedupe keys remembered per stream, about 16 bytes of memory "
               "and store each; beyond it the oldest are forgotten early.",
               .min = "16", .max = "10000000"),
};

static const sl_cfg_section_t stream_section = {
    .name = "streams",
    .opts = stream_opts,
    .n_opts = SL_ARRAY_SIZE(stream_opts),
    .size = sizeof(sl_config_stream_t),
    .finish = stream_finish,
};

/* ---- mqtt: subscriptions and fan-out (ingest/mqtt/) ---------- */

#define MQTT_SUB_OPT(...) OPT_IN(sl_config_mqtt_sub_t, __VA_ARGS__)
#define MQTT_FAN_OPT(...) OPT_IN(sl_config_mqtt_fanout_t, __VA_ARGS__)

static const char *const mqtt_versions[] = {"5", "3.1.1", NULL};
static const char *const mqtt_decoders[] = {
    "json", "raw", "sparkplug", "event", "inference", "oip", NULL};
static const char *const time_units[] = {"ms", "s", "us", "ns", NULL};

/* A subscription filter: non-empty, '#' only as the whole last level, '+'
 * levels may carry a capture name ("+site"). */
static const char *check_mqtt_filter(const char *s) {
  static const char *const bad =
      "is not an MQTT topic filter (levels separated by '/', '+name' "
      "captures, '#' only as the last level)";
  if (!*s || strlen(s) > 1024)
    return bad;
  for (const char *l = s;;) {
    const char *e = strchr(l, '/');
    size_t n = e ? (size_t)(e - l) : strlen(l);
    if (memchr(l, '#', n) && (n != 1 || e))
      return bad;
    if (n && memchr(l + 1, '+', n - 1))
      return bad;
    if (!e)
      break;
    l = e + 1;
  }
  return NULL;
}

/* A topic to publish to: no wildcards. */
static const char *check_mqtt_topic(const char *s) {
  if (strchr(s, '+') || strchr(s, '#') || strlen(s) > 1024)
    return "is not an MQTT topic (no '+' or '#', at most 1024 bytes)";
  return NULL;
}

static const sl_cfg_opt_t mqtt_sub_opts[] = {
    MQTT_SUB_OPT("filter", STRING, filter, NULL, REQUIRED | RESTART,
                 "Topic filter subscribed with QoS qos; a level \"+name\" "
                 "matches one level and captures it as {name}.",
                 .check = check_mqtt_filter),
    MQTT_SUB_OPT("stream", STRING, stream, "", RESTART,
                 "Stream the decoded events are stored in; \"\" is the "
                 "first configured stream."),
    MQTT_SUB_OPT("source", STRING, source, "{topic}", RESTART,
                 "Source of the events: a template of {name} captures and "
                 "{topic}. Sparkplug B uses group/node[/device]/metric."),
    MQTT_SUB_OPT("decoder", ENUM, decoder, "json", RESTART,
                 "Payload decoder: json (field paths below), raw (bytes "
                 "with content_type), sparkplug (Sparkplug B), or event "
                 "(sluice's event JSON as HTTP ingest takes it, each with "
                 "its source; what sluice-sim --output mqtt sends), or "
                 "inference (inference results, docs/EDGE-AI.md; source is "
                 "the default source), or oip (Open Inference Protocol v2 "
                 "responses, profile named by oip).",
                 .enums = mqtt_decoders),
    MQTT_SUB_OPT("qos", UINT, qos, "1", RESTART,
                 "Subscription QoS; 1 is acknowledged only after commit.",
                 .min = "0", .max = "1"),
    MQTT_SUB_OPT("json_value", STRING, json_value, "value", RESTART,
                 "Dotted path of the value in each JSON object; \"\" takes "
                 "the whole payload (a bare number, string or boolean)."),
    MQTT_SUB_OPT("json_time", STRING, json_time, "time", RESTART,
                 "Dotted path of the event time (RFC 3339 text or a number in "
                 "json_time_unit); missing = the receive time."),
    MQTT_SUB_OPT("json_time_unit", ENUM, json_time_unit, "ms", RESTART,
                 "Unit of numeric times.", .enums = time_units),
    MQTT_SUB_OPT("json_quality", STRING, json_quality, "quality", RESTART,
                 "Dotted path of the quality (good|uncertain|bad or an OPC UA "
                 "status code); missing = good."),
    MQTT_SUB_OPT("json_unit", STRING, json_unit, "unit", RESTART,
                 "Dotted path of the engineering unit; missing = none."),
    MQTT_SUB_OPT("json_datatype", STRING, json_datatype, "datatype", RESTART,
                 "Dotted path of the value's datatype (int8 ... uuid, "
                 "docs/SCHEMAS.md): \"NaN\"/\"Infinity\" for float/double, "
                 "a decimal string for uint64; missing = as JSON says."),
    MQTT_SUB_OPT("content_type", STRING, content_type,
                 "application/octet-stream", RESTART,
                 "Content type stored with raw payloads."),
    MQTT_SUB_OPT("oip", STRING, oip, "", RESTART,
                 "oip decoder: name of the oip profile (model, task, label "
                 "map) the responses are read with."),
};

static const sl_cfg_section_t mqtt_sub_section = {
    .name = "mqtt.subscriptions",
    .opts = mqtt_sub_opts,
    .n_opts = SL_ARRAY_SIZE(mqtt_sub_opts),
    .size = sizeof(sl_config_mqtt_sub_t),
};

static const sl_cfg_opt_t mqtt_fan_opts[] = {
    MQTT_FAN_OPT("stream", STRING, stream, NULL, REQUIRED | RESTART,
                 "Stored stream whose new events are published."),
    MQTT_FAN_OPT("topic", STRING, topic, "sluice/{stream}/{source}", RESTART,
                 "Topic template: {stream} and {source}.",
                 .check = check_mqtt_topic),
    MQTT_FAN_OPT("qos", UINT, qos, "0", RESTART, "Publish QoS.", .min = "0",
                 .max = "1"),
    MQTT_FAN_OPT("retain", BOOL, retain, "false", RESTART,
                 "Publish retained (the last value per topic)."),
    MQTT_FAN_OPT("message_expiry", DURATION, message_expiry_ms, "0", RESTART,
                 "MQTT 5 message expiry; 0 = none.", .max = "49710d"),
};

static const sl_cfg_section_t mqtt_fan_section = {
    .name = "mqtt.fanout",
    .opts = mqtt_fan_opts,
    .n_opts = SL_ARRAY_SIZE(mqtt_fan_opts),
    .size = sizeof(sl_config_mqtt_fanout_t),
};

static const sl_cfg_opt_t root_opts[] = {
    OPT("node.id", STRING, node.id, "", RESTART,
        "Identity of this node in Kafka headers, checkpoints and the "
        "transactional id; [A-Za-z0-9._-], at most 64 characters. Required, "
        "unless enrol.bootstrap is set: then \"\" derives it from the node's "
        "key (sl- and 20 hex digits; docs/ENROLMENT.md).",
        .check = check_node_id_or_empty, .doc_def = "*required*"),
    OPT("node.data_dir", PATH, node.data_dir, "/var/lib/sluice", RESTART,
        "Directory of the LMDB store (locked by one daemon at a time)."),

    OPT("run.user", STRING, run.user, "", RESTART,
        "Started as root, the daemon binds its listeners and opens the "
        "store, then drops to this user (name or numeric uid): "
        "setgroups, setgid, setuid, verified that root cannot be regained. "
        "Files read later (config on SIGHUP, TLS keys and certificates) "
        "must be readable by it. \"\" keeps the starting user (a warning "
        "is logged when that is root)."),
    OPT("run.group", STRING, run.group, "", RESTART,
        "Group (name or numeric gid) to run as after the drop; \"\" = "
        "run.user's primary group. The only group kept: supplementary "
        "groups are cleared."),

    OPT("store.budget_bytes", SIZE, store.budget_bytes, "1GiB", RESTART,
        "Disk budget for the event log; reaching it applies each stream's "
        "policy. A budget larger than the filesystem holding node.data_dir "
        "is flagged at start (warning, gauge "
        "sluice_store_budget_exceeds_filesystem).",
        .min = "1MiB", BIND(STORE, sl_store_opts_t, budget_bytes)),
    OPT("store.sync", ENUM, store.sync, "always", RESTART,
        "always: fsync every group commit (an ack means durable). interval: "
        "fsync every store.sync_interval, losing at most that much on power "
        "loss (reported in /v1/status).",
        .enums = sync_modes, BIND(STORE, sl_store_opts_t, sync)),
    OPT("store.sync_interval", DURATION, store.sync_interval_ms, "100ms",
        RESTART, "Time between fsyncs with store.sync = interval.",
        .min = "1ms", .max = "1m",
        BIND(STORE, sl_store_opts_t, sync_interval_ms)),
    OPT("store.queue_depth", UINT, store.queue_depth, "1024", RESTART,
        "Batches queued from the ingest threads to the writer; a full queue "
        "stops reading from clients.",
        .min = "1", .max = "1048576",
        BIND(STORE, sl_store_opts_t, queue_depth)),
    OPT("store.encryption_key_file", PATH, store.encryption_key_file, "",
        RESTART,
        "Encryption at rest: file of \"id:64-hex-digit\" AES-256 keys, one "
        "per line; the highest id seals new batches, every listed id opens "
        "old ones (rotate by adding a line). Must be owned by the daemon's "
        "user, mode 0600 or 0400. \"\" = batches are stored in clear "
        "(docs/STORAGE.md).",
        BIND(STORE, sl_store_opts_t, key_file)),
    OPT("store.encryption_key_env", STRING, store.encryption_key_env, "",
        RESTART,
        "Encryption at rest: name of an environment variable holding the "
        "keys in the same form (entries separated by spaces, commas or "
        "newlines); instead of store.encryption_key_file.",
        .check = check_env_name, BIND(STORE, sl_store_opts_t, key_env)),
    OPT("store.accept_new", BOOL, store.accept_new, "false", RESTART,
        "Start on a store whose identity does not match its store.id (an "
        "emptied, replaced or foreign data.mdb), accepting it as the store "
        "from now on; same as `sluice run --accept-new-store`. Leave false: "
        "the daemon otherwise refuses to start (exit code 4) instead of "
        "silently starting over with an empty log."),

    OPT("listeners.native.tcp", STRING, listeners.native_tcp, "127.0.0.1:7000",
        RESTART,
        "host:port of the native protocol TCP listener; \"\" turns it off; "
        "port 0 picks a free port (logged at start).",
        .check = check_listen),
    OPT("listeners.native.unix", PATH, listeners.native_unix, "", RESTART,
        "Unix socket path of the native protocol listener; \"\" turns it "
        "off.",
        .check = check_unix_path),
    OPT("listeners.native.unix_mode", STRING, listeners.native_unix_mode,
        "0660", RESTART,
        "Permissions of the Unix socket (octal), set at bind whatever the "
        "umask; a client needs write permission to connect.",
        .check = check_mode),
    OPT("listeners.native.token", STRING, listeners.native_token, "",
        RELOAD | SECRET,
        "Deprecated (use listeners.native.clients): one shared token, kept "
        "in clear, any native client may present; it may write every "
        "stream, with the identity \"native.token\". \"\" = none."),
    /* ---- TLS and credentials (security/tls.h, security/auth.h) ---- */
    OPT("listeners.native.tls.cert", PATH, listeners.native_tls.cert, "",
        RELOAD,
        "Server certificate chain (PEM) of the native TCP listener (the Unix "
        "socket stays plain); setting it with "
        "listeners.native.tls.key turns TLS on. Re-read on reload (SIGHUP): "
        "new "
        "connections get the new certificate."),
    OPT("listeners.native.tls.key", PATH, listeners.native_tls.key, "",
        RELOAD | SECRET_FILE,
        "Private key (PEM) of listeners.native.tls.cert; must not be "
        "accessible by "
        "others (mode & 0007 = 0)."),
    OPT("listeners.native.tls.client_ca", PATH, listeners.native_tls.client_ca,
        "", RELOAD,
        "CA certificates (PEM) that sign client certificates (mutual TLS); "
        "a client presenting one is verified against them. \"\" = client "
        "certificates are not asked for."),
    OPT("listeners.native.clients", SECTION_LIST, listeners.native_clients,
        NULL, RELOAD,
        "Native clients and what they may write, each a mapping of the keys "
        "below (name, token_sha256, cert_cn, streams); a Hello must carry a "
        "listed token or come with a listed certificate. Empty (and no "
        "listeners.native.token): any client is accepted.",
        .sub = &sl_config__client_section, .max = "1024"),
    OPT("listeners.http.address", STRING, listeners.http_address,
        "127.0.0.1:8080", RESTART,
        "host:port of the HTTP ingest listener; \"\" turns it off; port 0 "
        "picks a free port (logged at start).",
        .check = check_listen),
    OPT("listeners.http.tls.cert", PATH, listeners.http_tls.cert, "", RELOAD,
        "Server certificate chain (PEM) of the HTTP ingest listener; setting "
        "it with "
        "listeners.http.tls.key turns TLS on. Re-read on reload (SIGHUP): new "
        "connections get the new certificate."),
    OPT("listeners.http.tls.key", PATH, listeners.http_tls.key, "",
        RELOAD | SECRET_FILE,
        "Private key (PEM) of listeners.http.tls.cert; must not be accessible "
        "by "
        "others (mode & 0007 = 0)."),
    OPT("listeners.http.tls.client_ca", PATH, listeners.http_tls.client_ca, "",
        RELOAD,
        "CA certificates (PEM) that sign client certificates (mutual TLS); "
        "a client presenting one is verified against them. \"\" = client "
        "certificates are not asked for."),
    OPT("listeners.http.clients", SECTION_LIST, listeners.http_clients, NULL,
        RELOAD,
        "HTTP clients (Authorization: Bearer TOKEN, or a client "
        "certificate), same keys as listeners.native.clients. Empty: any "
        "client is accepted.",
        .sub = &sl_config__client_section, .max = "1024"),
    OPT("listeners.http.allowed_origins", LIST, listeners.http_origins, "",
        RESTART,
        "Origin header values (e.g. https://hmi.plant.local) allowed to "
        "post; a request carrying any other Origin gets 403. Empty: every "
        "request with an Origin (i.e. from a web page) is refused."),

    OPT("admin.address", STRING, admin.address, "127.0.0.1:9100", RESTART,
        "host:port of the admin HTTP server (/metrics, /healthz, /readyz, "
        "/v1/status); \"\" turns it off; port 0 picks a free port (logged "
        "at start).",
        .check = check_listen),
    OPT("admin.tls.cert", PATH, admin.tls.cert, "", RELOAD,
        "Server certificate chain (PEM) of the admin server; setting it with "
        "admin.tls.key turns TLS on. Re-read on reload (SIGHUP): new "
        "connections get the new certificate."),
    OPT("admin.tls.key", PATH, admin.tls.key, "", RELOAD | SECRET_FILE,
        "Private key (PEM) of admin.tls.cert; must not be accessible by "
        "others (mode & 0007 = 0)."),
    OPT("admin.tls.client_ca", PATH, admin.tls.client_ca, "", RELOAD,
        "CA certificates (PEM) of admin client certificates: any certificate "
        "they verify is an admin credential (POST /v1/reload). \"\" = client "
        "certificates are not asked for."),
    OPT("admin.token_sha256", STRING, admin.token_sha256, "", RELOAD | SECRET,
        "Hex SHA-256 of the admin token (Authorization: Bearer TOKEN) that "
        "state-changing endpoints (POST /v1/reload) require; a client "
        "certificate verified by admin.tls.client_ca is accepted too. "
        "Neither set: those endpoints answer 403.",
        .check = sl_config__check_sha256),

    OPT("limits.max_frame_bytes", SIZE, limits.max_frame_bytes, "4MiB", RESTART,
        "Largest frame or request body accepted from a client.", .min = "1KiB",
        .max = "256MiB"),
    OPT("limits.max_connections", UINT, limits.max_connections, "1024", RESTART,
        "Client connections accepted at once, all listeners together.",
        .min = "1", .max = "1000000"),
    OPT("limits.max_batch_events", UINT, limits.max_batch_events, "10000",
        RESTART, "Largest number of events in one client batch.", .min = "1",
        .max = "1000000"),
    OPT("limits.idle_timeout", DURATION, limits.idle_timeout_ms, "5m", RESTART,
        "Close client connections idle this long; 0 never does.", .max = "24h"),
    OPT("limits.max_inflight_batches_per_conn", UINT,
        limits.max_inflight_batches_per_conn, "64", RELOAD,
        "Unacknowledged batches per connection before reading pauses.",
        .min = "1", .max = "65536"),
    OPT("limits.max_inflight_bytes", SIZE, limits.max_inflight_bytes, "32MiB",
        RESTART,
        "Client bytes buffered at once over all listeners (partial frames, "
        "request bodies); beyond it a frame gets an error and an HTTP "
        "request 503 (sluice_ingest_inflight_bytes).",
        .min = "1MiB", .max = "16GiB"),
    OPT("limits.request_timeout", DURATION, limits.request_timeout_ms, "10s",
        RESTART,
        "Time a client has from connecting (or from its previous answer) to "
        "send a whole HTTP ingest request, a native Hello, or a native "
        "frame it has started; bytes trickling in do not extend it (admin "
        "requests: 5 s).",
        .min = "100ms", .max = "10m"),
    OPT("limits.max_future", DURATION, limits.max_future_ms, "5m", RESTART,
        "How far ahead of the node clock an event's time may be; beyond it "
        "limits.future_policy applies, so a device clock in the future never "
        "moves an aggregate's watermark. 0 turns the bound off.",
        .max = "365d"),
    OPT("limits.future_policy", ENUM, limits.future_policy, "clamp", RESTART,
        "What happens to an event timed beyond limits.max_future: clamp (keep "
        "it at the node clock, its own time in the attribute "
        "sluice.time_clamped) or reject (refused like any invalid event: a "
        "native error, HTTP 400, an MQTT dead letter).",
        .enums = future_policies),

    OPT("reload.watch", BOOL, reload.watch, "false", RESTART,
        "Reload the config (as SIGHUP does: a broken file is refused and the "
        "running config stays) when the directory holding the config file "
        "changes: an edit, a rename over the file, or a Kubernetes ConfigMap "
        "update (the ..data symlink swap). Events are debounced (500 ms); a "
        "file with the running config's SHA-256 is left alone. Meant for "
        "ConfigMap mounts; under systemd use ExecReload (SIGHUP)."),

    OPT("enrol.bootstrap", PATH, enrol.bootstrap, "", RESTART | TRUST_FILE,
        "Bootstrap file of zero-touch enrolment (docs/ENROLMENT.md): the "
        "fleet's brokers, CA, claim certificate, labels and document key. "
        "With it the node makes its own key, enrols over Kafka and connects "
        "as itself; \"\" = off."),
    OPT("enrol.identity_dir", PATH, enrol.identity_dir, "", RESTART,
        "Directory of the node's key and certificate; \"\" = "
        "<node.data_dir>/identity."),
    OPT("enrol.renew_at", DOUBLE, enrol.renew_at, "0.75", RESTART,
        "Share of the certificate's lifetime after which it is renewed (over "
        "the same path, authenticated by the current certificate; through "
        "outages the current one is used until it expires).",
        .min = "0.1", .max = "0.95"),
    OPT("enrol.retry", DURATION, enrol.retry_ms, "30s", RESTART,
        "A request not answered is sent again this often (the lobby, "
        "outages).",
        .min = "1s", .max = "1h"),

    OPT("fleet.enabled", BOOL, fleet.enabled, "false", RESTART,
        "Take the fleet-owned keys (marked fleet in the Reload column: "
        "streams, pipelines, log, the uplink's bandwidth and lanes) from the "
        "fleet's desired documents on Kafka instead of this file, and report "
        "status to the fleet topics (docs/FLEET.md). This file may then not "
        "set those keys."),
    OPT("fleet.brokers", STRING, fleet.brokers, "", RESTART,
        "Bootstrap servers of the fleet topics; \"\" = kafka.brokers. The "
        "connection uses kafka.properties (TLS, SASL) too.",
        .check = check_brokers),
    OPT("fleet.topic_prefix", STRING, fleet.topic_prefix, "sluice.fleet.",
        RESTART,
        "Prefix of the fleet topics (<prefix>desired, status, inventory, "
        "events)."),
    OPT("fleet.verify_key", PATH, fleet.verify_key, "", RESTART | TRUST_FILE,
        "Ed25519 public key (PEM) the fleet's desired documents must be "
        "signed with; required when fleet.enabled. Kafka ACLs say who may "
        "write a topic, this key says who wrote a document."),
    OPT("fleet.labels", LIST, fleet.labels, "", RESTART,
        "This node's labels as key=value items, published in its inventory "
        "and matched by the policies' selectors (site=plant-7, "
        "line=press)."),
    OPT("fleet.max_trial_starts", UINT, fleet.max_trial_starts, "3", RESTART,
        "Starts of the daemon during a generation's trial (before its health "
        "gate passed) after which the node starts on its last known good "
        "config instead and reports ROLLED_BACK (crash_loop).",
        .min = "1", .max = "100"),
    OPT("fleet.heartbeat", DURATION, fleet.heartbeat_ms, "30s", RESTART,
        "The node's status is re-published this often even without a change "
        "(the centre's last-seen time).",
        .min = "1s", .max = "1h"),

    OPT("models.enabled", BOOL, models.enabled, "false", RESTART,
        "Take model versions from the model topics (<prefix>models, "
        "<prefix>model.chunks): download under the cap, verify, activate "
        "atomically, gate and roll back (docs/EDGE-AI.md)."),
    OPT("models.dir", PATH, models.dir, "", RESTART,
        "Where versions live (<dir>/<name>/<version>/, <dir>/<name>/current); "
        "\"\" = <node.data_dir>/models."),
    OPT("models.brokers", STRING, models.brokers, "", RESTART,
        "Bootstrap servers of the model topics; \"\" = fleet.brokers, else "
        "kafka.brokers. kafka.properties (TLS, SASL) apply.",
        .check = check_brokers),
    OPT("models.topic_prefix", STRING, models.topic_prefix, "", RESTART,
        "Prefix of the model topics; \"\" = fleet.topic_prefix."),
    OPT("models.verify_key", PATH, models.verify_key, "", RESTART | TRUST_FILE,
        "Ed25519 public key (PEM) manifests must be signed with; \"\" = "
        "fleet.verify_key."),
    OPT("models.names", LIST, models.names, "", RESTART,
        "Models this node takes (manifest names); empty = every model on the "
        "topic."),
    OPT("models.bandwidth_bytes_per_s", SIZE, models.bandwidth_bytes_per_s,
        "1MiB", RESTART,
        "Download cap in chunk bytes per second (token bucket); 0 = none. "
        "Downloads also pause while the uplink has a backlog to send."),
    OPT("models.window", STRING, models.window, "", RESTART,
        "Downloads only inside this UTC window, \"HH:MM-HH:MM\" (may wrap "
        "midnight); \"\" = always. Activation and the gate are not bound "
        "to it.",
        .check = check_window),
    OPT("models.max_bytes", SIZE, models.max_bytes, "0", RESTART,
        "Disk the versions of one model may use (active, previous and the "
        "one downloading); a version that does not fit is refused (status "
        "disk). 0 = what the file system can reserve."),
    OPT("models.gate_stream", STRING, models.gate_stream, "", RESTART,
        "The stream a model_aggregate step writes (its into:): the gate reads "
        "the trial version's aggregates from it. \"\" = no aggregate gate "
        "(the load acknowledgement and timeouts still apply)."),

    OPT("log.level", ENUM, log.level, "info", RELOAD | FLEET,
        "Least severe level written.", .enums = log_levels),
    OPT("log.format", ENUM, log.format, "plain", RELOAD | FLEET,
        "plain text lines or one JSON object per line.", .enums = log_formats),
    OPT("log.debug", FLAGS, log.debug, "", RELOAD | FLEET,
        "Debug contexts logged at level debug, or all.",
        .enums = debug_contexts),

    OPT("kafka.enabled", BOOL, kafka.enabled, "false", RESTART,
        "Forward stored streams to Kafka."),
    OPT("kafka.brokers", STRING, kafka.brokers, "", RESTART,
        "Bootstrap servers, comma separated (host:port,host:port); required "
        "when kafka.enabled.",
        .check = check_brokers, BIND(SYNC, sl_sync_opts_t, brokers)),
    OPT("kafka.delivery", ENUM, kafka.delivery, "exactly_once", RESTART,
        "exactly_once: transactional producer with checkpoints; "
        "at_least_once: idempotent producer, for clusters without "
        "transactions.",
        .enums = deliveries, BIND(SYNC, sl_sync_opts_t, at_least_once)),
    OPT("kafka.ssl_key_location", PATH, kafka.ssl_key_location, "",
        RESTART | SECRET_FILE,
        "Client private key (PEM) for TLS to Kafka; must not be accessible "
        "by others nor writable by group (mode & 0027 = 0)."),
    /* ---- kafka: the uplink (sync/, docs/DELIVERY.md) ---- */
    OPT("kafka.checkpoint_topic", STRING, kafka.checkpoint_topic,
        "sluice.checkpoints", RESTART,
        "Compacted topic holding each node's per-stream checkpoints "
        "(exactly_once); created if missing (compacted, LogAppendTime: its "
        "delivery reports tell the broker's clock).",
        .check = check_topic, BIND(SYNC, sl_sync_opts_t, checkpoint_topic)),
    OPT("kafka.transactional_id_prefix", STRING, kafka.transactional_id_prefix,
        "sluice-", RESTART,
        "transactional.id is this prefix followed by node.id (and the "
        "same followed by \".1\" for the second producer of "
        "kafka.commit_pipeline): a second daemon with the same node.id "
        "fences the first.",
        .check = check_topic, BIND(SYNC, sl_sync_opts_t, txn_id_prefix)),
    OPT("kafka.dead_letter_stream", STRING, kafka.dead_letter_stream, "",
        RESTART,
        "A configured stream that receives each record Kafka refuses for "
        "good (too large, invalid), with attributes dlq.stream, dlq.offset, "
        "dlq.topic and dlq.reason; it stays on the node (not forwarded). "
        "\"\": refused records are only counted "
        "(sluice_uplink_dead_lettered_total).",
        BIND(SYNC, sl_sync_opts_t, dead_letter_stream)),
    OPT("kafka.gap_topic", STRING, kafka.gap_topic, "", RESTART,
        "Topic for gap records; \"\" sends them to the stream's own topic.",
        .check = check_topic, BIND(SYNC, sl_sync_opts_t, gap_topic)),
    OPT("kafka.properties", LIST, kafka.properties, "", RESTART | KV_SECRETS,
        "librdkafka properties passed through as key=value (TLS, SASL, "
        "tuning), applied after sluice's own settings. Only the values of "
        "an allow-list of harmless keys (tuning, timeouts, "
        "security.protocol, sasl.mechanism, file locations; "
        "config/schema/redact.c) are ever printed; every other value shows "
        "as <redacted>, and items are never echoed in errors.",
        .check = check_kv, .printable = config__kv_printable,
        .kv_file = config__kv_file),
    OPT("kafka.link_timeout", DURATION, kafka.link_timeout_ms, "10s", RESTART,
        "A broker connection whose sent data stays unacknowledged this long "
        "(a link that drops packets without a reset) is dropped and made "
        "anew (TCP_USER_TIMEOUT), and a connection attempt gets as long "
        "(librdkafka's socket.connection.setup.timeout.ms, at least 1 s). "
        "Without it a partition of under a minute can stall the uplink for "
        "a minute after the link is back (TCP's retransmission backoff). "
        "0: the kernel's and librdkafka's defaults.",
        .max = "10m", BIND(SYNC, sl_sync_opts_t, link_timeout_ms)),
    OPT("kafka.chunk_events", UINT, kafka.chunk_events, "50000", RESTART,
        "Largest number of records in one transaction (chunk).", .min = "1",
        .max = "10000000", BIND(SYNC, sl_sync_opts_t, chunk_events)),
    OPT("kafka.commit_interval", DURATION, kafka.commit_interval_ms, "100ms",
        RESTART,
        "Longest time a transaction stays open: bounds the delay seen by "
        "read_committed consumers.",
        .min = "1ms", .max = "10s",
        BIND(SYNC, sl_sync_opts_t, commit_interval_ms)),
    OPT("kafka.commit_pipeline", BOOL, kafka.commit_pipeline, "true", RESTART,
        "exactly_once: two transactional producers (transactional.id and "
        "transactional.id + \".1\") take turns, so a transaction commits "
        "while the next one takes records; false: one producer, and every "
        "commit stalls the uplink (flush, EndTxn, the next "
        "AddPartitionsToTxn)."),
    OPT("kafka.queue_max_messages", UINT, kafka.queue_max_messages, "20000",
        RESTART,
        "librdkafka's queue cap in messages (memory stays flat whatever "
        "the backlog).",
        .min = "100", .max = "10000000",
        BIND(SYNC, sl_sync_opts_t, queue_max_messages)),
    OPT("kafka.queue_max_bytes", SIZE, kafka.queue_max_bytes, "8MiB", RESTART,
        "librdkafka's queue cap in bytes.", .min = "1MiB", .max = "2GiB"),
    OPT("kafka.max_record_bytes", SIZE, kafka.max_record_bytes, "1000000",
        RESTART,
        "Events larger than this are dead-lettered (counted) instead of "
        "sent; keep it at or below the broker's message.max.bytes.",
        .min = "1KiB", .max = "256MiB",
        BIND(SYNC, sl_sync_opts_t, max_record_bytes)),
    OPT("kafka.bandwidth_bytes_per_s", SIZE, kafka.bandwidth_bytes_per_s, "0",
        RESTART | FLEET,
        "Global uplink bandwidth cap in record bytes per second (token "
        "bucket); 0 = none.",
        BIND(SYNC, sl_sync_opts_t, bandwidth_bytes_per_s)),
    OPT("kafka.backlog_share", DOUBLE, kafka.backlog_share, "0.5",
        RESTART | FLEET,
        "Part of the bandwidth cap the backlog lane may use while the live "
        "lane has data waiting.",
        .min = "0.01", .max = "1", BIND(SYNC, sl_sync_opts_t, backlog_share)),
    OPT("kafka.backlog_threshold", UINT, kafka.backlog_threshold, "100000",
        RESTART | FLEET,
        "A stream further behind than this many events is delivered in two "
        "lanes (live: newest, backlog: oldest first); 0 = one lane.",
        .max = "1000000000000", BIND(SYNC, sl_sync_opts_t, backlog_threshold)),
    OPT("kafka.backlog_order", ENUM, kafka.backlog_order, "oldest_first",
        RESTART | FLEET,
        "Order of the backlog lane: oldest_first, or newest_first (blocks "
        "of 1000 events from the newest down, each block oldest first; a "
        "transaction ends only between blocks). Recent history reaches "
        "Kafka first after an outage.",
        .enums = backlog_orders,
        BIND(SYNC, sl_sync_opts_t, backlog_newest_first)),
    OPT("kafka.record_timestamp", ENUM, kafka.record_timestamp, "node", RESTART,
        "Kafka timestamp of each record (the event's own time_ns is in the "
        "value whatever this says): node, the node's clock when sent; "
        "event, the event's time; broker_estimate, the node's clock "
        "corrected by its skew against the broker, learnt from the "
        "LogAppendTime checkpoint topic. A broker refuses records outside "
        "message.timestamp.after.max.ms (Kafka 4: 1 h) / before.max.ms of "
        "its clock (INVALID_TIMESTAMP, counted in "
        "sluice_uplink_timestamp_refused_total): broker_estimate keeps a "
        "node whose clock is off delivering (docs/DELIVERY.md \"Clocks\").",
        .enums = record_timestamps,
        BIND(SYNC, sl_sync_opts_t, record_timestamp)),
    OPT("kafka.omit_headers", FLAGS, kafka.omit_headers, "", RESTART,
        "Record headers left off data records, to save bytes and "
        "librdkafka's allocation per header: node, stream, offset, schema, "
        "historical, or all. Exactly-once needs none of them (the "
        "checkpoints carry the positions), but at_least_once consumers drop "
        "repeats by node, stream and offset (refused here), and "
        "json_layout: compact values carry no stream or offset (refused "
        "too). Gap records keep theirs. docs/DELIVERY.md \"Headers\".",
        .enums = record_headers),

    OPT("mqtt.enabled", BOOL, mqtt.enabled, "false", RESTART,
        "Subscribe to an MQTT broker and ingest its messages."),
    OPT("mqtt.host", STRING, mqtt.host, "localhost", RESTART,
        "MQTT broker host name or address."),
    OPT("mqtt.port", UINT, mqtt.port, "1883", RESTART, "MQTT broker port.",
        .min = "1", .max = "65535"),
    OPT("mqtt.tls_keyfile", PATH, mqtt.tls_keyfile, "", RESTART | SECRET_FILE,
        "Client private key (PEM) for TLS to the MQTT broker; must not be "
        "accessible by others nor writable by group (mode & 0027 = 0)."),
    OPT("mqtt.version", ENUM, mqtt.version, "5", RESTART,
        "MQTT protocol version: 5, or 3.1.1 for older brokers.",
        .enums = mqtt_versions),
    OPT("mqtt.client_id", STRING, mqtt.client_id, "", RESTART,
        "Fixed client id of the persistent session; \"\" = sluice-<node.id>.",
        .doc_def = "sluice-<node.id>"),
    OPT("mqtt.session_expiry", DURATION, mqtt.session_expiry_ms, "7d", RESTART,
        "How long the broker keeps the session (and queues messages) while "
        "sluice is away (MQTT 5; 3.1.1 sessions never expire).",
        .min = "1s", .max = "49710d"),
    OPT("mqtt.keepalive", DURATION, mqtt.keepalive_ms, "30s", RESTART,
        "MQTT keepalive; must exceed the longest expected commit.", .min = "5s",
        .max = "18h"),
    OPT("mqtt.receive_maximum", UINT, mqtt.receive_maximum, "1000", RESTART,
        "Unacknowledged QoS 1 messages the broker may send at once (MQTT 5; "
        "Mosquitto also caps it with max_inflight_messages).",
        .min = "1", .max = "65535"),
    OPT("mqtt.username", STRING, mqtt.username, "", RESTART,
        "User name; \"\" = anonymous."),
    OPT("mqtt.password", STRING, mqtt.password, "", RESTART | SECRET,
        "Password for mqtt.username."),
    OPT("mqtt.tls_ca", PATH, mqtt.tls_ca, "", RESTART | TRUST_FILE,
        "CA certificate file (PEM); setting it turns TLS on. Must not be "
        "writable by group or others."),
    OPT("mqtt.tls_cert", PATH, mqtt.tls_cert, "", RESTART | TRUST_FILE,
        "Client certificate (PEM) for mutual TLS, with mqtt.tls_keyfile. Must "
        "not be writable by group or others."),
    OPT("mqtt.reconnect_min", DURATION, mqtt.reconnect_min_ms, "100ms", RESTART,
        "First reconnect delay; doubles per failure, with jitter.",
        .min = "1ms", .max = "1h"),
    OPT("mqtt.reconnect_max", DURATION, mqtt.reconnect_max_ms, "30s", RESTART,
        "Largest reconnect delay.", .min = "1ms", .max = "1h"),
    OPT("mqtt.max_payload_bytes", SIZE, mqtt.max_payload_bytes, "1MiB", RESTART,
        "Larger payloads are rejected before decoding (counted and recorded "
        "in the dead-letter stream without their bytes).",
        .min = "16", .max = "256MiB"),
    OPT("mqtt.sparkplug_max_nodes", UINT, mqtt.sparkplug_max_nodes, "4096",
        RESTART,
        "Sparkplug edge nodes and devices tracked at once (seq, alias "
        "tables); messages of further ones go to the dead letters "
        "(reason sparkplug_limit), so forged node ids cannot grow memory.",
        .min = "1", .max = "1000000"),
    OPT("mqtt.sparkplug_max_table_bytes", SIZE, mqtt.sparkplug_max_table_bytes,
        "16MiB", RESTART,
        "Memory for Sparkplug alias tables, all nodes together; a birth that "
        "would pass it goes to the dead letters (reason sparkplug_limit) and "
        "the node's old table stays.",
        .min = "64KiB", .max = "4GiB"),
    OPT("mqtt.dead_letter_stream", STRING, mqtt.dead_letter_stream, "", RESTART,
        "Configured stream receiving payloads that fail to decode, with the "
        "reason; \"\" only counts them."),
    OPT("mqtt.status_topic", STRING, mqtt.status_topic, "", RESTART,
        "Retained node status topic (JSON: state, backlog, uplink); \"\" = "
        "off. The broker publishes \"offline\" there when sluice vanishes.",
        .check = check_mqtt_topic),
    OPT("mqtt.status_interval", DURATION, mqtt.status_interval_ms, "10s",
        RESTART, "How often the node status is republished.", .min = "1s",
        .max = "1h"),
    OPT("mqtt.subscriptions", SECTION_LIST, mqtt.subscriptions, NULL, RESTART,
        "Topic filters to ingest, each a mapping of the keys below; the "
        "first matching rule maps a message.",
        .sub = &mqtt_sub_section, .max = "256"),
    OPT("mqtt.fanout", SECTION_LIST, mqtt.fanout, NULL, RESTART,
        "Stored streams published to MQTT for local apps, each a mapping of "
        "the keys below.",
        .sub = &mqtt_fan_section, .max = "64"),

    OPT("streams", SECTION_LIST, streams, NULL, RESTART | FLEET,
        "Streams stored in the log, each a mapping of the keys below; adding "
        "or removing a stream needs a restart.",
        .sub = &stream_section, .max = "256"),
    OPT("pipelines", SECTION_LIST, pipelines, NULL, RESTART | FLEET,
        "Edge processing: each pipeline has a match and ordered steps "
        "(filter, deadband, sample, rate_limit, aggregate, route) run on "
        "events before they are stored; see docs/PROCESSING.md.",
        .sub = &sl_config__pipeline_section, .max = "64"),
    OPT("oip", SECTION_LIST, oip, NULL, RESTART,
        "Open Inference Protocol v2 response profiles (model, task, output, "
        "label map), named by MQTT subscriptions (decoder oip) and HTTP "
        "(?format=oip&oip=NAME); see docs/EDGE-AI.md.",
        .sub = &sl_config__oip_section, .max = "64"),
};

/* A listener's TLS files come as a set. */
static void tls_finish(sl_cfg_errs_t *errs, const char *pre,
                       const sl_config_tls_t *t) {
  char key[64];
  if (!!*t->cert != !!*t->key) {
    SL_CFG_FMT(key, sizeof(key), "%s.tls.%s", pre, *t->cert ? "key" : "cert");
    sl_cfg_errf(errs, NULL, 0, 0, key, "must be set with %s.tls.%s", pre,
                *t->cert ? "cert" : "key");
  }
  if (*t->client_ca && !*t->cert) {
    SL_CFG_FMT(key, sizeof(key), "%s.tls.client_ca", pre);
    sl_cfg_errf(errs, NULL, 0, 0, key, "needs %s.tls.cert and .key", pre);
  }
}

/* Client names are identities: unique per listener. */
static void clients_finish(sl_cfg_errs_t *errs, const char *key,
                           const sl_config_clients_t *cl) {
  for (size_t i = 0; i < cl->n; i++)
    for (size_t j = 0; j < i; j++)
      if (!strcmp(cl->v[i].name, cl->v[j].name)) {
        sl_cfg_errf(errs, NULL, 0, 0, key,
                    "client name \"%.64s\" is used twice", cl->v[i].name);
        break;
      }
}

/* Cross-field rules, checked once every row is valid on its own. */
static void root_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  sl_config_t *cfg = obj;
  bool enrol = *cfg->enrol.bootstrap != '\0';
  if (!*cfg->node.id && !enrol) {
    if (sl_cfg_given(errs, "node.id"))
      sl_cfg_errf_at(errs, "node.id",
                     "\"\" is not a node id (1-64 characters of A-Z a-z 0-9 "
                     ". _ -; \"\" only with enrol.bootstrap)");
    else
      sl_cfg_errf(errs, NULL, 0, 0, "node.id",
                  "required key is missing (set it or SLUICE_NODE_ID)");
  }
  if (cfg->kafka.enabled && !*cfg->kafka.brokers && !enrol)
    sl_cfg_errf(errs, NULL, 0, 0, "kafka.brokers",
                "must be set when kafka.enabled is true");
  if (cfg->mqtt.enabled && !*cfg->mqtt.host)
    sl_cfg_errf(errs, NULL, 0, 0, "mqtt.host",
                "must be set when mqtt.enabled is true");
  if (cfg->mqtt.reconnect_min_ms > cfg->mqtt.reconnect_max_ms)
    sl_cfg_errf(errs, NULL, 0, 0, "mqtt.reconnect_min",
                "must not exceed mqtt.reconnect_max");
  if (*cfg->store.encryption_key_file && *cfg->store.encryption_key_env)
    sl_cfg_errf(errs, NULL, 0, 0, "store.encryption_key_env",
                "set store.encryption_key_file or store.encryption_key_env, "
                "not both");
  if (*cfg->mqtt.tls_cert && !*cfg->mqtt.tls_keyfile)
    sl_cfg_errf(errs, NULL, 0, 0, "mqtt.tls_keyfile",
                "must be set with mqtt.tls_cert");
  tls_finish(errs, "listeners.native", &cfg->listeners.native_tls);
  tls_finish(errs, "listeners.http", &cfg->listeners.http_tls);
  tls_finish(errs, "admin", &cfg->admin.tls);
  clients_finish(errs, "listeners.native.clients",
                 &cfg->listeners.native_clients);
  clients_finish(errs, "listeners.http.clients", &cfg->listeners.http_clients);
  const uint32_t dedupe_hdrs =
      SL_SYNC_HDR_NODE | SL_SYNC_HDR_STREAM | SL_SYNC_HDR_OFFSET;
  if (cfg->kafka.delivery == SL_CONFIG_DELIVERY_AT_LEAST_ONCE &&
      (cfg->kafka.omit_headers & dedupe_hdrs))
    sl_cfg_errf(errs, NULL, 0, 0, "kafka.omit_headers",
                "must keep node, stream and offset with kafka.delivery "
                "at_least_once: consumers drop repeats by them");
  for (size_t i = 0; i < cfg->streams.n; i++)
    if (cfg->streams.v[i].json_layout &&
        (cfg->kafka.omit_headers & (SL_SYNC_HDR_STREAM | SL_SYNC_HDR_OFFSET))) {
      char key[64];
      SL_CFG_FMT(key, sizeof(key), "streams[%zu].json_layout", i);
      sl_cfg_errf(errs, NULL, 0, 0, key,
                  "compact values carry no stream or offset: "
                  "kafka.omit_headers must keep both headers");
    }
  for (size_t i = 0; i < cfg->kafka.properties.n; i++) {
    const char *kv = cfg->kafka.properties.v[i];
    if (!strncmp(kv, "compression.", 12) && strchr(kv, '='))
      sl_cfg_errf(errs, NULL, 0, 0, "kafka.properties",
                  "%.*s is set per stream: use streams[].compression and "
                  "streams[].compression_level",
                  (int)(strchr(kv, '=') - kv), kv);
  }
  if (cfg->mqtt.enabled && !cfg->mqtt.subscriptions.n && !cfg->mqtt.fanout.n &&
      !*cfg->mqtt.status_topic)
    sl_cfg_errf(errs, NULL, 0, 0, "mqtt.subscriptions",
                "mqtt.enabled needs subscriptions, fanout or a status topic");
  for (size_t i = 0; i < cfg->mqtt.subscriptions.n; i++) {
    const sl_config_mqtt_sub_t *s = &cfg->mqtt.subscriptions.v[i];
    char key[64];
    SL_CFG_FMT(key, sizeof(key), "mqtt.subscriptions[%zu].oip", i);
    if (s->decoder == SL_CONFIG_MQTT_OIP && !sl_config_oip_find(cfg, s->oip))
      sl_cfg_errf(errs, NULL, 0, 0, key,
                  "decoder oip needs oip naming a profile of oip:");
  }
  for (size_t i = 0; i < cfg->oip.n; i++)
    for (size_t j = 0; j < i; j++)
      if (!strcmp(cfg->oip.v[i].name, cfg->oip.v[j].name)) {
        char key[64];
        SL_CFG_FMT(key, sizeof(key), "oip[%zu].name", i);
        sl_cfg_errf(errs, NULL, 0, 0, key, "\"%s\" is already used",
                    cfg->oip.v[i].name);
      }
  if (cfg->fleet.enabled && !*cfg->fleet.verify_key && !enrol)
    sl_cfg_errf(errs, NULL, 0, 0, "fleet.verify_key",
                "must be set when fleet.enabled is true");
  if (cfg->fleet.enabled && !*cfg->fleet.brokers && !*cfg->kafka.brokers &&
      !enrol)
    sl_cfg_errf(errs, NULL, 0, 0, "fleet.brokers",
                "must be set (or kafka.brokers) when fleet.enabled is true");
  if (cfg->models.enabled && !*cfg->models.verify_key &&
      !*cfg->fleet.verify_key && !enrol)
    sl_cfg_errf(errs, NULL, 0, 0, "models.verify_key",
                "must be set (or fleet.verify_key) when models.enabled is "
                "true");
  if (cfg->models.enabled && !*cfg->models.brokers && !*cfg->fleet.brokers &&
      !*cfg->kafka.brokers && !enrol)
    sl_cfg_errf(errs, NULL, 0, 0, "models.brokers",
                "must be set (or fleet.brokers, kafka.brokers) when "
                "models.enabled is true");
  for (size_t i = 0; i < cfg->fleet.labels.n; i++) {
    const char *l = cfg->fleet.labels.v[i], *eq = strchr(l, '=');
    if (!eq || eq == l || strchr(eq + 1, '=') || strchr(l, ',')) {
      sl_cfg_errf(errs, NULL, 0, 0, "fleet.labels",
                  "item %zu \"%.64s\" is not key=value", i, l);
      break;
    }
  }
  for (size_t i = 0; i < cfg->streams.n; i++) {
    const sl_config_stream_t *a = &cfg->streams.v[i];
    for (size_t j = 0; j < i; j++) {
      const sl_config_stream_t *b = &cfg->streams.v[j];
      if (!strcmp(a->topic, b->topic) &&
          (a->compression != b->compression ||
           a->compression_level != b->compression_level)) {
        char key[64];
        SL_CFG_FMT(key, sizeof(key), "streams[%zu].compression", i);
        sl_cfg_errf(errs, NULL, 0, 0, key,
                    "differs from streams[%zu]'s, which shares topic %.249s "
                    "(librdkafka compresses per topic)",
                    j, a->topic);
      }
      if (!strcmp(cfg->streams.v[i].name, cfg->streams.v[j].name)) {
        char key[64];
        SL_CFG_FMT(key, sizeof(key), "streams[%zu].name", i);
        sl_cfg_errf(errs, NULL, 0, 0, key,
                    "\"%.64s\" is already used by streams[%zu]",
                    cfg->streams.v[i].name, j);
        break;
      }
    }
  }
}

const sl_cfg_section_t sl_config__root = {
    .name = "",
    .opts = root_opts,
    .n_opts = SL_ARRAY_SIZE(root_opts),
    .size = sizeof(sl_config_t),
    .finish = root_finish,
    .env_prefix = SL_CONFIG_ENV_PREFIX,
    .flags = SL_CFG_SEC_PRIVATE_FILE,
};

extern char **environ;

int sl_config_load_string(const char *name, const char *yaml, size_t len,
                          char *const *envp, sl_config_t **out, char *errstr,
                          size_t errlen) {
  return sl_config_load_layers(name, yaml, len, NULL, NULL, envp, out, errstr,
                               errlen);
}

int sl_config_load_layers(const char *name, const char *yaml, size_t len,
                          const char *remote_json, const char *remote_name,
                          char *const *envp, sl_config_t **out, char *errstr,
                          size_t errlen) {
  void *obj;
  sl_config_t *cfg;
  sl_cfg_layers_t layers = {0};
  int rc = sl_cfg_load(&sl_config__root, name, yaml, len, envp, &obj, errstr,
                       errlen);
  *out = NULL;
  if (rc < 0)
    return rc;
  cfg = obj;
  if (!cfg->fleet.enabled) {
    if (remote_json) {
      sl_config_free(cfg);
      SL_CFG_FMT(errstr, errlen,
                 "%s: a fleet layer was given but "
                 "fleet.enabled is false",
                 name);
      return SL_ECONFIG;
    }
    *out = cfg;
    return 0;
  }
  /* The file turns the fleet on: load again with the ownership rule and
   * the remote layer over it (parsing twice is cheaper than a second
   * walker that would have to know which keys the first one set). */
  sl_config_free(cfg);
  layers.strict = true;
  layers.remote = remote_json;
  layers.remote_len = remote_json ? strlen(remote_json) : 0;
  layers.remote_name = remote_name ? remote_name : "fleet";
  rc = sl_cfg_load_layers(&sl_config__root, name, yaml, len, &layers, envp,
                          &obj, errstr, errlen);
  *out = rc < 0 ? NULL : obj;
  return rc;
}

int sl_config_read_file(const char *path, char **text, size_t *len,
                        char *errstr, size_t errlen) {
  /* Whoever can write the config can make the daemon run anything it
   * points at (keys, brokers, data_dir): the engine refuses one that group
   * or others may write, like sshd does. */
  return sl_cfg_read_file(path, true, text, len, errstr, errlen);
}

int sl_config_load_file(const char *path, sl_config_t **out, char *errstr,
                        size_t errlen) {
  char *buf;
  size_t len;
  int rc;

  *out = NULL;
  if ((rc = sl_config_read_file(path, &buf, &len, errstr, errlen)) < 0)
    return rc;
  rc = sl_config_load_string(path, buf, len, environ, out, errstr, errlen);
  free(buf);
  return rc;
}

void sl_config_free(sl_config_t *cfg) {
  if (!cfg)
    return;
  sl_cfg_obj_free(&sl_config__root, cfg);
  free(cfg);
}
