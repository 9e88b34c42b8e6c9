/*
 * wire/wire.h against the generated protobuf-c descriptors: every field
 * number the hand-written paths use is the one the .proto file declares,
 * with the wire type the code assumes. (The oneof numbers are also checked
 * at compile time in wire.h; plain field numbers live only in descriptor
 * tables, so they are checked here.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "wire/wire.h"

/* The wire type protobuf-c uses for a (non-packed) field of type t. */
static unsigned wire_type(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_FIXED64:
  case PROTOBUF_C_TYPE_DOUBLE:
    return SL_WIRE_TYPE_I64;
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_FLOAT:
    return SL_WIRE_TYPE_I32;
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_BYTES:
  case PROTOBUF_C_TYPE_MESSAGE:
    return SL_WIRE_TYPE_LEN;
  default:
    return SL_WIRE_TYPE_VARINT;
  }
}

static void check(const ProtobufCMessageDescriptor *d, const char *name,
                  unsigned id, unsigned type) {
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field_by_name(d, name);
  assert_non_null(f);
  assert_int_equal(f->id, id);
  assert_int_equal(wire_type(f->type), type);
}

static void test_event_fields(void **state) {
  const ProtobufCMessageDescriptor *d = &sluice__v1__event__descriptor;
  (void)state;
  check(d, "source", SL_WIRE_EVENT_SOURCE, SL_WIRE_TYPE_LEN);
  check(d, "time_ns", SL_WIRE_EVENT_TIME_NS, SL_WIRE_TYPE_VARINT);
  check(d, "ingest_time_ns", SL_WIRE_EVENT_INGEST_TIME_NS, SL_WIRE_TYPE_VARINT);
  check(d, "reading", SL_WIRE_EVENT_READING, SL_WIRE_TYPE_LEN);
  check(d, "inference", SL_WIRE_EVENT_INFERENCE, SL_WIRE_TYPE_LEN);
  check(d, "raw", SL_WIRE_EVENT_RAW, SL_WIRE_TYPE_LEN);
  check(d, "gap", SL_WIRE_EVENT_GAP, SL_WIRE_TYPE_LEN);
  check(d, "status", SL_WIRE_EVENT_STATUS, SL_WIRE_TYPE_LEN);
  check(d, "attributes", SL_WIRE_EVENT_ATTRIBUTES, SL_WIRE_TYPE_LEN);
  /* The two sint64 times are zigzag encoded (scan_event() decodes, the
   * uplink's ingest-time append encodes). */
  assert_int_equal(
      protobuf_c_message_descriptor_get_field_by_name(d, "time_ns")->type,
      PROTOBUF_C_TYPE_SINT64);
  assert_int_equal(
      protobuf_c_message_descriptor_get_field_by_name(d, "ingest_time_ns")
          ->type,
      PROTOBUF_C_TYPE_SINT64);
  assert_int_equal(d->n_fields, 9);
}

static void test_batch_frame_publish_fields(void **state) {
  (void)state;
  check(&sluice__v1__event_batch__descriptor, "events", SL_WIRE_BATCH_EVENTS,
        SL_WIRE_TYPE_LEN);
  check(&sluice__v1__publish__descriptor, "batch_id", SL_WIRE_PUBLISH_BATCH_ID,
        SL_WIRE_TYPE_VARINT);
  check(&sluice__v1__publish__descriptor, "stream", SL_WIRE_PUBLISH_STREAM,
        SL_WIRE_TYPE_LEN);
  check(&sluice__v1__publish__descriptor, "events", SL_WIRE_PUBLISH_EVENTS,
        SL_WIRE_TYPE_LEN);
  check(&sluice__v1__frame__descriptor, "publish", SL_WIRE_FRAME_PUBLISH,
        SL_WIRE_TYPE_LEN);
  check(&sluice__v1__frame__descriptor, "hello", SL_WIRE_FRAME_HELLO,
        SL_WIRE_TYPE_LEN);
  check(&sluice__v1__frame__descriptor, "pong", SL_WIRE_FRAME_PONG,
        SL_WIRE_TYPE_LEN);
}

/* A packed Event carries the keys wire.h names, byte for byte. */
static void test_keys_on_the_wire(void **state) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Event *evp = &ev;
  Sluice__V1__EventBatch b = SLUICE__V1__EVENT_BATCH__INIT;
  uint8_t buf[64];
  (void)state;
  ev.ingest_time_ns = 1;
  assert_int_equal(sluice__v1__event__pack(&ev, buf), 2);
  assert_int_equal(buf[0], SL_WIRE_KEY_EVENT_INGEST_TIME);
  b.events = &evp;
  b.n_events = 1;
  assert_int_equal(sluice__v1__event_batch__pack(&b, buf), 4);
  assert_int_equal(buf[0], SL_WIRE_KEY_BATCH_EVENTS);
  assert_int_equal(SL_WIRE_KEY_FIELD(buf[0]), SL_WIRE_BATCH_EVENTS);
  assert_int_equal(SL_WIRE_KEY_TYPE(buf[0]), SL_WIRE_TYPE_LEN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_event_fields),
      cmocka_unit_test(test_batch_frame_publish_fields),
      cmocka_unit_test(test_keys_on_the_wire),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
