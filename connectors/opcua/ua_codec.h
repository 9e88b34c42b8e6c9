/*
 * connectors/opcua: OPC UA Binary encoding (Part 6, section 5.2), the codec
 * of sluice-opcua's client (library sl_opcua_codec).
 *
 * Why hand-written: Debian 12 packages no C OPC UA library (open62541
 * arrived only in later releases) and sluice builds from Debian packages
 * alone, so the client speaks OPC UA Binary itself. It covers what a
 * data-collection client needs: the built-in types, the services of
 * ua_msg.h, nothing of the server side.
 *
 * Reading. A reader (sl_ua_rd_t) walks a buffer; the first error sticks (err
 * < 0) and every later read returns zeros, so decoders check once at the
 * end. Strings and byte strings are views into the buffer (not copied, not
 * NUL-terminated). Arrays and nested values are allocated from an arena
 * (sl_ua_arena_t) freed in one call; every allocation is bounded by the bytes
 * left in the buffer, so hostile lengths cannot make it allocate much more
 * than the message's own size.
 *
 * Writing. A writer (sl_ua_wr_t) grows its buffer; an allocation failure
 * sticks like a read error.
 */
#ifndef SL_UA_CODEC_H
#define SL_UA_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ---- errors and status codes ------------------------------------------- */

/* Malformed input (a length past the end, a bad encoding byte, too deep). */
#define SL_UA_EDECODE SL_EPROTO

/* Built-in type ids (Part 6 table 1). */
enum {
  UA_BOOLEAN = 1,
  UA_SBYTE = 2,
  UA_BYTE = 3,
  UA_INT16 = 4,
  UA_UINT16 = 5,
  UA_INT32 = 6,
  UA_UINT32 = 7,
  UA_INT64 = 8,
  UA_UINT64 = 9,
  UA_FLOAT = 10,
  UA_DOUBLE = 11,
  UA_STRING = 12,
  UA_DATETIME = 13,
  UA_GUID = 14,
  UA_BYTESTRING = 15,
  UA_XMLELEMENT = 16,
  UA_NODEID = 17,
  UA_EXPANDEDNODEID = 18,
  UA_STATUSCODE = 19,
  UA_QUALIFIEDNAME = 20,
  UA_LOCALIZEDTEXT = 21,
  UA_EXTENSIONOBJECT = 22,
  UA_DATAVALUE = 23,
  UA_VARIANT = 24,
  UA_DIAGNOSTICINFO = 25,
};

/* The name of a status code ("BadNodeIdUnknown"); "Good", "Uncertain" or
 * "Bad" plus the hex code for one not in the table. Static or buf. */
const char *sl_ua_status_name(uint32_t code, char *buf, size_t len);
/* The name of a built-in type id ("Double"), "?" when unknown. */
const char *sl_ua_type_name(unsigned type);

#define UA_GOOD 0x00000000u
#define UA_BAD_UNEXPECTED 0x80010000u
#define UA_BAD_INTERNAL 0x80020000u
#define UA_BAD_OUT_OF_MEMORY 0x80030000u
#define UA_BAD_COMMUNICATION 0x80050000u
#define UA_BAD_DECODING 0x80070000u
#define UA_BAD_TIMEOUT 0x800A0000u
#define UA_BAD_SERVICE_UNSUPPORTED 0x800B0000u
#define UA_BAD_TOO_MANY_OPERATIONS 0x80100000u
#define UA_BAD_SECURE_CHANNEL_ID_INVALID 0x80220000u
#define UA_BAD_SESSION_ID_INVALID 0x80250000u
#define UA_BAD_SESSION_CLOSED 0x80260000u
#define UA_BAD_SESSION_NOT_ACTIVATED 0x80270000u
#define UA_BAD_SUBSCRIPTION_ID_INVALID 0x80280000u
#define UA_BAD_NODE_ID_UNKNOWN 0x80340000u
#define UA_BAD_NOT_READABLE 0x803A0000u
#define UA_BAD_USER_ACCESS_DENIED 0x801F0000u
#define UA_BAD_IDENTITY_TOKEN_INVALID 0x80200000u
#define UA_BAD_IDENTITY_TOKEN_REJECTED 0x80210000u
#define UA_BAD_TOO_MANY_MONITORED_ITEMS 0x80DB0000u
#define UA_BAD_MESSAGE_NOT_AVAILABLE 0x807B0000u
#define UA_BAD_NO_SUBSCRIPTION 0x80790000u
#define UA_BAD_SEQUENCE_NUMBER_UNKNOWN 0x807A0000u
#define UA_BAD_TOO_MANY_PUBLISH_REQUESTS 0x80780000u
#define UA_BAD_NOTHING_TO_DO 0x800F0000u
#define UA_BAD_NO_MATCH 0x806F0000u
#define UA_BAD_WAITING_FOR_INITIAL_DATA 0x80320000u

