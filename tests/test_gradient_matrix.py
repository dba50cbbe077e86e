"""Gradients against converged central differences, torch against JAX, over a matrix of configurations.

Each configuration renders a small image whose loss is a fixed weighted sum
of its pixels.  For every parameter the derivative is computed three ways:
torch autograd, ``jax.grad``, and central differences in float64 on NumPy at
two step sizes h and h/2 combined by Richardson extrapolation (error
O(h^4)); the two-step estimate is only accepted as converged when it agrees
with the one-step estimate at h/2.  Every entry must agree within 1e-6 of
the larger of the derivative and the loss's scale per unit parameter.

Points where the model itself is not smooth are checked for what they are
(``docs/gradients.md`` lists them): the normal vector ``odet_vector`` is
replaced by f x s whenever it is not of unit length (a choice made on the
host, so differences along it see the other branch; it is left out here);
at a mosaic spread of 0 the derivative is the one-sided one (forward
differences); a sensor thickness of 0 is the value of a sensor that absorbs
nothing, which the model makes discontinuous (torch and JAX agree, the image
equals the plain one).
"""

from __future__ import annotations

import numpy as np
import pytest

from bragg_core._backend import to_numpy
from bragg_core.experiment import Beam, Crystal, Detector, Experiment
from bragg_core.simulate import simulate

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

PX = 0.1  # mm

BASE = dict(
    beam=dict(wavelength_A=1.0, kahn_factor=0.3),
    detector=dict(fpixels=14, spixels=14, pixel_size_mm=PX, distance_mm=100.0, beam_center_mm=(-1.2, -1.6),
                  oversample=1),
    crystal=dict(cell_A_deg=(70.0, 80.0, 90.0, 85.0, 95.0, 105.0), misset_deg=(10.0, 5.0, 3.0),
                 N_cells=(5.0, 5.0, 5.0), default_F=10.0),
)


def _merge(over):
    out = {k: dict(v) for k, v in BASE.items()}
    for part, vals in over.items():
        out[part].update(vals)
    return out


# configuration -> (fixed overrides, {parameter: (part, field, index or None, nominal value)})
CONFIGS = {
    "mosflm": ({}, {
        "distance": ("detector", "distance_mm", None, 100.0),
        "beam_x": ("detector", "beam_center_mm", 0, -1.2),
        "cell_a": ("crystal", "cell_A_deg", 0, 70.0),
        "misset_z": ("crystal", "misset_deg", 2, 3.0),
    }),
    "custom_tensor_vectors": ({"detector": dict(convention="custom", beam_center_mm=(-0.3, 0.4))}, {
        "fdet_x": ("detector", "fdet_vector", 0, 0.0), "fdet_y": ("detector", "fdet_vector", 1, 0.0),
        "sdet_z": ("detector", "sdet_vector", 2, 0.0),
    }),
    "oversample_layers": ({"detector": dict(oversample=2, thickness_steps=3, attenuation_depth_um=200.0)}, {
        "thickness": ("detector", "thickness_um", None, 150.0),
        "distance": ("detector", "distance_mm", None, 100.0),
    }),
    "direct_beam_pixel_centre_N_tensor": ({"detector": dict(beam_center_mm=(0.75, 0.65))}, {
        "beam_x": ("detector", "beam_center_mm", 0, 0.75), "beam_y": ("detector", "beam_center_mm", 1, 0.65),
        "Na": ("crystal", "N_cells", 0, 5.0),
    }),
    "direct_beam_subpixel_N15": ({"detector": dict(beam_center_mm=(0.725, 0.675), oversample=2),
                                  "crystal": dict(N_cells=(15.0, 15.0, 15.0))}, {
        "beam_x": ("detector", "beam_center_mm", 0, 0.725), "beam_y": ("detector", "beam_center_mm", 1, 0.675),
    }),
}
CUSTOM_VECTORS = {"fdet_vector": (0.0, 0.0, 1.0), "sdet_vector": (0.0, -1.0, 0.0), "odet_vector": (1.0, 0.0, 0.0)}


def _experiment(config, values, make):
    """The experiment of ``config`` with parameter values ``values`` ({name: value}) made by ``make``."""
    over, params = CONFIGS[config]
    spec = _merge(over)
    if spec["detector"].get("convention") == "custom":
        for k, v in CUSTOM_VECTORS.items():
            spec["detector"].setdefault(k, v)
    lists = {}
    for name, (part, fld, idx, _) in params.items():
        v = make(values[name])
        if idx is None:
            spec[part][fld] = v
        else:
            seq = lists.setdefault((part, fld), list(spec[part][fld]))
            seq[idx] = v
    for (part, fld), seq in lists.items():
        spec[part][fld] = tuple(seq)
    return Experiment(beam=Beam(**spec["beam"]), detector=Detector(**spec["detector"]),
                      crystal=Crystal(**spec["crystal"]))


