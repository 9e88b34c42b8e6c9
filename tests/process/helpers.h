/*
 * Event builders shared by the process tests: events live in a pool the
 * test frees with ph_reset(), so a test can build batches in one line.
 */
#ifndef SL_TESTS_PROCESS_HELPERS_H
#define SL_TESTS_PROCESS_HELPERS_H

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "process/process.h"

#define PH_MAX 4096

typedef struct ph_ev {
  Sluice__V1__Event ev;
  Sluice__V1__Reading rd;
  Sluice__V1__Inference inf;
  Sluice__V1__Label lab[4], *labp[4];
  Sluice__V1__Attribute attr[4], *attrp[4];
} ph_ev_t;

static ph_ev_t ph_pool[PH_MAX];
static size_t ph_n;

static inline void ph_reset(void) {
  ph_n = 0;
}

/* A double reading. */
static inline const Sluice__V1__Event *ph_reading(const char *src, int64_t t,
                                                  double v) {
  ph_ev_t *e = &ph_pool[ph_n++ % PH_MAX];
  memset(e, 0, sizeof(*e));
  sluice__v1__event__init(&e->ev);
  sluice__v1__reading__init(&e->rd);
  e->ev.source = (char *)src;
  e->ev.time_ns = t;
  e->ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  e->ev.reading = &e->rd;
  e->rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  e->rd.double_value = v;
  e->rd.unit = (char *)"C";
  return &e->ev;
}

static inline Sluice__V1__Event *ph_mut(const Sluice__V1__Event *ev) {
  return (Sluice__V1__Event *)ev;
}

static inline const Sluice__V1__Event *ph_quality(const Sluice__V1__Event *ev,
                                                  Sluice__V1__Quality q) {
  ph_mut(ev)->reading->quality = q;
  return ev;
}

static inline const Sluice__V1__Event *ph_attr(const Sluice__V1__Event *ev,
                                               const char *k, const char *v) {
  ph_ev_t *e = (ph_ev_t *)(void *)ph_mut(ev);
  size_t i = e->ev.n_attributes++;
  sluice__v1__attribute__init(&e->attr[i]);
  e->attr[i].key = (char *)k;
  e->attr[i].value = (char *)v;
  e->attrp[i] = &e->attr[i];
  e->ev.attributes = e->attrp;
  return ev;
}

/* An inference with up to 4 labels: name, score pairs, NULL-terminated. */
static inline const Sluice__V1__Event *ph_inference(const char *src, int64_t t,
                                                    const char *model,
                                                    const char *version, ...) {
  ph_ev_t *e = &ph_pool[ph_n++ % PH_MAX];
  va_list ap;
  const char *name;
  memset(e, 0, sizeof(*e));
  sluice__v1__event__init(&e->ev);
  sluice__v1__inference__init(&e->inf);
  e->ev.source = (char *)src;
  e->ev.time_ns = t;
  e->ev.body_case = SLUICE__V1__EVENT__BODY_INFERENCE;
  e->ev.inference = &e->inf;
  e->inf.model = (char *)model;
  e->inf.model_version = (char *)version;
  va_start(ap, version);
  while ((name = va_arg(ap, const char *)) && e->inf.n_labels < 4) {
    size_t i = e->inf.n_labels++;
    sluice__v1__label__init(&e->lab[i]);
    e->lab[i].name = (char *)name;
    e->lab[i].score = (float)va_arg(ap, double);
    e->labp[i] = &e->lab[i];
  }
  va_end(ap);
  e->inf.labels = e->labp;
  return &e->ev;
}

/* Attribute value of an emitted event, or NULL. */
static inline const char *ph_get(const Sluice__V1__Event *ev, const char *k) {
  for (size_t i = 0; i < ev->n_attributes; i++) {
    if (!strcmp(ev->attributes[i]->key, k))
      return ev->attributes[i]->value;
  }
  return NULL;
}

static inline double ph_num(const Sluice__V1__Event *ev, const char *k) {
  const char *v = ph_get(ev, k);
  return v ? strtod(v, NULL) : -12345.0;
}

#endif
