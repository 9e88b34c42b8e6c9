/*
 * process internals: compiled expressions, per-key hash tables with an undo
 * log, step state and the pipeline set. Only the process/ sources and the
 * process tests include this header.
 */
#ifndef SL_PROCESS_INT_H
#define SL_PROCESS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "process/process.h"

/* ---- expressions (expr.c, eval.c) ------------------------------------- */

/* Value types of the expression language. */
typedef enum {
  PV_NULL = 0, /* missing field or attribute, or a type error */
  PV_NUM,
  PV_STR,
  PV_BOOL
} pv_type_t;

/* A value on the evaluation stack. Strings point into the event or the
 * expression's constant pool (never copied, never owned). */
typedef struct sl_pval {
  double n;      /* PV_NUM */
  const char *s; /* PV_STR, not NUL-terminated */
  uint32_t len;  /* PV_STR bytes */
  uint8_t t;     /* pv_type_t */
  uint8_t b;     /* PV_BOOL */
} sl_pval_t;

/* Fields an expression can read. */
typedef enum {
  F_VALUE = 0,
  F_QUALITY,
  F_SOURCE,
  F_UNIT,
  F_TIME,
  F_MODEL,
  F_MODEL_VERSION,
  F_LABEL,
  F_SCORE,
  F_KIND,
  F_STREAM,
  F_STATUS_CODE,
  F_ROLE,         /* inference: primary, canary, shadow */
  F_STATUS,       /* inference: ok, empty, error, skipped */
  F_TASK,         /* inference: classify, detect, anomaly, regress, "" */
  F_MODEL_DIGEST, /* inference */
  F_LABEL_ID,     /* inference: the top class or detection's label id */
  F_LATENCY_US,   /* inference */
  F_SEQUENCE,     /* inference */
  F_COUNT
} pfield_t;

/* Opcodes of the stack machine. */
typedef enum {
  OP_NUM = 0, /* push nums[arg] */
  OP_STR,     /* push strs[arg] */
  OP_BOOL,    /* push arg != 0 */
  OP_FIELD,   /* push field arg */
  OP_ATTR,    /* push attribute named strs[arg] */
  OP_NEG,     /* -a */
  OP_NOT,     /* not a (null stays null) */
  OP_ADD,     /* a + b (numbers) */
  OP_SUB,
  OP_MUL,
  OP_DIV,
  OP_MOD,
  OP_EQ, /* a == b */
  OP_NE,
  OP_LT,
  OP_LE,
  OP_GT,
  OP_GE,
  OP_GLOB,   /* a ~ b: a matches glob b */
  OP_IN,     /* a in [arg values] */
  OP_ABS,    /* abs(a) */
  OP_MIN,    /* min of arg values */
  OP_MAX,    /* max of arg values */
  OP_JFALSE, /* and: if top is not true, jump to arg (keeping it) */
  OP_JTRUE,  /* or: if top is true, jump to arg (keeping it) */
  OP_POP,    /* drop top */
  OP_TOBOOL  /* non-bool -> false (after and/or's right side) */
} pop_t;

typedef struct pinstr {
  uint8_t op;   /* pop_t */
  uint32_t arg; /* operand */
} pinstr_t;

/* Parse nesting limit (and so stack depth bound): keeps the recursive
 * descent parser's stack use small on hostile input (fuzzed). */
#define PEXPR_DEPTH_MAX 100
#define PEXPR_STACK_MAX 256

struct sl_process_expr {
  pinstr_t *code; /* ncode instructions */
  size_t ncode;
  double *nums; /* constant numbers */
  size_t nnums;
  struct {
    uint32_t off, len;
  } * strs; /* constant strings: offsets into pool */
  size_t nstrs;
  char *pool;       /* string bytes */
  size_t stack_max; /* deepest stack the code reaches */
};

/* Evaluates ex on ev; the result in *out. Never allocates. */
void process__eval(const sl_process_expr_t *ex, const Sluice__V1__Event *ev,
                   const char *stream, sl_pval_t *out);

/* Glob match: '*' any run, '?' one byte, everything else literal. */
bool process__glob(const char *pat, size_t plen, const char *s, size_t slen);

/* Numeric value of a reading (double, int, bool as 0/1). Returns false for
 * anything else (no reading, string value). */
bool process__reading_num(const Sluice__V1__Event *ev, double *v);

