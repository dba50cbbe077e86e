"""Everything the tile kernel reads, built once per render as one frozen value.

:class:`Setup` describes the experiment in host decisions and geometry-dtype
arrays.  :func:`kernel_inputs` casts what the kernel needs to the working
dtype and arranges the detector frame for the tile geometry; the kernel and
the per-pixel trace read only the result, and nothing is attached to the
setup afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import Capabilities, Context, carries_gradient, is_scalar, to_numpy
from .._types import Array
from ..numerics import CosPi, cos_pi_function
from ..physics.polarization import polarization_frame
from ..physics.structure_factors import FGrid
from ..units import R_E_SQR_M2
from .setup import Setup


@dataclass(frozen=True)
class FlatFrame:
    """A flat detector in its own orthonormal frame, in the geometry dtype.

    A sub-pixel at slow offset y, fast offset x and layer offset z sits at
    y sdet + x fdet + z odet with y = y0 + slow, x = x0 + fast, z = z0 + layer
    (y0, x0, z0 the coordinates of pix0 in the frame).  Any projection v . pos
    is then a per-row part plus a per-column part (plus a per-layer part), and
    so is |pos|^2, the three axes being orthonormal: the kernel never forms
    the positions themselves.
    """

    sdet: Array
    fdet: Array
    odet: Array
    y0: Array
    x0: Array
    z0: Array
    pixel_m: Array
    layer_step_m: Any


@dataclass(frozen=True)
class TileFrame:
    """The detector and beam as the per-tile geometry reads them, cast once to the tile-geometry dtype.

    float64 runs keep float64; float32 runs evaluate the per-tile geometry in
    float32 as well (positions stay exact to ~1e-8 m, far below a sub-pixel,
    and the scattering vector to ~1e-7 relative), which keeps every step of a
    float32 image in single precision.  ``incident_g`` and ``polar_be_g`` are
    the same sources in the geometry dtype, for the projections of the flat
    path.
    """

    ctx: Context
    pix0: Array
    fdet: Array
    sdet: Array
    odet: Array
    beam: Array
    pixel_m: Array
    close_m: Array
    distance_m: Array
    layer_step_m: Any
    mu_per_m: Any
    incident_xyz: tuple
    wavelength_m: Array
    polar_frame_xyz: tuple
    kahn: Any
    incident_g: Array       # (K, 3) incident directions, geometry dtype
    polar_be_g: Array       # (K, 2, 3) polarization B and E axes, geometry dtype
    flat: FlatFrame | None  # when the detector is flat with an orthonormal frame


@dataclass(frozen=True)
class KernelInputs:
    """What :func:`~bragg_core.engine.kernel.render_tile` and the trace read.

    ``setup`` keeps the host decisions (counts, flags, shapes); every array
    here is already in the context it is used in: the working dtype for the
    lattice and structure-factor terms, the geometry dtype (``gctx``) for the
    scattering geometry.
    """

    setup: Setup
    ctx: Context               # working context: the image's namespace, device and dtype
    gctx: Context              # geometry context: float64 where the backend has it
    caps: Capabilities
    in_place: bool             # fresh temporaries may be updated in place (no autograd graph to keep)
    cos_pi: CosPi              # cos(pi d) for |d| <= 1/2, chosen from the capabilities
    orientations: Array        # (Q, 3, 3) real-space cells (m), working dtype
    orientations_g: Array      # the same in the geometry dtype (the Miller indices are formed in it)
    scale: Array               # r_e^2 fluence / steps, working dtype
    I_bg: Array                # water background per pixel before the scale, working dtype
    N: tuple                   # cell counts: numbers, or arrays in the working dtype
    default_F: Any
    grid: FGrid | None         # structure factors in the working dtype
    frame: TileFrame


_ORTHONORMAL_TOL = 1e-12


def flat_frame(setup: Setup) -> FlatFrame | None:
    """The :class:`FlatFrame` of a setup, or None (curved detector, a frame that is not orthonormal,
    frame vectors that carry gradients, or values that cannot be read on the host, such as JAX tracers)."""
    if setup.curved:
        return None
    dg = setup.detector
    if any(carries_gradient(v) for v in (dg.sdet, dg.fdet, dg.odet)):
        # the projections use identities of an orthonormal frame: exact in value, but a derivative
        # that moves the frame off the orthonormal set would be lost
        return None
    try:
        M = np.stack([np.asarray(to_numpy(v), dtype=np.float64).reshape(3) for v in (dg.sdet, dg.fdet, dg.odet)])
    except Exception:  # a traced value: no host copy
        return None
    if not np.all(np.isfinite(M)) or np.max(np.abs(M @ M.T - np.eye(3))) > _ORTHONORMAL_TOL:
        return None
    g = setup.gctx
    A = g.asarray
    s, f, o, p0 = A(dg.sdet), A(dg.fdet), A(dg.odet), A(dg.pix0_m)
    xp = g.xp
    step = setup.thick.step
    return FlatFrame(sdet=s, fdet=f, odet=o, y0=xp.sum(p0 * s), x0=xp.sum(p0 * f), z0=xp.sum(p0 * o),
                     pixel_m=A(dg.pixel_size_m), layer_step_m=step if is_scalar(step) else A(step))


def tile_frame(setup: Setup, ctx: Context) -> TileFrame:
    """The :class:`TileFrame` of a setup for working context ``ctx`` (float32 if it is, else geometry)."""
    t = ctx if ctx.dtype_name == "float32" else setup.gctx
    dg = setup.detector
    A = t.asarray
    keep = lambda v: v if is_scalar(v) else A(v)  # noqa: E731
    inc = A(setup.sources.incident)
    b_in, e_in = polarization_frame(t.xp, inc, A(dg.polar))
    xyz = lambda v: (v[:, 0], v[:, 1], v[:, 2])  # noqa: E731
    gx = setup.gctx
    inc_g, dg_polar = gx.asarray(setup.sources.incident), gx.asarray(dg.polar)
    return TileFrame(
        ctx=t, pix0=A(dg.pix0_m), fdet=A(dg.fdet), sdet=A(dg.sdet), odet=A(dg.odet), beam=A(dg.beam),
        pixel_m=A(dg.pixel_size_m), close_m=A(dg.close_distance_m), distance_m=A(dg.distance_m),
        layer_step_m=keep(setup.thick.step), mu_per_m=keep(setup.mu_per_m),
        incident_xyz=xyz(inc), wavelength_m=A(setup.sources.wavelength_m),
        polar_frame_xyz=(xyz(b_in), xyz(e_in)), kahn=keep(setup.kahn),
        incident_g=inc_g, polar_be_g=gx.xp.stack(polarization_frame(gx.xp, inc_g, dg_polar), axis=1),
        flat=flat_frame(setup),
    )


def kernel_inputs(setup: Setup, ctx: Context | None = None, untracked: bool = False) -> KernelInputs:
    """Cast the per-run arrays the kernel needs to the working dtype (``ctx``, default the setup's), once.

    ``untracked``: the tiles are copied to the host as they finish and no
    gradient passes through them, so temporaries may be updated in place on
    every backend that allows it (torch too), not only where the library has
    no autograd at all (:attr:`Capabilities.in_place`).
    """
    ctx = setup.ctx if ctx is None else ctx
    F = setup.default_F
    grid = None
    if setup.grid is not None:
        grid = FGrid(flat=ctx.asarray(setup.grid.flat), shape=setup.grid.shape, lower=setup.grid.lower)
    caps = ctx.caps
    return KernelInputs(
        setup=setup, ctx=ctx, gctx=setup.gctx, caps=caps,
        in_place=caps.in_place or (untracked and caps.in_place_untracked and not setup.autograd),
        cos_pi=cos_pi_function(caps.slow_float64_trig, ctx.dtype_name),
        orientations=ctx.asarray(setup.orientations_m),
        orientations_g=setup.gctx.asarray(setup.orientations_m),
        scale=ctx.asarray(R_E_SQR_M2 * setup.fluence / setup.steps),
        I_bg=ctx.asarray(setup.I_bg),
        N=tuple(n if is_scalar(n) else ctx.asarray(n) for n in setup.N),
        default_F=F if is_scalar(F) else ctx.asarray(F),
        grid=grid,
        frame=tile_frame(setup, ctx),
    )


__all__ = ["FlatFrame", "TileFrame", "KernelInputs", "flat_frame", "tile_frame", "kernel_inputs"]
