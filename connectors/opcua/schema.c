/*
 * connectors/opcua/schema.c: the sluice-opcua YAML config. Three tables
 * (top level, server, item) in the config engine's row format
 * (config/cfg.h) are the only place keys are named; they drive parsing,
 * defaults, validation and the reference (sluice-opcua --config-docs).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "config/cfg.h"
#include "connectors/common/conn_cfg.h"
#include "connectors/opcua/opcua.h"
#include "connectors/opcua/ua_codec.h"
#include "connectors/opcua/ua_conn.h"

static const char *const modes[] = {"change", "periodic", NULL};
static const char *const deadbands[] = {"none", "absolute", "percent", NULL};
static const char *const securities[] = {"none", NULL};

_Static_assert(offsetof(sl_opcua_server_t, nitems) ==
                       offsetof(sl_opcua_server_t, items) + sizeof(void *) &&
                   offsetof(sl_cfg_array_t, n) == sizeof(void *),
               "items/nitems is an sl_cfg_array_t");
_Static_assert(offsetof(sl_opcua_config_t, nservers) ==
                   offsetof(sl_opcua_config_t, servers) + sizeof(void *),
               "servers/nservers is an sl_cfg_array_t");

/* String limits shared with the other connectors (conn_cfg.h). */
#define max31 sl_conn_max31
#define max63 sl_conn_max63
#define max159 sl_conn_max159
#define max199 sl_conn_max199
#define max255 sl_conn_max255

static const char *check_node(const char *s) {
  sl_ua_nodeid_t id;
  char buf[1024];
  if (!*s)
    return NULL;
  return sl_ua_nodeid_parse(s, &id, buf, sizeof(buf))
             ? "is not a NodeId (ns=2;i=5, ns=1;s=Name, ns=3;g=GUID, "
               "ns=4;b=BASE64)"
             : NULL;
}

static const char *check_path(const char *s) {
  sl_ua_qname_t el[64];
  char buf[1024];
  if (!*s)
    return NULL;
  return sl_opcua_path_parse(s, el, 64, buf, sizeof(buf)) <= 0
             ? "is not a browse path (2:Plant/2:Temp, at most 64 elements)"
             : NULL;
}

static const char *check_url(const char *s) {
  char host[256];
  uint16_t port;
  return sl_ua_url_parse(s, host, sizeof(host), &port)
             ? "is not an opc.tcp://host:port URL"
             : NULL;
}

#define ROW(T, key, ty, f, d, fl, doc, ...)                                    \
  {                                                                            \
    .name = key, .type = SL_CFG_##ty, .off = offsetof(T, f), .def = d,         \
    .flags = fl, .desc = doc, __VA_ARGS__                                      \
  }
#define IT(...) ROW(sl_opcua_item_t, __VA_ARGS__)
#define SV(...) ROW(sl_opcua_server_t, __VA_ARGS__)
#define CF(...) ROW(sl_opcua_config_t, __VA_ARGS__)
#define REQUIRED SL_CFG_REQUIRED
#define LEGACY SL_CFG_LEGACY_DURATION

static const sl_cfg_opt_t item_opts[] = {
    IT("name", STRING, name, NULL, REQUIRED,
       "Source suffix: the reading's source is <server source>/name.",
       .check = max63),
    IT("node", STRING, node, "", 0,
       "NodeId: ns=2;i=5, ns=1;s=Line1.Temp, ns=3;g=GUID, ns=4;b=BASE64 "
       "(this or path).",
       .check = check_node),
    IT("path", STRING, path, "", 0,
       "Browse path from the Objects folder: 2:Plant/2:Line1/2:Temp "
       "(namespace index:browse name; '\\/' for a slash in a name).",
       .check = check_path),
    IT("mode", ENUM, mode, "change", 0,
       "change: a monitored item (the server reports changes); periodic: "
       "read every interval.",
       .enums = modes),
    IT("interval", DURATION, interval_ms, "1s", LEGACY,
       "Sampling interval (change) or read interval (periodic).", .min = "0",
       .max = "1d"),
    IT("queue_size", UINT, queue_size, "10", 0,
       "change: values the server queues per item between publishes.",
       .min = "1", .max = "100000"),
    IT("deadband", ENUM, deadband_type, "none", 0,
       "change: DataChangeFilter deadband (percent: of the variable's "
       "EURange; servers without it refuse the item).",
       .enums = deadbands),
    IT("deadband_value", DOUBLE, deadband, "0", 0,
       "The deadband: absolute units or percent.", .min = "0", .max = "1e300"),
    IT("unit", STRING, unit, "", 0, "Engineering unit of the reading.",
       .check = max31),
};

static void item_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix);

static const sl_cfg_section_t item_section = {
    .name = "items",
    .opts = item_opts,
    .n_opts = SL_ARRAY_SIZE(item_opts),
    .size = sizeof(sl_opcua_item_t),
    .finish = item_finish,
};

