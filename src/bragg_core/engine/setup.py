"""Resolve an :class:`~bragg_core.experiment.Experiment` into arrays the kernel sums over.

Everything that does not depend on the pixel is computed once here: detector
frame, sources, the cell vectors of every (phi step, mosaic domain), cell
counts, sampling counts and scale factors.  Geometry is evaluated in float64
(when the backend has it) and cast to the working dtype by the kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from .. import units
from .._backend import (
    Context,
    carries_gradient,
    geometry_context,
    host_only,
    host_scalar,
    is_host_array,
    is_scalar,
    to_numpy,
)
from ..experiment import Experiment, ExperimentError
from ..geometry.crystal import CellGeometry, cell_geometry, orientations
from ..geometry.detector import DetectorGeometry, detector_geometry
from ..geometry.mosaic import mosaic_matrices
from ..geometry.sampling import Steps, mosaic_domains, phi_steps, recommended_oversample, thickness_steps
from ..geometry.sources import Sources, beam_sources
from ..physics.background import water_intensity
from ..physics.structure_factors import FGrid
from ..rng import ShuffledLehmer


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
    oversample_auto: Any      # int, or None when traced values leave it unknown
    interpolate: bool
    phi: Steps
    phi0_rad: Any
    mosaic_spread_rad: Any    # host copy (float), None when traced
    n_mosaic: int
    orientations_m: Any       # (n_phi * n_mos, 3, 3) real-space cells in metres
    thick: Steps              # count and range are host copies (a traced thickness counts as positive);
                              # step is a number, or an array of the thickness (differentiable)
    mu_per_m: Any
    grid: FGrid | None
    default_F: Any
    shape: str
    fudge: Any
    dmin_m: Any
    fluence: Any
    I_bg: Any
    water_on: bool            # host decision: is there a water background at all
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
    sensor_present: Any = None  # a 0-d boolean array (thickness > 0) when the thickness is an array, else None
    smooth: bool = False        # the refinement-grade smooth model (Crystal.smooth)
    autograd: bool = False      # some input carries gradients (or is traced): tiles must keep the graph
    source: Any = None          # the Experiment this setup was built from
    mosaic_rotations: Any = None  # (n_mosaic, 3, 3) domain rotations, geometry dtype

    @property
    def steps(self) -> int:
        """Normalisation count: sources x domains x phi steps x sub-pixels (not layers)."""
        return int(self.sources.incident.shape[0]) * self.n_mosaic * self.phi.count * self.oversample ** 2

    @property
    def n_sources(self) -> int:
        return int(self.sources.incident.shape[0])

    @property
    def running_sum(self) -> bool:
        """Whether the reference's running-sum semantics apply (any ``-oversample_*`` flag)."""
        return self.oversample_omega or self.oversample_polar or self.oversample_thick

    @property
    def paths_per_pixel(self) -> int:
        """Sub-pixel paths summed per pixel: layers x sub-pixels x sources x orientations."""
        return self.thick.count * self.oversample ** 2 * self.n_sources * int(self.orientations_m.shape[0])


def _plain(v) -> bool:
    """A host value (Python/NumPy number or NumPy array): it carries no gradient."""
    return is_scalar(v) or is_host_array(v)


def _host(v, what: str):
    """Host copy of a parameter used only on the host; one that carries gradients is refused."""
    try:
        return host_only(v, what)
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None


def _choice(v, unknown: float):
    """Host copy of ``v`` for a discrete choice; ``unknown`` stands in for a traced value."""
    if v is None:
        return None
    h = host_scalar(v)
    return unknown if h is None else h


def _host_lengths(real_m):
    """Cell-vector lengths (m) on the host, or None when the cell is traced."""
    try:
        real = np.asarray(to_numpy(real_m), dtype=np.float64)
    except (TypeError, RuntimeError):  # a JAX tracer, a torch.func tensor: no host copy
        return None
    return np.sqrt(np.sum(real * real, axis=-1))


