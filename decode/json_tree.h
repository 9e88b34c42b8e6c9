/*
 * The parsed JSON value behind sl_json_decode_body() (decode_json.c): a
 * flat tree of nodes in arrays reused from event to event, built by
 * json_tree.c on the json_scan.c lexer. Private to decode/.
 */
#ifndef SL_DECODE_JSON_TREE_H
#define SL_DECODE_JSON_TREE_H

#include "decode/json_scan.h"
#include "sluice/v1/event.pb-c.h"

/* One JSON value. Containers list their children through first/next
 * (indices; 0 = none: node 0 is always the root). */
typedef struct jnode {
  tok_type_t type; /* T_STRING..T_NULL; T_LBRACE object; T_LBRACKET array */
  uint32_t first, next, n;
  uint32_t key, klen; /* member of an object: its key in text at key */
  uint32_t str, slen; /* T_STRING: its decoded text at str */
  int64_t i;          /* T_INT */
  double d;           /* T_REAL */
} jnode_t;

/* Reusable per-event room: grown on the heap only when an event does not
 * fit the inline arrays, and kept for the rest of the body. */
typedef struct body {
  scan_t s;
  jnode_t *nodes;
  size_t nnodes, capnodes;
  arena_t text; /* decoded keys and strings, NUL-terminated */
  Sluice__V1__Label *labels;
  Sluice__V1__Box *boxes;
  Sluice__V1__Attribute *attrs;
  void **ptrs; /* the pointer arrays of labels, boxes and attributes */
  size_t caplabels, capboxes, capattrs, capptrs;
  uint8_t *raw;
  size_t capraw;
  jnode_t nodes0[48];
  char text0[1024];
} body_t;

static inline jnode_t *N(body_t *b, uint32_t i) {
  return &b->nodes[i];
}

static inline const char *TXT(body_t *b, uint32_t off) {
  return b->text.p + off;
}

/* The accessors both decoders of the tree use (decode_json.c,
 * decode_inference.c). */
static inline bool json__is_number(body_t *b, uint32_t i) {
  return i && (N(b, i)->type == T_INT || N(b, i)->type == T_REAL);
}
static inline double json__number(body_t *b, uint32_t i) {
  return N(b, i)->type == T_INT ? (double)N(b, i)->i : N(b, i)->d;
}
/* The member key of object o (0: none). Node 0 is never a member. */
uint32_t json__member(body_t *b, uint32_t o, const char *key);
/* Checks that every key of o is in allowed (NULL-terminated; the first
 * unknown one in document order is the error: SL_EPROTO with "unknown key
 * \"K\" in WHAT" in e) and puts each member in slot[its index]. */
int json__keys(body_t *b, uint32_t o, const char *const *allowed,
               uint32_t *slot, const char *what, char *e, size_t el);

/* Starts decoding data (len bytes); the scanner's messages go to msg. */
void json__body_open(body_t *b, const char *data, size_t len, char *msg,
                     size_t msglen);
/* json__body_open() that keeps what earlier payloads grew on the heap (b
 * zeroed before its first use): no allocation for payloads that fit. Only
 * the scanner's and the tree's arrays are kept (not labels, boxes, ...). */
void json__body_reopen(body_t *b, const char *data, size_t len, char *msg,
                       size_t msglen);
/* Frees what b grew on the heap (not b). */
void json__body_close(body_t *b);
/* Parses the value starting with t as node 0 (the nodes and text of the
 * previous event are reused). An error is recorded in b->s. */
void json__tree_parse(body_t *b, tok_t *t);
/* Newlines in [p, e). */
size_t json__newlines(const unsigned char *p, const unsigned char *e);
/* The syntax error the scanner recorded in msg ("invalid JSON at byte N:
 * text") as "line L: invalid JSON: text" in errstr, L counted as jansson
 * did from the value that starts at start on line line. Returns
 * SL_EPROTO, or -ENOMEM when that was the error. */
int json__syntax_error(body_t *b, const unsigned char *start, size_t line,
                       const char *msg, char *errstr, size_t errlen);

#endif
