#include <stdio.h>
#include <string.h>

#include "common/common.h"

static const char *const sl_messages[] = {
#define SL__XMSG(name, msg) msg,
    SL_ERRNO_MAP(SL__XMSG)
#undef SL__XMSG
};

static const char *const sl_names[] = {
#define SL__XNAME(name, msg) "SL_" #name,
    SL_ERRNO_MAP(SL__XNAME)
#undef SL__XNAME
};

const char *sl_strerror(int err) {
  if (err == 0)
    return "success";
  if (err > SL__EFIRST && err < SL__ELAST)
    return sl_messages[err - SL__EFIRST - 1];
  if (err < 0 && err > -4096)
    return strerror(-err);
  return "unknown error";
}

const char *sl_errname(int err) {
  if (err == 0)
    return "OK";
  if (err > SL__EFIRST && err < SL__ELAST)
    return sl_names[err - SL__EFIRST - 1];
  if (err < 0 && err > -4096) {
    const char *n = strerrorname_np(-err);
    if (n)
      return n;
  }
  return "EUNKNOWN";
}