/* The top label (highest score) of an inference event, or NULL. */
const Sluice__V1__Label *process__top_label(const Sluice__V1__Event *ev);

/* Attribute value of key (klen bytes), or NULL. */
const char *process__attr(const Sluice__V1__Event *ev, const char *key,
                          size_t klen);

/* ---- per-key hash tables with undo (table.c) -------------------------- */

/* Slot header; the step's payload follows it (esize bytes in all). */
typedef struct pslot {
  uint64_t hash; /* of the key */
  uint32_t koff; /* key bytes in the table's key arena */
  uint16_t klen; /* key length */
  uint8_t used;  /* slot holds a key */
  uint8_t pad;
  uint32_t epoch; /* run that last saved an undo copy of this slot */
  uint32_t pad2;
} pslot_t;

#define PSHARDS 64 /* state records per step */

typedef struct ptable {
  uint8_t *slots; /* cap slots of esize bytes */
  size_t cap;     /* power of two */
  size_t count;   /* used slots */
  size_t esize;   /* sizeof(pslot_t) + payload, multiple of 8 */
  char *keys;     /* key arena */
  size_t klen, kcap;
  size_t max_keys; /* refuse new keys beyond this */
  uint64_t dirty;  /* shards changed since the last state put */
} ptable_t;

typedef struct sl_process sl_process_t;

static inline pslot_t *ptable_slot(const ptable_t *t, size_t i) {
  return (pslot_t *)(void *)(t->slots + i * t->esize);
}
static inline void *pslot_data(pslot_t *s) {
  return s + 1;
}

uint64_t process__hash(const void *p, size_t n);
int process__table_init(ptable_t *t, size_t payload, size_t max_keys);
void process__table_close(ptable_t *t);
/* Grows t so that extra more keys fit without a rehash (between runs). */
int process__table_reserve(ptable_t *t, size_t extra);
/* Finds key; creates it (zeroed payload) when create. Saves an undo copy
 * the first time a slot is touched in this run and marks its shard dirty.
 * Returns the payload or NULL (not found, max_keys reached: *full = 1, or
 * no memory: pr is poisoned). */
void *process__table_get(sl_process_t *pr, ptable_t *t, uint64_t hash,
                         const char *key, size_t klen, bool create, bool *full);
/* Marks a slot touched (undo copy, dirty shard) before changing it in a
 * sweep that did not go through process__table_get(). */
int process__table_touch(sl_process_t *pr, ptable_t *t, pslot_t *s);

/* ---- steps ------------------------------------------------------------ */

/* What a step decided for one event. */
typedef enum {
  STEP_PASS = 0, /* next step */
  STEP_DROP,     /* stop; reason in *reason */
  STEP_LATE      /* late for every window: kept, tagged sluice.late, next */
} pstep_verdict_t;

/* Deadband per-key payload. */
typedef struct pdeadband {
  double last;     /* last sent numeric value */
  uint64_t last_s; /* hash of the last sent string, or the integer (kind 3/4) */
  int64_t last_t;  /* event time of the last sent value */
  int64_t quality; /* quality of the last sent value */
  int64_t kind;    /* 1 numeric, 2 string, 3 int_value, 4 uint_value */
} pdeadband_t;

/* sample / rate_limit per-key payload. */
typedef struct pcounter {
  uint64_t n;       /* events seen (sample) or kept this interval */
  int64_t interval; /* current interval index (rate_limit) */
} pcounter_t;

#define PLABELS 8   /* distinct labels per window; more go to "other" */
#define PVERSIONS 4 /* distinct model versions per window */
#define PNAME 24    /* label / version name bytes kept */

/* One window accumulator (readings); padding-free, 8-byte fields. */
typedef struct pwin {
  int64_t start;                  /* window start (event time, ns) */
  uint64_t used;                  /* 1 while open */
  uint64_t count;                 /* numeric values */
  uint64_t nan;                   /* NaN values (not in the statistics) */
  double sum, mean, m2, min, max; /* Welford mean/m2 for stddev */
  double first, last;
  int64_t first_t, last_t;
} pwin_t;

/* Inference extras of a window (only when the step asks for them). */
typedef struct pwin_inf {
  char label[PLABELS][PNAME];
  uint64_t label_n[PLABELS + 1]; /* [PLABELS] = other */
  char version[PVERSIONS][PNAME];
  double score_sum[PVERSIONS + 1];
  uint64_t score_n[PVERSIONS + 1];
} pwin_inf_t;

