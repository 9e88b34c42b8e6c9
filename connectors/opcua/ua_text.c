/*
 * connectors/opcua/ua_text.c: the text side of the codec (ua_codec.h):
 * NodeId text forms (i=, s=, g=, b=), status code and type names.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/opcua/ua_codec.h"

/* ---- status codes ------------------------------------------------------- */

static const struct {
  uint32_t code;
  const char *name;
} statuses[] = {
    {0x00000000u, "Good"},
    {0x80010000u, "BadUnexpectedError"},
    {0x80020000u, "BadInternalError"},
    {0x80030000u, "BadOutOfMemory"},
    {0x80040000u, "BadResourceUnavailable"},
    {0x80050000u, "BadCommunicationError"},
    {0x80060000u, "BadEncodingError"},
    {0x80070000u, "BadDecodingError"},
    {0x80080000u, "BadEncodingLimitsExceeded"},
    {0x800A0000u, "BadTimeout"},
    {0x800B0000u, "BadServiceUnsupported"},
    {0x800C0000u, "BadShutdown"},
    {0x800D0000u, "BadServerNotConnected"},
    {0x800E0000u, "BadServerHalted"},
    {0x800F0000u, "BadNothingToDo"},
    {0x80100000u, "BadTooManyOperations"},
    {0x80120000u, "BadCertificateInvalid"},
    {0x80130000u, "BadSecurityChecksFailed"},
    {0x801F0000u, "BadUserAccessDenied"},
    {0x80200000u, "BadIdentityTokenInvalid"},
    {0x80210000u, "BadIdentityTokenRejected"},
    {0x80220000u, "BadSecureChannelIdInvalid"},
    {0x80230000u, "BadInvalidTimestamp"},
    {0x80240000u, "BadNonceInvalid"},
    {0x80250000u, "BadSessionIdInvalid"},
    {0x80260000u, "BadSessionClosed"},
    {0x80270000u, "BadSessionNotActivated"},
    {0x80280000u, "BadSubscriptionIdInvalid"},
    {0x802A0000u, "BadRequestHeaderInvalid"},
    {0x802B0000u, "BadTimestampsToReturnInvalid"},
    {0x80320000u, "BadWaitingForInitialData"},
    {0x80330000u, "BadNodeIdInvalid"},
    {0x80340000u, "BadNodeIdUnknown"},
    {0x80350000u, "BadAttributeIdInvalid"},
    {0x80360000u, "BadIndexRangeInvalid"},
    {0x80370000u, "BadIndexRangeNoData"},
    {0x80380000u, "BadDataEncodingInvalid"},
    {0x80390000u, "BadDataEncodingUnsupported"},
    {0x803A0000u, "BadNotReadable"},
    {0x803B0000u, "BadNotWritable"},
    {0x803C0000u, "BadOutOfRange"},
    {0x803D0000u, "BadNotSupported"},
    {0x803E0000u, "BadNotFound"},
    {0x803F0000u, "BadObjectDeleted"},
    {0x80400000u, "BadNotImplemented"},
    {0x80410000u, "BadMonitoringModeInvalid"},
    {0x80420000u, "BadMonitoredItemIdInvalid"},
    {0x80430000u, "BadMonitoredItemFilterInvalid"},
    {0x80440000u, "BadMonitoredItemFilterUnsupported"},
    {0x80450000u, "BadFilterNotAllowed"},
    {0x804A0000u, "BadContinuationPointInvalid"},
    {0x806B0000u, "BadViewIdUnknown"},
    {0x80740000u, "BadTypeMismatch"},
    {0x80600000u, "BadBrowseNameInvalid"},
    {0x804B0000u, "BadNoContinuationPoints"},
    {0x806F0000u, "BadNoMatch"},
    {0x80630000u, "BadTypeDefinitionInvalid"},
    {0x80780000u, "BadTooManyPublishRequests"},
    {0x80790000u, "BadNoSubscription"},
    {0x807A0000u, "BadSequenceNumberUnknown"},
    {0x807B0000u, "BadMessageNotAvailable"},
    {0x807D0000u, "BadTcpServerTooBusy"},
    {0x807E0000u, "BadTcpMessageTypeInvalid"},
    {0x807F0000u, "BadTcpSecureChannelUnknown"},
    {0x80800000u, "BadTcpMessageTooLarge"},
    {0x80810000u, "BadTcpNotEnoughResources"},
    {0x80820000u, "BadTcpInternalError"},
    {0x80830000u, "BadTcpEndpointUrlInvalid"},
    {0x80840000u, "BadRequestInterrupted"},
    {0x80850000u, "BadRequestTimeout"},
    {0x80860000u, "BadSecureChannelClosed"},
    {0x80870000u, "BadSecureChannelTokenUnknown"},
    {0x80880000u, "BadSequenceNumberInvalid"},
    {0x80AB0000u, "BadInvalidArgument"},
    {0x80AC0000u, "BadConnectionRejected"},
    {0x80AD0000u, "BadDisconnect"},
    {0x80AE0000u, "BadConnectionClosed"},
    {0x80AF0000u, "BadInvalidState"},
    {0x80B00000u, "BadEndOfStream"},
    {0x80B80000u, "BadRequestTooLarge"},
    {0x80B90000u, "BadResponseTooLarge"},
    {0x80DB0000u, "BadTooManyMonitoredItems"},
    {0x80770000u, "BadTooManySubscriptions"},
    {0x80310000u, "BadNoCommunication"},
    {0x808B0000u, "BadDeviceFailure"},
    {0x808C0000u, "BadSensorFailure"},
    {0x808D0000u, "BadOutOfService"},
    {0x408F0000u, "UncertainNoCommunicationLastUsableValue"},
    {0x40900000u, "UncertainLastUsableValue"},
    {0x40910000u, "UncertainSubstituteValue"},
    {0x40920000u, "UncertainInitialValue"},
    {0x40930000u, "UncertainSensorNotAccurate"},
    {0x40940000u, "UncertainEngineeringUnitsExceeded"},
    {0x40950000u, "UncertainSubNormal"},
    {0x00960000u, "GoodLocalOverride"},
    {0x00A50000u, "GoodNoData"},
    {0x00A60000u, "GoodMoreData"},
};

