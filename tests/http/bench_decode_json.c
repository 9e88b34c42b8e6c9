/*
 * Instructions per event of the HTTP JSON body decoder
 * (sl_json_decode_body), for callgrind (docs/BENCHMARKS.md):
 *
 *   bench_decode_json ROUNDS [lines|array]
 *
 * decodes a fixed body of 1,000 readings ROUNDS times. Run it under
 * `valgrind --tool=callgrind` with two ROUNDS values: the difference in
 * instructions divided by the difference in events is the cost per event,
 * without start-up. Not a test (no pass/fail).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode_json.h"

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 1;
  int array = argc > 2 && !strcmp(argv[2], "array");
  size_t cap = 1000 * 160 + 16, len = 0;
  char *body = malloc(cap), err[256];
  sl_json_batch_t jb;
  if (!body)
    return 1;
  if (array)
    body[len++] = '[';
  for (int i = 0; i < 1000; i++)
    len += (size_t)snprintf(
        body + len, cap - len,
        "%s{\"source\":\"plant/line%d/temp\",\"value\":%d.%d,\"unit\":\"C\","
        "\"quality\":\"good\",\"time_ns\":17957448%08d000}%s",
        array && i ? "," : "", i % 7, 20 + i % 50, i % 10, i,
        array ? "" : "\n");
  if (array)
    body[len++] = ']';
  sl_json_batch_init(&jb);
  for (int r = 0; r < rounds; r++) {
    if (sl_json_decode_body(body, len, 0, 1000, &jb, err, sizeof(err)) < 0) {
      fprintf(stderr, "decode: %s\n", err);
      return 1;
    }
  }
  printf("%u events, %zu bytes per body\n", jb.count, len);
  sl_json_batch_close(&jb);
  free(body);
  return 0;
}
