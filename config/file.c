/*
 * config/file.c: reading a config file for the engine (config/cfg.h):
 * bounded in size, optionally refused when group or others may write it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/cfg.h"

int sl_cfg_read_file(const char *path, bool private_file, char **text,
                     size_t *len, char *errstr, size_t errlen) {
  FILE *f;
  char *buf = NULL;
  int rc;

  *text = NULL;
  *len = 0;
  if (errlen)
    errstr[0] = '\0';
  if (!(f = fopen(path, "rb"))) {
    rc = -errno;
    SL_CFG_FMT(errstr, errlen, "%s: cannot open: %s", path, strerror(-rc));
    return rc;
  }
  struct stat sb;
  if (private_file && !fstat(fileno(f), &sb) && (sb.st_mode & 0022)) {
    rc = SL_ECONFIG;
    SL_CFG_FMT(errstr, errlen,
               "%s: writable by group or others (mode %04o): run chmod go-w "
               "%s",
               path, (unsigned)(sb.st_mode & 07777), path);
    fclose(f);
    return rc;
  }
  if (!(buf = malloc(SL_CFG_MAX_BYTES + 1)))
    abort();
  *len = fread(buf, 1, SL_CFG_MAX_BYTES + 1, f);
  if (ferror(f)) {
    rc = -EIO;
    SL_CFG_FMT(errstr, errlen, "%s: cannot read: %s", path, strerror(EIO));
    goto fail;
  }
  if (*len > SL_CFG_MAX_BYTES) {
    rc = SL_ETOOBIG;
    SL_CFG_FMT(errstr, errlen, "%s: larger than %u bytes", path,
               SL_CFG_MAX_BYTES);
    goto fail;
  }
  fclose(f);
  *text = buf;
  return 0;
fail:
  free(buf);
  fclose(f);
  *len = 0;
  return rc;
}

int sl_cfg_load_file(const sl_cfg_section_t *sec, const char *path,
                     char *const *envp, void **out, char *errstr,
                     size_t errlen) {
  char *buf;
  size_t len;
  int rc;

  *out = NULL;
  /* Whoever can write the config can make the program run anything it
   * points at: refuse one that group or others may write, like sshd. */
  if ((rc = sl_cfg_read_file(path, sec->flags & SL_CFG_SEC_PRIVATE_FILE, &buf,
                             &len, errstr, errlen)) < 0)
    return rc;
  rc = sl_cfg_load(sec, path, buf, len, envp, out, errstr, errlen);
  free(buf);
  return rc;
}