/* Severity: 0 good, 1 uncertain, 2 (or 3) bad. */
static inline unsigned sl_ua_severity(uint32_t code) {
  return code >> 30;
}

/* ---- arena -------------------------------------------------------------- */

typedef struct sl_ua_arena {
  struct sl_ua_block *head; /* owned blocks */
  size_t used, total;       /* bytes handed out, bytes allocated */
  size_t limit;             /* 0: unlimited */
} sl_ua_arena_t;

/* Zeroed, 8-aligned memory living until sl_ua_arena_free(); NULL when out
 * of memory or past limit. */
void *sl_ua_arena_alloc(sl_ua_arena_t *a, size_t n);
void sl_ua_arena_free(sl_ua_arena_t *a);

/* ---- values ------------------------------------------------------------- */

/* A string or byte string view; len -1 is the null string. */
typedef struct sl_ua_str {
  const char *p;
  int32_t len;
} sl_ua_str_t;

typedef struct sl_ua_guid {
  uint8_t b[16]; /* Data1 LE u32, Data2 LE u16, Data3 LE u16, Data4[8] */
} sl_ua_guid_t;

enum {
  UA_NID_NUMERIC = 0,
  UA_NID_STRING = 1,
  UA_NID_GUID = 2,
  UA_NID_OPAQUE = 3
};

typedef struct sl_ua_nodeid {
  uint16_t ns;
  uint8_t kind; /* UA_NID_* */
  uint32_t num;
  sl_ua_str_t str; /* string or opaque */
  sl_ua_guid_t guid;
} sl_ua_nodeid_t;

typedef struct sl_ua_expnodeid {
  sl_ua_nodeid_t id;
  sl_ua_str_t ns_uri;
  uint32_t server_index;
} sl_ua_expnodeid_t;

typedef struct sl_ua_qname {
  uint16_t ns;
  sl_ua_str_t name;
} sl_ua_qname_t;

typedef struct sl_ua_ltext {
  sl_ua_str_t locale, text;
} sl_ua_ltext_t;

/* An ExtensionObject: its type's encoding id and the undecoded body. */
typedef struct sl_ua_extobj {
  sl_ua_nodeid_t type;
  uint8_t encoding; /* 0 none, 1 binary, 2 xml */
  sl_ua_str_t body;
} sl_ua_extobj_t;

/* A Variant. Scalars in the union; arrays (multi-dimensional ones
 * flattened) as n elements of arr, each a scalar of the same type. */
