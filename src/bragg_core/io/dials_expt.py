"""DIALS experiment lists (``.expt``, JSON) in and out, without dxtbx.

Frames
------
The reference's lab frame has the beam along +x (MOSFLM convention: fast
+z, slow -y, spindle +z; ``specs/geometry.md``); DIALS's has the beam along
-z.  The two are related by one proper rotation (the one behind the
reference's ``DIALS_ORIGIN`` header line, ``1000 * (pix0_z, pix0_y, -pix0_x)``)::

    dials = M @ lab,   M = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]],   lab = M.T @ dials

so the MOSFLM frame becomes DIALS's usual one: beam (0, 0, -1), fast
(1, 0, 0), slow (0, -1, 0), spindle (1, 0, 0).  Every vector read or written
here (beam, panel axes and origins, rotation axis, cell vectors) goes through
:func:`lab_to_dials` / :func:`dials_to_lab`.

Models
------
* beam: ``direction`` points from the sample to the source (minus the
  reference's beam vector); ``polarization_normal`` is ``unit(b x p)``
  (``p`` the E-vector direction) and ``polarization_fraction = (1 + K)/2``
  with ``K`` the Kahn factor;
* detector: any number of panels; a panel's ``origin`` is the outer corner
  of pixel (0, 0) (the reference's ``pix0``), in mm.  Hierarchies are read
  by composing each group's frame with its children's local frames; written
  flat (every panel in lab coordinates under an identity root);
* goniometer and scan (rotation data): the spindle, and image ``i`` (1-based)
  covering ``[phi + (i - 1) osc, phi + i osc)``; a multi-axis goniometer is
  read as its scan axis between the fixed and setting rotations its other
  axes make;
* crystal: ``real_space_a/b/c`` (Angstrom) at the scan's zero angle, misset
  included; for stills, the orientation at ``phi`` (the one used);
* imageset: a template (``img_####.img``) for sequences, a list of files for stills.

Writing is here; reading is in :mod:`bragg_core.io.dials_expt_read` and the
frame conversion in ``_dials_frame``, both re-exported from this module.
"""

from __future__ import annotations

import json
import math
import os
from typing import Optional, Sequence

import numpy as np

from ._dials_frame import LAB_TO_DIALS, _unit, dials_to_lab, lab_to_dials
from .dials_expt_read import ExptContents, ExptFormatError, expt_reciprocal_vectors, parse_expt, read_expt

__all__ = ["ExptFormatError", "ExptContents", "LAB_TO_DIALS", "lab_to_dials", "dials_to_lab",
           "read_expt", "parse_expt", "write_expt", "expt_dict", "expt_reciprocal_vectors"]


# ----------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------


def _l(v):
    return [float(x) for x in np.asarray(v, dtype=np.float64).ravel()]


def _panel_dict(p, pedestal: float, name: str) -> dict:
    thick_mm = float(p.thickness_um) * 1e-3
    depth = p.attenuation_depth_um
    mu = 0.0
    if thick_mm > 0:
        mu = 1.0 / (float(depth) * 1e-3) if depth not in (None, 0.0) and math.isfinite(float(depth)) \
            else 1.0 / thick_mm  # the engine's default: mu = 1/thickness
    f = _unit(np.asarray(p.fast_axis, dtype=np.float64))
    s = _unit(np.asarray(p.slow_axis, dtype=np.float64))
    return {
        "name": p.name or name, "type": "SENSOR_PAD" if thick_mm > 0 else "SENSOR_CCD",
        "fast_axis": _l(lab_to_dials(f)), "slow_axis": _l(lab_to_dials(s)),
        "origin": _l(lab_to_dials(np.asarray(p.origin_mm, dtype=np.float64))),
        "raw_image_offset": [0, 0], "image_size": [int(p.fpixels), int(p.spixels)],
        "pixel_size": [float(p.pixel_size_mm)] * 2,
        # counts as written (the pedestal subtracted): -1 up to the 16-bit overload
        "trusted_range": [-1.0, 65535.0 - float(pedestal)],
        "thickness": thick_mm, "material": p.material or "", "mu": mu, "identifier": "", "mask": [],
        "gain": 1.0, "pedestal": float(pedestal),
        # the simulated spots carry no parallax shift to correct
        "px_mm_strategy": {"type": "SimplePxMmStrategy"},
    }


def _identity_group(children) -> dict:
    return {"name": "", "type": "", "fast_axis": [1.0, 0.0, 0.0], "slow_axis": [0.0, 1.0, 0.0],
            "origin": [0.0, 0.0, 0.0], "raw_image_offset": [0, 0], "image_size": [0, 0],
            "pixel_size": [0.0, 0.0], "trusted_range": [0.0, 0.0], "thickness": 0.0, "material": "", "mu": 0.0,
            "identifier": "", "mask": [], "gain": 1.0, "pedestal": 0.0,
            "px_mm_strategy": {"type": "SimplePxMmStrategy"}, "children": children}


