/*
 * connectors/opcua/ua_msg.c: chunk headers and the service responses the
 * client reads (ua_msg.h). Everything here parses what a server sent: every
 * length is checked against the bytes left (ua_codec.c), nesting is bounded,
 * and the libFuzzer target tests/fuzz/fuzz_opcua.c runs it on random input.
 */
#include <string.h>

#include "connectors/opcua/ua_msg.h"

int sl_ua_chunk_parse(const uint8_t *p, uint32_t max, sl_ua_chunk_hdr_t *h) {
  static const char *const types[] = {"HEL", "ACK", "ERR", "OPN",
                                      "MSG", "CLO", "RHE"};
  int known = 0;
  memcpy(h->type, p, 3);
  h->type[3] = '\0';
  h->chunk = (char)p[3];
  h->size = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
            (uint32_t)p[7] << 24;
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
    known |= !memcmp(h->type, types[i], 3);
  if (!known || (h->chunk != 'F' && h->chunk != 'C' && h->chunk != 'A') ||
      h->size < 8 || h->size > max)
    return SL_UA_EDECODE;
  /* Only MSG may come in several chunks. */
  if (h->chunk != 'F' && memcmp(h->type, "MSG", 3))
    return SL_UA_EDECODE;
  return 0;
}

static void rd_resp_hdr(sl_ua_rd_t *r, sl_ua_resp_hdr_t *h) {
  sl_ua_extobj_t add;
  h->timestamp = sl_ua_rd_i64(r);
  h->handle = sl_ua_rd_u32(r);
  h->result = sl_ua_rd_u32(r);
  sl_ua_rd_skip_diag(r);
  uint32_t n = sl_ua_rd_alen(r, 4); /* stringTable */
  for (uint32_t i = 0; i < n && !r->err; i++)
    (void)sl_ua_rd_str(r);
  sl_ua_rd_extobj(r, &add);
}

static void skip_diags(sl_ua_rd_t *r) {
  uint32_t n = sl_ua_rd_alen(r, 1);
  for (uint32_t i = 0; i < n && !r->err; i++)
    sl_ua_rd_skip_diag(r);
}

static uint32_t *rd_u32s(sl_ua_rd_t *r, uint32_t *n) {
  uint32_t *a;
  *n = sl_ua_rd_alen(r, 4);
  a = sl_ua_rd_alloc(r, *n, sizeof(*a));
  for (uint32_t i = 0; a && i < *n; i++)
    a[i] = sl_ua_rd_u32(r);
  if (!a)
    *n = 0;
  return a;
}

static void skip_strs(sl_ua_rd_t *r) {
  uint32_t n = sl_ua_rd_alen(r, 4);
  for (uint32_t i = 0; i < n && !r->err; i++)
    (void)sl_ua_rd_str(r);
}

static void skip_app_desc(sl_ua_rd_t *r) {
  sl_ua_ltext_t t;
  (void)sl_ua_rd_str(r); /* applicationUri */
  (void)sl_ua_rd_str(r); /* productUri */
  sl_ua_rd_ltext(r, &t);
  (void)sl_ua_rd_u32(r); /* applicationType */
  (void)sl_ua_rd_str(r); /* gatewayServerUri */
  (void)sl_ua_rd_str(r); /* discoveryProfileUri */
  skip_strs(r);          /* discoveryUrls */
}

