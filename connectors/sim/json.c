/* connectors/sim/json.c: an Event as docs/HTTP.md's JSON object. */
#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "common/common.h"
#include "connectors/sim/sim.h"
#include "schemas/event_json.h"

static json_t *inference_json(const Sluice__V1__Inference *inf) {
  json_t *o = json_object(), *labels = json_array(), *boxes = json_array();
  json_object_set_new(o, "model", json_string(inf->model));
  if (inf->model_version && *inf->model_version)
    json_object_set_new(o, "model_version", json_string(inf->model_version));
  for (size_t i = 0; i < inf->n_labels; i++) {
    json_t *l = json_object();
    json_object_set_new(l, "name", json_string(inf->labels[i]->name));
    json_object_set_new(l, "score", json_real(inf->labels[i]->score));
    json_array_append_new(labels, l);
  }
  for (size_t i = 0; i < inf->n_boxes; i++) {
    const Sluice__V1__Box *b = inf->boxes[i];
    json_t *j = json_object();
    json_object_set_new(j, "x", json_real(b->x));
    json_object_set_new(j, "y", json_real(b->y));
    json_object_set_new(j, "w", json_real(b->w));
    json_object_set_new(j, "h", json_real(b->h));
    json_object_set_new(j, "label", json_string(b->label));
    json_object_set_new(j, "score", json_real(b->score));
    json_array_append_new(boxes, j);
  }
  json_object_set_new(o, "labels", labels);
  json_object_set_new(o, "boxes", boxes);
  json_object_set_new(o, "latency_us", json_integer(inf->latency_us));
  return o;
}

int sl_sim_event_json(const Sluice__V1__Event *ev, char *buf, size_t len,
                      size_t *out_len) {
  json_t *o = json_object(), *attrs;
  const Sluice__V1__Reading *r = ev->reading;
  size_t n;
  int rc = 0;

  if (!o)
    return -ENOMEM;
  json_object_set_new(o, "source", json_string(ev->source));
  json_object_set_new(o, "time_ns", json_integer(ev->time_ns));
  switch (ev->body_case) {
  case SLUICE__V1__EVENT__BODY_READING:
    /* int_value: HTTP ingest reads it back as an integer. */
    if (sl_event_json_value(o, r, "int_value") < 0) {
      rc = -EINVAL; /* JSON ingest needs a value */
      goto out;
    }
    if (r->quality != SLUICE__V1__QUALITY__QUALITY_GOOD)
      json_object_set_new(o, "quality",
                          json_string(sl_event_quality_name(r->quality)));
    if (r->unit && *r->unit)
      json_object_set_new(o, "unit", json_string(r->unit));
    break;
  case SLUICE__V1__EVENT__BODY_INFERENCE:
    json_object_set_new(o, "inference", inference_json(ev->inference));
    break;
  default:
    rc = -EINVAL;
    goto out;
  }
  if (ev->n_attributes) {
    attrs = json_object();
    for (size_t i = 0; i < ev->n_attributes; i++)
      json_object_set_new(attrs, ev->attributes[i]->key,
                          json_string(ev->attributes[i]->value));
    json_object_set_new(o, "attributes", attrs);
  }
  n = json_dumpb(o, buf, len, JSON_COMPACT | JSON_REAL_PRECISION(17));
  if (n == 0) {
    rc = -EINVAL;
  } else if (n >= len) {
    rc = SL_ETOOBIG;
  } else {
    buf[n] = '\0';
    *out_len = n;
  }
out:
  json_decref(o);
  return rc;
}
