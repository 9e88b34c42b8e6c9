/*
 * connectors/modbus/config.c: the sluice-modbus YAML config. Three tables
 * (top level, device, point) are the only place keys are named; they drive
 * parsing, defaults and validation. Errors name path:line:column and key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "connectors/common/conn.h"
#include "connectors/modbus/modbus.h"

static const char *const tables[] = {"holding", "input", "coil", "discrete",
                                     NULL};
static const char *const types[] = {"int16",   "uint16",  "int32", "uint32",
                                    "float32", "float64", "bool",  NULL};
static const char *const orders[] = {"big", "little", NULL};
static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

#define PT(f) offsetof(sl_modbus_point_t, f)
#define DV(f) offsetof(sl_modbus_device_t, f)
#define CF(f) offsetof(sl_modbus_config_t, f)
#define SZ(T, f) sizeof(((T *)0)->f)

static const sl_cy_opt_t point_tab[] = {
    {"name", SL_CY_STR, PT(name), SZ(sl_modbus_point_t, name), 0, 0, NULL, NULL,
     NULL, "source suffix: the reading's source is <device source>/name"},
    {"table", SL_CY_ENUM, PT(table), 0, 0, 0, tables, "holding", NULL,
     "holding, input, coil or discrete"},
    {"address", SL_CY_U32, PT(address), 0, 0, 65535, NULL, NULL, NULL,
     "first register or bit, 0-based"},
    {"type", SL_CY_ENUM, PT(type), 0, 0, 0, types, "int16", NULL,
     "int16, uint16, int32, uint32, float32, float64 (registers) or bool "
     "(coils, discrete inputs; default there). Required for registers"},
    {"word_order", SL_CY_ENUM, PT(word_order), 0, 0, 0, orders, "big", NULL,
     "multi-register values: big = most significant register first"},
    {"byte_order", SL_CY_ENUM, PT(byte_order), 0, 0, 0, orders, "big", NULL,
     "within a register: big = high byte first (the Modbus standard)"},
    {"scale", SL_CY_DOUBLE, PT(scale), 0, -1e300, 1e300, NULL, "1", NULL,
     "value = raw * scale + offset"},
    {"offset", SL_CY_DOUBLE, PT(offset), 0, -1e300, 1e300, NULL, "0", NULL,
     "added after scaling"},
    {"unit", SL_CY_STR, PT(unit), SZ(sl_modbus_point_t, unit), 0, 0, NULL, "",
     NULL, "engineering unit of the reading"},
    {"interval", SL_CY_DUR, PT(interval_ms), 0, 10, 86400000, NULL, "1s", NULL,
     "poll interval"},
    {"deadband", SL_CY_DOUBLE, PT(deadband), 0, 0, 1e300, NULL, "0", NULL,
     "publish only changes of at least this much (scaled units); 0: every "
     "poll. Quality changes always pass"},
    {"heartbeat", SL_CY_DUR, PT(heartbeat_ms), 0, 0, 86400000, NULL, "0", NULL,
     "with a deadband: publish at least this often anyway (0: never)"},
};

static int points_cb(sl_cy_t *cy, yaml_node_t *node, const char *key,
                     void *obj);

static const sl_cy_opt_t device_tab[] = {
    {"name", SL_CY_STR, DV(name), SZ(sl_modbus_device_t, name), 0, 0, NULL,
     NULL, NULL, "device name, in logs"},
    {"source", SL_CY_STR, DV(source), SZ(sl_modbus_device_t, source), 0, 0,
     NULL, "", NULL,
     "source prefix of its readings and status events (default: name)"},
    {"host", SL_CY_STR, DV(host), SZ(sl_modbus_device_t, host), 0, 0, NULL,
     NULL, NULL, "IP address or host name"},
    {"port", SL_CY_U32, DV(port), 0, 1, 65535, NULL, "502", NULL, "TCP port"},
    {"unit_id", SL_CY_U32, DV(unit_id), 0, 0, 255, NULL, "1", NULL,
     "Modbus unit (slave) id"},
    {"connect_timeout", SL_CY_DUR, DV(connect_timeout_ms), 0, 1, 600000, NULL,
     "2s", NULL, "TCP connect timeout"},
    {"response_timeout", SL_CY_DUR, DV(response_timeout_ms), 0, 1, 600000, NULL,
     "1s", NULL, "time allowed for one response"},
    {"backoff_min", SL_CY_DUR, DV(backoff_min_ms), 0, 1, 3600000, NULL, "500ms",
     NULL, "first retry delay after the device stopped answering"},
    {"backoff_max", SL_CY_DUR, DV(backoff_max_ms), 0, 1, 3600000, NULL, "30s",
     NULL, "longest retry delay (jittered exponential in between)"},
    {"max_gap", SL_CY_U32, DV(max_gap), 0, 0, 100, NULL, "0", NULL,
     "unused registers one request may read across to merge two ranges"},
    {"points", SL_CY_NODE, 0, 0, 0, 0, NULL, NULL, points_cb,
     "list of points (below)"},
};

static int devices_cb(sl_cy_t *cy, yaml_node_t *node, const char *key,
                      void *obj);

static const sl_cy_opt_t top_tab[] = {
    {"address", SL_CY_STR, CF(address), SZ(sl_modbus_config_t, address), 0, 0,
     NULL, NULL, NULL, "the daemon's native listener: host:port or unix:/path"},
    {"token", SL_CY_STR, CF(token), SZ(sl_modbus_config_t, token), 0, 0, NULL,
     "", NULL, "listener token, if it requires one"},
    {"client_id", SL_CY_STR, CF(client_id), SZ(sl_modbus_config_t, client_id),
     0, 0, NULL, "sluice-modbus", NULL, "names this connector in the daemon"},
    {"stream", SL_CY_STR, CF(stream), SZ(sl_modbus_config_t, stream), 0, 0,
     NULL, "", NULL, "stream for readings (\"\": the listener's default)"},
    {"status_stream", SL_CY_STR, CF(status_stream),
     SZ(sl_modbus_config_t, status_stream), 0, 0, NULL, "", NULL,
     "stream for device status events (\"\": same as stream)"},
    {"max_buffered", SL_CY_U32, CF(max_buffered), 0, 1, 10000000, NULL,
     "100000", NULL, "events published but not yet acked, at most"},
    {"retry_buffer", SL_CY_U32, CF(retry_buffer), 0, 1, 10000000, NULL, "10000",
     NULL,
     "per device: readings kept while the client library is full; the "
     "oldest is dropped (and counted) beyond it"},
    {"log_level", SL_CY_ENUM, CF(log_level), 0, 0, 0, levels, "info", NULL,
     "error, warn, info or debug"},
    {"devices", SL_CY_NODE, 0, 0, 0, 0, NULL, NULL, devices_cb,
     "list of devices (below)"},
};

static int check_point(sl_cy_t *cy, yaml_node_t *node, const char *key,
                       sl_modbus_point_t *pt, int type_given) {
  int bits = pt->table == SL_MODBUS_COIL || pt->table == SL_MODBUS_DISCRETE;
  if (bits && !type_given)
    pt->type = SL_MODBUS_BOOL;
  if (bits != (pt->type == SL_MODBUS_BOOL))
    return sl_cy_err(cy, node, key, "type %s does not fit table %s",
                     types[pt->type], tables[pt->table]);
  if (pt->address + sl_modbus_type_width(pt->type) > 65536)
    return sl_cy_err(cy, node, key, "address %u + width runs past 65535",
                     pt->address);
  if (!pt->name[0] || strchr(pt->name, '/') == pt->name)
    return sl_cy_err(cy, node, key, "name must be non-empty");
  return 0;
}

static int points_cb(sl_cy_t *cy, yaml_node_t *node, const char *key,
                     void *obj) {
  sl_modbus_device_t *dev = obj;
  char k[300];
  size_t n;

  if (!node || node->type != YAML_SEQUENCE_NODE)
    return sl_cy_err(cy, node, key, "expected a list of points");
  n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
  if (!n)
    return sl_cy_err(cy, node, key, "a device needs at least one point");
  if (!(dev->points = calloc(n, sizeof(*dev->points))))
    return sl_cy_err(cy, node, key, "out of memory");
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *it = sl_cy_node(cy, node->data.sequence.items.start[i]);
    sl_modbus_point_t *pt = &dev->points[i];
    snprintf(k, sizeof(k), "%s[%zu]", key, i);
    if (sl_cy_map(cy, it, k, point_tab, SL_ARRAY_SIZE(point_tab), pt))
      return SL_ECONFIG;
    dev->npoints = i + 1;
    /* Whether "type" was written: coils and discrete inputs default to
     * bool, registers must say what they hold. */
    int given = 0;
    for (yaml_node_pair_t *p = it->data.mapping.pairs.start;
         p < it->data.mapping.pairs.top; p++) {
      yaml_node_t *kn = sl_cy_node(cy, p->key);
      if (kn && !strcmp((const char *)kn->data.scalar.value, "type"))
        given = 1;
    }
    if (!given && pt->table != SL_MODBUS_COIL &&
        pt->table != SL_MODBUS_DISCRETE)
      return sl_cy_err(cy, it, k, "type is required for registers");
    if (check_point(cy, it, k, pt, given))
      return SL_ECONFIG;
    for (size_t j = 0; j < i; j++)
      if (!strcmp(dev->points[j].name, pt->name))
        return sl_cy_err(cy, it, k, "point name \"%s\" used twice", pt->name);
  }
  return 0;
}