def _weights(shape):
    return np.random.default_rng(7).uniform(0.5, 1.5, size=shape)


def _loss_numpy(config, values):
    img = np.asarray(to_numpy(simulate(_experiment(config, values, float), backend="numpy").image))
    return float(np.sum(img * _weights(img.shape)))


def _grads_torch(config, nominal, dtype=torch.float64):
    leaves = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in nominal.items()}
    img = simulate(_experiment(config, leaves, lambda t: t), backend="torch").image
    loss = torch.sum(img * torch.as_tensor(_weights(tuple(img.shape)), dtype=img.dtype))
    loss.backward()
    return {k: (None if t.grad is None else float(t.grad)) for k, t in leaves.items()}, float(loss.detach())


def _grads_jax(config, nominal):
    def loss(values):
        img = simulate(_experiment(config, values, lambda a: a), backend="jax", dtype="float64").image
        return jnp.sum(img * jnp.asarray(_weights(img.shape)))

    g = jax.grad(loss)({k: jnp.asarray(v, dtype=jnp.float64) for k, v in nominal.items()})
    return {k: float(v) for k, v in g.items()}


def _central(config, nominal, name, h):
    def at(x):
        return _loss_numpy(config, {**nominal, name: x})

    x = nominal[name]
    d1 = (at(x + h) - at(x - h)) / (2 * h)
    d2 = (at(x + h / 2) - at(x - h / 2)) / h
    return (4 * d2 - d1) / 3, d2


STEP = {"distance": 1e-3, "thickness": 1e-2, "cell_a": 1e-4, "misset_z": 1e-4, "Na": 1e-5}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_torch_jax_and_central_differences_agree(config):
    params = CONFIGS[config][1]
    nominal = {k: v[3] for k, v in params.items()}
    gt, loss = _grads_torch(config, nominal)
    gj = _grads_jax(config, nominal)
    for name in params:
        h = STEP.get(name, 1e-5)
        rich, plain = _central(config, nominal, name, h)
        scale = max(abs(rich), 1e-3 * abs(loss))
        assert abs(rich - plain) <= 1e-4 * scale, f"{config}/{name}: differences not converged ({rich} vs {plain})"
        assert gt[name] is not None, f"{config}/{name}: torch gave no gradient"
        assert abs(gt[name] - rich) <= 1e-6 * scale, f"{config}/{name}: torch {gt[name]} vs differences {rich}"
        assert abs(gj[name] - rich) <= 1e-6 * scale, f"{config}/{name}: JAX {gj[name]} vs differences {rich}"


def test_float32_gradients_follow_float64():
    config = "mosflm"
    nominal = {k: v[3] for k, v in CONFIGS[config][1].items()}
    g64, _ = _grads_torch(config, nominal, torch.float64)
    g32, _ = _grads_torch(config, nominal, torch.float32)
    for name in nominal:
        assert abs(g32[name] - g64[name]) <= 2e-3 * max(abs(v) for v in g64.values()), name


def _mosaic_experiment(spread, thickness=0.0, depth=None):
    return Experiment(
        beam=Beam(wavelength_A=1.0),
        detector=Detector(fpixels=12, spixels=12, pixel_size_mm=PX, distance_mm=100.0, beam_center_mm=(0.3, 0.5),
                          oversample=1, thickness_um=thickness, attenuation_depth_um=depth),
        crystal=Crystal(cell_A_deg=(70.0, 80.0, 90.0, 85.0, 95.0, 105.0), misset_deg=(10.0, 5.0, 3.0),
                        N_cells=(5.0, 5.0, 5.0), default_F=10.0, mosaic_spread_deg=spread, mosaic_domains=5))


def test_zero_mosaic_spread_has_the_one_sided_derivative_on_both_frameworks():
    w = _weights((12, 12))
    s = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    img = simulate(_mosaic_experiment(s), backend="torch").image
    torch.sum(img * torch.as_tensor(w)).backward()
    assert s.grad is not None
    gj = jax.grad(lambda v: jnp.sum(simulate(_mosaic_experiment(v), backend="jax", dtype="float64").image
                                    * jnp.asarray(w)))(jnp.asarray(0.0))

    def f(x):
        return float(np.sum(np.asarray(simulate(_mosaic_experiment(x), backend="numpy").image) * w))

    # forward differences from 0+, Richardson over h and h/2
    h = 1e-4
    f0 = float(np.sum(np.asarray(to_numpy(img.detach())) * w))
    d1, d2 = (f(h) - f0) / h, (f(h / 2) - f0) / (h / 2)
    one_sided = 2 * d2 - d1
    assert abs(one_sided - d2) <= 1e-3 * abs(one_sided)
    assert abs(float(s.grad) - one_sided) <= 1e-5 * abs(one_sided)
    assert abs(float(gj) - float(s.grad)) <= 1e-9 * abs(one_sided)
    # the image at a spread of 0 given as an array is the plain one
    np.testing.assert_allclose(to_numpy(img.detach()), simulate(_mosaic_experiment(0.0), backend="numpy").image,
                               rtol=0, atol=1e-12 * float(np.max(f0)))


