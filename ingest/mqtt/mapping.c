/*
 * MQTT topic rules: mqtt.subscriptions compiled into filters with named
 * captures ("plant/+site/+line/#" captures {site} and {line}), matched
 * first-wins against each received topic, and source templates expanded
 * from the captures. Matching works on views into the topic: no copies.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/mqtt/mqtt.h"

bool mqtt__utf8_ok(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s, *end = p + len;
  while (p < end) {
    unsigned c = *p, n, cp;
    if (c == 0)
      return false;
    if (c < 0x80) {
      p++;
      continue;
    }
    if ((c & 0xe0) == 0xc0)
      n = 1, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
      n = 2, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
      n = 3, cp = c & 0x07;
    else
      return false;
    if ((size_t)(end - p) <= n)
      return false;
    for (unsigned i = 1; i <= n; i++) {
      if ((p[i] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* Overlong forms, surrogates, beyond U+10FFFF. */
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
        (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    p += n + 1;
  }
  return true;
}

static void rule_free(mqtt_rule_t *r) {
  for (size_t i = 0; i < r->nlevels; i++) {
    free(r->levels[i]);
    free(r->names[i]);
  }
  free(r->levels);
  free(r->names);
  free(r->filter);
}

static int rule_compile(mqtt_rule_t *r, const char *filter) {
  size_t n = 1, len = strlen(filter), k = 0;
  char *f;
  for (const char *p = filter; *p; p++)
    n += *p == '/';
  r->levels = calloc(n, sizeof(char *));
  r->names = calloc(n, sizeof(char *));
  r->filter = malloc(len + 1);
  if (!r->levels || !r->names || !r->filter)
    return -ENOMEM;
  f = r->filter;
  for (const char *l = filter;;) {
    const char *e = strchr(l, '/');
    size_t ln = e ? (size_t)(e - l) : strlen(l);
    if (ln && l[0] == '+') {
      /* "+name": a one-level wildcard for the broker, a capture for us. */
      if (ln > 1 && !(r->names[k] = strndup(l + 1, ln - 1)))
        return -ENOMEM;
      r->levels[k] = strdup("+");
    } else if (ln == 1 && l[0] == '#' && !e) {
      r->hash = true;
      r->levels[k] = strdup("#");
    } else {
      r->levels[k] = strndup(l, ln);
    }
    if (!r->levels[k])
      return -ENOMEM;
    memcpy(f, r->levels[k], strlen(r->levels[k]));
    f += strlen(r->levels[k]);
    k++;
    if (!e)
      break;
    *f++ = '/';
    l = e + 1;
  }
  *f = '\0';
  r->nlevels = k - (r->hash ? 1 : 0);
  if (r->hash) {
    free(r->levels[k - 1]);
    r->levels[k - 1] = NULL;
  }
  return 0;
}

int mqtt__rules_init(sl_mqtt_t *mq, char *errstr, size_t errlen) {
  const sl_config_t *cfg = mq->cfg;
  sl_ingest_t *ic = mq->ic;
  int rc;

  if (*cfg->mqtt.dead_letter_stream &&
      sl_ingest_stream(ic, cfg->mqtt.dead_letter_stream, &mq->dlq) < 0) {
    snprintf(errstr, errlen,
             "mqtt.dead_letter_stream: '%s' is not a configured stream",
             cfg->mqtt.dead_letter_stream);
    return SL_ECONFIG;
  }
  mq->nrules = cfg->mqtt.subscriptions.n;
  if (!(mq->rules = calloc(mq->nrules ? mq->nrules : 1, sizeof(*mq->rules))))
    return -ENOMEM;
  for (size_t i = 0; i < mq->nrules; i++) {
    const sl_config_mqtt_sub_t *s = &cfg->mqtt.subscriptions.v[i];
    mqtt_rule_t *r = &mq->rules[i];
    char labels[1200], esc[1100];
    static const int64_t units[] = {1000000, 1000000000, 1000, 1};
    r->conf = s;
    if ((rc = rule_compile(r, s->filter)) < 0)
      return rc;
    if (sl_ingest_stream(ic, s->stream, &r->stream) < 0) {
      snprintf(errstr, errlen,
               "mqtt.subscriptions[%zu].stream: '%s' is not a configured "
               "stream",
               i, s->stream);
      return SL_ECONFIG;
    }
    if (s->decoder == SL_CONFIG_MQTT_SPARKPLUG)
      mq->sp_used = true;
    r->map.value = s->json_value;
    r->map.time = s->json_time;
    r->map.time_unit_ns = units[s->json_time_unit];
    r->map.quality = s->json_quality;
    r->map.unit = s->json_unit;
    r->map.datatype = s->json_datatype;
    sl_metrics_escape(esc, sizeof(esc), s->filter);
    snprintf(labels, sizeof(labels), "subscription=\"%s\"", esc);
    r->messages =
        sl_metrics_counter(ic->mx, "sluice_mqtt_subscription_messages_total",
                           "MQTT messages matched, per subscription", labels);
    r->bytes = sl_metrics_counter(
        ic->mx, "sluice_mqtt_subscription_bytes_total",
        "MQTT payload bytes matched, per subscription", labels);
  }
  return 0;
}

