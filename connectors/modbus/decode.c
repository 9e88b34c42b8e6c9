/*
 * connectors/modbus/decode.c: registers -> scaled value, and the plan that
 * merges points into as few requests as possible.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "connectors/modbus/modbus.h"

/* The protocol's per-request limits (MODBUS_MAX_READ_REGISTERS/_BITS). */
#define MAX_REGS 125u
#define MAX_BITS 2000u

unsigned sl_modbus_type_width(sl_modbus_type_t type) {
  switch (type) {
  case SL_MODBUS_INT32:
  case SL_MODBUS_UINT32:
  case SL_MODBUS_FLOAT32:
    return 2;
  case SL_MODBUS_FLOAT64:
    return 4;
  default:
    return 1;
  }
}

int sl_modbus_decode(const sl_modbus_point_t *pt, const uint16_t *regs,
                     double *value) {
  unsigned w = sl_modbus_type_width(pt->type);
  uint64_t raw = 0;
  double v;

  if (pt->type == SL_MODBUS_BOOL) {
    /* Bits arrive one per uint16 slot (see poll.c): 0 or 1. */
    *value = regs[0] ? 1.0 : 0.0;
    return 0;
  }
  /* Compose most significant register first: word order says which
   * register that is; byte order whether each register's bytes are
   * swapped on the wire relative to the standard high-byte-first. */
  for (unsigned i = 0; i < w; i++) {
    uint16_t r = regs[pt->word_order == SL_MODBUS_LITTLE ? w - 1 - i : i];
    if (pt->byte_order == SL_MODBUS_LITTLE)
      r = (uint16_t)((r >> 8) | (r << 8));
    raw = (raw << 16) | r;
  }
  switch (pt->type) {
  case SL_MODBUS_INT16:
    v = (double)(int16_t)raw;
    break;
  case SL_MODBUS_UINT16:
    v = (double)(uint16_t)raw;
    break;
  case SL_MODBUS_INT32:
    v = (double)(int32_t)(uint32_t)raw;
    break;
  case SL_MODBUS_UINT32:
    v = (double)(uint32_t)raw;
    break;
  case SL_MODBUS_FLOAT32: {
    uint32_t u = (uint32_t)raw;
    float f;
    memcpy(&f, &u, sizeof(f));
    v = (double)f;
    break;
  }
  case SL_MODBUS_FLOAT64:
    memcpy(&v, &raw, sizeof(v));
    break;
  default:
    return -EINVAL;
  }
  if (!isfinite(v))
    return -ERANGE;
  *value = v * pt->scale + pt->offset;
  return isfinite(*value) ? 0 : -ERANGE;
}

/* Orders points by table, interval, address: the merge key. */
static int cmp_points(const sl_modbus_device_t *dev, size_t a, size_t b) {
  const sl_modbus_point_t *p = &dev->points[a], *q = &dev->points[b];
  if (p->table != q->table)
    return p->table < q->table ? -1 : 1;
  if (p->interval_ms != q->interval_ms)
    return p->interval_ms < q->interval_ms ? -1 : 1;
  if (p->address != q->address)
    return p->address < q->address ? -1 : 1;
  return 0;
}

void sl_modbus_plan_free(sl_modbus_block_t *blocks, size_t nblocks) {
  for (size_t i = 0; blocks && i < nblocks; i++)
    free(blocks[i].points);
  free(blocks);
}

int sl_modbus_plan(const sl_modbus_device_t *dev, sl_modbus_block_t **blocks,
                   size_t *nblocks) {
  size_t *order = NULL, nb = 0;
  sl_modbus_block_t *bl = NULL;
  int rc = -ENOMEM;

  if (!(order = malloc(dev->npoints * sizeof(*order))) ||
      !(bl = calloc(dev->npoints, sizeof(*bl))))
    goto fail;
  /* Insertion sort: a device has tens of points, planned once. */
  for (size_t i = 0; i < dev->npoints; i++) {
    size_t j = i;
    for (; j > 0 && cmp_points(dev, order[j - 1], i) > 0; j--)
      order[j] = order[j - 1];
    order[j] = i;
  }
  for (size_t i = 0; i < dev->npoints; i++) {
    const sl_modbus_point_t *pt = &dev->points[order[i]];
    uint32_t end = pt->address + sl_modbus_type_width(pt->type);
    sl_modbus_block_t *b = nb ? &bl[nb - 1] : NULL;
    uint32_t lim =
        (pt->table == SL_MODBUS_COIL || pt->table == SL_MODBUS_DISCRETE)
            ? MAX_BITS
            : MAX_REGS;
    /* Same table and interval, starts within max_gap of the block's end,
     * and the merged request stays within the protocol's limit. */
    if (b && b->table == pt->table && b->interval_ms == pt->interval_ms &&
        pt->address <= b->address + b->count + dev->max_gap &&
        SL_MAX(end, b->address + b->count) - b->address <= lim) {
      b->count = SL_MAX(end, b->address + b->count) - b->address;
    } else {
      b = &bl[nb++];
      b->table = pt->table;
      b->address = pt->address;
      b->count = end - pt->address;
      b->interval_ms = pt->interval_ms;
      if (!(b->points = malloc(dev->npoints * sizeof(size_t))))
        goto fail;
    }
    b->points[b->npoints++] = order[i];
  }
  free(order);
  *blocks = bl;
  *nblocks = nb;
  return 0;
fail:
  free(order);
  sl_modbus_plan_free(bl, nb);
  return rc;
}