const char *sl_ua_status_name(uint32_t code, char *buf, size_t len) {
  /* The low 16 bits are info bits (overflow, limits): the name is the
   * code's top half. */
  uint32_t key = code & 0xffff0000u;
  for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
    if (statuses[i].code == key)
      return statuses[i].name;
  snprintf(buf, len, "%s(0x%08X)",
           sl_ua_severity(code) == 0   ? "Good"
           : sl_ua_severity(code) == 1 ? "Uncertain"
                                       : "Bad",
           code);
  return buf;
}

static const char *const type_names[] = {
    "Null",           "Boolean",         "SByte",
    "Byte",           "Int16",           "UInt16",
    "Int32",          "UInt32",          "Int64",
    "UInt64",         "Float",           "Double",
    "String",         "DateTime",        "Guid",
    "ByteString",     "XmlElement",      "NodeId",
    "ExpandedNodeId", "StatusCode",      "QualifiedName",
    "LocalizedText",  "ExtensionObject", "DataValue",
    "Variant",        "DiagnosticInfo",
};

const char *sl_ua_type_name(unsigned type) {
  return type < sizeof(type_names) / sizeof(type_names[0]) ? type_names[type]
                                                           : "?";
}

/* ---- NodeId text -------------------------------------------------------- */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(char c) {
  const char *p = c ? strchr(b64, c) : NULL;
  return p ? (int)(p - b64) : -1;
}

/* Decodes base64 text into out (cap bytes); the length or -1. */
static int b64_decode(const char *s, char *out, size_t cap) {
  size_t n = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (; *s && *s != '='; s++) {
    int v = b64_val(*s);
    if (v < 0)
      return -1;
    acc = (acc << 6) | (uint32_t)v;
    if ((bits += 6) >= 8) {
      bits -= 8;
      if (n == cap)
        return -1;
      out[n++] = (char)(acc >> bits);
    }
  }
  while (*s == '=')
    s++;
  return *s ? -1 : (int)n;
}

static void b64_encode(const uint8_t *p, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 5 < cap; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < n)
      v |= p[i + 2];
    out[o++] = b64[(v >> 18) & 63];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? b64[v & 63] : '=';
  }
  out[o] = '\0';
}

