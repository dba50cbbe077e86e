"""The detector model against noisify: PSF images exactly, noise terms in distribution, seeds reproducible.

Statistical tests use a false-alarm rate of 1e-4 each: chi-square goodness of
fit with the critical value from the Wilson-Hilferty approximation at
z = 3.719 (one-sided 1e-4), and means/variances at 3.89 standard errors
(two-sided 1e-4).
"""

from __future__ import annotations

import gzip
import math
import shlex
from pathlib import Path

import numpy as np
import pytest

from bragg_core._backend import get_context, to_numpy
from bragg_core.detector_model import (
    DetectorModel,
    apply_detector_model,
    counter_rng,
    detector_pixel_index,
    pixel_noise,
)
from bragg_core.detector_model.psf import erf
from bragg_core.testing import assert_images_close, assert_same_backend

DATA = Path(__file__).parent / "data" / "noisify"
Z_CHI2 = 3.719        # one-sided normal quantile at 1e-4
Z_MEAN = 3.891        # two-sided normal quantile at 1e-4
CASES = {}
for _line in (DATA / "cmd.txt").read_text().splitlines():
    if _line.strip() and not _line.startswith("#"):
        _name, _inp, *_args = shlex.split(_line)
        CASES[_name] = (_inp, _args)
PSF_CASES = sorted(n for n, (_, a) in CASES.items() if "-nonoise" in a)


def _floats(name, shape):
    return np.frombuffer(gzip.decompress((DATA / name).read_bytes()), dtype="<f4").reshape(shape).astype(np.float64)


def _smv(name, shape):
    return np.frombuffer(gzip.decompress((DATA / name).read_bytes())[512:], dtype="<u2").reshape(shape)


def _model_from_flags(args, **over):
    from bragg_core.noisify import _ALIASES, _FLAGS, _INTS, _TEXT
    from bragg_core.nonbragg import parse_flags

    o = parse_flags(args, _FLAGS, _ALIASES, _TEXT, _INTS)
    kw = dict(psf=o.get("-psf"), psf_fwhm_um=o.get("-psf_fwhm", 46.0), psf_radius=o.get("-psf_radius", 0),
              pixel_size_mm=o.get("-pixel", 0.1), noise=not o.has("-nonoise"), quantum_gain=o.get("-gain", 1.0),
              adc_offset=o.get("-adc", 40.0), scale=o.get("-scale", 1.0), flicker=o.get("-flicker", 0.0),
              calibration=o.get("-calibration", 0.03), readout_adu=o.get("-readout", 0.0))
    kw.update(over)
    return DetectorModel(**kw), o.get("-detpixels")


def chi2_critical(dof: int) -> float:
    """Chi-square value exceeded with probability 1e-4 (Wilson-Hilferty)."""
    h = 2.0 / (9.0 * dof)
    return dof * (1.0 - h + Z_CHI2 * math.sqrt(h)) ** 3


def chi2_fit(counts_by_value: dict, expected_prob: dict, n: int, min_expected: float = 5.0) -> tuple[float, int]:
    """Pearson chi-square of observed value counts against probabilities; sparse bins are pooled into the tails."""
    keys = sorted(expected_prob)
    obs, exp, acc_o, acc_e = [], [], 0.0, 0.0
    for k in keys:
        acc_o += counts_by_value.get(k, 0)
        acc_e += n * expected_prob[k]
        if acc_e >= min_expected:
            obs.append(acc_o)
            exp.append(acc_e)
            acc_o = acc_e = 0.0
    rest_o = n - sum(obs)
    rest_e = n - sum(exp)
    if rest_e > 0:
        obs.append(rest_o)
        exp.append(rest_e)
    obs, exp = np.array(obs), np.array(exp)
    return float(((obs - exp) ** 2 / exp).sum()), len(obs) - 1


# ----------------------------------------------------------------------------- PSF, noise off


# every case runs on every backend; a quick subset (both kernels, edge wrap, scale and gain) by default
PSF_QUICK = ["noiseless_scale_gain", "psf_fiber_bg_w100_r6", "psf_gauss_w100_r4"]


