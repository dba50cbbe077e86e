"""Gradients of the simulated image with respect to every continuous parameter.

* ``torch.autograd.gradcheck`` (float64) on a 12x12 detector, oversample 1,
  for each parameter group: the analytical Jacobian (autograd through setup,
  geometry and kernel) against central differences.
* ``jax.grad`` equals torch's gradient for the same inputs.
* At removable singularities (a Bragg peak centre, the direct beam, sinc3 at
  0, zero-length vectors, polarization along the beam) gradients are finite
  and equal to their limits.

The geometry: 0.1 mm pixels at 100 mm with a 1 A beam put about 0.1 of a
Miller index on each pixel, and N = 5 cells give spots about 4 pixels wide,
so the 12x12 panel (beam centre off the panel, a slightly triclinic cell and
a misset) samples two spots and their flanks, not only zeros between them.

Tolerances.  The image is divided by a fixed number (its nominal maximum) so
that outputs are O(1).  In float64, central differences with step ``eps``
have a rounding error of about 1e-16 / eps and a truncation error of about
eps^2 |f'''| / 6; with eps = 1e-6 on parameters of order 1-100 (in their
natural units), the first is ~1e-10 and the second smaller, so the
analytical and numerical Jacobians must agree to ~1e-9 of the output scale.
``atol = 1e-7, rtol = 1e-6`` keeps two orders of margin above that and is
still tight enough that any missing chain-rule factor (a detached term, a
factor of pi/180) fails: such errors are O(1) relative.  Parameters whose
natural magnitude is far from 1 (fluence ~1e24) are given as a scale times a
constant, so that one absolute ``eps`` suits every input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bragg_core.experiment import Beam, Crystal, Detector, Experiment
from bragg_core.io.grid import StructureFactorGrid
from bragg_core.simulate import simulate

torch = pytest.importorskip("torch")
from torch.autograd import gradcheck  # noqa: E402

F64 = torch.float64
EPS, ATOL, RTOL = 1e-6, 1e-7, 1e-6

# the nominal experiment, as plain values
BEAM = dict(wavelength_A=1.0, kahn_factor=0.5)
DETECTOR = dict(fpixels=12, spixels=12, pixel_size_mm=0.1, distance_mm=100.0,
                beam_center_mm=(-1.5, -2.0), oversample=1)
CRYSTAL = dict(cell_A_deg=(100.0, 102.0, 98.0, 90.0, 91.0, 89.0), misset_deg=(5.0, 3.0, 2.0),
               N_cells=(5.0, 5.0, 5.0), default_F=10.0, shape="square")


def t(v):
    return torch.tensor(v, dtype=F64, requires_grad=True)


def experiment(beam=None, detector=None, crystal=None) -> Experiment:
    return Experiment(beam=Beam(**{**BEAM, **(beam or {})}),
                      detector=Detector(**{**DETECTOR, **(detector or {})}),
                      crystal=Crystal(**{**CRYSTAL, **(crystal or {})}))


def image(beam=None, detector=None, crystal=None):
    """The image of an experiment whose fields may be tensors (float64 torch)."""
    return simulate(experiment(beam, detector, crystal), backend="torch", dtype="float64").image


def _scale(beam=None, detector=None, crystal=None) -> float:
    """The nominal image's maximum (a plain number): outputs divided by it are O(1)."""
    with torch.no_grad():
        return float(torch.max(image(beam, detector, crystal)))


def check(fn, *inputs, eps=EPS, atol=ATOL, rtol=RTOL):
    """gradcheck of fn(*inputs) (an image divided by its nominal maximum)."""
    assert gradcheck(fn, inputs, eps=eps, atol=atol, rtol=rtol, fast_mode=False)


# ----------------------------------------------------------------------------
# gradcheck, one parameter group each
# ----------------------------------------------------------------------------


def test_gradcheck_unit_cell():
    s = _scale()
    check(lambda cell: image(crystal={"cell_A_deg": cell}) / s, t(CRYSTAL["cell_A_deg"]))


