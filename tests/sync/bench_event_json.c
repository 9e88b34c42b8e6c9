/*
 * Instructions per event of the Kafka JSON value writer, for callgrind
 * (docs/BENCHMARKS.md "JSON decoding and JSON values"):
 *
 *   bench_event_json ROUNDS direct|jansson|compact
 *
 * writes 1,000 readings (source, double value, unit, quality, four
 * attributes, as the load generator sends) ROUNDS times with
 * sl_event_json_write() or with today's sl_event_json() + json_dumpb().
 * Two ROUNDS values under `valgrind --tool=callgrind`: the difference in
 * instructions over the difference in events is the cost per event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "schemas/event_json.h"

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 1;
  int direct = !(argc > 2 && !strcmp(argv[2], "jansson"));
  int compact = argc > 2 && !strcmp(argv[2], "compact");
  static Sluice__V1__Event ev[1000];
  static Sluice__V1__Reading rd[1000];
  static Sluice__V1__Attribute at[4];
  static Sluice__V1__Attribute *pat[4] = {&at[0], &at[1], &at[2], &at[3]};
  static char src[1000][48];
  static const char *const kv[4][2] = {{"site", "plant-7"},
                                       {"line", "3"},
                                       {"device", "plc-12"},
                                       {"proto", "modbus"}};
  sl_jbuf_t b = {0};
  char *jb = NULL;
  size_t jcap = 0, total = 0;

  for (int i = 0; i < 4; i++) {
    sluice__v1__attribute__init(&at[i]);
    at[i].key = (char *)kv[i][0];
    at[i].value = (char *)kv[i][1];
  }
  for (int i = 0; i < 1000; i++) {
    sluice__v1__event__init(&ev[i]);
    sluice__v1__reading__init(&rd[i]);
    snprintf(src[i], sizeof(src[i]), "plant/line%d/sensor%d/temp", i % 7, i);
    ev[i].source = src[i];
    ev[i].time_ns = 1795744800000000000LL + i * 1000000LL;
    ev[i].body_case = SLUICE__V1__EVENT__BODY_READING;
    ev[i].reading = &rd[i];
    rd[i].value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
    rd[i].double_value = 20.0 + (i % 500) * 0.037;
    rd[i].unit = "C";
    ev[i].n_attributes = 4;
    ev[i].attributes = pat;
  }
  for (int r = 0; r < rounds; r++)
    for (int i = 0; i < 1000; i++) {
      uint64_t off = (uint64_t)r * 1000 + (uint64_t)i;
      if (direct) {
        long n = compact ? sl_event_json_write_compact(&b, &ev[i],
                                                       1795744800000000000LL)
                         : sl_event_json_write(&b, "readings", off, &ev[i],
                                               1795744800000000000LL);
        if (n < 0)
          return 1;
        total += (size_t)n;
      } else {
        json_t *o =
            sl_event_json("readings", off, &ev[i], 1795744800000000000LL);
        size_t n = json_dumpb(o, NULL, 0, JSON_COMPACT);
        if (n > jcap) {
          jb = realloc(jb, n * 2);
          jcap = n * 2;
        }
        n = json_dumpb(o, jb, jcap, JSON_COMPACT);
        json_decref(o);
        total += n;
      }
    }
  printf("%zu bytes\n", total);
  free(b.p);
  free(jb);
  return 0;
}