def expt_dict(experiment, detector=None, *, n_images: int = 1, image_template: Optional[str] = None,
              image_files: Sequence[str] = (), pedestal: float = 40.0, rotation: Optional[bool] = None) -> dict:
    """The experiment list describing what ``experiment`` simulates (see :func:`write_expt`)."""
    from .._backend import get_context, to_numpy
    from ..geometry.crystal import cell_geometry
    from ..geometry.detector import detector_geometry
    from ..geometry.vectors import rotate_axis
    from ..panels import MultiPanelDetector, panel_from_detector
    from ..rng import ShuffledLehmer

    g = get_context(backend="numpy", dtype="float64")
    h = lambda v: np.asarray(to_numpy(v), dtype=np.float64)  # noqa: E731
    if detector is None:
        detector = MultiPanelDetector(panels=(panel_from_detector(experiment.detector),), base=experiment.detector)
    dg = detector_geometry(detector.base, g)
    beam, polar, spindle = h(dg.beam), h(dg.polar), h(dg.spindle)
    cr = experiment.crystal
    osc = cr.osc_deg
    if rotation is None:
        rotation = osc is not None and float(osc) != 0.0
    cell = cell_geometry(cr, experiment.beam.wavelength_A, g, ShuffledLehmer())
    real_A = h(cell.real_m) * 1e10  # rows a, b, c at phi = 0, misset included
    phi0 = float(cr.phi_start_deg)
    if not rotation and phi0 != 0.0:  # a still: the orientation used, at phi
        ang = g.asarray(math.radians(phi0))
        real_A = np.stack([h(rotate_axis(g.xp, g.asarray(real_A[i]), g.asarray(spindle), ang)) for i in range(3)])
    kahn = float(experiment.beam.kahn_factor)
    pol_normal = _unit(np.cross(beam, polar))
    pdicts = [_panel_dict(p, pedestal, f"Panel{i}" if len(detector.panels) > 1 else "Panel")
              for i, p in enumerate(detector.panels)]
    e = {"__id__": "Experiment", "identifier": "", "beam": 0, "detector": 0, "imageset": 0, "crystal": 0}
    doc = {
        "__id__": "ExperimentList",
        "experiment": [e],
        "beam": [{
            "direction": _l(lab_to_dials(-beam)), "wavelength": float(experiment.beam.wavelength_A),
            "divergence": 0.0, "sigma_divergence": 0.0, "polarization_normal": _l(lab_to_dials(pol_normal)),
            "polarization_fraction": (1.0 + kahn) / 2.0, "flux": 0.0, "transmission": 1.0,
        }],
        "detector": [{"panels": pdicts, "hierarchy": _identity_group([{"panel": i} for i in range(len(pdicts))])}],
        "goniometer": [], "scan": [],
        "crystal": [{"__id__": "crystal", "real_space_a": _l(lab_to_dials(real_A[0])),
                     "real_space_b": _l(lab_to_dials(real_A[1])), "real_space_c": _l(lab_to_dials(real_A[2])),
                     "space_group_hall_symbol": " P 1"}],
        "profile": [], "scaling_model": [],
    }
    multi = len(pdicts) > 1
    if rotation:
        e["goniometer"], e["scan"] = 0, 0
        doc["goniometer"] = [{"rotation_axis": _l(lab_to_dials(spindle)),
                              "fixed_rotation": _l(np.eye(3)), "setting_rotation": _l(np.eye(3))}]
        doc["scan"] = [{"image_range": [1, int(n_images)], "batch_offset": 0,
                        "oscillation": [phi0, float(osc)], "exposure_time": [1.0] * int(n_images),
                        "epochs": [float(i) for i in range(int(n_images))], "valid_image_ranges": {}}]
        doc["imageset"] = [{"__id__": "ImageSequence", "template": image_template or "", "mask": None,
                            "gain": None, "pedestal": None, "dx": None, "dy": None,
                            "params": {"dynamic_shadowing": "Auto", "multi_panel": multi}}]
    else:
        doc["imageset"] = [{"__id__": "ImageSet", "images": list(image_files), "mask": None, "gain": None,
                            "pedestal": None, "dx": None, "dy": None,
                            "params": {"dynamic_shadowing": "Auto", "multi_panel": multi}}]
    return doc


def write_expt(path: str, experiment, detector=None, **kwargs) -> None:
    """Write the experiment list describing what ``experiment`` (with ``detector``'s panels) simulates.

    ``n_images``, ``image_template`` (``img_####.img``; made absolute) or
    ``image_files``, ``pedestal`` (the ADC offset of the written images) and
    ``rotation`` (default: an oscillation is given) as in :func:`expt_dict`.
    Written atomically.
    """
    from .atomic import atomic_write

    tpl = kwargs.get("image_template")
    if tpl:
        kwargs["image_template"] = os.path.abspath(tpl)
    if kwargs.get("image_files"):
        kwargs["image_files"] = [os.path.abspath(f) for f in kwargs["image_files"]]
    doc = expt_dict(experiment, detector, **kwargs)
    atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode())
