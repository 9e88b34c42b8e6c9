/*
 * connectors/opcua: what the connector's files share (not a public
 * header): the per-server state, owned by that server's thread, and the
 * delivery functions of deliver.c used by opcua.c.
 */
#ifndef SL_OPCUA_INT_H
#define SL_OPCUA_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "connectors/opcua/opcua.h"
#include "connectors/opcua/ua_conn.h"
#include "sluice/client.h"

enum { SRV_UNKNOWN = 0, SRV_UP = 1, SRV_DOWN = 2 };
enum { EV_READING = 0, EV_STATUS = 1 };
enum { Q_NONE = -1 }; /* nothing published yet for an item */

/* One event waiting for room in the client library, or being built. */
typedef struct pending {
  int kind;          /* EV_READING or EV_STATUS */
  uint32_t item;     /* EV_READING: index into the server's items */
  int64_t time_ns;   /* source timestamp (or server's, or now) */
  int64_t server_ns; /* server timestamp, 0 when absent */
  uint32_t status;   /* OPC UA status code */
  int quality;       /* Sluice__V1__Quality */
  int value_case;    /* Sluice__V1__Reading__ValueCase */
  int datatype;      /* Sluice__V1__DataType */
  uint8_t ua_type;   /* the built-in type (attribute opcua_type) */
  bool ua_array;
  union {
    bool b;
    int64_t i;
    uint64_t u;
    double d;
  } v;
  char *str;     /* owned: string value, or a bad reading's reason */
  char state[8]; /* EV_STATUS: "up" or "down" */
} pending_t;

/* A notification waiting for the daemon's ack before the server gets its. */
typedef struct ack_wait {
  uint32_t sub_id, seq;
  uint64_t need;  /* events emitted up to and including this notification */
  uint64_t batch; /* the batch of its last event, once published */
  bool assigned;
} ack_wait_t;

typedef struct ua_item_state {
  sl_ua_nodeid_t node; /* resolved; node.str points into nodebuf */
  char *nodebuf;
  bool resolved;
  bool monitored;  /* a monitored item exists on the current subscription */
  int quality;     /* last quality published, Q_NONE before the first */
  uint32_t status; /* last status published */
} ua_item_state_t;

typedef struct ua_srv {
  struct sl_opcua *ua;          /* back pointer */
  const sl_opcua_server_t *cfg; /* borrowed */
  char **sources;               /* per item: "<source>/<name>" */
  ua_item_state_t *items;
  sl_ua_conn_t *conn;
  sl_ua_conn_t *prev; /* the lost connection: its session, to reactivate */
  int state;          /* SRV_* */
  uint32_t backoff_ms;
  uint64_t retry_mono, rng;
  /* subscription */
  uint32_t sub_id;          /* 0: none */
  uint32_t last_seq;        /* highest sequence number delivered */
  uint32_t outstanding;     /* Publish requests in flight */
  uint32_t max_outstanding; /* lowered on BadTooManyPublishRequests */
  uint64_t last_rx_mono;    /* last Publish response */
  double revised_interval_ms;
  uint32_t revised_keepalive;
  /* periodic items: next read, per item (UINT64_MAX: not periodic) */
  uint64_t *due;
  /* delivery */
  pending_t *ring; /* retry ring, allocated on first use */
  size_t rcap, rhead, rlen;
  uint64_t n_emit, n_done, last_batch;
  ack_wait_t *acks; /* FIFO of notifications not yet acked to the server */
  size_t acap, ahead, alen;
  pthread_t thread;
  int started;
} ua_srv_t;

struct sl_opcua {
  const sl_opcua_config_t *cfg;
  sl_client_t *cl;
  ua_srv_t *srvs;
  size_t nsrvs;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
  atomic_uint_fast64_t acked_batch; /* highest batch id acked (in order) */
  atomic_uint_fast64_t notifications, changes, reads, republished, lost,
      overflows, item_errors, failures, published, acked, failed, dropped;
  atomic_uint servers_up, items_ok;
};

/* opcua.c: a server's thread (arg: its ua_srv_t). */
void *ua_srv_main(void *arg);

/* deliver.c */
/* Fills p from a DataValue for item i (time: now when no timestamp). */
void ua_pending_from_dv(ua_srv_t *s, uint32_t i, const sl_ua_datavalue_t *dv,
                        pending_t *p);
/* Publishes p (or keeps it in the ring); takes p->str. */
void ua_emit(ua_srv_t *s, pending_t *p);
/* A bad reading for item i, once per change of status. */
void ua_emit_bad(ua_srv_t *s, uint32_t i, uint32_t status, const char *reason);
void ua_emit_status(ua_srv_t *s, const char *state, const char *reason);
/* Publishes what waits in the ring; 1 when it is empty. */
int ua_drain(ua_srv_t *s);
/* Records a notification whose events were all emitted. */
void ua_ack_wait_add(ua_srv_t *s, uint32_t sub_id, uint32_t seq);
/* Up to max acknowledgements the daemon's acks allow, removed. */
uint32_t ua_acks_ready(ua_srv_t *s, sl_ua_sub_ack_t *out, uint32_t max);
/* Forgets waiting acknowledgements (a subscription that is gone). */
void ua_acks_clear(ua_srv_t *s);
void ua_srv_free_delivery(ua_srv_t *s);

#endif /* SL_OPCUA_INT_H */
