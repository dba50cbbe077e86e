"""The validated description of an experiment: beam, detector, crystal.

Frozen dataclasses with units in the field names.  The Python API and the
command line both build these; every value is checked once, when built, and
an invalid one raises :class:`ExperimentError` naming the field and the value.

Continuous quantities may be Python numbers or arrays of any backend (a torch
tensor that requires grad, a JAX tracer).  An array whose values can be read
on the host without breaking anything (NumPy, a concrete torch/JAX/CuPy array)
is checked like a number; a JAX tracer and a lazy Dask array are checked by
shape only, so that tracing and autograd are never broken and nothing is
computed early.  Discrete choices (convention, shape, counts) are plain Python
values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional, Tuple

from ._backend import is_host_array, is_scalar
from .units import DEFAULT_FLUENCE_PHOTONS_PER_M2

__all__ = ["ExperimentError", "Beam", "Detector", "Crystal", "Experiment", "CONVENTIONS", "SHAPES"]

CONVENTIONS = ("mosflm", "xds", "adxv", "denzo", "dials", "custom")
SHAPES = ("square", "round", "gauss", "tophat")


class ExperimentError(ValueError):
    """An experiment value that cannot describe a physical setup."""


# ----------------------------------------------------------------------------
# field checks
# ----------------------------------------------------------------------------


def _name(obj, fld):
    return f"{type(obj).__name__}.{fld}"


def _is_num(v):
    return is_scalar(v) and not isinstance(v, bool)


def _host_view(v):
    """The values of an array as float64 NumPy, or None where reading them is not harmless
    (see :func:`bragg_core._backend.host_values`)."""
    from ._backend import host_values

    return host_values(v)


def _check_values(obj, fld, vals, shown, *, positive=False, nonneg=False, allow_inf=False):
    """Finiteness and sign of host values (a float or a float64 array)."""
    import numpy as np

    a = np.asarray(vals, dtype=np.float64)
    if np.isnan(a).any() or (np.isinf(a).any() and not allow_inf):
        raise ExperimentError(f"{_name(obj, fld)} must be finite, got {shown!r}")
    if positive and not (a > 0).all():
        raise ExperimentError(f"{_name(obj, fld)} must be positive, got {shown!r}")
    if nonneg and (a < 0).any():
        raise ExperimentError(f"{_name(obj, fld)} must not be negative, got {shown!r}")


def np_isfinite_all(a) -> bool:
    import numpy as np

    return bool(np.isfinite(a).all())


def _check_number(obj, fld, *, positive=False, nonneg=False, allow_none=False, allow_inf=False):
    v = getattr(obj, fld)
    if v is None:
        if allow_none:
            return
        raise ExperimentError(f"{_name(obj, fld)} is required")
    if not _is_num(v):
        if not hasattr(v, "shape") or isinstance(v, str):
            raise ExperimentError(f"{_name(obj, fld)} must be a number, got {v!r}")
        shape = tuple(v.shape)
        if shape not in ((), (1,)):
            raise ExperimentError(f"{_name(obj, fld)} must be a single number (shape () or (1,)), "
                                  f"got an array of shape {shape}")
        host = _host_view(v)
        if host is not None:
            _check_values(obj, fld, host, v, positive=positive, nonneg=nonneg, allow_inf=allow_inf)
        return
    _check_values(obj, fld, float(v), v, positive=positive, nonneg=nonneg, allow_inf=allow_inf)


def _check_vector(obj, fld, n=3, *, nonzero=False, allow_none=True):
    v = getattr(obj, fld)
    if v is None:
        if allow_none:
            return
        raise ExperimentError(f"{_name(obj, fld)} is required")
    if hasattr(v, "shape") and not isinstance(v, (tuple, list)):
        if tuple(v.shape) != (n,):
            raise ExperimentError(f"{_name(obj, fld)} must have shape ({n},), got {tuple(v.shape)}")
        host = _host_view(v)
        if host is not None:
            _check_values(obj, fld, host, v)
            if nonzero and not host.any():
                raise ExperimentError(f"{_name(obj, fld)} must not be a zero-length vector, got {v!r}")
        return
    if isinstance(v, (str, bytes)):
        raise ExperimentError(f"{_name(obj, fld)} must be {n} numbers, got {v!r}")
    try:
        if len(v) != n:
            raise ExperimentError(f"{_name(obj, fld)} must be {n} numbers, got {v!r}")
        # members that are arrays (a tensor that requires grad, a tracer) are not read
        vals = [float(x) for x in v if not _is_array_member(x)]
    except (TypeError, ValueError):
        raise ExperimentError(f"{_name(obj, fld)} must be {n} numbers, got {v!r}") from None
    if any(math.isnan(x) or math.isinf(x) for x in vals):
        raise ExperimentError(f"{_name(obj, fld)} must be finite, got {v!r}")
    if nonzero and len(vals) == n and all(x == 0.0 for x in vals):
        raise ExperimentError(f"{_name(obj, fld)} must not be a zero-length vector, got {v!r}")


def _is_array_member(x):
    return hasattr(x, "shape") and not is_scalar(x) and tuple(x.shape) in ((), (1,))


def _check_pair(obj, fld):
    """Two numbers, either of which may be None (that member keeps its default)."""
    v = getattr(obj, fld)
    if v is None:
        return
    if hasattr(v, "shape") and not isinstance(v, (tuple, list)):
        _check_vector(obj, fld, 2)
        return
    if len(v) != 2:
        raise ExperimentError(f"{_name(obj, fld)} must be 2 numbers, got {v!r}")
    for x in v:
        if x is not None and not hasattr(x, "shape"):
            if not _is_num(x) or not math.isfinite(float(x)):
                raise ExperimentError(f"{_name(obj, fld)} must be finite numbers, got {v!r}")


INT_MAX = 2**31 - 1  # counts and seeds are C ints in the reference


def _check_int(obj, fld, *, minimum=None, maximum=INT_MAX, allow_none=True):
    v = getattr(obj, fld)
    if v is None:
        if allow_none:
            return
        raise ExperimentError(f"{_name(obj, fld)} is required")
    if isinstance(v, bool) or not isinstance(v, int):
        raise ExperimentError(f"{_name(obj, fld)} must be an integer, got {v!r}")
    if minimum is not None and v < minimum:
        raise ExperimentError(f"{_name(obj, fld)} must be at least {minimum}, got {v!r}")
    if maximum is not None and v > maximum:
        raise ExperimentError(f"{_name(obj, fld)} must be at most {maximum}, got {v!r}")


def _check_bool(obj, fld, allow_none=False):
    v = getattr(obj, fld)
    if v is None and allow_none:
        return
    if not isinstance(v, bool):
        raise ExperimentError(f"{_name(obj, fld)} must be True or False, got {v!r}")


def _check_choice(obj, fld, choices):
    v = getattr(obj, fld)
    if v not in choices:
        raise ExperimentError(f"{_name(obj, fld)} must be one of {', '.join(choices)}; got {v!r}")


# ----------------------------------------------------------------------------
# the description
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Beam:
    """Incident beam: wavelength, fluence, polarization, divergence, dispersion.

    Divergence follows the reference's auto-selection: any of range, step and
    count may be left ``None``.  ``source_positions_m`` and
    ``source_wavelengths_A`` (a source file) replace the generated sources.
    """

    wavelength_A: Any = 1.0
    fluence_photons_per_m2: Any = DEFAULT_FLUENCE_PHOTONS_PER_M2
    beam_size_mm: Any = 0.1
    kahn_factor: Any = 0.0
    polarization_correction: bool = True
    dispersion_percent: Any = 0.0
    dispersion_steps: Optional[int] = None
    hdiv_range_mrad: Any = None
    vdiv_range_mrad: Any = None
    hdiv_step_mrad: Any = None
    vdiv_step_mrad: Any = None
    hdiv_steps: Optional[int] = None
    vdiv_steps: Optional[int] = None
    round_divergence: bool = True
    source_positions_m: Any = None
    source_wavelengths_A: Any = None
    water_size_um: Any = 0.0

    def __post_init__(self):
        _check_number(self, "wavelength_A", positive=True)
        _check_number(self, "fluence_photons_per_m2", nonneg=True)
        _check_number(self, "beam_size_mm", nonneg=True)
        _check_number(self, "kahn_factor")
        _check_number(self, "dispersion_percent", nonneg=True)
        d = self.dispersion_percent
        d_host = float(d) if _is_num(d) else None
        if d_host is None and hasattr(d, "shape"):
            h = _host_view(d)
            d_host = None if h is None else float(h.reshape(-1)[0])
        if d_host is not None and d_host >= 200.0:
            raise ExperimentError(f"Beam.dispersion_percent must be below 200 (the shortest wavelength "
                                  f"would be zero or less), got {d!r}")
        _check_bool(self, "polarization_correction")
        _check_bool(self, "round_divergence")
        for f in ("hdiv_range_mrad", "vdiv_range_mrad", "hdiv_step_mrad", "vdiv_step_mrad"):
            _check_number(self, f, allow_none=True, nonneg=True)
        for f in ("dispersion_steps", "hdiv_steps", "vdiv_steps"):
            _check_int(self, f, minimum=0)
        _check_number(self, "water_size_um", nonneg=True)
        if (self.source_positions_m is None) != (self.source_wavelengths_A is None):
            raise ExperimentError(
                "Beam.source_positions_m and Beam.source_wavelengths_A must be given together"
            )
        if self.source_positions_m is not None:
            self._check_sources()

    def _check_sources(self):
        pos, lam = self.source_positions_m, self.source_wavelengths_A
        ps, ls = tuple(getattr(pos, "shape", ())), tuple(getattr(lam, "shape", ()))
        if len(ps) != 2 or ps[1] != 3 or ps[0] < 1:
            raise ExperimentError(f"Beam.source_positions_m must be an array of shape (n, 3) with n >= 1, "
                                  f"got shape {ps}")
        if ls != (ps[0],):
            raise ExperimentError(f"Beam.source_wavelengths_A must have shape ({ps[0]},) like the "
                                  f"positions, got shape {ls}")
        p, w = _host_view(pos), _host_view(lam)
        if p is not None:
            _check_values(self, "source_positions_m", p, f"values from {p.min():g} to {p.max():g}")
            if not (p * p).sum(axis=1).all():
                raise ExperimentError("Beam.source_positions_m has a source at the sample position (0, 0, 0)")
        if w is not None:
            _check_values(self, "source_wavelengths_A", w, f"values from {w.min():g} to {w.max():g}",
                          positive=True)


@dataclass(frozen=True)
class Detector:
    """Pixel detector: size, placement, orientation, sensor and sampling.

    ``beam_center_mm`` is (Xbeam, Ybeam) in the convention's own meaning,
    ``close_point_mm`` is (Xclose, Yclose), ``xds_origin_px`` is (ORGX, ORGY);
    ``None`` selects the convention's default.  ``pivot`` is honoured only by
    the ``custom`` convention; the others fix it.  ``roi`` is (xmin, xmax,
    ymin, ymax), inclusive fast/slow pixel bounds.
    """

    fpixels: int = 1024
    spixels: int = 1024
    pixel_size_mm: Any = 0.1
    distance_mm: Any = 100.0
    close_distance_mm: Any = None
    convention: str = "mosflm"
    pivot: Optional[str] = None
    beam_center_mm: Any = None
    close_point_mm: Any = None
    xds_origin_px: Any = None
    rotation_deg: Any = (0.0, 0.0, 0.0)
    twotheta_deg: Any = 0.0
    fdet_vector: Any = None
    sdet_vector: Any = None
    odet_vector: Any = None
    beam_vector: Any = None
    polar_vector: Any = None
    spindle_axis: Any = None
    twotheta_axis: Any = None
    curved: bool = False
    point_pixel: bool = False
    thickness_um: Any = 0.0
    thickness_steps: Optional[int] = None
    attenuation_depth_um: Any = None
    oversample: Optional[int] = None
    oversample_omega: bool = False
    oversample_polar: bool = False
    oversample_thick: bool = False
    roi: Optional[Tuple[int, int, int, int]] = None
    mask: Any = None

    def __post_init__(self):
        _check_int(self, "fpixels", minimum=1, allow_none=False)
        _check_int(self, "spixels", minimum=1, allow_none=False)
        _check_number(self, "pixel_size_mm", positive=True)
        _check_number(self, "distance_mm", positive=True, allow_none=True)
        _check_number(self, "close_distance_mm", positive=True, allow_none=True)
        if self.distance_mm is None and self.close_distance_mm is None:
            raise ExperimentError("Detector.distance_mm or Detector.close_distance_mm is required")
        _check_choice(self, "convention", CONVENTIONS)
        if self.pivot is not None:
            _check_choice(self, "pivot", ("beam", "sample"))
        for f in ("beam_center_mm", "close_point_mm", "xds_origin_px"):
            _check_pair(self, f)
        _check_vector(self, "rotation_deg", 3, allow_none=False)
        _check_number(self, "twotheta_deg")
        for f in ("fdet_vector", "sdet_vector", "odet_vector", "beam_vector", "polar_vector",
                  "spindle_axis", "twotheta_axis"):
            _check_vector(self, f, 3, nonzero=True)
        _check_number(self, "thickness_um", nonneg=True)
        _check_int(self, "thickness_steps", minimum=0)
        _check_number(self, "attenuation_depth_um", allow_none=True, nonneg=True, allow_inf=True)
        _check_int(self, "oversample", minimum=0)
        for f in ("curved", "point_pixel", "oversample_omega", "oversample_polar", "oversample_thick"):
            _check_bool(self, f)
        if self.roi is not None:
            roi = self.roi
            if (not isinstance(roi, (tuple, list)) or len(roi) != 4
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in roi)):
                raise ExperimentError(f"Detector.roi must be four integers (xmin xmax ymin ymax), got {self.roi!r}")
        if self.mask is not None and tuple(getattr(self.mask, "shape", ())) != (self.spixels, self.fpixels):
            raise ExperimentError(
                f"Detector.mask must have shape (spixels, fpixels) = {(self.spixels, self.fpixels)}, "
                f"got {tuple(getattr(self.mask, 'shape', ()))}"
            )

    def roi_box(self) -> Tuple[int, int, int, int]:
        """(x0, x1, y0, y1): the region of interest clipped to the detector, inclusive (the whole detector
        without one; empty when x1 < x0 or y1 < y0)."""
        if self.roi is None:
            return 0, self.fpixels - 1, 0, self.spixels - 1
        xmin, xmax, ymin, ymax = self.roi
        return max(xmin, 0), min(xmax, self.fpixels - 1), max(ymin, 0), min(ymax, self.spixels - 1)

    def roi_pixels(self) -> int:
        """How many pixels :meth:`roi_box` holds."""
        x0, x1, y0, y1 = self.roi_box()
        return max(0, x1 - x0 + 1) * max(0, y1 - y0 + 1)


@dataclass(frozen=True)
class Crystal:
    """Crystal: unit cell, orientation, size, shape, mosaicity, rotation, structure factors.

    Give either ``cell_A_deg`` (a, b, c in Angstrom, alpha, beta, gamma in
    degrees) or ``reciprocal_vectors_per_A`` (rows a*, b*, c*, wavelength
    already removed, as from a MOSFLM matrix).  ``misset_deg`` rotates the
    reciprocal cell about x, y, then z; ``misset_random`` draws it from the
    reference's generator with ``misset_seed``.  ``size_mm`` (x, y, z), when
    given, sets the cell counts to ceil(size / cell length).
    """

    cell_A_deg: Any = None
    reciprocal_vectors_per_A: Any = None
    misset_deg: Any = None
    misset_random: bool = False
    misset_seed: int = 1
    N_cells: Any = (1, 1, 1)
    size_mm: Any = None
    shape: str = "square"
    fudge: Any = 1.0
    mosaic_spread_deg: Any = None
    mosaic_domains: Optional[int] = None
    mosaic_seed: int = 12345678
    phi_start_deg: Any = 0.0
    osc_deg: Any = None
    phi_step_deg: Any = None
    phi_steps: Optional[int] = None
    default_F: Any = 0.0
    structure_factors: Any = None
    interpolate: Optional[bool] = None
    dmin_A: Any = 0.0
    smooth: bool = False   # refinement-grade smooth model (a documented deviation from the reference)

    def __post_init__(self):
        if not isinstance(self.smooth, bool):
            raise ExperimentError(f"Crystal.smooth must be True or False, got {self.smooth!r}")
        if self.cell_A_deg is None and self.reciprocal_vectors_per_A is None:
            raise ExperimentError("Crystal needs cell_A_deg or reciprocal_vectors_per_A")
        if self.cell_A_deg is not None:
            _check_vector(self, "cell_A_deg", 6)
            cell = self.cell_A_deg
            vals = None
            if hasattr(cell, "shape") and not isinstance(cell, (tuple, list)):
                host = _host_view(cell)
                vals = None if host is None else [float(x) for x in host]
            elif not any(_is_array_member(x) for x in cell):
                vals = [float(x) for x in cell]
            if vals is not None:
                if any(x <= 0 for x in vals[:3]):
                    raise ExperimentError(f"Crystal.cell_A_deg lengths must be positive, got {tuple(vals)!r}")
                if any(not 0 < x < 180 for x in vals[3:]):
                    raise ExperimentError(
                        f"Crystal.cell_A_deg angles must lie strictly between 0 and 180 degrees, got {tuple(cell)!r}"
                    )
                al, be, ga = (math.radians(x) for x in vals[3:])
                s = (al + be + ga) / 2
                skew = math.sin(s) * math.sin(s - al) * math.sin(s - be) * math.sin(s - ga)
                if not skew > 1e-12:
                    raise ExperimentError(f"Crystal.cell_A_deg has zero volume: {tuple(cell)!r}")
        if self.reciprocal_vectors_per_A is not None:
            self._check_reciprocal()
        _check_vector(self, "misset_deg", 3)
        _check_bool(self, "misset_random")
        _check_int(self, "misset_seed", minimum=-INT_MAX, allow_none=False)
        _check_int(self, "mosaic_seed", minimum=-INT_MAX, allow_none=False)
        _check_vector(self, "N_cells", 3, allow_none=False)
        if not hasattr(self.N_cells, "shape") or isinstance(self.N_cells, (tuple, list)):
            if any(not (float(n) >= 0) for n in self.N_cells if not _is_array_member(n)):
                raise ExperimentError(f"Crystal.N_cells must not be negative, got {tuple(self.N_cells)!r}")
        else:
            host = _host_view(self.N_cells)
            if host is not None and (host < 0).any():
                raise ExperimentError(f"Crystal.N_cells must not be negative, got {self.N_cells!r}")
        if self.interpolate is not None:
            _check_bool(self, "interpolate")
        sf = self.structure_factors
        if sf is not None and not all(hasattr(sf, a) for a in ("F", "h_min", "k_min", "l_min")):
            raise ExperimentError("Crystal.structure_factors must be a StructureFactorGrid "
                                  f"(bragg_core.io.StructureFactorGrid), got {type(sf).__name__}")
        if sf is not None:
            # host amplitudes only: a grid on a device (rebuilt in every step of a refinement) is not copied back
            F = sf.F if is_host_array(sf.F) else None
            if F is not None and not np_isfinite_all(F):
                raise ExperimentError("Crystal.structure_factors holds NaN or infinite amplitudes "
                                      "(the image would be NaN or infinite)")
        _check_vector(self, "size_mm", 3)
        _check_choice(self, "shape", SHAPES)
        _check_number(self, "fudge", positive=True)
        _check_number(self, "mosaic_spread_deg", allow_none=True, nonneg=True)
        _check_int(self, "mosaic_domains", minimum=0)
        _check_number(self, "phi_start_deg")
        _check_number(self, "osc_deg", allow_none=True)
        _check_number(self, "phi_step_deg", allow_none=True)
        _check_int(self, "phi_steps", minimum=0)
        _check_number(self, "default_F", nonneg=True)
        _check_number(self, "dmin_A", nonneg=True)


    def _check_reciprocal(self):
        import numpy as np

        m = self.reciprocal_vectors_per_A
        if hasattr(m, "shape") and not isinstance(m, (tuple, list)):
            shape = tuple(m.shape)
            arr = _host_view(m) if shape == (3, 3) else None
        else:
            try:
                arr = np.asarray(m, dtype=np.float64)
            except (TypeError, ValueError):
                raise ExperimentError("Crystal.reciprocal_vectors_per_A must be a 3x3 matrix of numbers") from None
            shape = arr.shape
        if shape != (3, 3):
            raise ExperimentError(f"Crystal.reciprocal_vectors_per_A must be a 3x3 matrix, got shape {shape}")
        if arr is None:
            return  # traced or lazy: checked where it is used
        if not np.isfinite(arr).all():
            raise ExperimentError("Crystal.reciprocal_vectors_per_A must be finite")
        scale = float(np.abs(arr).max())
        # volume relative to the rows' own size: a singular (or nearly so) matrix has no real-space cell
        det = float(np.linalg.det(arr / scale)) if scale > 0 else 0.0
        if not abs(det) > 1e-12:
            raise ExperimentError("Crystal.reciprocal_vectors_per_A is singular (the three vectors have "
                                  "zero volume); give independent reciprocal vectors")


@dataclass(frozen=True)
class Experiment:
    """A whole simulation: beam, detector, crystal."""

    beam: Beam = field(default_factory=Beam)
    detector: Detector = field(default_factory=Detector)
    crystal: Crystal = field(default_factory=lambda: Crystal(cell_A_deg=(100, 100, 100, 90, 90, 90)))

    def __post_init__(self):
        for f, cls in (("beam", Beam), ("detector", Detector), ("crystal", Crystal)):
            if f == "detector" and type(self.detector).__name__ == "MultiPanelDetector":
                continue  # several panels (bragg_core.panels): simulate renders each
            if not isinstance(getattr(self, f), cls):
                raise ExperimentError(f"Experiment.{f} must be a {cls.__name__}")

    def replace(self, **changes):
        """A copy with some of beam/detector/crystal's fields changed (``detector__distance_mm=...``)."""
        parts = {"beam": {}, "detector": {}, "crystal": {}}
        for key, val in changes.items():
            part, _, name = key.partition("__")
            if part not in parts or not name:
                raise ExperimentError(f"unknown change {key!r}; use e.g. detector__distance_mm")
            parts[part][name] = val
        for part, names in parts.items():
            known = set(field_names(type(getattr(self, part))))
            for name in names:
                if name not in known:
                    raise ExperimentError(f"unknown change {part}__{name}: {type(getattr(self, part)).__name__} "
                                          f"has no field {name!r}")
        return Experiment(
            beam=replace(self.beam, **parts["beam"]),
            detector=replace(self.detector, **parts["detector"]),
            crystal=replace(self.crystal, **parts["crystal"]),
        )


def field_names(cls) -> list[str]:
    return [f.name for f in fields(cls)]
