#include "schemas/event_json.h"

int sl_event_json_value(json_t *o, const Sluice__V1__Reading *r,
                        const char *int_key) {
  switch (r->value_case) {
  case SLUICE__V1__READING__VALUE_DOUBLE_VALUE:
    json_object_set_new(o, "value", json_real(r->double_value));
    return 0;
  case SLUICE__V1__READING__VALUE_INT_VALUE:
    json_object_set_new(o, int_key, json_integer(r->int_value));
    return 0;
  case SLUICE__V1__READING__VALUE_BOOL_VALUE:
    json_object_set_new(o, "value", json_boolean(r->bool_value));
    return 0;
  case SLUICE__V1__READING__VALUE_STRING_VALUE:
    json_object_set_new(o, "value", json_string(r->string_value));
    return 0;
  default:
    return -1;
  }
}

const char *sl_event_quality_name(Sluice__V1__Quality q) {
  static const char *const names[] = {"good", "uncertain", "bad"};
  return (unsigned)q < 3 ? names[q] : "unknown";
}
