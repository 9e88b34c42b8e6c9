/* The tree decoder sl_json_decode_mapped() replaced (json_mapped_ref.c). */
#ifndef SL_TESTS_JSON_MAPPED_REF_H
#define SL_TESTS_JSON_MAPPED_REF_H

#include "decode/decode_json.h"

/* Same contract as sl_json_decode_mapped(). */
int json_mapped_ref(const char *payload, size_t len, const sl_json_map_t *map,
                    const char *source, const sl_json_attr_t *attrs,
                    size_t nattrs, int64_t default_time_ns, uint32_t max_events,
                    sl_json_batch_t *jb, const char **reason, char *errstr,
                    size_t errlen);

/* Decodes data with both decoders under several maps and limits. Returns
 * 0 when they agree on every result, reason and event byte, else -1 with
 * the difference in why. */
int json_mapped_compare(const uint8_t *data, size_t size, char *why,
                        size_t whylen);

#endif
