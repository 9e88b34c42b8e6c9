/*
 * The DUP flag of a PUBLISH that libmosquitto handed to on_message.
 *
 * libmosquitto reads the flag (handle__publish(): message->dup) into its
 * private struct mosquitto_message_all and passes on_message only the
 * public struct mosquitto_message inside it. In libmosquitto 2.0 that
 * struct is { next, prev, properties, timestamp, state, dup, msg,
 * expiry_interval } (lib/mosquitto_internal.h); this mirrors it up to msg
 * and reads dup only for a 2.0.x library (checked at run time).
 * tests/mqtt/mqtt_puback_test.c pins it: it sends PUBLISH packets with and
 * without DUP and checks what this returns, for MQTT 3.1.1 and 5; a
 * library whose layout differs fails that test, and sluice then works
 * without the flag (docs/MQTT.md, "Redeliveries"). Private to the daemon layer
 * and tests.
 */
#ifndef SL_BROKER_MQTT_DUP_H
#define SL_BROKER_MQTT_DUP_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <mosquitto.h>

struct sl_mosq20_message_all {
  void *next;
  void *prev;
  void *properties;
  time_t timestamp;
  int state; /* enum mosquitto_msg_state */
  bool dup;
  struct mosquitto_message msg;
};

/* True when the linked libmosquitto is 2.0.x (the layout above). */
static inline bool sl_mqtt_dup_known(void) {
  int maj = 0, min = 0, rev = 0;
  mosquitto_lib_version(&maj, &min, &rev);
  return maj == 2 && min == 0;
}

/* 1 when msg (from on_message) came with DUP set, 0 when not, -1 when it
 * cannot be known (another library version, or a value that is no bool). */
static inline int sl_mqtt_dup(const struct mosquitto_message *msg, bool known) {
  const struct sl_mosq20_message_all *all;
  unsigned char b;
  if (!known)
    return -1;
  all = (const struct sl_mosq20_message_all
             *)(const void *)((const char *)msg -
                              offsetof(struct sl_mosq20_message_all, msg));
  b = *(const unsigned char *)&all->dup;
  return b <= 1 ? (int)b : -1;
}

#endif /* SL_BROKER_MQTT_DUP_H */