static const sl_cfg_opt_t server_opts[] = {
    SV("name", STRING, name, NULL, REQUIRED, "Server name, in logs.",
       .check = max63),
    SV("source", STRING, source, "", 0,
       "Source prefix of its readings and status events (\"\": name).",
       .check = max159),
    SV("url", STRING, url, NULL, REQUIRED,
       "Endpoint: opc.tcp://host:port[/path].", .check = check_url),
    SV("security", ENUM, security, "none", 0,
       "Security policy of the channel: none (Basic256Sha256 is not "
       "supported yet).",
       .enums = securities),
    SV("user", STRING, user, "", 0, "User name (\"\": anonymous).",
       .check = max255),
    SV("password", STRING, password, "", SL_CFG_SECRET, "Password of user.",
       .check = max255),
    SV("allow_plaintext_password", BOOL, allow_plaintext_password, "false", 0,
       "With security none, send the password unencrypted (anyone on the "
       "path can read it); refused otherwise."),
    SV("timeout", DURATION, timeout_ms, "5s", LEGACY,
       "Connect timeout and the time allowed for one request.", .min = "100ms",
       .max = "10m"),
    SV("publishing_interval", DURATION, publishing_interval_ms, "500ms", LEGACY,
       "Subscription publishing interval.", .min = "10ms", .max = "1h"),
    SV("keepalive_count", UINT, keepalive_count, "10", 0,
       "Publishing intervals without data before the server sends a "
       "keep-alive.",
       .min = "1", .max = "10000"),
    SV("lifetime_count", UINT, lifetime_count, "600", 0,
       "Publishing intervals without a Publish request before the server "
       "drops the subscription (at least 3 x keepalive_count).",
       .min = "3", .max = "1000000"),
    SV("max_notifications", UINT, max_notifications, "10000", 0,
       "Values per Publish response, at most (0: the server's limit).",
       .min = "0", .max = "1000000"),
    SV("publish_requests", UINT, publish_requests, "3", 0,
       "Publish requests kept outstanding.", .min = "1", .max = "20"),
    SV("items_per_request", UINT, items_per_request, "1000", 0,
       "Items per CreateMonitoredItems, TranslateBrowsePaths or Read call.",
       .min = "1", .max = "100000"),
    SV("session_timeout", DURATION, session_timeout_ms, "60s", LEGACY,
       "Requested session timeout (a session outliving a cut connection "
       "is transferred).",
       .min = "1s", .max = "1d"),
    SV("channel_lifetime", DURATION, channel_lifetime_ms, "10m", LEGACY,
       "Requested secure channel token lifetime; renewed at 75%.", .min = "1s",
       .max = "1d"),
    SV("backoff_min", DURATION, backoff_min_ms, "500ms", LEGACY,
       "First reconnect delay after the server was lost.", .min = "1ms",
       .max = "1h"),
    SV("backoff_max", DURATION, backoff_max_ms, "30s", LEGACY,
       "Longest reconnect delay (jittered exponential in between).",
       .min = "1ms", .max = "1h"),
    SV("items", SECTION_LIST, items, NULL, REQUIRED,
       "The server's variables (at least one).", .sub = &item_section),
};

static void server_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix);

static const sl_cfg_section_t server_section = {
    .name = "servers",
    .opts = server_opts,
    .n_opts = SL_ARRAY_SIZE(server_opts),
    .size = sizeof(sl_opcua_server_t),
    .finish = server_finish,
};

static const sl_cfg_opt_t top_opts[] = {
    SL_CONN_CLIENT_ROWS(sl_opcua_config_t, "sluice-opcua", "server"),
    CF("retry_buffer", UINT, retry_buffer, "100000", 0,
       "Per server: readings kept while the client library is full (no "
       "Publish request is sent meanwhile, so the server keeps the rest); "
       "the oldest is dropped (and counted) beyond it.",
       .min = "1", .max = "10000000"),
    SL_CONN_LOG_ROW(sl_opcua_config_t),
    CF("servers", SECTION_LIST, servers, NULL, REQUIRED,
       "The OPC UA servers (at least one).", .sub = &server_section),
};

static void top_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix);

static const sl_cfg_section_t top_section = {
    .name = "",
    .opts = top_opts,
    .n_opts = SL_ARRAY_SIZE(top_opts),
    .size = sizeof(sl_opcua_config_t),
    .finish = top_finish,
    .flags = SL_CFG_SEC_BARE_RANGE,
};

