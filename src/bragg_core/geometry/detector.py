"""Detector placement: conventions, pivots, rotations, pix0 and derived centres.

Positions are in metres, angles in radians.  The procedure follows the
reference step by step (``specs/geometry.md``):

1. the convention fixes the basis vectors, beam and polarization vectors,
   spindle and two-theta axes, the default beam centre and the pivot;
2. ``ratio`` = beam . (odet rotated about x, y, z) turns the distance into a
   close distance (or back, with ``close_distance_mm``);
3. under the SAMPLE pivot pix0 is placed from the near point and then swung
   with the detector; under the BEAM pivot pix0 is placed after the rotation
   so that the direct beam stays at (Fbeam, Sbeam);
4. the near point, the beam position, ORGX/ORGY and the DIALS origin are
   derived from the final pix0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import units
from ..experiment import Detector
from .vectors import cross, dot, rotate_axis, rotate_xyz, unit

# basis vectors, beam, polarization, spindle and two-theta axis per convention
CONVENTION_VECTORS = {
    "mosflm": dict(fdet=(0, 0, 1), sdet=(0, -1, 0), odet=(1, 0, 0), beam=(1, 0, 0),
                   polar=(0, 0, 1), spindle=(0, 0, 1), twotheta=(0, 0, -1)),
    "denzo": dict(fdet=(0, 0, 1), sdet=(0, -1, 0), odet=(1, 0, 0), beam=(1, 0, 0),
                  polar=(0, 0, 1), spindle=(0, 0, 1), twotheta=(0, 0, -1)),
    "adxv": dict(fdet=(1, 0, 0), sdet=(0, -1, 0), odet=(0, 0, 1), beam=(0, 0, 1),
                 polar=(1, 0, 0), spindle=(1, 0, 0), twotheta=(-1, 0, 0)),
    "xds": dict(fdet=(1, 0, 0), sdet=(0, 1, 0), odet=(0, 0, 1), beam=(0, 0, 1),
                polar=(1, 0, 0), spindle=(1, 0, 0), twotheta=(1, 0, 0)),
    "dials": dict(fdet=(1, 0, 0), sdet=(0, 1, 0), odet=(0, 0, 1), beam=(0, 0, 1),
                  polar=(0, 1, 0), spindle=(0, 1, 0), twotheta=(0, 1, 0)),
    # custom starts from these and takes whatever vectors the user gives
    "custom": dict(fdet=(0, 0, 1), sdet=(0, -1, 0), odet=(1, 0, 0), beam=(1, 0, 0),
                   polar=(0, 0, 1), spindle=(0, 0, 1), twotheta=(0, 1, 0)),
}
_CONVENTION_PIVOT = {"mosflm": "beam", "denzo": "beam", "adxv": "beam", "xds": "sample", "dials": "sample"}


@dataclass(frozen=True)
class DetectorGeometry:
    """Detector frame after all rotations (arrays of the geometry context)."""

    fdet: Any
    sdet: Any
    odet: Any
    beam: Any
    polar: Any
    spindle: Any
    pix0_m: Any
    distance_m: Any
    close_distance_m: Any
    pixel_size_m: Any
    fpixels: int
    spixels: int
    pivot: str
    convention: str
    odet_regenerated: bool
    # reported beam centres (metres unless stated)
    Xbeam_m: Any
    Ybeam_m: Any
    Fbeam_m: Any
    Sbeam_m: Any
    Xclose_m: Any
    Yclose_m: Any
    Fclose_m: Any
    Sclose_m: Any
    orgx_px: Any
    orgy_px: Any
    dials_origin_mm: Any
    detsize_f_m: Any
    detsize_s_m: Any
    twotheta_rad: Any


def _opt(det, name, idx):
    v = getattr(det, name)
    return None if v is None else v[idx]


def detector_geometry(det: Detector, g) -> DetectorGeometry:
    """Place and orient the detector; ``g`` is the geometry :class:`Context`."""
    xp = g.xp
    A = g.asarray
    conv = det.convention
    px = units.mm_to_m(A(det.pixel_size_mm))
    detsize_f = px * det.fpixels
    detsize_s = px * det.spixels

    # near point (Fclose, Sclose): from ORGX/ORGY, else the detector centre
    orgx, orgy = _opt(det, "xds_origin_px", 0), _opt(det, "xds_origin_px", 1)
    Fclose = (A(orgx) - 0.5) * px if orgx is not None else detsize_f / 2
    Sclose = (A(orgy) - 0.5) * px if orgy is not None else detsize_s / 2
    xc, yc = _opt(det, "close_point_mm", 0), _opt(det, "close_point_mm", 1)
    Xclose = units.mm_to_m(A(xc)) if xc is not None else Fclose
    Yclose = units.mm_to_m(A(yc)) if yc is not None else Sclose
    xb, yb = _opt(det, "beam_center_mm", 0), _opt(det, "beam_center_mm", 1)
    Xbeam = units.mm_to_m(A(xb)) if xb is not None else None
    Ybeam = units.mm_to_m(A(yb)) if yb is not None else None

    vecs = dict(CONVENTION_VECTORS[conv])
    if conv == "custom":
        for key, name in (("fdet", "fdet_vector"), ("sdet", "sdet_vector"), ("odet", "odet_vector"),
                          ("beam", "beam_vector"), ("polar", "polar_vector"),
                          ("spindle", "spindle_axis"), ("twotheta", "twotheta_axis")):
            if getattr(det, name) is not None:
                vecs[key] = getattr(det, name)
    V = {k: A(v) for k, v in vecs.items()}

    if conv == "adxv":
        Xbeam = (detsize_f + px) / 2 if Xbeam is None else Xbeam
        Ybeam = (detsize_s - px) / 2 if Ybeam is None else Ybeam
        Fbeam, Sbeam = Xbeam, detsize_s - Ybeam
    elif conv in ("mosflm", "denzo"):
        Xbeam = (detsize_s + px) / 2 if Xbeam is None else Xbeam
        Ybeam = (detsize_f + px) / 2 if Ybeam is None else Ybeam
        half = 0.5 * px if conv == "mosflm" else 0.0 * px
        Fbeam, Sbeam = Ybeam + half, Xbeam + half
    else:  # xds, dials, custom
        Xbeam = Xclose if Xbeam is None else Xbeam
        Ybeam = Yclose if Ybeam is None else Ybeam
        Fbeam, Sbeam = Xbeam, Ybeam
        if conv == "custom":
            Fclose, Sclose = Xbeam, Ybeam
    pivot = _CONVENTION_PIVOT.get(conv) or (det.pivot or "beam")

    # unit vectors; odet is regenerated from f x s when it is not of unit length
    beam = unit(xp, V["beam"])
    fdet = unit(xp, V["fdet"])
    sdet = unit(xp, V["sdet"])
    odet_raw = V["odet"]
    odet_len = _host_norm(vecs["odet"])
    odet_regenerated = odet_len != 1.0
    odet = unit(xp, cross(xp, fdet, sdet)) if odet_regenerated else unit(xp, odet_raw)
    polar = unit(xp, V["polar"])
    spindle = unit(xp, V["spindle"])
    tt_axis = V["twotheta"]  # deliberately not normalised, as in the reference

    rot = det.rotation_deg
    rx, ry, rz = (units.deg_to_rad(A(rot[i])) for i in range(3))
    twotheta = units.deg_to_rad(A(det.twotheta_deg))

    ratio = dot(xp, beam, rotate_xyz(xp, odet, rx, ry, rz))
    tiny = 2.2250738585072014e-308  # DBL_MIN stands in for a zero ratio
    ratio = xp.where(ratio == 0, xp.asarray(tiny, dtype=ratio.dtype, device=g.device), ratio)
    if det.close_distance_mm is not None:
        close_distance = units.mm_to_m(A(det.close_distance_mm))
    else:
        close_distance = xp.abs(ratio * units.mm_to_m(A(det.distance_mm)))
    distance = close_distance / ratio

    if pivot == "sample":
        pix0 = -Fclose * fdet - Sclose * sdet + close_distance * odet
        pix0 = rotate_axis(xp, rotate_xyz(xp, pix0, rx, ry, rz), tt_axis, twotheta)

    fdet = rotate_axis(xp, rotate_xyz(xp, fdet, rx, ry, rz), tt_axis, twotheta)
    sdet = rotate_axis(xp, rotate_xyz(xp, sdet, rx, ry, rz), tt_axis, twotheta)
    odet = rotate_axis(xp, rotate_xyz(xp, odet, rx, ry, rz), tt_axis, twotheta)

    if pivot == "beam":
        pix0 = -Fbeam * fdet - Sbeam * sdet + distance * beam

    Fclose = -dot(xp, pix0, fdet)
    Sclose = -dot(xp, pix0, sdet)
    close_distance = dot(xp, pix0, odet)
    to_beam = close_distance / ratio * beam - pix0
    Fbeam = dot(xp, fdet, to_beam)
    Sbeam = dot(xp, sdet, to_beam)
    distance = close_distance / ratio
    orgx_out = Fclose / px + 0.5
    orgy_out = Sclose / px + 0.5
    dials = units.m_to_mm(xp.stack([pix0[2], pix0[1], -pix0[0]]))

    return DetectorGeometry(
        fdet=fdet, sdet=sdet, odet=odet, beam=beam, polar=polar, spindle=spindle,
        pix0_m=pix0, distance_m=distance, close_distance_m=close_distance, pixel_size_m=px,
        fpixels=det.fpixels, spixels=det.spixels, pivot=pivot, convention=conv,
        odet_regenerated=odet_regenerated,
        Xbeam_m=Xbeam, Ybeam_m=Ybeam, Fbeam_m=Fbeam, Sbeam_m=Sbeam,
        Xclose_m=Xclose, Yclose_m=Yclose, Fclose_m=Fclose, Sclose_m=Sclose,
        orgx_px=orgx_out, orgy_px=orgy_out, dials_origin_mm=dials,
        detsize_f_m=detsize_f, detsize_s_m=detsize_s, twotheta_rad=twotheta,
    )


def _host_norm(v) -> float:
    """Length of a user vector from a host copy (decides odet regeneration).

    A traced vector has no host copy; it is taken as a unit vector (not regenerated).
    """
    from .._backend import host_scalar

    vals = [host_scalar(v[i]) for i in range(3)]
    if None in vals:
        return 1.0
    return math.sqrt(sum(x * x for x in vals))
