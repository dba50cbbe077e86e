"""Unit cell and orientation: reciprocal and real-space cell vectors.

From lengths and angles the reciprocal cell is built in the standard setting
(a* along x, b* in the x-y plane), then rotated by the misset angles about x,
y, z; the real-space vectors follow from cross products, and the reciprocal
vectors are regenerated from them so that both sets are consistent.  A MOSFLM
matrix gives the reciprocal vectors directly (its wavelength factor removed).
Real-space vectors are returned in metres, reciprocal ones in 1/Angstrom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import units
from ..experiment import Crystal
from ..rng import ShuffledLehmer, random_misset_angles
from .vectors import cross, dot, norm, rotate_xyz


@dataclass(frozen=True)
class CellGeometry:
    real_m: Any            # (3, 3): rows a, b, c in metres (phi = 0, no mosaic)
    reciprocal_per_A: Any  # (3, 3): rows a*, b*, c* in 1/Angstrom
    volume_A3: Any
    misset_rad: Any        # the misset applied (x, y, z) or None
    cell_A_deg: Any        # (6,) lengths (A) and angles (deg) of the final cell
    reciprocal_cell: Any   # (6,) lengths (1/A) and angles (deg) of the reciprocal cell


def _clip_angle(xp, s, c):
    s = xp.clip(s, -1.0, 1.0)
    c = xp.where(c * c > 1.0, xp.ones_like(c), c)
    return xp.atan2(s, c)


def cell_geometry(cr: Crystal, wavelength_A, g, rng_stream: ShuffledLehmer | None = None) -> CellGeometry:
    """Cell vectors of the crystal at phi = 0, before mosaic rotation."""
    xp, A = g.xp, g.asarray
    user_cell = cr.cell_A_deg is not None
    if user_cell:
        cell = A(cr.cell_A_deg)
        a, b, c = cell[0], cell[1], cell[2]
        angles = units.deg_to_rad(cell[3:6])  # one array: indexing first would give NumPy scalars of another dtype
        al, be, ga = angles[0], angles[1], angles[2]
        s = (al + be + ga) / 2
        skew = xp.abs(xp.sin(s) * xp.sin(s - al) * xp.sin(s - be) * xp.sin(s - ga))
        V = 2.0 * a * b * c * xp.sqrt(skew)
        Vs = 1.0 / V
        as_len = b * c * xp.sin(al) * Vs
        bs_len = c * a * xp.sin(be) * Vs
        cs_len = a * b * xp.sin(ga) * Vs
        cos_als = (xp.cos(be) * xp.cos(ga) - xp.cos(al)) / (xp.sin(be) * xp.sin(ga))
        cos_bes = (xp.cos(ga) * xp.cos(al) - xp.cos(be)) / (xp.sin(ga) * xp.sin(al))
        cos_gas = (xp.cos(al) * xp.cos(be) - xp.cos(ga)) / (xp.sin(al) * xp.sin(be))
        sin_gas = c * Vs / as_len / bs_len
        zero = xp.zeros_like(a)
        a_star = xp.stack([as_len, zero, zero])
        b_star = xp.stack([bs_len * cos_gas, bs_len * sin_gas, zero])
        c_star = xp.stack([cs_len * cos_bes,
                           cs_len * (cos_als - cos_bes * cos_gas) / sin_gas,
                           cs_len * V / (a * b * c * sin_gas)])
    else:
        m = A(cr.reciprocal_vectors_per_A)
        a_star, b_star, c_star = m[0, :], m[1, :], m[2, :]

    misset = None
    if cr.misset_random:
        stream = rng_stream or ShuffledLehmer()
        misset = A(random_misset_angles(-int(cr.misset_seed), stream))
    elif cr.misset_deg is not None:
        misset = units.deg_to_rad(A(cr.misset_deg))
    if misset is not None:
        a_star = rotate_xyz(xp, a_star, misset[0], misset[1], misset[2])
        b_star = rotate_xyz(xp, b_star, misset[0], misset[1], misset[2])
        c_star = rotate_xyz(xp, c_star, misset[0], misset[1], misset[2])

    bxc = cross(xp, b_star, c_star)
    cxa = cross(xp, c_star, a_star)
    axb = cross(xp, a_star, b_star)
    V_star = dot(xp, a_star, bxc)
    if user_cell:
        # impose the requested lengths: |b* x c*| = a / V, etc.
        bxc = bxc * (a / V / norm(xp, bxc))
        cxa = cxa * (b / V / norm(xp, cxa))
        axb = axb * (c / V / norm(xp, axb))
        V_star = 1.0 / V
    V_cell = 1.0 / V_star
    a_vec, b_vec, c_vec = bxc * V_cell, cxa * V_cell, axb * V_cell
    a_star = cross(xp, b_vec, c_vec) * V_star
    b_star = cross(xp, c_vec, a_vec) * V_star
    c_star = cross(xp, a_vec, b_vec) * V_star

    la, lb, lc = norm(xp, a_vec), norm(xp, b_vec), norm(xp, c_vec)
    las, lbs, lcs = norm(xp, a_star), norm(xp, b_star), norm(xp, c_star)
    alpha = _clip_angle(xp, las * V_cell / lb / lc, dot(xp, b_vec, c_vec) / lb / lc)
    beta = _clip_angle(xp, lbs * V_cell / la / lc, dot(xp, a_vec, c_vec) / la / lc)
    gamma = _clip_angle(xp, lcs * V_cell / la / lb, dot(xp, a_vec, b_vec) / la / lb)
    alpha_s = _clip_angle(xp, la * V_star / lbs / lcs, dot(xp, b_star, c_star) / lbs / lcs)
    beta_s = _clip_angle(xp, lb * V_star / las / lcs, dot(xp, a_star, c_star) / las / lcs)
    gamma_s = _clip_angle(xp, lc * V_star / las / lbs, dot(xp, a_star, b_star) / las / lbs)
    rad = 180.0 / math.pi
    return CellGeometry(
        real_m=units.angstrom_to_m(xp.stack([a_vec, b_vec, c_vec])),
        reciprocal_per_A=xp.stack([a_star, b_star, c_star]),
        volume_A3=V_cell,
        misset_rad=misset,
        cell_A_deg=xp.stack([la, lb, lc, alpha * rad, beta * rad, gamma * rad]),
        reciprocal_cell=xp.stack([las, lbs, lcs, alpha_s * rad, beta_s * rad, gamma_s * rad]),
    )


def orientations(xp, real_m, spindle, phi_rad, mosaic_umats):
    """Real-space cell vectors for every (phi, mosaic domain): shape (n_phi * n_mos, 3, 3).

    Each cell vector is rotated about the spindle by phi, then by the domain's
    rotation matrix.  A phi of exactly zero leaves the cell unrotated.
    """
    from .vectors import rotation_matrix_axis

    R_phi = rotation_matrix_axis(xp, spindle, phi_rad)  # (P, 3, 3)
    # rotated[p, m, i, :] = U[m] @ R[p] @ real[i]
    ap = xp.matmul(real_m[None, :, :], xp.permute_dims(R_phi, (0, 2, 1)))  # (P, 3, 3): rows rotated vectors
    rot = xp.matmul(ap[:, None, :, :], xp.permute_dims(mosaic_umats, (0, 2, 1))[None, :, :, :])
    n_phi, n_mos = ap.shape[0], mosaic_umats.shape[0]
    return xp.reshape(rot, (n_phi * n_mos, 3, 3))
