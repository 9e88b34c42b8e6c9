/*
 * connectors/opcua/ua_enc.c: the service requests (ua_msg.h), each its
 * encoding NodeId, RequestHeader and body (Part 4 section 5, Part 6).
 */
#include <string.h>

#include "connectors/opcua/ua_msg.h"

static const sl_ua_str_t null_str = {NULL, -1};

/* A null ExtensionObject: NodeId 0 and no body. */
static void wr_null_extobj(sl_ua_wr_t *w) {
  sl_ua_wr_nodeid_num(w, 0);
  sl_ua_wr_u8(w, 0);
}

static void wr_null_nodeid(sl_ua_wr_t *w) {
  sl_ua_wr_nodeid_num(w, 0);
}

static void hdr(sl_ua_wr_t *w, uint32_t type, const sl_ua_req_t *rq) {
  sl_ua_wr_nodeid_num(w, type);
  if (rq->auth)
    sl_ua_wr_nodeid(w, rq->auth);
  else
    wr_null_nodeid(w);
  sl_ua_wr_i64(w, sl_ua_unix_ns_to_ticks(sl_now_wall_ns()));
  sl_ua_wr_u32(w, rq->handle);
  sl_ua_wr_u32(w, 0);        /* returnDiagnostics: none */
  sl_ua_wr_str(w, null_str); /* auditEntryId */
  sl_ua_wr_u32(w, rq->timeout_ms);
  wr_null_extobj(w);
}

void sl_ua_enc_opn(sl_ua_wr_t *w, const sl_ua_req_t *rq, int renew,
                   uint32_t lifetime_ms) {
  hdr(w, UA_ID_OPN_REQ, rq);
  sl_ua_wr_u32(w, 0);             /* clientProtocolVersion */
  sl_ua_wr_u32(w, renew ? 1 : 0); /* requestType: Issue, Renew */
  sl_ua_wr_u32(w, 1);             /* securityMode: None */
  sl_ua_wr_str(w, null_str);      /* clientNonce */
  sl_ua_wr_u32(w, lifetime_ms);
}

void sl_ua_enc_clo(sl_ua_wr_t *w, const sl_ua_req_t *rq) {
  hdr(w, UA_ID_CLO_REQ, rq);
}

void sl_ua_enc_create_session(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                              const char *endpoint_url, const char *name,
                              double timeout_ms) {
  hdr(w, UA_ID_CREATE_SESSION_REQ, rq);
  /* ApplicationDescription of the client. */
  sl_ua_wr_cstr(w, "urn:sluice:opcua-client");
  sl_ua_wr_cstr(w, "urn:sluice");
  sl_ua_wr_u8(w, 0x02); /* LocalizedText: text only */
  sl_ua_wr_cstr(w, "sluice-opcua");
  sl_ua_wr_u32(w, 1);        /* applicationType: Client */
  sl_ua_wr_str(w, null_str); /* gatewayServerUri */
  sl_ua_wr_str(w, null_str); /* discoveryProfileUri */
  sl_ua_wr_i32(w, -1);       /* discoveryUrls */
  sl_ua_wr_str(w, null_str); /* serverUri */
  sl_ua_wr_cstr(w, endpoint_url);
  sl_ua_wr_cstr(w, name);
  /* A 32-byte nonce: servers insist on one even for policy None. */
  uint8_t nonce[32];
  uint64_t x = (uint64_t)sl_now_wall_ns() ^ 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < sizeof(nonce); i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    nonce[i] = (uint8_t)x;
  }
  sl_ua_wr_i32(w, (int32_t)sizeof(nonce));
  sl_ua_wr_bytes(w, nonce, sizeof(nonce));
  sl_ua_wr_str(w, null_str); /* clientCertificate */
  sl_ua_wr_f64(w, timeout_ms);
  sl_ua_wr_u32(w, 0); /* maxResponseMessageSize: no limit */
}

