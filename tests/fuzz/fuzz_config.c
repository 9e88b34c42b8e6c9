/*
 * libFuzzer target for the configuration loader: any bytes must yield either
 * a config (then dumped, reloaded from the dump and diffed) or an error
 * string, never a crash, leak or unbounded work.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char err[4096];
  sl_config_t *cfg = NULL, *back = NULL;
  if (sl_config_load_string("fuzz.yaml", (const char *)data, size, NULL, &cfg,
                            err, sizeof(err))) {
    if (cfg || strlen(err) >= sizeof(err))
      abort();
    return 0;
  }
  /* The effective config must load back to the same values. */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    abort();
  sl_config_dump(cfg, f);
  fclose(f);
  if (sl_config_load_string("dump", buf, len, NULL, &back, err, sizeof(err))) {
    fprintf(stderr, "dump does not load: %s\n%s\n", err, buf);
    abort();
  }
  sl_config_diff_t d;
  sl_config_diff(cfg, back, &d);
  /* A secret prints as "<redacted>" (the token; the values of
   * kafka.properties items whose key is not on the allow-list of
   * config/schema/redact.c); everything else must round-trip. */
  if (d.verdict != SL_CONFIG_SAME && d.n_changed == 0) {
    fprintf(stderr, "dump round-trip differs\n%s\n", buf);
    abort();
  }
  for (size_t i = 0; d.verdict != SL_CONFIG_SAME && i < d.n_changed; i++) {
    const char *k = d.changed[i].key;
    if (!strcmp(k, "listeners.native.token") ||
        (!strcmp(k, "kafka.properties") && strstr(buf, "=<redacted>")))
      continue;
    fprintf(stderr, "dump round-trip changed %s\n%s\n", k, buf);
    abort();
  }
  free(buf);
  sl_config_free(back);
  sl_config_free(cfg);
  return 0;
}