def _cell_counts(cr, beam, cell, warnings):
    """(N, N_host): N keeps array counts (differentiable); N_host holds host copies (NaN when traced)."""
    N_in = tuple(cr.N_cells)
    if cr.size_mm is not None:
        # a count from a size is an integer (ceil): a discrete choice made on the host
        size_m = [units.mm_to_m(_host(s, "Crystal.size_mm")) for s in cr.size_mm]
        bs = units.mm_to_m(_host(beam.beam_size_mm, "Beam.beam_size_mm"))
        if bs >= 0:
            for i in (1, 2):
                if bs < size_m[i]:
                    warnings.append(f"clipping sample ({size_m[i]:g} m) with beam ({bs:g} m)")
                    size_m[i] = bs
        lengths = _host_lengths(cell.real_m)
        if lengths is None:
            raise ExperimentError("Crystal.size_mm needs concrete cell lengths (the cell is traced)")
        N = []
        for i in range(3):
            n = float(math.ceil(size_m[i] / lengths[i])) if size_m[i] > 0 else _host(N_in[i], "Crystal.N_cells")
            N.append(n)
        N = tuple(max(n, 1.0) for n in N)
        return N, N
    N_host = tuple(max(h, 1.0) if h is not None else math.nan for h in (host_scalar(n) for n in N_in))
    # plain counts are clamped to at least one cell; array counts are used as given
    N = tuple(max(float(n), 1.0) if _plain(n) else n for n in N_in)
    return N, N_host


def input_arrays(exp: Experiment) -> list:
    """The arrays of a backend (not NumPy) among an experiment's fields: they decide the context and may carry
    gradients.  The mask never does; structure factors count by their amplitudes."""
    out = []
    for part in (exp.beam, exp.detector, exp.crystal):
        for f in fields(part):
            val = getattr(part, f.name)
            if f.name == "mask":
                continue
            if f.name == "structure_factors":
                val = getattr(val, "F", None)
            if hasattr(val, "shape") and not is_host_array(val):
                out.append(val)
            elif isinstance(val, (tuple, list)):
                out.extend(x for x in val if hasattr(x, "shape") and not is_host_array(x))
    return out


