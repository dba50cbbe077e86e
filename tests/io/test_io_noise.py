"""Statistical tests of the Poisson noise.

Tolerances: with N independent deviates of a Poisson(lam) law, the sample mean
has standard error sqrt(lam/N) and the sample variance s^2 has standard error
sqrt((mu4 - sigma^4)/N) = sqrt((lam + 2 lam^2)/N) (Poisson: mu4 = lam + 3 lam^2;
the Gaussian regime has mu4 = 3 lam^2, which is smaller).  Checks allow 5
standard errors (a false failure has probability below 1e-6; seeds are fixed).
A chi-square statistic over k bins has mean k and standard deviation sqrt(2k);
it is allowed k + 5 sqrt(2k).
"""

import math

import numpy as np
import pytest

from bragg_core.noise import _lgamma, noise_image, poisson_deviates

N = 200_000
Z = 5.0


@pytest.mark.parametrize("lam", [0.5, 5.0, 11.99, 12.0, 50.0, 1e4, 5e6])
def test_mean_and_variance(lam):
    rng = np.random.Generator(np.random.PCG64(20240601))
    x = poisson_deviates(np.full(N, lam, dtype=np.float32), rng)
    assert abs(x.mean() - lam) < Z * math.sqrt(lam / N)
    assert abs(x.var(ddof=1) - lam) < Z * math.sqrt((lam + 2 * lam * lam) / N)
    if lam <= 1e6:
        assert np.all(x == np.floor(x)) and x.min() >= 0


@pytest.mark.parametrize("lam", [0.5, 5.0, 12.0, 50.0])
def test_distribution_chi_square(lam):
    rng = np.random.Generator(np.random.PCG64(7))
    x = poisson_deviates(np.full(N, lam), rng).astype(np.int64)
    k = np.arange(int(lam + 10 * math.sqrt(lam) + 10))
    pmf = np.exp(k * math.log(lam) - np.array([math.lgamma(v + 1) for v in k]) - lam)
    expected = N * pmf
    keep = expected >= 5  # pool the thin tails into one bin
    observed = np.bincount(x, minlength=k.size)[: k.size]
    obs = np.append(observed[keep], N - observed[keep].sum())
    exp = np.append(expected[keep], N - expected[keep].sum())
    chi2 = float(np.sum((obs - exp) ** 2 / exp))
    bins = obs.size - 1
    assert chi2 < bins + Z * math.sqrt(2 * bins)


def test_lgamma_accuracy():
    x = np.array([1.0, 1.5, 2.0, 7.3, 12.0, 13.0, 1e3, 1e6 + 1, 1e12])
    ref = np.array([math.lgamma(v) for v in x])
    np.testing.assert_allclose(_lgamma(x), ref, rtol=1e-13, atol=1e-12)


def test_reproducible_and_seed_dependent():
    img = np.full((64, 64), 30.0, dtype=np.float32)
    img[::2] = 3.0
    a, b, c = noise_image(img, 1), noise_image(img, 1), noise_image(img, 2)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.photons == b.photons
    assert np.count_nonzero(a.image != c.image) > img.size // 2


def test_adc_offset_photons_and_dtype():
    img = np.zeros((8, 8), np.float32)
    img[0, 0] = 5.0
    out = noise_image(img, 3, adc_offset=40.0)
    assert out.image.dtype == np.uint16
    assert np.all(out.image.ravel()[1:] == 40)  # zero mean: no photons, just the offset
    assert out.photons == out.image[0, 0] - 40.0 and out.overloads == 0


def test_overloads_are_clipped_and_counted():
    img = np.full((4, 5), 1e5, dtype=np.float32)  # 1e5 +- 316 photons: all above 65535
    img[0, :2] = 10.0
    out = noise_image(img, 11, adc_offset=40.0)
    assert out.overloads == 18
    assert np.all(out.image[img == 1e5] == 65535)
    assert out.photons > 18 * 9e4  # the photons are counted before clipping


def test_roi_negative_and_nan_means():
    img = np.float32([[4.0, -3.0, np.nan], [2.0, 7.0, 1e9]])
    roi = np.array([[True, True, True], [False, True, False]])
    out = noise_image(img, 5, adc_offset=10.0, roi_mask=roi)
    assert out.image[1, 0] == 0 and out.image[1, 2] == 0  # outside the ROI
    assert out.image[0, 1] == 10 and out.image[0, 2] == 10  # no photons
    assert out.overloads == 0
    assert out.photons == float(out.image[0, 0] + out.image[1, 1]) - 20.0


def test_negative_adc_clips_at_zero():
    out = noise_image(np.zeros((2, 2), np.float32), 0, adc_offset=-5.0)
    assert np.all(out.image == 0)


def test_gaussian_regime_not_integer_but_float32():
    rng = np.random.Generator(np.random.PCG64(9))
    x = poisson_deviates(np.full(1000, 2e6), rng)
    assert np.any(x != np.floor(x))  # the approximation is not integer-valued
    assert np.all(x == x.astype(np.float32))
