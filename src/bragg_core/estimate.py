"""What a run will cost, known before any of it is spent.

:func:`estimate_run` counts, from an :class:`~bragg_core.experiment.Experiment`
alone (host arithmetic on a few numbers, no arrays built), the rendered
pixels, the sub-pixel paths per pixel (sources x mosaic domains x phi steps x
oversample^2 x sensor layers), the structure-factor grid, the memory the run
holds at its peak and the bytes of its output files.  :func:`check_run` stops
a run that cannot fit or finish, with a sentence naming the cause and the way
to go ahead anyway (``force=True``; ``-force`` on the command line).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass

from .experiment import Experiment
from .geometry.sampling import mosaic_domains, phi_steps, range_steps, recommended_oversample, thickness_steps

__all__ = ["RunEstimate", "RunTooLarge", "estimate_run", "check_run", "available_memory_bytes",
           "MAX_WORK_PATHS", "MAX_GRID_CELLS", "PATHS_PER_SECOND", "output_bytes", "format_bytes", "format_duration",
           "max_work_paths"]

#: Sub-pixel path evaluations beyond which a run is refused without force (~ a day on a few cores).
MAX_WORK_PATHS = 2 * 10**12
#: Structure-factor grid cells read without force (64 MiB of float64: indices -101..101 on all three axes).
MAX_GRID_CELLS = 2**23
#: A rough single-core rate, for the time quoted in messages (measured order of magnitude).
PATHS_PER_SECOND = 2e7

_DEG = math.pi / 180.0


class RunTooLarge(ValueError):
    """A run that would not fit in memory, on disk, or finish in reasonable time."""


@dataclass(frozen=True)
class RunEstimate:
    pixels: int              # rendered pixels (the region of interest)
    image_pixels: int        # all pixels of the image
    n_sources: int
    n_mosaic: int
    n_phi: int
    oversample: int
    n_layers: int
    grid_cells: int          # structure-factor grid cells (0 without a grid)
    memory_bytes: int        # peak host memory of the run (image, outputs, setup arrays, tiles)
    output_bytes: int        # bytes of the files the command line writes

    @property
    def paths_per_pixel(self) -> int:
        return self.n_sources * self.n_mosaic * self.n_phi * self.oversample ** 2 * self.n_layers

    @property
    def work(self) -> int:
        """Sub-pixel path evaluations of the whole image."""
        return self.pixels * self.paths_per_pixel

    @property
    def seconds_one_core(self) -> float:
        return self.work / PATHS_PER_SECOND


def _host(v, default=None):
    """A host float of a plain or array value (None when unknowable, e.g. traced)."""
    if v is None:
        return default
    from ._backend import host_scalar

    try:
        h = host_scalar(v)
    except Exception:
        return None
    return default if h is None else float(h)


def _cell_lengths_A(cr):
    """Real-space cell lengths (Angstrom) on the host, or None when they cannot be read."""
    import numpy as np

    from ._backend import to_numpy

    try:
        if cr.cell_A_deg is not None:
            cell = [float(np.asarray(to_numpy(x))) for x in cr.cell_A_deg] if isinstance(
                cr.cell_A_deg, (tuple, list)) else [float(x) for x in np.asarray(to_numpy(cr.cell_A_deg))]
            return cell[:3]
        m = np.asarray(to_numpy(cr.reciprocal_vectors_per_A), dtype=np.float64)
        a, b, c = m
        v = float(np.dot(a, np.cross(b, c)))
        return [float(np.linalg.norm(np.cross(b, c)) / abs(v)), float(np.linalg.norm(np.cross(c, a)) / abs(v)),
                float(np.linalg.norm(np.cross(a, b)) / abs(v))]
    except Exception:
        return None


def _count_sources(beam) -> int:
    if beam.source_positions_m is not None:
        return int(beam.source_positions_m.shape[0])
    mr = lambda v: None if v is None else _host(v) * 1e-3  # noqa: E731
    h = range_steps(mr(beam.hdiv_range_mrad), mr(beam.hdiv_step_mrad), beam.hdiv_steps,
                    what="Beam.hdiv_step_mrad (horizontal divergence steps)")
    v = range_steps(mr(beam.vdiv_range_mrad), mr(beam.vdiv_step_mrad), beam.vdiv_steps,
                    what="Beam.vdiv_step_mrad (vertical divergence steps)")
    d = range_steps(None if beam.dispersion_percent is None else _host(beam.dispersion_percent) / 100.0,
                    None, beam.dispersion_steps)
    n_div = h.count * v.count
    if n_div <= 4096:
        from .geometry.sources import divergence_offsets

        n_div = int(divergence_offsets(h, v, beam.round_divergence).shape[0])
    elif beam.round_divergence:
        n_div = int(n_div * math.pi / 4) + 1  # the elliptical cut keeps about pi/4 of a large grid
    return n_div * d.count


def output_bytes(pixels: int, *, pgm: bool = True, noise: bool = True, grid_cells: int = 0) -> int:
    """Bytes of the command line's files: float (4/px), SMV int (2/px), PGM (1/px), noise (2/px), Fdump."""
    smv = 2 * pixels + 512
    total = 4 * pixels + smv + (pixels + 64 if pgm else 0) + (smv if noise else 0)
    return total + (8 * grid_cells + 4096 if grid_cells else 0)