def roi_bounds(setup: Setup) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1): the region of interest clipped to the detector, inclusive (empty if x1 < x0 or
    y1 < y0)."""
    fp, sp = setup.detector.fpixels, setup.detector.spixels
    xmin, xmax, ymin, ymax = setup.roi
    return max(xmin, 0), min(xmax, fp - 1), max(ymin, 0), min(ymax, sp - 1)


def build_setup(exp: Experiment, ctx: Context) -> Setup:
    g = geometry_context(ctx)
    xp = g.xp
    beam, det, cr = exp.beam, exp.detector, exp.crystal
    warnings: list[str] = []

    dg = detector_geometry(det, g)
    stream = ShuffledLehmer()  # one shuffle table per run, shared like the reference's
    cell = cell_geometry(cr, beam.wavelength_A, g, stream)

    # cell counts, from explicit counts or from the crystal size (clipped by the beam)
    N, N_host = _cell_counts(cr, beam, cell, warnings)

    # sampling counts
    phi = phi_steps(_opt_rad(cr.osc_deg, "Crystal.osc_deg"), _opt_rad(cr.phi_step_deg, "Crystal.phi_step_deg"),
                    cr.phi_steps)
    spread_in = cr.mosaic_spread_deg
    spread_h = _choice(spread_in, 1.0)  # a traced spread is taken as positive
    if spread_h == 0.0 and carries_gradient(spread_in):
        spread_h = 1.0  # so is one that carries gradients at 0: its derivative there is the one-sided one
    spread_host, n_mos, w = mosaic_domains(None if spread_h is None else units.deg_to_rad(spread_h), cr.mosaic_domains)
    warnings += w
    spread = spread_host
    if spread_host > 0 and not _plain(spread_in):
        spread = units.deg_to_rad(g.asarray(spread_in))  # the array itself: the angles are differentiable in it
    umats = mosaic_matrices(g, spread, n_mos, -int(cr.mosaic_seed), stream)
    phi0 = units.deg_to_rad(g.asarray(cr.phi_start_deg))
    phis = phi0 + g.asarray(np.arange(phi.count, dtype=np.float64)) * phi.step
    orient = orientations(xp, cell.real_m, dg.spindle, phis, umats)

    # sensor layers: counts on the host, the layer step and mu as arrays of the thickness/depth
    thick_in, depth = det.thickness_um, det.attenuation_depth_um
    thick_h = _choice(thick_in, 1.0)  # a traced thickness is taken as positive
    if thick_h == 0.0 and carries_gradient(thick_in):
        thick_h = 1.0  # so is one that carries gradients at 0 (see sensor_present)
    depth_h = _choice(depth, 1.0)
    no_absorption = depth is not None and (math.isinf(depth_h) or depth_h == 0.0)
    thick = thickness_steps(0.0 if no_absorption else units.um_to_m(thick_h), None, det.thickness_steps)
    sensor_present = None
    thick_safe = None
    if thick.range > 0 and not _plain(thick_in):
        # the layer step as an array of the thickness: gradients reach thickness_um.  A thickness
        # of 0 is an ordinary point: the layers then coincide, mu takes a stand-in (no 0 * inf) and
        # the kernel replaces the capture fraction by 1, as for a plain thickness of 0 (sensor_present)
        t_arr = g.asarray(thick_in)
        sensor_present = t_arr > 0
        thick_safe = xp.where(sensor_present, t_arr, xp.ones_like(t_arr))
        thick = replace(thick, step=units.um_to_m(t_arr) * (thick.step / thick.range))
    if no_absorption:
        mu = 0.0
    elif depth is not None:
        mu = units.attenuation_depth_um_to_mu_per_m(g.asarray(depth))
    elif thick.range > 0:
        mu = 1.0 / thick.range if thick_safe is None else units.attenuation_depth_um_to_mu_per_m(thick_safe)
        mu_h = units.attenuation_depth_um_to_mu_per_m(thick_h)
        warnings.append(f"no attenuation depth given: using mu = 1/thickness = {mu_h:g} per m")
    else:
        mu = -1.0

    sources = beam_sources(beam, dg.beam, dg.polar, g)

    # oversampling: the reference's recommendation from the crystal size (host copies)
    auto = None
    lengths = _host_lengths(cell.real_m)
    lam_h, dist_h = host_scalar(beam.wavelength_A), host_scalar(dg.distance_m)
    px_h = host_scalar(dg.pixel_size_m)
    concrete = lengths is not None and None not in (lam_h, dist_h, px_h) and not any(map(math.isnan, N_host))
    if concrete:
        xtal_max = max(lengths[i] * N_host[i] for i in range(3))
        auto = recommended_oversample(xtal_max, units.angstrom_to_m(lam_h), dist_h, px_h)
    if det.oversample and det.oversample > 0:
        oversample = det.oversample
    elif auto is None and concrete:
        raise ExperimentError("the detector plane passes through the sample (the distance along the beam is 0: "
                              "the beam runs along the detector, see the beam vector and the detector "
                              "rotations), so the oversampling cannot be chosen from the crystal size; give "
                              "Detector.oversample (-oversample)")
    elif auto is None:
        raise ExperimentError("Detector.oversample must be given when the crystal or detector geometry is "
                              "traced (the automatic choice needs concrete values)")
    else:
        oversample = auto
    if auto is not None and oversample < auto:
        warnings.append(f"oversample {oversample} is below the recommended {auto}")

    # structure factors: a grid whose F is an array of the backend stays one (differentiable)
    grid = None
    sf = cr.structure_factors
    if sf is not None:
        F = sf.F
        flat = (g.asarray(np.asarray(F, dtype=np.float64).reshape(-1)) if _plain(F)
                else xp.reshape(g.asarray(F), (-1,)))
        grid = FGrid(flat=flat, shape=tuple(int(n) for n in F.shape),
                     lower=(int(sf.h_min), int(sf.k_min), int(sf.l_min)))
    if grid is None:
        interpolate = False
    elif cr.interpolate is None:
        N_in = [host_scalar(n) for n in cr.N_cells]
        if None in N_in:
            raise ExperimentError("Crystal.interpolate must be given when Crystal.N_cells is traced")
        interpolate = any(n <= 2 for n in N_in)
    else:
        interpolate = bool(cr.interpolate)

    fluence = g.asarray(beam.fluence_photons_per_m2)
    I_bg = water_intensity(units.um_to_m(g.asarray(beam.water_size_um)), fluence)
    water_on = _choice(beam.water_size_um, 1.0) > 0 and _choice(beam.fluence_photons_per_m2, 1.0) > 0

    roi = det.roi or (0, det.fpixels, 0, det.spixels)
    return Setup(
        ctx=ctx, gctx=g, detector=dg, cell=cell, sources=sources, N=N, N_host=N_host,
        oversample=int(oversample), oversample_auto=auto, interpolate=interpolate,
        phi=phi, phi0_rad=phi0, mosaic_spread_rad=_reported_spread(spread_in, spread_host),
        n_mosaic=n_mos, orientations_m=orient,
        thick=thick, mu_per_m=mu, grid=grid,
        default_F=cr.default_F if _plain(cr.default_F) else ctx.asarray(cr.default_F),
        shape=cr.shape, fudge=cr.fudge if _plain(cr.fudge) else ctx.asarray(cr.fudge),
        dmin_m=units.angstrom_to_m(_host(cr.dmin_A, "Crystal.dmin_A")), fluence=fluence, I_bg=I_bg, water_on=water_on,
        kahn=beam.kahn_factor,
        polarization_correction=beam.polarization_correction, curved=det.curved,
        point_pixel=det.point_pixel, oversample_omega=det.oversample_omega,
        oversample_polar=det.oversample_polar, oversample_thick=det.oversample_thick,
        roi=tuple(roi), mask=det.mask, warnings=warnings, sensor_present=sensor_present, smooth=cr.smooth,
        autograd=any(carries_gradient(a) for a in input_arrays(exp)), source=exp, mosaic_rotations=umats,
    )


def _same_but_phi_start(a: Experiment, b: Experiment) -> bool:
    """``b`` is ``a`` with another ``Crystal.phi_start_deg`` only: every other field the very same object
    (as :func:`bragg_core.series.series_experiments` makes them; identity, so arrays are never compared)."""
    if a is None or a.beam is not b.beam or a.detector is not b.detector:
        return False
    return all(getattr(a.crystal, f.name) is getattr(b.crystal, f.name)
               for f in fields(a.crystal) if f.name != "phi_start_deg")


def reuse_setup(previous: Setup, exp: Experiment, ctx: Context) -> Setup | None:
    """The setup of ``exp`` made from ``previous`` (an image of the same rotation series), or None.

    Only the phi start differs between the images of a series, so only the
    orientations are formed again; the detector frame, sources, cell, mosaic
    domains, sensor layers and structure factors are kept.  The result is
    the one :func:`build_setup` gives, bit for bit.  None when ``exp``
    differs from ``previous.source`` in anything else, or the context differs.
    """
    if previous.ctx != ctx or not _same_but_phi_start(previous.source, exp):
        return None
    g = previous.gctx
    phi0 = units.deg_to_rad(g.asarray(exp.crystal.phi_start_deg))
    phis = phi0 + g.asarray(np.arange(previous.phi.count, dtype=np.float64)) * previous.phi.step
    orient = orientations(g.xp, previous.cell.real_m, previous.detector.spindle, phis, previous.mosaic_rotations)
    return replace(previous, phi0_rad=phi0, orientations_m=orient, source=exp,
                   autograd=any(carries_gradient(a) for a in input_arrays(exp)))


def _reported_spread(spread_in, spread_host):
    """The mosaic spread (rad) as a host number for reports; None when it cannot be read (traced)."""
    if spread_in is None:
        return spread_host
    h = host_scalar(spread_in)
    if h is None:
        return None
    return 0.0 if h == 0.0 else spread_host


def _opt_rad(v, what):
    return None if v is None else units.deg_to_rad(_host(v, what))


__all__ = ["Setup", "build_setup", "input_arrays", "reuse_setup", "roi_bounds"]
