"""The per-path intensity |F_cell(h) F_latt(h)|^2 from fractional Miller indices.

F_latt is the lattice shape transform of the crystal (``physics.lattice``),
F_cell the structure factor (``physics.structure_factors``): the default
amplitude, the nearest grid value, or the tricubic interpolation where its
4x4x4 neighbourhood lies inside the grid.
"""

from __future__ import annotations

from .. import numerics
from ..physics import lattice, smooth
from ..physics.structure_factors import interpolation_inside, nearest, tricubic
from .inputs import KernelInputs
from .miller import miller


def lattice_factor(k: KernelInputs, hkl, hkl0):
    """F_latt for h, k, l and their nearest integers (sequences of three arrays of one shape)."""
    xp = k.ctx.xp
    setup = k.setup
    shape, N = setup.shape, k.N
    if shape == "square":
        return lattice.square(xp, hkl, hkl0, N, k.cos_pi)
    h = xp.stack(tuple(hkl), axis=-1)
    h0 = xp.stack(tuple(hkl0), axis=-1)
    if shape == "round":
        return lattice.round_(xp, h, h0, N, setup.fudge)
    rec = k.ctx.asarray(setup.cell.reciprocal_per_A)
    r2 = lattice.reciprocal_distance_sqr(xp, h, h0, rec, N)
    if shape == "gauss":
        return lattice.gauss(xp, r2, N, setup.fudge)
    return lattice.tophat(xp, r2, N, setup.fudge)


def cell_amplitude(k: KernelInputs, hkl, hkl0):
    """F_cell for h, k, l and their nearest integers (arrays with xyz on the last axis)."""
    xp = k.ctx.xp
    F_default = k.default_F
    if k.setup.interpolate:
        inside = interpolation_inside(xp, k.grid, hkl)
        Fi = tricubic(xp, k.grid, hkl)
        Fn = nearest(xp, k.grid, hkl0, F_default)
        return xp.where(inside, Fi, Fn)
    return nearest(xp, k.grid, hkl0, F_default)


def _odd_grating(k: KernelInputs) -> bool:
    """Whether the square transform may use :func:`lattice.grating_odd_product`.

    For odd N the grating function U_(N-1)(cos pi h) is even in the cosine,
    so the sign (-1)^h0 drops out and no nearest index h0 is needed; with no
    structure-factor grid nothing else needs h0 either.
    """
    return k.setup.shape == "square" and k.grid is None and lattice.odd_counts(k.N)


def smooth_terms(k: KernelInputs, hkl3):
    """|F_cell F_latt|^2 and F_latt of the refinement-grade smooth model (``physics.smooth``)."""
    xp = k.ctx.xp
    setup = k.setup
    hkl0 = tuple(lattice.nearest_index(xp, x) for x in hkl3)
    if setup.shape == "square":
        Fl = lattice.square(xp, hkl3, hkl0, k.N, k.cos_pi)
        S2 = Fl * Fl
    else:
        rec = k.ctx.asarray(setup.cell.reciprocal_per_A)
        S2 = smooth.shape_sqr_sum(xp, setup.shape, xp.stack(hkl3, axis=-1), xp.stack(hkl0, axis=-1), k.N,
                                  setup.fudge, rec, k.ctx.asarray)
        Fl = xp.sqrt(S2)
    if k.grid is None:
        F = k.default_F
        return S2 * (F * F), Fl
    return S2 * smooth.amplitude_sqr_blend(xp, k.grid, xp.stack(hkl3, axis=-1), k.default_F, k.ctx.asarray), Fl


def _squared_grating(k: KernelInputs) -> bool:
    """Whether |F_latt|^2 may come from :func:`lattice.grating_sqr_product` (square, integer N <= 12)."""
    return k.setup.shape == "square" and lattice.integral_counts(k.N)


def intensity_sqr(k: KernelInputs, hkl3):
    """|F_cell F_latt|^2 alone from h, k, l (three arrays of one shape): what the image sums.

    Where the grating functions are Chebyshev polynomials (a square crystal
    with integer N <= 12), their squares are formed without the signed
    amplitude (fewer operations per path); otherwise as
    :func:`intensity_terms`.
    """
    if k.setup.smooth or not _squared_grating(k):
        return intensity_terms(k, hkl3)[0]
    xp = k.ctx.xp
    direct = k.ctx.dtype_name == "float64" and not k.caps.slow_float64_trig
    horner = numerics.U_SQR_HORNER_MAX_N.get(k.ctx.dtype_name, 6)
    in_place = k.in_place
    if k.grid is None:
        F = k.default_F
        S2 = lattice.grating_sqr_product(xp, hkl3, k.N, direct=direct, cos_pi=k.cos_pi, horner_max_n=horner,
                                         in_place=in_place)
        if in_place and S2.shape == hkl3[0].shape:   # a fresh array of the full shape
            S2 *= F * F
            return S2
        return S2 * (F * F)
    hkl0 = tuple(lattice.nearest_index(xp, x) for x in hkl3)
    S2 = lattice.grating_sqr_product(xp, hkl3, k.N, hkl0=hkl0, direct=direct, cos_pi=k.cos_pi,
                                     horner_max_n=horner, in_place=in_place)
    amp = cell_amplitude(k, xp.stack(hkl3, axis=-1), xp.stack(hkl0, axis=-1))
    return (amp * amp) * S2


def intensity_terms(k: KernelInputs, hkl3):
    """|F_cell F_latt|^2 and F_latt from h, k, l (three arrays of one shape)."""
    xp = k.ctx.xp
    if k.setup.smooth:
        return smooth_terms(k, hkl3)
    if _odd_grating(k):
        direct = k.ctx.dtype_name == "float64" and not k.caps.slow_float64_trig
        Fl = lattice.grating_odd_product(xp, hkl3, k.N, direct=direct, cos_pi=k.cos_pi)
        F = k.default_F
        return (Fl * Fl) * (F * F), Fl
    hkl0 = tuple(lattice.nearest_index(xp, x) for x in hkl3)
    Fl = lattice_factor(k, hkl3, hkl0)
    if k.grid is None:
        F = k.default_F
        return (Fl * Fl) * (F * F), Fl
    amp = cell_amplitude(k, xp.stack(hkl3, axis=-1), xp.stack(hkl0, axis=-1)) * Fl
    return amp * amp, Fl


def terms_from_scattering(k: KernelInputs, scat, orient):
    """|F_cell F_latt|^2 and F_latt for every orientation and path (Q, ...) from scattering vectors."""
    return intensity_terms(k, miller(k, scat, orient))


__all__ = ["lattice_factor", "cell_amplitude", "intensity_terms", "intensity_sqr", "terms_from_scattering"]