static int devices_cb(sl_cy_t *cy, yaml_node_t *node, const char *key,
                      void *obj) {
  sl_modbus_config_t *cfg = obj;
  char k[300];
  size_t n;

  if (!node || node->type != YAML_SEQUENCE_NODE)
    return sl_cy_err(cy, node, key, "expected a list of devices");
  n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
  if (!n)
    return sl_cy_err(cy, node, key, "at least one device is needed");
  if (!(cfg->devices = calloc(n, sizeof(*cfg->devices))))
    return sl_cy_err(cy, node, key, "out of memory");
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *it = sl_cy_node(cy, node->data.sequence.items.start[i]);
    sl_modbus_device_t *dev = &cfg->devices[i];
    snprintf(k, sizeof(k), "%s[%zu]", key, i);
    cfg->ndevices = i + 1; /* so a failure frees what was parsed */
    if (sl_cy_map(cy, it, k, device_tab, SL_ARRAY_SIZE(device_tab), dev))
      return SL_ECONFIG;
    if (!dev->source[0])
      memcpy(dev->source, dev->name, sizeof(dev->name));
    if (dev->backoff_min_ms > dev->backoff_max_ms)
      return sl_cy_err(cy, it, k, "backoff_min is above backoff_max");
    for (size_t j = 0; j < i; j++)
      if (!strcmp(cfg->devices[j].name, dev->name))
        return sl_cy_err(cy, it, k, "device name \"%s\" used twice", dev->name);
  }
  return 0;
}

void sl_modbus_config_free(sl_modbus_config_t *cfg) {
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->ndevices; i++)
    free(cfg->devices[i].points);
  free(cfg->devices);
  free(cfg);
}

int sl_modbus_config_load(const char *path, sl_modbus_config_t **out,
                          char *errstr, size_t errlen) {
  sl_modbus_config_t *cfg = NULL;
  sl_cy_t *cy = NULL;
  int rc;

  if ((rc = sl_cy_open(&cy, path, errstr, errlen)))
    return rc;
  if (!(cfg = calloc(1, sizeof(*cfg)))) {
    rc = -ENOMEM;
    goto fail;
  }
  if (!sl_cy_root(cy)) {
    rc = sl_cy_err(cy, NULL, NULL, "empty config");
    goto fail;
  }
  if ((rc = sl_cy_map(cy, sl_cy_root(cy), "", top_tab, SL_ARRAY_SIZE(top_tab),
                      cfg)))
    goto fail;
  sl_cy_close(cy);
  *out = cfg;
  return 0;
fail:
  sl_cy_close(cy);
  sl_modbus_config_free(cfg);
  return rc;
}