void sl_ua_enc_activate_session(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                                const sl_ua_identity_t *id) {
  sl_ua_wr_t tok;
  hdr(w, UA_ID_ACTIVATE_SESSION_REQ, rq);
  sl_ua_wr_str(w, null_str); /* clientSignature.algorithm */
  sl_ua_wr_str(w, null_str); /* clientSignature.signature */
  sl_ua_wr_i32(w, -1);       /* clientSoftwareCertificates */
  sl_ua_wr_i32(w, 1);        /* localeIds */
  sl_ua_wr_cstr(w, "en");
  /* userIdentityToken: an ExtensionObject with a binary body. */
  sl_ua_wr_init(&tok);
  sl_ua_wr_cstr(&tok, id->policy_id);
  if (id->user) {
    /* With SecurityPolicy None the password travels as plain bytes
     * (the connector refuses this unless the config allows it). */
    sl_ua_wr_cstr(&tok, id->user);
    sl_ua_wr_cstr(&tok, id->password ? id->password : "");
    sl_ua_wr_str(&tok, null_str); /* encryptionAlgorithm: none */
  }
  sl_ua_wr_nodeid_num(w,
                      id->user ? UA_ID_USERNAME_TOKEN : UA_ID_ANONYMOUS_TOKEN);
  sl_ua_wr_u8(w, 1);
  sl_ua_wr_i32(w, (int32_t)tok.len);
  sl_ua_wr_bytes(w, tok.p, tok.len);
  if (tok.err)
    w->err = tok.err;
  if (tok.p) /* the password does not linger in freed memory */
    memset(tok.p, 0, tok.len);
  sl_ua_wr_free(&tok);
  sl_ua_wr_str(w, null_str); /* userTokenSignature.algorithm */
  sl_ua_wr_str(w, null_str); /* userTokenSignature.signature */
}

void sl_ua_enc_close_session(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                             bool delete_subs) {
  hdr(w, UA_ID_CLOSE_SESSION_REQ, rq);
  sl_ua_wr_bool(w, delete_subs);
}

void sl_ua_enc_browse(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                      const sl_ua_nodeid_t *nodes, uint32_t n,
                      uint32_t max_refs) {
  hdr(w, UA_ID_BROWSE_REQ, rq);
  wr_null_nodeid(w); /* view: the whole address space */
  sl_ua_wr_i64(w, 0);
  sl_ua_wr_u32(w, 0);
  sl_ua_wr_u32(w, max_refs);
  sl_ua_wr_i32(w, (int32_t)n);
  for (uint32_t i = 0; i < n; i++) {
    sl_ua_wr_nodeid(w, &nodes[i]);
    sl_ua_wr_u32(w, 0); /* Forward */
    sl_ua_wr_nodeid_num(w, UA_NS0_HIERARCHICAL_REFS);
    sl_ua_wr_bool(w, true);
    sl_ua_wr_u32(w, 0);  /* every node class */
    sl_ua_wr_u32(w, 63); /* every result field */
  }
}

void sl_ua_enc_browse_next(sl_ua_wr_t *w, const sl_ua_req_t *rq, bool release,
                           const sl_ua_str_t *cps, uint32_t n) {
  hdr(w, UA_ID_BROWSE_NEXT_REQ, rq);
  sl_ua_wr_bool(w, release);
  sl_ua_wr_i32(w, (int32_t)n);
  for (uint32_t i = 0; i < n; i++)
    sl_ua_wr_str(w, cps[i]);
}

void sl_ua_enc_translate(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                         const sl_ua_browse_path_t *paths, uint32_t n) {
  hdr(w, UA_ID_TRANSLATE_REQ, rq);
  sl_ua_wr_i32(w, (int32_t)n);
  for (uint32_t i = 0; i < n; i++) {
    sl_ua_wr_nodeid(w, &paths[i].start);
    sl_ua_wr_i32(w, (int32_t)paths[i].n);
    for (uint32_t k = 0; k < paths[i].n; k++) {
      sl_ua_wr_nodeid_num(w, UA_NS0_HIERARCHICAL_REFS);
      sl_ua_wr_bool(w, false); /* isInverse */
      sl_ua_wr_bool(w, true);  /* includeSubtypes */
      sl_ua_wr_qname(w, &paths[i].elems[k]);
    }
  }
}

void sl_ua_enc_read(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                    const sl_ua_nodeid_t *nodes, uint32_t n, uint32_t attr) {
  hdr(w, UA_ID_READ_REQ, rq);
  sl_ua_wr_f64(w, 0); /* maxAge: a fresh value */
  sl_ua_wr_u32(w, 2); /* timestampsToReturn: Both */
  sl_ua_wr_i32(w, (int32_t)n);
  for (uint32_t i = 0; i < n; i++) {
    sl_ua_wr_nodeid(w, &nodes[i]);
    sl_ua_wr_u32(w, attr);
    sl_ua_wr_str(w, null_str); /* indexRange */
    sl_ua_wr_u16(w, 0);        /* dataEncoding: default */
    sl_ua_wr_str(w, null_str);
  }
}

