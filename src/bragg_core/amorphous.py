"""Python API of the amorphous background: :func:`amorphous_background`.

The background of a slab of amorphous material (water, air, ice, oil...) in
the beam, on the detector of an :class:`~bragg_core.experiment.Experiment`,
in the experiment's backend, device and dtype.  The geometry (detector
placement, sub-pixels, curved detector, sources from divergence and
dispersion or a source file, Kahn polarization, solid angle, sensor capture)
is the one the Bragg engine uses; the physics is in
:mod:`bragg_core.physics.amorphous`.  ``specs/physics.md`` and
``docs/detector_model.md`` describe what is reproduced.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from typing import Any

import numpy as np

from ._backend import Context, carries_gradient, geometry_context, get_context, host_scalar, is_scalar
from .engine import parallel
from .experiment import Experiment, ExperimentError
from .geometry.detector import detector_geometry
from .geometry.sources import beam_sources
from .io.stol import BUILTIN_TABLES, StolTable, builtin_table, read_stol
from .physics.amorphous import Lookup, amorphous_tile, molecule_count, scale_factor

__all__ = ["amorphous_background", "amorphous_background_panels", "resolve_material", "MATERIALS"]

#: density (g/cm^3) and molecular weight (g/mol) of the built-in materials, used when not given
MATERIALS = {
    "water": (1.0, 18.0), "shortwater": (1.0, 18.0), "ice": (0.92, 18.0), "nanoice": (0.92, 18.0),
    "air": (1.2e-3, 29.0), "unity": (1.0, 18.0),
}
_TILE_ELEMENTS = 1 << 16  # sub-pixel x source samples per block of rows (its temporaries stay in the cache)


def resolve_material(material: Any, kind: str = "stol") -> StolTable:
    """A :class:`StolTable` from a table, a built-in name (``"water"``...) or a ``.stol`` path."""
    if isinstance(material, StolTable):
        return material
    if isinstance(material, (str, os.PathLike)):
        name = os.fspath(material)
        base = name[:-5] if name.endswith(".stol") else name
        if base in BUILTIN_TABLES and not os.path.exists(name):
            return builtin_table(base, kind)
        return read_stol(name, kind=kind)
    raise TypeError(f"material must be a StolTable, a built-in name ({', '.join(BUILTIN_TABLES)}) or a path, "
                    f"not {type(material).__name__}")


_LOOKUPS: dict = {}


def _lookup(table: StolTable) -> Lookup:
    """The host search tables of ``table``, kept for the last few tables (built-in tables are shared)."""
    hit = _LOOKUPS.get(id(table))
    if hit is not None and hit[0] is table:
        return hit[1]
    lk = Lookup(table)
    if len(_LOOKUPS) >= 16:
        _LOOKUPS.pop(next(iter(_LOOKUPS)))
    _LOOKUPS[id(table)] = (table, lk)
    return lk


def _arrays(*values):
    out = []
    for v in values:
        if hasattr(v, "shape") and not isinstance(v, np.ndarray):
            out.append(v)
        elif isinstance(v, (tuple, list)):
            out.extend(x for x in v if hasattr(x, "shape") and not isinstance(x, np.ndarray))
    return out


def _experiment_arrays(exp: Experiment):
    vals = []
    for part in (exp.beam, exp.detector):
        for f in fields(part):
            if f.name != "mask":
                vals.append(getattr(part, f.name))
    return _arrays(*vals)


def amorphous_background(experiment: Experiment, material: Any = "water", *, thickness_mm: Any = 0.1,
                         width_mm: Any = 0.1, height_mm: Any = 0.1, density_g_cm3: Any = None,
                         molecular_weight: Any = None, molecules: Any = None, kind: str = "stol",
                         backend: str | None = None, device: Any = None, dtype: Any = None):
    """Background image (photons per pixel, shape (spixels, fpixels)) of an amorphous sample.

    ``material``: a built-in table name, a ``.stol`` path or a :class:`StolTable`;
    ``kind`` the abscissa of a file (``stol``, ``4stol`` or ``Q``).  The sample is
    ``thickness_mm`` along the beam and ``width_mm`` x ``height_mm`` across it
    (both clipped to ``Beam.beam_size_mm``), of ``density_g_cm3`` and
    ``molecular_weight`` (defaults: the material's, else 1 g/cm^3 and 18 g/mol);
    ``molecules``, when given, replaces the count from the volume.  Thickness,
    sizes, density, molecular weight and molecules may be arrays (differentiable).
    The image is in the namespace/device/dtype of the array arguments, or of
    ``backend``/``device``/``dtype``.
    """
    if not isinstance(experiment, Experiment):
        raise TypeError("experiment must be a bragg_core.experiment.Experiment")
    table = resolve_material(material, kind)
    base = os.path.basename(table.source).split(".")[0]
    dens0, mw0 = MATERIALS.get(base, (1.0, 18.0))
    density = dens0 if density_g_cm3 is None else density_g_cm3
    mw = mw0 if molecular_weight is None else molecular_weight
    for name, v in (("thickness_mm", thickness_mm), ("width_mm", width_mm), ("height_mm", height_mm),
                    ("density_g_cm3", density), ("molecular_weight", mw), ("molecules", molecules)):
        if is_scalar(v):
            bad = not float(v) > 0 if name == "molecular_weight" else not float(v) >= 0
            if bad or math.isinf(float(v)):
                raise ExperimentError(f"amorphous_background: {name} must be a finite "
                                      f"{'positive' if name == 'molecular_weight' else 'non-negative'} number, "
                                      f"got {v!r}")
    params = (thickness_mm, width_mm, height_mm, density, mw, molecules)
    ctx: Context = get_context(*_experiment_arrays(experiment), *_arrays(*params),
                               backend=backend, device=device, dtype=dtype)
    g = geometry_context(ctx)
    xp = g.xp
    beam, det = experiment.beam, experiment.detector
    dg = detector_geometry(det, g)
    sources = beam_sources(beam, dg.beam, dg.polar, g)
    os_ = int(det.oversample) if det.oversample else 1
    K = int(sources.incident.shape[0])
    steps = K * os_ * os_

    capture = None
    thick_h = host_scalar(det.thickness_um)
    if thick_h is None or thick_h > 0:
        depth = det.attenuation_depth_um
        thick_m = g.asarray(det.thickness_um) * 1e-6
        if depth is None:
            mu = 1.0 / thick_m
        else:
            d_h = host_scalar(depth)
            mu = None if d_h is not None and (math.isinf(d_h) or d_h == 0) else 1.0 / (g.asarray(depth) * 1e-6)
        if mu is not None:
            capture = (thick_m, mu)

    S, Fp = det.spixels, det.fpixels
    A = ctx.asarray
    if molecules is not None:
        n_mol = A(molecules)
    else:
        bs = beam.beam_size_mm
        bs_h = host_scalar(bs)
        n_mol = molecule_count(ctx.xp, A(thickness_mm) * 1e-3, A(width_mm) * 1e-3, A(height_mm) * 1e-3,
                               A(density) * 1e6, A(mw),
                               None if bs_h is not None and bs_h < 0 else A(bs) * 1e-3)
    scale = scale_factor(A(beam.fluence_photons_per_m2), n_mol, steps)

    # only the region of interest is evaluated; the pixels outside are 0
    x0, x1, y0, y1 = det.roi_box()
    n_rows, n_cols = max(0, y1 - y0 + 1), max(0, x1 - x0 + 1)
    per_row = n_cols * os_ * os_ * K
    cols = g.asarray(np.arange(x0, x0 + n_cols), dtype=xp.int64)
    lookup = _lookup(table)
    dtype = ctx.dtype

    def tile(rows, c, sub_rows=None):
        return amorphous_tile(g, dg, sources, table, rows, c, oversample=os_, kahn=beam.kahn_factor,
                              polarization=bool(beam.polarization_correction), point_pixel=det.point_pixel,
                              curved=det.curved, capture=capture, lookup=lookup, sub_rows=sub_rows)

    def block(r0, r1):
        rows = g.asarray(np.arange(y0 + r0, y0 + r1), dtype=xp.int64)
        if per_row <= _TILE_ELEMENTS:
            raw = tile(rows, cols)
        else:  # one row whose samples overflow a block: pieces of columns and sub-pixel rows, summed
            raw = xp.concat([_row_in_pieces(xp, tile, rows, cols[c0:c1], c1 - c0, os_, K)
                             for c0, c1 in _column_pieces(n_cols, os_ * os_ * K)], axis=1)
        raw = raw if raw.dtype == dtype else xp.astype(raw, dtype)
        return (raw * scale,)

    # blocks of rows of cache size; a host image shared by forked workers where nothing carries a gradient
    host = ctx.caps.preallocated_image and not any(carries_gradient(v) for v in (*_experiment_arrays(experiment),
                                                                                 *_arrays(*params)))
    if n_rows and n_cols:
        rows_per_block = parallel.block_rows(per_row, pixels=_TILE_ELEMENTS)
        image, = parallel.map_row_blocks(ctx, n_rows, rows_per_block, block, ((ctx.dtype_name, (n_cols,)),),
                                         host=host, pixels=n_rows * per_row * 16)
        if (n_rows, n_cols) != (S, Fp):
            from .engine.render import pad_to_detector

            image = pad_to_detector(ctx.xp, image, (x0, x1, y0, y1), (Fp, S),
                                    lambda shape: ctx.xp.zeros(shape, dtype=image.dtype, device=ctx.device))
    else:
        image = ctx.xp.zeros((S, Fp), dtype=ctx.dtype, device=ctx.device)
    if det.mask is not None:
        m = det.mask if hasattr(det.mask, "__array_namespace__") and not isinstance(det.mask, np.ndarray) \
            else ctx.asarray(np.asarray(det.mask, dtype=bool), dtype=ctx.xp.bool)
        image = ctx.xp.where(ctx.xp.astype(m, ctx.xp.bool), image, ctx.xp.zeros_like(image))
    return image


def _column_pieces(width: int, per_pixel: int):
    """(c0, c1) spans of columns of one row, each at most a block of samples (one column at least)."""
    n = max(1, _TILE_ELEMENTS // per_pixel)
    return [(c0, min(width, c0 + n)) for c0 in range(0, width, n)]


def _row_in_pieces(xp, tile, rows, cols, n_cols: int, os_: int, K: int):
    """One row's columns ``cols`` as the sum over pieces of sub-pixel rows that keep each piece's
    samples (columns x sub-rows x oversample x sources) within a block."""
    per_sub = n_cols * os_ * K
    if per_sub * os_ <= _TILE_ELEMENTS:
        return tile(rows, cols)
    step = max(1, _TILE_ELEMENTS // per_sub)
    total = None
    for j0 in range(0, os_, step):  # pieces of sub-pixel rows, each vectorised over its samples
        part = tile(rows, cols, (j0, min(os_, j0 + step)))
        total = part if total is None else total + part
    return total


def amorphous_background_panels(experiment: Experiment, detector, material: Any = "water", **kwargs) -> list:
    """The background on every panel of a multi-panel detector (a list of images, one per panel).

    ``detector``: a :class:`~bragg_core.panels.MultiPanelDetector` or a sequence of
    :class:`~bragg_core.panels.Panel` (sharing ``experiment.detector``'s beam and sampling
    options, as in :func:`bragg_core.simulate_panels`); keyword arguments as
    :func:`amorphous_background`.  For the noise of panel k, place its pixels with
    ``detector_pixel_index(..., offset=<pixels of panels 0..k-1>)``.
    """
    from .panels import MultiPanelDetector, Panel

    if isinstance(detector, Panel):
        detector = (detector,)
    mp = detector if isinstance(detector, MultiPanelDetector) else MultiPanelDetector(
        panels=tuple(detector), base=experiment.detector)
    return [amorphous_background(Experiment(beam=experiment.beam, detector=d, crystal=experiment.crystal),
                                 material, **kwargs) for d in mp.detectors()]
