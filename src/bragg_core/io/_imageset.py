"""What image files (NeXus NXmx, full CBF) record about a simulation, and the frames they use.

:class:`ImageSetGeometry` is the geometry a written series carries: every
panel (lab frame, mm, as :class:`bragg_core.panels.Panel`), the shared beam
direction, polarization and spindle, the wavelength and fluence, and each
image's start angle and the oscillation width.  Writers build it from an
:class:`~bragg_core.experiment.Experiment` (and optionally a
:class:`~bragg_core.panels.MultiPanelDetector`); readers return it, with an
``Experiment`` whose detector is the first panel.

Frames
------
The lab frame is the reference's (beam along +x for MOSFLM).  DIALS and
imgCIF use ``dials = LAB_TO_DIALS @ lab`` (:mod:`bragg_core.io.dials_expt`);
NeXus uses the McStas frame, ``mcstas = diag(-1, 1, -1) @ dials`` (beam along
+z, y up).  Both DIALS readers take the beam along the file frame's axis
(McStas +z, imgCIF -z), so a beam that is not along the lab's +x is first
turned onto it by the smallest rotation, applied to every vector; the file
then holds the same experiment in a rotated lab frame, and a reader gives it
back in that frame (beam along +x).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional

import numpy as np

from .dials_expt import LAB_TO_DIALS

__all__ = ["ImageSetGeometry", "geometry_from_experiment", "LAB_TO_MCSTAS", "beam_alignment"]

DIALS_TO_MCSTAS = np.diag([-1.0, 1.0, -1.0])
LAB_TO_MCSTAS = DIALS_TO_MCSTAS @ LAB_TO_DIALS


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def beam_alignment(beam_lab) -> np.ndarray:
    """The smallest rotation taking ``beam_lab`` onto the lab's +x (the identity when it already is)."""
    b = _unit(beam_lab)
    x = np.array([1.0, 0.0, 0.0])
    if np.allclose(b, x, rtol=0, atol=1e-15):
        return np.eye(3)
    v = np.cross(b, x)
    s, c = float(np.linalg.norm(v)), float(b @ x)
    if s < 1e-15:  # anti-parallel: half a turn about z
        return np.diag([-1.0, -1.0, 1.0])
    k = v / s
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * K + (1 - c) * (K @ K)


@dataclass
class ImageSetGeometry:
    """The geometry of a written image set (lab frame, mm, degrees, Angstrom).

    ``detector`` is a :class:`~bragg_core.panels.MultiPanelDetector` (one
    panel or several); ``beam``, ``polar`` and ``spindle`` are unit vectors;
    ``angles_deg`` holds each image's start angle and ``osc_deg`` the width
    (None for stills); ``wavelengths_A`` one wavelength per image when they
    differ (shots), else None.
    """

    experiment: Any
    detector: Any
    beam: np.ndarray
    polar: np.ndarray
    spindle: np.ndarray
    wavelength_A: float
    fluence_photons_per_m2: float
    beam_size_mm: float
    kahn_factor: float
    angles_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    osc_deg: Optional[float] = None
    wavelengths_A: Optional[np.ndarray] = None
    saturation_value: Optional[float] = None
    underload_value: Optional[float] = None
    sensor_material: str = ""
    sensor_thickness_um: float = 0.0
    spectrum_A: Optional[np.ndarray] = None           # the beam's distinct wavelengths (dispersion, source file)
    spectrum_weights: Optional[np.ndarray] = None     # their relative weights (sources per wavelength)

    @property
    def n_images(self) -> int:
        return int(len(self.angles_deg))

    @property
    def panels(self):
        return self.detector.panels

    def panel_vectors(self, i: int):
        """(fast, slow, origin_mm) of panel ``i``, float64, axes normalised."""
        p = self.detector.panels[i]
        return (_unit(p.fast_axis), _unit(p.slow_axis), np.asarray(p.origin_mm, dtype=np.float64))

    def beam_distance_mm(self, i: int = 0) -> float:
        """Distance from the sample along the beam to panel ``i``'s plane."""
        f, s, o = self.panel_vectors(i)
        n = _unit(np.cross(f, s))
        r = float(self.beam @ n)
        return float(o @ n) / r if abs(r) > 1e-12 else float("nan")

    def beam_centre_px(self, i: int = 0) -> tuple[float, float]:
        """(fast, slow) pixel coordinates (pixel edges at integers) where the beam meets panel ``i``."""
        f, s, o = self.panel_vectors(i)
        q = self.beam_distance_mm(i) * self.beam - o
        G = np.array([[f @ f, f @ s], [s @ f, s @ s]])
        a, b = np.linalg.solve(G, np.array([f @ q, s @ q]))
        px = float(self.detector.panels[i].pixel_size_mm)
        return float(a / px), float(b / px)

    def file_frame(self) -> np.ndarray:
        """Lab -> lab rotation that puts the beam along +x (applied before the fixed frame change)."""
        return beam_alignment(self.beam)


