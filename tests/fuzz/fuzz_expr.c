/* libFuzzer target: filter expressions (process/expr.c, process/eval.c).
 * Compiles the input as an expression; when it compiles, evaluates it on a
 * few fixed events (reading, inference, string value, NaN) so the
 * evaluator's stack bounds are exercised too. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "process/process.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static Sluice__V1__Event ev[3];
  static Sluice__V1__Reading rd[3];
  static Sluice__V1__Inference inf;
  static Sluice__V1__Label lab, *labp = &lab;
  static Sluice__V1__Attribute at, *atp = &at;
  char *text, err[256];
  sl_process_expr_t *ex;

  for (int i = 0; i < 3; i++) {
    sluice__v1__event__init(&ev[i]);
    sluice__v1__reading__init(&rd[i]);
    ev[i].source = (char *)"plant1/line3/press07/temp";
    ev[i].time_ns = 1500000000;
    ev[i].body_case = SLUICE__V1__EVENT__BODY_READING;
    ev[i].reading = &rd[i];
    rd[i].value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
    rd[i].unit = (char *)"bar";
  }
  rd[0].double_value = 42.5;
  rd[1].double_value = NAN;
  rd[2].value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
  rd[2].string_value = (char *)"RUNNING";
  sluice__v1__attribute__init(&at);
  at.key = (char *)"site";
  at.value = (char *)"plant1";
  ev[0].n_attributes = 1;
  ev[0].attributes = &atp;
  sluice__v1__inference__init(&inf);
  sluice__v1__label__init(&lab);
  lab.name = (char *)"person";
  lab.score = 0.9f;
  inf.model = (char *)"yolo";
  inf.model_version = (char *)"v8";
  inf.n_labels = 1;
  inf.labels = &labp;
  ev[1].body_case = SLUICE__V1__EVENT__BODY_INFERENCE;
  ev[1].inference = &inf;

  if (!(text = malloc(size + 1)))
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  if (sl_process_expr_compile(text, &ex, err, sizeof(err)) == 0) {
    for (int i = 0; i < 3; i++)
      (void)sl_process_expr_match(ex, &ev[i], "plc");
    sl_process_expr_free(ex);
  } else if (strncmp(err, "column ", 7) && strncmp(err, "expression", 10) &&
             strncmp(err, "out of memory", 13)) {
    abort(); /* every error names a column (or the length limit) */
  }
  free(text);
  return 0;
}
