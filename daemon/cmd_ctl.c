/*
 * `sluice ctl status|reload`: the admin endpoint from the command line
 * (docs/OPERATIONS.md, "sluice ctl"), for operators, systemd's ExecReload
 * and flightctl's afterUpdating hook. Exit codes (one per outcome, so a
 * hook can tell them apart):
 *   0 done (status: ready; reload: applied, and healthy when waited for)
 *   1 status: the daemon answers but is not ready
 *   2 bad command line, or no admin address known
 *   3 the admin endpoint cannot be reached, or answered something unexpected
 *   4 the credential was refused (403) or is missing
 *   5 the reload was refused: the running config stays (reason printed)
 *   6 applied, but not ready and healthy within --wait-healthy
 * The admin token comes from --token-file, $SLUICE_ADMIN_TOKEN_FILE,
 * $SLUICE_ADMIN_TOKEN or the file admin.token beside the config file (the
 * config holds only its hash; a hook without a shell or environment, like
 * flightctl's, finds it there); it is never printed.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/common.h"
#include "config/config.h"
#include "daemon/ctl.h"
#include "daemon/daemon.h"

int sl_cmd_ctl(int argc, char **argv);

enum {
  CTL_OK = 0,
  CTL_NOT_READY = 1,
  CTL_USAGE = 2,
  CTL_UNREACHABLE = 3,
  CTL_FORBIDDEN = 4,
  CTL_REFUSED = 5,
  CTL_UNHEALTHY = 6,
};

#define CTL_DEFAULT_CONFIG "/etc/sluice/sluice.yaml"

static int usage(void) {
  fprintf(stderr,
          "usage: sluice ctl [-c FILE | --admin URL] [--token-file FILE]\n"
          "                  [--cacert FILE] [--cert FILE --key FILE]\n"
          "                  [--timeout DURATION] COMMAND\n"
          "commands:\n"
          "  status                        print /v1/status; exit 0 if ready\n"
          "  reload [--wait-healthy DURATION]\n"
          "                                POST /v1/reload, then wait until "
          "the\n"
          "                                new config runs, ready and healthy\n"
          "exit: 0 ok, 1 not ready, 2 usage, 3 unreachable, 4 forbidden,\n"
          "      5 reload refused, 6 not healthy in time\n");
  return CTL_USAGE;
}

/* "5s", "500ms", "2m", "1h" or plain seconds; -1 when malformed. */
static long long duration_ms(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0)
    return -1;
  if (!*end || !strcmp(end, "s"))
    return (long long)(v * 1000);
  if (!strcmp(end, "ms"))
    return (long long)v;
  if (!strcmp(end, "m"))
    return (long long)(v * 60000);
  if (!strcmp(end, "h"))
    return (long long)(v * 3600000);
  return -1;
}

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The token from a file or the environment, whitespace trimmed; NULL when
 * none. Returned owned. */
