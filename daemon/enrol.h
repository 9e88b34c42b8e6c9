/*
 * daemon/enrol.h: zero-touch enrolment, the node side (daemon/enrol.c;
 * docs/ENROLMENT.md). Private to the daemon layer. No-ops unless
 * enrol.bootstrap is set.
 */
#ifndef SL_ENROL_H
#define SL_ENROL_H

#include <stddef.h>

struct sl_daemon;
struct json_t;

/*
 * After the config's first load, before anything uses node.id: loads the
 * bootstrap file and the node's identity (making its key on first start),
 * derives node.id from the key when the config leaves it "" (reloading the
 * config with it), and sets dm->kx: the node's certificate for every Kafka
 * connection, or blocked while the node is not enrolled. Returns 0 or an
 * error with err.
 */
int sl_enrol_prepare(struct sl_daemon *dm, char *err, size_t errlen);

/* After the services started (loop thread): enrols when not enrolled,
 * watches the certificate's age for renewal. */
int sl_enrol_start(struct sl_daemon *dm, char *err, size_t errlen);

/* Decommission (the fleet's document, or the service's REVOKED): wipes the
 * node's key and certificate and stops the uplink (loop thread). */
void sl_enrol_revoke(struct sl_daemon *dm, const char *why);

/* Adds "enrolment" to /v1/status (any thread). */
void sl_enrol_status(struct sl_daemon *dm, struct json_t *root);

void sl_enrol_close(struct sl_daemon *dm);
void sl_enrol_free(struct sl_daemon *dm);

#endif /* SL_ENROL_H */
