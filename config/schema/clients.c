/*
 * The credential rows of the config (docs/security/tls.md): the element
 * table of listeners.native.clients and listeners.http.clients, and the
 * checks the TLS and credential rows of config/schema/options.c share.
 */
#include <stddef.h>
#include <string.h>

#include "config/config_int.h"

#define CLIENT_OPT(n, t, f, d, fl, desc_, ...)                                 \
  {                                                                            \
    .name = n, .type = SL_CFG_##t, .off = offsetof(sl_config_client_t, f),     \
    .def = d, .flags = fl, .desc = desc_, __VA_ARGS__                          \
  }

const char *sl_config__check_sha256(const char *s) {
  size_t n = strlen(s);
  if (n == 0)
    return NULL;
  if (n != 64 || strspn(s, "0123456789abcdefABCDEF") != 64)
    return "is not a SHA-256 in hex (64 hex digits; "
           "`printf %s TOKEN | sha256sum`)";
  return NULL;
}

static const char *check_client_name(const char *s) {
  if (!*s || strlen(s) > 64)
    return "is not a client name (1-64 characters of A-Z a-z 0-9 . _ - @)";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || strchr("._-@", c)))
      return "is not a client name (1-64 characters of A-Z a-z 0-9 . _ - @)";
  }
  return NULL;
}

static void client_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  sl_config_client_t *cl = obj;
  if (!*cl->token_sha256 && !*cl->cert_cn)
    sl_cfg_errf(errs, NULL, 0, 0, prefix,
                "client '%.64s' needs token_sha256 or cert_cn", cl->name);
  if (!cl->streams.n)
    sl_cfg_errf(errs, NULL, 0, 0, prefix,
                "client '%.64s' needs streams (names or globs, \"*\" = all)",
                cl->name);
}

static const sl_cfg_opt_t client_opts[] = {
    CLIENT_OPT("name", STRING, name, NULL, SL_CFG_REQUIRED | SL_CFG_RELOAD,
               "Identity of the client, recorded on each event it writes as "
               "the attribute sluice.identity; unique.",
               .check = check_client_name),
    CLIENT_OPT("token_sha256", STRING, token_sha256, "",
               SL_CFG_RELOAD | SL_CFG_SECRET,
               "Hex SHA-256 of the client's bearer token (`printf %s TOKEN | "
               "sha256sum`); the token itself is never stored. \"\" = no "
               "token.",
               .check = sl_config__check_sha256),
    CLIENT_OPT("cert_cn", STRING, cert_cn, "", SL_CFG_RELOAD,
               "Subject CN of a client certificate (verified by the "
               "listener's tls.client_ca) that authenticates as this client; "
               "\"\" = none."),
    CLIENT_OPT("streams", LIST, streams, "", SL_CFG_RELOAD,
               "Streams the client may write: names or globs (* ? [..]); "
               "\"*\" = every stream."),
};

const sl_cfg_section_t sl_config__client_section = {
    .name = "clients",
    .opts = client_opts,
    .n_opts = SL_ARRAY_SIZE(client_opts),
    .size = sizeof(sl_config_client_t),
    .finish = client_finish,
};
