/*
 * connectors/opcua/ua_codec.c: OPC UA Binary built-in types (ua_codec.h):
 * the arena, the reader and writer, NodeIds in their four forms and three
 * encodings, Variant, DataValue, DiagnosticInfo (skipped), status names.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/opcua/ua_codec.h"

#define MAX_DEPTH 16 /* nested variants, diagnostic infos */

/* ---- arena -------------------------------------------------------------- */

struct sl_ua_block {
  struct sl_ua_block *next;
  size_t cap, used;
  _Alignas(8) unsigned char mem[];
};

void *sl_ua_arena_alloc(sl_ua_arena_t *a, size_t n) {
  struct sl_ua_block *b = a->head;
  n = (n + 7) & ~(size_t)7;
  if (!n)
    n = 8;
  if (a->limit && a->used + n > a->limit)
    return NULL;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > 16384 ? n : 16384;
    if (!(b = malloc(sizeof(*b) + cap)))
      return NULL;
    b->cap = cap;
    b->used = 0;
    b->next = a->head;
    a->head = b;
    a->total += cap;
  }
  void *p = b->mem + b->used;
  b->used += n;
  a->used += n;
  memset(p, 0, n);
  return p;
}

void sl_ua_arena_free(sl_ua_arena_t *a) {
  struct sl_ua_block *b = a->head;
  while (b) {
    struct sl_ua_block *n = b->next;
    free(b);
    b = n;
  }
  a->head = NULL;
  a->used = a->total = 0;
}

/* ---- time --------------------------------------------------------------- */

#define UNIX_EPOCH_TICKS 116444736000000000ll

int64_t sl_ua_ticks_to_unix_ns(int64_t ticks) {
  if (ticks <= UNIX_EPOCH_TICKS)
    return 0;
  if (ticks - UNIX_EPOCH_TICKS > INT64_MAX / 100)
    return INT64_MAX;
  return (ticks - UNIX_EPOCH_TICKS) * 100;
}

int64_t sl_ua_unix_ns_to_ticks(int64_t ns) {
  return ns <= 0 ? 0 : ns / 100 + UNIX_EPOCH_TICKS;
}

/* ---- reader ------------------------------------------------------------- */

void sl_ua_rd_init(sl_ua_rd_t *r, const void *p, size_t len,
                   sl_ua_arena_t *arena) {
  memset(r, 0, sizeof(*r));
  r->p = p;
  r->len = len;
  r->arena = arena;
}

int sl_ua_rd_fail(sl_ua_rd_t *r, int err) {
  if (!r->err)
    r->err = err;
  return r->err;
}

/* n bytes at the cursor, or NULL (reader failed) when fewer are left. */
static const uint8_t *take(sl_ua_rd_t *r, size_t n) {
  if (r->err || r->len - r->pos < n) {
    sl_ua_rd_fail(r, SL_UA_EDECODE);
    return NULL;
  }
  const uint8_t *p = r->p + r->pos;
  r->pos += n;
  return p;
}

static uint64_t le(const uint8_t *p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = n; i-- > 0;)
    v = (v << 8) | p[i];
  return v;
}

uint8_t sl_ua_rd_u8(sl_ua_rd_t *r) {
  const uint8_t *p = take(r, 1);
  return p ? p[0] : 0;
}
uint16_t sl_ua_rd_u16(sl_ua_rd_t *r) {
  const uint8_t *p = take(r, 2);
  return p ? (uint16_t)le(p, 2) : 0;
}
uint32_t sl_ua_rd_u32(sl_ua_rd_t *r) {
  const uint8_t *p = take(r, 4);
  return p ? (uint32_t)le(p, 4) : 0;
}
uint64_t sl_ua_rd_u64(sl_ua_rd_t *r) {
  const uint8_t *p = take(r, 8);
  return p ? le(p, 8) : 0;
}
int32_t sl_ua_rd_i32(sl_ua_rd_t *r) {
  return (int32_t)sl_ua_rd_u32(r);
}
int64_t sl_ua_rd_i64(sl_ua_rd_t *r) {
  return (int64_t)sl_ua_rd_u64(r);
}
float sl_ua_rd_f32(sl_ua_rd_t *r) {
  uint32_t u = sl_ua_rd_u32(r);
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}
double sl_ua_rd_f64(sl_ua_rd_t *r) {
  uint64_t u = sl_ua_rd_u64(r);
  double d;
  memcpy(&d, &u, sizeof(d));
  return d;
}
bool sl_ua_rd_bool(sl_ua_rd_t *r) {
  return sl_ua_rd_u8(r) != 0;
}