static int hexv(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* "72962B91-FA75-4AE6-8D28-B404DC7DAF63" (optionally in braces). */
static int guid_parse(const char *s, sl_ua_guid_t *g) {
  uint8_t hex[16];
  size_t n = 0, i = 0, len = strlen(s);
  static const size_t dash[] = {8, 13, 18, 23};
  if (len == 38 && s[0] == '{' && s[37] == '}') {
    s++;
    len = 36;
  }
  if (len != 36)
    return -EINVAL;
  for (i = 0; i < 36; i++) {
    if (i == dash[0] || i == dash[1] || i == dash[2] || i == dash[3]) {
      if (s[i] != '-')
        return -EINVAL;
      continue;
    }
    int h = hexv(s[i]), l = hexv(s[++i]);
    if (h < 0 || l < 0)
      return -EINVAL;
    hex[n++] = (uint8_t)(h << 4 | l);
  }
  /* Text is big-endian; Data1..Data3 are little-endian on the wire. */
  g->b[0] = hex[3], g->b[1] = hex[2], g->b[2] = hex[1], g->b[3] = hex[0];
  g->b[4] = hex[5], g->b[5] = hex[4], g->b[6] = hex[7], g->b[7] = hex[6];
  memcpy(g->b + 8, hex + 8, 8);
  return 0;
}

int sl_ua_nodeid_parse(const char *text, sl_ua_nodeid_t *id, char *buf,
                       size_t len) {
  const char *p = text;
  char *end;
  memset(id, 0, sizeof(*id));
  id->str.len = -1;
  if (!strncmp(p, "ns=", 3)) {
    unsigned long ns = strtoul(p + 3, &end, 10);
    if (end == p + 3 || *end != ';' || ns > 0xffff)
      return -EINVAL;
    id->ns = (uint16_t)ns;
    p = end + 1;
  }
  if (!p[0] || p[1] != '=')
    return -EINVAL;
  switch (p[0]) {
  case 'i': {
    unsigned long long v;
    if (p[2] < '0' || p[2] > '9')
      return -EINVAL;
    errno = 0;
    v = strtoull(p + 2, &end, 10);
    if (errno || *end || v > 0xffffffffull)
      return -EINVAL;
    id->num = (uint32_t)v;
    return 0;
  }
  case 's': {
    size_t n = strlen(p + 2);
    if (n >= len || n > INT32_MAX)
      return -EINVAL;
    memcpy(buf, p + 2, n + 1);
    id->kind = UA_NID_STRING;
    id->str.p = buf;
    id->str.len = (int32_t)n;
    return 0;
  }
  case 'g':
    id->kind = UA_NID_GUID;
    return guid_parse(p + 2, &id->guid);
  case 'b': {
    int n = b64_decode(p + 2, buf, len);
    if (n < 0)
      return -EINVAL;
    id->kind = UA_NID_OPAQUE;
    id->str.p = buf;
    id->str.len = n;
    return 0;
  }
  default:
    return -EINVAL;
  }
}

char *sl_ua_nodeid_format(const sl_ua_nodeid_t *id, char *buf, size_t len) {
  char ns[16] = "";
  const uint8_t *g = id->guid.b;
  if (id->ns)
    snprintf(ns, sizeof(ns), "ns=%u;", id->ns);
  switch (id->kind) {
  case UA_NID_NUMERIC:
    snprintf(buf, len, "%si=%u", ns, id->num);
    break;
  case UA_NID_STRING:
    snprintf(buf, len, "%ss=%.*s", ns, id->str.len < 0 ? 0 : (int)id->str.len,
             id->str.p ? id->str.p : "");
    break;
  case UA_NID_GUID:
    snprintf(buf, len,
             "%sg=%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-"
             "%02X%02X%02X%02X%02X%02X",
             ns, g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9],
             g[10], g[11], g[12], g[13], g[14], g[15]);
    break;
  default: {
    size_t o = (size_t)snprintf(buf, len, "%sb=", ns);
    if (o < len)
      b64_encode((const uint8_t *)id->str.p,
                 id->str.len < 0 ? 0 : (size_t)id->str.len, buf + o, len - o);
  }
  }
  return buf;
}

bool sl_ua_nodeid_eq(const sl_ua_nodeid_t *a, const sl_ua_nodeid_t *b) {
  if (a->ns != b->ns || a->kind != b->kind)
    return false;
  switch (a->kind) {
  case UA_NID_NUMERIC:
    return a->num == b->num;
  case UA_NID_GUID:
    return !memcmp(a->guid.b, b->guid.b, 16);
  default:
    return a->str.len == b->str.len &&
           (a->str.len <= 0 || !memcmp(a->str.p, b->str.p, (size_t)a->str.len));
  }
}