void mqtt__rules_free(sl_mqtt_t *mq) {
  for (size_t i = 0; mq->rules && i < mq->nrules; i++)
    rule_free(&mq->rules[i]);
  free(mq->rules);
  mq->rules = NULL;
}

static bool rule_matches(const mqtt_rule_t *r, const char *topic,
                         const char **caps, size_t *caplens) {
  const char *l = topic;
  size_t k = 0;
  /* MQTT: wildcards at the first level do not match topics starting with
   * '$' ($SYS/...). */
  if (*topic == '$' && r->nlevels && (r->levels[0][0] == '+'))
    return false;
  if (*topic == '$' && !r->nlevels && r->hash)
    return false;
  for (;; k++) {
    const char *e = strchr(l, '/');
    size_t ln = e ? (size_t)(e - l) : strlen(l);
    if (k == r->nlevels)
      return r->hash; /* more topic levels: only '#' takes them */
    if (!strcmp(r->levels[k], "+")) {
      if (k < MQTT_MAX_CAPTURES) {
        caps[k] = l;
        caplens[k] = ln;
      }
    } else if (strlen(r->levels[k]) != ln || memcmp(r->levels[k], l, ln)) {
      return false;
    }
    if (!e)
      break;
    l = e + 1;
  }
  /* Topic ended at level k. "a/#" also matches "a" itself. */
  return k + 1 == r->nlevels;
}

const mqtt_rule_t *mqtt__rule_match(sl_mqtt_t *mq, const char *topic,
                                    const char **caps, size_t *caplens) {
  for (size_t i = 0; i < mq->nrules; i++)
    if (rule_matches(&mq->rules[i], topic, caps, caplens))
      return &mq->rules[i];
  return NULL;
}

int mqtt__source_expand(const mqtt_rule_t *r, const char *tmpl,
                        const char *topic, const char *const *caps,
                        const size_t *caplens, char *out, size_t cap) {
  size_t n = 0;
  for (const char *p = tmpl; *p;) {
    const char *val = NULL, *close;
    size_t vlen = 0;
    if (*p == '{' && (close = strchr(p, '}'))) {
      size_t nl = (size_t)(close - p - 1);
      if (nl == 5 && !memcmp(p + 1, "topic", 5)) {
        val = topic;
        vlen = strlen(topic);
      } else {
        for (size_t k = 0; k < r->nlevels && k < MQTT_MAX_CAPTURES; k++)
          if (r->names[k] && strlen(r->names[k]) == nl &&
              !memcmp(r->names[k], p + 1, nl)) {
            val = caps[k];
            vlen = caplens[k];
          }
      }
      if (val) {
        if (n + vlen >= cap)
          return SL_ETOOBIG;
        memcpy(out + n, val, vlen);
        n += vlen;
        p = close + 1;
        continue;
      }
    }
    if (n + 1 >= cap)
      return SL_ETOOBIG;
    out[n++] = *p++;
  }
  out[n] = '\0';
  return 0;
}