@pytest.mark.parametrize("name", PSF_QUICK)
def test_noiseless_images_match_noisify(name, backend):
    _check_psf_case(name, backend)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(PSF_CASES) - set(PSF_QUICK)))
def test_noiseless_images_match_noisify_more_cases(name, backend):
    _check_psf_case(name, backend)


def _check_psf_case(name, backend):
    inp, args = CASES[name]
    model, n = _model_from_flags(args)
    image = backend.asarray(_floats(inp + ".gz", (n, n)), "float64")
    out = apply_detector_model(image, model)
    assert_same_backend(out.photons, backend.context("float64"), shape=(n, n))
    ours = np.asarray(to_numpy(out.photons), dtype=np.float64)
    ref = _floats(name + ".float.gz", (n, n))
    # the reference adds the spread beyond the right edge (x == width) to column 0 of the next row;
    # images with content there (the *_bg cases) are compared without column 0
    cols = slice(1, None) if "_bg_" in name else slice(None)
    assert_images_close(ours[:, cols], ref[:, cols], r_min=0.999999, max_rel=1e-5, what=name)
    ints = np.asarray(to_numpy(out.image))
    assert np.array_equal(ints[:, cols], _smv(name + ".int.img.gz", (n, n))[:, cols].astype(ints.dtype))


