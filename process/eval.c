/*
 * process/eval.c: runs a compiled expression on one event. The stack lives
 * on the C stack (bounded by PEXPR_STACK_MAX, checked at compile time) and
 * every string is a view into the event or the constant pool: evaluating
 * allocates nothing.
 *
 * Semantics (docs/PROCESSING.md): a missing field or attribute is null;
 * arithmetic on anything but numbers gives null; a comparison involving
 * null is false (and != is true unless both are null); NaN follows IEEE
 * (every ordered comparison with NaN is false).
 */
#include <math.h>
#include <string.h>

#include "process/process_int.h"

bool process__glob(const char *pat, size_t plen, const char *s, size_t slen) {
  /* Iterative matcher with one backtrack point (the last '*'): O(n*m) in
   * the worst case, never exponential, no recursion. */
  size_t p = 0, i = 0, star = SIZE_MAX, mark = 0;
  while (i < slen) {
    if (p < plen && (pat[p] == '?' || (pat[p] != '*' && pat[p] == s[i]))) {
      p++;
      i++;
    } else if (p < plen && pat[p] == '*') {
      star = p++;
      mark = i;
    } else if (star != SIZE_MAX) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < plen && pat[p] == '*')
    p++;
  return p == plen;
}

bool process__reading_num(const Sluice__V1__Event *ev, double *v) {
  const Sluice__V1__Reading *rd;
  if (ev->body_case != SLUICE__V1__EVENT__BODY_READING || !(rd = ev->reading))
    return false;
  switch (rd->value_case) {
  case SLUICE__V1__READING__VALUE_DOUBLE_VALUE:
    *v = rd->double_value;
    return true;
  case SLUICE__V1__READING__VALUE_INT_VALUE:
    *v = (double)rd->int_value;
    return true;
  case SLUICE__V1__READING__VALUE_UINT_VALUE:
    *v = (double)rd->uint_value;
    return true;
  case SLUICE__V1__READING__VALUE_BOOL_VALUE:
    *v = rd->bool_value ? 1.0 : 0.0;
    return true;
  default:
    return false;
  }
}

const Sluice__V1__Label *process__top_label(const Sluice__V1__Event *ev) {
  const Sluice__V1__Inference *inf;
  const Sluice__V1__Label *best = NULL;
  if (ev->body_case != SLUICE__V1__EVENT__BODY_INFERENCE ||
      !(inf = ev->inference))
    return NULL;
  for (size_t i = 0; i < inf->n_labels; i++) {
    if (inf->labels[i] && (!best || inf->labels[i]->score > best->score))
      best = inf->labels[i];
  }
  return best;
}

const char *process__attr(const Sluice__V1__Event *ev, const char *key,
                          size_t klen) {
  for (size_t i = 0; i < ev->n_attributes; i++) {
    const Sluice__V1__Attribute *a = ev->attributes[i];
    if (a && a->key && !strncmp(a->key, key, klen) && a->key[klen] == '\0')
      return a->value ? a->value : "";
  }
  return NULL;
}

static inline void set_str(sl_pval_t *v, const char *s) {
  if (!s) {
    v->t = PV_NULL;
    return;
  }
  v->t = PV_STR;
  v->s = s;
  v->len = (uint32_t)strlen(s);
}

static inline void set_num(sl_pval_t *v, double n) {
  v->t = PV_NUM;
  v->n = n;
}

/* The top class (best score), else the top detection, of an inference's
 * label-id results (docs/EDGE-AI.md): its name (NULL when not given) and
 * score, or false when it has neither. */
static bool top_id(const Sluice__V1__Inference *in, uint32_t *id,
                   const char **name, double *score) {
  const Sluice__V1__ClassScore *bc = NULL;
  const Sluice__V1__Detection *bd = NULL;
  for (size_t i = 0; i < in->n_classes; i++)
    if (in->classes[i] && (!bc || in->classes[i]->score > bc->score))
      bc = in->classes[i];
  if (bc) {
    *id = bc->label_id;
    *name = bc->label && *bc->label ? bc->label : NULL;
    *score = bc->score;
    return true;
  }
  for (size_t i = 0; i < in->n_detections; i++)
    if (in->detections[i] && (!bd || in->detections[i]->score > bd->score))
      bd = in->detections[i];
  if (!bd)
    return false;
  *id = bd->label_id;
  *name = bd->label && *bd->label ? bd->label : NULL;
  *score = bd->score;
  return true;
}

