/* Unit tests: the OPC UA Binary codec of sluice-opcua (connectors/opcua/
 * ua_codec.c, ua_text.c, ua_enc.c, ua_msg.c). With SL_OPCUA_WRITE_SEEDS set
 * to a directory, the responses built here are also written there as seeds
 * of the fuzz target (tests/fuzz/corpus/opcua). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "connectors/opcua/ua_msg.h"

static sl_ua_str_t S(const char *s) {
  sl_ua_str_t v = {s, s ? (int32_t)strlen(s) : -1};
  return v;
}

/* Writes a seed for the fuzz target: its first byte 0xff (decoded as is). */
static void seed(const char *name, const sl_ua_wr_t *w) {
  const char *dir = getenv("SL_OPCUA_WRITE_SEEDS");
  char path[512];
  if (!dir)
    return;
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputc(0xff, f);
  fwrite(w->p, 1, w->len, f);
  fclose(f);
}

static void test_nodeid_binary(void **state) {
  (void)state;
  struct {
    sl_ua_nodeid_t id;
    size_t len;
    uint8_t first;
  } cases[] = {
      {{.ns = 0, .num = 85}, 2, 0x00},
      {{.ns = 2, .num = 1000}, 4, 0x01},
      {{.ns = 0, .num = 70000}, 7, 0x02},
      {{.ns = 300, .num = 5}, 7, 0x02},
      {{.ns = 1, .kind = UA_NID_STRING, .str = {"Line1.Temp", 10}}, 17, 0x03},
      {{.ns = 3, .kind = UA_NID_OPAQUE, .str = {"\x01\x02\x00", 3}}, 10, 0x05},
      {{.ns = 4,
        .kind = UA_NID_GUID,
        .guid = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}},
       19,
       0x04},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sl_ua_wr_t w;
    sl_ua_rd_t r;
    sl_ua_nodeid_t back;
    sl_ua_wr_init(&w);
    sl_ua_wr_nodeid(&w, &cases[i].id);
    assert_int_equal(w.err, 0);
    assert_int_equal(w.len, cases[i].len);
    assert_int_equal(w.p[0], cases[i].first);
    sl_ua_rd_init(&r, w.p, w.len, NULL);
    sl_ua_rd_nodeid(&r, &back);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.pos, w.len);
    assert_true(sl_ua_nodeid_eq(&back, &cases[i].id));
    /* Every truncation fails cleanly. */
    for (size_t k = 0; k < w.len; k++) {
      sl_ua_rd_init(&r, w.p, k, NULL);
      sl_ua_rd_nodeid(&r, &back);
      assert_int_equal(r.err, SL_UA_EDECODE);
    }
    sl_ua_wr_free(&w);
  }
  /* The expanded flags are refused in a plain NodeId, read in an expanded
   * one. */
  const uint8_t exp[] = {
      0x80 | 0x40 | 0x00, 7, 3, 0, 0, 0, 'u', 'r', 'n', 9, 0, 0, 0};
  sl_ua_rd_t r;
  sl_ua_nodeid_t id;
  sl_ua_expnodeid_t e;
  sl_ua_rd_init(&r, exp, sizeof(exp), NULL);
  sl_ua_rd_nodeid(&r, &id);
  assert_int_equal(r.err, SL_UA_EDECODE);
  sl_ua_rd_init(&r, exp, sizeof(exp), NULL);
  sl_ua_rd_expnodeid(&r, &e);
  assert_int_equal(r.err, 0);
  assert_int_equal(e.id.num, 7);
  assert_true(sl_ua_str_eq(e.ns_uri, "urn"));
  assert_int_equal(e.server_index, 9);
  /* An unknown encoding byte. */
  const uint8_t bad[] = {0x06, 0, 0};
  sl_ua_rd_init(&r, bad, sizeof(bad), NULL);
  sl_ua_rd_nodeid(&r, &id);
  assert_int_equal(r.err, SL_UA_EDECODE);
}

