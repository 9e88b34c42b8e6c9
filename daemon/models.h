/*
 * daemon/models.h: model distribution on the node (daemon/models.c over
 * model/model.h; docs/EDGE-AI.md "Model distribution").
 */
#ifndef SL_DAEMON_MODELS_H
#define SL_DAEMON_MODELS_H

#include <stddef.h>

#include "model/model.h"

struct sl_daemon;
struct json_t;
typedef struct sl_models sl_models_t;
typedef struct sl_models_gate sl_models_gate_t;

/* After the services started (loop thread), a no-op unless models.enabled:
 * opens the machines of the models the node has (recovery, retained
 * messages), then the Kafka thread. Errors: SL_ECONFIG, SL_EKAFKA, those of
 * the key and the store (message in err). */
int sl_models_start(struct sl_daemon *dm, char *err, size_t errlen);

/* Adds "models" to /v1/status (any thread). */
void sl_models_status(struct sl_daemon *dm, struct json_t *root);

/* Closes the loop handles (the stop's finish step). */
void sl_models_close(struct sl_daemon *dm);

/* Joins the thread and frees everything; before the store closes. */
void sl_models_free(struct sl_daemon *dm);

/* The machine of a model (models thread only), or NULL. */
sl_model_t *sl_models__find(sl_models_t *ms, const char *name);

/* The gate's reader of model_aggregate's output (daemon/models_gate.c):
 * new: a cursor over stream; poll (models thread, every second): feeds each
 * version on trial the closed windows of its (model, version) and, for a
 * canary or shadow, the primary's of the same window. */
int sl_models_gate_new(struct sl_daemon *dm, const char *stream,
                       sl_models_gate_t **out, char *err, size_t errlen);
void sl_models_gate_poll(sl_models_gate_t *g);
void sl_models_gate_free(sl_models_gate_t *g);

#endif /* SL_DAEMON_MODELS_H */
