"""Mosaic domains: random rotations whose angle scales with the mosaic spread.

The reference's generator draws, per domain, a rotation axis and an angle
fraction on the host (sequential, exact); the angle is spread * fraction and
the axis-angle matrix is built on the compute device, so that a spread given
as an array (a tensor with gradients, a tracer) reaches the image.  Domain 0
is the identity.  A plain-number spread keeps the reference's single-precision
rounding of the angle; an array spread uses spread * fraction in the geometry
dtype (the rounding would have no derivative).
"""

from __future__ import annotations

import numpy as np

from .._backend import is_scalar
from ..rng import ShuffledLehmer, mosaic_deviates
from .vectors import rotation_matrix_axis


def mosaic_matrices(g, spread_rad, n_domains: int, seed: int, stream: ShuffledLehmer | None = None):
    """``(n_domains, 3, 3)`` rotations on the geometry context ``g``.

    ``spread_rad`` is a Python number or a 0-d array of ``g``; ``seed`` is the
    reference's (negative) seed value.
    """
    axes, fractions = mosaic_deviates(n_domains, seed, stream)
    fractions[:1] = 0.0  # domain 0: a zero angle gives exactly the identity
    if is_scalar(spread_rad):
        # cap_angle for every domain: a single-precision product, as the reference rounds it
        angles = g.asarray((np.float32(float(spread_rad)) * fractions.astype(np.float32)).astype(np.float64))
    else:
        angles = spread_rad * g.asarray(fractions)
    return rotation_matrix_axis(g.xp, g.asarray(axes), angles)
