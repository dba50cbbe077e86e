"""The binary data of a full CBF: the imgCIF byte-offset code (``x-CBF_BYTE_OFFSET``), which the writer
(:mod:`bragg_core.io.cbf`) and the reader (:mod:`bragg_core.io.cbf_read`) share, and the marker that opens
the data in a binary section.

The code is written with array operations; reading walks only the escaped
(multi-byte) differences.  Both functions are importable from
:mod:`bragg_core.io.cbf` too.
"""

from __future__ import annotations

import numpy as np

__all__ = ["byte_offset_encode", "byte_offset_decode"]

_MARK = b"\x0c\x1a\x04\xd5"


def byte_offset_encode(values) -> bytes:
    """imgCIF byte-offset code of integer ``values`` (flattened in C order)."""
    v = np.asarray(values).astype(np.int64).reshape(-1)
    d = np.diff(v, prepend=np.int64(0))
    a = np.abs(d)
    one = a <= 127
    three = ~one & (a <= 32767)
    seven = ~one & ~three & (a <= 2**31 - 1)
    fifteen = ~(one | three | seven)
    lengths = np.where(one, 1, np.where(three, 3, np.where(seven, 7, 15)))
    ends = np.cumsum(lengths)
    start = ends - lengths
    out = np.zeros(int(ends[-1]) if len(ends) else 0, dtype=np.uint8)
    out[start[one]] = d[one].astype(np.int8).view(np.uint8)
    esc = start[~one]
    out[esc] = 0x80
    i3 = start[three]
    b = d[three].astype("<i2").view(np.uint8).reshape(-1, 2)
    out[i3 + 1], out[i3 + 2] = b[:, 0], b[:, 1]
    big = start[seven | fifteen]
    out[big + 1], out[big + 2] = 0x00, 0x80  # int16 -32768: a 32-bit value follows
    i7 = start[seven]
    b = d[seven].astype("<i4").view(np.uint8).reshape(-1, 4)
    for k in range(4):
        out[i7 + 3 + k] = b[:, k]
    i15 = start[fifteen]
    out[i15 + 3], out[i15 + 4], out[i15 + 5], out[i15 + 6] = 0x00, 0x00, 0x00, 0x80  # int32 -2^31: 64 bits follow
    b = d[fifteen].astype("<i8").view(np.uint8).reshape(-1, 8)
    for k in range(8):
        out[i15 + 7 + k] = b[:, k]
    return out.tobytes()


def byte_offset_decode(data: bytes, n: int) -> np.ndarray:
    """The first ``n`` integers (int64) of a byte-offset code."""
    buf = np.frombuffer(data, dtype=np.uint8)
    small = buf.view(np.int8).astype(np.int64)
    cand = np.flatnonzero(buf == 0x80)
    pieces = []
    p = 0
    count = 0
    k = int(np.searchsorted(cand, 0))
    while count < n:
        if k >= len(cand):  # the rest are single bytes
            take = min(n - count, len(buf) - p)
            pieces.append(small[p:p + take])
            count += take
            break
        c = int(cand[k])
        if c > p:
            take = min(c - p, n - count)
            pieces.append(small[p:p + take])
            count += take
            if count >= n:
                break
        v = int(np.frombuffer(data, "<i2", 1, c + 1)[0])
        q = c + 3
        if v == -32768:
            v = int(np.frombuffer(data, "<i4", 1, c + 3)[0])
            q = c + 7
            if v == -(2**31):
                v = int(np.frombuffer(data, "<i8", 1, c + 7)[0])
                q = c + 15
        pieces.append(np.array([v], dtype=np.int64))
        count += 1
        p = q
        k = int(np.searchsorted(cand, p))
    d = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    if d.size < n:
        raise ValueError(f"byte-offset data end after {d.size} of {n} values")
    return np.cumsum(d[:n])