static void test_nodeid_text(void **state) {
  (void)state;
  const char *ok[] = {
      "i=85",
      "ns=2;i=4294967295",
      "ns=1;s=Line1.Temp;with=semicolon",
      "ns=3;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63",
      "ns=4;b=AQIDBA==",
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    sl_ua_nodeid_t id;
    char buf[128], out[256];
    assert_int_equal(sl_ua_nodeid_parse(ok[i], &id, buf, sizeof(buf)), 0);
    assert_string_equal(sl_ua_nodeid_format(&id, out, sizeof(out)), ok[i]);
  }
  sl_ua_nodeid_t id;
  char buf[16];
  assert_int_equal(
      sl_ua_nodeid_parse("ns=3;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63", &id,
                         buf, sizeof(buf)),
      0);
  /* Data1 is little-endian on the wire. */
  assert_int_equal(id.guid.b[0], 0x91);
  assert_int_equal(id.guid.b[3], 0x72);
  assert_int_equal(id.guid.b[8], 0x8D);
  assert_int_equal(sl_ua_nodeid_parse("ns=4;b=AQIDBA==", &id, buf, sizeof(buf)),
                   0);
  assert_int_equal(id.str.len, 4);
  assert_int_equal(id.str.p[3], 4);
  const char *bad[] = {"",
                       "x=1",
                       "i=",
                       "i=-1",
                       "i=4294967296",
                       "ns=70000;i=1",
                       "ns=1",
                       "ns=1;q=1",
                       "ns=1;g=123",
                       "ns=1;b=!!",
                       "i=12a",
                       "ns=1;s=this string is longer than the buffer"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(sl_ua_nodeid_parse(bad[i], &id, buf, sizeof(buf)),
                     -EINVAL);
}

static void roundtrip(const sl_ua_variant_t *v) {
  sl_ua_wr_t w;
  sl_ua_rd_t r;
  sl_ua_variant_t back;
  sl_ua_arena_t a = {0};
  sl_ua_wr_init(&w);
  sl_ua_wr_variant(&w, v);
  assert_int_equal(w.err, 0);
  sl_ua_rd_init(&r, w.p, w.len, &a);
  sl_ua_rd_variant(&r, &back);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.pos, w.len);
  assert_int_equal(back.type, v->type);
  assert_int_equal(back.is_array, v->is_array);
  if (!v->is_array) {
    switch (v->type) {
    case UA_BOOLEAN:
      assert_int_equal(back.v.b, v->v.b);
      break;
    case UA_FLOAT:
    case UA_DOUBLE:
      assert_true(back.v.d == v->v.d);
      break;
    case UA_STRING:
      assert_int_equal(back.v.s.len, v->v.s.len);
      assert_memory_equal(back.v.s.p, v->v.s.p, (size_t)v->v.s.len);
      break;
    case UA_SBYTE:
    case UA_INT16:
    case UA_INT32:
    case UA_INT64:
      assert_true(back.v.i == v->v.i);
      break;
    case UA_DATETIME:
      assert_true(back.v.dt == v->v.dt);
      break;
    default:
      assert_true(back.v.u == v->v.u);
    }
  } else {
    assert_int_equal(back.n, v->n);
    for (uint32_t i = 0; i < v->n; i++)
      assert_true(back.arr[i].v.u == v->arr[i].v.u);
  }
  sl_ua_arena_free(&a);
  sl_ua_wr_free(&w);
}

