"""Rotations: uniform random rotation matrices, and a rotation as the misset angles the renderer is given."""

from __future__ import annotations

import math

import numpy as np

from ..experiment import ExperimentError


def _quaternions_to_matrices(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    m = np.empty((q.shape[0], 3, 3))
    m[:, 0, 0] = 1 - 2 * (y * y + z * z)
    m[:, 0, 1] = 2 * (x * y - z * w)
    m[:, 0, 2] = 2 * (x * z + y * w)
    m[:, 1, 0] = 2 * (x * y + z * w)
    m[:, 1, 1] = 1 - 2 * (x * x + z * z)
    m[:, 1, 2] = 2 * (y * z - x * w)
    m[:, 2, 0] = 2 * (x * z - y * w)
    m[:, 2, 1] = 2 * (y * z + x * w)
    m[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices ``(n, 3, 3)`` uniform on SO(3) (Haar measure), float64.

    Uniform unit quaternions from three uniform deviates each (Shoemake, 1992),
    then the usual quaternion-to-matrix formula.
    """
    u = rng.random((n, 3))
    a, b = np.sqrt(1.0 - u[:, 0]), np.sqrt(u[:, 0])
    t1, t2 = 2 * np.pi * u[:, 1], 2 * np.pi * u[:, 2]
    q = np.stack([b * np.cos(t2), a * np.sin(t1), a * np.cos(t1), b * np.sin(t2)], axis=1)
    return _quaternions_to_matrices(q)


def misset_deg_to_rotation(angles_deg) -> np.ndarray:
    """The matrix ``Rz @ Ry @ Rx`` of a misset (rotation about x, then y, then z, in degrees)."""
    ax, ay, az = (math.radians(float(v)) for v in angles_deg)
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotation_to_misset_deg(u) -> tuple[float, float, float]:
    """Misset angles (degrees, about x then y then z) of a rotation matrix: the inverse of
    :func:`misset_deg_to_rotation` (away from the measure-zero case |u[2, 0]| = 1)."""
    u = np.asarray(u, dtype=np.float64)
    rx = math.atan2(u[2, 1], u[2, 2])
    ry = math.atan2(-u[2, 0], math.hypot(u[2, 1], u[2, 2]))
    rz = math.atan2(u[1, 0], u[0, 0])
    return (math.degrees(rx), math.degrees(ry), math.degrees(rz))


def _check_rotations(mats, where: str) -> np.ndarray:
    try:
        m = np.asarray(mats, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExperimentError(f"{where} must be an array of 3x3 rotation matrices") from None
    if m.ndim != 3 or m.shape[1:] != (3, 3) or m.shape[0] < 1:
        raise ExperimentError(f"{where} must have shape (n, 3, 3), got {m.shape}")
    if not np.isfinite(m).all():
        raise ExperimentError(f"{where} must be finite")
    eye = np.einsum("nij,nkj->nik", m, m) - np.eye(3)
    bad = np.flatnonzero((np.abs(eye).max(axis=(1, 2)) > 1e-6) | (np.linalg.det(m) < 0))
    if bad.size:
        raise ExperimentError(f"{where}[{int(bad[0])}] is not a proper rotation (orthonormal, determinant +1)")
    return m