@pytest.mark.parametrize("depth", [None, 200.0])
def test_zero_thickness_as_an_array_is_the_plain_image_with_finite_gradients(depth):
    plain = np.asarray(simulate(_mosaic_experiment(0.0, 0.0, depth), backend="numpy").image)
    t = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    img = simulate(_mosaic_experiment(0.0, t, depth), backend="torch").image
    img.sum().backward()
    np.testing.assert_allclose(img.detach().numpy(), plain, rtol=0, atol=1e-12 * plain.max())

    def jloss(v):
        return jnp.sum(simulate(_mosaic_experiment(0.0, v, depth), backend="jax", dtype="float64").image)

    jimg = jax.jit(lambda v: simulate(_mosaic_experiment(0.0, v, depth), backend="jax", dtype="float64").image)(
        jnp.asarray(0.0))
    np.testing.assert_allclose(np.asarray(jimg), plain, rtol=0, atol=1e-12 * plain.max())
    gj = float(jax.grad(jloss)(jnp.asarray(0.0)))
    assert np.isfinite(gj) and np.isfinite(float(t.grad))
    assert abs(gj - float(t.grad)) <= 1e-9 * max(1.0, abs(gj))


def test_inert_parameters_get_a_zero_gradient_on_both_frameworks():
    fudge = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    centre = torch.tensor([5.0, 6.0], dtype=torch.float64, requires_grad=True)
    exp = Experiment(beam=Beam(wavelength_A=1.0),
                     detector=Detector(fpixels=8, spixels=8, convention="dials", beam_center_mm=centre),
                     crystal=Crystal(cell_A_deg=(70.0, 80.0, 90.0, 90.0, 90.0, 90.0), N_cells=(5.0, 5.0, 5.0),
                                     default_F=10.0, fudge=fudge, shape="square"))
    simulate(exp, backend="torch").image.sum().backward()
    assert fudge.grad is not None and float(fudge.grad) == 0.0
    assert centre.grad is not None and bool(torch.all(centre.grad == 0))


def test_jit_grad_is_one_traced_tile_whatever_the_image_size():
    """The traced program of jax.jit(jax.grad(...)) has the same size for 4 tiles and for 64."""
    def n_equations(n):
        def loss(d):
            exp = Experiment(beam=Beam(wavelength_A=1.0),
                             detector=Detector(fpixels=n, spixels=n, distance_mm=d, oversample=1),
                             crystal=Crystal(cell_A_deg=(70.0, 80.0, 90.0, 90.0, 90.0, 90.0), N_cells=(5.0, 5.0, 5.0),
                                             default_F=10.0))
            sim = simulate(exp, backend="jax", dtype="float64", memory_budget_bytes=30_000)  # ~70-pixel tiles
            return jnp.sum(sim.image), sim.info.tiles

        jaxpr = jax.make_jaxpr(jax.grad(lambda d: loss(d)[0]))(jnp.asarray(100.0))
        return len(jaxpr.jaxpr.eqns), loss(jnp.asarray(100.0))[1]

    small, t_small = n_equations(16)
    large, t_large = n_equations(64)
    assert t_large >= 4 * t_small > 1
    assert small == large


def test_torch_func_grad_and_vmap_equal_eager():
    from torch.func import grad, vmap

    def img(d):
        exp = Experiment(beam=Beam(wavelength_A=1.0),
                         detector=Detector(fpixels=8, spixels=8, distance_mm=d, oversample=1),
                         crystal=Crystal(cell_A_deg=(70.0, 80.0, 90.0, 85.0, 95.0, 105.0), N_cells=(5.0, 5.0, 5.0),
                                         default_F=10.0, misset_deg=(10.0, 5.0, 3.0)))
        return simulate(exp, backend="torch", dtype="float64").image

    d = torch.tensor(100.0, dtype=torch.float64, requires_grad=True)
    img(d).sum().backward()
    g = grad(lambda x: img(x).sum())(torch.tensor(100.0, dtype=torch.float64))
    assert abs(float(g) - float(d.grad)) <= 1e-12 * abs(float(d.grad))
    ds = torch.tensor([100.0, 101.5], dtype=torch.float64)
    batched = vmap(img)(ds)
    for i in range(2):
        assert torch.equal(batched[i], img(ds[i]))
