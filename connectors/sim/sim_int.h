/* connectors/sim: private to the simulator's files. */
#ifndef SL_SIM_INT_H
#define SL_SIM_INT_H

#include <stdatomic.h>

#include "common/addr.h"
#include "common/common.h"
#include "connectors/sim/sim.h"

/* One output kind. */
typedef struct sim_out_ops {
  int (*publish)(sl_sim_out_t *o, const char *stream,
                 const Sluice__V1__Event *ev);
  int (*flush)(sl_sim_out_t *o, int timeout_ms);
  void (*free)(sl_sim_out_t *o);
} sim_out_ops_t;

struct sl_sim_out {
  const sim_out_ops_t *ops;
  const sl_sim_config_t *cfg; /* borrowed */
  volatile int *stop;         /* set from a signal handler */
  uint64_t deadline_ns;       /* monotonic end of the run; 0 = none */
  atomic_uint_fast64_t published, acked, failed;
  void *impl; /* the kind's own state */
};

/* Each sets o->ops and o->impl. Returns 0 or an error. */
int sim__native_new(sl_sim_out_t *o);
int sim__http_new(sl_sim_out_t *o);
int sim__mqtt_new(sl_sim_out_t *o);

/* Splits "host:port" or "[v6]:port". Returns 0 or SL_ECONFIG. Here, not in
 * out.c, so that the HTTP and MQTT outputs do not call back into the
 * dispatch that makes them. */
static inline int sim__split_hostport(const char *addr, char *host,
                                      size_t hostlen, int *port) {
  uint16_t p;
  if (sl_hostport_split(addr, 0, host, hostlen, &p))
    return SL_ECONFIG;
  *port = p;
  return 0;
}

#endif
