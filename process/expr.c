/*
 * process/expr.c: the filter expression language, lexed, parsed and
 * compiled once into a small stack machine (eval.c runs it).
 *
 * The parser is written by hand on purpose: the language is tiny, errors
 * must point at a column, and no C parser generator or expression library
 * gives both a column-exact message and an allocation-free evaluator
 * without dragging in a runtime. Recursive descent, one token of lookahead,
 * nesting bounded by PEXPR_DEPTH_MAX so hostile input cannot blow the stack.
 *
 * Grammar (lowest precedence first):
 *   or    := and ("or" and)*                    ("||" too)
 *   and   := not ("and" not)*                   ("&&" too)
 *   not   := "not" not | cmp                    ("!" too)
 *   cmp   := add [ ("=="|"!="|"<"|"<="|">"|">="|"~"|"!~") add
 *                | ["not"] "in" "[" [add ("," add)*] "]" ]
 *   add   := mul (("+"|"-") mul)*
 *   mul   := unary (("*"|"/"|"%") unary)*
 *   unary := "-" unary | primary
 *   primary := NUMBER | STRING | "true" | "false" | FIELD
 *            | "attr" "." NAME | "attr" "[" STRING "]"
 *            | ("abs"|"min"|"max") "(" add ("," add)* ")" | "(" or ")"
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "process/process_int.h"

typedef enum {
  T_END = 0,
  T_NUM,
  T_STR,
  T_IDENT,
  T_LP,
  T_RP,
  T_LB,
  T_RB,
  T_COMMA,
  T_DOT,
  T_EQ,
  T_NE,
  T_LT,
  T_LE,
  T_GT,
  T_GE,
  T_TILDE,
  T_NTILDE,
  T_PLUS,
  T_MINUS,
  T_STAR,
  T_SLASH,
  T_PCT,
  T_AND,
  T_OR,
  T_NOT
} tok_t;

/* Static types the compiler tracks to reject conditions that can never be
 * true (e.g. a bare number) with a column. */
typedef enum { ST_ANY = 0, ST_NUM, ST_STR, ST_BOOL } stype_t;

typedef struct parser {
  const char *src;
  size_t pos;  /* next byte to lex */
  tok_t tok;   /* current token */
  size_t tpos; /* its start */
  size_t tlen; /* its length (identifiers) */
  double num;  /* T_NUM value */
  char *sbuf;  /* T_STR decoded bytes */
  size_t slen, scap;
  int depth;
  size_t sp, spmax; /* simulated stack depth */
  sl_process_expr_t *ex;
  size_t ccap, ncap_n, scap_s, pcap, plen;
  int err;
  char *errstr;
  size_t errlen;
} parser_t;

static const struct {
  const char *name;
  pfield_t f;
  stype_t t;
} fields[] = {
    {"value", F_VALUE, ST_ANY},
    {"quality", F_QUALITY, ST_STR},
    {"source", F_SOURCE, ST_STR},
    {"unit", F_UNIT, ST_STR},
    {"time", F_TIME, ST_NUM},
    {"model", F_MODEL, ST_STR},
    {"model_version", F_MODEL_VERSION, ST_STR},
    {"label", F_LABEL, ST_STR},
    {"score", F_SCORE, ST_NUM},
    {"kind", F_KIND, ST_STR},
    {"stream", F_STREAM, ST_STR},
    {"status_code", F_STATUS_CODE, ST_NUM},
    {"role", F_ROLE, ST_STR},
    {"status", F_STATUS, ST_STR},
    {"task", F_TASK, ST_STR},
    {"model_digest", F_MODEL_DIGEST, ST_STR},
    {"label_id", F_LABEL_ID, ST_NUM},
    {"latency_us", F_LATENCY_US, ST_NUM},
    {"sequence", F_SEQUENCE, ST_NUM},
};

__attribute__((format(printf, 3, 4))) static void perr(parser_t *ps, size_t pos,
                                                       const char *fmt, ...) {
  va_list ap;
  char msg[200];
  if (ps->err)
    return;
  ps->err = SL_ECONFIG;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (ps->errlen)
    snprintf(ps->errstr, ps->errlen, "column %zu: %s", pos + 1, msg);
}

static void nomem(parser_t *ps) {
  if (!ps->err) {
    ps->err = -ENOMEM;
    if (ps->errlen)
      snprintf(ps->errstr, ps->errlen, "out of memory");
  }
}

