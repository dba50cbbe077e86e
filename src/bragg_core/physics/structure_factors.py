"""Structure-factor amplitudes F_cell from a grid of (h, k, l) values.

The grid is stored flat, in C order over (h, k, l) starting at
(h_min, k_min, l_min); gathers use ``take`` on the flat array with flat
indices (portable to every backend), and indices outside the grid are clipped
before the gather and masked after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._backend import is_scalar, take_rows


@dataclass(frozen=True)
class FGrid:
    """A structure-factor grid on the compute device."""

    flat: Any          # (nh * nk * nl,) amplitudes
    shape: tuple       # (nh, nk, nl)
    lower: tuple       # (h_min, k_min, l_min)

    @property
    def upper(self):
        return tuple(lo + n - 1 for lo, n in zip(self.lower, self.shape))


def _flat_index(xp, grid, ih, ik, il):
    nh, nk, nl = grid.shape
    return (ih * nk + ik) * nl + il


def _offsets(xp, grid, idx, axis, dtype):
    """Grid offsets along one axis, clipped into the grid, and an in-grid mask."""
    lo = grid.lower[axis]
    n = grid.shape[axis]
    off = idx - lo
    inside = (off >= 0) & (off <= n - 1)
    off = xp.clip(off, 0, n - 1)
    return xp.astype(off, xp.int64), inside


def _filled(xp, like, value):
    """An array shaped like ``like`` holding ``value`` (a number, or a 0-d array that may carry gradients)."""
    if is_scalar(value):
        return xp.full_like(like, value)
    return xp.zeros_like(like) + value


def nearest(xp, grid, hkl0, default_F):
    """F at the nearest reflection (hkl0 integer-valued floats); default_F outside the grid."""
    if grid is None:
        return _filled(xp, hkl0[..., 0], default_F)
    oh, ih = _offsets(xp, grid, hkl0[..., 0], 0, None)
    ok, ik = _offsets(xp, grid, hkl0[..., 1], 1, None)
    ol, il = _offsets(xp, grid, hkl0[..., 2], 2, None)
    flat_idx = _flat_index(xp, grid, oh, ok, ol)
    shape = flat_idx.shape
    vals = xp.reshape(take_rows(xp, grid.flat, xp.reshape(flat_idx, (-1,))), shape)
    inside = ih & ik & il
    return xp.where(inside, vals, _filled(xp, vals, default_F))


def _lagrange_weights(xp, t):
    """Cubic Lagrange weights for nodes -1, 0, 1, 2 evaluated at t (last axis: 4 weights)."""
    tp1, tm1, tm2 = t + 1.0, t - 1.0, t - 2.0
    return xp.stack(
        [-t * tm1 * tm2 / 6.0, tp1 * tm1 * tm2 / 2.0, -tp1 * t * tm2 / 2.0, tp1 * t * tm1 / 6.0],
        axis=-1,
    )


def interpolation_inside(xp, grid, hkl):
    """True where the 4x4x4 neighbourhood of hkl lies inside the grid (the reference's test)."""
    ok = None
    for ax in range(3):
        lo, n = grid.lower[ax], grid.shape[ax]
        x = hkl[..., ax]
        inside = ~(((x - lo + 3) > n) | (x - 2 < lo))
        ok = inside if ok is None else ok & inside
    return ok


def tricubic(xp, grid, hkl):
    """Tricubic (tensor-product cubic Lagrange) interpolation of F on the 4x4x4 neighbours.

    Neighbours are floor(x) - 1 ... floor(x) + 2 along each axis.  Callers use
    :func:`interpolation_inside` to decide where the result is valid.
    """
    base = xp.floor(hkl)
    t = hkl - base
    w = [_lagrange_weights(xp, t[..., ax]) for ax in range(3)]  # each (..., 4)
    idx = []
    for ax in range(3):
        lo, n = grid.lower[ax], grid.shape[ax]
        steps = xp.asarray([-1.0, 0.0, 1.0, 2.0], dtype=hkl.dtype, device=_device(hkl))
        o = base[..., ax][..., None] + steps - lo
        idx.append(xp.astype(xp.clip(o, 0, n - 1), xp.int64))
    nh, nk, nl = grid.shape
    flat = (idx[0][..., :, None, None] * nk + idx[1][..., None, :, None]) * nl + idx[2][..., None, None, :]
    shape = flat.shape
    vals = xp.reshape(take_rows(xp, grid.flat, xp.reshape(flat, (-1,))), shape)
    vals = xp.sum(vals * w[2][..., None, None, :], axis=-1)
    vals = xp.sum(vals * w[1][..., None, :], axis=-1)
    return xp.sum(vals * w[0], axis=-1)


def _device(x):
    from .._backend import device_of

    return device_of(x)
