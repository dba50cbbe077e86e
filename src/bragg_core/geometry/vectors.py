"""Small 3-vector helpers written against the array API (last axis = x, y, z)."""

from __future__ import annotations


def dot(xp, u, v):
    """u . v over the last axis."""
    return xp.sum(u * v, axis=-1)


def cross(xp, u, v):
    """u x v over the last axis, from components (Dask has no linalg.cross)."""
    ux, uy, uz = u[..., 0], u[..., 1], u[..., 2]
    vx, vy, vz = v[..., 0], v[..., 1], v[..., 2]
    return xp.stack([uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx], axis=-1)


def norm(xp, u):
    """|u| over the last axis; its gradient at the zero vector is 0, not NaN.

    The double-where: the square root never sees the zero (d sqrt/dx is
    infinite there, and 0 * inf is NaN in the backward pass).
    """
    n2 = dot(xp, u, u)
    zero = n2 == 0
    return xp.where(zero, xp.zeros_like(n2), xp.sqrt(xp.where(zero, xp.ones_like(n2), n2)))


def unit(xp, u):
    """u / |u|; a zero vector stays zero (no division by zero, safe for autograd)."""
    n2 = dot(xp, u, u)
    zero = n2 == 0
    safe = xp.sqrt(xp.where(zero, xp.ones_like(n2), n2))
    return xp.where(zero[..., None], xp.zeros_like(u), u / safe[..., None])


def rotate_xyz(xp, v, rx, ry, rz):
    """Rotate v about x by rx, then about y by ry, then about z by rz (radians)."""
    cx, sx = xp.cos(rx), xp.sin(rx)
    cy, sy = xp.cos(ry), xp.sin(ry)
    cz, sz = xp.cos(rz), xp.sin(rz)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    y, z = y * cx - z * sx, y * sx + z * cx
    x, z = x * cy + z * sy, -x * sy + z * cy
    x, y = x * cz - y * sz, x * sz + y * cz
    return xp.stack([x, y, z], axis=-1)


def rotate_axis(xp, v, axis, angle):
    """Rotate v by ``angle`` (rad) about ``axis`` (Rodrigues; the axis is used as given)."""
    c = xp.cos(angle)
    s = xp.sin(angle)
    d = dot(xp, axis, v)
    ax, ay, az = axis[..., 0], axis[..., 1], axis[..., 2]
    vx, vy, vz = v[..., 0], v[..., 1], v[..., 2]
    out_x = ax * d * (1 - c) + vx * c + (-az * vy + ay * vz) * s
    out_y = ay * d * (1 - c) + vy * c + (az * vx - ax * vz) * s
    out_z = az * d * (1 - c) + vz * c + (-ay * vx + ax * vy) * s
    return xp.stack([out_x, out_y, out_z], axis=-1)


def rotation_matrix_axis(xp, axis, angle):
    """3x3 matrix R with R @ v == rotate_axis(v, axis, angle); broadcasts over angle."""
    eye = xp.eye(3, dtype=axis.dtype, device=_dev(axis))
    cols = [rotate_axis(xp, eye[i, :], axis, angle) for i in range(3)]  # images of e_x, e_y, e_z
    return xp.stack(cols, axis=-1)


def _dev(x):
    from .._backend import device_of

    return device_of(x)
