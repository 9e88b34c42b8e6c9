/*
 * connectors/sim: the simulator behind `sluice-sim`. It runs the generators
 * of gen.h at a rate, bounded in count and time, and publishes natively
 * (the C client library), over HTTP (POST /v1/events, JSON lines) or over
 * MQTT (one JSON event per message, QoS 1).
 */
#ifndef SL_SIM_H
#define SL_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/v1/event.pb-c.h"

typedef enum sl_sim_output {
  SL_SIM_NATIVE = 0,
  SL_SIM_HTTP = 1,
  SL_SIM_MQTT = 2,
} sl_sim_output_t;

typedef struct sl_sim_config {
  int output;      /* sl_sim_output_t */
  char *address;   /* native: host:port or unix:/path; http and
                      mqtt: host:port */
  char *token;     /* native listener token */
  char *client_id; /* native client id, MQTT client id */
  char *stream;    /* readings' stream */
  char *inference_stream;
  char *topic_prefix;         /* MQTT: topic = prefix/stream/source */
  uint64_t sources;           /* sensor sources */
  double rate;                /* sensor readings per second (0: flat out) */
  uint64_t inference_sources; /* model instances (cameras, presses) */
  double inference_rate;      /* inference results per second */
  uint64_t count;             /* stop after this many events (0: no limit) */
  uint64_t duration_ms;       /* stop after this long (0: no limit) */
  uint64_t seed;              /* same seed, same events */
  uint64_t start_time;        /* event times from here, Unix seconds
                                 (0: now) */
  uint64_t batch;             /* HTTP: events per request */
  uint64_t flush_timeout_ms;  /* at the end: wait this long for acks */
  int log_level;              /* sl_conn_log_level_t */
} sl_sim_config_t;

/*
 * Fills cfg from an optional YAML file (path NULL: defaults only) and then
 * from command-line style overrides ("--rate", "500", ... every key of the
 * file is also an option). The table is in the config engine's format
 * (config/cfg.h). Returns 0, -errno (the file cannot be read) or
 * SL_ECONFIG with the reasons (with path:line:column for the file) in
 * errstr. On success cfg owns its strings: release with
 * sl_sim_config_free(); on error cfg holds nothing.
 */
int sl_sim_config_load(sl_sim_config_t *cfg, const char *path, int argc,
                       char **argv, char *errstr, size_t errlen);

/* Frees the strings cfg owns (not cfg itself). */
void sl_sim_config_free(sl_sim_config_t *cfg);

/* Writes the options' table (name, default, description) to f. */
void sl_sim_config_help(void *f);

/* What a run did. */
typedef struct sl_sim_stats {
  uint64_t readings;  /* sensor events generated */
  uint64_t inference; /* inference events generated */
  uint64_t published; /* accepted by the output */
  uint64_t acked;     /* durably stored (native ack, HTTP 2xx, PUBACK) */
  uint64_t failed;    /* refused or never acknowledged */
  uint64_t gaps;      /* sensor turns skipped (simulated gaps) */
  double seconds;     /* wall time of the run */
} sl_sim_stats_t;

/*
 * Runs the simulation until count or duration is reached or *stop becomes
 * non-zero (set from a signal handler), then waits for acks up to
 * flush_timeout_ms. Returns 0 when every event was acked; SL_ECLOSED when
 * some failed or stayed unacked; -errno or SL_E* when the output could not
 * be set up. *stats is filled in every case.
 */
int sl_sim_run(const sl_sim_config_t *cfg, volatile int *stop,
               sl_sim_stats_t *stats);

/*
 * Encodes ev as one JSON object of docs/HTTP.md's event shape (no newline).
 * Returns 0, SL_ETOOBIG (longer than len - 1) or -EINVAL (a body JSON ingest
 * has no form for: gap, status). buf gets the NUL-terminated text.
 */
int sl_sim_event_json(const Sluice__V1__Event *ev, char *buf, size_t len,
                      size_t *out_len);

/* ---- outputs (out_*.c) --------------------------------------------------- */

typedef struct sl_sim_out sl_sim_out_t;

/* Creates the output cfg->output names. Returns 0, -ENOMEM, SL_ECONFIG or
 * an error from connecting. Returns owned; free with sl_sim_out_free(). */
int sl_sim_out_new(const sl_sim_config_t *cfg, volatile int *stop,
                   sl_sim_out_t **out);
/* Publishes ev (borrowed) to stream; waits while the output is full (until
 * *stop). Returns 0, SL_ECLOSED when stopped, or an output error. */
int sl_sim_out_publish(sl_sim_out_t *o, const char *stream,
                       const Sluice__V1__Event *ev);
/* Sends what is pending and waits up to timeout_ms for every ack. Returns
 * 0 or -ETIMEDOUT. */
int sl_sim_out_flush(sl_sim_out_t *o, int timeout_ms);
/* Counters so far. */
void sl_sim_out_stats(sl_sim_out_t *o, uint64_t *published, uint64_t *acked,
                      uint64_t *failed);
/* Closes the output and frees it; the final counters go to the pointers
 * (events never acked count as failed). */
void sl_sim_out_free(sl_sim_out_t *o, uint64_t *published, uint64_t *acked,
                     uint64_t *failed);

#endif /* SL_SIM_H */