static void load_inference(const Sluice__V1__Inference *inf, pfield_t f,
                           sl_pval_t *v) {
  static const char *const roles[] = {"primary", "primary", "canary", "shadow"};
  static const char *const statuses[] = {"", "ok", "empty", "error", "skipped"};
  static const char *const tasks[] = {"", "classify", "detect", "anomaly",
                                      "regress"};
  uint32_t id;
  const char *name;
  double score;
  unsigned st;
  switch (f) {
  case F_ROLE:
    if ((unsigned)inf->role <= 3)
      set_str(v, roles[inf->role]);
    return;
  case F_STATUS:
    st = (unsigned)inf->status;
    if (st == 0) /* unspecified: as the model_aggregate step reads it */
      st = inf->n_detections || inf->n_classes || inf->n_values ||
                   inf->anomaly_score != 0
               ? 1
               : 2;
    if (st <= 4)
      set_str(v, statuses[st]);
    return;
  case F_TASK:
    if ((unsigned)inf->task <= 4)
      set_str(v, tasks[inf->task]);
    return;
  case F_MODEL_DIGEST:
    set_str(v, inf->model_digest);
    return;
  case F_LABEL_ID:
    if (top_id(inf, &id, &name, &score))
      set_num(v, (double)id);
    return;
  case F_LATENCY_US:
    set_num(v, (double)inf->latency_us);
    return;
  case F_SEQUENCE:
    set_num(v, (double)inf->sequence);
    return;
  case F_LABEL:
    if (top_id(inf, &id, &name, &score))
      set_str(v, name);
    return;
  case F_SCORE:
    if (top_id(inf, &id, &name, &score))
      set_num(v, score);
    return;
  default:
    return;
  }
}

static void load_field(const Sluice__V1__Event *ev, const char *stream,
                       pfield_t f, sl_pval_t *v) {
  const Sluice__V1__Reading *rd =
      ev->body_case == SLUICE__V1__EVENT__BODY_READING ? ev->reading : NULL;
  const Sluice__V1__Inference *inf =
      ev->body_case == SLUICE__V1__EVENT__BODY_INFERENCE ? ev->inference : NULL;
  const Sluice__V1__Label *lb;
  v->t = PV_NULL;
  switch (f) {
  case F_VALUE:
    if (!rd)
      return;
    switch (rd->value_case) {
    case SLUICE__V1__READING__VALUE_DOUBLE_VALUE:
      set_num(v, rd->double_value);
      return;
    case SLUICE__V1__READING__VALUE_INT_VALUE:
      set_num(v, (double)rd->int_value);
      return;
    case SLUICE__V1__READING__VALUE_UINT_VALUE:
      set_num(v, (double)rd->uint_value);
      return;
    case SLUICE__V1__READING__VALUE_BOOL_VALUE:
      v->t = PV_BOOL;
      v->b = rd->bool_value != 0;
      return;
    case SLUICE__V1__READING__VALUE_STRING_VALUE:
      set_str(v, rd->string_value);
      return;
    default:
      return;
    }
  case F_QUALITY:
    if (rd)
      set_str(v, rd->quality == SLUICE__V1__QUALITY__QUALITY_GOOD ? "good"
                 : rd->quality == SLUICE__V1__QUALITY__QUALITY_UNCERTAIN
                     ? "uncertain"
                     : "bad");
    return;
  case F_SOURCE:
    set_str(v, ev->source);
    return;
  case F_UNIT:
    if (rd)
      set_str(v, rd->unit);
    return;
  case F_TIME:
    set_num(v, (double)ev->time_ns / 1e9);
    return;
  case F_MODEL:
    if (inf)
      set_str(v, inf->model);
    return;
  case F_MODEL_VERSION:
    if (inf)
      set_str(v, inf->model_version);
    return;
  case F_LABEL:
    if ((lb = process__top_label(ev)))
      set_str(v, lb->name);
    else if (inf)
      load_inference(inf, f, v); /* label-id results (EDGE-AI.md) */
    return;
  case F_SCORE:
    if ((lb = process__top_label(ev)))
      set_num(v, (double)lb->score);
    else if (inf)
      load_inference(inf, f, v);
    return;
  case F_ROLE:
  case F_STATUS:
  case F_TASK:
  case F_MODEL_DIGEST:
  case F_LABEL_ID:
  case F_LATENCY_US:
  case F_SEQUENCE:
    if (inf)
      load_inference(inf, f, v);
    return;
  case F_KIND:
    switch (ev->body_case) {
    case SLUICE__V1__EVENT__BODY_READING:
      set_str(v, "reading");
      return;
    case SLUICE__V1__EVENT__BODY_INFERENCE:
      set_str(v, "inference");
      return;
    case SLUICE__V1__EVENT__BODY_RAW:
      set_str(v, "raw");
      return;
    case SLUICE__V1__EVENT__BODY_GAP:
      set_str(v, "gap");
      return;
    case SLUICE__V1__EVENT__BODY_STATUS:
      set_str(v, "status");
      return;
    default:
      return;
    }
  case F_STREAM:
    set_str(v, stream);
    return;
  case F_STATUS_CODE:
    if (rd)
      set_num(v, (double)rd->status_code);
    return;
  default:
    return;
  }
}

