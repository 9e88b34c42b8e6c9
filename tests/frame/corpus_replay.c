/*
 * Replays a fuzz corpus directory through LLVMFuzzerTestOneInput in the
 * normal build, so every seed (and every crash reproducer added to the
 * corpus) stays a regression test.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  long n;
  int rc = -1;

  if (!f)
    return -1;
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) != 0)
    goto fail;
  buf = malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
    goto fail;
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  rc = 0;
fail:
  free(buf);
  fclose(f);
  return rc;
}

int main(int argc, char **argv) {
  DIR *d;
  struct dirent *de;
  int files = 0;
  char path[4096];

  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  d = opendir(argv[1]);
  if (!d) {
    perror(argv[1]);
    return 1;
  }
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
    if (replay(path) != 0) {
      fprintf(stderr, "cannot read %s\n", path);
      closedir(d);
      return 1;
    }
    files++;
  }
  closedir(d);
  printf("replayed %d inputs\n", files);
  return files > 0 ? 0 : 1;
}
