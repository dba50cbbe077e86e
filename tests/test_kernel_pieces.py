"""The short-cuts inside the tile kernel, each against a direct evaluation.

* ``cos_pi_reduced`` (a polynomial standing in for NumPy's scalar float64
  cosine) against an extended-precision cosine;
* ``chebyshev_u_even`` (Horner in c^2) against the three-term recurrence, and
  ``grating_odd`` against sin(N pi h) / sin(pi h) in extended precision;
* the flat-detector projections (per-row plus per-column parts) against the
  same quantities from explicit sub-pixel positions, on tilted detectors with
  sensor layers and oversampling;
* the cancellation-free Miller indices against an extended-precision
  evaluation of a . (pos / R - i) / lambda.
"""

from __future__ import annotations

import numpy as np
import pytest

from bragg_core import numerics
from bragg_core._backend import get_context
from bragg_core.cli.args import build_config, parse_args
from bragg_core.engine.inputs import kernel_inputs
from bragg_core.engine.miller import MillerTile
from bragg_core.engine.paths import ExplicitPaths, FlatPaths
from bragg_core.engine.setup import build_setup
from bragg_core.physics import lattice

LD = np.longdouble
PI_LD = np.arccos(LD(-1))
pytestmark = pytest.mark.skipif(np.finfo(LD).eps > 1e-18, reason="needs an extended-precision long double")


def test_cos_pi_polynomial_is_correctly_rounded_to_a_few_ulp():
    d = np.linspace(-0.5, 0.5, 400_001)
    exact = np.cos(PI_LD * d.astype(LD))
    err = np.abs(numerics.cos_pi_reduced(np, d).astype(LD) - exact)
    assert float(err.max()) <= 3.5e-16


@pytest.mark.parametrize("n", [0, 2, 4, 6, 8, 10, 12])
def test_u_even_from_c_squared_equals_the_recurrence(n):
    c = np.linspace(-1.0, 1.0, 20_001)
    assert np.max(np.abs(numerics.chebyshev_u_even(np, c * c, n) - numerics.chebyshev_u(np, c, n))) <= 5e-14 * (n + 1)


@pytest.mark.parametrize("n", [3, 5, 7, 9, 11])
@pytest.mark.parametrize("form", ["direct", "polynomial", "cosine"])
def test_grating_odd_against_the_ratio_of_sines(n, form):
    rng = np.random.default_rng(n)
    h = np.concatenate([rng.uniform(-30, 30, 50_000), np.arange(-30.0, 31.0)])
    hl = h.astype(LD)
    with np.errstate(invalid="ignore", divide="ignore"):
        exact = np.sin(n * PI_LD * hl) / np.sin(PI_LD * hl)
    exact = np.where(h == np.round(h), LD(n), exact)        # the limit at integers (odd n: always +n)
    cos_pi = numerics.cos_pi_reduced if form == "polynomial" else numerics.cos_pi_plain
    got = lattice.grating_odd(np, h, n, direct=form == "direct", cos_pi=cos_pi)
    assert float(np.max(np.abs(got.astype(LD) - exact))) <= 1e-12 * n
    got32 = lattice.grating_odd(np, h.astype(np.float32), n)
    assert got32.dtype == np.float32
    assert float(np.max(np.abs(got32.astype(LD) - exact))) <= 2e-5 * n