void sl_ua_rd_skip(sl_ua_rd_t *r, size_t n) {
  (void)take(r, n);
}

sl_ua_str_t sl_ua_rd_str(sl_ua_rd_t *r) {
  sl_ua_str_t s = {NULL, -1};
  int32_t n = sl_ua_rd_i32(r);
  if (r->err || n < 0) /* any negative length is the null string */
    return s;
  const uint8_t *p = take(r, (size_t)n);
  if (p) {
    s.p = (const char *)p;
    s.len = n;
  }
  return s;
}

uint32_t sl_ua_rd_alen(sl_ua_rd_t *r, size_t min_elem) {
  int32_t n = sl_ua_rd_i32(r);
  if (r->err || n <= 0)
    return 0;
  if ((size_t)n > sl_ua_rd_left(r) / (min_elem ? min_elem : 1)) {
    sl_ua_rd_fail(r, SL_UA_EDECODE);
    return 0;
  }
  return (uint32_t)n;
}

void *sl_ua_rd_alloc(sl_ua_rd_t *r, size_t n, size_t sz) {
  void *p;
  if (r->err || !n)
    return NULL;
  if (!r->arena || n > SIZE_MAX / sz ||
      !(p = sl_ua_arena_alloc(r->arena, n * sz))) {
    sl_ua_rd_fail(r, -ENOMEM);
    return NULL;
  }
  return p;
}

void sl_ua_rd_guid(sl_ua_rd_t *r, sl_ua_guid_t *g) {
  const uint8_t *p = take(r, 16);
  if (p)
    memcpy(g->b, p, 16);
  else
    memset(g, 0, sizeof(*g));
}

static void rd_nodeid_body(sl_ua_rd_t *r, uint8_t enc, sl_ua_nodeid_t *id) {
  memset(id, 0, sizeof(*id));
  id->str.len = -1;
  switch (enc & 0x3f) {
  case 0: /* two-byte */
    id->num = sl_ua_rd_u8(r);
    break;
  case 1: /* four-byte */
    id->ns = sl_ua_rd_u8(r);
    id->num = sl_ua_rd_u16(r);
    break;
  case 2:
    id->ns = sl_ua_rd_u16(r);
    id->num = sl_ua_rd_u32(r);
    break;
  case 3:
    id->kind = UA_NID_STRING;
    id->ns = sl_ua_rd_u16(r);
    id->str = sl_ua_rd_str(r);
    break;
  case 4:
    id->kind = UA_NID_GUID;
    id->ns = sl_ua_rd_u16(r);
    sl_ua_rd_guid(r, &id->guid);
    break;
  case 5:
    id->kind = UA_NID_OPAQUE;
    id->ns = sl_ua_rd_u16(r);
    id->str = sl_ua_rd_str(r);
    break;
  default:
    sl_ua_rd_fail(r, SL_UA_EDECODE);
  }
}

void sl_ua_rd_nodeid(sl_ua_rd_t *r, sl_ua_nodeid_t *id) {
  uint8_t enc = sl_ua_rd_u8(r);
  if (enc & 0xc0) /* the expanded flags do not belong in a NodeId */
    sl_ua_rd_fail(r, SL_UA_EDECODE);
  rd_nodeid_body(r, enc, id);
}

void sl_ua_rd_expnodeid(sl_ua_rd_t *r, sl_ua_expnodeid_t *id) {
  uint8_t enc = sl_ua_rd_u8(r);
  rd_nodeid_body(r, enc, &id->id);
  id->ns_uri.p = NULL;
  id->ns_uri.len = -1;
  id->server_index = 0;
  if (enc & 0x80)
    id->ns_uri = sl_ua_rd_str(r);
  if (enc & 0x40)
    id->server_index = sl_ua_rd_u32(r);
}

