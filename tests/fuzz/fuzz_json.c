/* libFuzzer target: HTTP / MQTT JSON event bodies (broker/decode_json.c). */
#include <stddef.h>
#include <stdint.h>

#include "broker/decode_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sl_json_batch_t jb;
  char err[256];
  sl_json_batch_init(&jb);
  sl_json_decode_body((const char *)data, size, 0, 1000, &jb, err, sizeof(err));
  sl_json_batch_close(&jb);
  return 0;
}
