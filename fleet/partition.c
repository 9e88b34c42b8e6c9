/*
 * fleet/partition.c: Kafka's Java client's murmur2 and default partition
 * formula. Written here because librdkafka's default partitioner
 * (consistent_random, CRC32) is not Java's and the fleet's records must
 * land where any Kafka client (the centre may be Java or Go) would look:
 * every fleet record is produced to a partition computed by this function
 * and the node reads its partition with assign(). The murmur2 constants
 * are those of org.apache.kafka.common.utils.Utils.murmur2.
 */
#include "fleet/fleet.h"

uint32_t sl_fleet_murmur2(const void *data, size_t len) {
  const uint8_t *p = data;
  const uint32_t m = 0x5bd1e995u;
  const int r = 24;
  uint32_t h = 0x9747b28cu ^ (uint32_t)len;
  size_t n4 = len / 4;

  for (size_t i = 0; i < n4; i++) {
    uint32_t k = (uint32_t)p[i * 4] | (uint32_t)p[i * 4 + 1] << 8 |
                 (uint32_t)p[i * 4 + 2] << 16 | (uint32_t)p[i * 4 + 3] << 24;
    k *= m;
    k ^= k >> r;
    k *= m;
    h *= m;
    h ^= k;
  }
  const uint8_t *t = p + (len & ~(size_t)3);
  switch (len % 4) {
  case 3:
    h ^= (uint32_t)t[2] << 16;
    /* fall through */
  case 2:
    h ^= (uint32_t)t[1] << 8;
    /* fall through */
  case 1:
    h ^= t[0];
    h *= m;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return h;
}

int32_t sl_fleet_partition(const char *key, size_t len, int32_t partitions) {
  if (partitions <= 0)
    return 0;
  return (int32_t)((sl_fleet_murmur2(key, len) & 0x7fffffffu) %
                   (uint32_t)partitions);
}
