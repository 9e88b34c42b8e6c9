/*
 * daemon/fleet_agent.h: the node side of the fleet control plane
 * (daemon/fleet_agent.c over fleet/fleet.h; docs/FLEET.md). Private to the
 * daemon layer. All no-ops unless fleet.enabled.
 */
#ifndef SL_FLEET_AGENT_H
#define SL_FLEET_AGENT_H

#include <stddef.h>

struct sl_daemon;
struct json_t;
typedef struct sl_fleet_agent sl_fleet_agent_t;

/* After the store opened, before the streams: reads the node state, decides
 * which remote layer to start with (a pending trial counts one more start;
 * past fleet.max_trial_starts the last known good) and replaces
 * dm->in.cfg with the effective config. Returns 0 or an error with err. */
int sl_fleet_agent_boot(struct sl_daemon *dm, char *err, size_t errlen);

/* After the services started (loop thread): the Kafka thread, the 1 s
 * timer. Returns 0 or an error with err. */
int sl_fleet_agent_start(struct sl_daemon *dm, char *err, size_t errlen);

/* The remote layer running now (loop thread; NULL when off): a reload of
 * the local file keeps it. */
const char *sl_fleet_agent_remote(struct sl_daemon *dm);

/* Adds "fleet" to /v1/status (any thread). */
void sl_fleet_agent_status(struct sl_daemon *dm, struct json_t *root);

/* Closes the loop handles (the stop's finish step). */
void sl_fleet_agent_close(struct sl_daemon *dm);

/* Joins the thread and frees everything; before the store closes. */
void sl_fleet_agent_free(struct sl_daemon *dm);

#endif /* SL_FLEET_AGENT_H */