static char *read_token(const char *file, const char *cfg_path) {
  char buf[1024], near[4096];
  const char *env = getenv("SLUICE_ADMIN_TOKEN");
  size_t n = 0;
  if (!file)
    file = getenv("SLUICE_ADMIN_TOKEN_FILE");
  if (!file && !env && cfg_path) { /* admin.token beside the config */
    const char *slash = strrchr(cfg_path, '/');
    snprintf(near, sizeof(near), "%.*s%sadmin.token",
             slash ? (int)(slash - cfg_path) : 0, cfg_path, slash ? "/" : "");
    if (access(near, F_OK) == 0)
      file = near;
  }
  if (file) {
    FILE *f = fopen(file, "r");
    if (!f) {
      fprintf(stderr, "sluice ctl: token file %s: %s\n", file, strerror(errno));
      return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
  } else if (env) {
    n = strlen(env);
    if (n >= sizeof(buf))
      n = sizeof(buf) - 1;
    memcpy(buf, env, n);
  } else
    return NULL;
  buf[n] = 0;
  while (n && isspace((unsigned char)buf[n - 1]))
    buf[--n] = 0;
  char *tok = strdup(buf + strspn(buf, " \t\r\n"));
  explicit_bzero(buf, sizeof(buf));
  return tok;
}

/* http[s]://host:port[/] into t. */
static int parse_url(const char *url, sl_ctl_target_t *t) {
  const char *p = url, *colon, *end;
  char hostport[300];
  if (!strncmp(p, "https://", 8)) {
    t->tls = 1;
    p += 8;
  } else if (!strncmp(p, "http://", 7))
    p += 7;
  snprintf(hostport, sizeof(hostport), "%.*s", (int)strcspn(p, "/"), p);
  if (hostport[0] == '[') {
    if (!(end = strchr(hostport, ']')) || end[1] != ':')
      return -1;
    snprintf(t->host, sizeof(t->host), "%.*s", (int)(end - hostport - 1),
             hostport + 1);
    colon = end + 1;
  } else {
    if (!(colon = strrchr(hostport, ':')))
      return -1;
    snprintf(t->host, sizeof(t->host), "%.*s", (int)(colon - hostport),
             hostport);
  }
  snprintf(t->port, sizeof(t->port), "%s", colon + 1);
  return *t->host && *t->port ? 0 : -1;
}

/* The admin address from the config file; a wildcard is reached on
 * loopback. Returns 0, or an exit code (message printed). */
static int target_from_config(const char *path, sl_ctl_target_t *t,
                              char **pinned_ca) {
  sl_config_t *cfg = NULL;
  char err[2048];
  int rc = sl_config_load_file(path, &cfg, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr,
            "sluice ctl: cannot take the admin address from %s (pass "
            "--admin URL):\n%s\n",
            path, err);
    /* An invalid file is one the daemon would refuse as well. */
    return rc == SL_ECONFIG ? CTL_REFUSED : CTL_USAGE;
  }
  rc = 0;
  if (!*cfg->admin.address) {
    fprintf(stderr, "sluice ctl: %s turns the admin server off\n", path);
    rc = CTL_USAGE;
  } else if (parse_url(cfg->admin.address, t) < 0 || !strcmp(t->port, "0")) {
    fprintf(stderr,
            "sluice ctl: admin.address '%s' gives no port to reach (pass "
            "--admin URL)\n",
            cfg->admin.address);
    rc = CTL_USAGE;
  } else {
    if (!strcmp(t->host, "0.0.0.0") || !*t->host)
      snprintf(t->host, sizeof(t->host), "127.0.0.1");
    else if (!strcmp(t->host, "::"))
      snprintf(t->host, sizeof(t->host), "::1");
    if (*cfg->admin.tls.cert) { /* trust the daemon's own chain */
      t->tls = 1;
      *pinned_ca = strdup(cfg->admin.tls.cert);
    }
  }
  sl_config_free(cfg);
  return rc;
}

/* GET path; status or -1 (message printed unless quiet). */
static int get(const sl_ctl_target_t *t, const char *path, char **body,
               int quiet) {
  char err[512];
  int st = sl_ctl_http(t, "GET", path, body, err, sizeof(err));
  if (st < 0 && !quiet)
    fprintf(stderr, "sluice ctl: GET %s: %s\n", path, err);
  return st < 0 ? -1 : st;
}

static void trim(char *s) {
  size_t n = s ? strlen(s) : 0;
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
    s[--n] = 0;
}

