/*
 * config/schema/redact.c: which kafka.properties entries may be printed.
 *
 * An allow-list, not a deny-list of words: librdkafka grows new credential
 * properties (ssl.key.pem, ssl_key, sasl.oauthbearer.config,
 * sasl.oauthbearer.client.secret, https.*...) faster than a list of
 * suspicious words can follow, and a pasted secret without "=" names no
 * key at all. So only the keys below, whose values are numbers, booleans,
 * enum names, host lists, identifiers sent in clear or file paths (never
 * file contents), print their value; every other entry prints as
 * "key=<redacted>", and an entry without "=" as "<redacted>".
 * Names from librdkafka's CONFIGURATION.md (global and topic properties).
 */
#include <string.h>

#include "config/config_int.h"

static const char *const printable_keys[] = {
    /* Producer tuning. */
    "acks", "request.required.acks", "linger.ms", "queue.buffering.max.ms",
    "batch.size", "batch.num.messages", "compression.type", "compression.codec",
    "compression.level", "message.max.bytes", "message.copy.max.bytes",
    "receive.message.max.bytes", "max.in.flight.requests.per.connection",
    "max.in.flight", "message.timeout.ms", "delivery.timeout.ms",
    "request.timeout.ms", "message.send.max.retries", "retries",
    "retry.backoff.ms", "retry.backoff.max.ms", "queue.buffering.max.messages",
    "queue.buffering.max.kbytes", "queue.buffering.backpressure.threshold",
    "enable.idempotence", "enable.gapless.guarantee", "transaction.timeout.ms",
    "partitioner", "sticky.partitioning.linger.ms", "queuing.strategy",
    "produce.offset.report",
    /* Consumer (the checkpoint reader). */
    "isolation.level", "enable.auto.commit", "auto.commit.interval.ms",
    "auto.offset.reset", "session.timeout.ms", "heartbeat.interval.ms",
    "max.poll.interval.ms", "fetch.wait.max.ms", "fetch.min.bytes",
    "fetch.max.bytes", "fetch.message.max.bytes", "fetch.error.backoff.ms",
    "queued.min.messages", "queued.max.messages.kbytes", "check.crcs",
    "partition.assignment.strategy", "group.protocol",
    /* Brokers, identity sent in clear, sockets, reconnects, metadata. */
    "bootstrap.servers", "metadata.broker.list", "client.id", "client.rack",
    "client.dns.lookup", "broker.address.family", "broker.address.ttl",
    "socket.timeout.ms", "socket.blocking.max.ms", "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes", "socket.keepalive.enable",
    "socket.nagle.disable", "socket.max.fails",
    "socket.connection.setup.timeout.ms", "connections.max.idle.ms",
    "reconnect.backoff.ms", "reconnect.backoff.max.ms",
    "reconnect.backoff.jitter.ms", "api.version.request",
    "api.version.request.timeout.ms", "api.version.fallback.ms",
    "broker.version.fallback", "allow.auto.create.topics",
    "topic.metadata.refresh.interval.ms", "metadata.max.age.ms",
    "topic.metadata.refresh.fast.interval.ms", "topic.metadata.refresh.sparse",
    "topic.metadata.propagation.max.ms", "metadata.recovery.strategy",
    "metadata.request.timeout.ms",
    /* Diagnostics. */
    "statistics.interval.ms", "log_level", "debug", "log.connection.close",
    "log.thread.name", "log.queue", "enable.random.seed",
    /* TLS and SASL choices: mechanisms and paths, never key material. */
    "security.protocol", "sasl.mechanism", "sasl.mechanisms",
    "ssl.endpoint.identification.algorithm",
    "enable.ssl.certificate.verification", "ssl.cipher.suites",
    "ssl.curves.list", "ssl.sigalgs.list", "ssl.ca.location",
    "ssl.ca.certificate.stores", "ssl.certificate.location", "ssl.key.location",
    "ssl.crl.location", "ssl.keystore.location", "sasl.kerberos.service.name",
    "sasl.kerberos.min.time.before.relogin", "sasl.oauthbearer.method",
    "enable.sasl.oauthbearer.unsecure.jwt"};

bool config__kv_printable(const char *item) {
  const char *eq = strchr(item, '=');
  if (!eq)
    return false;
  for (size_t i = 0; i < SL_ARRAY_SIZE(printable_keys); i++) {
    size_t n = strlen(printable_keys[i]);
    if ((size_t)(eq - item) == n && !strncmp(item, printable_keys[i], n))
      return true;
  }
  return false;
}

int config__kv_file(const char *key) {
  size_t n = strlen(key);
  /* Keys ending in ".location" name files (the CA location may also be
   * "probe", which is not a path), and so does the Kerberos keytab. */
  if (!strcmp(key, "sasl.kerberos.keytab") ||
      !strcmp(key, "ssl.key.location") || !strcmp(key, "ssl.keystore.location"))
    return SL_CFG_KV_SECRET_FILE;
  if (n >= 9 && !strcmp(key + n - 9, ".location"))
    return SL_CFG_KV_TRUST_FILE;
  return SL_CFG_KV_NOT_A_FILE;
}