static void test_variant(void **state) {
  (void)state;
  sl_ua_variant_t v;
  memset(&v, 0, sizeof(v));
  v.type = UA_BOOLEAN, v.v.b = true, roundtrip(&v);
  v.type = UA_SBYTE, v.v.i = -5, roundtrip(&v);
  v.type = UA_BYTE, v.v.u = 250, roundtrip(&v);
  v.type = UA_INT16, v.v.i = -30000, roundtrip(&v);
  v.type = UA_UINT16, v.v.u = 60000, roundtrip(&v);
  v.type = UA_INT32, v.v.i = INT32_MIN, roundtrip(&v);
  v.type = UA_UINT32, v.v.u = UINT32_MAX, roundtrip(&v);
  v.type = UA_INT64, v.v.i = INT64_MIN, roundtrip(&v);
  v.type = UA_UINT64, v.v.u = UINT64_MAX, roundtrip(&v);
  v.type = UA_FLOAT, v.v.d = 21.5, roundtrip(&v);
  v.type = UA_DOUBLE, v.v.d = 12345.678, roundtrip(&v);
  v.type = UA_STATUSCODE, v.v.u = UA_BAD_NODE_ID_UNKNOWN, roundtrip(&v);
  v.type = UA_DATETIME, v.v.dt = 133000000000000000ll, roundtrip(&v);
  v.type = UA_STRING, v.v.s = S("héllo"), roundtrip(&v);
  sl_ua_variant_t el[3];
  memset(el, 0, sizeof(el));
  for (int i = 0; i < 3; i++)
    el[i].type = UA_UINT32, el[i].v.u = (uint64_t)i * 1000;
  memset(&v, 0, sizeof(v));
  v.type = UA_UINT32, v.is_array = true, v.n = 3, v.arr = el;
  roundtrip(&v);

  /* A 2x3 Int16 matrix: flattened, dimensions checked. */
  const uint8_t mat[] = {0xC4, 6, 0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0,
                         6,    0, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0};
  sl_ua_arena_t a = {0};
  sl_ua_rd_t r;
  sl_ua_rd_init(&r, mat, sizeof(mat), &a);
  sl_ua_rd_variant(&r, &v);
  assert_int_equal(r.err, 0);
  assert_int_equal(v.n, 6);
  assert_int_equal(v.arr[5].v.i, 6);
  uint8_t badmat[sizeof(mat)];
  memcpy(badmat, mat, sizeof(mat));
  badmat[25] = 4; /* 2x4 != 6 */
  sl_ua_rd_init(&r, badmat, sizeof(badmat), &a);
  sl_ua_rd_variant(&r, &v);
  assert_int_equal(r.err, SL_UA_EDECODE);
  /* A hostile length: two billion doubles in a 9-byte message. */
  const uint8_t huge[] = {0x8B, 0x00, 0x00, 0x00, 0x7f, 1, 2, 3, 4};
  sl_ua_rd_init(&r, huge, sizeof(huge), &a);
  sl_ua_rd_variant(&r, &v);
  assert_int_equal(r.err, SL_UA_EDECODE);
  assert_true(a.total < 1u << 20);
  /* Variants nested past the depth limit. */
  uint8_t deep[200];
  for (size_t i = 0; i < 40; i++) {
    deep[i * 5] = 0x80 | UA_VARIANT;
    deep[i * 5 + 1] = 1, deep[i * 5 + 2] = deep[i * 5 + 3] = 0,
                 deep[i * 5 + 4] = 0;
  }
  sl_ua_rd_init(&r, deep, sizeof(deep), &a);
  sl_ua_rd_variant(&r, &v);
  assert_int_equal(r.err, SL_UA_EDECODE);
  /* An unknown type id. */
  const uint8_t unk[] = {30, 0};
  sl_ua_rd_init(&r, unk, sizeof(unk), &a);
  sl_ua_rd_variant(&r, &v);
  assert_int_equal(r.err, SL_UA_EDECODE);
  sl_ua_arena_free(&a);
}

static void wr_datavalue_all(sl_ua_wr_t *w, double value, uint32_t status) {
  sl_ua_variant_t v = {.type = UA_DOUBLE};
  v.v.d = value;
  sl_ua_wr_u8(w, 0x3f);
  sl_ua_wr_variant(w, &v);
  sl_ua_wr_u32(w, status);
  sl_ua_wr_i64(w, 133000000000000000ll); /* source */
  sl_ua_wr_u16(w, 7);
  sl_ua_wr_i64(w, 133000000010000000ll); /* server, 1 s later */
  sl_ua_wr_u16(w, 9);
}

