"""Reflection data files -> a P1 structure-factor grid: MTZ, mmCIF structure factors, HKL text.

MTZ and mmCIF files are read with gemmi.  One amplitude per reflection is
taken from a column the caller names or from the first usable one:

* ``F`` columns (amplitudes) are used as they are;
* ``J`` columns (intensities) become amplitudes as ``sqrt(max(I, 0))``: a
  negative measured intensity counts as zero.  No French-Wilson treatment is
  done (weak intensities are not inflated towards their expected value);
* ``G`` column pairs (``F(+)``/``F(-)``, anomalous amplitudes) and ``K`` pairs
  (``I(+)``/``I(-)``) keep the two Friedel hands apart: ``F(+)`` of ``h`` goes
  to every ``h R``, ``F(-)`` to every ``-h R``.  Where one hand is missing
  the other stands in for it.

With no column named the order of preference is: an anomalous amplitude pair,
an amplitude column, an anomalous intensity pair, an intensity column (the
first of each kind in the file).  Missing values (NaN) are skipped: those
indices hold ``default_F`` like every index the file does not list.

The reflections are expanded to P1 with the space group's operators and
Friedel's law (unless anomalous pairs are read), into the
:class:`~bragg_core.io.grid.StructureFactorGrid` the engine takes.

Errors raise :class:`ReflectionFileError` (a ``ValueError``) naming the file
and what is missing: a column that is not there (the columns present are
listed), a space group or cell the file does not give.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ._text import read_text
from .grid import StructureFactorGrid
from .hkl import MAX_GRID_CELLS, parse_hkl
from .symmetry import SymmetryError, _gemmi, _gemmi_read, expand_to_p1, space_group_ops

__all__ = ["ReflectionFileError", "Reflections", "read_mtz", "read_sfcif", "read_hkl_reflections",
           "mtz_reflections"]


class ReflectionFileError(ValueError):
    """A reflection file that cannot give amplitudes; the message names the file and what is missing."""


@dataclass(frozen=True)
class Reflections:
    """Amplitudes of the reflections a file lists, before expansion.

    ``F_plus[i] = |F(hkl[i])|``; ``F_minus[i] = |F(-hkl[i])|`` for anomalous
    data (None otherwise).  ``column`` says which column(s) they came from and
    ``from_intensities`` whether they are ``sqrt(max(I, 0))``.
    """

    hkl: np.ndarray
    F_plus: np.ndarray
    F_minus: np.ndarray | None
    space_group: str
    cell_A_deg: tuple | None
    source: str
    column: str
    from_intensities: bool = False

    @property
    def anomalous(self) -> bool:
        return self.F_minus is not None

    def to_grid(self, default_F: float = 0.0, *, max_cells: int = MAX_GRID_CELLS) -> StructureFactorGrid:
        """Expanded to P1 (symmetry equivalents and Friedel mates) on a dense box."""
        try:
            ops = space_group_ops(self.space_group)
            F, lo = expand_to_p1(self.hkl, self.F_plus, ops, F_minus=self.F_minus, default_F=default_F,
                                 source=self.source, max_cells=max_cells)
        except SymmetryError as exc:
            raise ReflectionFileError(f"{self.source}: {exc}" if self.source not in str(exc) else str(exc)) from None
        return StructureFactorGrid(F, *lo)


# ----------------------------------------------------------------------------
# MTZ column choice
# ----------------------------------------------------------------------------

_MATES = (("(+)", "(-)"), ("PLUS", "MINUS"), ("plus", "minus"), ("+", "-"))


def _column_list(mtz) -> str:
    return ", ".join(f"{c.label} ({c.type})" for c in mtz.columns)


def _mate(mtz, col, source):
    """The other hand of an anomalous column (same type): by its name, else its neighbour in the file."""
    labels = [c.label for c in mtz.columns]
    for plus, minus in _MATES:
        for a, b in ((plus, minus), (minus, plus)):
            if a in col.label:
                i = col.label.rfind(a)
                other = col.label[:i] + b + col.label[i + len(a):]
                if other in labels and mtz.column_with_label(other).type == col.type:
                    return (col, mtz.column_with_label(other)) if a == plus else (mtz.column_with_label(other), col)
    same = [c for c in mtz.columns if c.type == col.type and c.dataset_id == col.dataset_id]
    pos = [c.label for c in same].index(col.label)
    if len(same) % 2 == 0:
        first = pos - pos % 2
        return same[first], same[first + 1]
    raise ReflectionFileError(f"{source}: column {col.label} ({col.type}, one hand of an anomalous pair) "
                              f"has no partner; columns present: {_column_list(mtz)}")


def _choose(mtz, column, source):
    """(plus column, minus column or None, from_intensities)."""
    if column is not None:
        names = [c.strip() for c in str(column).split(",")]
        cols = []
        for name in names:
            try:
                cols.append(mtz.column_with_label(name))
            except RuntimeError:
                cols.append(None)
            if cols[-1] is None:
                raise ReflectionFileError(f"{source}: no column {name!r}; columns present: {_column_list(mtz)}")
        if len(cols) == 2:
            if cols[0].type != cols[1].type or cols[0].type not in "FGJK":
                raise ReflectionFileError(f"{source}: columns {names[0]} and {names[1]} are not a pair of "
                                          "amplitudes (F/G) or intensities (J/K) of one type")
            return cols[0], cols[1], cols[0].type in "JK"
        if len(cols) != 1:
            raise ReflectionFileError(f"{source}: give one column label, or two separated by a comma")
        col = cols[0]
        if col.type in "FJ":
            return col, None, col.type == "J"
        if col.type in "GK":
            plus, minus = _mate(mtz, col, source)
            return plus, minus, col.type == "K"
        raise ReflectionFileError(f"{source}: column {col.label} has type {col.type}, not amplitudes (F, G) or "
                                  f"intensities (J, K); columns present: {_column_list(mtz)}")
    for kind in "GFKJ":
        found = mtz.columns_with_type(kind)
        if len(found) == 0:
            continue
        col = found[0]
        if kind in "GK":
            try:
                plus, minus = _mate(mtz, col, source)
            except ReflectionFileError:
                continue
            return plus, minus, kind == "K"
        return col, None, kind == "J"
    raise ReflectionFileError(f"{source}: no amplitude (F, G) or intensity (J, K) column; "
                              f"columns present: {_column_list(mtz)}")


def _amplitudes(values: np.ndarray, from_intensities: bool) -> np.ndarray:
    v = np.array(values, dtype=np.float64)
    if from_intensities:
        with np.errstate(invalid="ignore"):
            v = np.sqrt(np.maximum(v, 0.0))   # NaN (missing) stays NaN
    return v


def mtz_reflections(mtz, column: str | None = None, *, source: str = "<mtz>") -> Reflections:
    """The amplitudes of an in-memory ``gemmi.Mtz`` (see the module notes for the column rules)."""
    if mtz.spacegroup is None:
        raise ReflectionFileError(f"{source}: no space group in the file")
    if len(mtz.batches) > 0:
        raise ReflectionFileError(f"{source}: unmerged data ({len(mtz.batches)} batches); merge the "
                                  "observations into one amplitude per reflection first")
    plus, minus, from_i = _choose(mtz, column, source)
    hkl = np.asarray(mtz.make_miller_array(), dtype=np.int64)
    if hkl.shape[0] == 0:
        raise ReflectionFileError(f"{source}: no reflections in the file")
    F_plus = _amplitudes(plus.array, from_i)
    F_minus = None if minus is None else _amplitudes(minus.array, from_i)
    cell = mtz.cell
    cell_t = (cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma) if cell.is_crystal() else None
    label = plus.label if minus is None else f"{plus.label},{minus.label}"
    return Reflections(hkl=hkl, F_plus=F_plus, F_minus=F_minus, space_group=mtz.spacegroup.hm,
                       cell_A_deg=cell_t, source=source, column=label, from_intensities=from_i)


def read_mtz(path: str | os.PathLike, column: str | None = None) -> Reflections:
    """Reflections of an MTZ file (amplitudes from ``column``, or chosen as the module notes say)."""
    mtz = _gemmi_read(path, _gemmi().read_mtz_file, ReflectionFileError, "MTZ file")
    return mtz_reflections(mtz, column, source=os.fspath(path))


def read_sfcif(path: str | os.PathLike, column: str | None = None, *, block: str | None = None) -> Reflections:
    """Reflections of an mmCIF structure-factor file (the first block with a ``_refln`` loop, or ``block``).

    The block is converted with gemmi's standard mmCIF-to-MTZ column names
    (``F_meas_au`` -> ``FP``, ``pdbx_F_plus``/``pdbx_F_minus`` -> ``F(+)``/``F(-)``,
    ``intensity_meas`` -> ``IMEAN``, ``pdbx_I_plus``/``pdbx_I_minus`` -> ``I(+)``/``I(-)``);
    ``column`` names one of those labels.
    """
    source = os.fspath(path)
    gemmi = _gemmi()
    blocks = _gemmi_read(path, lambda p: gemmi.as_refln_blocks(gemmi.cif.read(p)), ReflectionFileError,
                         "mmCIF file")
    blocks = [b for b in blocks if b.default_loop is not None]
    if block is not None:
        blocks = [b for b in blocks if b.block.name == block]
    if not blocks:
        what = f"block {block!r} with " if block is not None else ""
        raise ReflectionFileError(f"{source}: no {what}_refln (or _diffrn_refln) loop of reflections")
    rb = blocks[0]
    if rb.spacegroup is None:
        raise ReflectionFileError(f"{source}: no space group (_symmetry.space_group_name_H-M or "
                                  "_space_group.name_H-M_alt) in block " + rb.block.name)
    if not rb.cell.is_crystal():
        raise ReflectionFileError(f"{source}: no unit cell (_cell.length_a ...) in block {rb.block.name}")
    try:
        mtz = gemmi.CifToMtz().convert_block_to_mtz(rb)
    except Exception as exc:  # gemmi's failures, as in _gemmi_read
        raise ReflectionFileError(f"{source}: cannot convert the reflections ({exc})") from None
    return mtz_reflections(mtz, column, source=source)


def read_hkl_reflections(path: str | os.PathLike, space_group) -> Reflections:
    """An ``h k l F`` text file read as the unique reflections of ``space_group`` (Friedel's law applies)."""
    source = os.fspath(path)
    grid = parse_hkl(read_text(path), math.nan, source=source)
    F = np.asarray(grid.F)
    listed = np.argwhere(~np.isnan(F))
    hkl = listed + np.array([grid.h_min, grid.k_min, grid.l_min])
    try:
        name = space_group_ops(space_group).name
    except SymmetryError as exc:
        raise ReflectionFileError(f"{source}: {exc}") from None
    return Reflections(hkl=hkl.astype(np.int64), F_plus=F[~np.isnan(F)], F_minus=None, space_group=name,
                       cell_A_deg=None, source=source, column="F")
