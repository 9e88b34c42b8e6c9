/*
 * config/ internals of the daemon's schema library (sl_config): its tables
 * in the engine's row format (config/cfg.h). Only the sl_config sources,
 * daemon/cmd/cmd_config.c and the config tests include this header.
 */
#ifndef SL_CONFIG_INT_H
#define SL_CONFIG_INT_H

#include "config/cfg.h"
#include "config/config.h"

/* The daemon's root table (config/schema/options.c). */
extern const sl_cfg_section_t sl_config__root;

/* The pipelines list section (config/schema/pipelines.c). */
extern const sl_cfg_section_t sl_config__pipeline_section;

/* The OIP v2 profiles list section (config/schema/inference.c). */
extern const sl_cfg_section_t sl_config__oip_section;

/* The listeners' clients list section and the SHA-256 hex check
 * (config/schema/clients.c). */
extern const sl_cfg_section_t sl_config__client_section;
const char *sl_config__check_sha256(const char *s);

/* Binds a row to field f of library options struct T (sl_config_bind()),
 * e.g. BIND(STORE, sl_store_opts_t, sync_interval_ms). */
#define SL_CFG_BIND(lib_, T, f)                                                \
  .lib = SL_CONFIG_LIB_##lib_, .lib_off = offsetof(T, f),                      \
  .lib_size = sizeof(((T *)0)->f)

/* The daemon's environment prefix: SLUICE_<KEY>. */
#define SL_CONFIG_ENV_PREFIX "SLUICE_"

/* True when the kafka.properties item "key=value" may be printed whole: its
 * key is on the allow-list of librdkafka properties that never hold a
 * secret (config/schema/redact.c). False for items without "=". */
bool config__kv_printable(const char *item);

/* Whether a kafka.properties key names a file (SL_CFG_KV_*): keys ending
 * in ".location" and the Kerberos keytab; key material is a secret file
 * (config/schema/redact.c). */
int config__kv_file(const char *key);

/* Environment variable for a root key: "store.budget_bytes" ->
 * "SLUICE_STORE_BUDGET_BYTES". */
static inline void config__env_name(const char *key, char *buf, size_t len) {
  sl_cfg_env_name(SL_CONFIG_ENV_PREFIX, key, buf, len);
}

#endif /* SL_CONFIG_INT_H */
