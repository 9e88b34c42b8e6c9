/*
 * The JSON scanner behind sl_json_decode_mapped() and sl_json_decode_body():
 * types shared by its lexer (json_scan.c) and its parsers
 * (decode_json_mapped.c; json_tree.c for decode_json.c). Private to decode/.
 */
#ifndef SL_DECODE_JSON_SCAN_H
#define SL_DECODE_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { P_VALUE, P_TIME, P_QUALITY, P_UNIT, P_DATATYPE, NPATHS };

typedef enum {
  T_EOF,
  T_INVALID,
  T_LBRACE,
  T_RBRACE,
  T_LBRACKET,
  T_RBRACKET,
  T_COLON,
  T_COMMA,
  T_STRING,
  T_INT,
  T_REAL,
  T_TRUE,
  T_FALSE,
  T_NULL,
} tok_type_t;

typedef struct tok {
  tok_type_t type;
  const unsigned char *s, *e; /* T_STRING: the raw bytes between quotes */
  bool escaped;               /* T_STRING: has a backslash escape */
  bool nul;                   /* T_STRING: has \u0000 */
  int64_t i;                  /* T_INT */
  double d;                   /* T_REAL */
} tok_t;

/* A value found at a mapped path. */
typedef struct found {
  tok_type_t type; /* T_EOF: not found; T_LBRACE/T_LBRACKET: a container */
  int64_t i;
  double d;
  size_t str; /* T_STRING: offset of the decoded, NUL-terminated text */
} found_t;

/* A growable byte buffer that starts in the scanner (no allocation for
 * ordinary payloads). */
typedef struct arena {
  char *p;
  size_t len, cap;
  bool heap;
} arena_t;

/* A key of an object being parsed, for the duplicate check. */
typedef struct key {
  const unsigned char *raw; /* the key's bytes, when it has no escapes */
  size_t off;               /* else its decoded bytes in kbuf at off */
  size_t len;
  uint32_t hash;
} jkey_t;

/* The rest of each mapped path still to match below the current object
 * (NULL: the path cannot match there). */
typedef struct scan {
  const unsigned char *p, *end, *base;
  unsigned depth; /* values open, the root included (as jansson counts) */
  int err;        /* first error: SL_EPROTO or -ENOMEM; 0 = none */
  const char *reason;
  char *msg;
  size_t msglen;
  found_t found[NPATHS]; /* the record (event) being parsed */
  arena_t str;           /* decoded strings of the record */
  arena_t kbuf;          /* decoded escaped keys of the open objects */
  jkey_t *keys;          /* keys of the open objects, innermost last */
  size_t nkeys, capkeys;
  char str0[512], kbuf0[256];
  jkey_t keys0[32];
} scan_t;

/* The duplicate check of one object being parsed. */
typedef struct json_keyset {
  size_t first;  /* the object's first key in s->keys */
  uint32_t *tab; /* index + 1, or 0; NULL while linear (free() it) */
  size_t cap;    /* slots, a power of two */
} json_keyset_t;

/* Pushes the key in t (a T_STRING without NUL) onto s->keys and adds it to
 * ks. Returns 1 if the object already has it, 0, or -ENOMEM. Popping: set
 * s->nkeys back to ks->first (and s->kbuf.len to what it was). */
int json__key_push(scan_t *s, const tok_t *t, json_keyset_t *ks);
/* The key token t of an object member, checked and pushed onto ks: a
 * string, without NUL, not seen before in the object. Returns 0, or -1
 * with the error recorded in s (both object walkers' one set of rules and
 * messages). */
int json__member_key(scan_t *s, const tok_t *t, json_keyset_t *ks);
/* A pushed key's bytes (k->len of them, not terminated). */
const unsigned char *json__key_bytes(const scan_t *s, const jkey_t *k);

/* Records the first error only, as jansson does: reason for the metrics,
 * the message (with the byte offset) in s->msg. */
void json__fail(scan_t *s, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records -ENOMEM (reason no_memory) unless an error is recorded. */
void json__no_memory(scan_t *s);
/* Reads the next token into t. An error inside a token is recorded in s
 * and gives T_INVALID. T_STRING tokens point into the payload. */
void json__lex(scan_t *s, tok_t *t);
/* Decodes a string token (checked by json__lex) into a, NUL-terminated;
 * *off gets where it starts. Returns 0 or -ENOMEM. */
int json__decode_string(const tok_t *t, arena_t *a, size_t *off);

#endif /* SL_DECODE_JSON_SCAN_H */
