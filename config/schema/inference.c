/*
 * The `oip:` config section (docs/EDGE-AI.md): named profiles telling how
 * an Open Inference Protocol v2 response becomes an inference event (model,
 * task, output tensor, label map, threshold, top-k, role). MQTT
 * subscriptions (`decoder: oip`, `oip: NAME`) and HTTP
 * (`POST /v1/inference?format=oip&oip=NAME`) name a profile.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config/config_int.h"

#define OIP_OPT(n, t, f, d, fl, desc_, ...)                                    \
  {                                                                            \
    .name = n, .type = SL_CFG_##t, .off = offsetof(sl_config_oip_t, f),        \
    .def = d, .flags = fl, .desc = desc_, __VA_ARGS__                          \
  }

/* Indexes are Sluice__V1__InferenceTask / InferenceRole values. */
static const char *const tasks[] = {"unspecified", "classify", "detect",
                                    "anomaly",     "regress",  NULL};
static const char *const roles[] = {"unspecified", "primary", "canary",
                                    "shadow", NULL};

static const char *check_name(const char *s) {
  if (!*s || strlen(s) > 64 ||
      strspn(s, "abcdefghijklmnopqrstuvwxyz"
                "0123456789._-") != strlen(s))
    return "is not a profile name (1-64 characters of a-z 0-9 . _ -)";
  return NULL;
}

static const sl_cfg_opt_t oip_opts[] = {
    OIP_OPT("name", STRING, name, NULL, SL_CFG_REQUIRED,
            "Profile name, unique; named by a subscription's oip or HTTP's "
            "?oip=.",
            .check = check_name),
    OIP_OPT("model", STRING, model, "", 0,
            "Model name when the response has no model_name."),
    OIP_OPT("model_version", STRING, model_version, "", 0,
            "Model version when the response has none."),
    OIP_OPT("model_digest", STRING, model_digest, "", 0,
            "Artifact digest put on every event (sha256:<hex>)."),
    OIP_OPT("task", ENUM, task, "classify", 0,
            "What the output tensor holds: classify (class scores), detect "
            "(rows x, y, w, h, score, class), anomaly (first element), "
            "regress (values).",
            .enums = tasks),
    OIP_OPT("output", STRING, output, "", 0,
            "Output tensor name; \"\" = the first output."),
    OIP_OPT("labels", LIST, labels, "", 0,
            "Label map: names of class 0, 1, ... (classify: as many as "
            "scores)."),
    OIP_OPT("label_map_digest", STRING, label_map_digest, "", 0,
            "Digest of the label map, put on every event."),
    OIP_OPT("score_threshold", DOUBLE, score_threshold, "0", 0,
            "Classes and detections below are left out; none left = status "
            "empty.",
            .min = "0", .max = "1"),
    OIP_OPT("top_k", UINT, top_k, "5", 0, "classify: classes kept.", .min = "1",
            .max = "1024"),
    OIP_OPT("role", ENUM, role, "primary", 0,
            "Role of the model version: primary, canary or shadow.",
            .enums = roles),
};

static void oip_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  const sl_config_oip_t *o = obj;
  if (o->task == 0)
    sl_cfg_errf(errs, NULL, 0, 0, prefix,
                "task must be classify, detect, "
                "anomaly or regress");
  if (o->role == 0)
    sl_cfg_errf(errs, NULL, 0, 0, prefix,
                "role must be primary, canary or shadow");
}

const sl_cfg_section_t sl_config__oip_section = {
    .name = "oip",
    .opts = oip_opts,
    .n_opts = SL_ARRAY_SIZE(oip_opts),
    .size = sizeof(sl_config_oip_t),
    .finish = oip_finish,
};

const sl_config_oip_t *sl_config_oip_find(const sl_config_t *cfg,
                                          const char *name) {
  for (size_t i = 0; name && i < cfg->oip.n; i++)
    if (!strcmp(cfg->oip.v[i].name, name))
      return &cfg->oip.v[i];
  return NULL;
}
