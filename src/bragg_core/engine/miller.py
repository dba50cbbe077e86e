"""Fractional Miller indices h = A . (d - i) / lambda of every path, orientation and source."""

from __future__ import annotations

from .inputs import KernelInputs
from .paths import host_all_positive


def miller(k: KernelInputs, scat, orient):
    """h, k, l for every orientation and path: three arrays (Q, ...).

    ``scat`` are the scattering-vector components (...) in the working dtype;
    ``orient`` is (Q, 3, 3): rows a, b, c of each orientation, in metres.
    Orientations are the outermost axis so that every elementwise operation
    runs over long contiguous inner loops.
    """
    xp = k.ctx.xp
    shape = (int(orient.shape[0]),) + (1,) * scat[0].ndim
    coeff = lambda i, j: xp.reshape(orient[:, i, j], shape)  # noqa: E731
    return tuple(scat[0] * coeff(i, 0) + scat[1] * coeff(i, 1) + scat[2] * coeff(i, 2) for i in range(3))


def orientation_last(xp, x):
    """Move the leading orientation axis of a kernel array to the end."""
    return xp.permute_dims(x, tuple(range(1, x.ndim)) + (0,))


class MillerTile:
    """h, k, l of every path of a tile for a block of orientations, in the geometry dtype.

    h = a . (pos / R - i) / lambda.  At low angles a . pos / R and a . i are
    both about |a| / lambda, large next to h, and forming h as their
    difference loses ~|a| / lambda ulps.  ``stable`` avoids that
    cancellation: with a_perp = a - (a . i) i and p_par = pos . i,

        R a . (pos / R - i) = a_perp . pos - (a . i) (R - p_par),

    where a_perp . pos is small near the beam and
    R - p_par = |pos x i|^2 / (R + p_par) (downstream of the sample; R - p_par
    itself upstream) cancels nothing.  What remains is the rounding of a_perp
    itself (nothing when the beam lies along a frame axis, at most a few
    ulp(|a| / lambda) otherwise, as for the reference's own formula; see
    tests/test_kernel_pieces.py).  A float32 image rounds h to float32,
    whose ulp is ~1e8 times that loss: there the shorter difference form
    (still evaluated in float64) is used.  Calling the object with (q0, q1)
    gives h, k, l, each (Qb, K, T, S, P).
    """

    def __init__(self, k: KernelInputs, paths, r, inv_r, stable: bool):
        setup = k.setup
        g = k.gctx
        gx = g.xp
        self.g, self.paths, self.stable = g, paths, stable
        self.in_place = k.in_place
        self.K = K = setup.n_sources
        self.orient = k.orientations_g
        self.inc = inc = k.frame.incident_g
        lam = g.asarray(setup.sources.wavelength_m)
        self.gap = None
        if stable:
            p_par = paths.dot(inc)                                               # (K, T, S, P)
            rho2 = paths.perp2(inc)
            if host_all_positive(p_par):
                gap = rho2 / (r[None, ...] + p_par)
            else:
                ahead = p_par > 0
                den = gx.where(ahead, r[None, ...] + p_par, gx.ones_like(p_par))
                gap = gx.where(ahead, rho2 / den, r[None, ...] - p_par)          # R - p_par
            self.gap = gap[None, ...]
        if K == 1:  # 1/lambda folded into the projections
            self.w, self.lam_fold, self.inv_lam = inv_r[None, None, ...], lam[0], None
        else:
            self.inv_lam = 1.0 / lam
            self.w = gx.reshape(self.inv_lam, (1, K, 1, 1, 1)) * inv_r[None, None, ...]
            self.lam_fold = 1.0

    def __call__(self, q0: int, q1: int):
        gx, paths, K = self.g.xp, self.paths, self.K
        Vq = self.orient[q0:q1, ...]
        Qb = int(Vq.shape[0])
        Vq = gx.reshape(Vq, (Qb * 3, 3)) / self.lam_fold                    # rows a, b, c of each orientation
        c = gx.matmul(Vq, gx.permute_dims(self.inc, (1, 0)))                 # (Qb*3, K): a . i_k
        if self.stable:
            a_perp = Vq[:, None, :] - c[:, :, None] * self.inc[None, :, :]    # (Qb*3, K, 3)
            U = paths.dot(gx.reshape(a_perp, (Qb * 3 * K, 3)))
            U = gx.reshape(U, (Qb, 3, K) + tuple(U.shape[1:]))
            c = gx.reshape(c, (Qb, 3, K, 1, 1, 1))
            if self.in_place:   # U is this call's own array: its parts are updated where they lie
                out = []
                for i in range(3):  # over the three crystal axes
                    h = U[:, i, ...]
                    h -= c[:, i, ...] * self.gap
                    h *= self.w
                    out.append(h)
                return tuple(out)
            return tuple((U[:, i, ...] - c[:, i, ...] * self.gap) * self.w for i in range(3))
        U = paths.dot(Vq)
        U = gx.reshape(U, (Qb, 3, 1) + tuple(U.shape[1:]))
        c = gx.reshape(c, (Qb, 3, K, 1, 1, 1))
        if K > 1:
            c = c * gx.reshape(self.inv_lam, (1, 1, K, 1, 1, 1))
        return tuple(U[:, i, ...] * self.w - c[:, i, ...] for i in range(3))


__all__ = ["miller", "orientation_last", "MillerTile"]