static bool vequal(const sl_pval_t *a, const sl_pval_t *b) {
  if (a->t != b->t)
    return false;
  switch (a->t) {
  case PV_NUM:
    return a->n == b->n;
  case PV_STR:
    return a->len == b->len && !memcmp(a->s, b->s, a->len);
  case PV_BOOL:
    return a->b == b->b;
  default:
    return false; /* null equals nothing */
  }
}

/* Ordered comparison: numbers numerically, strings bytewise. Returns false
 * for mixed types, null and NaN (via the IEEE comparison). */
static bool vorder(const sl_pval_t *a, const sl_pval_t *b, pop_t op) {
  int c;
  if (a->t == PV_NUM && b->t == PV_NUM) {
    switch (op) {
    case OP_LT:
      return a->n < b->n;
    case OP_LE:
      return a->n <= b->n;
    case OP_GT:
      return a->n > b->n;
    default:
      return a->n >= b->n;
    }
  }
  if (a->t != PV_STR || b->t != PV_STR)
    return false;
  c = memcmp(a->s, b->s, SL_MIN(a->len, b->len));
  if (!c)
    c = a->len < b->len ? -1 : a->len > b->len;
  switch (op) {
  case OP_LT:
    return c < 0;
  case OP_LE:
    return c <= 0;
  case OP_GT:
    return c > 0;
  default:
    return c >= 0;
  }
}

static inline void set_bool(sl_pval_t *v, bool b) {
  v->t = PV_BOOL;
  v->b = b;
}