static int cmd_status(const sl_ctl_target_t *t) {
  char *body = NULL, *ready = NULL;
  int st = get(t, "/v1/status", &body, 0), rst;
  if (st < 0)
    return CTL_UNREACHABLE;
  if (st != 200) {
    trim(body);
    fprintf(stderr, "sluice ctl: /v1/status answered %d: %s\n", st,
            body ? body : "");
    free(body);
    return CTL_UNREACHABLE;
  }
  json_t *j = json_loads(body, 0, NULL);
  if (j) {
    json_dumpf(j, stdout, JSON_INDENT(2));
    json_decref(j);
  } else
    fputs(body, stdout);
  putchar('\n');
  free(body);
  rst = get(t, "/readyz", &ready, 0);
  trim(ready);
  printf("ready: %s%s%s\n", rst == 200 ? "yes" : "no", rst == 200 ? "" : " - ",
         rst == 200 || !ready ? "" : ready);
  free(ready);
  return rst < 0 ? CTL_UNREACHABLE : rst == 200 ? CTL_OK : CTL_NOT_READY;
}

/* The running config's identity from /v1/status: sha256, generation, the
 * last reload's result, sha and error. 0 or -1. */
typedef struct {
  char sha[65], last_result[16], last_sha[65], last_error[512];
  long long generation;
} cfg_state_t;

static int config_state(const sl_ctl_target_t *t, cfg_state_t *s) {
  char *body = NULL;
  json_t *j, *c, *l;
  int st = get(t, "/v1/status", &body, 1);
  memset(s, 0, sizeof(*s));
  if (st != 200 || !(j = json_loads(body, 0, NULL))) {
    free(body);
    return -1;
  }
  free(body);
  if ((c = json_object_get(j, "config"))) {
    snprintf(s->sha, sizeof(s->sha), "%s",
             json_string_value(json_object_get(c, "sha256"))
                 ? json_string_value(json_object_get(c, "sha256"))
                 : "");
    s->generation = json_integer_value(json_object_get(c, "generation"));
    if ((l = json_object_get(c, "last_reload"))) {
      const char *r = json_string_value(json_object_get(l, "result"));
      const char *h = json_string_value(json_object_get(l, "sha256"));
      const char *e = json_string_value(json_object_get(l, "error"));
      snprintf(s->last_result, sizeof(s->last_result), "%s", r ? r : "");
      snprintf(s->last_sha, sizeof(s->last_sha), "%s", h ? h : "");
      snprintf(s->last_error, sizeof(s->last_error), "%s", e ? e : "");
    }
  }
  json_decref(j);
  return 0;
}

static int cmd_reload(const sl_ctl_target_t *t, const char *cfg_path,
                      long long wait_ms) {
  char err[512], want[65] = "", *body = NULL;
  cfg_state_t s;
  long long deadline;
  int st;

  /* The file as this command sees it: the config that must end up running. */
  if (cfg_path && sl_cfgwatch_hash_file(cfg_path, want) < 0)
    want[0] = 0;
  st = sl_ctl_http(t, "POST", "/v1/reload", &body, err, sizeof(err));
  trim(body);
  if (st < 0) {
    fprintf(stderr, "sluice ctl: POST /v1/reload: %s\n", err);
    return CTL_UNREACHABLE;
  }
  if (st == 403 || st == 401) {
    fprintf(stderr,
            "sluice ctl: forbidden: the admin endpoint wants the admin token "
            "(--token-file, $SLUICE_ADMIN_TOKEN) or an admin client "
            "certificate\n");
    free(body);
    return CTL_FORBIDDEN;
  }
  if (st == 409) {
    free(body);
    fprintf(stderr, "sluice ctl: reload refused, the running config stays");
    if (!config_state(t, &s) && *s.last_error)
      fprintf(stderr, ": %s", s.last_error);
    fputc('\n', stderr);
    return CTL_REFUSED;
  }
  if (st != 200) {
    fprintf(stderr, "sluice ctl: POST /v1/reload answered %d: %s\n", st,
            body ? body : "");
    free(body);
    return CTL_UNREACHABLE;
  }
  free(body);
  if (wait_ms < 0) {
    printf("reloaded\n");
    return CTL_OK;
  }
  /* Applied; now wait until that config runs and the daemon is ready and
   * healthy (a new credential or certificate may break it later). */
  deadline = mono_ms() + wait_ms;
  char why[300] = "no answer";
  for (;;) {
    char *b = NULL;
    int ready, healthy;
    if (config_state(t, &s) == 0) {
      if (*want && !strcmp(s.last_sha, want) &&
          !strcmp(s.last_result, "refused")) {
        fprintf(stderr, "sluice ctl: reload refused: %s\n", s.last_error);
        return CTL_REFUSED;
      }
      ready = get(t, "/readyz", &b, 1);
      trim(b);
      snprintf(why, sizeof(why), "readyz: %s", b ? b : "no answer");
      free(b);
      b = NULL;
      healthy = get(t, "/healthz", &b, 1);
      free(b);
      if (*want && strcmp(s.sha, want))
        snprintf(why, sizeof(why), "the running config is not %.12s yet", want);
      else if (ready == 200 && healthy == 200) {
        printf("reloaded: config generation %lld (sha256 %.12s), ready and "
               "healthy\n",
               s.generation, s.sha);
        return CTL_OK;
      } else if (healthy != 200)
        snprintf(why, sizeof(why), "healthz answered %d", healthy);
    }
    if (mono_ms() >= deadline)
      break;
    usleep(200000);
  }
  fprintf(stderr, "sluice ctl: not healthy within %lld ms: %s\n", wait_ms, why);
  return CTL_UNHEALTHY;
}