@pytest.mark.parametrize("kind", ["fiber", "gauss"])
@pytest.mark.parametrize("shape, radius", [((7, 5), 12), ((9, 30), 11), ((6, 6), 2)])
def test_psf_wider_than_the_image_equals_the_direct_sum(kind, shape, radius):
    """A kernel wider than the image is made and transformed only over the offsets that reach a pixel
    (lengths H + min(R, H - 1)); the image equals the plain double sum over every pixel pair."""
    from bragg_core.detector_model.psf import _convolve, convolve_psf, psf_kernel

    img = np.random.default_rng(4).gamma(1.0, 10.0, shape)
    H, W = shape
    full = psf_kernel(np, kind, 1.7, radius, img)                     # (2R+1, 2R+1)
    want = np.zeros(shape)
    for y in range(H):          # oracle: the definition, pixel by pixel
        for x in range(W):
            for yy in range(H):
                for xx in range(W):
                    if abs(y - yy) <= radius and abs(x - xx) <= radius:
                        want[y, x] += full[y - yy + radius, x - xx + radius] * img[yy, xx]
    got = convolve_psf(np, img, kind, 1.7, radius)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * want.max())
    crop = psf_kernel(np, kind, 1.7, radius, img, (min(radius, H - 1), min(radius, W - 1)))
    assert crop.shape == (2 * min(radius, H - 1) + 1, 2 * min(radius, W - 1) + 1)
    np.testing.assert_array_equal(crop, full[radius - (crop.shape[0] - 1) // 2:radius + (crop.shape[0] + 1) // 2,
                                             radius - (crop.shape[1] - 1) // 2:radius + (crop.shape[1] + 1) // 2])
    ctx = get_context(dtype="float64")

    class NoFFT:  # the tap-sum fallback, on the cropped kernel
        def __getattr__(self, name):
            if name == "fft":
                raise AttributeError(name)
            return getattr(ctx.xp, name)

    np.testing.assert_allclose(_convolve(NoFFT(), img, crop), want, rtol=1e-10, atol=1e-12 * want.max())


def test_psf_float32_and_direct_sum_agree_with_fft():
    from bragg_core.detector_model.psf import _convolve, psf_kernel

    img = _floats("spots.bin.gz", (96, 96))
    ctx = get_context(dtype="float64")
    k = psf_kernel(np, "fiber", 1.3, 5, img)

    class NoFFT:  # the namespace without an fft extension: the tap-sum fallback
        def __getattr__(self, name):
            if name == "fft":
                raise AttributeError(name)
            return getattr(ctx.xp, name)

    np.testing.assert_allclose(_convolve(NoFFT(), img, k, 5), _convolve(np, img, k, 5), atol=1e-9 * img.max())
    out32 = apply_detector_model(img.astype(np.float32), DetectorModel(psf="gauss", psf_fwhm_um=150, psf_radius=6,
                                                                       noise=False))
    out64 = apply_detector_model(img, DetectorModel(psf="gauss", psf_fwhm_um=150, psf_radius=6, noise=False))
    assert out32.photons.dtype == np.float32
    assert_images_close(out32.photons, out64.photons, r_min=0.999999, max_rel=1e-5)


def test_erf_series():
    # a product of exp(-x^2) and a sum, each good to a few ulp: 8 eps absolute
    x = np.linspace(-7, 7, 2001)
    ref = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf(np, x), ref, rtol=0, atol=8 * np.finfo(np.float64).eps)


# ----------------------------------------------------------------------------- the generator


def test_counter_generator_is_splitmix64_of_key_plus_pixel():
    idx = np.arange(0, 10_000_000, 999_983, dtype=np.int64)
    key = counter_rng.stream_key(7, 3, 2, 5)
    got = counter_rng.bits(np, counter_rng.pixel_base(np, idx), key).view(np.uint64)
    m = (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    want = [mix((key + int(i) * 0x9E3779B97F4A7C15) & m) for i in idx]
    assert [int(v) for v in got] == want


def test_same_seed_same_image_across_runs_tiles_and_backends(backend):
    rng = np.random.default_rng(1)
    photons = rng.gamma(0.8, 30.0, size=(48, 40))  # means from ~0 to ~400: both Poisson regimes
    model = DetectorModel(flicker=0.02, calibration=0.03, readout_adu=2.0, seed=99, shot=3)
    ref = np.asarray(apply_detector_model(photons, model).image)
    assert np.array_equal(ref, np.asarray(apply_detector_model(photons, model).image))
    other = np.asarray(apply_detector_model(photons, DetectorModel(**{**model.__dict__, "seed": 100})).image)
    assert (other != ref).mean() > 0.5
    # tiles: the per-pixel noise of a tile equals that part of the whole image
    full = pixel_noise(photons, model, detector_pixel_index(np, photons.shape, "cpu"))
    tile = pixel_noise(photons[10:30, 8:40], model,
                       detector_pixel_index(np, (20, 32), "cpu", origin=(10, 8), full_fast=40))
    assert np.array_equal(full[10:30, 8:40], tile)
    # backends: the integer stream is identical; the float transforms may differ in the last bits, which
    # could move a Poisson acceptance or a truncation by one count in a rare pixel (none expected here)
    out = apply_detector_model(backend.asarray(photons, "float64"), model)
    assert_same_backend(out.adu, backend.context("float64"))
    got = np.asarray(to_numpy(out.image))
    assert (got != ref).mean() <= 1e-3 and np.abs(got.astype(np.int64) - ref).max() <= 1


# ----------------------------------------------------------------------------- noise terms, in distribution


def _poisson_pmf(lam, kmax):
    return {k: math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1.0)) for k in range(kmax)}


