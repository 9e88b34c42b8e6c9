/*
 * model/manifest.c: model manifests: built from the artifact by the
 * publisher, verified (the fleet key's Ed25519 signature over the exact
 * bytes) and checked by the node before it trusts a single field.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "model/model.h"
#include "model/model_int.h"

static void hex(const unsigned char *d, char out[65]) {
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
    snprintf(out + 2 * i, 3, "%02x", d[i]);
}

int sl_model_hash_chunks(const void *data, size_t len, uint32_t chunk_size,
                         char whole[65], char (**hashes)[65], size_t *n) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  size_t cnt;
  if (!chunk_size)
    chunk_size = SL_MODEL_MAX_CHUNK;
  cnt = (len + chunk_size - 1) / chunk_size;
  *hashes = calloc(cnt ? cnt : 1, 65);
  if (!*hashes)
    return -ENOMEM;
  for (size_t i = 0; i < cnt; i++) {
    size_t off = i * chunk_size,
           l = len - off < chunk_size ? len - off : chunk_size;
    SHA256((const unsigned char *)data + off, l, d);
    hex(d, (*hashes)[i]);
  }
  SHA256(data, len, d);
  hex(d, whole);
  *n = cnt;
  return 0;
}

bool model__safe_component(const char *s) {
  size_t n = strlen(s);
  if (!n || n > 128 || s[0] == '.')
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' ||
          c == '+'))
      return false;
  }
  return true;
}

static bool is_hex64(const char *s) {
  if (strlen(s) != 64)
    return false;
  for (int i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

int sl_model_manifest_build(const sl_model_build_t *b, const void *data,
                            size_t len, uint8_t **out, size_t *outlen,
                            char *err, size_t errlen) {
  Sluice__V1__ModelManifest m = SLUICE__V1__MODEL_MANIFEST__INIT;
  Sluice__V1__ModelGate g = SLUICE__V1__MODEL_GATE__INIT;
  Sluice__V1__ModelFile f = SLUICE__V1__MODEL_FILE__INIT;
  Sluice__V1__ModelFile *fp = &f;
  Sluice__V1__ModelManifest__LabelsEntry *ents = NULL, **entp = NULL;
  char whole[65], (*hashes)[65] = NULL;
  char **hp = NULL;
  size_t n = 0, nl = 0;
  json_t *labels = NULL;
  int rc;

  *out = NULL;
  uint32_t cs = b->chunk_size ? b->chunk_size : SL_MODEL_MAX_CHUNK;
  if (cs > SL_MODEL_MAX_CHUNK || cs < 4096) {
    snprintf(err, errlen, "chunk size %u: must be 4096..524288 bytes", cs);
    return SL_ECONFIG;
  }
  if (!b->name || !model__safe_component(b->name) || !b->version ||
      !model__safe_component(b->version)) {
    snprintf(err, errlen,
             "name and version: 1..128 of [A-Za-z0-9._+-], not starting "
             "with '.'");
    return SL_ECONFIG;
  }
  if (b->file_name && !model__safe_component(b->file_name)) {
    snprintf(err, errlen, "file name '%s': a plain file name", b->file_name);
    return SL_ECONFIG;
  }
  if (!len) {
    snprintf(err, errlen, "the artifact is empty");
    return SL_ECONFIG;
  }
  if ((rc = sl_model_hash_chunks(data, len, cs, whole, &hashes, &n)) < 0)
    return rc;
  if (!(hp = calloc(n, sizeof(*hp)))) {
    rc = -ENOMEM;
    goto fail;
  }
  for (size_t i = 0; i < n; i++)
    hp[i] = hashes[i];
  if (b->labels_json && *b->labels_json) {
    json_error_t je;
    const char *k;
    json_t *v;
    if (!(labels = json_loads(b->labels_json, 0, &je)) ||
        !json_is_object(labels)) {
      snprintf(err, errlen, "labels: a JSON object {\"0\": \"name\"}: %s",
               je.text);
      rc = SL_ECONFIG;
      goto fail;
    }
    nl = json_object_size(labels);
    ents = calloc(nl ? nl : 1, sizeof(*ents));
    entp = calloc(nl ? nl : 1, sizeof(*entp));
    if (!ents || !entp) {
      rc = -ENOMEM;
      goto fail;
    }
    size_t i = 0;
    json_object_foreach(labels, k, v) {
      char *end;
      unsigned long id = strtoul(k, &end, 10);
      if (*end || !json_is_string(v)) {
        snprintf(err, errlen,
                 "labels: key '%s' is not a label id or its "
                 "value not a string",
                 k);
        rc = SL_ECONFIG;
        goto fail;
      }
      sluice__v1__model_manifest__labels_entry__init(&ents[i]);
      ents[i].key = (uint32_t)id;
      ents[i].value = (char *)json_string_value(v);
      entp[i] = &ents[i];
      i++;
    }
  }
  m.name = (char *)b->name;
  m.version = (char *)b->version;
  m.sha256 = whole;
  m.size = len;
  m.chunk_size = cs;
  m.n_chunk_sha256 = n;
  m.chunk_sha256 = hp;
  m.chunk_partition = b->chunk_partition;
  if (b->chunk_offsets) {
    m.n_chunk_offsets = n;
    m.chunk_offsets = (int64_t *)b->chunk_offsets;
  }
  f.path = (char *)(b->file_name ? b->file_name : "model.bin");
  f.size = len;
  f.sha256 = whole;
  m.n_files = 1;
  m.files = &fp;
  m.runtime = (char *)(b->runtime ? b->runtime : "");
  m.format = (char *)(b->format ? b->format : "");
  m.role = (char *)(b->role ? b->role : "primary");
  m.previous_version = (char *)(b->previous_version ? b->previous_version : "");
  m.previous_sha256 = (char *)(b->previous_sha256 ? b->previous_sha256 : "");
  m.n_labels = nl;
  m.labels = entp;
  if (b->reference) {
    m.n_reference_hist = SL_MODEL_HIST_BINS;
    m.reference_hist = (double *)b->reference;
  }
  g.max_error_rate = b->gate.max_error_rate;
  g.max_empty_rate = b->gate.max_empty_rate;
  g.max_p95_latency_ms = b->gate.max_p95_latency_ms;
  g.max_psi = b->gate.max_psi;
  g.min_events = b->gate.min_events;
  g.windows = b->gate.windows;
  g.ack_timeout_ms = b->gate.ack_timeout_ms;
  g.timeout_ms = b->gate.timeout_ms;
  g.min_agreement = b->gate.min_agreement;
  g.max_error_rate_delta = b->gate.max_error_rate_delta;
  m.gate = &g;
  m.published_ns = b->published_ns;
  *outlen = sluice__v1__model_manifest__get_packed_size(&m);
  if (!(*out = malloc(*outlen ? *outlen : 1))) {
    rc = -ENOMEM;
    goto fail;
  }
  sluice__v1__model_manifest__pack(&m, *out);
  rc = 0;
fail:
  free(hashes);
  free(hp);
  free(ents);
  free(entp);
  json_decref(labels);
  return rc;
}

int sl_model_manifest_open(const sl_fleet_key_t *key, const void *rec,
                           size_t len, sl_model_manifest_t **out, char *err,
                           size_t errlen) {
  const uint8_t *payload;
  size_t plen;
  void *hold = NULL;
  int kind, rc;
  sl_model_manifest_t *mm = NULL;
  Sluice__V1__ModelManifest *m;

  *out = NULL;
  if ((rc = sl_fleet_verify(key, rec, len, &kind, &payload, &plen, &hold, err,
                            errlen)) < 0)
    return rc;
  if (kind != SL_FLEET_MODEL) {
    snprintf(err, errlen, "signed document of kind %d, not a model manifest",
             kind);
    rc = SL_EPROTO;
    goto fail;
  }
  if (!(m = sluice__v1__model_manifest__unpack(NULL, plen, payload))) {
    snprintf(err, errlen, "the payload is not a ModelManifest");
    rc = SL_EPROTO;
    goto fail;
  }
  if (!(mm = calloc(1, sizeof(*mm)))) {
    sluice__v1__model_manifest__free_unpacked(m, NULL);
    rc = -ENOMEM;
    goto fail;
  }
  mm->m = m;
  rc = SL_EPROTO;
  if (!model__safe_component(m->name) || !model__safe_component(m->version)) {
    snprintf(err, errlen, "manifest name '%.64s' or version '%.64s' unsafe",
             m->name, m->version);
    goto fail;
  }
  if (!is_hex64(m->sha256) || !m->size || m->chunk_size < 4096 ||
      m->chunk_size > SL_MODEL_MAX_CHUNK) {
    snprintf(err, errlen, "manifest %s %s: bad sha256, size or chunk size",
             m->name, m->version);
    goto fail;
  }
  if (m->n_chunk_sha256 != (m->size + m->chunk_size - 1) / m->chunk_size ||
      (m->n_chunk_offsets && m->n_chunk_offsets != m->n_chunk_sha256)) {
    snprintf(err, errlen, "manifest %s %s: %zu chunk hashes for %llu bytes",
             m->name, m->version, m->n_chunk_sha256,
             (unsigned long long)m->size);
    goto fail;
  }
  for (size_t i = 0; i < m->n_chunk_sha256; i++)
    if (!is_hex64(m->chunk_sha256[i])) {
      snprintf(err, errlen, "manifest %s %s: chunk %zu hash not hex", m->name,
               m->version, i);
      goto fail;
    }
  if (m->n_files && !model__safe_component(m->files[0]->path)) {
    snprintf(err, errlen, "manifest %s %s: file name unsafe", m->name,
             m->version);
    goto fail;
  }
  if (m->n_reference_hist && m->n_reference_hist != SL_MODEL_HIST_BINS) {
    snprintf(err, errlen, "manifest %s %s: reference has %zu bins, not %d",
             m->name, m->version, m->n_reference_hist, SL_MODEL_HIST_BINS);
    goto fail;
  }
  if (!(mm->rec = malloc(len))) {
    rc = -ENOMEM;
    goto fail;
  }
  memcpy(mm->rec, rec, len);
  mm->rec_len = len;
  free(hold);
  *out = mm;
  return 0;
fail:
  free(hold);
  sl_model_manifest_free(mm);
  return rc;
}

void sl_model_manifest_free(sl_model_manifest_t *mm) {
  if (!mm)
    return;
  if (mm->m)
    sluice__v1__model_manifest__free_unpacked(mm->m, NULL);
  free(mm->rec);
  free(mm);
}

void sl_model_manifest_info(const sl_model_manifest_t *mm,
                            sl_model_manifest_info_t *info) {
  const Sluice__V1__ModelManifest *m = mm->m;
  memset(info, 0, sizeof(*info));
  info->name = m->name;
  info->version = m->version;
  info->sha256 = m->sha256;
  info->role = *m->role ? m->role : "primary";
  info->file_name = m->n_files ? m->files[0]->path : "model.bin";
  info->size = m->size;
  info->chunk_size = m->chunk_size;
  info->chunks = (uint32_t)m->n_chunk_sha256;
  info->chunk_partition = m->chunk_partition;
  info->chunk_offsets = m->n_chunk_offsets ? m->chunk_offsets : NULL;
  info->reference = m->n_reference_hist ? m->reference_hist : NULL;
  if (m->gate) {
    const Sluice__V1__ModelGate *g = m->gate;
    info->gate.max_error_rate = g->max_error_rate;
    info->gate.max_empty_rate = g->max_empty_rate;
    info->gate.max_p95_latency_ms = g->max_p95_latency_ms;
    info->gate.max_psi = g->max_psi;
    info->gate.min_events = g->min_events;
    info->gate.windows = g->windows;
    info->gate.ack_timeout_ms = g->ack_timeout_ms;
    info->gate.timeout_ms = g->timeout_ms;
    info->gate.min_agreement = g->min_agreement;
    info->gate.max_error_rate_delta = g->max_error_rate_delta;
  }
}