void sl_ua_rd_qname(sl_ua_rd_t *r, sl_ua_qname_t *q) {
  q->ns = sl_ua_rd_u16(r);
  q->name = sl_ua_rd_str(r);
}

void sl_ua_rd_ltext(sl_ua_rd_t *r, sl_ua_ltext_t *t) {
  uint8_t m = sl_ua_rd_u8(r);
  t->locale.p = t->text.p = NULL;
  t->locale.len = t->text.len = -1;
  if (m & 0x01)
    t->locale = sl_ua_rd_str(r);
  if (m & 0x02)
    t->text = sl_ua_rd_str(r);
}

void sl_ua_rd_extobj(sl_ua_rd_t *r, sl_ua_extobj_t *e) {
  sl_ua_rd_nodeid(r, &e->type);
  e->encoding = sl_ua_rd_u8(r);
  e->body.p = NULL;
  e->body.len = -1;
  if (e->encoding == 1 || e->encoding == 2)
    e->body = sl_ua_rd_str(r);
  else if (e->encoding)
    sl_ua_rd_fail(r, SL_UA_EDECODE);
}

/* Smallest encoding of one array element of a built-in type. */
static size_t min_size(unsigned t) {
  switch (t) {
  case UA_INT16:
  case UA_UINT16:
    return 2;
  case UA_INT32:
  case UA_UINT32:
  case UA_FLOAT:
  case UA_STATUSCODE:
  case UA_STRING:
  case UA_BYTESTRING:
  case UA_XMLELEMENT:
    return 4;
  case UA_INT64:
  case UA_UINT64:
  case UA_DOUBLE:
  case UA_DATETIME:
    return 8;
  case UA_GUID:
    return 16;
  case UA_QUALIFIEDNAME:
    return 6;
  case UA_EXTENSIONOBJECT:
    return 3;
  case UA_NODEID:
  case UA_EXPANDEDNODEID:
    return 2;
  default:
    return 1;
  }
}

/* One value of built-in type t into v (v->type set by the caller). */
static void rd_scalar(sl_ua_rd_t *r, unsigned t, sl_ua_variant_t *v) {
  switch (t) {
  case UA_BOOLEAN:
    v->v.b = sl_ua_rd_bool(r);
    break;
  case UA_SBYTE:
    v->v.i = (int8_t)sl_ua_rd_u8(r);
    break;
  case UA_BYTE:
    v->v.u = sl_ua_rd_u8(r);
    break;
  case UA_INT16:
    v->v.i = (int16_t)sl_ua_rd_u16(r);
    break;
  case UA_UINT16:
    v->v.u = sl_ua_rd_u16(r);
    break;
  case UA_INT32:
    v->v.i = sl_ua_rd_i32(r);
    break;
  case UA_UINT32:
  case UA_STATUSCODE:
    v->v.u = sl_ua_rd_u32(r);
    break;
  case UA_INT64:
    v->v.i = sl_ua_rd_i64(r);
    break;
  case UA_UINT64:
    v->v.u = sl_ua_rd_u64(r);
    break;
  case UA_FLOAT:
    v->v.d = (double)sl_ua_rd_f32(r);
    break;
  case UA_DOUBLE:
    v->v.d = sl_ua_rd_f64(r);
    break;
  case UA_DATETIME:
    v->v.dt = sl_ua_rd_i64(r);
    break;
  case UA_STRING:
  case UA_BYTESTRING:
  case UA_XMLELEMENT:
    v->v.s = sl_ua_rd_str(r);
    break;
  case UA_GUID:
    sl_ua_rd_guid(r, &v->v.guid);
    break;
  case UA_NODEID:
    if ((v->v.nid = sl_ua_rd_alloc(r, 1, sizeof(*v->v.nid))))
      sl_ua_rd_nodeid(r, v->v.nid);
    break;
  case UA_EXPANDEDNODEID: {
    sl_ua_expnodeid_t e;
    sl_ua_rd_expnodeid(r, &e);
    if ((v->v.nid = sl_ua_rd_alloc(r, 1, sizeof(*v->v.nid))))
      *v->v.nid = e.id;
    break;
  }
  case UA_QUALIFIEDNAME:
    if ((v->v.qn = sl_ua_rd_alloc(r, 1, sizeof(*v->v.qn))))
      sl_ua_rd_qname(r, v->v.qn);
    break;
  case UA_LOCALIZEDTEXT:
    if ((v->v.lt = sl_ua_rd_alloc(r, 1, sizeof(*v->v.lt))))
      sl_ua_rd_ltext(r, v->v.lt);
    break;
  case UA_EXTENSIONOBJECT:
    if ((v->v.eo = sl_ua_rd_alloc(r, 1, sizeof(*v->v.eo))))
      sl_ua_rd_extobj(r, v->v.eo);
    break;
  case UA_DATAVALUE:
    if ((v->v.dv = sl_ua_rd_alloc(r, 1, sizeof(*v->v.dv))))
      sl_ua_rd_datavalue(r, v->v.dv);
    break;
  case UA_VARIANT:
    if ((v->v.v = sl_ua_rd_alloc(r, 1, sizeof(*v->v.v))))
      sl_ua_rd_variant(r, v->v.v);
    break;
  case UA_DIAGNOSTICINFO:
    sl_ua_rd_skip_diag(r);
    break;
  default:
    sl_ua_rd_fail(r, SL_UA_EDECODE);
  }
}

