"""Kafka's default partitioner for keyed records, in Python.

The engine lets librdkafka partition (`murmur2_random`); this copy is for the places that must
know a key's partition without producing: interactive queries (which instance holds a key),
savepoints restored onto another partition count, and the TopologyTestDriver. All of them must
agree with the Java producer, byte for byte.
"""

from __future__ import annotations

import struct

__all__ = ["murmur2", "partition_for_key"]


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (signed 32-bit result), so keys land where Java puts them."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    words = length // 4
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length & 3
    index = length - tail
    if tail == 3:
        h ^= data[index + 2] << 16
    if tail >= 2:
        h ^= data[index + 1] << 8
    if tail >= 1:
        h ^= data[index]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """`toPositive(murmur2(key)) % partitions`, the Java producer's choice for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