static void rd_endpoint(sl_ua_rd_t *r, sl_ua_endpoint_t *e) {
  e->url = sl_ua_rd_str(r);
  skip_app_desc(r);
  (void)sl_ua_rd_str(r); /* serverCertificate */
  e->security_mode = sl_ua_rd_i32(r);
  e->security_policy = sl_ua_rd_str(r);
  e->ntokens = sl_ua_rd_alen(r, 20);
  e->tokens = sl_ua_rd_alloc(r, e->ntokens, sizeof(*e->tokens));
  for (uint32_t i = 0; e->tokens && i < e->ntokens; i++) {
    sl_ua_token_policy_t *t = &e->tokens[i];
    t->policy_id = sl_ua_rd_str(r);
    t->token_type = sl_ua_rd_i32(r);
    (void)sl_ua_rd_str(r); /* issuedTokenType */
    (void)sl_ua_rd_str(r); /* issuerEndpointUrl */
    t->security_policy = sl_ua_rd_str(r);
  }
  if (!e->tokens)
    e->ntokens = 0;
  (void)sl_ua_rd_str(r); /* transportProfileUri */
  (void)sl_ua_rd_u8(r);  /* securityLevel */
}

static void rd_create_session(sl_ua_rd_t *r, sl_ua_msg_t *m) {
  sl_ua_rd_nodeid(r, &m->u.session.session_id);
  sl_ua_rd_nodeid(r, &m->u.session.auth_token);
  m->u.session.timeout_ms = sl_ua_rd_f64(r);
  (void)sl_ua_rd_str(r); /* serverNonce */
  (void)sl_ua_rd_str(r); /* serverCertificate */
  m->u.session.neps = sl_ua_rd_alen(r, 30);
  m->u.session.eps =
      sl_ua_rd_alloc(r, m->u.session.neps, sizeof(*m->u.session.eps));
  for (uint32_t i = 0; m->u.session.eps && i < m->u.session.neps; i++)
    rd_endpoint(r, &m->u.session.eps[i]);
  uint32_t n = sl_ua_rd_alen(r, 8); /* serverSoftwareCertificates */
  for (uint32_t i = 0; i < n && !r->err; i++) {
    (void)sl_ua_rd_str(r);
    (void)sl_ua_rd_str(r);
  }
  (void)sl_ua_rd_str(r); /* serverSignature.algorithm */
  (void)sl_ua_rd_str(r); /* serverSignature.signature */
  m->u.session.max_request_size = sl_ua_rd_u32(r);
}

static void rd_browse_results(sl_ua_rd_t *r, sl_ua_msg_t *m) {
  uint32_t n = sl_ua_rd_alen(r, 12);
  sl_ua_browse_result_t *res = sl_ua_rd_alloc(r, n, sizeof(*res));
  for (uint32_t i = 0; res && i < n; i++) {
    res[i].status = sl_ua_rd_u32(r);
    res[i].cont = sl_ua_rd_str(r);
    res[i].nrefs = sl_ua_rd_alen(r, 20);
    res[i].refs = sl_ua_rd_alloc(r, res[i].nrefs, sizeof(*res[i].refs));
    for (uint32_t k = 0; res[i].refs && k < res[i].nrefs; k++) {
      sl_ua_ref_t *f = &res[i].refs[k];
      sl_ua_expnodeid_t td;
      sl_ua_rd_nodeid(r, &f->ref_type);
      f->forward = sl_ua_rd_bool(r);
      sl_ua_rd_expnodeid(r, &f->node);
      sl_ua_rd_qname(r, &f->browse_name);
      sl_ua_rd_ltext(r, &f->display_name);
      f->node_class = sl_ua_rd_i32(r);
      sl_ua_rd_expnodeid(r, &td); /* typeDefinition */
    }
    if (!res[i].refs)
      res[i].nrefs = 0;
  }
  m->u.browse.res = res;
  m->u.browse.n = res ? n : 0;
  skip_diags(r);
}

static void rd_translate(sl_ua_rd_t *r, sl_ua_msg_t *m) {
  uint32_t n = sl_ua_rd_alen(r, 8);
  sl_ua_path_result_t *res = sl_ua_rd_alloc(r, n, sizeof(*res));
  for (uint32_t i = 0; res && i < n; i++) {
    res[i].status = sl_ua_rd_u32(r);
    res[i].ntargets = sl_ua_rd_alen(r, 6);
    res[i].targets =
        sl_ua_rd_alloc(r, res[i].ntargets, sizeof(*res[i].targets));
    for (uint32_t k = 0; res[i].targets && k < res[i].ntargets; k++) {
      sl_ua_rd_expnodeid(r, &res[i].targets[k]);
      (void)sl_ua_rd_u32(r); /* remainingPathIndex */
    }
    if (!res[i].targets)
      res[i].ntargets = 0;
  }
  m->u.translate.res = res;
  m->u.translate.n = res ? n : 0;
  skip_diags(r);
}

