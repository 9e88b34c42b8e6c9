/*
 * connectors/opcua/browse.c: `sluice-opcua browse URL`: walks the address
 * space from the Objects folder (Browse, BrowseNext on continuation points)
 * and lists every variable with its NodeId, browse path (the form the
 * config's `path` takes), built-in type and current value (Read).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/opcua/opcua.h"
#include "connectors/opcua/ua_conn.h"

typedef struct node {
  sl_ua_nodeid_t id; /* str points into the node's own copy */
  char *path;
  uint32_t depth;
  int is_var;
} node_t;

typedef struct walk {
  sl_ua_conn_t *c;
  node_t *nodes;
  size_t n, cap, max;
  char *err;
  size_t errlen;
} walk_t;

static int seen(const walk_t *w, const sl_ua_nodeid_t *id) {
  for (size_t i = 0; i < w->n; i++)
    if (sl_ua_nodeid_eq(&w->nodes[i].id, id))
      return 1;
  return 0;
}

/* Appends a reference's target as a node (a copy of its id and path). */
static int add(walk_t *w, const node_t *parent, const sl_ua_ref_t *ref) {
  node_t *n;
  char seg[300];
  const sl_ua_qname_t *q = &ref->browse_name;
  size_t plen, o = 0;
  if (ref->node.server_index || seen(w, &ref->node.id))
    return 0;
  if (w->n == w->max)
    return 1;
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 256;
    node_t *nn = realloc(w->nodes, cap * sizeof(*nn));
    if (!nn)
      return -ENOMEM;
    w->nodes = nn;
    w->cap = cap;
  }
  if (q->ns)
    o = (size_t)snprintf(seg, sizeof(seg), "%u:", q->ns);
  for (int32_t i = 0; i < q->name.len && o + 3 < sizeof(seg); i++) {
    if (q->name.p[i] == '/' || q->name.p[i] == '\\')
      seg[o++] = '\\';
    seg[o++] = q->name.p[i];
  }
  seg[o] = '\0';
  plen = (parent->path[0] ? strlen(parent->path) + 1 : 0) + o + 1;
  n = &w->nodes[w->n];
  memset(n, 0, sizeof(*n));
  n->id = ref->node.id;
  n->depth = parent->depth + 1;
  n->is_var = ref->node_class == 2;
  size_t idlen = n->id.str.len > 0 ? (size_t)n->id.str.len : 0;
  if (!(n->path = malloc(plen + idlen + 1)))
    return -ENOMEM;
  snprintf(n->path, plen, "%s%s%s", parent->path, parent->path[0] ? "/" : "",
           seg);
  if (n->id.kind == UA_NID_STRING || n->id.kind == UA_NID_OPAQUE) {
    char *copy = n->path + plen;
    if (idlen)
      memcpy(copy, n->id.str.p, idlen);
    n->id.str.p = copy;
  }
  w->n++;
  return 0;
}

static int browse_node(walk_t *w, size_t at) {
  sl_ua_arena_t a = {0};
  sl_ua_msg_t m;
  sl_ua_wr_t wr;
  sl_ua_req_t rq = sl_ua_conn_req(w->c);
  char nb[64];
  int rc;
  sl_ua_wr_init(&wr);
  sl_ua_enc_browse(&wr, &rq, &w->nodes[at].id, 1, 1000);
  rc = sl_ua_conn_call(w->c, &wr, &a, &m, NULL, NULL);
  sl_ua_wr_free(&wr);
  while (!rc) {
    if (m.hdr.result || m.u.browse.n != 1) {
      snprintf(
          w->err, w->errlen, "Browse: %s",
          sl_ua_status_name(m.hdr.result ? m.hdr.result : UA_BAD_UNEXPECTED, nb,
                            sizeof(nb)));
      rc = SL_EPROTO;
      break;
    }
    const sl_ua_browse_result_t *res = &m.u.browse.res[0];
    for (uint32_t k = 0; k < res->nrefs && !rc; k++) {
      node_t parent = w->nodes[at]; /* add() may move the array */
      rc = add(w, &parent, &res->refs[k]);
    }
    if (rc || res->cont.len <= 0)
      break;
    /* More references: BrowseNext with the continuation point. */
    sl_ua_str_t cp = res->cont;
    sl_ua_arena_t b = {0};
    rq = sl_ua_conn_req(w->c);
    sl_ua_wr_init(&wr);
    sl_ua_enc_browse_next(&wr, &rq, false, &cp, 1);
    rc = sl_ua_conn_call(w->c, &wr, &b, &m, NULL, NULL);
    sl_ua_wr_free(&wr);
    sl_ua_arena_free(&a);
    a = b;
  }
  if (rc < 0 && rc != SL_EPROTO && rc != -ENOMEM)
    snprintf(w->err, w->errlen, "%s", sl_ua_conn_error(w->c));
  sl_ua_arena_free(&a);
  return rc > 0 ? 0 : rc;
}

