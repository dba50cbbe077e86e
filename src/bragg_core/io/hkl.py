"""Reader for HKL text files (``h k l F`` per line).

Format: one reflection per line, four whitespace-separated numbers ``h k l F``
(Miller indices and the structure-factor amplitude in electrons).  Blank lines
and lines starting with ``#`` are skipped; text after a ``#`` is a comment.

Differences from the reference reader, which uses ``fscanf`` free-format
scanning and is not line-based:

* a line with fewer or more than four numbers, or a token that is not a
  number, raises :class:`HKLFormatError` naming the file and line (the
  reference would silently pair numbers across lines);
* a non-integer index is rounded to the nearest integer (halves away from
  zero) with a :class:`NonIntegerIndexWarning` naming the line.  The reference
  warns on its first pass but its second pass reads indices with ``%d``, which
  stops at the decimal point and ends the read: that line *and every line
  after it* are silently dropped (this is true even of ``1.0``);
* a reflection listed twice keeps the last value, as in the reference.
"""

from __future__ import annotations

import math
import os
import re
import warnings

import numpy as np

from ._text import as_text, lines, parse_number, read_text
from .grid import StructureFactorGrid

__all__ = ["HKLFormatError", "NonIntegerIndexWarning", "read_hkl", "parse_hkl"]

#: Largest grid (cells) the reader will allocate, about 2 GiB of float64.
MAX_GRID_CELLS = 2**28

_SPACE = re.compile(r"[ \t\r\f\v]+")


class HKLFormatError(ValueError):
    """A malformed HKL file; the message names the file and the line."""


class NonIntegerIndexWarning(UserWarning):
    """A Miller index in an HKL file was not an integer and was rounded."""


def _round_index(value: float) -> int:
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def parse_hkl(
    text: str | bytes,
    default_F: float = 0.0,
    *,
    source: str = "<hkl text>",
    max_cells: int = MAX_GRID_CELLS,
) -> StructureFactorGrid:
    """Parse HKL text into a :class:`StructureFactorGrid`.

    The grid spans the smallest box holding every listed index; cells not
    listed hold ``default_F``.  ``source`` names the input in messages.
    """
    entries: dict[tuple[int, int, int], float] = {}  # a repeated hkl keeps its last F
    for number, line in lines(as_text(text)):
        body = line.split("#", 1)[0].strip(" \t\r\f\v")
        if not body:
            continue
        where = f"{source}, line {number}"
        tokens = _SPACE.split(body)
        if len(tokens) != 4:
            what = "fewer" if len(tokens) < 4 else "more"
            raise HKLFormatError(
                f"{where}: expected 4 columns 'h k l F', found {len(tokens)} "
                f"({what} than 4): {body!r}"
            )
        numbers = [parse_number(t) for t in tokens]
        for token, value in zip(tokens, numbers):
            if value is None:
                raise HKLFormatError(f"{where}: {token!r} is not a number")
        index = []
        for name, value in zip("hkl", numbers[:3]):
            if not math.isfinite(value) or abs(value) > 2**31 - 1:
                raise HKLFormatError(f"{where}: index {name}={value!r} is not a usable integer")
            rounded = _round_index(value)
            if rounded != value:
                warnings.warn(
                    f"{where}: non-integer index {name}={value:g} rounded to {rounded}",
                    NonIntegerIndexWarning,
                    stacklevel=2,
                )
            index.append(rounded)
        entries.pop(tuple(index), None)
        entries[tuple(index)] = numbers[3]
    if not entries:
        raise HKLFormatError(f"{source}: no reflections found (empty file)")

    idx = np.array(list(entries), dtype=np.int64)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    shape = tuple(int(n) for n in hi - lo + 1)
    if math.prod(shape) > max_cells:
        raise HKLFormatError(
            f"{source}: index ranges {lo.tolist()}..{hi.tolist()} need a grid of "
            f"{math.prod(shape)} cells, more than the limit {max_cells}"
        )
    F = np.full(shape, float(default_F), dtype=np.float64)
    rel = idx - lo
    F[rel[:, 0], rel[:, 1], rel[:, 2]] = np.fromiter(entries.values(), np.float64, len(entries))
    return StructureFactorGrid(F, int(lo[0]), int(lo[1]), int(lo[2]))


def read_hkl(
    path: str | os.PathLike,
    default_F: float = 0.0,
    *,
    max_cells: int = MAX_GRID_CELLS,
) -> StructureFactorGrid:
    """Read an HKL file into a :class:`StructureFactorGrid` (see :func:`parse_hkl`)."""
    return parse_hkl(read_text(path), default_F, source=os.fspath(path), max_cells=max_cells)
