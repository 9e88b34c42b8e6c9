/*
 * config/bind.c: copies the rows bound to a library (SL_CFG_BIND() in
 * config/schema/options.c) into that library's options struct, so the daemon's
 * wiring never names a library option: the table row does.
 */
#include <stdbool.h>
#include <string.h>

#include "config/config_int.h"

/* Writes v into a field of size bytes (1, 2, 4 or 8). */
static void put_uint(void *dst, size_t size, uint64_t v) {
  uint8_t u8 = (uint8_t)v;
  uint16_t u16 = (uint16_t)v;
  uint32_t u32 = (uint32_t)v;
  switch (size) {
  case 1:
    memcpy(dst, &u8, 1);
    break;
  case 2:
    memcpy(dst, &u16, 2);
    break;
  case 4:
    memcpy(dst, &u32, 4);
    break;
  default:
    memcpy(dst, &v, sizeof(v));
    break;
  }
}

static void bind_row(const sl_cfg_opt_t *o, const void *obj, void *opts) {
  const char *src = (const char *)obj + o->off;
  char *dst = (char *)opts + o->lib_off;
  uint64_t u;
  int64_t i;
  double d;
  bool b;
  int e;
  const char *s;

  switch (o->type) {
  case SL_CFG_BOOL:
    memcpy(&b, src, sizeof(b));
    if (o->lib_size == sizeof(bool))
      memcpy(dst, &b, sizeof(b));
    else
      put_uint(dst, o->lib_size, b);
    break;
  case SL_CFG_INT:
    memcpy(&i, src, sizeof(i));
    put_uint(dst, o->lib_size, (uint64_t)i);
    break;
  case SL_CFG_UINT:
  case SL_CFG_SIZE:
  case SL_CFG_DURATION:
    memcpy(&u, src, sizeof(u));
    put_uint(dst, o->lib_size, u);
    break;
  case SL_CFG_DOUBLE:
    memcpy(&d, src, sizeof(d));
    memcpy(dst, &d, sizeof(d));
    break;
  case SL_CFG_ENUM:
    memcpy(&e, src, sizeof(e));
    put_uint(dst, o->lib_size, (uint64_t)e);
    break;
  case SL_CFG_STRING:
  case SL_CFG_PATH:
    memcpy(&s, src, sizeof(s));
    memcpy(dst, &s, sizeof(s));
    break;
  case SL_CFG_LIST:
  case SL_CFG_FLAGS:
  case SL_CFG_SECTION_LIST:
    break; /* not bindable: the wiring converts these itself */
  }
}

void sl_config_bind(const sl_config_t *cfg, sl_config_lib_t lib, void *opts) {
  const sl_cfg_section_t *sec = &sl_config__root;
  for (size_t i = 0; i < sec->n_opts; i++)
    if (sec->opts[i].lib == (int)lib && lib != SL_CONFIG_LIB_NONE)
      bind_row(&sec->opts[i], cfg, opts);
}
