/* model/model_int.h: what the sl_model files share (not public). */
#ifndef SL_MODEL_INT_H
#define SL_MODEL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/v1/model.pb-c.h"

struct sl_model_manifest {
  Sluice__V1__ModelManifest *m; /* owned */
  uint8_t *rec;                 /* the Signed envelope it came in, owned */
  size_t rec_len;
};

/* A name or version usable as one path component. */
bool model__safe_component(const char *s);

#endif /* SL_MODEL_INT_H */
