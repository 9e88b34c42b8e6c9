/*
 * A private Mosquitto for the MQTT tests that stop and restart their broker
 * (redeliver_test, settle_test): scripts/mosquitto.sh with its state in a
 * folder of the fixture's work directory, on a free loopback port,
 * persistence on (`restart` keeps the sessions and their messages).
 */
#ifndef SL_TEST_PRIVATE_MOSQUITTO_H
#define SL_TEST_PRIVATE_MOSQUITTO_H

/* The broker's state in dir/sub, driven by script (scripts/mosquitto.sh). */
void private_mosq_init(const char *script, const char *sub);
/* Runs `script VERB` on it (start, restart, stop, ...); exit 0 required. */
void private_mosq(const char *verb);
/* Starts it and waits until it is ready; its port. */
int private_mosq_start(void);
/* Stops it without checking (for fixture_on_fail). */
void private_mosq_stop_quiet(void);

#endif /* SL_TEST_PRIVATE_MOSQUITTO_H */
