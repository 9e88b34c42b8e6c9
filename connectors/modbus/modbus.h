/*
 * connectors/modbus: the Modbus TCP poller behind `sluice-modbus`.
 *
 * A config (YAML, docs/CONNECTORS.md) lists devices and their points. Each
 * device's points are planned into blocks: points of one table with the same
 * poll interval whose registers are contiguous (or within max_gap) are read
 * in one request. Every block is polled at its interval; values are decoded
 * (type, word and byte order), scaled (raw * scale + offset), passed through
 * an optional deadband and published as readings through the C client
 * library (acks mean durably stored in the daemon).
 *
 * Failures. A block answered with a Modbus exception publishes its points
 * once with bad quality (the device is up, the data is not). A device that
 * stops answering (connect refused, timeout, connection reset) gets a
 * "down" status event, its points are published once with bad quality, and
 * it is retried with jittered exponential backoff; when it answers again an
 * "up" status event is published. Devices do not wait for one another.
 */
#ifndef SL_MODBUS_H
#define SL_MODBUS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Register tables. */
typedef enum sl_modbus_table {
  SL_MODBUS_HOLDING = 0,  /* holding registers (function 3) */
  SL_MODBUS_INPUT = 1,    /* input registers (function 4) */
  SL_MODBUS_COIL = 2,     /* coils (function 1) */
  SL_MODBUS_DISCRETE = 3, /* discrete inputs (function 2) */
} sl_modbus_table_t;

/* Value types; bool is the only type of coils and discrete inputs. */
typedef enum sl_modbus_type {
  SL_MODBUS_INT16 = 0,
  SL_MODBUS_UINT16 = 1,
  SL_MODBUS_INT32 = 2,
  SL_MODBUS_UINT32 = 3,
  SL_MODBUS_FLOAT32 = 4,
  SL_MODBUS_FLOAT64 = 5,
  SL_MODBUS_BOOL = 6,
} sl_modbus_type_t;

/* Word and byte order: big = most significant first (Modbus' own order). */
typedef enum sl_modbus_order {
  SL_MODBUS_BIG = 0,
  SL_MODBUS_LITTLE = 1,
} sl_modbus_order_t;

#define SL_MODBUS_NAME_MAX 64
#define SL_MODBUS_SOURCE_MAX 160

/* One point: a value at a register address. */
typedef struct sl_modbus_point {
  char *name;           /* source suffix: "<device source>/<name>" */
  int table;            /* sl_modbus_table_t */
  uint64_t address;     /* first register or bit, 0-based */
  int type;             /* sl_modbus_type_t */
  int word_order;       /* sl_modbus_order_t, multi-register types */
  int byte_order;       /* sl_modbus_order_t, within a register */
  double scale, offset; /* value = raw * scale + offset */
  char *unit;           /* reading unit, may be "" */
  uint64_t interval_ms; /* poll interval */
  double deadband;      /* publish only when |change| >= this (0: every poll) */
  uint64_t heartbeat_ms; /* with a deadband: publish at least this often */
} sl_modbus_point_t;

/* One Modbus TCP device. */
typedef struct sl_modbus_device {
  char *name;                              /* in logs */
  char *source;                            /* source prefix (default: name) */
  char *host;                              /* address or name */
  uint64_t port;                           /* default 502 */
  uint64_t unit_id;                        /* Modbus unit (slave) id */
  uint64_t connect_timeout_ms;             /* TCP connect */
  uint64_t response_timeout_ms;            /* one request */
  uint64_t backoff_min_ms, backoff_max_ms; /* reconnect backoff range */
  uint64_t max_gap;          /* unused registers a block may read across */
  sl_modbus_point_t *points; /* with npoints: an engine list section */
  size_t npoints;
} sl_modbus_device_t;

/* The whole connector config. */
typedef struct sl_modbus_config {
  char *address;               /* daemon's native address (client library) */
  char *token;                 /* listener token, may be "" */
  char *client_id;             /* names this connector in the daemon */
  char *stream;                /* stream for readings ("" = default) */
  char *status_stream;         /* stream for device status ("" = stream) */
  uint64_t max_buffered;       /* client library: events awaiting their ack */
  uint64_t retry_buffer;       /* per device: readings waiting for room */
  int log_level;               /* sl_conn_log_level_t */
  sl_modbus_device_t *devices; /* with ndevices: an engine list section */
  size_t ndevices;
} sl_modbus_config_t;