int sl_cmd_ctl(int argc, char **argv) {
  sl_ctl_target_t t = {.timeout_ms = 5000};
  const char *cfg_path = NULL, *admin = NULL, *token_file = NULL, *cmd = NULL;
  char *pinned = NULL, *token = NULL;
  long long wait_ms = -1, v;
  int rc;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
    if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && next)
      cfg_path = argv[++i];
    else if (!strcmp(a, "--admin") && next)
      admin = argv[++i];
    else if (!strcmp(a, "--token-file") && next)
      token_file = argv[++i];
    else if (!strcmp(a, "--cacert") && next)
      t.cafile = argv[++i];
    else if (!strcmp(a, "--cert") && next)
      t.cert = argv[++i];
    else if (!strcmp(a, "--key") && next)
      t.key = argv[++i];
    else if (!strcmp(a, "--timeout") && next) {
      if ((v = duration_ms(argv[++i])) <= 0)
        return usage();
      t.timeout_ms = (int)(v > 600000 ? 600000 : v);
    } else if (!strcmp(a, "--wait-healthy") && next) {
      if ((wait_ms = duration_ms(argv[++i])) < 0)
        return usage();
    } else if (!cmd && (!strcmp(a, "status") || !strcmp(a, "reload")))
      cmd = a;
    else
      return usage();
  }
  if (!cmd || (wait_ms >= 0 && strcmp(cmd, "reload")))
    return usage();
  if (!admin)
    admin = getenv("SLUICE_ADMIN_URL");
  if (!cfg_path && !admin)
    cfg_path =
        getenv("SLUICE_CONFIG") ? getenv("SLUICE_CONFIG") : CTL_DEFAULT_CONFIG;
  if (admin) {
    if (parse_url(admin, &t) < 0) {
      fprintf(stderr, "sluice ctl: --admin wants http[s]://HOST:PORT\n");
      return CTL_USAGE;
    }
  } else if ((rc = target_from_config(cfg_path, &t, &pinned)) != 0)
    return rc;
  if (!t.cafile && pinned) {
    t.cafile = pinned;
    t.pinned = 1;
  }
  token = read_token(token_file, cfg_path);
  t.token = token;
  rc = !strcmp(cmd, "status") ? cmd_status(&t)
                              : cmd_reload(&t, cfg_path, wait_ms);
  if (token) {
    explicit_bzero(token, strlen(token));
    free(token);
  }
  free(pinned);
  return rc;
}