typedef struct sl_ua_variant {
  uint8_t type; /* built-in id, 0: empty */
  bool is_array;
  uint32_t n;                /* array length */
  struct sl_ua_variant *arr; /* array elements (arena) */
  union {
    bool b;
    int64_t i;     /* SByte, Int16, Int32, Int64 */
    uint64_t u;    /* Byte, UInt16, UInt32, UInt64, StatusCode */
    double d;      /* Float, Double */
    int64_t dt;    /* DateTime: 100 ns ticks since 1601-01-01 */
    sl_ua_str_t s; /* String, ByteString, XmlElement */
    sl_ua_guid_t guid;
    sl_ua_nodeid_t *nid;        /* NodeId, ExpandedNodeId's id (arena) */
    sl_ua_qname_t *qn;          /* QualifiedName (arena) */
    sl_ua_ltext_t *lt;          /* LocalizedText (arena) */
    sl_ua_extobj_t *eo;         /* ExtensionObject (arena) */
    struct sl_ua_datavalue *dv; /* DataValue (arena) */
    struct sl_ua_variant *v;    /* Variant in a Variant array (arena) */
  } v;
} sl_ua_variant_t;

/* DataValue encoding mask bits. */
enum {
  UA_DV_VALUE = 0x01,
  UA_DV_STATUS = 0x02,
  UA_DV_SOURCE_TS = 0x04,
  UA_DV_SERVER_TS = 0x08,
  UA_DV_SOURCE_PICO = 0x10,
  UA_DV_SERVER_PICO = 0x20,
};

typedef struct sl_ua_datavalue {
  uint8_t mask; /* UA_DV_* present */
  sl_ua_variant_t value;
  uint32_t status;              /* 0 (Good) when absent */
  int64_t source_ts, server_ts; /* DateTime ticks, 0 when absent */
  uint16_t source_pico, server_pico;
} sl_ua_datavalue_t;

/* DateTime ticks <-> Unix nanoseconds (0 ticks stays 0). */
int64_t sl_ua_ticks_to_unix_ns(int64_t ticks);
int64_t sl_ua_unix_ns_to_ticks(int64_t ns);

/* ---- reader ------------------------------------------------------------- */

typedef struct sl_ua_rd {
  const uint8_t *p;
  size_t len, pos;
  int err;   /* 0 or SL_UA_EDECODE / -ENOMEM, sticky */
  int depth; /* nesting guard */
  sl_ua_arena_t *arena;
} sl_ua_rd_t;

void sl_ua_rd_init(sl_ua_rd_t *r, const void *p, size_t len,
                   sl_ua_arena_t *arena);
/* Marks r failed (the first error sticks); returns r->err. */
int sl_ua_rd_fail(sl_ua_rd_t *r, int err);
static inline size_t sl_ua_rd_left(const sl_ua_rd_t *r) {
  return r->err ? 0 : r->len - r->pos;
}

uint8_t sl_ua_rd_u8(sl_ua_rd_t *r);
uint16_t sl_ua_rd_u16(sl_ua_rd_t *r);
uint32_t sl_ua_rd_u32(sl_ua_rd_t *r);
uint64_t sl_ua_rd_u64(sl_ua_rd_t *r);
int32_t sl_ua_rd_i32(sl_ua_rd_t *r);
int64_t sl_ua_rd_i64(sl_ua_rd_t *r);
float sl_ua_rd_f32(sl_ua_rd_t *r);
double sl_ua_rd_f64(sl_ua_rd_t *r);
bool sl_ua_rd_bool(sl_ua_rd_t *r);
sl_ua_str_t sl_ua_rd_str(sl_ua_rd_t *r);
void sl_ua_rd_skip(sl_ua_rd_t *r, size_t n);
void sl_ua_rd_guid(sl_ua_rd_t *r, sl_ua_guid_t *g);
void sl_ua_rd_nodeid(sl_ua_rd_t *r, sl_ua_nodeid_t *id);
void sl_ua_rd_expnodeid(sl_ua_rd_t *r, sl_ua_expnodeid_t *id);
void sl_ua_rd_qname(sl_ua_rd_t *r, sl_ua_qname_t *q);
void sl_ua_rd_ltext(sl_ua_rd_t *r, sl_ua_ltext_t *t);
void sl_ua_rd_extobj(sl_ua_rd_t *r, sl_ua_extobj_t *e);
void sl_ua_rd_variant(sl_ua_rd_t *r, sl_ua_variant_t *v);
void sl_ua_rd_datavalue(sl_ua_rd_t *r, sl_ua_datavalue_t *dv);
/* Reads a DiagnosticInfo and throws it away. */
void sl_ua_rd_skip_diag(sl_ua_rd_t *r);
/* Reads an array length: -1 (null) reads as 0; a length that cannot fit
 * in the bytes left (at least min_elem bytes each) fails the reader. */
