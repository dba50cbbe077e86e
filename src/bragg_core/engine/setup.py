"""Resolve an :class:`~bragg_core.experiment.Experiment` into arrays the kernel sums over.

Everything that does not depend on the pixel is computed once here: detector
frame, sources, the cell vectors of every (phi step, mosaic domain), cell
counts, sampling counts and scale factors.  Geometry is evaluated in float64
(when the backend has it) and cast to the working dtype by the kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import Context, backend_name, to_numpy
from ..experiment import Experiment
from ..geometry.crystal import CellGeometry, cell_geometry, orientations
from ..geometry.detector import DetectorGeometry, detector_geometry
from ..geometry.sampling import Steps, mosaic_domains, phi_steps, recommended_oversample, thickness_steps
from ..geometry.sources import Sources, beam_sources
from ..physics.background import water_intensity
from ..physics.structure_factors import FGrid
from ..rng import ShuffledLehmer, mosaic_rotations
from ..units import R_E_SQR_M2

_DEG = math.pi / 180.0


@dataclass
class Setup:
    ctx: Context              # working context (dtype of the image)
    gctx: Context             # geometry context (float64 where available)
    detector: DetectorGeometry
    cell: CellGeometry
    sources: Sources
    N: tuple                  # (Na, Nb, Nc): numbers or arrays
    N_host: tuple             # the same as Python floats (for reporting and choices)
    oversample: int
    oversample_auto: int
    interpolate: bool
    phi: Steps
    phi0_rad: Any
    mosaic_spread_rad: float
    n_mosaic: int
    orientations_m: Any       # (n_phi * n_mos, 3, 3) real-space cells in metres
    thick: Steps
    mu_per_m: Any
    grid: FGrid | None
    default_F: Any
    shape: str
    fudge: Any
    dmin_m: Any
    fluence: Any
    I_bg: Any
    kahn: Any
    polarization_correction: bool
    curved: bool
    point_pixel: bool
    oversample_omega: bool
    oversample_polar: bool
    oversample_thick: bool
    roi: tuple                # inclusive (xmin, xmax, ymin, ymax)
    mask: Any
    warnings: list = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Normalisation count: sources x domains x phi steps x sub-pixels (not layers)."""
        return int(self.sources.incident.shape[0]) * self.n_mosaic * self.phi.count * self.oversample ** 2

    @property
    def n_sources(self) -> int:
        return int(self.sources.incident.shape[0])


def geometry_context(ctx: Context) -> Context:
    """float64 on the same backend and device, unless that backend cannot (JAX without x64)."""
    xp = ctx.xp
    if backend_name(xp) == "jax":
        import jax

        if not jax.config.read("jax_enable_x64"):
            return ctx
    return Context(xp=xp, device=ctx.device, dtype=xp.float64)


def _host(v):
    if v is None:
        return None
    try:
        return float(v)
    except TypeError:
        return float(to_numpy(v))


