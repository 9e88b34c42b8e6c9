/*
 * connectors/opcua: the OPC UA client behind `sluice-opcua` (library
 * sl_opcua; the codec is sl_opcua_codec, ua_codec.h and ua_msg.h, the
 * connection ua_conn.h).
 *
 * A config (YAML, docs/CONNECTORS.md) lists servers and their items. Each
 * item is a variable given by NodeId or by browse path (resolved with
 * TranslateBrowsePathsToNodeIds at every connect). Items in mode "change"
 * are monitored items of one subscription per server (sampling interval,
 * queue size, deadband absolute or percent); items in mode "periodic" are
 * read with the Read service at their interval. Values become sluice
 * readings (built-in type -> Reading value and datatype, source timestamp
 * -> event time, server timestamp -> attribute server_time_ns, status code
 * -> quality and status_code) published through the C client library.
 *
 * No change lost. A notification's sequence number is acknowledged to the
 * server only once every reading it produced is acked by the daemon (durably
 * stored), so until then the server keeps it in its retransmission queue. A
 * gap in sequence numbers is filled with Republish. After a reconnect the
 * subscription is moved to the new session with TransferSubscriptions and
 * its unacknowledged notifications are republished; a server that lost it
 * (restart) gets a new subscription, whose initial values carry the current
 * state.
 *
 * Failures. A server that cannot be reached or stops answering gets a
 * "down" status event and one bad reading per item, and is retried with
 * jittered exponential backoff; "up" when the session is back. An item the
 * server refuses (unknown node, access denied, too many monitored items)
 * gets one bad reading with the status name and a log line.
 */
#ifndef SL_OPCUA_H
#define SL_OPCUA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum sl_opcua_mode {
  SL_OPCUA_CHANGE = 0,   /* monitored item: the server reports changes */
  SL_OPCUA_PERIODIC = 1, /* Read at every interval */
} sl_opcua_mode_t;

typedef enum sl_opcua_deadband {
  SL_OPCUA_DB_NONE = 0,
  SL_OPCUA_DB_ABSOLUTE = 1,
  SL_OPCUA_DB_PERCENT = 2,
} sl_opcua_deadband_t;

typedef enum sl_opcua_security {
  SL_OPCUA_SEC_NONE = 0,
} sl_opcua_security_t;

/* One variable. */
typedef struct sl_opcua_item {
  char *name;           /* source suffix: "<server source>/<name>" */
  char *node;           /* NodeId text ("ns=2;s=Temp") or "" */
  char *path;           /* browse path from Objects ("2:Plant/2:Temp") or "" */
  int mode;             /* sl_opcua_mode_t */
  uint64_t interval_ms; /* sampling (change) or read (periodic) interval */
  uint64_t queue_size;  /* change: server-side queue per item */
  int deadband_type;    /* sl_opcua_deadband_t */
  double deadband;      /* absolute units or percent of the EURange */
  char *unit;           /* reading unit, may be "" */
} sl_opcua_item_t;

/* One server (endpoint). */
typedef struct sl_opcua_server {
  char *name;   /* in logs */
  char *source; /* source prefix (default: name) */
  char *url;    /* opc.tcp://host:port[/path] */
  int security; /* sl_opcua_security_t */
  char *user;   /* "" : anonymous */
  char *password;
  bool allow_plaintext_password;
  uint64_t timeout_ms; /* connect and each request */
  uint64_t publishing_interval_ms;
  uint64_t keepalive_count, lifetime_count;
  uint64_t max_notifications; /* per Publish response, 0: no limit */
  uint64_t publish_requests;  /* Publish requests kept outstanding */
  uint64_t items_per_request; /* CreateMonitoredItems/Read batch */
  uint64_t session_timeout_ms, channel_lifetime_ms;
  uint64_t backoff_min_ms, backoff_max_ms;
  sl_opcua_item_t *items; /* with nitems: an engine list section */
  size_t nitems;
} sl_opcua_server_t;

typedef struct sl_opcua_config {
  char *address; /* daemon's native address (client library) */
  char *token;   /* listener token, may be "" */
  char *client_id;
  char *stream;        /* readings ("" = default) */
  char *status_stream; /* server status ("" = stream) */
  uint64_t max_buffered;
  uint64_t retry_buffer; /* per server: readings waiting for room */
  int log_level;
  sl_opcua_server_t *servers;
  size_t nservers;
} sl_opcua_config_t;

/* Reads and validates a config file, as sl_modbus_config_load(). */
int sl_opcua_config_load(const char *path, sl_opcua_config_t **out,
                         char *errstr, size_t errlen);
void sl_opcua_config_free(sl_opcua_config_t *cfg);
/* The Markdown reference of the config. 0 or -EIO. */
int sl_opcua_config_docs(FILE *out);

typedef struct sl_opcua sl_opcua_t;

/* Counters, summed over servers. */
typedef struct sl_opcua_stats {
  uint64_t notifications; /* NotificationMessages with data handled */
  uint64_t changes;       /* values received (monitored and read) */
  uint64_t reads;         /* Read calls for periodic items */
  uint64_t republished;   /* notifications recovered with Republish */
  uint64_t lost;          /* notifications the server no longer had */
  uint64_t overflows;     /* values flagged Overflow: the server's queue
                             for the item dropped values before them */
  uint64_t item_errors;   /* items the server refused */
  uint64_t failures;      /* connection or session failures */
  uint64_t published;     /* events accepted by the client library */
  uint64_t acked;         /* events acked by the daemon */
  uint64_t failed;        /* events whose batch failed */
  uint64_t dropped;       /* readings dropped from a full retry buffer */
  uint32_t servers_up;
  uint32_t items_ok; /* monitored or read without error now */
} sl_opcua_stats_t;

/* Starts one thread per server. cfg is borrowed. Returns 0 or an error
 * (nothing left running). Returns owned in *out; free with sl_opcua_stop. */
int sl_opcua_start(const sl_opcua_config_t *cfg, sl_opcua_t **out);
/* As sl_modbus_stop(): 0 when every published event was acked and none
 * dropped; -ETIMEDOUT; SL_ECLOSED. NULL is a no-op. */
int sl_opcua_stop(sl_opcua_t *ua, int flush_ms, sl_opcua_stats_t *final);
void sl_opcua_stats(sl_opcua_t *ua, sl_opcua_stats_t *stats);

/* `sluice-opcua browse URL`: lists the variables under Objects (NodeId,
 * browse path, type and value), one per line, to out. Returns 0 or an
 * error (its text in err). */
typedef struct sl_opcua_browse_opts {
  const char *url, *user, *password;
  bool allow_plaintext_password;
  uint32_t timeout_ms;
  uint32_t max_depth, max_nodes;
} sl_opcua_browse_opts_t;
int sl_opcua_browse(const sl_opcua_browse_opts_t *o, FILE *out, char *err,
                    size_t errlen);

/* Parses a browse path "2:Plant/2:Line 1/Temp" (namespace 0 without a
 * prefix; '/' inside a name as "\/"). Names are copied into buf; elems
 * point there. Returns the element count or -EINVAL. */
struct sl_ua_qname;
int sl_opcua_path_parse(const char *path, struct sl_ua_qname *elems, int max,
                        char *buf, size_t cap);

#endif /* SL_OPCUA_H */