def test_gradcheck_unit_cell_lengths_among_numbers():
    # lengths as tensors inside a tuple of plain angles: stacked, not detached
    s = _scale()

    def fn(a, b, c):
        return image(crystal={"cell_A_deg": (a, b, c, 90.0, 91.0, 89.0)}) / s

    check(fn, t(100.0), t(102.0), t(98.0))


def test_gradcheck_misset():
    s = _scale()
    check(lambda m: image(crystal={"misset_deg": m}) / s, t(CRYSTAL["misset_deg"]))


def test_gradcheck_reciprocal_vectors():
    # rows a*, b*, c* (1/A) of a slightly sheared cell, rotated off the axes
    c, s_ = math.cos(0.1), math.sin(0.1)
    rot = np.array([[c, -s_, 0.0], [s_, c, 0.0], [0.0, 0.0, 1.0]])
    A = np.array([[1 / 100, 0.0, 0.0], [1e-4, 1 / 102, 0.0], [2e-4, -1e-4, 1 / 98]]) @ rot.T
    crystal = {"cell_A_deg": None, "misset_deg": None}
    s = _scale(crystal={**crystal, "reciprocal_vectors_per_A": A})
    # eps on entries of size 1e-2: 1e-9 is a relative step of 1e-7, as for the other groups
    check(lambda m: image(crystal={**crystal, "reciprocal_vectors_per_A": m}) / s, t(A), eps=1e-9)


def test_gradcheck_distance():
    s = _scale()
    check(lambda d: image(detector={"distance_mm": d}) / s, t(100.0))


def test_gradcheck_beam_center():
    s = _scale()
    check(lambda bc: image(detector={"beam_center_mm": bc}) / s, t(DETECTOR["beam_center_mm"]))


def test_gradcheck_detector_rotations_and_twotheta():
    det = {"rotation_deg": (0.5, -0.3, 0.2), "twotheta_deg": 0.4}
    s = _scale(detector=det)
    check(lambda r, tt: image(detector={"rotation_deg": r, "twotheta_deg": tt}) / s,
          t(det["rotation_deg"]), t(det["twotheta_deg"]))


def test_gradcheck_wavelength():
    s = _scale()
    check(lambda lam: image(beam={"wavelength_A": lam}) / s, t(1.0))


def test_gradcheck_sources():
    pos = [[-10.0, 0.0, 0.0], [-10.0, 0.002, -0.001]]
    lam = [1.0, 1.01]
    s = _scale(beam={"source_positions_m": np.array(pos), "source_wavelengths_A": np.array(lam)})
    check(lambda p, w: image(beam={"source_positions_m": p, "source_wavelengths_A": w}) / s, t(pos), t(lam))


@pytest.mark.parametrize("shape, N", [
    ("square", (5.0, 5.0, 5.0)),   # integer-valued tensor N: the general sincg form
    ("round", (5.5, 4.5, 5.2)),
    ("gauss", (5.5, 4.5, 5.2)),
    ("tophat", (5.5, 4.5, 5.2)),
])
def test_gradcheck_cell_counts(shape, N):
    s = _scale(crystal={"shape": shape, "N_cells": N})
    check(lambda n: image(crystal={"shape": shape, "N_cells": n}) / s, t(N))


def test_gradcheck_mosaic_spread():
    cr = {"mosaic_spread_deg": 0.5, "mosaic_domains": 4}
    s = _scale(crystal=cr)
    check(lambda m: image(crystal={**cr, "mosaic_spread_deg": m}) / s, t(0.5))


def test_gradcheck_fluence_kahn_water():
    fluence0 = 1e24
    beam = {"fluence_photons_per_m2": fluence0, "kahn_factor": 0.5, "water_size_um": 3.0}
    s = _scale(beam=beam)

    def fn(f, k, w):
        return image(beam={"fluence_photons_per_m2": f * fluence0, "kahn_factor": k, "water_size_um": w}) / s

    check(fn, t(1.0), t(0.5), t(3.0))


