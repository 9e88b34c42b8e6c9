/*
 * daemon/daemon_ops.c: start-time checks and least privilege for `sluice
 * run` (docs/security/ops.md): dropping root after the listeners are bound
 * and the store is open (run.user / run.group), and flagging a store budget
 * larger than the filesystem that holds it.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/daemon_ops.h"
#include "telemetry/log.h"

/* Numeric id: digits only, below 2^31. */
static bool numeric_id(const char *s, unsigned long *out) {
  char *end;
  if (!*s || strspn(s, "0123456789") != strlen(s))
    return false;
  errno = 0;
  *out = strtoul(s, &end, 10);
  return !errno && *out < 0x80000000ul;
}

static int resolve(const char *user, const char *group, uid_t *uid, gid_t *gid,
                   char *err, size_t errlen) {
  char buf[16384];
  unsigned long n;
  *uid = geteuid();
  *gid = getegid();
  if (*user) {
    struct passwd pw, *pwp = NULL;
    if (!getpwnam_r(user, &pw, buf, sizeof(buf), &pwp) && pwp) {
      *uid = pw.pw_uid;
      *gid = pw.pw_gid;
    } else if (numeric_id(user, &n)) {
      *uid = (uid_t)n;
      *gid = (gid_t)n;
      if (!getpwuid_r(*uid, &pw, buf, sizeof(buf), &pwp) && pwp)
        *gid = pw.pw_gid;
    } else {
      snprintf(err, errlen, "run.user \"%.64s\": no such user", user);
      return SL_ECONFIG;
    }
  }
  if (*group) {
    struct group gr, *grp = NULL;
    if (!getgrnam_r(group, &gr, buf, sizeof(buf), &grp) && grp) {
      *gid = gr.gr_gid;
    } else if (numeric_id(group, &n)) {
      *gid = (gid_t)n;
    } else {
      snprintf(err, errlen, "run.group \"%.64s\": no such group", group);
      return SL_ECONFIG;
    }
  }
  return 0;
}

int sl_ops_drop_privileges(const char *user, const char *group, char *err,
                           size_t errlen) {
  uid_t uid;
  gid_t gid;
  int rc;

  if (!*user && !*group) {
    if (geteuid() == 0)
      sl_warn(SL_LOG_CTX_ADMIN, NULL,
              "running as root: set run.user to drop privileges after "
              "start (docs/security/ops.md)");
    return 0;
  }
  if ((rc = resolve(user, group, &uid, &gid, err, errlen)) < 0)
    return rc;
  if (geteuid() != 0) {
    /* Already unprivileged: fine when it is the configured identity. */
    if (uid == geteuid() && gid == getegid())
      return 0;
    snprintf(err, errlen,
             "run.user/run.group (uid %u gid %u) need the daemon to start "
             "as root (running as uid %u gid %u)",
             (unsigned)uid, (unsigned)gid, (unsigned)geteuid(),
             (unsigned)getegid());
    return SL_ECONFIG;
  }
  if (uid == 0) {
    snprintf(err, errlen,
             "run.user \"%.64s\" is root: nothing to drop (unset run.user to "
             "run as root)",
             user);
    return SL_ECONFIG;
  }
  /* Groups first: after setuid() they can no longer be changed. glibc
   * applies each call to every thread of the process (the admin, HTTP and
   * store writer threads already run). */
  if (setgroups(1, &gid) || setgid(gid) || setuid(uid)) {
    rc = -errno;
    snprintf(err, errlen, "dropping to uid %u gid %u: %s", (unsigned)uid,
             (unsigned)gid, strerror(-rc));
    return rc;
  }
  /* Never gain privileges again, not even through an exec. */
  (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  gid_t groups[2];
  int ng = getgroups(2, groups);
  if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 || getuid() != uid ||
      geteuid() != uid || getgid() != gid || getegid() != gid || ng != 1 ||
      groups[0] != gid) {
    snprintf(err, errlen,
             "privileges were not dropped for good (uid %u euid %u gid %u "
             "egid %u, %d groups)",
             (unsigned)getuid(), (unsigned)geteuid(), (unsigned)getgid(),
             (unsigned)getegid(), ng);
    return -EPERM;
  }
  sl_info(SL_LOG_CTX_ADMIN, NULL, "dropped privileges: uid %u gid %u%s%s",
          (unsigned)uid, (unsigned)gid, *user ? " user " : "", user);
  return 0;
}

void sl_ops_check_budget(sl_daemon_t *dm) {
  struct statvfs vfs;
  const sl_config_t *cfg = dm->in.cfg;
  sl_metric_t *over = sl_metrics_gauge(
      dm->in.mx, "sluice_store_budget_exceeds_filesystem",
      "1 when store.budget_bytes is larger than the filesystem holding "
      "node.data_dir (the disk fills before the budget applies)",
      NULL);
  if (statvfs(cfg->node.data_dir, &vfs)) {
    sl_warn(SL_LOG_CTX_STORE, NULL, "statvfs %s: %s: budget not checked",
            cfg->node.data_dir, strerror(errno));
    return;
  }
  uint64_t fs = (uint64_t)vfs.f_blocks * (uint64_t)vfs.f_frsize;
  sl_metric_set(over, cfg->store.budget_bytes > fs);
  if (cfg->store.budget_bytes > fs)
    sl_warn(SL_LOG_CTX_STORE, NULL,
            "store.budget_bytes (%llu) is larger than the filesystem of %s "
            "(%llu bytes): the disk fills before the budget applies its "
            "policies; lower the budget",
            (unsigned long long)cfg->store.budget_bytes, cfg->node.data_dir,
            (unsigned long long)fs);
}
