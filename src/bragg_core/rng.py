"""The reference's random-number stream, reproduced exactly (host side, NumPy).

Mosaic-domain orientations and random crystal missetting must equal the
reference's for the same seeds, so the uniform generator is the classic
minimal-standard Lehmer generator with a 32-entry Bays-Durham shuffle table
(multiplier 16807, modulus 2**31 - 1, Schrage factorisation).  As in the
reference, one shuffle table is shared by every stream of a run; a stream
re-seeds it whenever it is called with a non-positive seed.

These routines run once per simulation on the host; their results are moved
to the compute device by the caller.  Many deviates at once
(:meth:`ShuffledLehmer.uniforms`) cost one NumPy pass for the Lehmer states
(jumping ahead by powers of the multiplier) and one tight loop for the
shuffle table, whose every step depends on the previous output.
"""

from __future__ import annotations

import math
from itertools import repeat

import numpy as np

_IA = 16807
_IM = 2147483647
_IQ = 127773
_IR = 2836
_NTAB = 32
_NDIV = 1 + (_IM - 1) // _NTAB
_AM = 1.0 / _IM
_RNMX = 1.0 - 1.2e-7


def _lehmer(state: int) -> int:
    k = int(state / _IQ)  # C integer division truncates toward zero
    state = _IA * (state - k * _IQ) - _IR * k
    if state < 0:
        state += _IM
    return state


class ShuffledLehmer:
    """Uniform deviates on (0, 1) as float32, bit-equal to the reference stream.

    ``seed`` follows the reference's convention: a non-positive value
    (re)initialises the shuffle table from ``-seed``.
    """

    def __init__(self) -> None:
        self._iy = 0
        self._iv = [0] * _NTAB

    def uniform(self, seed: list[int]) -> np.float32:
        """Next deviate; ``seed`` is a one-element list updated in place."""
        idum = seed[0]
        if idum <= 0 or not self._iy:
            idum = 1 if -idum < 1 else -idum
            for j in range(_NTAB + 7, -1, -1):
                idum = _lehmer(idum)
                if j < _NTAB:
                    self._iv[j] = idum
            self._iy = self._iv[0]
        idum = _lehmer(idum)
        j = self._iy // _NDIV
        self._iy = self._iv[j]
        self._iv[j] = idum
        seed[0] = idum
        temp = np.float32(_AM * self._iy)  # double product, stored as float
        return np.float32(_RNMX) if float(temp) > _RNMX else temp


def _uniforms(self, seed: list[int], n: int) -> np.ndarray:
    """The next ``n`` deviates as float32, equal to ``n`` calls of :meth:`ShuffledLehmer.uniform`.

    One tight loop of integer steps (the shuffle makes every output depend on
    the previous one), then the float conversion for all of them at once.
    """
    out = np.empty(n, dtype=np.float32)
    if n == 0:
        return out
    out[0] = self.uniform(seed)  # (re)seeds the table where the single call would
    x, iy, iv = seed[0], self._iy, list(self._iv)
    if n == 1:
        return out
    if not (0 < x < _IM and iy and all(0 < v < _IM for v in iv)):
        # a degenerate seed (a multiple of the modulus): the single steps reseed as they go
        for k in range(1, n):
            out[k] = self.uniform(seed)
        return out
    ys = [0] * (n - 1)
    a, m, shift = _IA, _IM, _NDIV.bit_length() - 1  # _NDIV is 2**26: j = iy // _NDIV = iy >> 26
    for k in range(n - 1):
        x = x * a % m  # Schrage's step computes exactly this for 0 < x < m
        j = iy >> shift
        iy = iv[j]
        iv[j] = x
        ys[k] = iy
    self._iy, self._iv, seed[0] = iy, iv, x
    temp = (_AM * np.array(ys, dtype=np.float64)).astype(np.float32)
    out[1:] = np.where(temp.astype(np.float64) > _RNMX, np.float32(_RNMX), temp)
    return out


ShuffledLehmer.uniforms = _uniforms


def cap_deviates(stream: ShuffledLehmer, seed: list[int]) -> tuple[tuple[float, float, float], float]:
    """Three deviates r1, r2, r3 on [-1, 1] as one cap rotation's axis and angle fraction.

    The axis is (sqrt(1-r2^2) sin(pi r1), sqrt(1-r2^2) cos(pi r1), r2); the
    fraction (1 - r3^2)^(1/3) is evaluated in single precision as the
    reference does (its angle is cap * fraction, see :func:`cap_angle`).
    """
    r1 = 2.0 * float(stream.uniform(seed)) - 1.0
    r2 = 2.0 * float(stream.uniform(seed)) - 1.0
    r3 = 2.0 * float(stream.uniform(seed)) - 1.0
    xyrad = math.sqrt(1.0 - r2 * r2)
    # single-precision power, correctly rounded (evaluate in double, round once)
    base = float(np.float32(1.0 - r3 * r3))
    root = float(np.float32(base ** float(np.float32(1.0 / 3.0))))
    return (xyrad * math.sin(math.pi * r1), xyrad * math.cos(math.pi * r1), r2), root


