"""Poisson deviates from counter-based uniforms, exact in distribution, vectorised over pixels.

* mean < 10: inversion of the cumulative distribution with one uniform;
* 10 <= mean <= 1e6: Hormann's transformed rejection with squeeze (PTRS), each round
  drawing two fresh uniforms per pixel (the 32-bit halves of draw 1 + r), up
  to 16 rounds (acceptance is about 0.9 per round; a pixel still pending after
  16 rounds, probability about 1e-16, gets the rounded normal approximation);
* mean > 1e6: the normal approximation, as the reference's generator takes it
  there, rounded to an integer: floor(mean + sqrt(mean) N + 1/2), N the
  sine deviate of the read-out stream's Box-Muller pair (whose cosine is the
  read-out noise: one hashed value serves both; the approximation's skewness
  error is 1/sqrt(mean) < 1e-3 of a standard deviation);
* mean <= 0 or NaN: 0.

Loops run over inversion steps and rejection rounds, never over pixels.  On
eager backends they stop as soon as every pixel is done; on lazy backends
(JAX, Dask) the arrays keep their shapes, and the loops run to their bound
under a trace or on Dask, while concrete JAX arrays (outside jit) are checked
on the host: a regime with no pixel is skipped and a loop stops once no pixel
is pending (the steps skipped would change nothing).  Either way a pixel's
deviate depends only on (seed, shot, pixel), so the result does not depend on
the backend's laziness or on how the image is tiled.
"""

from __future__ import annotations

import math

import numpy as np

from .._backend import is_lazy, take_rows, values_readable
from .counter_rng import STREAMS, normal, normal_pair, stream_key, uniform, uniform_pair

__all__ = ["poisson", "log_factorial", "SMALL_MEAN", "NORMAL_MEAN", "MAX_ROUNDS", "MAX_STEPS"]

SMALL_MEAN = 10.0
NORMAL_MEAN = 1.0e6
MAX_ROUNDS = 16
MAX_STEPS = 64   # P(X >= 64) < 1e-30 for a mean below 10
_LOG_FACT = np.array([math.lgamma(k + 1.0) for k in range(33)])
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def log_factorial(xp, k, table):
    """log(k!) for integer-valued float k >= 0: a table below 32, Stirling's series above (error < 1e-14)."""
    x = k + 1.0
    big = x >= 33.0
    xs = xp.where(big, x, xp.full_like(x, 33.0))
    inv = 1.0 / xs
    inv2 = inv * inv
    stirling = (xs - 0.5) * xp.log(xs) - xs + _HALF_LOG_2PI + inv * (1.0 / 12 - inv2 * (1.0 / 360 - inv2 / 1260))
    idx = xp.astype(xp.where(big, xp.zeros_like(k), k), xp.int64)   # k < 32 where the table is read
    return xp.where(big, stirling, take_rows(xp, table, idx))


_INV_CHUNK = 4  # inversion steps between checks for pixels still searching (fixed-shape backends)


def _inversion_steps(xp, u, lam, p, cdf, count, n0: int, n1: int):
    """Inversion steps n0..n1-1: count the cumulative sums still below u, add the next term."""
    for n in range(n0, n1):  # inversion steps
        count = count + xp.astype(cdf < u, lam.dtype)
        p = p * lam / float(n)
        cdf = cdf + p
    return p, cdf, count


def _inversion_eager(xp, u, lam, p, cdf, count, n0: int = 1):
    """Steps from n0 on, in chunks; each chunk on the pixels whose search the chunks before did not end.

    A chunk is ceil(mean of the pixels' means) + 1 steps, from 2 to 8: short where the means are small
    (most pixels of a real background), so few steps run past a search's end.  The counts do not depend
    on the chunks.
    """
    chunk = min(8, max(2, math.ceil(float(xp.mean(lam))) + 1))
    n1 = min(n0 + chunk, MAX_STEPS + 1)
    p, cdf, count = _inversion_steps(xp, u, lam, p, cdf, count, n0, n1)
    if n1 > MAX_STEPS:
        return count
    still = cdf < u
    idx = xp.nonzero(still)[0]
    if idx.shape[0]:
        sub = [take_rows(xp, x, idx) for x in (u, lam, p, cdf, count)]
        count[still] = _inversion_eager(xp, *sub, n1)
    return count