static void test_datavalue_diag(void **state) {
  (void)state;
  sl_ua_wr_t w;
  sl_ua_rd_t r;
  sl_ua_datavalue_t dv;
  sl_ua_arena_t a = {0};
  sl_ua_wr_init(&w);
  wr_datavalue_all(&w, 1.5, 0x40920000u);
  /* DiagnosticInfo with every field and an inner one. */
  const uint8_t diag[] = {0x7f, 1, 0, 0, 0,    2,    0, 0, 0, 3, 0,
                          0,    0, 4, 0, 0,    0,    2, 0, 0, 0, 'h',
                          'i',  5, 0, 0, 0x80, 0x01, 1, 0, 0, 0};
  sl_ua_wr_bytes(&w, diag, sizeof(diag));
  sl_ua_wr_u32(&w, 0xdeadbeef);
  sl_ua_rd_init(&r, w.p, w.len, &a);
  sl_ua_rd_datavalue(&r, &dv);
  assert_int_equal(r.err, 0);
  assert_true(dv.value.v.d == 1.5);
  assert_int_equal(dv.status, 0x40920000u);
  assert_int_equal(dv.source_pico, 7);
  assert_int_equal(dv.server_pico, 9);
  assert_true(sl_ua_ticks_to_unix_ns(dv.server_ts) -
                  sl_ua_ticks_to_unix_ns(dv.source_ts) ==
              1000000000ll);
  sl_ua_rd_skip_diag(&r);
  assert_int_equal(r.err, 0);
  assert_int_equal(sl_ua_rd_u32(&r), 0xdeadbeef);
  /* 1601 + 133e15 ticks is 2022-06-18T... : a known Unix time. */
  assert_true(sl_ua_ticks_to_unix_ns(133000000000000000ll) ==
              (133000000000000000ll - 116444736000000000ll) * 100);
  assert_true(sl_ua_ticks_to_unix_ns(0) == 0);
  assert_true(sl_ua_unix_ns_to_ticks(sl_ua_ticks_to_unix_ns(
                  133000000000000000ll)) == 133000000000000000ll);
  sl_ua_wr_free(&w);
  sl_ua_arena_free(&a);
}

static void wr_resp_hdr(sl_ua_wr_t *w, uint32_t type, uint32_t result) {
  sl_ua_wr_nodeid_num(w, type);
  sl_ua_wr_i64(w, 133000000000000000ll);
  sl_ua_wr_u32(w, 42);
  sl_ua_wr_u32(w, result);
  sl_ua_wr_u8(w, 0);  /* diagnostics */
  sl_ua_wr_i32(w, 1); /* stringTable */
  sl_ua_wr_cstr(w, "x");
  sl_ua_wr_nodeid_num(w, 0);
  sl_ua_wr_u8(w, 0);
}

static void test_publish_response(void **state) {
  (void)state;
  sl_ua_wr_t w, dc;
  sl_ua_arena_t a = {0};
  sl_ua_msg_t m;
  sl_ua_wr_init(&w);
  sl_ua_wr_init(&dc);
  /* DataChangeNotification: two items. */
  sl_ua_wr_i32(&dc, 2);
  sl_ua_wr_u32(&dc, 11);
  wr_datavalue_all(&dc, 3.25, 0);
  sl_ua_wr_u32(&dc, 12);
  wr_datavalue_all(&dc, -1, UA_BAD_NODE_ID_UNKNOWN);
  sl_ua_wr_i32(&dc, -1);
  wr_resp_hdr(&w, UA_ID_PUBLISH_RESP, 0);
  sl_ua_wr_u32(&w, 7); /* subscriptionId */
  sl_ua_wr_i32(&w, 2);
  sl_ua_wr_u32(&w, 5);
  sl_ua_wr_u32(&w, 6);
  sl_ua_wr_bool(&w, false);
  sl_ua_wr_u32(&w, 6); /* sequenceNumber */
  sl_ua_wr_i64(&w, 133000000000000000ll);
  sl_ua_wr_i32(&w, 3);
  sl_ua_wr_nodeid_num(&w, UA_ID_DATA_CHANGE_NOTIF);
  sl_ua_wr_u8(&w, 1);
  sl_ua_wr_i32(&w, (int32_t)dc.len);
  sl_ua_wr_bytes(&w, dc.p, dc.len);
  sl_ua_wr_nodeid_num(&w, UA_ID_STATUS_CHANGE_NOTIF);
  sl_ua_wr_u8(&w, 1);
  sl_ua_wr_i32(&w, 5);
  sl_ua_wr_u32(&w, UA_BAD_TIMEOUT);
  sl_ua_wr_u8(&w, 0);
  sl_ua_wr_nodeid_num(&w, 916); /* EventNotificationList: counted */
  sl_ua_wr_u8(&w, 1);
  sl_ua_wr_i32(&w, 0);
  sl_ua_wr_i32(&w, 1); /* results */
  sl_ua_wr_u32(&w, UA_BAD_SEQUENCE_NUMBER_UNKNOWN);
  sl_ua_wr_i32(&w, 0);
  assert_int_equal(w.err, 0);
  seed("publish", &w);
  assert_int_equal(sl_ua_msg_decode(w.p, w.len, &a, &m), 0);
  assert_int_equal(m.type, UA_ID_PUBLISH_RESP);
  assert_int_equal(m.hdr.handle, 42);
  assert_int_equal(m.u.pub.sub_id, 7);
  assert_int_equal(m.u.pub.navail, 2);
  assert_int_equal(m.u.pub.avail[1], 6);
  assert_int_equal(m.u.pub.notif.seq, 6);
  assert_int_equal(m.u.pub.notif.nitems, 2);
  assert_int_equal(m.u.pub.notif.items[0].handle, 11);
  assert_true(m.u.pub.notif.items[0].dv.value.v.d == 3.25);
  assert_int_equal(m.u.pub.notif.items[1].dv.status, UA_BAD_NODE_ID_UNKNOWN);
  assert_true(m.u.pub.notif.has_status_change);
  assert_int_equal(m.u.pub.notif.status_change, UA_BAD_TIMEOUT);
  assert_int_equal(m.u.pub.notif.nother, 1);
  assert_int_equal(m.u.pub.nacks, 1);
  /* Every truncation fails cleanly. */
  for (size_t k = 0; k < w.len; k++) {
    sl_ua_arena_t b = {0};
    assert_int_not_equal(sl_ua_msg_decode(w.p, k, &b, &m), 0);
    sl_ua_arena_free(&b);
  }
  sl_ua_arena_free(&a);
  sl_ua_wr_free(&w);
  sl_ua_wr_free(&dc);
}