/* Reads and prints the variables among nodes[from..to), 256 per Read. */
static void print_vars(walk_t *w, FILE *out, size_t from, size_t to) {
  sl_ua_nodeid_t ids[256];
  size_t idx[256];
  char nb[1100], tb[40], val[80];
  while (from < to) {
    size_t n = 0;
    for (; from < to && n < 256; from++)
      if (w->nodes[from].is_var) {
        ids[n] = w->nodes[from].id;
        idx[n++] = from;
      }
    if (!n)
      return;
    sl_ua_arena_t a = {0};
    sl_ua_msg_t m;
    sl_ua_wr_t wr;
    sl_ua_req_t rq = sl_ua_conn_req(w->c);
    sl_ua_wr_init(&wr);
    sl_ua_enc_read(&wr, &rq, ids, (uint32_t)n, UA_ATTR_VALUE);
    int rc = sl_ua_conn_call(w->c, &wr, &a, &m, NULL, NULL);
    sl_ua_wr_free(&wr);
    for (size_t k = 0; k < n; k++) {
      const node_t *nd = &w->nodes[idx[k]];
      snprintf(tb, sizeof(tb), "?");
      val[0] = '\0';
      if (!rc && !m.hdr.result && k < m.u.read.n) {
        const sl_ua_datavalue_t *dv = &m.u.read.dv[k];
        const sl_ua_variant_t *v = &dv->value;
        snprintf(tb, sizeof(tb), "%s%s", sl_ua_type_name(v->type),
                 v->is_array ? "[]" : "");
        if (sl_ua_severity(dv->status) >= 2)
          snprintf(val, sizeof(val), "%s",
                   sl_ua_status_name(dv->status, nb, sizeof(nb)));
        else if (v->is_array)
          snprintf(val, sizeof(val), "(%u values)", v->n);
        else if (v->type == UA_DOUBLE || v->type == UA_FLOAT)
          snprintf(val, sizeof(val), "%.17g", v->v.d);
        else if (v->type == UA_SBYTE || v->type == UA_INT16 ||
                 v->type == UA_INT32 || v->type == UA_INT64)
          snprintf(val, sizeof(val), "%lld", (long long)v->v.i);
        else if (v->type == UA_BYTE || v->type == UA_UINT16 ||
                 v->type == UA_UINT32 || v->type == UA_UINT64)
          snprintf(val, sizeof(val), "%llu", (unsigned long long)v->v.u);
        else if (v->type == UA_BOOLEAN)
          snprintf(val, sizeof(val), "%s", v->v.b ? "true" : "false");
        else if (v->type == UA_STRING && v->v.s.len >= 0)
          snprintf(val, sizeof(val), "%.*s", (int)SL_MIN(v->v.s.len, 60),
                   v->v.s.p);
      }
      fprintf(out, "%s\t%s\t%s\t%s\n",
              sl_ua_nodeid_format(&nd->id, nb, sizeof(nb)), nd->path, tb, val);
    }
    sl_ua_arena_free(&a);
  }
}

int sl_opcua_browse(const sl_opcua_browse_opts_t *o, FILE *out, char *err,
                    size_t errlen) {
  sl_ua_conn_opts_t co = {
      .url = o->url,
      .timeout_ms = o->timeout_ms ? o->timeout_ms : 5000,
      .session_timeout_ms = 60000,
      .session_name = "sluice-opcua browse",
      .user = o->user,
      .password = o->password,
      .allow_plaintext_password = o->allow_plaintext_password,
  };
  walk_t w = {.max = o->max_nodes ? o->max_nodes : 100000,
              .err = err,
              .errlen = errlen};
  int rc;
  err[0] = '\0';
  if ((rc = sl_ua_conn_open(&co, &w.c, err, errlen)))
    return rc;
  if (!(w.nodes = calloc(1, sizeof(*w.nodes))) ||
      !(w.nodes[0].path = strdup(""))) {
    rc = -ENOMEM;
    goto out;
  }
  w.cap = w.n = 1;
  w.nodes[0].id =
      (sl_ua_nodeid_t){.num = UA_NS0_OBJECTS_FOLDER, .str = {NULL, -1}};
  for (size_t i = 0; i < w.n && !rc; i++) {
    /* The standard Server object (i=2253) is large and not plant data. */
    if (w.nodes[i].id.ns == 0 && w.nodes[i].id.kind == UA_NID_NUMERIC &&
        w.nodes[i].id.num == 2253)
      continue;
    if (w.nodes[i].depth < (o->max_depth ? o->max_depth : 10))
      rc = browse_node(&w, i);
  }
  if (!rc)
    print_vars(&w, out, 1, w.n);
out:
  for (size_t i = 0; i < w.n; i++)
    free(w.nodes[i].path);
  free(w.nodes);
  sl_ua_conn_close(w.c, true);
  return rc;
}