static void item_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  sl_opcua_item_t *it = obj;
  (void)prefix;
  if (!it->node[0] == !it->path[0])
    sl_cfg_errf_at(errs, NULL, "an item needs exactly one of node and path");
  if (!it->name[0] || it->name[0] == '/')
    sl_cfg_errf_at(errs, NULL, "name must be non-empty");
  if (it->mode == SL_OPCUA_PERIODIC && it->interval_ms < 10)
    sl_cfg_errf_at(errs, "interval", "periodic reads need at least 10ms");
  if (it->deadband_type != SL_OPCUA_DB_NONE && it->mode == SL_OPCUA_PERIODIC)
    sl_cfg_errf_at(errs, "deadband", "a deadband needs mode change");
  if (it->deadband_type == SL_OPCUA_DB_PERCENT && it->deadband > 100)
    sl_cfg_errf_at(errs, "deadband_value", "a percent deadband is 0..100");
}

static void server_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  sl_opcua_server_t *s = obj;
  (void)prefix;
  if (!s->source[0]) {
    free(s->source);
    if (!(s->source = strdup(s->name)))
      abort();
  }
  if (!s->nitems && sl_cfg_given(errs, "items"))
    sl_cfg_errf_at(errs, "items", "a server needs at least one item");
  if (s->backoff_min_ms > s->backoff_max_ms)
    sl_cfg_errf_at(errs, NULL, "backoff_min is above backoff_max");
  if (s->lifetime_count < 3 * s->keepalive_count)
    sl_cfg_errf_at(errs, "lifetime_count",
                   "must be at least 3 x keepalive_count");
  if (!s->user[0] && s->password[0])
    sl_cfg_errf_at(errs, "password", "a password needs a user");
  /* Secure by default: no cleartext password unless asked for. */
  if (s->user[0] && s->security == SL_OPCUA_SEC_NONE &&
      !s->allow_plaintext_password)
    sl_cfg_errf_at(errs, "user",
                   "with security none the password would travel "
                   "unencrypted: set allow_plaintext_password: true to "
                   "accept that");
  for (size_t i = 0; i < s->nitems; i++)
    for (size_t j = 0; j < i; j++)
      if (!strcmp(s->items[j].name, s->items[i].name))
        sl_cfg_errf_at(errs, "items", "item name \"%s\" used twice",
                       s->items[i].name);
}

static void top_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  sl_opcua_config_t *cfg = obj;
  (void)prefix;
  if (!cfg->nservers && sl_cfg_given(errs, "servers"))
    sl_cfg_errf_at(errs, "servers", "at least one server is needed");
  for (size_t i = 0; i < cfg->nservers; i++)
    for (size_t j = 0; j < i; j++)
      if (!strcmp(cfg->servers[j].name, cfg->servers[i].name))
        sl_cfg_errf_at(errs, "servers", "server name \"%s\" used twice",
                       cfg->servers[i].name);
}

void sl_opcua_config_free(sl_opcua_config_t *cfg) {
  if (!cfg)
    return;
  sl_cfg_obj_free(&top_section, cfg);
  free(cfg);
}

int sl_opcua_config_load(const char *path, sl_opcua_config_t **out,
                         char *errstr, size_t errlen) {
  void *obj = NULL;
  int rc = sl_cfg_load_file(&top_section, path, NULL, &obj, errstr, errlen);
  *out = obj;
  return rc;
}

int sl_opcua_config_docs(FILE *out) {
  fputs("Top level:\n\n", out);
  sl_cfg_doc_table(out, &top_section, "", NULL, false);
  fputs("\nEach item of `servers`:\n\n", out);
  sl_cfg_doc_table(out, &server_section, "servers[].", NULL, false);
  fputs("\nEach item of `servers[].items`:\n\n", out);
  sl_cfg_doc_table(out, &item_section, "servers[].items[].", NULL, false);
  return fflush(out) || ferror(out) ? -EIO : 0;
}

int sl_opcua_path_parse(const char *path, sl_ua_qname_t *elems, int max,
                        char *buf, size_t cap) {
  const char *p = path;
  size_t o = 0;
  int n = 0;
  if (*p == '/')
    p++;
  while (*p) {
    unsigned long ns = 0;
    const char *colon = p;
    while (*colon >= '0' && *colon <= '9')
      colon++;
    if (colon > p && *colon == ':') {
      ns = strtoul(p, NULL, 10);
      if (ns > 0xffff)
        return -EINVAL;
      p = colon + 1;
    }
    if (n == max)
      return -EINVAL;
    size_t start = o;
    while (*p && *p != '/') {
      if (*p == '\\' && (p[1] == '/' || p[1] == '\\'))
        p++;
      if (o + 1 >= cap)
        return -EINVAL;
      buf[o++] = *p++;
    }
    if (o == start)
      return -EINVAL; /* an empty name */
    elems[n].ns = (uint16_t)ns;
    elems[n].name.p = buf + start;
    elems[n].name.len = (int32_t)(o - start);
    buf[o++] = '\0';
    n++;
    if (*p == '/' && !*++p)
      return -EINVAL; /* a trailing slash */
  }
  return n ? n : -EINVAL;
}
