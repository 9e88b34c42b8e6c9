/* Known-answer tests for the inference decoders (decode/decode_inference.c):
 * the inference JSON mapping and OIP v2 responses, and their errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decode/decode_inference.h"
#include "sluice/v1/event.pb-c.h"

#define DEF_T 1000

static sl_infer_dec_t *dec;
static sl_json_batch_t jb;
static char err[256];

static int setup(void **state) {
  (void)state;
  sl_json_batch_init(&jb);
  return sl_infer_dec_new(&dec);
}
static int teardown(void **state) {
  (void)state;
  sl_infer_dec_free(dec);
  sl_json_batch_close(&jb);
  return 0;
}

static Sluice__V1__EventBatch *json(const char *p, int *rc) {
  *rc = sl_infer_decode_json(dec, p, strlen(p), "cam0", DEF_T, 100, &jb, err,
                             sizeof(err));
  if (*rc < 0)
    return NULL;
  return sluice__v1__event_batch__unpack(NULL, jb.buf.len, jb.buf.data);
}

static void test_json_full(void **state) {
  (void)state;
  int rc;
  Sluice__V1__EventBatch *b = json(
      "{\"model\":\"yolo\",\"model_version\":\"8.1\",\"model_digest\":"
      "\"sha256:ab\",\"role\":\"canary\",\"sequence\":42,"
      "\"capture_time_ns\":5000,\"pts_ns\":33,\"emit_time_ns\":6000,"
      "\"latency_us\":1200,\"queue_us\":80,\"task\":\"detect\",\"status\":"
      "\"ok\",\"score_threshold\":0.25,\"label_map_digest\":\"sha256:cd\","
      "\"detections\":[{\"label_id\":3,\"label\":\"car\",\"score\":0.9,"
      "\"box\":[0.1,0.2,0.3,0.4],\"track_id\":7},{\"label_id\":0,\"score\":"
      "0.5}],\"classes\":[{\"label_id\":1,\"score\":0.7}],\"anomaly_score\":"
      "0.125,\"values\":[1.5,-2],\"attributes\":{\"site\":\"a\"}}",
      &rc);
  assert_int_equal(rc, 0);
  assert_non_null(b);
  assert_int_equal(b->n_events, 1);
  const Sluice__V1__Event *e = b->events[0];
  assert_string_equal(e->source, "cam0");
  assert_int_equal(e->time_ns, 5000); /* capture time without time_ns */
  assert_int_equal(e->body_case, SLUICE__V1__EVENT__BODY_INFERENCE);
  const Sluice__V1__Inference *in = e->inference;
  assert_string_equal(in->model, "yolo");
  assert_string_equal(in->model_version, "8.1");
  assert_string_equal(in->model_digest, "sha256:ab");
  assert_int_equal(in->role, SLUICE__V1__INFERENCE_ROLE__INFERENCE_ROLE_CANARY);
  assert_int_equal(in->sequence, 42);
  assert_int_equal(in->pts_ns, 33);
  assert_int_equal(in->emit_time_ns, 6000);
  assert_int_equal(in->latency_us, 1200);
  assert_int_equal(in->queue_us, 80);
  assert_int_equal(in->task, SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_DETECT);
  assert_int_equal(in->status,
                   SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_OK);
  assert_true(fabsf(in->score_threshold - 0.25f) < 1e-6);
  assert_string_equal(in->label_map_digest, "sha256:cd");
  assert_int_equal(in->n_detections, 2);
  assert_int_equal(in->detections[0]->label_id, 3);
  assert_string_equal(in->detections[0]->label, "car");
  assert_true(in->detections[0]->tracked);
  assert_int_equal(in->detections[0]->track_id, 7);
  assert_true(fabsf(in->detections[0]->h - 0.4f) < 1e-6);
  assert_false(in->detections[1]->tracked);
  assert_int_equal(in->n_classes, 1);
  assert_true(in->anomaly_score == 0.125);
  assert_int_equal(in->n_values, 2);
  assert_true(in->values[1] == -2);
  assert_int_equal(e->n_attributes, 1);
  sluice__v1__event_batch__free_unpacked(b, NULL);
  /* Arrays and JSON lines; time_ns wins; the default time otherwise. */
  b = json("[{\"model\":\"m\",\"source\":\"x\",\"time_ns\":9,"
           "\"capture_time_ns\":4},{\"model\":\"m\",\"status\":\"empty\"}]\n"
           "{\"model\":\"m\",\"status\":\"error\",\"error\":\"oom\"}",
           &rc);
  assert_int_equal(rc, 0);
  assert_int_equal(b->n_events, 3);
  assert_string_equal(b->events[0]->source, "x");
  assert_int_equal(b->events[0]->time_ns, 9);
  assert_int_equal(b->events[1]->time_ns, DEF_T);
  assert_string_equal(b->events[2]->inference->error, "oom");
  sluice__v1__event_batch__free_unpacked(b, NULL);
}

