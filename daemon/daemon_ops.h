/*
 * daemon/daemon_ops: start-time checks and least privilege for the daemon
 * (daemon/daemon_ops.c, docs/security/ops.md). Loop thread, at start.
 */
#ifndef SL_BROKER_DAEMON_OPS_H
#define SL_BROKER_DAEMON_OPS_H

#include <stddef.h>

typedef struct sl_daemon sl_daemon_t;

/*
 * Drops root to run.user / run.group (names or numeric ids; group ""
 * = the user's primary group): setgroups to that one group, setgid, setuid,
 * PR_SET_NO_NEW_PRIVS, then verifies that uid 0 cannot be regained. Both ""
 * is a no-op (with a warning when running as root); already running as the
 * configured ids is a no-op. user, group, err: borrowed.
 * Errors: SL_ECONFIG (unknown user or group, uid 0, or not started as root
 * with another identity configured), -errno of a failed set*id call,
 * -EPERM when root could be regained. err says which.
 */
int sl_ops_drop_privileges(const char *user, const char *group, char *err,
                           size_t errlen);

/*
 * Flags a store.budget_bytes larger than the filesystem holding
 * node.data_dir: a warning and the gauge
 * sluice_store_budget_exceeds_filesystem = 1 (0 otherwise). The daemon
 * still starts: the budget is an upper bound, and the store reports a full
 * disk on its own. Cannot fail.
 */
void sl_ops_check_budget(sl_daemon_t *dm);

#endif /* SL_BROKER_DAEMON_OPS_H */