def estimate_run(exp: Experiment, *, dtype: str = "float64", memory_budget_bytes: int | None = None,
                 threads: int | None = None, pgm: bool = True, noise: bool = True,
                 outputs_in_memory: bool = True, write_fdump: bool = False) -> RunEstimate:
    """Counts, memory and output size of rendering ``exp`` (see the module docstring)."""
    beam, det, cr = exp.beam, exp.detector, exp.crystal
    fp, sp = int(det.fpixels), int(det.spixels)
    image_pixels = fp * sp
    pixels = det.roi_pixels()

    phi = phi_steps(None if cr.osc_deg is None else _host(cr.osc_deg, 0.0) * _DEG,
                    None if cr.phi_step_deg is None else _host(cr.phi_step_deg, 0.0) * _DEG, cr.phi_steps)
    spread = _host(cr.mosaic_spread_deg, 1.0) if cr.mosaic_spread_deg is not None else None
    _, n_mos, _ = mosaic_domains(None if spread is None else spread * _DEG, cr.mosaic_domains)
    depth = _host(det.attenuation_depth_um, 1.0) if det.attenuation_depth_um is not None else None
    no_abs = depth is not None and (math.isinf(depth) or depth == 0.0)
    thick = thickness_steps(0.0 if no_abs else _host(det.thickness_um, 1.0) * 1e-6, None, det.thickness_steps)
    n_src = _count_sources(beam)

    oversample = det.oversample if det.oversample else None
    if oversample is None:
        lengths = _cell_lengths_A(cr)
        lam, px = _host(beam.wavelength_A), _host(det.pixel_size_mm)
        dist = _host(det.distance_mm) if det.distance_mm is not None else _host(det.close_distance_mm)
        N = [_host(n) for n in cr.N_cells]
        if cr.size_mm is not None and lengths is not None:
            N = [math.ceil(_host(s, 0.0) * 1e7 / lengths[i]) if _host(s, 0.0) > 0 else N[i]
                 for i, s in enumerate(cr.size_mm)]
        if None in (lam, px, dist, lengths) or None in N:
            oversample = 1
        else:
            xtal = max(lengths[i] * 1e-10 * max(N[i], 1.0) for i in range(3))
            ratio = 3.0 * xtal / (lam * 1e-10 * dist * 1e-3 / (px * 1e-3))
            oversample = (recommended_oversample(xtal, lam * 1e-10, dist * 1e-3, px * 1e-3) or 1) \
                if ratio < 2**31 else 2**31
    grid_cells = 0
    sf = cr.structure_factors
    if sf is not None:
        grid_cells = math.prod(int(n) for n in sf.F.shape)

    item = 4 if dtype == "float32" else 8
    n_orient = phi.count * n_mos
    budget = memory_budget_bytes or 16 * 2**20
    threads = threads or os.cpu_count() or 1
    # the float32 image (4/px) and the int, PGM and noise images held for writing (5/px)
    memory = 4 * image_pixels + (5 * image_pixels if outputs_in_memory else 0)
    memory += n_orient * 9 * (8 + item) * 2 + n_src * 4 * (8 + item) * 2  # setup arrays, host and device
    memory += grid_cells * (8 + item) + threads * budget
    # a tile holds at least one pixel's paths for one orientation (layers x sub-pixels x sources),
    # in a few dozen arrays of the working dtype, on each thread
    memory += threads * thick.count * int(oversample) ** 2 * n_src * 24 * item
    out = output_bytes(image_pixels, pgm=pgm, noise=noise, grid_cells=grid_cells if write_fdump else 0)
    return RunEstimate(pixels=pixels, image_pixels=image_pixels, n_sources=n_src, n_mosaic=n_mos,
                       n_phi=phi.count, oversample=int(oversample), n_layers=thick.count,
                       grid_cells=grid_cells, memory_bytes=int(memory), output_bytes=int(out))


