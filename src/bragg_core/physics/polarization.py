"""Kahn polarization factor of the scattered intensity (dimensionless)."""

from __future__ import annotations

from .._backend import is_scalar
from ..geometry.vectors import cross, dot, unit


def kahn_factor(xp, incident, diffracted, e_axis, kahn):
    """P = (1 + cos^2 2theta - K cos(2 psi) sin^2 2theta) / 2.

    ``incident`` and ``diffracted`` are unit vectors (broadcastable, last axis
    xyz); psi is the azimuth of the diffracted ray about the incident beam,
    measured from the E-vector plane defined by ``e_axis``.  cos(2 psi) is
    formed from the projections directly, which stays finite (and
    differentiable) when the ray lies along the beam.
    """
    b_in, e_in = polarization_frame(xp, incident, e_axis)
    return kahn_from_projections(xp, dot(xp, incident, diffracted), dot(xp, diffracted, e_in),
                                 dot(xp, diffracted, b_in), kahn)


def polarization_frame(xp, incident, e_axis):
    """Unit vectors (B, E) spanning the plane normal to the incident beam; E is nearest ``e_axis``."""
    b_in = unit(xp, cross(xp, e_axis, incident))
    e_in = unit(xp, cross(xp, incident, b_in))
    return b_in, e_in


def kahn_from_projections(xp, c2t, e_out, b_out, kahn):
    """The Kahn factor from cos 2theta and the diffracted ray's projections on E and B."""
    c2t2 = c2t * c2t
    s2t2 = 1.0 - c2t2
    r2 = e_out * e_out + b_out * b_out
    safe = xp.where(r2 == 0, xp.ones_like(r2), r2)
    cos2psi = xp.where(r2 == 0, xp.ones_like(r2), (e_out * e_out - b_out * b_out) / safe)
    return 0.5 * (1.0 + c2t2 - kahn * cos2psi * s2t2)


def is_unpolarised(kahn) -> bool:
    """True for a plain Kahn factor of 0 (never for an array that may carry gradients)."""
    return is_scalar(kahn) and kahn == 0


def unpolarised(c2t):
    """The factor of an unpolarised beam, (1 + cos^2 2theta) / 2: the azimuth drops out."""
    return 0.5 * (1.0 + c2t * c2t)


def kahn_from_components(xp, diffracted, incident, frame, kahn):
    """The Kahn factor from x, y, z components (broadcasting arrays) of the rays and the frame.

    ``diffracted`` and ``incident`` are (x, y, z) triples; ``frame`` is the
    pair of triples (B, E) of :func:`polarization_frame`.
    """
    (bx, by, bz), (ex, ey, ez) = frame
    d = diffracted
    c2t = d[0] * incident[0] + d[1] * incident[1] + d[2] * incident[2]
    if is_unpolarised(kahn):
        return unpolarised(c2t)
    return kahn_from_projections(xp, c2t, d[0] * ex + d[1] * ey + d[2] * ez,
                                 d[0] * bx + d[1] * by + d[2] * bz, kahn)
