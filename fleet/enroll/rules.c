/*
 * fleet/enroll/rules.c: the approval rules (a YAML file, config engine
 * tables) and the decision over one enrolment request (enroll.h).
 */
#include <fnmatch.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fleet/enroll/enroll.h"

#define ROW(T, key, ty, f, d, doc, ...)                                        \
  {                                                                            \
    .name = key, .type = SL_CFG_##ty, .off = offsetof(T, f), .def = d,         \
    .desc = doc, __VA_ARGS__                                                   \
  }

_Static_assert(offsetof(sl_enroll_rules_t, labels) % sizeof(void *) == 0,
               "labels is an sl_cfg_array_t");

static const sl_cfg_opt_t label_opts[] = {
    ROW(sl_enroll_label_rule_t, "key", STRING, key, NULL,
        "A label key nodes may ask for.", .flags = SL_CFG_REQUIRED),
    ROW(sl_enroll_label_rule_t, "values", LIST, values, "",
        "Globs (fnmatch) the value must match; empty: any value."),
};

static const sl_cfg_section_t label_section = {
    .name = "labels",
    .opts = label_opts,
    .n_opts = sizeof(label_opts) / sizeof(label_opts[0]),
    .size = sizeof(sl_enroll_label_rule_t),
};

static const sl_cfg_opt_t rule_opts[] = {
    ROW(sl_enroll_rules_t, "auto_approve", BOOL, auto_approve, "false",
        "Approve, without an operator, a request that passes every rule "
        "below; false: every new request waits in the lobby for `sluice "
        "fleet enroll approve`."),
    ROW(sl_enroll_rules_t, "auto_renew", BOOL, auto_renew, "true",
        "Approve a renewal whose CSR is signed by the key the node's valid, "
        "not revoked certificate holds."),
    ROW(sl_enroll_rules_t, "cert_lifetime", DURATION, cert_lifetime, "90d",
        "Lifetime of the node certificates the service signs.", .min = "1h",
        .max = "3650d"),
    ROW(sl_enroll_rules_t, "serials", LIST, serials, "",
        "Allow-list of DMI serial globs (fnmatch, \"SN-2026-*\"); a request "
        "whose dmi_serial matches none waits in the lobby. Empty: any "
        "serial. (The serial is what the node reports: it narrows "
        "auto-approval, it does not authenticate.)"),
    ROW(sl_enroll_rules_t, "claims", LIST, claims, "",
        "Claim ids (EnrolRequest.claim) this fleet accepts; a request "
        "naming another claim is DENIED. Empty: any claim."),
    ROW(sl_enroll_rules_t, "labels", SECTION_LIST, labels, "",
        "Label keys (and value globs) a node may ask for.",
        .sub = &label_section),
    ROW(sl_enroll_rules_t, "pinned_ids", BOOL, pinned_ids, "false",
        "Let the rules approve a node whose id is not derived from its key "
        "(node.id set in its local config); false: such a request waits "
        "for an operator (anyone holding the claim could ask for any "
        "pinned id)."),
    ROW(sl_enroll_rules_t, "labels_strict", BOOL, labels_strict, "false",
        "A requested label outside `labels`: true DENIES the request, false "
        "leaves it in the lobby for an operator."),
};

const sl_cfg_section_t sl_enroll_rules_section = {
    .name = "",
    .opts = rule_opts,
    .n_opts = sizeof(rule_opts) / sizeof(rule_opts[0]),
    .size = sizeof(sl_enroll_rules_t),
    .flags = SL_CFG_SEC_PRIVATE_FILE,
};

int sl_enroll_rules_load(const char *path, const char *name, const char *yaml,
                         size_t len, sl_enroll_rules_t **out, char *err,
                         size_t errlen) {
  void *obj = NULL;
  int rc = path ? sl_cfg_load_file(&sl_enroll_rules_section, path, NULL, &obj,
                                   err, errlen)
                : sl_cfg_load(&sl_enroll_rules_section, name, yaml, len, NULL,
                              &obj, err, errlen);
  *out = rc ? NULL : obj;
  return rc;
}

void sl_enroll_rules_free(sl_enroll_rules_t *r) {
  if (!r)
    return;
  sl_cfg_obj_free(&sl_enroll_rules_section, r);
  free(r);
}

const char *sl_enroll_decision_name(int d) {
  switch (d) {
  case SL_ENROLL_PENDING:
    return "PENDING";
  case SL_ENROLL_APPROVED:
    return "APPROVED";
  case SL_ENROLL_DENIED:
    return "DENIED";
  case SL_ENROLL_REVOKED:
    return "REVOKED";
  }
  return "UNKNOWN";
}

static bool glob_any(const sl_cfg_strlist_t *l, const char *s) {
  for (size_t i = 0; i < l->n; i++)
    if (!fnmatch(l->v[i], s, 0))
      return true;
  return false;
}