@pytest.mark.parametrize("interpolate, lower, shape", [
    (False, (-3, -3, -4), (4, 4, 4)),     # nearest reflection: the reflections this panel sees
    (True, (-5, -5, -6), (7, 8, 7)),      # tricubic: their 4x4x4 neighbourhoods too
])
def test_gradcheck_structure_factors(interpolate, lower, shape):
    rng = np.random.default_rng(7)
    F0 = 5.0 + 10.0 * rng.random(shape)

    def crystal(F):
        return {"structure_factors": StructureFactorGrid(F, *lower), "interpolate": interpolate}

    s = _scale(crystal=crystal(F0))
    F = t(F0)
    out = image(crystal=crystal(F))
    assert out.grad_fn is not None
    check(lambda F: image(crystal=crystal(F)) / s, F)


def test_gradcheck_sensor_thickness_and_attenuation():
    det = {"thickness_um": 100.0, "attenuation_depth_um": 200.0, "thickness_steps": 3}
    s = _scale(detector=det)
    check(lambda th, at: image(detector={**det, "thickness_um": th, "attenuation_depth_um": at}) / s,
          t(100.0), t(200.0))


def test_gradcheck_sensor_thickness_alone():
    # no attenuation depth: mu = 1 / thickness, also a function of the tensor
    det = {"thickness_um": 100.0}
    s = _scale(detector=det)
    check(lambda th: image(detector={"thickness_um": th}) / s, t(100.0))


# ----------------------------------------------------------------------------
# JAX: jax.grad through the same engine equals torch's gradient
# ----------------------------------------------------------------------------

# every group at once: (where, field, nominal value)
_ALL = [
    ("crystal", "cell_A_deg", (100.0, 102.0, 98.0, 90.0, 91.0, 89.0)),
    ("crystal", "misset_deg", (5.0, 3.0, 2.0)),
    ("crystal", "N_cells", (5.5, 4.5, 5.2)),
    ("crystal", "mosaic_spread_deg", 0.5),
    ("detector", "distance_mm", 100.0),
    ("detector", "beam_center_mm", (-1.5, -2.0)),
    ("detector", "rotation_deg", (0.5, -0.3, 0.2)),
    ("detector", "twotheta_deg", 0.4),
    ("detector", "thickness_um", 100.0),
    ("detector", "attenuation_depth_um", 200.0),
    ("beam", "wavelength_A", 1.0),
    ("beam", "kahn_factor", 0.5),
    ("beam", "water_size_um", 3.0),
]
_FIXED = {"crystal": {"shape": "round", "mosaic_domains": 3},
          "detector": {"thickness_steps": 2}, "beam": {}}


def _weighted_sum(xp, make_array, values, F):
    """sum(w * image) for fields given as arrays of one backend; w a fixed pattern."""
    parts = {k: dict(v) for k, v in _FIXED.items()}
    for (where, name, _), v in zip(_ALL, values):
        parts[where][name] = v
    parts["crystal"]["structure_factors"] = StructureFactorGrid(F, -1, -3, 1)  # the reflections seen
    parts["crystal"]["default_F"] = 10.0
    parts["crystal"]["interpolate"] = False
    img = simulate(experiment(**parts), dtype="float64").image
    w = make_array(np.cos(np.arange(144.0)).reshape(12, 12) + 1.5)
    return xp.sum(w * img)


def test_jax_grad_equals_torch_grad():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    F0 = 5.0 + 10.0 * np.random.default_rng(7).random((3, 3, 4))
    nominal = [np.asarray(v, dtype=np.float64) for _, _, v in _ALL]

    # torch
    tv = [torch.tensor(v, dtype=F64, requires_grad=True) for v in nominal]
    tF = torch.tensor(F0, dtype=F64, requires_grad=True)
    loss_t = _weighted_sum(torch, lambda a: torch.tensor(a, dtype=F64), tv, tF)
    loss_t.backward()
    g_torch = [v.grad.numpy() for v in tv] + [tF.grad.numpy()]

    # JAX: one jax.grad over every field (tracers all the way through)
    def loss_j(values, F):
        return _weighted_sum(jnp, jnp.asarray, values, F)

    vj = [jnp.asarray(v) for v in nominal]
    # under jit: one compilation instead of one per primitive (eager JAX compiles each)
    val_j, (gv, gF) = jax.jit(jax.value_and_grad(loss_j, argnums=(0, 1)))(vj, jnp.asarray(F0))
    g_jax = [np.asarray(g) for g in gv] + [np.asarray(gF)]

    assert abs(float(val_j) - float(loss_t.detach())) <= 1e-12 * abs(float(loss_t.detach()))
    names = [n for _, n, _ in _ALL] + ["structure_factors.F"]
    for name, gt, gj in zip(names, g_torch, g_jax):
        assert gt.shape == gj.shape, name
        scale = np.max(np.abs(gt))
        assert scale > 0, f"no gradient reached {name}"
        np.testing.assert_allclose(gj, gt, rtol=0, atol=1e-8 * scale, err_msg=name)