uint32_t sl_ua_rd_alen(sl_ua_rd_t *r, size_t min_elem);
/* n elements of size sz from the arena (NULL and a failed reader on
 * exhaustion; NULL without failure for n 0). */
void *sl_ua_rd_alloc(sl_ua_rd_t *r, size_t n, size_t sz);

/* ---- writer ------------------------------------------------------------- */

typedef struct sl_ua_wr {
  uint8_t *p; /* owned; free() */
  size_t len, cap;
  int err; /* 0 or -ENOMEM, sticky */
} sl_ua_wr_t;

void sl_ua_wr_init(sl_ua_wr_t *w);
void sl_ua_wr_free(sl_ua_wr_t *w);
void sl_ua_wr_bytes(sl_ua_wr_t *w, const void *p, size_t n);
void sl_ua_wr_u8(sl_ua_wr_t *w, uint8_t v);
void sl_ua_wr_u16(sl_ua_wr_t *w, uint16_t v);
void sl_ua_wr_u32(sl_ua_wr_t *w, uint32_t v);
void sl_ua_wr_u64(sl_ua_wr_t *w, uint64_t v);
void sl_ua_wr_i32(sl_ua_wr_t *w, int32_t v);
void sl_ua_wr_i64(sl_ua_wr_t *w, int64_t v);
void sl_ua_wr_f64(sl_ua_wr_t *w, double v);
void sl_ua_wr_bool(sl_ua_wr_t *w, bool v);
/* A string view; len -1 writes the null string. */
void sl_ua_wr_str(sl_ua_wr_t *w, sl_ua_str_t s);
/* A C string; NULL writes the null string. */
void sl_ua_wr_cstr(sl_ua_wr_t *w, const char *s);
/* The most compact encoding of id (two-byte, four-byte or full). */
void sl_ua_wr_nodeid(sl_ua_wr_t *w, const sl_ua_nodeid_t *id);
/* A numeric ns=0 NodeId. */
void sl_ua_wr_nodeid_num(sl_ua_wr_t *w, uint32_t num);
void sl_ua_wr_qname(sl_ua_wr_t *w, const sl_ua_qname_t *q);
void sl_ua_wr_variant(sl_ua_wr_t *w, const sl_ua_variant_t *v);
/* Overwrites 4 bytes at off (a length or size filled in afterwards). */
void sl_ua_wr_patch_u32(sl_ua_wr_t *w, size_t off, uint32_t v);

/* ---- NodeId text form ------------------------------------------------- */

/*
 * Parses "ns=2;i=5", "i=85", "ns=1;s=Line1.Temp", "ns=3;g=<guid>",
 * "ns=4;b=<base64>" (the standard text forms). String, opaque and GUID
 * bytes are copied into buf (len bytes); id->str points there. Returns 0 or
 * -EINVAL.
 */
int sl_ua_nodeid_parse(const char *text, sl_ua_nodeid_t *id, char *buf,
                       size_t len);
/* Formats id in the same text form into buf; returns buf. */
char *sl_ua_nodeid_format(const sl_ua_nodeid_t *id, char *buf, size_t len);
bool sl_ua_nodeid_eq(const sl_ua_nodeid_t *a, const sl_ua_nodeid_t *b);
static inline bool sl_ua_str_eq(sl_ua_str_t s, const char *c) {
  size_t i = 0;
  if (s.len < 0)
    return false;
  for (; i < (size_t)s.len; i++)
    if (!c[i] || c[i] != s.p[i])
      return false;
  return c[i] == '\0';
}

#endif /* SL_UA_CODEC_H */
