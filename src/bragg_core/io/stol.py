"""Amorphous structure-factor tables (``.stol`` files): sin(theta)/lambda against F.

One row per line: the abscissa and the structure factor F (electrons; the
ratio of the scattered amplitude of one molecule to that of one electron),
separated by blanks, tabs or ``,;:!``.  Further fields on a row are ignored.
Blank lines and lines whose first non-blank character is ``#`` are skipped.
A row whose F is missing or ``nan`` is kept with F = 0 and does not count as
the table's low- or high-angle end value (the reference's convention).

The abscissa is sin(theta)/lambda in 1/Angstrom (``kind="stol"``), or
4 sin(theta)/lambda (``"4stol"``), or Q = 4 pi sin(theta)/lambda (``"Q"``);
tables are converted to sin(theta)/lambda in 1/m on reading.  Abscissae must
be distinct; rows out of order are sorted (with a :class:`StolOrderWarning`):
the reference searches an unsorted table from wherever the previous pixel
left off, so its result there depends on the pixel order.

The tables shipped with the reference family (water, air, ice, nanoice,
shortwater, unity) are package data: ``builtin_table("water")``.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ._text import lines, parse_number, read_text

__all__ = ["StolFormatError", "StolTable", "parse_stol", "read_stol", "builtin_table", "BUILTIN_TABLES",
           "STOL_KINDS", "StolOrderWarning"]

#: multiplier from the file's abscissa to sin(theta)/lambda in 1/m
STOL_KINDS = {"stol": 1e10, "4stol": 1e10 / 4.0, "Q": 1e10 / math.pi / 4.0}
BUILTIN_TABLES = ("air", "ice", "nanoice", "shortwater", "unity", "water")
_SEPARATORS = " \t,;:!"


class StolFormatError(ValueError):
    """A malformed ``.stol`` table; the message names the file and the line."""


class StolOrderWarning(UserWarning):
    """A table whose abscissae do not increase: it is sorted before use."""


@dataclass(frozen=True)
class StolTable:
    """A structure-factor table on the host (float64 NumPy arrays).

    ``stol_per_m``: sin(theta)/lambda of each row (1/m), strictly increasing;
    ``F``: structure factor per row (missing values are 0);
    ``F_low``/``F_high``: the first and last values that were given, which
    the interpolation uses beyond the ends of the table.
    """

    stol_per_m: np.ndarray
    F: np.ndarray
    F_low: float
    F_high: float
    source: str = "<stol>"
    was_unsorted: bool = False   #: the file's rows were not in increasing order (sorted on reading)


def _fields(line: str) -> list[str]:
    for sep in _SEPARATORS[1:]:
        line = line.replace(sep, " ")
    return line.split()


def parse_stol(text: str, *, kind: str = "stol", source: str = "<stol text>") -> StolTable:
    """Parse the text of a ``.stol`` table (see the module docstring)."""
    if kind not in STOL_KINDS:
        raise StolFormatError(f"{source}: unknown table kind {kind!r}; use one of {', '.join(STOL_KINDS)}")
    mult = STOL_KINDS[kind]
    xs: list[float] = []
    rows: list[int] = []
    Fs: list[float] = []
    given: list[bool] = []
    for number, line in lines(text):
        parts = _fields(line)
        if not parts or parts[0].startswith("#"):
            continue
        x = parse_number(parts[0])
        if x is None or not math.isfinite(x):
            raise StolFormatError(f"{source}: line {number}: {parts[0]!r} is not a finite number "
                                  "(expected sin(theta)/lambda and F)")
        F = math.nan
        if len(parts) > 1:
            F = parse_number(parts[1])
            if F is None or math.isinf(F):
                raise StolFormatError(f"{source}: line {number}: F value {parts[1]!r} is not a number")
        xs.append(x * mult)
        rows.append(number)
        given.append(not math.isnan(F))
        Fs.append(F if not math.isnan(F) else 0.0)
    if not xs:
        raise StolFormatError(f"{source}: no data rows")
    if not any(given):
        raise StolFormatError(f"{source}: no row gives a structure factor")
    first = given.index(True)
    last = len(given) - 1 - given[::-1].index(True)
    x = np.asarray(xs, dtype=np.float64)
    F = np.asarray(Fs, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    if np.any(np.diff(x[order]) == 0):
        k = int(np.nonzero(np.diff(x[order]) == 0)[0][0])
        raise StolFormatError(f"{source}: line {rows[order[k + 1]]}: abscissa repeats that of line "
                              f"{rows[order[k]]} (the interpolation needs distinct values)")
    unsorted = bool(np.any(order != np.arange(x.size)))
    if unsorted:
        k = int(np.nonzero(np.diff(x) < 0)[0][0])
        warnings.warn(f"{source}: line {rows[k + 1]}: abscissa decreases; the table is used sorted",
                      StolOrderWarning, stacklevel=3)
    return StolTable(x[order], F[order], float(Fs[first]), float(Fs[last]), source, unsorted)


def read_stol(path: str | os.PathLike, *, kind: str = "stol") -> StolTable:
    """Read a ``.stol`` file; :class:`StolFormatError` names the file and line of any problem."""
    try:
        text = read_text(path)
    except OSError as exc:
        raise StolFormatError(f"{os.fspath(path)}: cannot read: {exc.strerror or exc}") from None
    return parse_stol(text, kind=kind, source=os.fspath(path))


def builtin_table(name: str, kind: str = "stol") -> StolTable:
    """One of the tables shipped with the package: ``air``, ``ice``, ``nanoice``, ``shortwater``,
    ``unity`` or ``water`` (a trailing ``.stol`` is accepted)."""
    base = name[:-5] if name.endswith(".stol") else name
    if base not in BUILTIN_TABLES:
        raise StolFormatError(f"no built-in table {name!r}; built-in tables: {', '.join(BUILTIN_TABLES)}")
    key = (base, kind)
    table = _BUILTIN_CACHE.get(key)
    if table is None:  # parsed once per process (water.stol has 10 000 rows); callers never write to it
        ref = resources.files("bragg_core").joinpath("data", "stol", base + ".stol")
        table = parse_stol(ref.read_text(encoding="utf-8"), kind=kind, source=f"{base}.stol (built-in)")
        _BUILTIN_CACHE[key] = table
    return table


_BUILTIN_CACHE: dict = {}