void sl_ua_rd_variant(sl_ua_rd_t *r, sl_ua_variant_t *v) {
  uint8_t enc = sl_ua_rd_u8(r);
  unsigned t = enc & 0x3f;
  memset(v, 0, sizeof(*v));
  if (r->err)
    return;
  if (++r->depth > MAX_DEPTH) {
    sl_ua_rd_fail(r, SL_UA_EDECODE);
    goto out;
  }
  if (t > UA_DIAGNOSTICINFO) {
    sl_ua_rd_fail(r, SL_UA_EDECODE);
    goto out;
  }
  v->type = (uint8_t)t;
  if (t == 0) { /* empty: no body; array flags make no sense on it */
    if (enc & 0xc0)
      sl_ua_rd_fail(r, SL_UA_EDECODE);
    goto out;
  }
  if (!(enc & 0x80)) {
    if (enc & 0x40)
      sl_ua_rd_fail(r, SL_UA_EDECODE);
    else
      rd_scalar(r, t, v);
    goto out;
  }
  v->is_array = true;
  v->n = sl_ua_rd_alen(r, min_size(t));
  if (v->n && (v->arr = sl_ua_rd_alloc(r, v->n, sizeof(*v->arr))))
    for (uint32_t i = 0; i < v->n && !r->err; i++) {
      v->arr[i].type = (uint8_t)t;
      rd_scalar(r, t, &v->arr[i]);
    }
  if (enc & 0x40) { /* dimensions: read, checked, the array kept flat */
    uint32_t nd = sl_ua_rd_alen(r, 4);
    uint64_t prod = 1;
    for (uint32_t i = 0; i < nd && !r->err; i++) {
      int32_t d = sl_ua_rd_i32(r);
      prod = d < 0 ? 0 : SL_MIN(prod * (uint64_t)d, (uint64_t)UINT32_MAX + 1);
    }
    if (nd && prod != v->n)
      sl_ua_rd_fail(r, SL_UA_EDECODE);
  }
out:
  r->depth--;
}

void sl_ua_rd_datavalue(sl_ua_rd_t *r, sl_ua_datavalue_t *dv) {
  memset(dv, 0, sizeof(*dv));
  dv->mask = sl_ua_rd_u8(r);
  if (dv->mask & 0xc0)
    sl_ua_rd_fail(r, SL_UA_EDECODE);
  if (r->err)
    return;
  if (++r->depth > MAX_DEPTH) {
    sl_ua_rd_fail(r, SL_UA_EDECODE);
    r->depth--;
    return;
  }
  if (dv->mask & UA_DV_VALUE)
    sl_ua_rd_variant(r, &dv->value);
  if (dv->mask & UA_DV_STATUS)
    dv->status = sl_ua_rd_u32(r);
  if (dv->mask & UA_DV_SOURCE_TS)
    dv->source_ts = sl_ua_rd_i64(r);
  if (dv->mask & UA_DV_SOURCE_PICO)
    dv->source_pico = sl_ua_rd_u16(r);
  if (dv->mask & UA_DV_SERVER_TS)
    dv->server_ts = sl_ua_rd_i64(r);
  if (dv->mask & UA_DV_SERVER_PICO)
    dv->server_pico = sl_ua_rd_u16(r);
  r->depth--;
}

