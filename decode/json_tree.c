/*
 * The flat tree of one JSON value for sl_json_decode_body() (json_tree.h):
 * jansson's parser (nesting, duplicate keys, depth) on the json_scan.c
 * lexer, keeping every value in reusable arrays; and the syntax errors in
 * jansson's "line N" terms.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "decode/json_tree.h"

/* jansson's JSON_PARSER_MAX_DEPTH (decode_json_mapped.c agrees). */
#define MAX_DEPTH 2048

/* A new node (its index), or 0 with the error recorded. */
static uint32_t node_new(body_t *b) {
  if (b->nnodes == b->capnodes) {
    size_t cap = b->capnodes * 2;
    jnode_t *p = b->nodes == b->nodes0 ? malloc(cap * sizeof(*p))
                                       : realloc(b->nodes, cap * sizeof(*p));
    if (!p || cap > UINT32_MAX) {
      free(p == b->nodes ? NULL : p);
      json__no_memory(&b->s);
      return 0;
    }
    if (b->nodes == b->nodes0)
      memcpy(p, b->nodes0, sizeof(b->nodes0));
    b->nodes = p;
    b->capnodes = cap;
  }
  return (uint32_t)b->nnodes++;
}

/* Decodes string token t into b->text: *off, *len. */
static int text_add(body_t *b, const tok_t *t, uint32_t *off, uint32_t *len) {
  size_t o;
  if (json__decode_string(t, &b->text, &o) < 0 || b->text.len > UINT32_MAX) {
    json__no_memory(&b->s);
    return -1;
  }
  *off = (uint32_t)o;
  *len = (uint32_t)(b->text.len - o - 1);
  return 0;
}

static void parse_value(body_t *b, tok_t *t, uint32_t idx);

static void link_child(body_t *b, uint32_t parent, uint32_t *last, uint32_t c) {
  if (*last)
    N(b, *last)->next = c;
  else
    N(b, parent)->first = c;
  *last = c;
  N(b, parent)->n++;
}

static void parse_object(body_t *b, tok_t *t, uint32_t idx) {
  scan_t *s = &b->s;
  json_keyset_t ks = {.first = s->nkeys};
  size_t kmark = s->kbuf.len;
  uint32_t last = 0;

  json__lex(s, t);
  if (t->type == T_RBRACE)
    goto out;
  for (;;) {
    uint32_t c, koff, klen;
    if (json__member_key(s, t, &ks) < 0)
      goto out;
    if (text_add(b, t, &koff, &klen) < 0 || !(c = node_new(b)))
      goto out;
    N(b, c)->key = koff;
    N(b, c)->klen = klen;
    link_child(b, idx, &last, c);
    json__lex(s, t);
    if (t->type != T_COLON) {
      json__fail(s, "bad_json", "':' expected");
      goto out;
    }
    json__lex(s, t);
    parse_value(b, t, c);
    if (s->err)
      goto out;
    json__lex(s, t);
    if (t->type != T_COMMA)
      break;
    json__lex(s, t);
  }
  if (t->type != T_RBRACE)
    json__fail(s, "bad_json", "'}' expected");
out:
  free(ks.tab);
  s->nkeys = ks.first;
  s->kbuf.len = kmark;
}

static void parse_array(body_t *b, tok_t *t, uint32_t idx) {
  scan_t *s = &b->s;
  uint32_t last = 0, c;
  json__lex(s, t);
  if (t->type == T_RBRACKET)
    return;
  while (t->type != T_EOF) {
    if (!(c = node_new(b)))
      return;
    link_child(b, idx, &last, c);
    parse_value(b, t, c);
    if (s->err)
      return;
    json__lex(s, t);
    if (t->type != T_COMMA)
      break;
    json__lex(s, t);
  }
  if (t->type != T_RBRACKET)
    json__fail(s, "bad_json", "']' expected");
}

/* The value whose first token is t, into node idx (jansson's parse_value:
 * the depth is checked after the token was read). */
static void parse_value(body_t *b, tok_t *t, uint32_t idx) {
  scan_t *s = &b->s;
  jnode_t *nd = N(b, idx);
  nd->type = t->type;
  nd->first = nd->next = nd->n = 0;
  if (s->err)
    return;
  if (++s->depth > MAX_DEPTH) {
    json__fail(s, "too_deep", "maximum parsing depth reached");
    return;
  }
  switch (t->type) {
  case T_STRING:
    if (t->nul) {
      json__fail(s, "bad_json", "\\u0000 is not allowed in a string");
      return;
    }
    if (text_add(b, t, &nd->str, &nd->slen) < 0)
      return;
    break;
  case T_INT:
    nd->i = t->i;
    break;
  case T_REAL:
    nd->d = t->d;
    break;
  case T_TRUE:
  case T_FALSE:
  case T_NULL:
    break;
  case T_LBRACE:
    parse_object(b, t, idx);
    break;
  case T_LBRACKET:
    parse_array(b, t, idx);
    break;
  case T_INVALID:
    json__fail(s, "bad_json", "invalid token");
    return;
  default:
    json__fail(s, "bad_json", "unexpected token");
    return;
  }
  s->depth--;
}

void json__tree_parse(body_t *b, tok_t *t) {
  b->nnodes = 1;
  b->text.len = 0;
  parse_value(b, t, 0);
}