static const sl_enroll_label_rule_t *label_rule(const sl_enroll_rules_t *r,
                                                const char *key) {
  const sl_enroll_label_rule_t *lr = r->labels.v;
  for (size_t i = 0; i < r->labels.n; i++)
    if (!strcmp(lr[i].key, key))
      return &lr[i];
  return NULL;
}

int sl_enroll_decide(const sl_enroll_rules_t *r,
                     const Sluice__V1__EnrolRequest *req,
                     const sl_enroll_state_t *st, char *reason,
                     size_t reasonlen) {
  const Sluice__V1__EnrolDecision *d = st->decision;
  const Sluice__V1__EnrolResponse *ok = st->approved;
  bool valid = ok && ok->not_after_ns > st->now_ns;
  bool same_key = ok && ok->key_sha256 && req->key_sha256 &&
                  !strcasecmp(ok->key_sha256, req->key_sha256);

  if (st->revoked) {
    snprintf(reason, reasonlen, "revoked%s%s",
             d && d->reason && *d->reason ? ": " : "",
             d && d->reason ? d->reason : "");
    return SL_ENROLL_REVOKED;
  }
  /* "sl-" + 20 hex digits is the id a node derives from its key
   * (security/identity.h): it must be that key's, whoever approves. */
  const char *id = req->node_id ? req->node_id : "";
  const char *ks = req->key_sha256 ? req->key_sha256 : "";
  bool derived = !strncmp(id, "sl-", 3) && strlen(id) == 23;
  if (derived && (strlen(ks) < 20 || strncasecmp(id + 3, ks, 20))) {
    snprintf(reason, reasonlen,
             "node id %.32s is not derived from the "
             "request's key",
             id);
    return SL_ENROLL_DENIED;
  }
  /* An operator's word about this node, unless an approval came after it
   * (then it was acted on; a later request is judged afresh). */
  if (d && d->decision != SL_ENROLL_PENDING &&
      (!ok || d->time_ns > ok->time_ns)) {
    snprintf(reason, reasonlen, "%s by %s%s%s",
             d->decision == SL_ENROLL_APPROVED ? "approved" : "denied",
             d->actor && *d->actor ? d->actor : "an operator",
             d->reason && *d->reason ? ": " : "", d->reason ? d->reason : "");
    return d->decision == SL_ENROLL_APPROVED ? SL_ENROLL_APPROVED
                                             : SL_ENROLL_DENIED;
  }
  if (valid && same_key) {
    if (r && !r->auto_renew) {
      snprintf(reason, reasonlen,
               "renewal waits for an operator "
               "(auto_renew is off)");
      return SL_ENROLL_PENDING;
    }
    snprintf(reason, reasonlen, "renewal of the enrolled key");
    return SL_ENROLL_APPROVED;
  }
  if (valid) {
    snprintf(reason, reasonlen,
             "node id already enrolled with another key: an operator must "
             "approve (link) the new key");
    return SL_ENROLL_PENDING;
  }
  /* Any other id was pinned by the node's local config, which anyone
   * holding the claim could ask for too: an operator decides. */
  if (!derived && (!r || !r->pinned_ids)) {
    snprintf(reason, reasonlen, "pinned node id: waiting for an operator");
    return SL_ENROLL_PENDING;
  }
  if (!r) {
    snprintf(reason, reasonlen, "no rules: waiting for an operator");
    return SL_ENROLL_PENDING;
  }
  if (r->claims.n) {
    bool found = false;
    for (size_t i = 0; i < r->claims.n && !found; i++)
      found = req->claim && !strcmp(r->claims.v[i], req->claim);
    if (!found) {
      snprintf(reason, reasonlen, "claim \"%.64s\" is not accepted",
               req->claim ? req->claim : "");
      return SL_ENROLL_DENIED;
    }
  }
  for (size_t i = 0; i < req->n_labels; i++) {
    const char *k = req->labels[i]->key ? req->labels[i]->key : "";
    const char *v = req->labels[i]->value ? req->labels[i]->value : "";
    const sl_enroll_label_rule_t *lr = label_rule(r, k);
    if (!lr || (lr->values.n && !glob_any(&lr->values, v))) {
      snprintf(reason, reasonlen, "label %.64s=%.64s is not allowed", k, v);
      return r->labels_strict ? SL_ENROLL_DENIED : SL_ENROLL_PENDING;
    }
  }
  if (r->serials.n &&
      !glob_any(&r->serials, req->dmi_serial ? req->dmi_serial : "")) {
    snprintf(reason, reasonlen, "serial \"%.64s\" is not on the allow-list",
             req->dmi_serial ? req->dmi_serial : "");
    return SL_ENROLL_PENDING;
  }
  if (!r->auto_approve) {
    snprintf(reason, reasonlen,
             "waiting for an operator (auto_approve is "
             "off)");
    return SL_ENROLL_PENDING;
  }
  snprintf(reason, reasonlen, "approved by rule");
  return SL_ENROLL_APPROVED;
}
