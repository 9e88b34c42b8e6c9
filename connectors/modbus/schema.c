/*
 * connectors/modbus/schema.c: the sluice-modbus YAML config. Three tables
 * (top level, device, point) in the config engine's row format
 * (config/cfg.h) are the only place keys are named; they drive parsing,
 * defaults, validation and the reference (sluice-modbus --config-docs).
 * Every error is reported at once, each naming path:line:column and key.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "config/cfg.h"
#include "connectors/common/conn_cfg.h"
#include "connectors/modbus/modbus.h"

static const char *const tables[] = {"holding", "input", "coil", "discrete",
                                     NULL};
static const char *const types[] = {"int16",   "uint16",  "int32", "uint32",
                                    "float32", "float64", "bool",  NULL};
static const char *const orders[] = {"big", "little", NULL};

/* The engine stores a list section as {elements, count}: the structs keep
 * that layout so the poller reads dev->points[i] and dev->npoints. */
_Static_assert(offsetof(sl_modbus_device_t, npoints) ==
                       offsetof(sl_modbus_device_t, points) + sizeof(void *) &&
                   offsetof(sl_cfg_array_t, n) == sizeof(void *),
               "points/npoints is an sl_cfg_array_t");
_Static_assert(offsetof(sl_modbus_config_t, ndevices) ==
                   offsetof(sl_modbus_config_t, devices) + sizeof(void *),
               "devices/ndevices is an sl_cfg_array_t");

/* The connector's historic string limits (its buffers used to be fixed;
 * the event source "<device source>/<point name>" stays bounded):
 * connectors/common/conn_cfg.h. */
#define max31 sl_conn_max31
#define max63 sl_conn_max63
#define max159 sl_conn_max159
#define max199 sl_conn_max199
#define max255 sl_conn_max255

#define ROW(T, key, ty, f, d, fl, doc, ...)                                    \
  {                                                                            \
    .name = key, .type = SL_CFG_##ty, .off = offsetof(T, f), .def = d,         \
    .flags = fl, .desc = doc, __VA_ARGS__                                      \
  }
#define PT(...) ROW(sl_modbus_point_t, __VA_ARGS__)
#define DV(...) ROW(sl_modbus_device_t, __VA_ARGS__)
#define CF(...) ROW(sl_modbus_config_t, __VA_ARGS__)
#define REQUIRED SL_CFG_REQUIRED
#define LEGACY SL_CFG_LEGACY_DURATION

static const sl_cfg_opt_t point_opts[] = {
    PT("name", STRING, name, NULL, REQUIRED,
       "Source suffix: the reading's source is <device source>/name.",
       .check = max63),
    PT("table", ENUM, table, "holding", 0, "Register table.", .enums = tables),
    PT("address", UINT, address, NULL, REQUIRED,
       "First register or bit, 0-based.", .min = "0", .max = "65535"),
    PT("type", ENUM, type, "int16", 0,
       "Value type: bool for coils and discrete inputs (their default), "
       "another type for registers (required there).",
       .enums = types),
    PT("word_order", ENUM, word_order, "big", 0,
       "Multi-register values: big = most significant register first.",
       .enums = orders),
    PT("byte_order", ENUM, byte_order, "big", 0,
       "Within a register: big = high byte first (the Modbus standard).",
       .enums = orders),
    PT("scale", DOUBLE, scale, "1", 0, "value = raw * scale + offset.",
       .min = "-1e300", .max = "1e300"),
    PT("offset", DOUBLE, offset, "0", 0, "Added after scaling.",
       .min = "-1e300", .max = "1e300"),
    PT("unit", STRING, unit, "", 0, "Engineering unit of the reading.",
       .check = max31),
    PT("interval", DURATION, interval_ms, "1s", LEGACY, "Poll interval.",
       .min = "10ms", .max = "1d"),
    PT("deadband", DOUBLE, deadband, "0", 0,
       "Publish only changes of at least this much (scaled units); 0: every "
       "poll. Quality changes always pass.",
       .min = "0", .max = "1e300"),
    PT("heartbeat", DURATION, heartbeat_ms, "0", LEGACY,
       "With a deadband: publish at least this often anyway (0: never).",
       .min = "0", .max = "1d"),
};

static void point_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix);

static const sl_cfg_section_t point_section = {
    .name = "points",
    .opts = point_opts,
    .n_opts = SL_ARRAY_SIZE(point_opts),
    .size = sizeof(sl_modbus_point_t),
    .finish = point_finish,
};

static const sl_cfg_opt_t device_opts[] = {
    DV("name", STRING, name, NULL, REQUIRED, "Device name, in logs.",
       .check = max63),
    DV("source", STRING, source, "", 0,
       "Source prefix of its readings and status events (\"\": name).",
       .check = max159),
    DV("host", STRING, host, NULL, REQUIRED, "IP address or host name.",
       .check = max255),
    DV("port", UINT, port, "502", 0, "TCP port.", .min = "1", .max = "65535"),
    DV("unit_id", UINT, unit_id, "1", 0, "Modbus unit (slave) id.", .min = "0",
       .max = "255"),
    DV("connect_timeout", DURATION, connect_timeout_ms, "2s", LEGACY,
       "TCP connect timeout.", .min = "1ms", .max = "10m"),
    DV("response_timeout", DURATION, response_timeout_ms, "1s", LEGACY,
       "Time allowed for one response.", .min = "1ms", .max = "10m"),
    DV("backoff_min", DURATION, backoff_min_ms, "500ms", LEGACY,
       "First retry delay after the device stopped answering.", .min = "1ms",
       .max = "1h"),
    DV("backoff_max", DURATION, backoff_max_ms, "30s", LEGACY,
       "Longest retry delay (jittered exponential in between).", .min = "1ms",
       .max = "1h"),
    DV("max_gap", UINT, max_gap, "0", 0,
       "Unused registers one request may read across to merge two ranges.",
       .min = "0", .max = "100"),
    DV("points", SECTION_LIST, points, NULL, REQUIRED,
       "The device's points (at least one).", .sub = &point_section),
};