static bool is_ident0(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_ident(char c) {
  return is_ident0(c) || (c >= '0' && c <= '9');
}

static bool sbuf_put(parser_t *ps, char c) {
  if (ps->slen == ps->scap) {
    size_t n = ps->scap ? ps->scap * 2 : 64;
    char *b = realloc(ps->sbuf, n);
    if (!b) {
      nomem(ps);
      return false;
    }
    ps->sbuf = b;
    ps->scap = n;
  }
  ps->sbuf[ps->slen++] = c;
  return true;
}

static bool kw(parser_t *ps, const char *w) {
  return ps->tok == T_IDENT && strlen(w) == ps->tlen &&
         !memcmp(ps->src + ps->tpos, w, ps->tlen);
}

/* Lexes the next token into ps. Longer than the house limit on purpose:
 * one switch over the token's first character is the whole token grammar
 * of docs/PROCESSING.md in one place, each case a few lines; split up, the
 * grammar would be scattered over helpers that share the cursor. */
static void next(parser_t *ps) {
  const char *s = ps->src;
  size_t p = ps->pos;
  while (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')
    p++;
  ps->tpos = p;
  char c = s[p];
  if (!c) {
    ps->tok = T_END;
    ps->pos = p;
    return;
  }
  if ((c >= '0' && c <= '9') ||
      (c == '.' && s[p + 1] >= '0' && s[p + 1] <= '9')) {
    char *end;
    errno = 0;
    ps->num = strtod(s + p, &end);
    /* strtod also takes "inf", "nan" and hex: only decimal numbers here. */
    for (const char *q = s + p; q < end; q++) {
      if (!((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' ||
            *q == '+' || *q == '-')) {
        perr(ps, p, "malformed number");
        ps->tok = T_END;
        return;
      }
    }
    if (is_ident(*end) || *end == '.') {
      perr(ps, p, "malformed number");
      ps->tok = T_END;
      return;
    }
    ps->tok = T_NUM;
    ps->pos = (size_t)(end - s);
    return;
  }
  if (is_ident0(c)) {
    size_t q = p;
    while (is_ident(s[q]))
      q++;
    ps->tok = T_IDENT;
    ps->tlen = q - p;
    ps->pos = q;
    if (kw(ps, "and"))
      ps->tok = T_AND;
    else if (kw(ps, "or"))
      ps->tok = T_OR;
    else if (kw(ps, "not"))
      ps->tok = T_NOT;
    return;
  }
  if (c == '"' || c == '\'') {
    size_t q = p + 1;
    ps->slen = 0;
    for (;;) {
      char d = s[q];
      if (!d) {
        perr(ps, p, "unterminated string");
        ps->tok = T_END;
        return;
      }
      if (d == c) {
        q++;
        break;
      }
      if (d == '\\') {
        char e = s[q + 1];
        char out = e == 'n' ? '\n' : e == 't' ? '\t' : e;
        if (e != '\\' && e != '"' && e != '\'' && e != 'n' && e != 't') {
          perr(ps, q, "unknown escape (use \\\\ \\\" \\' \\n \\t)");
          ps->tok = T_END;
          return;
        }
        if (!sbuf_put(ps, out))
          return;
        q += 2;
        continue;
      }
      if (!sbuf_put(ps, d))
        return;
      q++;
    }
    ps->tok = T_STR;
    ps->pos = q;
    return;
  }
  ps->pos = p + 1;
  switch (c) {
  case '(':
    ps->tok = T_LP;
    return;
  case ')':
    ps->tok = T_RP;
    return;
  case '[':
    ps->tok = T_LB;
    return;
  case ']':
    ps->tok = T_RB;
    return;
  case ',':
    ps->tok = T_COMMA;
    return;
  case '.':
    ps->tok = T_DOT;
    return;
  case '+':
    ps->tok = T_PLUS;
    return;
  case '-':
    ps->tok = T_MINUS;
    return;
  case '*':
    ps->tok = T_STAR;
    return;
  case '/':
    ps->tok = T_SLASH;
    return;
  case '%':
    ps->tok = T_PCT;
    return;
  case '~':
    ps->tok = T_TILDE;
    return;
  case '=':
    if (s[p + 1] == '=') {
      ps->pos = p + 2;
      ps->tok = T_EQ;
      return;
    }
    perr(ps, p, "'=' is not an operator (use '==')");
    ps->tok = T_END;
    return;
  case '!':
    if (s[p + 1] == '=') {
      ps->pos = p + 2;
      ps->tok = T_NE;
    } else if (s[p + 1] == '~') {
      ps->pos = p + 2;
      ps->tok = T_NTILDE;
    } else {
      ps->tok = T_NOT;
    }
    return;
  case '<':
    if (s[p + 1] == '=') {
      ps->pos = p + 2;
      ps->tok = T_LE;
    } else {
      ps->tok = T_LT;
    }
    return;
  case '>':
    if (s[p + 1] == '=') {
      ps->pos = p + 2;
      ps->tok = T_GE;
    } else {
      ps->tok = T_GT;
    }
    return;
  case '&':
    if (s[p + 1] == '&') {
      ps->pos = p + 2;
      ps->tok = T_AND;
      return;
    }
    break;
  case '|':
    if (s[p + 1] == '|') {
      ps->pos = p + 2;
      ps->tok = T_OR;
      return;
    }
    break;
  default:
    break;
  }
  perr(ps, p, "unexpected character '%c'",
       (unsigned char)c >= 0x20 && (unsigned char)c < 0x7f ? c : '?');
  ps->tok = T_END;
}

/* ---- code emission ---------------------------------------------------- */

/* Tracks the stack depth the emitted code reaches: delta per op. */
static void stack(parser_t *ps, long delta) {
  ps->sp = (size_t)((long)ps->sp + delta);
  if (ps->sp > ps->spmax)
    ps->spmax = ps->sp;
}

static size_t emit(parser_t *ps, pop_t op, uint32_t arg) {
  sl_process_expr_t *ex = ps->ex;
  if (ps->err)
    return 0;
  if (ex->ncode == ps->ccap) {
    size_t n = ps->ccap ? ps->ccap * 2 : 32;
    pinstr_t *c = realloc(ex->code, n * sizeof(*c));
    if (!c) {
      nomem(ps);
      return 0;
    }
    ex->code = c;
    ps->ccap = n;
  }
  ex->code[ex->ncode].op = (uint8_t)op;
  ex->code[ex->ncode].arg = arg;
  return ex->ncode++;
}

static uint32_t add_num(parser_t *ps, double v) {
  sl_process_expr_t *ex = ps->ex;
  if (ex->nnums == ps->ncap_n) {
    size_t n = ps->ncap_n ? ps->ncap_n * 2 : 8;
    double *d = realloc(ex->nums, n * sizeof(*d));
    if (!d) {
      nomem(ps);
      return 0;
    }
    ex->nums = d;
    ps->ncap_n = n;
  }
  ex->nums[ex->nnums] = v;
  return (uint32_t)ex->nnums++;
}

static uint32_t add_str(parser_t *ps, const char *s, size_t len) {
  sl_process_expr_t *ex = ps->ex;
  if (ex->nstrs == ps->scap_s) {
    size_t n = ps->scap_s ? ps->scap_s * 2 : 8;
    void *d = realloc(ex->strs, n * sizeof(*ex->strs));
    if (!d) {
      nomem(ps);
      return 0;
    }
    ex->strs = d;
    ps->scap_s = n;
  }
  if (ps->plen + len + 1 > ps->pcap) {
    size_t n = ps->pcap ? ps->pcap : 64;
    while (n < ps->plen + len + 1)
      n *= 2;
    char *d = realloc(ex->pool, n);
    if (!d) {
      nomem(ps);
      return 0;
    }
    ex->pool = d;
    ps->pcap = n;
  }
  memcpy(ex->pool + ps->plen, s, len);
  ex->pool[ps->plen + len] = '\0';
  ex->strs[ex->nstrs].off = (uint32_t)ps->plen;
  ex->strs[ex->nstrs].len = (uint32_t)len;
  ps->plen += len + 1;
  return (uint32_t)ex->nstrs++;
}

/* ---- parser ----------------------------------------------------------- */

static stype_t p_or(parser_t *ps);
static stype_t p_add(parser_t *ps);

static bool enter(parser_t *ps) {
  if (++ps->depth > PEXPR_DEPTH_MAX) {
    if (!ps->err) {
      ps->err = SL_ETOOBIG;
      if (ps->errlen)
        snprintf(ps->errstr, ps->errlen, "column %zu: nested too deeply",
                 ps->tpos + 1);
    }
    return false;
  }
  return true;
}

static void expect(parser_t *ps, tok_t t, const char *what) {
  if (ps->err)
    return;
  if (ps->tok != t) {
    perr(ps, ps->tpos, "expected %s", what);
    return;
  }
  next(ps);
}

/* Function call: name already consumed; ps->tok is '('. */
static stype_t p_call(parser_t *ps, pop_t op, size_t fpos) {
  uint32_t argc = 0;
  size_t apos;
  next(ps);
  for (;;) {
    apos = ps->tpos;
    stype_t t = p_add(ps);
    if (ps->err)
      return ST_ANY;
    if (t == ST_STR || t == ST_BOOL)
      perr(ps, apos, "argument must be a number");
    argc++;
    if (ps->tok != T_COMMA)
      break;
    next(ps);
  }
  expect(ps, T_RP, "',' or ')'");
  if (op == OP_ABS && argc != 1)
    perr(ps, fpos, "abs() takes one argument");
  emit(ps, op, argc);
  stack(ps, 1 - (long)argc);
  return ST_NUM;
}

static stype_t p_primary(parser_t *ps) {
  size_t pos = ps->tpos;
  stype_t t = ST_ANY;
  if (ps->err)
    return ST_ANY;
  switch (ps->tok) {
  case T_NUM:
    emit(ps, OP_NUM, add_num(ps, ps->num));
    stack(ps, 1);
    next(ps);
    return ST_NUM;
  case T_STR:
    emit(ps, OP_STR, add_str(ps, ps->sbuf ? ps->sbuf : "", ps->slen));
    stack(ps, 1);
    next(ps);
    return ST_STR;
  case T_LP:
    next(ps);
    t = p_or(ps);
    expect(ps, T_RP, "')'");
    return t;
  case T_IDENT:
    break;
  case T_END:
    perr(ps, pos, "unexpected end of expression");
    return ST_ANY;
  default:
    perr(ps, pos, "expected a value, a field or '('");
    return ST_ANY;
  }
  if (kw(ps, "true") || kw(ps, "false")) {
    emit(ps, OP_BOOL, kw(ps, "true"));
    stack(ps, 1);
    next(ps);
    return ST_BOOL;
  }
  if (kw(ps, "attr")) {
    next(ps);
    if (ps->tok == T_DOT) {
      next(ps);
      if (ps->tok != T_IDENT && ps->tok != T_AND && ps->tok != T_OR &&
          ps->tok != T_NOT) {
        perr(ps, ps->tpos, "expected an attribute name after 'attr.'");
        return ST_ANY;
      }
      emit(ps, OP_ATTR, add_str(ps, ps->src + ps->tpos, ps->pos - ps->tpos));
      next(ps);
    } else if (ps->tok == T_LB) {
      next(ps);
      if (ps->tok != T_STR) {
        perr(ps, ps->tpos, "expected a string in attr[...]");
        return ST_ANY;
      }
      emit(ps, OP_ATTR, add_str(ps, ps->sbuf ? ps->sbuf : "", ps->slen));
      next(ps);
      expect(ps, T_RB, "']'");
    } else {
      perr(ps, ps->tpos, "expected '.' or '[' after 'attr'");
      return ST_ANY;
    }
    stack(ps, 1);
    return ST_STR;
  }
  static const struct {
    const char *name;
    pop_t op;
  } funcs[] = {{"abs", OP_ABS}, {"min", OP_MIN}, {"max", OP_MAX}};
  for (size_t i = 0; i < SL_ARRAY_SIZE(funcs); i++) {
    if (kw(ps, funcs[i].name)) {
      next(ps);
      if (ps->tok != T_LP) {
        perr(ps, ps->tpos, "expected '(' after %s", funcs[i].name);
        return ST_ANY;
      }
      return p_call(ps, funcs[i].op, pos);
    }
  }
  for (size_t i = 0; i < SL_ARRAY_SIZE(fields); i++) {
    if (kw(ps, fields[i].name)) {
      emit(ps, OP_FIELD, (uint32_t)fields[i].f);
      stack(ps, 1);
      next(ps);
      return fields[i].t;
    }
  }
  perr(ps, pos,
       "unknown name '%.*s' (fields: value, quality, source, unit, "
       "time, model, model_version, label, score, kind, stream, "
       "status_code, attr.NAME)",
       (int)SL_MIN(ps->tlen, 40), ps->src + pos);
  return ST_ANY;
}

static stype_t p_unary(parser_t *ps) {
  if (ps->tok == T_MINUS) {
    size_t pos = ps->tpos;
    if (!enter(ps))
      return ST_ANY;
    next(ps);
    stype_t t = p_unary(ps);
    ps->depth--;
    if (t == ST_STR || t == ST_BOOL)
      perr(ps, pos, "'-' needs a number");
    emit(ps, OP_NEG, 0);
    return ST_NUM;
  }
  return p_primary(ps);
}

static stype_t p_mul(parser_t *ps) {
  size_t pos = ps->tpos;
  stype_t t = p_unary(ps);
  while (!ps->err &&
         (ps->tok == T_STAR || ps->tok == T_SLASH || ps->tok == T_PCT)) {
    pop_t op = ps->tok == T_STAR    ? OP_MUL
               : ps->tok == T_SLASH ? OP_DIV
                                    : OP_MOD;
    size_t opos = ps->tpos;
    if (t == ST_STR || t == ST_BOOL)
      perr(ps, pos, "arithmetic needs numbers");
    next(ps);
    pos = ps->tpos;
    t = p_unary(ps);
    if (t == ST_STR || t == ST_BOOL)
      perr(ps, pos, "arithmetic needs numbers");
    (void)opos;
    emit(ps, op, 0);
    stack(ps, -1);
    t = ST_NUM;
  }
  return t;
}

static stype_t p_add(parser_t *ps) {
  size_t pos = ps->tpos;
  if (!enter(ps))
    return ST_ANY;
  stype_t t = p_mul(ps);
  while (!ps->err && (ps->tok == T_PLUS || ps->tok == T_MINUS)) {
    pop_t op = ps->tok == T_PLUS ? OP_ADD : OP_SUB;
    if (t == ST_STR || t == ST_BOOL)
      perr(ps, pos, "arithmetic needs numbers");
    next(ps);
    pos = ps->tpos;
    t = p_mul(ps);
    if (t == ST_STR || t == ST_BOOL)
      perr(ps, pos, "arithmetic needs numbers");
    emit(ps, op, 0);
    stack(ps, -1);
    t = ST_NUM;
  }
  ps->depth--;
  return t;
}

static stype_t p_cmp(parser_t *ps) {
  size_t lpos = ps->tpos;
  stype_t lt = p_add(ps);
  pop_t op;
  bool negate = false;
  if (ps->err)
    return ST_ANY;
  switch (ps->tok) {
  case T_EQ:
    op = OP_EQ;
    break;
  case T_NE:
    op = OP_NE;
    break;
  case T_LT:
    op = OP_LT;
    break;
  case T_LE:
    op = OP_LE;
    break;
  case T_GT:
    op = OP_GT;
    break;
  case T_GE:
    op = OP_GE;
    break;
  case T_TILDE:
    op = OP_GLOB;
    break;
  case T_NTILDE:
    op = OP_GLOB;
    negate = true;
    break;
  case T_NOT:
  case T_IDENT:
    if (ps->tok == T_NOT) {
      /* "x not in [...]" */
      size_t save = ps->pos, tpos = ps->tpos;
      next(ps);
      if (!kw(ps, "in")) {
        ps->pos = save;
        ps->tpos = tpos;
        ps->tok = T_NOT;
        return lt;
      }
      negate = true;
    } else if (!kw(ps, "in")) {
      return lt;
    }
    next(ps);
    if (ps->tok != T_LB) {
      perr(ps, ps->tpos, "expected '[' after 'in'");
      return ST_ANY;
    }
    next(ps);
    {
      uint32_t n = 0;
      if (ps->tok != T_RB) {
        for (;;) {
          p_add(ps);
          if (ps->err)
            return ST_ANY;
          n++;
          if (ps->tok != T_COMMA)
            break;
          next(ps);
        }
      }
      expect(ps, T_RB, "',' or ']'");
      emit(ps, OP_IN, n);
      stack(ps, -(long)n);
      if (negate)
        emit(ps, OP_NOT, 0);
    }
    return ST_BOOL;
  default:
    return lt;
  }
  size_t opos = ps->tpos;
  next(ps);
  size_t rpos = ps->tpos;
  stype_t rt = p_add(ps);
  if (ps->err)
    return ST_ANY;
  if (op == OP_GLOB && (lt == ST_NUM || lt == ST_BOOL))
    perr(ps, lpos, "'~' matches strings");
  else if (op == OP_GLOB && (rt == ST_NUM || rt == ST_BOOL))
    perr(ps, rpos, "'~' needs a glob pattern string");
  else if (op != OP_GLOB && op != OP_EQ && op != OP_NE && lt != ST_ANY &&
           rt != ST_ANY && lt != rt)
    perr(ps, opos, "comparing a %s with a %s",
         lt == ST_NUM   ? "number"
         : lt == ST_STR ? "string"
                        : "boolean",
         rt == ST_NUM   ? "number"
         : rt == ST_STR ? "string"
                        : "boolean");
  emit(ps, op, 0);
  stack(ps, -1);
  if (negate)
    emit(ps, OP_NOT, 0);
  return ST_BOOL;
}

static stype_t p_not(parser_t *ps) {
  if (ps->tok == T_NOT) {
    size_t pos = ps->tpos;
    if (!enter(ps))
      return ST_ANY;
    next(ps);
    stype_t t = p_not(ps);
    ps->depth--;
    if (t == ST_NUM || t == ST_STR)
      perr(ps, pos, "'not' needs a condition");
    emit(ps, OP_NOT, 0);
    return ST_BOOL;
  }
  return p_cmp(ps);
}

/* and/or: short-circuit jumps. The left value stays on the stack when it
 * decides; otherwise it is popped and the right side's truth is the
 * result. Null counts as false, and the result is always a boolean. */
static stype_t p_logic(parser_t *ps, tok_t tok, pop_t jop,
                       stype_t (*sub)(parser_t *)) {
  size_t pos = ps->tpos;
  stype_t t = sub(ps);
  if (ps->tok != tok)
    return t;
  if (t == ST_NUM || t == ST_STR)
    perr(ps, pos, "'%s' needs conditions", tok == T_AND ? "and" : "or");
  emit(ps, OP_TOBOOL, 0);
  while (!ps->err && ps->tok == tok) {
    size_t j = emit(ps, jop, 0);
    emit(ps, OP_POP, 0);
    stack(ps, -1);
    next(ps);
    pos = ps->tpos;
    t = sub(ps);
    if (t == ST_NUM || t == ST_STR)
      perr(ps, pos, "'%s' needs conditions", tok == T_AND ? "and" : "or");
    emit(ps, OP_TOBOOL, 0);
    if (!ps->err)
      ps->ex->code[j].arg = (uint32_t)ps->ex->ncode;
  }
  return ST_BOOL;
}

static stype_t p_and(parser_t *ps) {
  return p_logic(ps, T_AND, OP_JFALSE, p_not);
}

static stype_t p_or(parser_t *ps) {
  if (!enter(ps))
    return ST_ANY;
  stype_t t = p_logic(ps, T_OR, OP_JTRUE, p_and);
  ps->depth--;
  return t;
}

int sl_process_expr_compile(const char *text, sl_process_expr_t **out,
                            char *errstr, size_t errlen) {
  parser_t ps = {.src = text, .errstr = errstr, .errlen = errlen};
  stype_t t;
  *out = NULL;
  if (errlen)
    errstr[0] = '\0';
  if (strlen(text) > SL_PROCESS_EXPR_MAX) {
    if (errlen)
      snprintf(errstr, errlen, "expression longer than %d bytes",
               SL_PROCESS_EXPR_MAX);
    return SL_ETOOBIG;
  }
  if (!(ps.ex = calloc(1, sizeof(*ps.ex))))
    return -ENOMEM;
  next(&ps);
  if (!ps.err && ps.tok == T_END)
    perr(&ps, ps.tpos, "empty expression");
  t = p_or(&ps);
  if (!ps.err && ps.tok != T_END)
    perr(&ps, ps.tpos, "unexpected '%.*s' after the expression",
         (int)SL_MIN(strcspn(text + ps.tpos, " \t\n"), 20), text + ps.tpos);
  if (!ps.err && (t == ST_NUM || t == ST_STR))
    perr(&ps, 0, "the expression is a %s, not a condition",
         t == ST_NUM ? "number" : "string");
  if (!ps.err && ps.spmax > PEXPR_STACK_MAX) {
    ps.err = SL_ETOOBIG;
    if (errlen)
      snprintf(errstr, errlen, "column 1: expression too large");
  }
  free(ps.sbuf);
  if (ps.err) {
    sl_process_expr_free(ps.ex);
    return ps.err;
  }
  ps.ex->stack_max = ps.spmax;
  *out = ps.ex;
  return 0;
}

void sl_process_expr_free(sl_process_expr_t *ex) {
  if (!ex)
    return;
  free(ex->code);
  free(ex->nums);
  free(ex->strs);
  free(ex->pool);
  free(ex);
}