static void test_fault_and_browse(void **state) {
  (void)state;
  sl_ua_wr_t w;
  sl_ua_arena_t a = {0};
  sl_ua_msg_t m;
  char nb[64];
  sl_ua_wr_init(&w);
  wr_resp_hdr(&w, UA_ID_SERVICE_FAULT, UA_BAD_TOO_MANY_MONITORED_ITEMS);
  seed("fault", &w);
  assert_int_equal(sl_ua_msg_decode(w.p, w.len, &a, &m), 0);
  assert_int_equal(m.type, UA_ID_SERVICE_FAULT);
  assert_string_equal(sl_ua_status_name(m.hdr.result, nb, sizeof(nb)),
                      "BadTooManyMonitoredItems");
  /* Info bits do not change the name; an unknown code gets a fallback. */
  assert_string_equal(
      sl_ua_status_name(UA_BAD_USER_ACCESS_DENIED | 0x400, nb, sizeof(nb)),
      "BadUserAccessDenied");
  assert_string_equal(sl_ua_status_name(0x80FF0000u, nb, sizeof(nb)),
                      "Bad(0x80FF0000)");
  assert_string_equal(sl_ua_status_name(0x40FF0000u, nb, sizeof(nb)),
                      "Uncertain(0x40FF0000)");

  sl_ua_wr_free(&w);
  sl_ua_wr_init(&w);
  wr_resp_hdr(&w, UA_ID_BROWSE_RESP, 0);
  sl_ua_wr_i32(&w, 1);
  sl_ua_wr_u32(&w, 0);
  sl_ua_wr_cstr(&w, "cp1");
  sl_ua_wr_i32(&w, 1);
  sl_ua_wr_nodeid_num(&w, 47); /* HasComponent */
  sl_ua_wr_bool(&w, true);
  sl_ua_nodeid_t tgt = {.ns = 2, .kind = UA_NID_STRING, .str = {"Temp", 4}};
  sl_ua_wr_nodeid(&w, &tgt);
  sl_ua_qname_t qn = {2, {"Temp", 4}};
  sl_ua_wr_qname(&w, &qn);
  sl_ua_wr_u8(&w, 3);
  sl_ua_wr_cstr(&w, "en");
  sl_ua_wr_cstr(&w, "Temperature");
  sl_ua_wr_i32(&w, 2);
  sl_ua_wr_nodeid_num(&w, 63);
  sl_ua_wr_i32(&w, -1);
  assert_int_equal(w.err, 0);
  seed("browse", &w);
  sl_ua_arena_free(&a);
  assert_int_equal(sl_ua_msg_decode(w.p, w.len, &a, &m), 0);
  assert_int_equal(m.u.browse.n, 1);
  assert_true(sl_ua_str_eq(m.u.browse.res[0].cont, "cp1"));
  assert_int_equal(m.u.browse.res[0].nrefs, 1);
  assert_int_equal(m.u.browse.res[0].refs[0].node_class, 2);
  assert_true(sl_ua_nodeid_eq(&m.u.browse.res[0].refs[0].node.id, &tgt));
  assert_true(
      sl_ua_str_eq(m.u.browse.res[0].refs[0].display_name.text, "Temperature"));
  sl_ua_arena_free(&a);
  sl_ua_wr_free(&w);
}