def geometry_from_experiment(experiment, detector=None, *, n_images: int = 1, rotation: Optional[bool] = None,
                             saturation_value=None, underload_value=None,
                             sensor_material: str = "") -> ImageSetGeometry:
    """The geometry of ``n_images`` images of ``experiment`` (panels of ``detector`` when given).

    Image ``i`` starts at ``phi_start + i * osc`` for a rotation (the
    default when the crystal has a non-zero ``osc_deg``), at ``phi_start``
    for stills.
    """
    from ..panels import MultiPanelDetector, Panel, panel_from_detector, shared_vectors

    if detector is None:
        detector = MultiPanelDetector(panels=(panel_from_detector(experiment.detector),), base=experiment.detector)
    elif isinstance(detector, Panel):
        detector = MultiPanelDetector(panels=(detector,), base=experiment.detector)
    elif not isinstance(detector, MultiPanelDetector):
        detector = MultiPanelDetector(panels=tuple(detector), base=experiment.detector)
    beam, polar, spindle = shared_vectors(detector.base)
    cr = experiment.crystal
    osc = cr.osc_deg
    if rotation is None:
        rotation = osc is not None and float(osc) != 0.0
    phi0 = float(cr.phi_start_deg)
    n = int(n_images)
    if rotation:
        if osc is None:
            raise ValueError("a rotation series needs an oscillation (Crystal.osc_deg, -osc)")
        angles = phi0 + float(osc) * np.arange(n, dtype=np.float64)
    else:
        angles = np.full(n, phi0)
    b = experiment.beam
    p0 = detector.panels[0]
    spectrum, weights = beam_spectrum(b, beam, polar)
    return ImageSetGeometry(
        experiment=experiment, detector=detector, beam=_unit(beam), polar=_unit(polar), spindle=_unit(spindle),
        wavelength_A=float(b.wavelength_A), fluence_photons_per_m2=float(b.fluence_photons_per_m2),
        beam_size_mm=float(b.beam_size_mm), kahn_factor=float(b.kahn_factor), angles_deg=angles,
        osc_deg=float(osc) if rotation else None, saturation_value=saturation_value,
        underload_value=underload_value, sensor_material=sensor_material or p0.material or "Si",
        sensor_thickness_um=float(p0.thickness_um), spectrum_A=spectrum, spectrum_weights=weights)


def beam_spectrum(beam, beam_vec, polar_vec):
    """(distinct wavelengths in Angstrom, weights) of the beam's sources, or (None, None) for one wavelength."""
    from .._backend import get_context, to_numpy
    from ..geometry.sources import beam_sources

    g = get_context(backend="numpy", dtype="float64")
    src = beam_sources(beam, g.asarray(np.asarray(beam_vec, dtype=np.float64)),
                       g.asarray(np.asarray(polar_vec, dtype=np.float64)), g)
    lam = np.asarray(to_numpy(src.wavelength_m), dtype=np.float64) * 1e10
    values, counts = np.unique(lam, return_counts=True)
    if values.size < 2:
        return None, None
    return values, counts.astype(np.float64) / counts.sum()


def experiment_from_geometry(geom: ImageSetGeometry, base=None):
    """An Experiment for ``geom`` (first panel as a custom-convention detector), ``base`` for the rest."""
    from ..experiment import Experiment
    from ..panels import MultiPanelDetector, panel_detector

    base = base or Experiment()
    bdet = base.detector
    shared = replace(bdet, convention="custom", pivot="beam", beam_vector=tuple(geom.beam),
                     polar_vector=tuple(geom.polar), spindle_axis=tuple(geom.spindle), fdet_vector=None,
                     sdet_vector=None, odet_vector=None, twotheta_axis=None, rotation_deg=(0.0, 0.0, 0.0),
                     twotheta_deg=0.0, beam_center_mm=None, close_point_mm=None, xds_origin_px=None,
                     close_distance_mm=None, roi=None, mask=None)
    mp = MultiPanelDetector(panels=geom.detector.panels, base=shared)
    first = panel_detector(mp.panels[0], shared)
    phi0 = float(geom.angles_deg[0]) if geom.n_images else 0.0
    cr = replace(base.crystal, phi_start_deg=phi0, osc_deg=geom.osc_deg)
    beam = replace(base.beam, wavelength_A=geom.wavelength_A, fluence_photons_per_m2=geom.fluence_photons_per_m2,
                   beam_size_mm=geom.beam_size_mm, kahn_factor=geom.kahn_factor)
    geom.detector = mp
    geom.experiment = Experiment(beam=beam, detector=first, crystal=cr)
    return geom.experiment

