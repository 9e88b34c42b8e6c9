/* Placeholder until the store lands (issue: store/). */
#include "common/common.h"
int sl_store__placeholder(void);
int sl_store__placeholder(void) {
  return 0;
}
