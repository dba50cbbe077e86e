"""Multi-panel detectors: one or more flat panels sharing beam, crystal and sampling.

A :class:`Panel` is a flat pixel array placed by its fast and slow axes and
its origin (the vector from the sample to the outer corner of pixel (0, 0)),
all in the reference's lab frame (beam along +x in the MOSFLM convention,
``specs/geometry.md``), in millimetres.  Each panel is rendered as a
custom-convention single-panel :class:`~bragg_core.experiment.Detector` whose
beam-pivot placement puts pixel (0, 0) exactly at the panel's origin:

    origin = -Fbeam * f - Sbeam * s + distance * b

with ``b`` the shared beam direction.  The plane of the panel meets the beam
line at ``distance = c / (b . o)`` where ``o = unit(f x s)`` and
``c = origin . o`` (the panel's perpendicular distance from the sample), and
(Fbeam, Sbeam) is where that point lies in the panel's own coordinates.  So
every physics term that depends on the panel (solid angle from ``c``, sensor
absorption along ``o``, polarization from the diffracted direction) is the
panel's own, and a panel renders exactly as the C reference run with the
same custom vectors (``-fdet_vector -sdet_vector -odet_vector -beam_vector
-Xbeam -Ybeam -distance -pivot beam``).

:func:`bragg_core.simulate_panels` renders every panel (a loop over panels; each panel
is rendered in tiles with the usual memory bound) and returns an array of
shape ``(panel, slow, fast)`` when the panels share a size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import numpy as np

from .experiment import Detector, ExperimentError

__all__ = ["Panel", "MultiPanelDetector", "PanelError", "panel_detector", "panel_from_detector", "shared_vectors"]


class PanelError(ExperimentError):
    """A panel that cannot be placed (parallel to the beam, facing the sample, ...)."""


def _vec(v, what):
    try:
        a = np.asarray([float(x) for x in v], dtype=np.float64)
    except (TypeError, ValueError):
        raise PanelError(f"{what} must be 3 numbers, got {v!r}") from None
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise PanelError(f"{what} must be 3 finite numbers, got {v!r}")
    return a


@dataclass(frozen=True)
class Panel:
    """One flat panel, lab frame, millimetres.

    ``fast_axis`` and ``slow_axis`` are directions (normalised when used);
    ``origin_mm`` goes from the sample to the outer corner of pixel (0, 0);
    pixel (slow i, fast j) is centred at ``origin + (j + 1/2) p f + (i + 1/2) p s``.
    ``attenuation_depth_um`` (1/mu) and ``thickness_um`` describe the sensor
    (0 thickness: no absorption); ``material`` is a label carried to and from
    DIALS files.
    """

    fast_axis: Any
    slow_axis: Any
    origin_mm: Any
    fpixels: int
    spixels: int
    pixel_size_mm: float = 0.1
    thickness_um: float = 0.0
    attenuation_depth_um: Optional[float] = None
    material: str = ""
    name: str = ""

    def __post_init__(self):
        f = _vec(self.fast_axis, f"Panel {self.name!r} fast_axis")
        s = _vec(self.slow_axis, f"Panel {self.name!r} slow_axis")
        _vec(self.origin_mm, f"Panel {self.name!r} origin_mm")
        for what, n in (("fpixels", self.fpixels), ("spixels", self.spixels)):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise PanelError(f"Panel {self.name!r} {what} must be a positive integer, got {n!r}")
        if not (float(self.pixel_size_mm) > 0 and math.isfinite(float(self.pixel_size_mm))):
            raise PanelError(f"Panel {self.name!r} pixel_size_mm must be positive, got {self.pixel_size_mm!r}")
        if not float(self.thickness_um) >= 0:
            raise PanelError(f"Panel {self.name!r} thickness_um must not be negative")
        if np.linalg.norm(np.cross(f, s)) < 1e-9 * np.linalg.norm(f) * np.linalg.norm(s):
            raise PanelError(f"Panel {self.name!r} fast and slow axes are parallel")

    @property
    def normal(self) -> np.ndarray:
        """unit(fast x slow): points away from the sample for a panel facing it."""
        f, s = _vec(self.fast_axis, "fast"), _vec(self.slow_axis, "slow")
        n = np.cross(f / np.linalg.norm(f), s / np.linalg.norm(s))
        return n / np.linalg.norm(n)


@dataclass(frozen=True)
class MultiPanelDetector:
    """Several panels; ``base`` holds what they share.

    The beam direction, polarization vector and spindle come from ``base``'s
    convention (or its custom vectors); sampling options (``oversample`` and
    its flags, ``curved``, ``point_pixel``, ``thickness_steps``) apply to every
    panel.  ``base``'s own size and placement are not used.
    """

    panels: tuple
    base: Detector = field(default_factory=Detector)

    def __post_init__(self):
        panels = tuple(self.panels)
        object.__setattr__(self, "panels", panels)
        if not panels:
            raise PanelError("a detector needs at least one panel")
        for p in panels:
            if not isinstance(p, Panel):
                raise PanelError(f"MultiPanelDetector.panels must hold Panel objects, got {type(p).__name__}")
        if not isinstance(self.base, Detector):
            raise PanelError("MultiPanelDetector.base must be a Detector")

    def __len__(self):
        return len(self.panels)

    def detectors(self) -> list[Detector]:
        """Each panel as a custom-convention single-panel Detector."""
        return [panel_detector(p, self.base) for p in self.panels]


def shared_vectors(base: Detector):
    """Final beam, polarization and spindle directions of ``base`` (host float64)."""
    from ._backend import get_context, to_numpy
    from .geometry.detector import detector_geometry

    g = get_context(backend="numpy", dtype="float64")
    dg = detector_geometry(base, g)
    return tuple(np.asarray(to_numpy(v), dtype=np.float64) for v in (dg.beam, dg.polar, dg.spindle))


def panel_detector(panel: Panel, base: Detector = Detector()) -> Detector:
    """A custom-convention Detector whose pixel (0, 0) corner lies at ``panel.origin_mm``.

    Raises :class:`PanelError` for a panel parallel to the beam or whose
    fast x slow normal points towards the sample (its solid angle would be negative).
    """
    beam, polar, spindle = shared_vectors(base)
    f = _vec(panel.fast_axis, "fast_axis")
    s = _vec(panel.slow_axis, "slow_axis")
    f, s = f / np.linalg.norm(f), s / np.linalg.norm(s)
    P = _vec(panel.origin_mm, "origin_mm")
    o = np.cross(f, s)
    o = o / np.linalg.norm(o)
    c = float(P @ o)
    r = float(beam @ o)
    label = f"panel {panel.name!r}" if panel.name else "panel"
    if c == 0:
        raise PanelError(f"{label}: its plane passes through the sample")
    if c < 0:
        # a mirrored panel (fast x slow points towards the sample): the normal is given explicitly,
        # pointing away from the sample, with a length of exactly 1 so that it is used as given
        o = _exact_unit(-o)
        if o is None:
            raise PanelError(f"{label}: no unit normal of exactly length 1 found for this mirrored panel")
        c, r = float(P @ o), float(beam @ o)
    if abs(r) < 1e-9:
        raise PanelError(f"{label} is parallel to the beam; it cannot be placed by the beam pivot")
    d = c / r
    q = d * beam - P  # = Fbeam f + Sbeam s (in the panel plane)
    G = np.array([[f @ f, f @ s], [s @ f, s @ s]])
    Fb, Sb = np.linalg.solve(G, np.array([f @ q, s @ q]))
    return replace(
        base, fpixels=int(panel.fpixels), spixels=int(panel.spixels), pixel_size_mm=float(panel.pixel_size_mm),
        distance_mm=abs(d), close_distance_mm=None, convention="custom", pivot="beam",
        beam_center_mm=(float(Fb), float(Sb)), close_point_mm=None, xds_origin_px=None,
        rotation_deg=(0.0, 0.0, 0.0), twotheta_deg=0.0,
        fdet_vector=tuple(float(x) for x in f), sdet_vector=tuple(float(x) for x in s),
        odet_vector=tuple(float(x) for x in o), beam_vector=tuple(float(x) for x in beam),
        polar_vector=tuple(float(x) for x in polar), spindle_axis=tuple(float(x) for x in spindle),
        twotheta_axis=None, thickness_um=float(panel.thickness_um),
        attenuation_depth_um=panel.attenuation_depth_um, roi=None, mask=None,
    )


def _exact_unit(v):
    """``v`` normalised and nudged by a few units in the last place until its length is exactly 1.0
    (as the detector geometry computes it), or None."""
    v = np.asarray(v, dtype=np.float64) / np.linalg.norm(v)
    k = int(np.argmax(np.abs(v)))
    cand = v.copy()
    for step in range(0, 9):
        for sgn in (1.0, -1.0):
            cand[k] = v[k]
            for _ in range(step):
                cand[k] = np.nextafter(cand[k], sgn * np.inf)
            if math.sqrt(sum(float(x) * float(x) for x in cand)) == 1.0:
                return cand.copy()
    return None


def panel_from_detector(det: Detector, name: str = "") -> Panel:
    """The panel a single-panel Detector describes (its final pix0, fast and slow axes)."""
    from ._backend import get_context, to_numpy
    from .geometry.detector import detector_geometry

    g = get_context(backend="numpy", dtype="float64")
    dg = detector_geometry(det, g)
    h = lambda v: tuple(float(x) for x in np.asarray(to_numpy(v), dtype=np.float64))  # noqa: E731
    return Panel(fast_axis=h(dg.fdet), slow_axis=h(dg.sdet), origin_mm=tuple(1000.0 * x for x in h(dg.pix0_m)),
                 fpixels=det.fpixels, spixels=det.spixels, pixel_size_mm=float(det.pixel_size_mm),
                 thickness_um=float(det.thickness_um), attenuation_depth_um=det.attenuation_depth_um, name=name)