static void test_json_errors(void **state) {
  (void)state;
  static const struct {
    const char *in, *msg;
  } cases[] = {
      {"{\"model\":\"m\",\"vaule\":1}", "unknown key \"vaule\" in inference"},
      {"{\"status\":\"ok\"}", "\"model\" is required"},
      {"{\"model\":\"m\",\"role\":\"boss\"}", "\"role\" must be one of"},
      {"{\"model\":\"m\",\"detections\":[{\"score\":1}]}",
       "detections[0] needs \"label_id\" and \"score\""},
      {"{\"model\":\"m\",\"detections\":[{\"label_id\":1,\"score\":1,\"box\":"
       "[0,0,2,1]}]}",
       "box values must be numbers in [0, 1]"},
      {"{\"model\":\"m\",\"detections\":[{\"label_id\":-1,\"score\":1}]}",
       "\"label_id\" must be an integer"},
      {"{\"model\":\"m\",\"latency_us\":1.5}", "\"latency_us\" must be an"},
      {"{\"model\":\"m\",\"error\":\"x\"}", "\"error\" goes with"},
      {"{\"model\":\"m\",\"model\":\"n\"}", "duplicate"},
      {"{\"model\":\"m\"", "invalid JSON"},
      {"[]", "empty array"},
      {"[{\"model\":\"m\"},{\"model\":5}]", "inference [1]: \"model\" must be"},
      {"", "no inference"},
      {"{\"model\":\"m\",\"values\":[1,\"a\"]}", "values[1] must be"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int rc;
    assert_null(json(cases[i].in, &rc));
    assert_int_equal(rc, SL_EPROTO);
    if (!strstr(err, cases[i].msg))
      fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].msg);
    assert_int_equal(jb.count, 0);
  }
}

static Sluice__V1__EventBatch *oip(const char *p, const sl_oip_map_t *m,
                                   int *rc) {
  *rc = sl_infer_decode_oip(dec, p, strlen(p), m, "cam1", DEF_T, &jb, err,
                            sizeof(err));
  if (*rc < 0)
    return NULL;
  return sluice__v1__event_batch__unpack(NULL, jb.buf.len, jb.buf.data);
}

static const char *const labels[] = {"cat", "dog", "fox", "owl"};

static void test_oip_classify(void **state) {
  (void)state;
  sl_oip_map_t m = {.model = "cfg",
                    .labels = labels,
                    .nlabels = 4,
                    .label_map_digest = "sha256:11",
                    .top_k = 2,
                    .score_threshold = 0.1f};
  int rc;
  /* KServe's response of a 4-class model, nested data. */
  Sluice__V1__EventBatch *b =
      oip("{\"model_name\":\"resnet\",\"model_version\":\"2\",\"id\":\"77\","
          "\"parameters\":{},\"outputs\":[{\"name\":\"probs\",\"shape\":[1,4],"
          "\"datatype\":\"FP32\",\"data\":[[0.05,0.6,0.3,0.05]]}]}",
          &m, &rc);
  assert_int_equal(rc, 0);
  const Sluice__V1__Inference *in = b->events[0]->inference;
  assert_string_equal(b->events[0]->source, "cam1");
  assert_string_equal(in->model, "resnet");
  assert_string_equal(in->model_version, "2");
  assert_string_equal(in->label_map_digest, "sha256:11");
  assert_int_equal(in->sequence, 77);
  assert_int_equal(in->task,
                   SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_CLASSIFY);
  assert_int_equal(in->status,
                   SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_OK);
  assert_int_equal(in->n_classes, 2);
  assert_int_equal(in->classes[0]->label_id, 1);
  assert_string_equal(in->classes[0]->label, "dog");
  assert_int_equal(in->classes[1]->label_id, 2);
  assert_string_equal(in->classes[1]->label, "fox");
  sluice__v1__event_batch__free_unpacked(b, NULL);
  /* Nothing above the threshold: EMPTY, still an event. */
  m.score_threshold = 0.9f;
  b = oip("{\"outputs\":[{\"name\":\"p\",\"shape\":[4],\"datatype\":\"FP64\","
          "\"data\":[0.05,0.6,0.3,0.05]}]}",
          &m, &rc);
  assert_int_equal(rc, 0);
  assert_string_equal(b->events[0]->inference->model, "cfg");
  assert_int_equal(b->events[0]->inference->status,
                   SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_EMPTY);
  sluice__v1__event_batch__free_unpacked(b, NULL);
  /* An error response. */
  b = oip("{\"error\":\"model not ready\"}", &m, &rc);
  assert_int_equal(rc, 0);
  assert_int_equal(b->events[0]->inference->status,
                   SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_ERROR);
  assert_string_equal(b->events[0]->inference->error, "model not ready");
  sluice__v1__event_batch__free_unpacked(b, NULL);
}

