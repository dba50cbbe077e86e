"""Structure factors from atoms by direct summation, on any array backend.

For a reflection ``h`` (row vector, fractional reciprocal coordinates) and
atoms ``j`` of an asymmetric unit with fractional position ``x_j``,
isotropic ``B_j`` (Angstrom^2), occupancy ``q_j`` and element ``e(j)``, summed
over the space group's operators ``(R_s, t_s)``::

    F(h) = sum_j q_j exp(-B_j s^2) (f0_e(s) + f'_e + i f''_e) sum_s exp(2 pi i h.(R_s x_j + t_s))

with ``s^2 = (sin(theta)/lambda)^2 = 1/(4 d^2)`` and
``f0_e(s) = c_e + sum_k a_ek exp(-b_ek s^2)`` (IT92 coefficients).  Writing
``A = sum w f cos``, ``B = sum w f sin`` over the real part ``f = f0 + f'``
and ``A'' , B''`` the same sums with ``f''``, one pass gives both hands:
``F(h) = (A - B'') + i (B + A'')`` and ``F(-h) = (A + B'') + i (A'' - B)``.
An optional constant complex term per reflection (a bulk-solvent
contribution ``k_sol exp(-B_sol s^2) F_mask``, ``F_mask`` of a real density)
adds to ``A + iB`` for ``h`` and to its conjugate for ``-h``.

The sum is tiled over reflections x atoms so that the working arrays stay
within a memory budget; there is no loop over single atoms or reflections.
Gradients reach positions, B, occupancies, f' and f'' (and the solvent
scale and B) on backends with autograd.
"""

from __future__ import annotations

import math
from typing import Any

from .._backend import get_context, take_rows

__all__ = ["fcalc_amplitudes", "amplitudes_on_grid", "DEFAULT_MEMORY_BUDGET_BYTES"]

DEFAULT_MEMORY_BUDGET_BYTES = 64 * 2**20

# bytes held per (reflection, operator, atom) and per (reflection, atom) in one tile
_PER_RSA = 8 * 4
_PER_RA = 8 * 10


def _tiles(n: int, size: int):
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def fcalc_amplitudes(xyz_frac, B_A2, occupancy, fprime, fdoubleprime, *, element_index, it92_a, it92_b, it92_c,
                     rot, tran, hkl, stol2, solvent=None, memory_budget_bytes: int | None = None,
                     dtype: Any = None):
    """``(|F(h)|, |F(-h)|)`` for reflections ``hkl`` (R, 3), each (R,), in the atoms' namespace.

    ``xyz_frac`` (A, 3), ``B_A2`` (A,), ``occupancy`` (A,): the atoms;
    ``fprime``, ``fdoubleprime`` (E,): per element; ``element_index`` (A,)
    integer indices into the (E,)-long tables ``it92_a``, ``it92_b`` (E, 4)
    and ``it92_c`` (E,); ``rot`` (S, 3, 3), ``tran`` (S, 3): the operators;
    ``stol2`` (R,): ``(sin(theta)/lambda)^2`` of each reflection.
    ``solvent``: None or ``(k_sol, B_sol_A2, mask_re, mask_im)`` with the
    mask's structure factor at ``h`` (R,) each.  Host arrays (NumPy) among
    the tables and indices are moved to the atoms' backend and device.
    """
    ctx = get_context(xyz_frac, B_A2, occupancy, fprime, fdoubleprime, dtype=dtype)
    xp, A = ctx.xp, ctx.asarray
    x = A(xyz_frac)
    Bf = A(B_A2)
    q = A(occupancy)
    fp = A(fprime)
    fpp = A(fdoubleprime)
    elem = ctx.asarray(element_index, dtype=xp.int64)
    a, b, c = A(it92_a), A(it92_b), A(it92_c)
    R = A(rot)
    t = A(tran)
    h = A(hkl)
    s2 = A(stol2)
    n_ops = int(R.shape[0])
    n_refl, n_atoms = int(h.shape[0]), int(x.shape[0])

    budget = DEFAULT_MEMORY_BUDGET_BYTES if memory_budget_bytes is None else int(memory_budget_bytes)
    per_pair = _PER_RSA * n_ops + _PER_RA
    pairs = max(budget // per_pair, 1)
    at = min(n_atoms, max(pairs // max(min(n_refl, 256), 1), 1))
    rt = max(min(n_refl, pairs // at), 1)

    two_pi = 2.0 * math.pi
    parts = []
    for r0, r1 in _tiles(n_refl, rt):
        hh = h[r0:r1, :]
        st = s2[r0:r1]
        hR = two_pi * xp.tensordot(hh, R, axes=([1], [1]))         # (r, S, 3): 2 pi h R_s
        ht = two_pi * xp.tensordot(hh, t, axes=([1], [1]))         # (r, S): 2 pi h . t_s
        f0 = c + xp.sum(a * xp.exp(-b * st[:, None, None]), axis=-1)   # (r, E)
        f_real = f0 + fp                                           # (r, E)
        sums = None
        for a0, a1 in _tiles(n_atoms, at):
            xa = x[a0:a1, :]
            e = elem[a0:a1]
            phase = xp.matmul(hR, xp.matrix_transpose(xa)) + ht[:, :, None]   # (r, S, a)
            cs = xp.sum(xp.cos(phase), axis=1)                     # (r, a)
            sn = xp.sum(xp.sin(phase), axis=1)
            w = q[a0:a1] * xp.exp(-Bf[a0:a1] * st[:, None])        # (r, a)
            fr = xp.take(f_real, e, axis=1) * w                    # (r, a)
            fi = take_rows(xp, fpp, e) * w
            tile = (xp.sum(fr * cs, axis=1), xp.sum(fr * sn, axis=1),
                    xp.sum(fi * cs, axis=1), xp.sum(fi * sn, axis=1))
            sums = tile if sums is None else tuple(u + v for u, v in zip(sums, tile))
        parts.append(sums)
    Ar, Br, Ai, Bi = (xp.concat([p[k] for p in parts], axis=0) for k in range(4))
    if solvent is not None:
        k_sol, B_sol, m_re, m_im = solvent
        scale = A(k_sol) * xp.exp(-A(B_sol) * s2)
        Ar = Ar + scale * A(m_re)
        Br = Br + scale * A(m_im)
    return _modulus(xp, Ar - Bi, Br + Ai), _modulus(xp, Ar + Bi, Ai - Br)


def _modulus(xp, re, im):
    """sqrt(re^2 + im^2) with a zero (not NaN) gradient where both vanish."""
    m2 = re * re + im * im
    pos = m2 > 0.0
    safe = xp.where(pos, m2, xp.ones_like(m2))
    return xp.where(pos, xp.sqrt(safe), xp.zeros_like(m2))


def amplitudes_on_grid(F_plus, F_minus, index, shape):
    """A dense (nh, nk, nl) grid gathered from ``concat(F_plus, F_minus, [0])`` at flat ``index``.

    ``index`` (nh * nk * nl,) is a host integer array: ``i`` takes ``F_plus[i]``,
    ``R + i`` takes ``F_minus[i]`` and ``2 R`` the zero (an index the sum did
    not cover).  The gather keeps gradients.
    """
    ctx = get_context(F_plus, F_minus)
    xp = ctx.xp
    vals = xp.concat([F_plus, F_minus, xp.zeros((1,), dtype=F_plus.dtype, device=ctx.device)], axis=0)
    idx = ctx.asarray(index, dtype=xp.int64)
    return xp.reshape(take_rows(xp, vals, idx), tuple(int(n) for n in shape))