def available_memory_bytes() -> int | None:
    """MemAvailable of the machine (Linux), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def format_bytes(n: float) -> str:
    """A byte count for messages: 3 significant digits in the largest binary unit it fills (KiB .. TiB)."""
    for unit, div in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{int(n)} bytes"


def format_duration(s: float) -> str:
    """A duration in seconds as a short phrase ("3.2 hours")."""
    for unit, div in (("years", 3.15e7), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= div:
            return f"{s / div:.3g} {unit}"
    return f"{s:.3g} s"


def max_work_paths() -> float:
    """The work limit: :data:`MAX_WORK_PATHS`, or ``BRAGG_CORE_MAX_WORK`` (path evaluations) when set."""
    env = os.environ.get("BRAGG_CORE_MAX_WORK", "")
    try:
        v = float(env)
    except ValueError:
        return MAX_WORK_PATHS
    return v if v > 0 else MAX_WORK_PATHS


def check_run(est: RunEstimate, *, force: bool = False, force_hint: str = "force=True",
              output_dirs: tuple = (), max_work: float | None = None,
              available_memory: int | None = None) -> None:
    """Raise :class:`RunTooLarge` for a run that cannot fit in memory or on disk, or finish.

    ``force_hint`` is how the caller lifts the limits (``-force`` on the command line).
    """
    if force:
        return
    max_work = max_work_paths() if max_work is None else max_work
    what = (f"{est.pixels} pixels x {est.paths_per_pixel} paths per pixel ({est.n_sources} sources, "
            f"{est.n_mosaic} mosaic domains, {est.n_phi} phi steps, oversample {est.oversample}, "
            f"{est.n_layers} sensor layers)")
    avail = available_memory if available_memory is not None else available_memory_bytes()
    if avail is not None and est.memory_bytes > avail:
        raise RunTooLarge(f"the run needs about {format_bytes(est.memory_bytes)} of memory but "
                          f"{format_bytes(avail)} is "
                          f"available ({est.image_pixels} pixels, {est.n_sources} sources, "
                          f"{est.n_mosaic * est.n_phi} orientations, oversample {est.oversample}, "
                          f"{est.n_layers} sensor layers, {est.grid_cells} structure-factor cells); "
                          f"use fewer pixels or steps, or {force_hint} to try anyway")
    if est.work > max_work:
        raise RunTooLarge(f"the run is {what} = {est.work:.3g} path evaluations, about "
                          f"{format_duration(est.seconds_one_core)} on one core (the limit is {max_work:.3g}); "
                          f"use fewer pixels or steps, or {force_hint} to run it anyway")
    for d in dict.fromkeys(output_dirs):
        try:
            free = shutil.disk_usage(d or ".").free
        except OSError:
            continue
        if est.output_bytes > free:
            raise RunTooLarge(f"the outputs need about {format_bytes(est.output_bytes)} but {d or '.'} has "
                              f"{format_bytes(free)} free; free some space, or {force_hint} to try anyway")


def check_grid_cells(cells: int, *, force: bool = False, force_hint: str = "force=True") -> None:
    """Refuse a structure-factor grid larger than :data:`MAX_GRID_CELLS` unless forced."""
    if not force and cells > MAX_GRID_CELLS:
        raise RunTooLarge(f"a structure-factor grid of {cells} cells ({format_bytes(8 * cells)}) is larger than "
                          f"the limit of {MAX_GRID_CELLS} cells; {force_hint} to use it anyway")

