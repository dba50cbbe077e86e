"""``Fdump.bin``: the reference's binary cache of the structure-factor grid.

Layout (byte-compatible with the reference):

* an ASCII header ``"%d %d %d %d %d %d\\n\\f"`` holding
  ``h_min h_max k_min k_max l_min l_max``;
* then ``(h_range+1) * (k_range+1) * (l_range+1)`` float64 values, native
  (little-endian on every platform we support), C order (``l`` fastest), where
  ``h_range = h_max - h_min + 1`` etc.  The reference allocates one extra
  plane/row/element along each axis and dumps it too; that padding is zero.

The reference writes the grid after filling it with ``default_F`` (only when
``default_F != 0``), so the dump holds ``default_F`` for unlisted reflections.

The reference reads the header with ``fscanf("%d...%d\\n\\f")``, whose
whitespace directive would also swallow data bytes that happen to be
whitespace characters; this reader takes the header to end exactly at the
first ``\\n\\f``.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from .atomic import atomic_write
from .grid import StructureFactorGrid

__all__ = ["FdumpFormatError", "read_fdump", "parse_fdump", "fdump_bytes", "write_fdump"]

_HEADER = re.compile(rb"\A *([+-]?\d+)(?: +([+-]?\d+)){5} *\n\f")
_INT = re.compile(rb"[+-]?\d+")
_DTYPE = np.dtype("<f8")


class FdumpFormatError(ValueError):
    """A malformed ``Fdump.bin``; the message names the file."""


def parse_fdump(data: bytes, *, source: str = "<Fdump bytes>") -> StructureFactorGrid:
    """Decode the bytes of an ``Fdump.bin`` into a :class:`StructureFactorGrid`."""
    data = bytes(data)
    end = data.find(b"\n\f", 0, 256)
    match = _HEADER.match(data[: end + 2]) if end >= 0 else None
    if match is None:
        raise FdumpFormatError(
            f"{source}: not an Fdump file (expected a header "
            f"'h_min h_max k_min k_max l_min l_max' ending in '\\n\\f')"
        )
    h_min, h_max, k_min, k_max, l_min, l_max = (
        int(t) for t in _INT.findall(data[: match.end()])
    )
    shape = (h_max - h_min + 1, k_max - k_min + 1, l_max - l_min + 1)
    if min(shape) < 1:
        raise FdumpFormatError(f"{source}: empty index range in header {shape}")
    padded = tuple(n + 1 for n in shape)
    expected = math.prod(padded) * _DTYPE.itemsize
    body = len(data) - match.end()
    if body != expected:
        raise FdumpFormatError(
            f"{source}: header announces {padded} float64 values ({expected} bytes) "
            f"but {body} data bytes follow"
        )
    F = np.frombuffer(data, dtype=_DTYPE, offset=match.end()).reshape(padded)
    grid = F[: shape[0], : shape[1], : shape[2]].astype(np.float64)
    return StructureFactorGrid(grid, h_min, k_min, l_min)


def read_fdump(path: str | os.PathLike) -> StructureFactorGrid:
    """Read an ``Fdump.bin`` file (see :func:`parse_fdump`)."""
    with open(path, "rb") as fh:
        return parse_fdump(fh.read(), source=os.fspath(path))


def fdump_bytes(grid: StructureFactorGrid) -> bytes:
    """The exact bytes the reference writes for ``grid`` (zero padding included)."""
    nh, nk, nl = grid.shape
    header = "%d %d %d %d %d %d\n\f" % (
        grid.h_min, grid.h_max, grid.k_min, grid.k_max, grid.l_min, grid.l_max
    )
    padded = np.zeros((nh + 1, nk + 1, nl + 1), dtype=_DTYPE)
    padded[:nh, :nk, :nl] = grid.F
    return header.encode("ascii") + padded.tobytes()


def write_fdump(path: str | os.PathLike, grid: StructureFactorGrid) -> None:
    """Write ``grid`` to ``path`` as an ``Fdump.bin``, atomically."""
    atomic_write(path, fdump_bytes(grid))