void process__eval(const sl_process_expr_t *ex, const Sluice__V1__Event *ev,
                   const char *stream, sl_pval_t *out) {
  sl_pval_t st[PEXPR_STACK_MAX + 1];
  size_t sp = 0; /* next free */
  for (size_t pc = 0; pc < ex->ncode; pc++) {
    const pinstr_t *in = &ex->code[pc];
    sl_pval_t *a, *b;
    switch ((pop_t)in->op) {
    case OP_NUM:
      set_num(&st[sp++], ex->nums[in->arg]);
      break;
    case OP_STR:
      st[sp].t = PV_STR;
      st[sp].s = ex->pool + ex->strs[in->arg].off;
      st[sp].len = ex->strs[in->arg].len;
      sp++;
      break;
    case OP_BOOL:
      set_bool(&st[sp++], in->arg != 0);
      break;
    case OP_FIELD:
      load_field(ev, stream, (pfield_t)in->arg, &st[sp++]);
      break;
    case OP_ATTR:
      set_str(&st[sp], process__attr(ev, ex->pool + ex->strs[in->arg].off,
                                     ex->strs[in->arg].len));
      sp++;
      break;
    case OP_NEG:
      a = &st[sp - 1];
      if (a->t == PV_NUM)
        a->n = -a->n;
      else
        a->t = PV_NULL;
      break;
    case OP_NOT:
      a = &st[sp - 1];
      if (a->t == PV_BOOL)
        a->b = !a->b;
      else
        a->t = PV_NULL;
      break;
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_MOD:
      b = &st[--sp];
      a = &st[sp - 1];
      if (a->t != PV_NUM || b->t != PV_NUM) {
        a->t = PV_NULL;
        break;
      }
      switch ((pop_t)in->op) {
      case OP_ADD:
        a->n += b->n;
        break;
      case OP_SUB:
        a->n -= b->n;
        break;
      case OP_MUL:
        a->n *= b->n;
        break;
      case OP_DIV:
        a->n /= b->n; /* IEEE: x/0 is +-inf, 0/0 NaN */
        break;
      default:
        a->n = fmod(a->n, b->n);
        break;
      }
      break;
    case OP_EQ:
    case OP_NE: {
      b = &st[--sp];
      a = &st[sp - 1];
      bool eq = vequal(a, b);
      /* null != x is true, null != null is false. */
      bool ne = !eq && !(a->t == PV_NULL && b->t == PV_NULL);
      set_bool(a, in->op == OP_EQ ? eq : ne);
      break;
    }
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE:
      b = &st[--sp];
      a = &st[sp - 1];
      set_bool(a, vorder(a, b, (pop_t)in->op));
      break;
    case OP_GLOB:
      b = &st[--sp];
      a = &st[sp - 1];
      if (a->t != PV_STR || b->t != PV_STR)
        a->t = PV_NULL;
      else
        set_bool(a, process__glob(b->s, b->len, a->s, a->len));
      break;
    case OP_IN: {
      size_t n = in->arg;
      bool hit = false;
      a = &st[sp - n - 1];
      for (size_t k = 0; k < n && !hit; k++)
        hit = vequal(a, &st[sp - n + k]);
      sp -= n;
      set_bool(a, hit);
      break;
    }
    case OP_ABS:
      a = &st[sp - 1];
      if (a->t == PV_NUM)
        a->n = fabs(a->n);
      else
        a->t = PV_NULL;
      break;
    case OP_MIN:
    case OP_MAX: {
      size_t n = in->arg;
      a = &st[sp - n];
      for (size_t k = 1; k < n && a->t == PV_NUM; k++) {
        b = &st[sp - n + k];
        if (b->t != PV_NUM)
          a->t = PV_NULL;
        else if (isnan(b->n) || isnan(a->n))
          a->n = NAN; /* NaN poisons min/max, like an unknown value */
        else if (in->op == OP_MIN ? b->n < a->n : b->n > a->n)
          a->n = b->n;
      }
      if (a->t != PV_NUM)
        a->t = PV_NULL;
      sp -= n - 1;
      break;
    }
    case OP_JFALSE:
      if (!(st[sp - 1].t == PV_BOOL && st[sp - 1].b))
        pc = in->arg - 1;
      break;
    case OP_JTRUE:
      if (st[sp - 1].t == PV_BOOL && st[sp - 1].b)
        pc = in->arg - 1;
      break;
    case OP_POP:
      sp--;
      break;
    case OP_TOBOOL:
      a = &st[sp - 1];
      set_bool(a, a->t == PV_BOOL && a->b);
      break;
    }
  }
  *out = sp ? st[sp - 1] : (sl_pval_t){.t = PV_NULL};
}

bool sl_process_expr_match(const sl_process_expr_t *ex,
                           const Sluice__V1__Event *ev, const char *stream) {
  sl_pval_t v;
  process__eval(ex, ev, stream, &v);
  return v.t == PV_BOOL && v.b;
}