# ----------------------------------------------------------------------------
# removable singularities: finite gradients, equal to the limits
# ----------------------------------------------------------------------------


def _grad(fn, *xs):
    xs = [torch.tensor(x, dtype=F64, requires_grad=True) for x in xs]
    y = fn(*xs)
    gs = torch.autograd.grad(y.sum(), xs, allow_unused=True)
    return y, gs


def test_sincg_at_integer_index():
    from bragg_core.physics.lattice import nearest_index, sincg

    for N_array in (False, True):
        def f(h, n):
            return sincg(torch, h, nearest_index(torch, h), n if N_array else 5.0)  # noqa: B023 (used in this pass)

        # value N (-1)^((N-1) h0) and zero slope at every integer, also at h = 0
        y, (gh, gn) = _grad(f, [0.0, 3.0, -2.0], 5.0)
        assert torch.equal(y.detach(), torch.tensor([5.0, 5.0, 5.0], dtype=F64))
        assert torch.equal(gh, torch.zeros(3, dtype=F64))
        if N_array:
            # d/dN of the limit N cos(pi f h0) (-1)^((M-1) h0) at f = 0: one per point
            assert torch.allclose(gn, torch.tensor(3.0, dtype=F64))


def test_sinc3_and_round_shape_at_zero():
    from bragg_core.physics.lattice import round_, sinc3

    y, (gx,) = _grad(lambda x: sinc3(torch, x), [0.0, 1e-9, 0.05])
    assert torch.all(torch.isfinite(gx))
    # sinc3'(x) = -x/5 + x^3/70 - x^5/2520 + ... near 0
    expect = torch.tensor([0.0, -2e-10, -0.01 + 0.05 ** 3 / 70 - 0.05 ** 5 / 2520], dtype=F64)
    assert torch.allclose(gx, expect, rtol=1e-10, atol=1e-20)

    def f(h, n):
        hkl = torch.stack([h, h, h], dim=-1)
        return round_(torch, hkl, torch.round(hkl), (n, n, n), 1.0)

    y, (gh, gn) = _grad(f, [0.0, 2.0, 2.0 + 1e-12], 5.0)
    assert torch.all(torch.isfinite(gh)) and torch.isfinite(gn)
    # zero slope at the centre; just off it, the series' slope -15 C pi^2 d (C = 0.7236 N^3)
    C = 0.723601254558268 * 125.0
    assert torch.allclose(gh, torch.tensor([0.0, 0.0, -15 * C * math.pi ** 2 * 1e-12], dtype=F64),
                          rtol=1e-3, atol=1e-30)
    # at the centre F = 0.7236 N^3: dF/dN = 3 * 0.7236 N^2 per point
    assert torch.allclose(gn, torch.tensor(3 * 3 * 0.723601254558268 * 25.0, dtype=F64), rtol=1e-9)