@pytest.mark.parametrize("n", [2, 3, 4, 6, 7, 8, 10, 11, 12])
@pytest.mark.parametrize("form", ["direct", "polynomial", "polynomial-in-place", "nearest-index"])
def test_squared_grating_against_the_ratio_of_sines(n, form):
    """|F_latt|^2 without the sign, any parity of N: against sin^2(N pi h) / sin^2(pi h) in extended precision."""
    rng = np.random.default_rng(100 + n)
    h = np.concatenate([rng.uniform(-30, 30, 50_000), np.arange(-30.0, 31.0), np.arange(-30.0, 31.0) + 0.5])
    dl = (h - np.round(h)).astype(LD)      # exact in float64; the squared ratio depends on it alone
    with np.errstate(invalid="ignore", divide="ignore"):
        exact = (np.sin(n * PI_LD * dl) / np.sin(PI_LD * dl)) ** 2
    exact = np.where(dl == 0, LD(n * n), exact)
    cos_pi = numerics.cos_pi_plain if form == "direct" else numerics.cos_pi_reduced
    hkl0 = [lattice.nearest_index(np, h)] * 3 if form == "nearest-index" else None
    N = (n, 1, 1)
    got = lattice.grating_sqr_product(np, [h, h, h], N, hkl0=hkl0, direct=form == "direct", cos_pi=cos_pi,
                                      horner_max_n=numerics.U_SQR_HORNER_MAX_N["float64"],
                                      in_place=form == "polynomial-in-place")
    assert float(np.max(np.abs(got.astype(LD) - exact))) <= 1e-12 * n * n
    # the sign-carrying amplitude squared gives the same
    amp = lattice.sincg(np, h, lattice.nearest_index(np, h), n, numerics.cos_pi_reduced)
    assert float(np.max(np.abs(got - amp * amp))) <= 1e-12 * n * n
    h32 = h.astype(np.float32)
    got32 = lattice.grating_sqr_product(np, [h32] * 3, N, cos_pi=numerics.cos_pi_plain,
                                        horner_max_n=numerics.U_SQR_HORNER_MAX_N["float32"], in_place=True)
    assert got32.dtype == np.float32
    assert float(np.max(np.abs(got32.astype(LD) - exact))) <= 4e-5 * n * n


def test_squared_grating_multiplies_the_axes():
    rng = np.random.default_rng(7)
    hkl = [rng.uniform(-20, 20, 1000) for _ in range(3)]
    N = (10, 3, 1)
    got = lattice.grating_sqr_product(np, hkl, N, cos_pi=numerics.cos_pi_reduced, horner_max_n=11, in_place=True)
    amp = lattice.square(np, hkl, [lattice.nearest_index(np, x) for x in hkl], N, numerics.cos_pi_reduced)
    assert np.max(np.abs(got - amp * amp)) <= 1e-10 * np.max(amp * amp)


GEOMETRIES = {
    "default": "",
    "twotheta": "-twotheta 20",
    "rotated_layers": "-detector_rotx 3 -detector_roty -4 -detector_rotz 7 -detector_thick 300 "
                      "-detector_thicksteps 3 -detector_abs 200",
    "oversample_xds": "-xds -oversample 3 -detector_rotx 10",
    "divergence": "-twotheta 5 -hdivrange 0.5 -vdivrange 0.5 -hdivsteps 3 -vdivsteps 3",
}
BASE = "-cell 100 102 98 90 91 89 -misset 5 3 2 -default_F 10 -lambda 1 -N 5 -distance 100 -detpixels 64"


def _setup(extra: str, backend="numpy", dtype="float64"):
    cfg = build_config(parse_args((BASE + " " + extra).split()), ".")
    ctx = get_context(backend=backend, dtype=dtype)
    return kernel_inputs(build_setup(cfg.experiment, ctx))


def _tile(k):
    g = k.gctx
    return g.arange(9) + 20.0, g.arange(5) + 30.0   # fast 20..28, slow 30..34


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_flat_projections_equal_explicit_positions(name):
    k = _setup(GEOMETRIES[name])
    setup = k.setup
    assert k.frame.flat is not None
    f_idx, s_idx = _tile(k)
    flat, expl = FlatPaths(k, f_idx, s_idx), ExplicitPaths(k, f_idx, s_idx)
    rng = np.random.default_rng(1)
    V = rng.normal(size=(4, 3))
    I = np.concatenate([k.frame.incident_g, np.array([[0.6, 0.0, 0.8]])])
    T = setup.thick.count
    scale = float(np.max(flat.norm2()))
    pairs = [(flat.dot(V), expl.dot(V)), (flat.norm2(), expl.norm2()), (flat.perp2(I), expl.perp2(I)),
             (flat.dot_at(V, 0), expl.dot_at(V, 0)), (flat.dot_at(V, T - 1), expl.dot_at(V, T - 1)),
             (flat.norm2_at(T - 1), expl.norm2_at(T - 1))]
    for a, b in pairs:
        assert a.shape == b.shape
        assert np.max(np.abs(a - b)) <= 1e-14 * max(scale, float(np.max(np.abs(b))))


