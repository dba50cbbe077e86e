"""Poisson noise images, following the reference's ``poidev`` regimes.

Each pixel of the noise image is a Poisson deviate whose mean is the float
pixel value (photons), plus the ADC offset, clipped at 65535 (counted as an
overload) and truncated to an unsigned 16-bit integer.  The deviate is drawn
as the reference's ``poidev`` (Numerical Recipes) draws it:

* mean < 12: exact, by NumPy's Poisson sampler (the reference multiplies
  uniform deviates until the product drops below ``exp(-mean)``; both are
  exact samplers of the same distribution, NumPy's runs in C);
* 12 <= mean <= 1e6: exact, by rejection sampling against a Lorentzian
  comparison function (``y = tan(pi*u)``, candidate ``floor(sqrt(2 mean) y +
  mean)``, accepted with probability ``0.9 (1+y^2) P(k)/P(mean)``);
* mean > 1e6: Gaussian approximation ``mean + sqrt(mean) * N(0, 1)``, rounded to
  float32 like the reference's ``float`` return value (not an integer).

The random stream is NumPy's PCG64, not the reference's ``ran1``: images are
reproducible for a given seed but not bit-identical to the reference's.  All
regimes are vectorised over pixels (accept/reject loops run over the pixels
still pending).  Means that are zero, negative or NaN give 0 photons (the
reference gives 0 for the first two; NaN is undefined behaviour there); a
negative total after a negative ADC offset is clipped to 0 for the same reason.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["NoiseImage", "poisson_deviates", "noise_image"]

EXACT_LIMIT = 12.0  #: below this mean: multiplication of uniforms
GAUSS_LIMIT = 1.0e6  #: above this mean: Gaussian approximation
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class NoiseImage(NamedTuple):
    image: np.ndarray  #: uint16, same shape as the float image
    photons: float  #: sum of the Poisson deviates over the ROI (before the ADC offset)
    overloads: int  #: ROI pixels clipped at 65535


def _lgamma(x: np.ndarray) -> np.ndarray:
    """log Gamma(x) for x > 0, vectorised: Stirling series after shifting x by 8.

    Absolute error below 1e-13 for x >= 1 (the arguments used here are >= 1).
    """
    z = x + 8.0
    zi = 1.0 / z
    zi2 = zi * zi
    series = zi * (1 / 12 - zi2 * (1 / 360 - zi2 * (1 / 1260 - zi2 * (1 / 1680 - zi2 / 1188))))
    shift = sum(np.log(x + k) for k in range(8))
    return (z - 0.5) * np.log(z) - z + _HALF_LOG_2PI + series - shift


def _exact_small(mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact deviates for small means: NumPy's Poisson sampler, which for these
    means counts uniform factors (or inverts the distribution) exactly, in C."""
    return rng.poisson(mean).astype(np.float64)


def _rejection(mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sq = np.sqrt(2.0 * mean)
    log_mean = np.log(mean)
    g = mean * log_mean - _lgamma(mean + 1.0)
    result = np.empty(mean.shape)
    pending = np.arange(mean.size)
    while pending.size:
        m, s = mean[pending], sq[pending]
        y = np.tan(np.pi * rng.random(pending.size))
        k = np.floor(s * y + m)
        # A negative candidate is redrawn in the reference; rejecting it here
        # and drawing afresh samples the same conditional distribution.
        ok = k >= 0.0
        kk = np.where(ok, k, 0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            t = 0.9 * (1.0 + y * y) * np.exp(kk * log_mean[pending] - _lgamma(kk + 1.0) - g[pending])
        accept = ok & (rng.random(pending.size) <= t)
        result[pending[accept]] = k[accept]
        pending = pending[~accept]
    return result


def poisson_deviates(mean, rng: np.random.Generator) -> np.ndarray:
    """One Poisson deviate per element of ``mean`` (photons), float64, same shape.

    Regimes as described in the module docstring; draws happen in a fixed
    order, so the result is a deterministic function of the generator state.
    """
    mean = np.asarray(mean, dtype=np.float64)
    flat = mean.ravel()
    out = np.zeros(flat.shape)
    small = (flat > 0.0) & (flat < EXACT_LIMIT)
    middle = (flat >= EXACT_LIMIT) & (flat <= GAUSS_LIMIT)
    large = flat > GAUSS_LIMIT
    if small.any():
        out[small] = _exact_small(flat[small], rng)
    if middle.any():
        out[middle] = _rejection(flat[middle], rng)
    if large.any():
        m = flat[large]
        with np.errstate(invalid="ignore"):
            gauss = m + np.sqrt(m) * rng.standard_normal(m.size)
        out[large] = np.where(np.isinf(m), m, gauss).astype(np.float32)
    return out.reshape(mean.shape)


def noise_image(
    float_image,
    seed: int | None = None,
    adc_offset: float = 40.0,
    roi_mask=None,
    *,
    rng: np.random.Generator | None = None,
) -> NoiseImage:
    """The reference's noise image of ``float_image`` (photons per pixel).

    ``seed`` seeds ``np.random.Generator(np.random.PCG64(seed))`` unless ``rng``
    is given.  Pixels where ``roi_mask`` (bool, same shape) is False are 0 and
    draw no deviates.  Returns :class:`NoiseImage` ``(image, photons, overloads)``.
    """
    if rng is None:
        rng = np.random.Generator(np.random.PCG64(seed))
    mean = np.asarray(float_image, dtype=np.float32).astype(np.float64)
    inside = np.ones(mean.shape, bool) if roi_mask is None else np.asarray(roi_mask, bool)
    deviates = poisson_deviates(mean[inside], rng)
    photons = float(np.sum(deviates))
    counts = deviates + float(adc_offset)
    over = counts > 65535.0
    counts = np.clip(np.trunc(counts), 0.0, 65535.0)
    image = np.zeros(mean.shape, dtype=np.uint16)
    image[inside] = counts.astype(np.uint16)
    return NoiseImage(image, photons, int(np.count_nonzero(over)))