/* Aggregate per-key payload header; nwin pwin_t follow, then nwin
 * pwin_inf_t when the step has inference functions. */
typedef struct pagg {
  char unit[16]; /* unit of the last reading, NUL-padded */
} pagg_t;

typedef struct pstep {
  sl_process_step_kind_t kind;
  sl_process_step_conf_t c; /* strings below are owned copies */
  sl_process_expr_t *ex;    /* filter */
  char *tag_key, *tag_value, *group_by, *into, *stream, *topic, *key;
  int by;              /* aggregate group key: BY_* */
  int by_cap;          /* capture index with BY_CAPTURE */
  const char *by_attr; /* attribute name with BY_ATTR */
  size_t by_attr_len;
  size_t nwin;    /* window slots per key */
  bool inference; /* labels/scores accumulators present */
  ptable_t tab;   /* per-key state (stateful steps) */
  bool stateful;
  uint64_t fingerprint; /* of the state layout and semantics */
  /* aggregate watermark: max event time seen, persisted */
  int64_t wm;
  uint64_t have_wm;
  bool meta_dirty;
  /* Set by sl_process_watermark_cap() and sl_process_watermark_rebase():
   * windows starting after flush_above are emitted by a sweep at the start
   * of the pipeline's next run (before its events), which clears it. */
  bool flush_future;
  int64_t flush_above;
  struct pmagg_conf *ma; /* model_aggregate: reference (owned) */
} pstep_t;

enum { BY_SOURCE = 0, BY_NONE, BY_ATTR, BY_CAPTURE };

/* A compiled source glob. */
typedef struct pglob_tok {
  uint8_t type;      /* 0 literal, 1 star, 2 qmark, 3 capture */
  uint32_t off, len; /* literal bytes in the pattern / capture index */
} pglob_tok_t;

typedef struct pcapture {
  const char *s; /* into the source string */
  size_t len;
} pcapture_t;

typedef struct pmatch {
  char *source; /* pattern text (owned) */
  pglob_tok_t *toks;
  size_t ntoks;
  char *capname[SL_PROCESS_CAPTURES]; /* owned names */
  size_t ncap;
  char *attr_key[SL_PROCESS_MATCH_ATTRS];
  char *attr_glob[SL_PROCESS_MATCH_ATTRS];
  size_t nattrs;
  unsigned kinds;
  char *stream; /* NULL = any */
} pmatch_t;

typedef struct ppipeline {
  char *name;
  pmatch_t m;
  pstep_t steps[SL_PROCESS_STEPS_MAX];
  size_t nsteps;
  sl_process_stats_t stats;
} ppipeline_t;

/* A result to emit, materialised into an Event at the end of a run. */
typedef struct pemit_rec {
  const ppipeline_t *p;
  const pstep_t *s;
  uint32_t koff, klen; /* group key in pr->ekeys */
  char unit[16];
  bool correction;
  pwin_t w;
  pwin_inf_t inf; /* valid when s->inference */
} pemit_rec_t;

/* Undo record: slot bytes follow in the undo arena. */
typedef struct pundo {
  ptable_t *t;
  size_t slot;
} pundo_t;

struct sl_process {
  ppipeline_t *pipes;
  size_t npipes, capp;
  uint32_t epoch; /* run counter (undo first-touch marks) */
  bool pending;   /* a run's changes await commit/rollback */
  bool poisoned;
  /* undo log of the pending run */
  uint8_t *undo;
  size_t undo_len, undo_cap;
  struct {
    ptable_t *t;
    size_t count, klen;
  } * tmarks; /* table sizes at the start of the run */
  size_t ntmarks;
  sl_process_stats_t *stats_mark; /* per pipeline, start of run */
  struct {
    int64_t wm;
    uint64_t have_wm;
    bool flush_future;
  } * wm_mark; /* per step, start of run */
  size_t nsteps_all;
  /* per-run outputs */
  uint8_t *keep;
  const char **dest;
  size_t ocap;
  sl_process_tag_t *tags;
  size_t ntags, tcap;
  pemit_rec_t *erec;
  size_t nerec, ecap;
  uint32_t *eorder; /* sort scratch, ecap entries */
  char *ekeys;      /* group keys of emitted results */
  size_t eklen, ekcap;
  /* materialised emits */
  sl_process_emit_t *emit;
  Sluice__V1__Event *eev;
  Sluice__V1__Reading *erd;
  Sluice__V1__Attribute *eattr;
  Sluice__V1__Attribute **eattrp;
  char *etext;
  size_t mcap, acap, tcap_text;
  /* state encode/decode scratch */
  uint8_t *sbuf;
  size_t scap;
  struct pmagg_out *ma; /* model_aggregate results of the run (owned) */
};