void sl_ua_rd_skip_diag(sl_ua_rd_t *r) {
  uint8_t m = sl_ua_rd_u8(r);
  if (r->err)
    return;
  if (++r->depth > MAX_DEPTH || (m & 0x80)) {
    sl_ua_rd_fail(r, SL_UA_EDECODE);
    r->depth--;
    return;
  }
  for (unsigned bit = 0x01; bit <= 0x08; bit <<= 1)
    if (m & bit) /* symbolic id, namespace, localized text, locale */
      sl_ua_rd_skip(r, 4);
  if (m & 0x10)
    (void)sl_ua_rd_str(r);
  if (m & 0x20)
    sl_ua_rd_skip(r, 4);
  if (m & 0x40)
    sl_ua_rd_skip_diag(r);
  r->depth--;
}

/* ---- writer ------------------------------------------------------------- */

void sl_ua_wr_init(sl_ua_wr_t *w) {
  memset(w, 0, sizeof(*w));
}

void sl_ua_wr_free(sl_ua_wr_t *w) {
  free(w->p);
  memset(w, 0, sizeof(*w));
}

void sl_ua_wr_bytes(sl_ua_wr_t *w, const void *p, size_t n) {
  if (w->err)
    return;
  if (w->cap - w->len < n) {
    size_t cap = w->cap ? w->cap : 256;
    while (cap - w->len < n)
      cap *= 2;
    uint8_t *q = realloc(w->p, cap);
    if (!q) {
      w->err = -ENOMEM;
      return;
    }
    w->p = q;
    w->cap = cap;
  }
  if (n)
    memcpy(w->p + w->len, p, n);
  w->len += n;
}

static void wr_le(sl_ua_wr_t *w, uint64_t v, unsigned n) {
  uint8_t b[8];
  for (unsigned i = 0; i < n; i++)
    b[i] = (uint8_t)(v >> (8 * i));
  sl_ua_wr_bytes(w, b, n);
}

void sl_ua_wr_u8(sl_ua_wr_t *w, uint8_t v) {
  wr_le(w, v, 1);
}
void sl_ua_wr_u16(sl_ua_wr_t *w, uint16_t v) {
  wr_le(w, v, 2);
}
void sl_ua_wr_u32(sl_ua_wr_t *w, uint32_t v) {
  wr_le(w, v, 4);
}
void sl_ua_wr_u64(sl_ua_wr_t *w, uint64_t v) {
  wr_le(w, v, 8);
}
void sl_ua_wr_i32(sl_ua_wr_t *w, int32_t v) {
  wr_le(w, (uint32_t)v, 4);
}
void sl_ua_wr_i64(sl_ua_wr_t *w, int64_t v) {
  wr_le(w, (uint64_t)v, 8);
}
void sl_ua_wr_f64(sl_ua_wr_t *w, double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof(u));
  wr_le(w, u, 8);
}
void sl_ua_wr_bool(sl_ua_wr_t *w, bool v) {
  wr_le(w, v ? 1 : 0, 1);
}

void sl_ua_wr_str(sl_ua_wr_t *w, sl_ua_str_t s) {
  if (s.len < 0) {
    sl_ua_wr_i32(w, -1);
    return;
  }
  sl_ua_wr_i32(w, s.len);
  sl_ua_wr_bytes(w, s.p, (size_t)s.len);
}

void sl_ua_wr_cstr(sl_ua_wr_t *w, const char *s) {
  sl_ua_str_t v = {s, s ? (int32_t)strlen(s) : -1};
  sl_ua_wr_str(w, v);
}

