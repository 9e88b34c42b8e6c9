/*
 * libFuzzer target: the OPC UA message decoder of sluice-opcua
 * (connectors/opcua/ua_msg.c, ua_codec.c), the code that parses what a
 * server sends. The first byte picks a response type so the fuzzer reaches
 * every service decoder: below the table's size it prefixes the rest with
 * that type's encoding NodeId; otherwise the whole input is decoded as is
 * (its own NodeId first). The input's first 8 bytes also go through the
 * chunk header parser, and every decoded value is walked (the status name
 * and NodeId formatter run on what came out).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/opcua/ua_msg.h"

static const uint16_t types[] = {
    UA_ID_SERVICE_FAULT,       UA_ID_OPN_RESP,
    UA_ID_CREATE_SESSION_RESP, UA_ID_ACTIVATE_SESSION_RESP,
    UA_ID_BROWSE_RESP,         UA_ID_BROWSE_NEXT_RESP,
    UA_ID_TRANSLATE_RESP,      UA_ID_READ_RESP,
    UA_ID_CREATE_SUB_RESP,     UA_ID_CREATE_MON_RESP,
    UA_ID_PUBLISH_RESP,        UA_ID_REPUBLISH_RESP,
    UA_ID_TRANSFER_RESP,       UA_ID_DELETE_SUBS_RESP,
};
#define NTYPES (sizeof(types) / sizeof(types[0]))

static size_t walk_variant(const sl_ua_variant_t *v) {
  char buf[256];
  size_t n = v->type;
  if (v->is_array) {
    for (uint32_t i = 0; i < v->n; i++)
      n += walk_variant(&v->arr[i]);
    return n;
  }
  if (v->type == UA_NODEID && v->v.nid)
    n += strlen(sl_ua_nodeid_format(v->v.nid, buf, sizeof(buf)));
  if (v->type == UA_STATUSCODE)
    n += strlen(sl_ua_status_name((uint32_t)v->v.u, buf, sizeof(buf)));
  if (v->type == UA_VARIANT && v->v.v)
    n += walk_variant(v->v.v);
  if (v->type == UA_DATAVALUE && v->v.dv)
    n += walk_variant(&v->v.dv->value);
  if ((v->type == UA_STRING || v->type == UA_BYTESTRING) && v->v.s.len > 0)
    n += (uint8_t)v->v.s.p[v->v.s.len - 1];
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sl_ua_arena_t arena = {.limit = 64u << 20};
  sl_ua_chunk_hdr_t h;
  sl_ua_msg_t m;
  uint8_t *buf = NULL;
  const uint8_t *p = data;
  size_t len = size;
  char nb[256];
  volatile size_t sink = 0;

  if (size >= 8)
    (void)sl_ua_chunk_parse(data, 1u << 24, &h);
  if (size >= 1 && data[0] < NTYPES) {
    if (!(buf = malloc(size + 3)))
      return 0;
    buf[0] = 1; /* four-byte NodeId, namespace 0 */
    buf[1] = 0;
    buf[2] = (uint8_t)types[data[0]];
    buf[3] = (uint8_t)(types[data[0]] >> 8);
    memcpy(buf + 4, data + 1, size - 1);
    p = buf;
    len = size + 3;
  }
  if (sl_ua_msg_decode(p, len, &arena, &m) == 0) {
    sink += strlen(sl_ua_status_name(m.hdr.result, nb, sizeof(nb)));
    if (m.type == UA_ID_READ_RESP)
      for (uint32_t i = 0; i < m.u.read.n; i++)
        sink += walk_variant(&m.u.read.dv[i].value);
    if (m.type == UA_ID_PUBLISH_RESP || m.type == UA_ID_REPUBLISH_RESP)
      for (uint32_t i = 0; i < m.u.pub.notif.nitems; i++)
        sink += walk_variant(&m.u.pub.notif.items[i].dv.value);
    if (m.type == UA_ID_BROWSE_RESP || m.type == UA_ID_BROWSE_NEXT_RESP)
      for (uint32_t i = 0; i < m.u.browse.n; i++)
        for (uint32_t k = 0; k < m.u.browse.res[i].nrefs; k++)
          sink += strlen(sl_ua_nodeid_format(&m.u.browse.res[i].refs[k].node.id,
                                             nb, sizeof(nb)));
  }
  (void)sink;
  sl_ua_arena_free(&arena);
  free(buf);
  return 0;
}