def test_unit_and_norm_of_zero_vector():
    from bragg_core.geometry.vectors import norm, unit

    y, (g,) = _grad(lambda u: unit(torch, u), [[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    assert torch.all(torch.isfinite(g))
    assert torch.equal(g[0], torch.zeros(3, dtype=F64))
    y, (g,) = _grad(lambda u: norm(torch, u), [[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    assert torch.equal(g[0], torch.zeros(3, dtype=F64))
    assert torch.allclose(g[1], torch.tensor([0.6, 0.0, 0.8], dtype=F64))


def test_polarization_along_the_beam():
    from bragg_core.physics.polarization import kahn_factor

    inc = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    e = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    y, (gd, gk) = _grad(lambda d, k: kahn_factor(torch, inc, d, e, k), [1.0, 0.0, 0.0], 0.5)
    assert float(y.detach()) == 1.0
    assert torch.all(torch.isfinite(gd)) and torch.isfinite(gk)
    assert float(gk) == 0.0  # sin^2 2theta = 0: the Kahn factor has no effect along the beam


@pytest.mark.parametrize("shape", ["square", "round", "gauss"])
def test_finite_gradients_at_the_direct_beam_and_a_peak_centre(shape):
    # the beam centre on a pixel centre: that pixel sees h = k = l = 0 (a Bragg
    # peak centre), a zero scattering vector and polarization at zero angle
    groups = {"cell_A_deg": (100.0, 100.0, 100.0, 90.0, 90.0, 90.0), "misset_deg": (0.0, 0.0, 0.0),
              "N_cells": (5.0, 5.0, 5.0)}
    tensors = {k: t(v) for k, v in groups.items()}
    # mosflm: Fbeam = Ybeam + half a pixel = 0.65 mm, the centre of pixel 6
    bc, dist, lam = t((0.6, 0.6)), t(100.0), t(1.0)
    img = image(beam={"wavelength_A": lam},
                detector={"beam_center_mm": bc, "distance_mm": dist},
                crystal={**tensors, "shape": shape})
    centre = img[6, 6]
    assert float(centre.detach()) == float(torch.max(img.detach())) > 0
    grads = torch.autograd.grad(centre, [*tensors.values(), bc, dist, lam], retain_graph=True)
    for g in grads:
        assert torch.all(torch.isfinite(g))
    grads = torch.autograd.grad(img.sum(), [*tensors.values(), bc, dist, lam])
    for g in grads:
        assert torch.all(torch.isfinite(g))


@pytest.mark.parametrize("where, field, value", [
    ("beam", "dispersion_percent", 1.0),
    ("beam", "hdiv_range_mrad", 0.5),
    ("crystal", "dmin_A", 2.0),
    ("crystal", "osc_deg", 0.1),
])
def test_host_only_parameters_refuse_gradients(where, field, value):
    # parameters that only choose counts or cut-offs on the host are refused
    # loudly when they carry gradients, never detached silently
    with pytest.raises(ValueError, match=field):
        image(**{where: {field: t(value)}})
    image(**{where: {field: torch.tensor(value, dtype=F64)}})  # without grad: a plain value


def test_gradcheck_running_sum_path():
    # -oversample_omega/_polar/_thick: the reference's running-sum semantics,
    # evaluated from log-sums and powers of the per-path factors.  Its values
    # carry a relative rounding noise of ~2e-13 (the exp/log of sums), so the
    # central-difference noise is ~2e-13 / eps: 2e-7 at eps = 1e-6 (measured),
    # 2e-9 at eps = 1e-4, where the truncation error is ~5e-10 (measured at
    # 1e-3: 5e-8, which scales as eps^2).  Hence eps = 1e-4 here.
    det = {"oversample": 2, "oversample_omega": True, "oversample_polar": True, "oversample_thick": True,
           "thickness_um": 50.0, "attenuation_depth_um": 100.0}
    s = _scale(detector=det)

    def fn(d, th, at, k):
        return image(beam={"kahn_factor": k},
                     detector={**det, "distance_mm": d, "thickness_um": th, "attenuation_depth_um": at}) / s

    check(fn, t(100.0), t(50.0), t(100.0), t(0.5), eps=1e-4)


def test_torch_updates_temporaries_in_place_only_where_no_graph_is_kept():
    """torch tiles that go straight to a host image may reuse their temporaries; a render that carries a
    gradient, and the prepared render (whose arguments may carry one), never do (the gradchecks above
    cover the values)."""
    from bragg_core._backend import get_context
    from bragg_core.engine.inputs import kernel_inputs
    from bragg_core.engine.setup import build_setup

    ctx = get_context(backend="torch", dtype="float64")
    plain = build_setup(experiment(), ctx)
    assert kernel_inputs(plain, untracked=True).in_place
    assert not kernel_inputs(plain).in_place
    traced = build_setup(experiment(detector={"distance_mm": t(100.0)}), ctx)
    assert traced.autograd and not kernel_inputs(traced, untracked=True).in_place