void sl_ua_wr_nodeid(sl_ua_wr_t *w, const sl_ua_nodeid_t *id) {
  switch (id->kind) {
  case UA_NID_NUMERIC:
    if (id->ns == 0 && id->num <= 0xff) {
      sl_ua_wr_u8(w, 0);
      sl_ua_wr_u8(w, (uint8_t)id->num);
    } else if (id->ns <= 0xff && id->num <= 0xffff) {
      sl_ua_wr_u8(w, 1);
      sl_ua_wr_u8(w, (uint8_t)id->ns);
      sl_ua_wr_u16(w, (uint16_t)id->num);
    } else {
      sl_ua_wr_u8(w, 2);
      sl_ua_wr_u16(w, id->ns);
      sl_ua_wr_u32(w, id->num);
    }
    break;
  case UA_NID_STRING:
  case UA_NID_OPAQUE:
    sl_ua_wr_u8(w, id->kind == UA_NID_STRING ? 3 : 5);
    sl_ua_wr_u16(w, id->ns);
    sl_ua_wr_str(w, id->str);
    break;
  default:
    sl_ua_wr_u8(w, 4);
    sl_ua_wr_u16(w, id->ns);
    sl_ua_wr_bytes(w, id->guid.b, 16);
  }
}

void sl_ua_wr_nodeid_num(sl_ua_wr_t *w, uint32_t num) {
  sl_ua_nodeid_t id = {.num = num, .str = {NULL, -1}};
  sl_ua_wr_nodeid(w, &id);
}

void sl_ua_wr_qname(sl_ua_wr_t *w, const sl_ua_qname_t *q) {
  sl_ua_wr_u16(w, q->ns);
  sl_ua_wr_str(w, q->name);
}

static void wr_scalar(sl_ua_wr_t *w, const sl_ua_variant_t *v) {
  switch (v->type) {
  case UA_BOOLEAN:
    sl_ua_wr_bool(w, v->v.b);
    break;
  case UA_SBYTE:
    sl_ua_wr_u8(w, (uint8_t)v->v.i);
    break;
  case UA_BYTE:
    sl_ua_wr_u8(w, (uint8_t)v->v.u);
    break;
  case UA_INT16:
    sl_ua_wr_u16(w, (uint16_t)v->v.i);
    break;
  case UA_UINT16:
    sl_ua_wr_u16(w, (uint16_t)v->v.u);
    break;
  case UA_INT32:
    sl_ua_wr_i32(w, (int32_t)v->v.i);
    break;
  case UA_UINT32:
  case UA_STATUSCODE:
    sl_ua_wr_u32(w, (uint32_t)v->v.u);
    break;
  case UA_INT64:
  case UA_DATETIME:
    sl_ua_wr_i64(w, v->type == UA_INT64 ? v->v.i : v->v.dt);
    break;
  case UA_UINT64:
    sl_ua_wr_u64(w, v->v.u);
    break;
  case UA_FLOAT: {
    float f = (float)v->v.d;
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    sl_ua_wr_u32(w, u);
    break;
  }
  case UA_DOUBLE:
    sl_ua_wr_f64(w, v->v.d);
    break;
  case UA_STRING:
  case UA_BYTESTRING:
  case UA_XMLELEMENT:
    sl_ua_wr_str(w, v->v.s);
    break;
  case UA_GUID:
    sl_ua_wr_bytes(w, v->v.guid.b, 16);
    break;
  case UA_NODEID:
    sl_ua_wr_nodeid(w, v->v.nid);
    break;
  default: /* the client writes no other type */
    w->err = w->err ? w->err : -EINVAL;
  }
}

void sl_ua_wr_variant(sl_ua_wr_t *w, const sl_ua_variant_t *v) {
  if (!v->is_array) {
    sl_ua_wr_u8(w, v->type);
    if (v->type)
      wr_scalar(w, v);
    return;
  }
  sl_ua_wr_u8(w, (uint8_t)(v->type | 0x80));
  sl_ua_wr_i32(w, (int32_t)v->n);
  for (uint32_t i = 0; i < v->n; i++)
    wr_scalar(w, &v->arr[i]);
}

void sl_ua_wr_patch_u32(sl_ua_wr_t *w, size_t off, uint32_t v) {
  if (w->err || off + 4 > w->len)
    return;
  for (unsigned i = 0; i < 4; i++)
    w->p[off + i] = (uint8_t)(v >> (8 * i));
}
