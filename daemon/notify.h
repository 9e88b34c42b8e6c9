/*
 * daemon/notify: systemd's readiness protocol (sd_notify(3)) and its
 * watchdog, spoken by hand over NOTIFY_SOCKET (daemon/notify.c says why).
 * Every call is a no-op when NOTIFY_SOCKET is not set. Loop thread only.
 */
#ifndef SL_DAEMON_NOTIFY_H
#define SL_DAEMON_NOTIFY_H

#include <stdint.h>

typedef struct sl_daemon sl_daemon_t;

/* Reads NOTIFY_SOCKET (a path, or "@name" in the abstract namespace) and
 * WATCHDOG_USEC / WATCHDOG_PID, and unsets them so no child inherits
 * them. Starts the watchdog timer (WATCHDOG_USEC / 2) on dm's loop. */
void sl_notify_start(sl_daemon_t *dm);

/* Sends one datagram of "KEY=value" lines (msg) when notifying. */
void sl_notify_send(sl_daemon_t *dm, const char *msg);

/* READY=1 with STATUS=status. */
void sl_notify_ready(sl_daemon_t *dm, const char *status);
/* RELOADING=1 with MONOTONIC_USEC= (a reload began). */
void sl_notify_reloading(sl_daemon_t *dm);
/* STOPPING=1 with STATUS=why; stops the watchdog. */
void sl_notify_stopping(sl_daemon_t *dm, const char *why);

/* Closes the socket and the timer (the stop's finish step). */
void sl_notify_close(sl_daemon_t *dm);
/* Frees what close left (after the loop ended). NULL-safe. */
void sl_notify_free(sl_daemon_t *dm);

#endif /* SL_DAEMON_NOTIFY_H */
