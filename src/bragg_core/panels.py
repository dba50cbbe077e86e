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

:func:`simulate_panels` renders every panel (a loop over panels; each panel
is rendered in tiles with the usual memory bound) and returns an array of
shape ``(panel, slow, fast)`` when the panels share a size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

import numpy as np

from .experiment import Detector, Experiment, ExperimentError

__all__ = ["Panel", "MultiPanelDetector", "PanelError", "panel_detector", "panel_from_detector",
           "simulate_panels", "PanelSimulation", "panel_stats"]


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


@dataclass
class PanelSimulation:
    """Images of every panel and how each was made."""

    images: list            # one (slow, fast) array per panel, in the working namespace
    simulations: list       # the per-panel Simulation objects
    detector: MultiPanelDetector

    @property
    def image(self):
        """(panel, slow, fast) when the panels share a size (the working namespace)."""
        from ._backend import get_context

        shapes = {tuple(im.shape) for im in self.images}
        if len(shapes) != 1:
            raise PanelError("panels of different sizes have no common (panel, slow, fast) array; use .images")
        xp = get_context(self.images[0]).xp
        return xp.stack(self.images, axis=0)

    @property
    def stats(self):
        return panel_stats(self)


def _as_multipanel(experiment: Experiment, detector) -> MultiPanelDetector:
    if detector is None:
        return MultiPanelDetector(panels=(panel_from_detector(experiment.detector),), base=experiment.detector)
    if isinstance(detector, Panel):
        detector = (detector,)
    if isinstance(detector, MultiPanelDetector):
        return detector
    return MultiPanelDetector(panels=tuple(detector), base=experiment.detector)


def simulate_panels(experiment: Experiment, detector: MultiPanelDetector | Sequence[Panel] | None = None,
                    **kwargs) -> PanelSimulation:
    """Render every panel of ``detector`` (default: ``experiment.detector`` as one panel).

    Keyword arguments go to :func:`bragg_core.simulate` (backend, device,
    dtype, memory_budget_bytes, progress).  Beam and crystal are shared; each
    panel is ``experiment`` with its detector replaced by the panel's
    (:func:`panel_detector`).  Without ``detector`` the experiment's own
    detector is rendered unchanged, so the single-panel result is
    :func:`bragg_core.simulate`'s, bit for bit.
    """
    from .engine.run import run_single as simulate

    if detector is None and isinstance(experiment.detector, MultiPanelDetector):
        detector = experiment.detector  # an Experiment holding several panels
        experiment = Experiment(beam=experiment.beam, detector=detector.base, crystal=experiment.crystal)
    if detector is None:
        sims = [simulate(experiment, **kwargs)]
        mp = _as_multipanel(experiment, None)
    else:
        mp = _as_multipanel(experiment, detector)
        sims = [simulate(Experiment(beam=experiment.beam, detector=d, crystal=experiment.crystal), **kwargs)
                for d in mp.detectors()]
    return PanelSimulation(images=[s.image for s in sims], simulations=sims, detector=mp)


@dataclass(frozen=True)
class PanelStats:
    """Statistics over every panel, as the single-panel ImageStats (position: panel, fast, slow in m)."""

    max_I: float
    max_I_panel: int
    max_I_fast_m: float
    max_I_slow_m: float
    mean: float
    rms: float
    rmsd: float
    n_pixels: int


def panel_stats(psim: PanelSimulation) -> PanelStats:
    """max, mean, rms, rmsd over all panels' pixels (sums in double of float32 values).

    Each panel's own statistics come from its Simulation; they are combined
    with the pixel counts (the rmsd from the panels' sums of squares about the
    common mean), so no panel is copied.
    """

    n_tot, nr_tot, s_tot, ss_tot = 0, 0, 0.0, 0.0
    best = (-1.0, 0, 0.0, 0.0)
    per = []
    for k, sim in enumerate(psim.simulations):
        st = sim.stats
        n, nr = _counted(tuple(sim.image.shape), sim.setup)
        per.append((n, nr, st))
        n_tot += n
        nr_tot += nr
        s_tot += st.mean * n
        ss_tot += st.rms ** 2 * (max(n, 2) - 1)
        if st.max_I > best[0]:
            best = (st.max_I, k, st.max_I_fast_m, st.max_I_slow_m)
    if len(per) == 1:  # one panel: its own statistics, unchanged
        st = per[0][2]
        return PanelStats(max_I=st.max_I, max_I_panel=0, max_I_fast_m=st.max_I_fast_m,
                          max_I_slow_m=st.max_I_slow_m, mean=st.mean, rms=st.rms, rmsd=st.rmsd, n_pixels=n_tot)
    mean = s_tot / max(n_tot, 1)
    rms = math.sqrt(ss_tot / (max(n_tot, 2) - 1))
    dev2 = 0.0
    for (n, nr, st) in per:
        # over the panel's region (masked pixels count as zero, as in the single-panel rmsd):
        # sum (x - M)^2 = sum (x - m)^2 + 2 (m - M) sum (x - m) + nr (m - M)^2, with sum (x - m) = (n - nr) m
        dm = st.mean - mean
        dev2 += st.rmsd ** 2 * (max(nr, 2) - 1) + 2.0 * dm * (n - nr) * st.mean + nr * dm * dm
    rmsd = math.sqrt(dev2 / (max(nr_tot, 2) - 1))
    return PanelStats(max_I=max(best[0], 0.0), max_I_panel=best[1], max_I_fast_m=best[2], max_I_slow_m=best[3],
                      mean=mean, rms=rms, rmsd=rmsd, n_pixels=n_tot)


def _counted(shape, setup) -> tuple[int, int]:
    """(pixels the mean and rms count, pixels the rmsd counts): unmasked ROI pixels, all ROI pixels."""
    sp, fp = shape
    xmin, xmax, ymin, ymax = setup.roi
    x0, x1, y0, y1 = max(xmin, 0), min(xmax, fp - 1), max(ymin, 0), min(ymax, sp - 1)
    if x1 < x0 or y1 < y0:
        return 0, 0
    nr = (x1 - x0 + 1) * (y1 - y0 + 1)
    if setup.mask is None:
        return nr, nr
    from ._backend import to_numpy

    return int(np.count_nonzero(np.asarray(to_numpy(setup.mask))[y0:y1 + 1, x0:x1 + 1])), nr
