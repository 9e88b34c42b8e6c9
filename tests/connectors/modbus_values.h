/*
 * The registers of the test Modbus server and the readings the connector
 * must make of them: one table shared by the server and the test, so the
 * expected values are computed, not copied.
 */
#ifndef SL_TEST_MODBUS_VALUES_H
#define SL_TEST_MODBUS_VALUES_H

#include <stdint.h>
#include <string.h>

#define TV_NREGS 200 /* holding and input registers 0..199 */
#define TV_NBITS 100 /* coils and discrete inputs 0..99 */

/* Fills the server's tables for generation gen: generation 2 (the device
 * after it came back) changes holding register 0 only. */
static inline void tv_fill(int gen, uint16_t *hr, uint16_t *ir, uint8_t *co,
                           uint8_t *di) {
  float f;
  double d = 12345.678;
  uint32_t u;
  uint64_t w;
  hr[0] = (uint16_t)(int16_t)(gen == 2 ? -122 : -123); /* int16 */
  hr[1] = 5000;                                        /* uint16 */
  u = (uint32_t)(int32_t)-100000; /* int32, big word order */
  hr[2] = (uint16_t)(u >> 16);
  hr[3] = (uint16_t)u;
  u = 3000000000u; /* uint32, little word order (low word first) */
  hr[4] = (uint16_t)u;
  hr[5] = (uint16_t)(u >> 16);
  f = 21.5f; /* float32 ABCD */
  memcpy(&u, &f, 4);
  hr[6] = (uint16_t)(u >> 16);
  hr[7] = (uint16_t)u;
  f = -3.25f; /* float32 BADC: bytes swapped within each register */
  memcpy(&u, &f, 4);
  hr[8] = (uint16_t)(((u >> 16) & 0xff) << 8 | ((u >> 24) & 0xff));
  hr[9] = (uint16_t)((u & 0xff) << 8 | ((u >> 8) & 0xff));
  memcpy(&w, &d, 8); /* float64, big word order */
  for (int i = 0; i < 4; i++)
    hr[10 + i] = (uint16_t)(w >> (48 - 16 * i));
  hr[60] = 42; /* uint16, a separate request (not contiguous) */
  ir[0] = 250; /* int16 input register, scale 0.1 offset -10 */
  co[3] = 1;   /* coil */
  di[5] = 0;   /* discrete input */
  di[6] = 1;
}

#endif