def _miller_exact(setup, f_idx, s_idx):
    """a . (pos / R - i) / lambda in long double from long-double positions: (Q, K, T, S, P) x 3."""
    dg = setup.detector
    T, os_ = setup.thick.count, setup.oversample
    sub = LD(float(dg.pixel_size_m)) / os_
    j = np.arange(os_, dtype=LD)
    Fd = sub * (f_idx.astype(LD)[:, None] * os_ + j) + sub / 2     # (C, os)
    Sd = sub * (s_idx.astype(LD)[:, None] * os_ + j) + sub / 2     # (R, os)
    Od = np.arange(T, dtype=LD) * LD(float(setup.thick.step))
    v = lambda a: np.asarray(a, dtype=np.float64).astype(LD)  # noqa: E731
    p0, f, s, o = v(dg.pix0_m), v(dg.fdet), v(dg.sdet), v(dg.odet)
    pos = (p0 + Sd[:, None, None, :, None, None] * s + Fd[None, :, None, None, :, None] * f
           + Od[None, None, :, None, None, None] * o)                # (R, C, T, os, os, 3)
    R, C = len(s_idx), len(f_idx)
    pos = pos.reshape(R * C, T, os_ * os_, 3)
    d = pos / np.sqrt(np.sum(pos * pos, axis=-1))[..., None]
    inc, lam = v(setup.sources.incident), v(setup.sources.wavelength_m)
    scat = (d[None, ...] - inc[:, None, None, None, :]) / lam[:, None, None, None, None]   # (K, P, T, S, 3)
    A = v(setup.orientations_m)                                                          # (Q, 3, 3)
    return tuple(np.einsum("qc,kptsc->qktsp", A[:, i, :], scat) for i in range(3))


@pytest.mark.parametrize("name", ["default", "twotheta", "divergence", "rotated_layers"])
def test_stable_miller_indices_against_extended_precision(name):
    k = _setup(GEOMETRIES[name])
    setup = k.setup
    f_idx, s_idx = _tile(k)
    paths = FlatPaths(k, f_idx, s_idx)
    r = np.sqrt(paths.norm2())
    exact = _miller_exact(setup, f_idx, s_idx)
    errs = {}
    for stable in (True, False):
        hkl = MillerTile(k, paths, r, 1.0 / r, stable=stable)(0, 1000)
        errs[stable] = [float(np.max(np.abs(got.astype(LD) - ref))) for got, ref in zip(hkl, exact)]
        assert all(got.shape == ref.shape for got, ref in zip(hkl, exact))
    a_over_lam = (float(np.max(np.linalg.norm(setup.orientations_m, axis=-1)))
                  / float(np.min(setup.sources.wavelength_m)))
    # the remaining error comes from forming a_perp = a - (a . i) i (exact when the beam is
    # along a frame axis); the difference form carries ~|a| / lambda ulp(1) on the beam-axis index
    assert max(errs[True]) <= 2.5 * np.finfo(np.float64).eps * a_over_lam
    if name == "default":
        assert max(errs[True]) <= 1e-15 < max(errs[False])


def test_float32_miller_form_is_float64_accurate():
    k = _setup(GEOMETRIES["twotheta"])
    setup = k.setup
    f_idx, s_idx = _tile(k)
    paths = FlatPaths(k, f_idx, s_idx)
    r = np.sqrt(paths.norm2())
    hkl = MillerTile(k, paths, r, 1.0 / r, stable=False)(0, 1000)
    for got, ref in zip(hkl, _miller_exact(setup, f_idx, s_idx)):
        assert got.dtype == np.float64
        # far below a float32 ulp of h (~1e-6 at |h| ~ 10)
        assert float(np.max(np.abs(got.astype(LD) - ref))) <= 1e-12