void sl_ua_enc_create_sub(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                          double interval_ms, uint32_t lifetime,
                          uint32_t keepalive, uint32_t max_notifs) {
  hdr(w, UA_ID_CREATE_SUB_REQ, rq);
  sl_ua_wr_f64(w, interval_ms);
  sl_ua_wr_u32(w, lifetime);
  sl_ua_wr_u32(w, keepalive);
  sl_ua_wr_u32(w, max_notifs);
  sl_ua_wr_bool(w, true); /* publishingEnabled */
  sl_ua_wr_u8(w, 0);      /* priority */
}

void sl_ua_enc_create_mon(sl_ua_wr_t *w, const sl_ua_req_t *rq, uint32_t sub_id,
                          const sl_ua_mon_req_t *items, uint32_t n) {
  hdr(w, UA_ID_CREATE_MON_REQ, rq);
  sl_ua_wr_u32(w, sub_id);
  sl_ua_wr_u32(w, 2); /* timestampsToReturn: Both */
  sl_ua_wr_i32(w, (int32_t)n);
  for (uint32_t i = 0; i < n; i++) {
    const sl_ua_mon_req_t *it = &items[i];
    sl_ua_wr_nodeid(w, &it->node);
    sl_ua_wr_u32(w, UA_ATTR_VALUE);
    sl_ua_wr_str(w, null_str);
    sl_ua_wr_u16(w, 0);
    sl_ua_wr_str(w, null_str);
    sl_ua_wr_u32(w, 2); /* monitoringMode: Reporting */
    sl_ua_wr_u32(w, it->handle);
    sl_ua_wr_f64(w, it->sampling_ms);
    if (it->deadband_type) {
      /* DataChangeFilter: trigger StatusValue, the deadband. */
      sl_ua_wr_nodeid_num(w, UA_ID_DATA_CHANGE_FILTER);
      sl_ua_wr_u8(w, 1);
      sl_ua_wr_i32(w, 4 + 4 + 8);
      sl_ua_wr_u32(w, 1);
      sl_ua_wr_u32(w, it->deadband_type);
      sl_ua_wr_f64(w, it->deadband);
    } else {
      wr_null_extobj(w);
    }
    sl_ua_wr_u32(w, it->queue_size);
    sl_ua_wr_bool(w, true); /* discardOldest */
  }
}

void sl_ua_enc_publish(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                       const sl_ua_sub_ack_t *acks, uint32_t n) {
  hdr(w, UA_ID_PUBLISH_REQ, rq);
  sl_ua_wr_i32(w, (int32_t)n);
  for (uint32_t i = 0; i < n; i++) {
    sl_ua_wr_u32(w, acks[i].sub_id);
    sl_ua_wr_u32(w, acks[i].seq);
  }
}

void sl_ua_enc_republish(sl_ua_wr_t *w, const sl_ua_req_t *rq, uint32_t sub_id,
                         uint32_t seq) {
  hdr(w, UA_ID_REPUBLISH_REQ, rq);
  sl_ua_wr_u32(w, sub_id);
  sl_ua_wr_u32(w, seq);
}

void sl_ua_enc_transfer(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                        const uint32_t *subs, uint32_t n, bool send_initial) {
  hdr(w, UA_ID_TRANSFER_REQ, rq);
  sl_ua_wr_i32(w, (int32_t)n);
  for (uint32_t i = 0; i < n; i++)
    sl_ua_wr_u32(w, subs[i]);
  sl_ua_wr_bool(w, send_initial);
}

void sl_ua_enc_delete_subs(sl_ua_wr_t *w, const sl_ua_req_t *rq,
                           const uint32_t *subs, uint32_t n) {
  hdr(w, UA_ID_DELETE_SUBS_REQ, rq);
  sl_ua_wr_i32(w, (int32_t)n);
  for (uint32_t i = 0; i < n; i++)
    sl_ua_wr_u32(w, subs[i]);
}