def _inversion(xp, lam, base, key, compact: bool, check: bool = False):
    """Deviates for means below SMALL_MEAN by inverting the cumulative distribution with one uniform.

    ``compact``: eager backends (later steps on the pixels still searching only); else fixed
    shapes, and ``check`` (host-readable values) stops once no pixel's count can grow.
    """
    u = uniform(xp, base, key, lam.dtype)
    p = xp.exp(-lam)
    count = xp.zeros_like(lam)
    if compact:
        return _inversion_eager(xp, u, lam, p, p, count)
    cdf = p
    for n0 in range(1, MAX_STEPS + 1, _INV_CHUNK):  # chunks of inversion steps
        p, cdf, count = _inversion_steps(xp, u, lam, p, cdf, count, n0, min(n0 + _INV_CHUNK, MAX_STEPS + 1))
        if check and not bool(xp.any(cdf < u)):
            return count
    return count


def _ptrs_round(xp, ll, bb, key: int, table, compact: bool):
    """One PTRS round for every element: the candidate count (>= 0) and whether it is accepted.

    ``compact`` (eager backends): the full test only where the squeeze neither accepts nor rejects.
    """
    slam = xp.sqrt(ll)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    U, V = uniform_pair(xp, bb, key, ll.dtype)
    U = U - 0.5
    us = 0.5 - xp.abs(U)
    k = xp.floor((2.0 * a / us + b) * U + ll + 0.43)
    quick = (us >= 0.07) & (V <= 0.9277 - 3.6224 / (b - 2.0))
    hopeless = (k < 0) | ((us < 0.013) & (V > us))
    kk = xp.where(k < 0, xp.zeros_like(k), k)
    if not compact:
        return kk, quick | (~hopeless & _full_test(xp, V, us, kk, ll, a, b, table))
    need = ~quick & ~hopeless
    idx = xp.nonzero(need)[0]
    if not idx.shape[0]:
        return kk, quick
    accept = xp.asarray(quick, copy=True)
    at = [take_rows(xp, x, idx) for x in (V, us, kk, ll, a, b)]  # one index, six takes: cheaper than masks
    accept[need] = _full_test(xp, *at, table)
    return kk, accept


def _ptrs_fallback(xp, ll, bb, seed: int, shot: int):
    """After MAX_ROUNDS rounds (probability ~1e-16 per pixel): the rounded normal approximation."""
    n = normal(xp, bb, seed, STREAMS["poisson"], shot, 1 + MAX_ROUNDS, ll.dtype)
    approx = xp.floor(ll + xp.sqrt(ll) * n + 0.5)
    return xp.where(approx < 0, xp.zeros_like(approx), approx)


def _ptrs_eager(xp, lam, base, seed: int, shot: int, table, r: int = 0):
    """PTRS from round ``r`` on, each round on the pixels the rounds before rejected only."""
    if r == MAX_ROUNDS:
        return _ptrs_fallback(xp, lam, base, seed, shot)
    kk, accept = _ptrs_round(xp, lam, base, stream_key(seed, STREAMS["poisson"], shot, 1 + r), table, True)
    left = ~accept
    if bool(xp.any(left)):  # about one pixel in ten; each later round on a tenth of the one before
        kk[left] = _ptrs_eager(xp, lam[left], base[left], seed, shot, table, r + 1)
    return kk


def _ptrs(xp, lam, base, seed: int, shot: int, compact: bool, check: bool = False):
    """Deviates for means of at least SMALL_MEAN by transformed rejection (PTRS).

    ``compact``: eager backends (rounds on the pending pixels only); else
    fixed shapes, and ``check`` (host-readable values) stops once no pixel is pending.
    """
    table = xp.asarray(_LOG_FACT, dtype=lam.dtype, device=_dev(lam))
    if compact:
        return _ptrs_eager(xp, lam, base, seed, shot, table)
    res = xp.zeros_like(lam)
    pending = xp.ones(lam.shape, dtype=xp.bool, device=_dev(lam))
    for r in range(MAX_ROUNDS):  # rejection rounds
        kk, accept = _ptrs_round(xp, lam, base, stream_key(seed, STREAMS["poisson"], shot, 1 + r), table, False)
        res = xp.where(pending & accept, kk, res)
        pending = pending & ~accept
        if check and not bool(xp.any(pending)):
            return res
    return xp.where(pending, _ptrs_fallback(xp, lam, base, seed, shot), res)