def cap_angle(cap_rad: float, fraction: float) -> float:
    """The rotation angle cap * fraction, rounded to single precision as the reference does."""
    return float(np.float32(np.float32(cap_rad) * np.float32(fraction)))


def spherical_cap_rotation(stream: ShuffledLehmer, seed: list[int], cap_rad: float) -> np.ndarray:
    """A random rotation (3x3, float64) uniform over a spherical cap.

    Axis and angle from :func:`cap_deviates` and :func:`cap_angle`;
    ``cap_rad`` = pi/2 covers the whole sphere.
    """
    (v1, v2, v3), root = cap_deviates(stream, seed)
    rot = cap_angle(cap_rad, root)
    c = math.cos(rot)
    s = math.sin(rot)
    t = 1.0 - c
    return np.array(
        [
            [c + t * v1 * v1, t * v1 * v2 - s * v3, t * v1 * v3 + s * v2],
            [t * v1 * v2 + s * v3, c + t * v2 * v2, t * v2 * v3 - s * v1],
            [t * v1 * v3 - s * v2, t * v2 * v3 + s * v1, c + t * v3 * v3],
        ],
        dtype=np.float64,
    )


def rotation_to_xyz_angles(umat: np.ndarray) -> tuple[float, float, float]:
    """Angles (rad) about x, then y, then z that reproduce a rotation matrix.

    The rows are re-normalised first (a zero row is replaced by the cross
    product of the other two), as the reference does before extracting angles.
    """
    u = np.array(umat, dtype=np.float64).reshape(3, 3).copy()
    norms = np.sqrt((u * u).sum(axis=1))
    for i in range(3):
        if norms[i] > 0:
            u[i] /= norms[i]
    for i in range(3):
        if norms[i] <= 0:
            other = np.cross(u[(i + 1) % 3], u[(i + 2) % 3])
            m = math.sqrt(float(other @ other))
            u[i] = other / m if m > 0 else other
    norms = np.sqrt((u * u).sum(axis=1))
    for i in range(3):
        if norms[i] > 0:
            u[i] /= norms[i]
    uxx, uxy = u[0, 0], u[0, 1]
    uyx, uyy = u[1, 0], u[1, 1]
    uzx, uzy, uzz = u[2]
    if uzx * uzx < 1.0:
        rotx = math.atan2(uzy, uzz)
        roty = math.atan2(-uzx, math.sqrt(uzy * uzy + uzz * uzz))
        rotz = math.atan2(uyx, uxx)
    else:
        rotx = math.atan2(1, 1) * 4
        roty = math.atan2(1, 1) * 2
        rotz = math.atan2(uxy, -uyy)
    return rotx, roty, rotz


def mosaic_deviates(n_domains: int, seed: int, stream: ShuffledLehmer | None = None):
    """Axes ``(n, 3)`` and angle fractions ``(n,)`` of the domain rotations (host, float64).

    ``seed`` is the reference's (negative) seed value.  Every domain, the first
    included, consumes three deviates, so domain k equals the reference's; the
    caller makes domain 0 the identity.
    """
    stream = stream or ShuffledLehmer()
    state = [int(seed)]
    u = stream.uniforms(state, 3 * n_domains).astype(np.float64).reshape(n_domains, 3)
    r = 2.0 * u - 1.0
    r1, r2, r3 = r[:, 0], r[:, 1], r[:, 2]
    xyrad = np.sqrt(1.0 - r2 * r2)  # correctly rounded, as math.sqrt
    # sin, cos and pow from the C library, element by element, as cap_deviates computes them
    ang = (math.pi * r1).tolist()
    sin = np.fromiter(map(math.sin, ang), dtype=np.float64, count=n_domains)
    cos = np.fromiter(map(math.cos, ang), dtype=np.float64, count=n_domains)
    base = (1.0 - r3 * r3).astype(np.float32).astype(np.float64).tolist()
    third = float(np.float32(1.0 / 3.0))
    root = np.fromiter(map(pow, base, repeat(third)), dtype=np.float64, count=n_domains)
    axes = np.stack([xyrad * sin, xyrad * cos, r2], axis=-1)
    fractions = root.astype(np.float32).astype(np.float64)
    return axes, fractions


def mosaic_rotations(spread_rad: float, n_domains: int, seed: int, stream: ShuffledLehmer | None = None) -> np.ndarray:
    """``(n_domains, 3, 3)`` domain rotations on the host; domain 0 is the identity."""
    stream = stream or ShuffledLehmer()
    state = [int(seed)]
    out = np.empty((n_domains, 3, 3), dtype=np.float64)
    for i in range(n_domains):  # sequential RNG: runs once, on the host
        out[i] = spherical_cap_rotation(stream, state, spread_rad)
    if n_domains:
        out[0] = np.eye(3)
    return out


def random_misset_angles(seed: int, stream: ShuffledLehmer | None = None) -> tuple[float, float, float]:
    """Random orientation as x, y, z misset angles (rad), as the reference draws it.

    The reference passes 90 to its cap sampler, which treats it as radians.
    """
    stream = stream or ShuffledLehmer()
    umat = spherical_cap_rotation(stream, [int(seed)], 90.0)
    return rotation_to_xyz_angles(umat)