static void test_requests_and_chunks(void **state) {
  (void)state;
  sl_ua_wr_t w;
  sl_ua_rd_t r;
  sl_ua_nodeid_t id;
  sl_ua_chunk_hdr_t h;
  sl_ua_req_t rq = {.handle = 9, .timeout_ms = 5000};
  sl_ua_identity_t ident = {
      .policy_id = "user", .user = "op", .password = "secret"};
  sl_ua_wr_init(&w);
  sl_ua_enc_activate_session(&w, &rq, &ident);
  assert_int_equal(w.err, 0);
  sl_ua_rd_init(&r, w.p, w.len, NULL);
  sl_ua_rd_nodeid(&r, &id);
  assert_int_equal(id.num, UA_ID_ACTIVATE_SESSION_REQ);
  /* The token's ExtensionObject names UserNameIdentityToken and carries
   * the password bytes (policy None). */
  int found = 0;
  for (size_t i = 0; i + 6 <= w.len; i++)
    found |= !memcmp(w.p + i, "secret", 6);
  assert_true(found);
  sl_ua_wr_free(&w);

  sl_ua_mon_req_t mi = {.node = {.ns = 2, .num = 7},
                        .handle = 3,
                        .sampling_ms = 100,
                        .queue_size = 10,
                        .deadband_type = 1,
                        .deadband = 0.5};
  sl_ua_wr_init(&w);
  sl_ua_enc_create_mon(&w, &rq, 1, &mi, 1);
  assert_int_equal(w.err, 0);
  /* The filter: DataChangeFilter's encoding id (724 = 0x02D4). */
  found = 0;
  for (size_t i = 0; i + 4 <= w.len; i++)
    found |= w.p[i] == 0x01 && w.p[i + 1] == 0 && w.p[i + 2] == 0xD4 &&
             w.p[i + 3] == 0x02;
  assert_true(found);
  sl_ua_wr_free(&w);

  const uint8_t ok[] = {'M', 'S', 'G', 'C', 0x10, 0, 0, 0};
  assert_int_equal(sl_ua_chunk_parse(ok, 65536, &h), 0);
  assert_string_equal(h.type, "MSG");
  assert_int_equal(h.chunk, 'C');
  assert_int_equal(h.size, 16);
  const uint8_t opn_c[] = {'O', 'P', 'N', 'C', 0x10, 0, 0, 0};
  assert_int_equal(sl_ua_chunk_parse(opn_c, 65536, &h), SL_UA_EDECODE);
  const uint8_t big[] = {'M', 'S', 'G', 'F', 0, 0, 2, 0};
  assert_int_equal(sl_ua_chunk_parse(big, 65536, &h), SL_UA_EDECODE);
  const uint8_t small[] = {'A', 'C', 'K', 'F', 7, 0, 0, 0};
  assert_int_equal(sl_ua_chunk_parse(small, 65536, &h), SL_UA_EDECODE);
  const uint8_t junk[] = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T'};
  assert_int_equal(sl_ua_chunk_parse(junk, 65536, &h), SL_UA_EDECODE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nodeid_binary),
      cmocka_unit_test(test_nodeid_text),
      cmocka_unit_test(test_variant),
      cmocka_unit_test(test_datavalue_diag),
      cmocka_unit_test(test_publish_response),
      cmocka_unit_test(test_fault_and_browse),
      cmocka_unit_test(test_requests_and_chunks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