def _full_test(xp, V, us, k, lam, a, b, table):
    """PTRS's acceptance test: log(V alpha^-1 / (a / us^2 + b)) <= -lam + k log(lam) - log(k!)
    (one logarithm of the product: V >= 2^-33 and the other factors are near 1, so nothing underflows)."""
    lhs = xp.log(V * (1.1239 + 1.1328 / (b - 3.4)) / (a / (us * us) + b))
    return lhs <= -lam + k * xp.log(lam) - log_factorial(xp, k, table)


def approx_normal(xp, base, seed: int, shot: int, dtype):
    """The deviates of the normal approximation: the sine half of the read-out stream's pair."""
    return normal_pair(xp, base, seed, STREAMS["readout"], shot, 0, dtype)[1]


def _normal_approx(lam, n, xp):
    """floor(lam + sqrt(lam) N + 1/2) (above NORMAL_MEAN, |N| < 6.7 keeps it positive)."""
    return xp.floor(lam + xp.sqrt(lam) * n + 0.5)


def poisson(xp, mean, base, seed: int, shot: int, approx=None):
    """One Poisson deviate (float, same dtype) per element of ``mean`` (1-D); ``base`` = pixel_base of the pixels.

    ``approx``: the normal deviates of the pixels (:func:`approx_normal`), if the caller has them already.
    """
    lazy = is_lazy(mean)
    readable = values_readable(mean)
    if readable and bool(xp.all(mean > NORMAL_MEAN)):  # one regime: no masks at all
        n = approx if approx is not None else approx_normal(xp, base, seed, shot, mean.dtype)
        return _normal_approx(mean, n, xp)
    key0 = stream_key(seed, STREAMS["poisson"], shot, 0)
    ok = mean > 0  # also False for NaN
    lam = xp.where(ok, mean, xp.zeros_like(mean))
    small = ok & (lam < SMALL_MEAN)
    huge = lam > NORMAL_MEAN
    large = ok & (lam >= SMALL_MEAN) & ~huge
    if lazy:  # JAX, Dask: fixed shapes; every loop to its bound unless the values can be read
        present = lambda m: (not readable) or bool(xp.any(m))  # noqa: E731
        out = xp.zeros_like(lam)
        if present(small):
            ls = xp.where(small, lam, xp.zeros_like(lam))
            out = xp.where(small, _inversion(xp, ls, base, key0, False, readable), out)
        if present(huge):
            lh = xp.where(huge, lam, xp.full_like(lam, NORMAL_MEAN))
            n = approx if approx is not None else approx_normal(xp, base, seed, shot, mean.dtype)
            out = xp.where(huge, _normal_approx(lh, n, xp), out)
        if present(large):
            ll = xp.where(large, lam, xp.full_like(lam, SMALL_MEAN))
            out = xp.where(large, _ptrs(xp, ll, base, seed, shot, False, readable), out)
        return out
    # eager backends: work on the pixels of each regime only (boolean indexing)
    any_large, any_huge = bool(xp.any(large)), bool(xp.any(huge))
    if not any_large and not any_huge:  # means below 10 only (a background): no masks (a mean <= 0 gives 0)
        return _inversion(xp, lam, base, key0, True)
    out = xp.zeros_like(lam)
    if bool(xp.any(small)):
        out[small] = _inversion(xp, lam[small], base[small], key0, True)
    if any_large:
        out[large] = _ptrs(xp, lam[large], base[large], seed, shot, True)
    if any_huge:
        n = approx[huge] if approx is not None else approx_normal(xp, base[huge], seed, shot, mean.dtype)
        out[huge] = _normal_approx(lam[huge], n, xp)
    return out




def _dev(x):
    from .._backend import device_of

    return device_of(x)