static void rd_read(sl_ua_rd_t *r, sl_ua_msg_t *m) {
  uint32_t n = sl_ua_rd_alen(r, 1);
  sl_ua_datavalue_t *dv = sl_ua_rd_alloc(r, n, sizeof(*dv));
  for (uint32_t i = 0; dv && i < n; i++)
    sl_ua_rd_datavalue(r, &dv[i]);
  m->u.read.dv = dv;
  m->u.read.n = dv ? n : 0;
  skip_diags(r);
}

static void rd_mon(sl_ua_rd_t *r, sl_ua_msg_t *m) {
  uint32_t n = sl_ua_rd_alen(r, 23);
  sl_ua_mon_result_t *res = sl_ua_rd_alloc(r, n, sizeof(*res));
  for (uint32_t i = 0; res && i < n; i++) {
    sl_ua_extobj_t fr;
    res[i].status = sl_ua_rd_u32(r);
    res[i].id = sl_ua_rd_u32(r);
    res[i].sampling_ms = sl_ua_rd_f64(r);
    res[i].queue_size = sl_ua_rd_u32(r);
    sl_ua_rd_extobj(r, &fr); /* filterResult */
  }
  m->u.mon.res = res;
  m->u.mon.n = res ? n : 0;
  skip_diags(r);
}

/* Appends the items of one DataChangeNotification body. */
static void rd_data_change(sl_ua_rd_t *outer, sl_ua_str_t body,
                           sl_ua_notif_t *nf) {
  sl_ua_rd_t r;
  sl_ua_rd_init(&r, body.p, (size_t)body.len, outer->arena);
  r.depth = outer->depth;
  uint32_t n = sl_ua_rd_alen(&r, 5);
  sl_ua_item_value_t *items =
      sl_ua_rd_alloc(&r, (size_t)nf->nitems + n, sizeof(*items));
  if (items) {
    if (nf->nitems)
      memcpy(items, nf->items, nf->nitems * sizeof(*items));
    for (uint32_t i = 0; i < n && !r.err; i++) {
      items[nf->nitems + i].handle = sl_ua_rd_u32(&r);
      sl_ua_rd_datavalue(&r, &items[nf->nitems + i].dv);
    }
    nf->items = items;
    nf->nitems += n;
  }
  skip_diags(&r);
  if (r.err)
    sl_ua_rd_fail(outer, r.err);
}

static void rd_notif(sl_ua_rd_t *r, sl_ua_notif_t *nf) {
  memset(nf, 0, sizeof(*nf));
  nf->seq = sl_ua_rd_u32(r);
  nf->publish_time = sl_ua_rd_i64(r);
  uint32_t n = sl_ua_rd_alen(r, 3);
  for (uint32_t i = 0; i < n && !r->err; i++) {
    sl_ua_extobj_t eo;
    sl_ua_rd_extobj(r, &eo);
    if (r->err)
      break;
    if (eo.type.kind != UA_NID_NUMERIC || eo.type.ns || eo.encoding != 1) {
      nf->nother++;
      continue;
    }
    if (eo.type.num == UA_ID_DATA_CHANGE_NOTIF) {
      rd_data_change(r, eo.body, nf);
    } else if (eo.type.num == UA_ID_STATUS_CHANGE_NOTIF) {
      sl_ua_rd_t s;
      sl_ua_rd_init(&s, eo.body.p, (size_t)eo.body.len, r->arena);
      nf->has_status_change = true;
      nf->status_change = sl_ua_rd_u32(&s);
      if (s.err)
        sl_ua_rd_fail(r, s.err);
    } else {
      nf->nother++;
    }
  }
}

