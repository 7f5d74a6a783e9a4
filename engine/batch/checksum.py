"""CRC-32 of a batch output's bytes, for `--resume`: zlib's CRC-32 (the polynomial, the values),
computed by zlib-ng where the `speed` extra is installed and by the standard library's zlib
otherwise. The two give the same value for the same bytes (tests/test_checksum.py), so a resume
record written with one is checked with the other; only the speed differs: the zlib CPython links
on Debian 12 (1.2.13) does ~4.3 GB/s here, zlib-ng's folding CRC (PCLMULQDQ) ~57 GB/s, and a
full-detail result is ~42 KB, so the checksum cost a worker ~10 µs a record of the ~260 it spends.

`crc32_combine`: the CRC-32 of two byte strings joined, from theirs (zlib's crc32_combine), so
the parent combines the workers' chunk CRCs without seeing the bytes: zlib-ng's where installed,
else `crc32_combine_python` (the standard library does not expose zlib's; ~75 µs a chunk in
Python, about 1 µs a record of the parent's budget of 15).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["CRC32_IMPLEMENTATION", "crc32", "crc32_combine", "crc32_combine_python"]

CRC32_POLY = 0xEDB88320  # zlib's CRC-32, reflected


def _multmodp(a: int, b: int) -> int:
    """a times b modulo the CRC-32 polynomial (zlib's multmodp)."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ CRC32_POLY if b & 1 else b >> 1


_X2N = [1 << 30]  # x^(2^k) modulo the polynomial
for _ in range(31):
    _X2N.append(_multmodp(_X2N[-1], _X2N[-1]))


def crc32_combine_python(crc1: int, crc2: int, len2: int) -> int:
    """zlib.crc32(a + b) from crc1 = zlib.crc32(a), crc2 = zlib.crc32(b) and len(b) (zlib's
    crc32_combine): about 32 × log2(len2) steps, whatever the bytes."""
    if len2 == 0:
        return crc1
    p = 1 << 31  # x^0
    k = 3  # bits: x^(8 * len2)
    while len2:
        if len2 & 1:
            p = _multmodp(_X2N[k & 31], p)
        len2 >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2


crc32_combine: Callable[[int, int, int], int]
try:
    from zlib_ng.zlib_ng import crc32, crc32_combine

    CRC32_IMPLEMENTATION = "zlib-ng"
except ImportError:  # the `speed` extra is not installed
    from zlib import crc32

    crc32_combine = crc32_combine_python
    CRC32_IMPLEMENTATION = "zlib"