void json__body_open(body_t *b, const char *data, size_t len, char *msg,
                     size_t msglen) {
  scan_t *s = &b->s;
  memset(b, 0, offsetof(body_t, nodes0));
  s->p = s->base = (const unsigned char *)data;
  s->end = s->p + len;
  s->msg = msg;
  s->msglen = msglen;
  s->str = (arena_t){s->str0, 0, sizeof(s->str0), false};
  s->kbuf = (arena_t){s->kbuf0, 0, sizeof(s->kbuf0), false};
  s->keys = s->keys0;
  s->capkeys = sizeof(s->keys0) / sizeof(s->keys0[0]);
  b->nodes = b->nodes0;
  b->capnodes = sizeof(b->nodes0) / sizeof(b->nodes0[0]);
  b->text = (arena_t){b->text0, 0, sizeof(b->text0), false};
}

void json__body_reopen(body_t *b, const char *data, size_t len, char *msg,
                       size_t msglen) {
  scan_t *s = &b->s;
  arena_t str = s->str, kbuf = s->kbuf, text = b->text;
  jkey_t *keys = s->keys;
  jnode_t *nodes = b->nodes;
  size_t capkeys = s->capkeys, capnodes = b->capnodes;
  json__body_open(b, data, len, msg, msglen);
  if (str.heap)
    s->str = (arena_t){str.p, 0, str.cap, true};
  if (kbuf.heap)
    s->kbuf = (arena_t){kbuf.p, 0, kbuf.cap, true};
  if (text.heap)
    b->text = (arena_t){text.p, 0, text.cap, true};
  if (keys && keys != s->keys0) {
    s->keys = keys;
    s->capkeys = capkeys;
  }
  if (nodes && nodes != b->nodes0) {
    b->nodes = nodes;
    b->capnodes = capnodes;
  }
}

void json__body_close(body_t *b) {
  scan_t *s = &b->s;
  if (s->str.heap)
    free(s->str.p);
  if (s->kbuf.heap)
    free(s->kbuf.p);
  if (s->keys != s->keys0)
    free(s->keys);
  if (b->nodes != b->nodes0)
    free(b->nodes);
  if (b->text.heap)
    free(b->text.p);
  free(b->labels);
  free(b->boxes);
  free(b->attrs);
  free(b->ptrs);
  free(b->raw);
}

size_t json__newlines(const unsigned char *p, const unsigned char *e) {
  size_t n = 0;
  while (p < e && (p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
    n++;
    p++;
  }
  return n;
}

/* Where jansson's lexer stood for an error in the string escape at at: it
 * checks escapes as it reads (up to the first byte that is not hex after
 * \u, which it has read: a newline there counts) and surrogate pairs only
 * once the string is complete. The scanner stops at the backslash. */
static size_t jansson_escape_end(const unsigned char *p, size_t len,
                                 size_t at) {
  for (size_t j = at; j < len;) {
    if (p[j] == '"' || p[j] < 0x20)
      return at;
    if (p[j] != '\\') {
      j++;
      continue;
    }
    size_t k = j + 1;
    if (k >= len)
      return len;
    if (p[k] == 'u') {
      for (k++; k < len && k < j + 6 && isxdigit(p[k]); k++)
        ;
      if (k == j + 6) {
        j = k;
        continue;
      }
      return k < len ? k + 1 : len;
    }
    if (!strchr("\"\\/bfnrt", p[k]) || !p[k])
      return k + 1;
    j = k + 1;
  }
  return at;
}

/* The syntax error the scanner recorded in msg ("invalid JSON at byte N:
 * text"), as "line L: invalid JSON: text" where L counts from the value
 * that starts at start on line line. */
int json__syntax_error(body_t *b, const unsigned char *start, size_t line,
                       const char *msg, char *errstr, size_t errlen) {
  size_t at = 0;
  int n = 0;
  if (b->s.err == -ENOMEM) {
    snprintf(errstr, errlen, "out of memory");
    return -ENOMEM;
  }
  if (sscanf(msg, "invalid JSON at byte %zu: %n", &at, &n) < 1 || n <= 0)
    n = 0;
  size_t len = (size_t)(b->s.end - b->s.base);
  if (at > len)
    at = len;
  if (!strncmp(msg + n, "invalid escape", 14) ||
      !strncmp(msg + n, "invalid Unicode surrogate", 25))
    at = jansson_escape_end(b->s.base, len, at);
  line += json__newlines(start, b->s.base + at);
  snprintf(errstr, errlen, "line %zu: invalid JSON: %s", line, msg + n);
  return SL_EPROTO;
}

uint32_t json__member(body_t *b, uint32_t o, const char *key) {
  size_t n = strlen(key);
  for (uint32_t c = N(b, o)->first; c; c = N(b, c)->next)
    if (N(b, c)->klen == n && !memcmp(TXT(b, N(b, c)->key), key, n))
      return c;
  return 0;
}

int json__keys(body_t *b, uint32_t o, const char *const *allowed,
               uint32_t *slot, const char *what, char *e, size_t el) {
  for (uint32_t c = N(b, o)->first; c; c = N(b, c)->next) {
    const char *key = TXT(b, N(b, c)->key);
    size_t k = 0;
    while (allowed[k] && (allowed[k][0] != key[0] || strcmp(allowed[k], key)))
      k++;
    if (!allowed[k]) {
      snprintf(e, el, "unknown key \"%.40s\" in %s", key, what);
      return SL_EPROTO;
    }
    slot[k] = c;
  }
  return 0;
}
