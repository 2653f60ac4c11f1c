"""The official SDK's deterministic random numbers for experience selection.

The SDK hashes with murmurhash-js's ``murmur3`` (MurmurHash3 x86_32, seed 0), which reads each
UTF-16 code unit of the string and keeps only its low byte (``charCodeAt(i) & 0xff``). For ASCII
this is the standard hash of the UTF-8 bytes; for other text we reproduce the same truncation so
every profile id gets exactly the number the SDK computes.
"""

from __future__ import annotations

UPPER_BOUND = 4294967295
_C1 = 0xCC9E2D51
_C2 = 0x1B873593
_MASK = 0xFFFFFFFF


def _code_unit_low_bytes(text: str) -> bytes:
    encoded = text.encode("utf-16-le", "surrogatepass")
    return encoded[0::2]


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def murmur3_32(text: str, seed: int = 0) -> int:
    """murmurhash-js ``murmur3(text, seed)``: an unsigned 32-bit hash."""
    data = _code_unit_low_bytes(text)
    length = len(data)
    h1 = seed & _MASK
    full = length - (length & 3)
    for i in range(0, full, 4):
        k1 = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k1 = _rotl((k1 * _C1) & _MASK, 15)
        h1 ^= (k1 * _C2) & _MASK
        h1 = _rotl(h1, 13)
        h1 = (h1 * 5 + 0xE6546B64) & _MASK
    remainder = length & 3
    if remainder:
        k1 = 0
        if remainder == 3:
            k1 ^= data[full + 2] << 16
        if remainder >= 2:
            k1 ^= data[full + 1] << 8
        k1 ^= data[full]
        k1 = _rotl((k1 * _C1) & _MASK, 15)
        h1 ^= (k1 * _C2) & _MASK
    h1 ^= length
    h1 ^= h1 >> 16
    h1 = (h1 * 0x85EBCA6B) & _MASK
    h1 ^= h1 >> 13
    h1 = (h1 * 0xC2B2AE35) & _MASK
    h1 ^= h1 >> 16
    return h1


def sdk_random(text: str) -> float:
    """The SDK's ``getRandom(text)``: the hash normalised to ``[0, 1]``."""
    return murmur3_32(text, 0) / UPPER_BOUND


def traffic_random(experience_id: str, stable_id: str) -> float:
    return sdk_random(f"traffic-{experience_id}-{stable_id}")


def distribution_random(experience_id: str, stable_id: str) -> float:
    return sdk_random(f"distribution-{experience_id}-{stable_id}")