static void test_oip_detect_anomaly(void **state) {
  (void)state;
  sl_oip_map_t m = {.model = "det",
                    .labels = labels,
                    .nlabels = 4,
                    .task = SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_DETECT,
                    .output = "boxes",
                    .score_threshold = 0.5f};
  int rc;
  Sluice__V1__EventBatch *b = oip(
      "{\"model_name\":\"yolo\",\"outputs\":[{\"name\":\"other\",\"shape\":"
      "[1],\"datatype\":\"INT64\",\"data\":[3]},{\"name\":\"boxes\","
      "\"shape\":[1,2,6],\"datatype\":\"FP32\",\"data\":[0.1,0.1,0.2,0.2,0.9,"
      "3,0.5,0.5,0.1,0.1,0.2,0]}]}",
      &m, &rc);
  assert_int_equal(rc, 0);
  const Sluice__V1__Inference *in = b->events[0]->inference;
  assert_int_equal(in->n_detections, 1); /* 0.2 is below the threshold */
  assert_int_equal(in->detections[0]->label_id, 3);
  assert_string_equal(in->detections[0]->label, "owl");
  sluice__v1__event_batch__free_unpacked(b, NULL);
  m.task = SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_ANOMALY;
  m.output = NULL;
  b = oip("{\"model_name\":\"ae\",\"outputs\":[{\"name\":\"s\",\"shape\":[1],"
          "\"datatype\":\"FP32\",\"data\":[0.75]}]}",
          &m, &rc);
  assert_int_equal(rc, 0);
  assert_true(b->events[0]->inference->anomaly_score == 0.75);
  sluice__v1__event_batch__free_unpacked(b, NULL);
}

static void test_oip_errors(void **state) {
  (void)state;
  sl_oip_map_t m = {.model = "m", .labels = labels, .nlabels = 4};
  static const struct {
    const char *in, *msg;
  } cases[] = {
      {"{\"outputs\":[{\"shape\":[4],\"datatype\":\"BYTES\",\"data\":[\"a\","
       "\"b\",\"c\",\"d\"]}]}",
       "BYTES outputs"},
      {"{\"outputs\":[{\"shape\":[5],\"datatype\":\"FP32\",\"data\":[1,2,3,"
       "4]}]}",
       "4 elements, its shape says 5"},
      {"{\"outputs\":[{\"shape\":[3],\"datatype\":\"FP32\",\"data\":[1,2,3]}"
       "]}",
       "3 scores but the label map has 4"},
      {"{\"outputs\":[]}", "\"outputs\" must be a non-empty array"},
      {"{\"outputs\":[{\"shape\":[2],\"datatype\":\"FP32\",\"data\":[1,"
       "null]}]}",
       "element 1 is not a finite number"},
      {"{\"outputs\":[{\"shape\":[99999999],\"datatype\":\"FP32\",\"data\":[]}"
       "]}",
       "integers in [0, 65536]"},
      {"{\"outputs\":[{\"shape\":[1]}]} x", "invalid JSON"},
      {"[1]", "invalid JSON"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int rc;
    assert_null(oip(cases[i].in, &m, &rc));
    assert_int_equal(rc, SL_EPROTO);
    if (!strstr(err, cases[i].msg))
      fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].msg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_full),
      cmocka_unit_test(test_json_errors),
      cmocka_unit_test(test_oip_classify),
      cmocka_unit_test(test_oip_detect_anomaly),
      cmocka_unit_test(test_oip_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