/*
 * Reads and validates a config file (tables in connectors/modbus/schema.c,
 * the config engine config/cfg.h). Returns 0, -errno (cannot read it),
 * SL_ETOOBIG or SL_ECONFIG with every error in errstr, one per line,
 * "path:line:column: key: reason". Strings are owned and never NULL.
 * Returns owned in *out; free with sl_modbus_config_free().
 */
int sl_modbus_config_load(const char *path, sl_modbus_config_t **out,
                          char *errstr, size_t errlen);
void sl_modbus_config_free(sl_modbus_config_t *cfg);

/* Writes the Markdown reference of the config (the tables above; the
 * source of docs/CONNECTORS.md's). Returns 0 or -EIO. */
int sl_modbus_config_docs(FILE *out);

/* Number of registers (or bits) a point occupies. */
unsigned sl_modbus_type_width(sl_modbus_type_t type);

/*
 * Decodes a point from its registers (regs[0] is the point's first
 * register, in host order as libmodbus returns them) and applies scale and
 * offset. Returns 0, or -ERANGE when a float decodes to NaN or infinity
 * (such a value cannot be published; the point is reported bad).
 */
int sl_modbus_decode(const sl_modbus_point_t *pt, const uint16_t *regs,
                     double *value);

/* One read request: a table range covering some points of a device. */
typedef struct sl_modbus_block {
  int table;            /* sl_modbus_table_t */
  uint32_t address;     /* first register or bit */
  uint32_t count;       /* registers or bits */
  uint32_t interval_ms; /* the interval shared by its points */
  size_t *points;       /* indexes into the device's points */
  size_t npoints;
} sl_modbus_block_t;

/*
 * Plans dev's points into blocks (at most 125 registers or 2000 bits per
 * request, the protocol's limits). Returns 0 or -ENOMEM.
 * Returns owned in *blocks; free with sl_modbus_plan_free().
 */
int sl_modbus_plan(const sl_modbus_device_t *dev, sl_modbus_block_t **blocks,
                   size_t *nblocks);
void sl_modbus_plan_free(sl_modbus_block_t *blocks, size_t nblocks);

/* The running poller. */
typedef struct sl_modbus sl_modbus_t;

/* Counters, summed over devices. */
typedef struct sl_modbus_stats {
  uint64_t polls;      /* successful block reads */
  uint64_t exceptions; /* blocks answered with a Modbus exception */
  uint64_t failures;   /* transport failures (timeouts, refused, reset) */
  uint64_t published;  /* events accepted by the client library */
  uint64_t acked;      /* events acked by the daemon */
  uint64_t failed;     /* events whose batch failed */
  uint64_t dropped;    /* readings dropped from a full retry buffer */
  uint32_t devices_up; /* devices answering now */
} sl_modbus_stats_t;

/*
 * Creates the client and one polling thread per device, and starts them.
 * cfg is borrowed and must outlive the poller. Returns 0, SL_ECONFIG,
 * -ENOMEM or an -errno from thread creation (nothing is left running).
 * Returns owned in *out; free with sl_modbus_free().
 */
int sl_modbus_start(const sl_modbus_config_t *cfg, sl_modbus_t **out);

/*
 * Stops polling (each thread finishes its current request, bounded by the
 * device's timeouts), waits up to flush_ms for outstanding acks, fills
 * *final (if not NULL) with the last counters and frees everything.
 * Returns 0 when every published event was acked and none was dropped;
 * -ETIMEDOUT when acks were still missing after flush_ms; SL_ECLOSED when
 * some events failed or were dropped (see *final). NULL is a no-op.
 */
int sl_modbus_stop(sl_modbus_t *mb, int flush_ms, sl_modbus_stats_t *final);

/* A snapshot of the counters. */
void sl_modbus_stats(sl_modbus_t *mb, sl_modbus_stats_t *stats);

#endif /* SL_MODBUS_H */