def build_setup(exp: Experiment, ctx: Context) -> Setup:
    g = geometry_context(ctx)
    xp = g.xp
    beam, det, cr = exp.beam, exp.detector, exp.crystal
    warnings: list[str] = []

    dg = detector_geometry(det, g)
    stream = ShuffledLehmer()  # one shuffle table per run, shared like the reference's
    cell = cell_geometry(cr, beam.wavelength_A, g, stream)

    # cell counts, from explicit counts or from the crystal size (clipped by the beam)
    N_in = tuple(cr.N_cells)
    if cr.size_mm is not None:
        size_m = [_host(s) * 1e-3 for s in cr.size_mm]
        bs = _host(beam.beam_size_mm) * 1e-3
        if bs >= 0:
            for i in (1, 2):
                if bs < size_m[i]:
                    warnings.append(f"clipping sample ({size_m[i]:g} m) with beam ({bs:g} m)")
                    size_m[i] = bs
        lengths = to_numpy(xp.sqrt(xp.sum(cell.real_m * cell.real_m, axis=-1)))
        N = []
        for i in range(3):
            n = float(math.ceil(size_m[i] / lengths[i])) if size_m[i] > 0 else _host(N_in[i])
            N.append(n)
        N = tuple(max(n, 1.0) for n in N)
        N_host = N
    else:
        N_host = tuple(max(_host(n), 1.0) for n in N_in)
        N = tuple(n if hasattr(n, "shape") and not isinstance(n, (int, float)) else max(float(n), 1.0)
                  for n in N_in)

    # sampling counts
    phi = phi_steps(_opt_rad(cr.osc_deg), _opt_rad(cr.phi_step_deg), cr.phi_steps)
    spread, n_mos, w = mosaic_domains(_opt_rad(cr.mosaic_spread_deg), cr.mosaic_domains)
    warnings += w
    umats = mosaic_rotations(spread, n_mos, -int(cr.mosaic_seed), stream)
    if not spread > 0:
        umats = np.broadcast_to(np.eye(3), (n_mos, 3, 3)).copy()
    phi0 = g.asarray(cr.phi_start_deg) * _DEG
    phis = phi0 + g.asarray(np.arange(phi.count, dtype=np.float64)) * phi.step
    orient = orientations(xp, cell.real_m, dg.spindle, phis, g.asarray(umats))

    thick_m = _host(det.thickness_um) * 1e-6
    depth = det.attenuation_depth_um
    if depth is not None and (math.isinf(_host(depth)) or _host(depth) == 0.0):
        thick_m, mu = 0.0, 0.0
    elif depth is not None:
        mu = 1.0 / (g.asarray(depth) * 1e-6)
    else:
        mu = None
    thick = thickness_steps(thick_m, None, det.thickness_steps)
    if mu is None:
        mu = 1.0 / thick.range if thick.range > 0 else -1.0
        if thick.range > 0:
            warnings.append(f"no attenuation depth given: using mu = 1/thickness = {mu:g} per m")

    sources = beam_sources(beam, dg.beam, dg.polar, g)

    # oversampling: the reference's recommendation from the crystal size
    lengths = to_numpy(xp.sqrt(xp.sum(cell.real_m * cell.real_m, axis=-1)))
    xtal_max = max(lengths[i] * N_host[i] for i in range(3))
    auto = recommended_oversample(xtal_max, _host(beam.wavelength_A) * 1e-10, _host(dg.distance_m),
                                  _host(dg.pixel_size_m))
    oversample = det.oversample if det.oversample and det.oversample > 0 else auto
    if oversample < auto:
        warnings.append(f"oversample {oversample} is below the recommended {auto}")

    # structure factors
    grid = None
    sf = cr.structure_factors
    if sf is not None:
        F = np.asarray(sf.F, dtype=np.float64)
        grid = FGrid(flat=g.asarray(F.reshape(-1)), shape=tuple(F.shape),
                     lower=(int(sf.h_min), int(sf.k_min), int(sf.l_min)))
    if cr.interpolate is None:
        interpolate = any(_host(n) <= 2 for n in N_in)
    else:
        interpolate = bool(cr.interpolate)
    if grid is None:
        interpolate = False

    fluence = g.asarray(beam.fluence_photons_per_m2)
    I_bg = water_intensity(g.asarray(beam.water_size_um) * 1e-6, fluence)

    roi = det.roi or (0, det.fpixels, 0, det.spixels)
    return Setup(
        ctx=ctx, gctx=g, detector=dg, cell=cell, sources=sources, N=N, N_host=N_host,
        oversample=int(oversample), oversample_auto=auto, interpolate=interpolate,
        phi=phi, phi0_rad=phi0, mosaic_spread_rad=spread, n_mosaic=n_mos, orientations_m=orient,
        thick=thick, mu_per_m=mu, grid=grid, default_F=cr.default_F, shape=cr.shape, fudge=cr.fudge,
        dmin_m=_host(cr.dmin_A) * 1e-10, fluence=fluence, I_bg=I_bg, kahn=beam.kahn_factor,
        polarization_correction=beam.polarization_correction, curved=det.curved,
        point_pixel=det.point_pixel, oversample_omega=det.oversample_omega,
        oversample_polar=det.oversample_polar, oversample_thick=det.oversample_thick,
        roi=tuple(roi), mask=det.mask, warnings=warnings,
    )


def _opt_rad(v):
    return None if v is None else _host(v) * _DEG


__all__ = ["Setup", "build_setup", "geometry_context", "R_E_SQR_M2"]