/* Step runners (deadband.c, sample.c, window.c). key/klen/hash: the
 * event's group key. */
pstep_verdict_t process__deadband(sl_process_t *pr, pstep_t *s,
                                  const Sluice__V1__Event *ev, uint64_t hash,
                                  sl_process_reason_t *reason);
pstep_verdict_t process__sample(sl_process_t *pr, pstep_t *s,
                                const Sluice__V1__Event *ev, uint64_t hash,
                                sl_process_reason_t *reason);
pstep_verdict_t process__rate_limit(sl_process_t *pr, pstep_t *s,
                                    const Sluice__V1__Event *ev, uint64_t hash,
                                    sl_process_reason_t *reason);
pstep_verdict_t process__aggregate(sl_process_t *pr, ppipeline_t *p, pstep_t *s,
                                   const Sluice__V1__Event *ev, const char *key,
                                   size_t klen, uint64_t hash,
                                   sl_process_reason_t *reason);
/* Closes every window the watermark has passed (end of a run). */
int process__aggregate_sweep(sl_process_t *pr, ppipeline_t *p, pstep_t *s);
/* Payload bytes of an aggregate step's entries. */
size_t process__aggregate_payload(const pstep_t *s);
/* Builds the Events of the run's emit records. */
int process__emit_materialise(sl_process_t *pr);
/* Queues one emit record (copy of w). */
int process__emit_add(sl_process_t *pr, const ppipeline_t *p, const pstep_t *s,
                      const char *key, size_t klen, const char *unit,
                      const pwin_t *w, const pwin_inf_t *inf, bool correction);

/* route.c: source globs with captures, matching. */
int process__match_compile(pmatch_t *m, const sl_process_pipeline_conf_t *pc,
                           char *errstr, size_t errlen);
void process__match_free(pmatch_t *m);
/* True when ev (of stream) matches; fills caps[0..m->ncap-1]. */
bool process__match(const pmatch_t *m, const char *stream,
                    const Sluice__V1__Event *ev, pcapture_t *caps);
bool process__glob_caps(const pglob_tok_t *toks, size_t ntoks, const char *pat,
                        const char *s, size_t slen, pcapture_t *caps);

/* state.c */
uint64_t process__fingerprint(const pstep_t *s);

/* window.c: grows the emit arrays (emit, eev, ...) to n records and the
 * text arena to text_need bytes. Returns 0 or -ENOMEM. */
int process__emit_reserve(sl_process_t *pr, size_t n, size_t text_need);

/* model_agg.c: the model_aggregate step (docs/EDGE-AI.md). */
static inline bool process__windowed(const pstep_t *s) {
  return s->kind == SL_PROCESS_AGGREGATE || s->kind == SL_PROCESS_MODEL_AGG;
}
int process__magg_compile(sl_process_t *pr, pstep_t *s,
                          const sl_process_step_conf_t *c, size_t k,
                          char *errstr, size_t errlen);
void process__magg_conf_free(pstep_t *s);
void process__magg_out_free(sl_process_t *pr);
pstep_verdict_t process__magg(sl_process_t *pr, ppipeline_t *p, pstep_t *s,
                              const Sluice__V1__Event *ev,
                              sl_process_reason_t *reason);
int process__magg_sweep(sl_process_t *pr, ppipeline_t *p, pstep_t *s);
/* Results of the run: forget them (start of a run, rollback). */
void process__magg_reset(sl_process_t *pr);
size_t process__magg_count(const sl_process_t *pr);
/* Builds the run's result Events into pr->emit[first..]. */
void process__magg_materialise(sl_process_t *pr, size_t first);
/* Inserts one loaded entry (payload of the step's esize) of s. */
int process__magg_load(sl_process_t *pr, pstep_t *s, const uint8_t *payload);

#endif /* SL_PROCESS_INT_H */