static void device_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix);

static const sl_cfg_section_t device_section = {
    .name = "devices",
    .opts = device_opts,
    .n_opts = SL_ARRAY_SIZE(device_opts),
    .size = sizeof(sl_modbus_device_t),
    .finish = device_finish,
};

static const sl_cfg_opt_t top_opts[] = {
    SL_CONN_CLIENT_ROWS(sl_modbus_config_t, "sluice-modbus", "device"),
    CF("retry_buffer", UINT, retry_buffer, "10000", 0,
       "Per device: readings kept while the client library is full; the "
       "oldest is dropped (and counted) beyond it.",
       .min = "1", .max = "10000000"),
    SL_CONN_LOG_ROW(sl_modbus_config_t),
    CF("devices", SECTION_LIST, devices, NULL, REQUIRED,
       "The devices (at least one).", .sub = &device_section),
};

static void top_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix);

static const sl_cfg_section_t top_section = {
    .name = "",
    .opts = top_opts,
    .n_opts = SL_ARRAY_SIZE(top_opts),
    .size = sizeof(sl_modbus_config_t),
    .finish = top_finish,
    .flags = SL_CFG_SEC_BARE_RANGE,
};

static void point_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  sl_modbus_point_t *pt = obj;
  bool bits = pt->table == SL_MODBUS_COIL || pt->table == SL_MODBUS_DISCRETE;
  bool given = sl_cfg_given(errs, "type");
  (void)prefix;
  /* Coils and discrete inputs default to bool, registers must say what
   * they hold. */
  if (!given && !bits) {
    sl_cfg_errf_at(errs, NULL, "type is required for registers");
    return;
  }
  if (bits && !given)
    pt->type = SL_MODBUS_BOOL;
  if (bits != (pt->type == SL_MODBUS_BOOL)) {
    sl_cfg_errf_at(errs, NULL, "type %s does not fit table %s", types[pt->type],
                   tables[pt->table]);
    return;
  }
  if (pt->address + sl_modbus_type_width(pt->type) > 65536)
    sl_cfg_errf_at(errs, NULL, "address %" PRIu64 " + width runs past 65535",
                   pt->address);
  else if (!pt->name[0] || pt->name[0] == '/')
    sl_cfg_errf_at(errs, NULL, "name must be non-empty");
}

static void device_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  sl_modbus_device_t *dev = obj;
  (void)prefix;
  if (!dev->source[0]) {
    free(dev->source);
    if (!(dev->source = strdup(dev->name)))
      abort();
  }
  if (!dev->npoints && sl_cfg_given(errs, "points"))
    sl_cfg_errf_at(errs, "points", "a device needs at least one point");
  if (dev->backoff_min_ms > dev->backoff_max_ms)
    sl_cfg_errf_at(errs, NULL, "backoff_min is above backoff_max");
  for (size_t i = 0; i < dev->npoints; i++)
    for (size_t j = 0; j < i; j++)
      if (!strcmp(dev->points[j].name, dev->points[i].name))
        sl_cfg_errf_at(errs, "points", "point name \"%s\" used twice",
                       dev->points[i].name);
}

static void top_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  sl_modbus_config_t *cfg = obj;
  (void)prefix;
  if (!cfg->ndevices && sl_cfg_given(errs, "devices"))
    sl_cfg_errf_at(errs, "devices", "at least one device is needed");
  for (size_t i = 0; i < cfg->ndevices; i++)
    for (size_t j = 0; j < i; j++)
      if (!strcmp(cfg->devices[j].name, cfg->devices[i].name))
        sl_cfg_errf_at(errs, "devices", "device name \"%s\" used twice",
                       cfg->devices[i].name);
}

void sl_modbus_config_free(sl_modbus_config_t *cfg) {
  if (!cfg)
    return;
  sl_cfg_obj_free(&top_section, cfg);
  free(cfg);
}

int sl_modbus_config_load(const char *path, sl_modbus_config_t **out,
                          char *errstr, size_t errlen) {
  void *obj = NULL;
  int rc = sl_cfg_load_file(&top_section, path, NULL, &obj, errstr, errlen);
  *out = obj;
  return rc;
}

int sl_modbus_config_docs(FILE *out) {
  fputs("Top level:\n\n", out);
  sl_cfg_doc_table(out, &top_section, "", NULL, false);
  fputs("\nEach item of `devices`:\n\n", out);
  sl_cfg_doc_table(out, &device_section, "devices[].", NULL, false);
  fputs("\nEach item of `devices[].points`:\n\n", out);
  sl_cfg_doc_table(out, &point_section, "devices[].points[].", NULL, false);
  return fflush(out) || ferror(out) ? -EIO : 0;
}
