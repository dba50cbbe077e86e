"""The resolution cut: paths whose scattering vector reaches beyond d_min contribute nothing."""

from __future__ import annotations

from .._types import Array


def within_resolution(scattering_per_m, dmin_m: float) -> Array:
    """True where a path is kept by the cut at ``dmin_m`` (m), for scattering-vector components (1/m).

    With sin(theta)/lambda = |s| / 2, a path is cut when d_min > 1 / (2 stol),
    i.e. when 4 d_min^2 stol^2 > 1 (the reference's test, which keeps every
    path when stol is 0).  ``scattering_per_m`` is a sequence of the three
    components (arrays that broadcast together).
    """
    sx, sy, sz = scattering_per_m
    stol2 = 0.25 * (sx * sx + sy * sy + sz * sz)
    return ~(4.0 * dmin_m ** 2 * stol2 > 1.0)


__all__ = ["within_resolution"]