static void rd_transfer(sl_ua_rd_t *r, sl_ua_msg_t *m) {
  uint32_t n = sl_ua_rd_alen(r, 8);
  sl_ua_transfer_result_t *res = sl_ua_rd_alloc(r, n, sizeof(*res));
  for (uint32_t i = 0; res && i < n; i++) {
    res[i].status = sl_ua_rd_u32(r);
    res[i].avail = rd_u32s(r, &res[i].navail);
  }
  m->u.transfer.res = res;
  m->u.transfer.n = res ? n : 0;
  skip_diags(r);
}

int sl_ua_msg_decode(const uint8_t *p, size_t len, sl_ua_arena_t *arena,
                     sl_ua_msg_t *m) {
  sl_ua_rd_t r;
  sl_ua_nodeid_t type;
  memset(m, 0, sizeof(*m));
  sl_ua_rd_init(&r, p, len, arena);
  sl_ua_rd_nodeid(&r, &type);
  if (!r.err && (type.kind != UA_NID_NUMERIC || type.ns))
    sl_ua_rd_fail(&r, SL_UA_EDECODE);
  m->type = type.num;
  rd_resp_hdr(&r, &m->hdr);
  if (r.err)
    return r.err;
  switch (m->type) {
  case UA_ID_OPN_RESP:
    (void)sl_ua_rd_u32(&r); /* serverProtocolVersion */
    m->u.opn.channel_id = sl_ua_rd_u32(&r);
    m->u.opn.token_id = sl_ua_rd_u32(&r);
    m->u.opn.created = sl_ua_rd_i64(&r);
    m->u.opn.lifetime_ms = sl_ua_rd_u32(&r);
    (void)sl_ua_rd_str(&r); /* serverNonce */
    break;
  case UA_ID_CREATE_SESSION_RESP:
    rd_create_session(&r, m);
    break;
  case UA_ID_ACTIVATE_SESSION_RESP:
  case UA_ID_DELETE_SUBS_RESP:
    /* Results and diagnostics; ActivateSession has a nonce before. */
    if (m->type == UA_ID_ACTIVATE_SESSION_RESP)
      (void)sl_ua_rd_str(&r);
    m->u.codes.codes = rd_u32s(&r, &m->u.codes.n);
    skip_diags(&r);
    break;
  case UA_ID_BROWSE_RESP:
  case UA_ID_BROWSE_NEXT_RESP:
    rd_browse_results(&r, m);
    break;
  case UA_ID_TRANSLATE_RESP:
    rd_translate(&r, m);
    break;
  case UA_ID_READ_RESP:
    rd_read(&r, m);
    break;
  case UA_ID_CREATE_SUB_RESP:
    m->u.sub.id = sl_ua_rd_u32(&r);
    m->u.sub.interval_ms = sl_ua_rd_f64(&r);
    m->u.sub.lifetime = sl_ua_rd_u32(&r);
    m->u.sub.keepalive = sl_ua_rd_u32(&r);
    break;
  case UA_ID_CREATE_MON_RESP:
    rd_mon(&r, m);
    break;
  case UA_ID_PUBLISH_RESP:
    m->u.pub.sub_id = sl_ua_rd_u32(&r);
    m->u.pub.avail = rd_u32s(&r, &m->u.pub.navail);
    m->u.pub.more = sl_ua_rd_bool(&r);
    rd_notif(&r, &m->u.pub.notif);
    m->u.pub.acks = rd_u32s(&r, &m->u.pub.nacks);
    skip_diags(&r);
    break;
  case UA_ID_REPUBLISH_RESP:
    rd_notif(&r, &m->u.pub.notif);
    break;
  case UA_ID_TRANSFER_RESP:
    rd_transfer(&r, m);
    break;
  default: /* ServiceFault and the rest: the header says it all */
    break;
  }
  return r.err;
}
