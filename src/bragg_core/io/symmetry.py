"""Miller-index symmetry on the host: space-group operators, unique reflections, P1 expansion.

Everything here is NumPy on the host and uses gemmi only to look up a space
group's operators.  Amplitudes are the same for every symmetry-equivalent
index ``h R`` (the phase shift ``2 pi h.t`` of an operator's translation does
not change ``|F|``); Friedel mates ``-h R`` share the amplitude only when
there is no anomalous scattering.

Conventions: a reflection ``h`` (row vector) maps to ``h R`` under the
operator ``(R, t)`` that maps fractional coordinates ``x -> R x + t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["SymmetryError", "SpaceGroupOps", "space_group_ops", "indices_within", "FriedelOrbits",
           "friedel_orbits", "expand_to_p1"]

#: Largest grid (cells) the expansion will allocate, about 2 GiB of float64.
MAX_GRID_CELLS = 2**28


class SymmetryError(ValueError):
    """A space group that cannot be used (unknown name, no operators)."""


def _gemmi():
    try:
        import gemmi
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading reflection files and models needs gemmi: "
                          "pip install 'bragg_core[models]'") from exc
    return gemmi


def _gemmi_read(path, read, error, what: str):
    """``read(path)`` with gemmi, a missing file as FileNotFoundError and any parser failure as ``error``."""
    import os

    source = os.fspath(path)
    if not os.path.exists(source):
        raise FileNotFoundError(2, "No such file or directory", source)
    try:
        return read(source)
    except Exception as exc:  # gemmi's parsers raise RuntimeError, ValueError or IndexError on bad input
        raise error(f"{source}: not a readable {what} ({exc})") from None


@dataclass(frozen=True)
class SpaceGroupOps:
    """The operators of a space group as arrays (fractional coordinates).

    ``rot`` (S, 3, 3) and ``tran`` (S, 3) hold every operator, centring
    included (``x -> rot @ x + tran``); ``unique_rot`` (U, 3, 3) the distinct
    rotation parts, which are all that Miller-index symmetry needs.
    """

    name: str
    rot: np.ndarray
    tran: np.ndarray
    unique_rot: np.ndarray
    gemmi_ops: object

    def systematically_absent(self, hkl: np.ndarray) -> np.ndarray:
        """True where ``hkl`` (N, 3) is a systematic absence.

        That is, some operator with ``h R = h`` has ``h.t`` not integral.
        """
        hkl = np.asarray(hkl, dtype=np.int64)
        absent = np.zeros(hkl.shape[0], dtype=bool)
        for R, t in zip(self.rot, self.tran):
            hr = hkl @ R
            fixed = np.all(hr == hkl, axis=1)
            shift = hkl @ t
            absent |= fixed & (np.abs(shift - np.round(shift)) > 1e-6)
        return absent


def space_group_ops(space_group) -> SpaceGroupOps:
    """Operators of a space group given by name ("P 43 21 2", "P212121"), number, or gemmi.SpaceGroup."""
    gemmi = _gemmi()
    sg = space_group
    if not isinstance(sg, gemmi.SpaceGroup):
        try:
            sg = gemmi.SpaceGroup(int(sg)) if isinstance(sg, int) else gemmi.find_spacegroup_by_name(str(sg))
        except (ValueError, RuntimeError):
            sg = None
        if sg is None:
            raise SymmetryError(f"unknown space group {space_group!r}")
    ops = sg.operations()
    rot, tran = [], []
    den = float(gemmi.Op.DEN)
    for op in ops:  # every symmetry operator combined with every centring vector
        rot.append(np.array(op.rot, dtype=np.int64) // gemmi.Op.DEN)
        tran.append(np.array(op.tran, dtype=np.float64) / den)
    rot = np.stack(rot)
    tran = np.stack(tran) % 1.0
    unique = np.unique(rot.reshape(len(rot), 9), axis=0).reshape(-1, 3, 3)
    return SpaceGroupOps(name=sg.hm, rot=rot, tran=tran, unique_rot=unique, gemmi_ops=ops)


def indices_within(reciprocal_metric: np.ndarray, dmin_A: float) -> np.ndarray:
    """Every (h, k, l) other than (0, 0, 0) with d >= dmin, as an (N, 3) int64 array.

    ``reciprocal_metric`` is G* (3x3, 1/A^2): 1/d^2 = h G* h^T.
    """
    G = np.asarray(reciprocal_metric, dtype=np.float64)
    s2 = 1.0 / (dmin_A * dmin_A)
    # |h| <= sqrt(s2 * G^-1_ii): the extent of the ellipsoid h G* h^T <= s2 along each axis
    Ginv = np.linalg.inv(G)
    hmax = [int(math.floor(math.sqrt(s2 * Ginv[i, i]) + 1e-9)) for i in range(3)]
    n = math.prod(2 * m + 1 for m in hmax)
    if n > MAX_GRID_CELLS:
        raise SymmetryError(f"resolution {dmin_A:g} A needs {n} Miller indices, more than the limit {MAX_GRID_CELLS}")
    axes = [np.arange(-m, m + 1, dtype=np.int64) for m in hmax]
    H, K, L = np.meshgrid(*axes, indexing="ij")
    hkl = np.stack([H.ravel(), K.ravel(), L.ravel()], axis=1)
    hf = hkl.astype(np.float64)
    inv_d2 = np.einsum("ni,ij,nj->n", hf, G, hf)
    keep = (inv_d2 <= s2 * (1.0 + 1e-12)) & np.any(hkl != 0, axis=1)
    return hkl[keep]


def _keys(hkl: np.ndarray, offset: int, base: int) -> np.ndarray:
    h = hkl + offset
    return (h[..., 0] * base + h[..., 1]) * base + h[..., 2]


@dataclass(frozen=True)
class FriedelOrbits:
    """Each index of ``hkl`` (N, 3) mapped to a representative of its symmetry-and-Friedel orbit.

    ``unique`` (M, 3): one representative ``u`` per orbit; ``orbit`` (N,) the
    row of ``unique`` for each index; ``minus`` (N,) True where the index is
    equivalent to ``-u`` (the Friedel hand) rather than ``u`` (an index
    equivalent to both, a centric one, counts as ``+``).
    """

    hkl: np.ndarray
    unique: np.ndarray
    orbit: np.ndarray
    minus: np.ndarray


def friedel_orbits(hkl: np.ndarray, ops: SpaceGroupOps) -> FriedelOrbits:
    """Group indices into orbits under the rotations and Friedel's inversion.

    The representative is the equivalent with the largest (h, k, l) key; the
    hand is ``-`` when the representative is reached only through ``-h R``.
    """
    hkl = np.asarray(hkl, dtype=np.int64)
    # |h R| <= |h|_1 per component for the integer rotations of a lattice basis: a bound for the keys
    m = int(np.max(np.sum(np.abs(hkl), axis=1))) if hkl.size else 0
    m *= int(np.max(np.abs(ops.unique_rot)))
    base = 2 * m + 1
    best = np.empty(hkl.shape[0], dtype=np.int64)
    minus = np.empty(hkl.shape[0], dtype=bool)
    step = max(1, 2**22 // (3 * ops.unique_rot.shape[0]))     # about 100 MiB of equivalents at a time
    for i in range(0, hkl.shape[0], step):
        eq = np.einsum("ni,sij->nsj", hkl[i:i + step], ops.unique_rot)     # (n, U, 3): h R
        best_p, best_m = _keys(eq, m, base).max(axis=1), _keys(-eq, m, base).max(axis=1)
        minus[i:i + step] = best_m > best_p
        best[i:i + step] = np.where(minus[i:i + step], best_m, best_p)
    ukeys, first, orbit = np.unique(best, return_index=True, return_inverse=True)
    # the representative's own indices, decoded from its key
    h = ukeys // (base * base) - m
    k = (ukeys // base) % base - m
    l_ = ukeys % base - m
    unique = np.stack([h, k, l_], axis=1)
    del first
    return FriedelOrbits(hkl=hkl, unique=unique, orbit=orbit.reshape(-1), minus=minus)


def expand_to_p1(hkl: np.ndarray, F_plus: np.ndarray, ops: SpaceGroupOps, *, F_minus: np.ndarray | None = None,
                 default_F: float = 0.0, source: str = "<reflections>", max_cells: int = MAX_GRID_CELLS):
    """Amplitudes of unique reflections spread over every equivalent index of P1.

    ``F_plus[i]`` is ``|F(h_i)|``; it goes to every ``h_i R``.  ``F_minus[i]``,
    when given, is ``|F(-h_i)|`` and goes to every ``-h_i R`` (anomalous data:
    Friedel mates kept apart); without it ``F_plus`` goes there too (Friedel's
    law).  NaN values are skipped; where one hand of a pair is missing the
    other stands in for it.  Precedence where two inputs land on one
    index: an amplitude listed for that hand (``h R`` of a listed ``h``, or
    ``-h R`` with ``F_minus``) beats a Friedel copy; among equals the later row
    wins, as in an HKL file.  Returns ``(F, lower)``: a dense float64 box
    holding ``default_F`` where nothing landed, and its lowest index.
    """
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    F_plus = np.asarray(F_plus, dtype=np.float64).reshape(-1)
    rows = np.arange(hkl.shape[0])
    eq = np.einsum("ni,sij->nsj", hkl, ops.unique_rot)           # (N, U, 3)
    U = eq.shape[1]
    parts = []   # (indices, values, priority, row order)
    parts.append((-eq, np.repeat(F_plus, U), 0))          # Friedel copies of the listed hand
    if F_minus is not None:
        F_minus = np.asarray(F_minus, dtype=np.float64).reshape(-1)
        parts.append((eq, np.repeat(F_minus, U), 0))      # where F(+) is missing, F(-) stands in
        parts.append((-eq, np.repeat(F_minus, U), 1))
    parts.append((eq, np.repeat(F_plus, U), 2))
    idx = np.concatenate([p[0].reshape(-1, 3) for p in parts])
    val = np.concatenate([p[1] for p in parts])
    pri = np.concatenate([np.full(p[1].shape, p[2]) for p in parts])
    order = np.concatenate([np.repeat(rows, U) for _ in parts])
    ok = ~np.isnan(val)
    idx, val, pri, order = idx[ok], val[ok], pri[ok], order[ok]
    if idx.shape[0] == 0:
        raise SymmetryError(f"{source}: no reflections with a value")
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    shape = tuple(int(n) for n in hi - lo + 1)
    if math.prod(shape) > max_cells:
        raise SymmetryError(f"{source}: index ranges {lo.tolist()}..{hi.tolist()} need a grid of "
                            f"{math.prod(shape)} cells, more than the limit {max_cells}")
    rel = idx - lo
    flat = (rel[:, 0] * shape[1] + rel[:, 1]) * shape[2] + rel[:, 2]
    # the winner per cell: highest priority, then the latest row (stable sort, last occurrence kept)
    sort = np.lexsort((order, pri, flat))
    flat_s = flat[sort]
    last = np.ones(flat_s.shape[0], dtype=bool)
    last[:-1] = flat_s[1:] != flat_s[:-1]
    F = np.full(math.prod(shape), float(default_F), dtype=np.float64)
    F[flat_s[last]] = val[sort][last]
    return F.reshape(shape), tuple(int(x) for x in lo)
