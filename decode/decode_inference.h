/*
 * Inference results -> sluice.v1.Event (body inference) for HTTP and MQTT
 * ingest (docs/EDGE-AI.md): the inference JSON mapping, and the Open
 * Inference Protocol v2 (KServe, OpenVINO Model Server, Triton) response
 * shape with a configured label map, so a model server's client can post
 * its responses as they are.
 *
 * Both parse with the scanner of decode_json.c (json_scan.c: jansson's
 * checks, duplicate keys refused) into a tree kept in the decoder, which is
 * reused from payload to payload: after the first payloads of a size no
 * allocation happens. Bad input gives SL_EPROTO with a message naming the
 * field, never a crash (fuzzed: tests/fuzz/fuzz_inference.c).
 */
#ifndef SL_DECODE_INFERENCE_H
#define SL_DECODE_INFERENCE_H

#include <stddef.h>
#include <stdint.h>

#include "decode/decode_json.h"

typedef struct sl_infer_dec sl_infer_dec_t;

/* Limits per inference event. */
#define SL_INFER_MAX_DETECTIONS 1024
#define SL_INFER_MAX_CLASSES 1024
#define SL_INFER_MAX_VALUES 4096
#define SL_INFER_MAX_TENSOR 65536 /* OIP output elements read */

/* Makes a decoder (one per thread). *out: returns owned; free with
 * sl_infer_dec_free(). Errors: -ENOMEM. */
int sl_infer_dec_new(sl_infer_dec_t **out);
void sl_infer_dec_free(sl_infer_dec_t *d);

/*
 * Decodes payload (len bytes, need not be terminated): one inference JSON
 * object, a JSON array of them, or JSON lines, appended to jb. Fields are
 * in docs/EDGE-AI.md; unknown keys are refused. source (borrowed, may be
 * NULL) is used for objects without "source". The event time is "time_ns",
 * else "capture_time_ns", else default_time_ns. At most max_events. On
 * error jb is reset and errstr names the object and the field.
 * Errors: SL_EPROTO, SL_ETOOBIG (more than max_events), -ENOMEM.
 */
int sl_infer_decode_json(sl_infer_dec_t *d, const char *payload, size_t len,
                         const char *source, int64_t default_time_ns,
                         uint32_t max_events, sl_json_batch_t *jb, char *errstr,
                         size_t errlen);

/* How an OIP v2 response becomes an inference event. */
typedef struct sl_oip_map {
  const char *model;         /* used when the response has no model_name */
  const char *model_version; /* idem for model_version */
  const char *model_digest;  /* NULL = none */
  const char *output;        /* output tensor name; NULL or "" = the first */
  int task;                  /* Sluice__V1__InferenceTask: classify (default),
                                detect, anomaly, regress */
  const char *const *labels; /* label map: labels[i] names class i */
  size_t nlabels;
  const char *label_map_digest; /* NULL = none */
  float score_threshold;        /* classes/detections below are left out */
  uint32_t top_k;               /* classify: classes kept; 0 = 5 */
  uint32_t role;                /* Sluice__V1__InferenceRole */
} sl_oip_map_t;

/*
 * Decodes one OIP v2 inference response (payload) into one inference event
 * of source (borrowed) at default_time_ns, appended to jb. The output
 * tensor (map->output, or the first) must be numeric (BOOL, UINT*, INT*,
 * FP16/32/64; data flat or nested, as many elements as its shape says):
 *   classify  the class scores, [N] or [1, N]: the top_k at or above the
 *             threshold, best first, named from the label map;
 *   detect    rows of 6, [N, 6] or [1, N, 6]: x, y, w, h (normalised),
 *             score, class id (the convention of docs/EDGE-AI.md);
 *   anomaly   the first element is the anomaly score;
 *   regress   every element is a value.
 * A response "id" made of digits is the sequence number. Nothing above the
 * threshold: status EMPTY. An "error" member: status ERROR with its text.
 * Errors: SL_EPROTO (errstr names the field), -ENOMEM.
 */
int sl_infer_decode_oip(sl_infer_dec_t *d, const char *payload, size_t len,
                        const sl_oip_map_t *map, const char *source,
                        int64_t default_time_ns, sl_json_batch_t *jb,
                        char *errstr, size_t errlen);

#endif /* SL_DECODE_INFERENCE_H */