@pytest.mark.parametrize("lam", [0.7, 4.0, 9.9, 10.0, 50.0, 3000.0])
def test_poisson_counts_follow_the_distribution(lam):
    n = 400_000 if lam < 100 else 200_000
    img = np.full((n // 1000, 1000), lam)
    counts = np.asarray(apply_detector_model(img, DetectorModel(calibration=0.0, adc_offset=0.0, seed=5)).image)
    vals, num = np.unique(counts, return_counts=True)
    kmax = int(lam + 12 * math.sqrt(lam) + 20)
    stat, dof = chi2_fit(dict(zip(vals.tolist(), num.tolist())), _poisson_pmf(lam, kmax), counts.size)
    assert stat < chi2_critical(dof), (stat, dof)


def _normal_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_readout_noise_alone_is_truncated_gaussian():
    sigma, adc, n = 3.0, 40.0, 400_000
    out = apply_detector_model(np.zeros((400, 1000)), DetectorModel(calibration=0.0, readout_adu=sigma,
                                                                    adc_offset=adc, seed=8))
    counts = np.asarray(out.image)
    vals, num = np.unique(counts, return_counts=True)
    # trunc(adc + sigma N) = k for adc + sigma N in [k, k+1)
    prob = {k: _normal_cdf((k + 1 - adc) / sigma) - _normal_cdf((k - adc) / sigma) for k in range(0, 81)}
    stat, dof = chi2_fit(dict(zip(vals.tolist(), num.tolist())), prob, n)
    assert stat < chi2_critical(dof), (stat, dof)


@pytest.mark.parametrize("term", ["flicker", "calibration"])
def test_flicker_and_calibration_variance(term):
    lam, f, n = 1000.0, 0.1, 250_000
    counts = np.asarray(apply_detector_model(np.full((250, 1000), lam),
                                             DetectorModel(**{"calibration": 0.0, term: f}, adc_offset=0.0,
                                                           seed=21)).image).astype(np.float64)
    var = lam + (f * lam) ** 2            # Poisson of lam (1 + f N)
    assert abs(counts.mean() - lam) < Z_MEAN * math.sqrt(var / n)
    # the counts are close to normal (fourth moment 3 var^2), so the sample variance has variance 2 var^2 / n
    assert abs(counts.var() - var) < Z_MEAN * var * math.sqrt(2.0 / n)


def test_calibration_is_fixed_from_shot_to_shot_flicker_is_not():
    lam = 1e6
    img = np.full((100, 100), lam)
    base = dict(adc_offset=0.0, seed=4, saturation_adu=1e9)
    cal = [np.asarray(apply_detector_model(img, DetectorModel(calibration=0.05, shot=s, **base)).adu)
           for s in (0, 1)]
    fl = [np.asarray(apply_detector_model(img, DetectorModel(calibration=0.0, flicker=0.05, shot=s, **base)).adu)
          for s in (0, 1)]
    assert np.corrcoef(cal[0].ravel(), cal[1].ravel())[0, 1] > 0.99     # 1 - 1/(0.05^2 lam) = 0.9996
    assert abs(np.corrcoef(fl[0].ravel(), fl[1].ravel())[0, 1]) < 0.05  # independent: |r| ~ 0.01


def test_gain_offset_and_saturation():
    out = apply_detector_model(np.full((200, 500), 50.0), DetectorModel(calibration=0.0, quantum_gain=2.5,
                                                                       adc_offset=100.0, seed=2))
    adu = np.asarray(out.image).astype(np.float64)
    # floor(2.5 k + 100) drops 0.5 for odd k, i.e. 0.25 on average (P(k odd) = (1 - e^-100) / 2)
    assert abs(adu.mean() - (2.5 * 50 + 100 - 0.25)) < Z_MEAN * math.sqrt(2.5 ** 2 * 50 / adu.size)
    sat = apply_detector_model(np.full((10, 10), 70000.0), DetectorModel(calibration=0.0))
    assert np.all(np.asarray(sat.image) == 65535) and int(sat.overloads) == 100


@pytest.mark.parametrize("name", ["poisson_0.7", "poisson_50", "poisson_5000", "readout_3", "flicker_0.1",
                                  "calibration_0.05", "gain_adc"])
def test_noise_images_match_noisify_in_distribution(name):
    """Two-sample chi-square of our noise image against noisify's, same flags, different generator."""
    inp, args = CASES[name]
    model, n = _model_from_flags(args, seed=1234)
    ours = np.asarray(apply_detector_model(_floats(inp + ".gz", (n, n)), model).image).ravel()
    ref = _smv(name + ".noise.img.gz", (n, n)).ravel().astype(np.int64)
    edges = np.unique(np.quantile(np.concatenate([ours, ref]), np.linspace(0, 1, 41)))
    edges[-1] += 1
    a, _ = np.histogram(ours, edges)
    b, _ = np.histogram(ref, edges)
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    stat = float((((a - b) ** 2) / (a + b)).sum())  # equal sample sizes
    assert stat < chi2_critical(len(a) - 1), (stat, len(a) - 1)


# ----------------------------------------------------------------------------- gradients


def test_gradients_in_psf_width_gain_and_scale():
    torch = pytest.importorskip("torch")
    img = torch.tensor(np.random.default_rng(0).uniform(0, 50, (7, 6)), dtype=torch.float64)

    def run(kind):
        def f(w, gain, scale):
            m = DetectorModel(psf=kind, psf_fwhm_um=w, psf_radius=3, noise=False, quantum_gain=gain, scale=scale)
            return apply_detector_model(img, m).adu
        return f

    params = tuple(torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (140.0, 1.7, 0.9))
    for kind in ("gauss", "fiber"):
        assert torch.autograd.gradcheck(run(kind), params)


def test_row_blocks_change_nothing(monkeypatch):
    import bragg_core.detector_model as dm

    photons = np.random.default_rng(3).gamma(0.8, 40.0, size=(37, 29))
    model = DetectorModel(flicker=0.05, calibration=0.03, readout_adu=2.0, seed=5, psf="fiber", psf_radius=2)
    whole = apply_detector_model(photons, model)
    monkeypatch.setattr(dm, "_BLOCK_PIXELS", 100)  # blocks of 3 rows
    blocks = apply_detector_model(photons, model)
    assert np.array_equal(np.asarray(whole.image), np.asarray(blocks.image))
    assert np.array_equal(np.asarray(whole.adu), np.asarray(blocks.adu))


def _forking(monkeypatch):
    """Fork workers even for tiny images, in blocks of a few rows."""
    import bragg_core.detector_model as dm
    from bragg_core.engine import parallel

    monkeypatch.setattr(parallel, "MIN_FORK_PATHS", 0)
    monkeypatch.setattr(dm, "_BLOCK_PIXELS", 100)
    monkeypatch.setattr(dm, "_PSF_BLOCK_PIXELS", 200)
    monkeypatch.setenv("BRAGG_CORE_THREADS", "2")


@pytest.mark.parametrize("psf", [None, "gauss", "fiber"])
def test_forked_workers_change_nothing(monkeypatch, psf):
    photons = np.random.default_rng(4).gamma(0.8, 40.0, size=(41, 33))
    photons[5, 7] = 3e6  # the normal-approximation regime too
    model = DetectorModel(flicker=0.05, calibration=0.03, readout_adu=2.0, seed=5, psf=psf, psf_radius=3)
    monkeypatch.setenv("BRAGG_CORE_FORK", "0")
    whole = apply_detector_model(photons, model)
    _forking(monkeypatch)
    from bragg_core.engine import parallel

    calls = []
    real = parallel.run_forked
    monkeypatch.setattr(parallel, "run_forked", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    monkeypatch.setenv("BRAGG_CORE_FORK", "1")
    forked = apply_detector_model(photons, model)
    # forking needs a process without other threads and without a started JAX runtime (an earlier test's)
    assert (calls and max(calls) == 2) or not parallel.fork_available()
    for a, b in zip(whole, forked):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_gaussian_psf_by_row_and_column_sums_equals_the_kernel():
    from bragg_core.detector_model.psf import _convolve, gauss_rows, gauss_weights, psf_kernel

    img = np.random.default_rng(6).uniform(0, 10, (57, 43))
    for R in (1, 2, 3, 4, 7, 12):
        want = _convolve(np, img, psf_kernel(np, "gauss", 2.7, R, img), R)
        e = gauss_weights(np, np.asarray(2.7), R, img)
        got = gauss_rows(np, img, e, R, 0, 57, clip=False)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * want.max())
        blocks = np.concatenate([gauss_rows(np, img, e, R, r, min(57, r + 5), clip=False) for r in range(0, 57, 5)])
        assert np.array_equal(blocks, got)


def test_box_muller_cos_sin_from_the_arc_table():
    idx = np.arange(0, 2_000_000, dtype=np.int64)
    base = counter_rng.pixel_base(np, idx)
    n1, n2 = counter_rng.normal_pair(np, base, 3, 1, 0, 0, np.float64)
    z = counter_rng.bits(np, base, counter_rng.stream_key(3, 1, 0, 0)).view(np.uint64)
    hi = (z >> np.uint64(32)).astype(np.float64)
    lo = (z & np.uint64(0xFFFFFFFF)).astype(np.float64)
    r = np.sqrt(-2.0 * np.log((hi + 0.5) * 2.0 ** -32))
    theta = 2.0 * np.pi * ((lo + 0.5) * 2.0 ** -32)
    np.testing.assert_allclose(n1, r * np.cos(theta), rtol=0, atol=8e-15)
    np.testing.assert_allclose(n2, r * np.sin(theta), rtol=0, atol=8e-15)
    assert np.array_equal(counter_rng.normal(np, base, 3, 1, 0, 0, np.float64), n1)


@pytest.mark.parametrize("lam", [2.0e6, 5.0e7])
def test_poisson_normal_approximation_moments(lam):
    n = 250_000
    counts = np.asarray(apply_detector_model(np.full((250, 1000), lam), DetectorModel(
        calibration=0.0, adc_offset=0.0, seed=13, saturation_adu=1e12)).adu)
    assert np.all(counts == np.floor(counts))
    assert abs(counts.mean() - lam) < Z_MEAN * math.sqrt(lam / n)
    assert abs(counts.var() - lam) < Z_MEAN * lam * math.sqrt(2.0 / n)


def test_poisson_on_concrete_jax_arrays_equals_the_traced_bound_loops():
    """Outside jit, JAX arrays are read on the host to skip empty regimes and stop finished loops; under jit
    every loop runs to its bound. Both give the same counts, and NumPy's."""
    jax = pytest.importorskip("jax")
    from bragg_core._backend import enable_float64
    from bragg_core.detector_model import counter_rng
    from bragg_core.detector_model.counter_rng import pixel_base
    from bragg_core.detector_model.poisson import poisson

    enable_float64("jax", "float64")
    import array_api_compat
    import jax.numpy as jnp

    rng = np.random.default_rng(3)
    cases = {
        "mixed": np.concatenate([rng.uniform(0, 9, 3000), rng.uniform(10, 500, 3000), rng.uniform(2e6, 3e6, 500),
                                 [0.0, -1.0, np.nan]]),
        "small only": rng.uniform(0, 2, 4000),
        "huge only": rng.uniform(2e6, 3e6, 2000),
    }
    xj = array_api_compat.array_namespace(jnp.zeros(1))
    counter_rng._TABLES.clear()   # traced first, then traced again (new shapes): nothing made in a trace is kept
    for name, mean in cases.items():
        idx = np.arange(mean.size, dtype=np.int64)
        want = poisson(np, mean, pixel_base(np, idx), 7, 2)
        base_j = pixel_base(xj, jnp.asarray(idx))
        traced = np.asarray(jax.jit(lambda m, b: poisson(xj, m, b, 7, 2))(jnp.asarray(mean), base_j))
        concrete = np.asarray(poisson(xj, jnp.asarray(mean), base_j, 7, 2))
        assert np.array_equal(concrete, traced), name
        assert np.mean(concrete != want) <= 1e-3 and np.max(np.abs(concrete - want)) <= 1, name


def test_poisson_of_means_all_below_ten_equals_the_masked_regimes():
    """An image whose means are all below 10 skips the regime masks; each pixel's count is the one the
    masked path gives it (the same pixels beside a mean of 50 and one of 2e6), and means <= 0 or NaN give 0."""
    from bragg_core.detector_model.counter_rng import pixel_base
    from bragg_core.detector_model.poisson import poisson

    xp = get_context(dtype="float64").xp
    rng = np.random.default_rng(11)
    small = np.concatenate([rng.uniform(0, 9.99, 20000), [0.0, -3.0, np.nan, 1e-300]])
    mixed = np.concatenate([small, [50.0, 2e6]])
    base = pixel_base(xp, np.arange(mixed.size, dtype=np.int64))
    fast = np.asarray(poisson(xp, small, base[:small.size], 5, 1))
    masked = np.asarray(poisson(xp, mixed, base, 5, 1))
    np.testing.assert_array_equal(fast, masked[:small.size])
    assert np.all(fast[-4:-1] == 0) and fast.dtype == np.float64
