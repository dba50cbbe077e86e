"""bragg_core.units on every backend and float dtype.

Data are drawn as NumPy float64 in physical ranges, moved to the backend under
test, and every result is checked for namespace, device and dtype before its
values.  References are computed in float64 from the very values the backend
received, so the tolerance is a few ULP of the dtype under test.
"""

from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from bragg_core import units as u
from bragg_core._backend import to_numpy
from bragg_core.testing import assert_close, assert_same_backend


def magnitudes(lo, hi, signed=False):
    """Floats with |x| in [lo, hi]; with ``signed``, also 0 and negatives."""
    mag = st.floats(lo, hi)
    return st.one_of(st.just(0.0), mag, mag.map(lambda v: -v)) if signed else mag


def draw_array(data, elements, min_dims=0):
    shape = data.draw(array_shapes(min_dims=min_dims, max_dims=2, max_side=4), label="shape")
    return data.draw(arrays(np.float64, shape, elements=elements), label="values")


def on_backend(backend, dtype, values):
    """``values`` on the backend, and the float64 copy of what it actually holds."""
    x = backend.asarray(values, dtype)
    return x, to_numpy(x).astype(np.float64)


# function, float64 reference written from the definition, physical input range
CONVERSIONS = {
    "angstrom_to_m": (u.angstrom_to_m, lambda x: x * 1e-10, magnitudes(1e-3, 1e7, signed=True)),
    "m_to_angstrom": (u.m_to_angstrom, lambda x: x / 1e-10, magnitudes(1e-13, 1e2, signed=True)),
    "mm_to_m": (u.mm_to_m, lambda x: x * 1e-3, magnitudes(1e-6, 1e6, signed=True)),
    "m_to_mm": (u.m_to_mm, lambda x: x / 1e-3, magnitudes(1e-9, 1e3, signed=True)),
    "um_to_m": (u.um_to_m, lambda x: x * 1e-6, magnitudes(1e-3, 1e9, signed=True)),
    "deg_to_rad": (u.deg_to_rad, lambda x: x * math.pi / 180, magnitudes(1e-6, 1e4, signed=True)),
    "rad_to_deg": (u.rad_to_deg, lambda x: x * 180 / math.pi, magnitudes(1e-8, 1e2, signed=True)),
    "mrad_to_rad": (u.mrad_to_rad, lambda x: x * 1e-3, magnitudes(1e-6, 1e3, signed=True)),
    "energy_eV_to_wavelength_A": (u.energy_eV_to_wavelength_A, lambda e: 12398.42 / e, magnitudes(1e2, 1e6)),
    "wavelength_A_to_energy_eV": (u.wavelength_A_to_energy_eV, lambda w: 12398.42 / w, magnitudes(1e-2, 1e2)),
    "dispersion_percent_to_fraction": (
        u.dispersion_percent_to_fraction, lambda p: p / 100, st.just(0.0) | magnitudes(1e-6, 1e2)),
    "attenuation_depth_um_to_mu_per_m": (
        u.attenuation_depth_um_to_mu_per_m, lambda d: 1 / (d * 1e-6), magnitudes(1e-1, 1e5)),
    "mu_per_m_to_attenuation_depth_um": (
        u.mu_per_m_to_attenuation_depth_um, lambda m: 1 / m / 1e-6, magnitudes(1e1, 1e7)),
}
ROUND_TRIPS = [
    ("angstrom_to_m", "m_to_angstrom"),
    ("m_to_angstrom", "angstrom_to_m"),
    ("mm_to_m", "m_to_mm"),
    ("m_to_mm", "mm_to_m"),
    ("deg_to_rad", "rad_to_deg"),
    ("rad_to_deg", "deg_to_rad"),
    ("energy_eV_to_wavelength_A", "wavelength_A_to_energy_eV"),
    ("wavelength_A_to_energy_eV", "energy_eV_to_wavelength_A"),
    ("attenuation_depth_um_to_mu_per_m", "mu_per_m_to_attenuation_depth_um"),
    ("mu_per_m_to_attenuation_depth_um", "attenuation_depth_um_to_mu_per_m"),
]

FLUX = magnitudes(1e6, 1e14)
EXPOSURE_S = magnitudes(1e-3, 1e3)
BEAMSIZE_M = magnitudes(1e-6, 1e-3)
FLUENCE = magnitudes(1e20, 1e32)


@pytest.mark.parametrize("name", CONVERSIONS)
@given(data=st.data())
def test_conversion_matches_definition(backend, float_dtype, name, data):
    func, reference, elements = CONVERSIONS[name]
    x, x64 = on_backend(backend, float_dtype, draw_array(data, elements))
    assert_close(func(x), reference(x64), backend.context(float_dtype))


@pytest.mark.parametrize(("forward", "inverse"), ROUND_TRIPS)
@given(data=st.data())
def test_round_trip(backend, float_dtype, forward, inverse, data):
    x, x64 = on_backend(backend, float_dtype, draw_array(data, CONVERSIONS[forward][2]))
    back = CONVERSIONS[inverse][0](CONVERSIONS[forward][0](x))
    assert_close(back, x64, backend.context(float_dtype))


@pytest.mark.parametrize("name", CONVERSIONS)
def test_integer_arrays_become_float64(backend, name):
    func = CONVERSIONS[name][0]
    ints = backend.xp.asarray([1, 2, 50], device=backend.device)
    assert_same_backend(func(ints), backend.context("float64"), shape=(3,))


@pytest.mark.parametrize("name", CONVERSIONS)
@pytest.mark.parametrize(
    "scalar", [2.0, 2, np.float64(2.0), np.float32(2.0)], ids=["float", "int", "np.float64", "np.float32"]
)
def test_scalars_give_python_floats(name, scalar):
    func, reference, _ = CONVERSIONS[name]
    result = func(scalar)
    assert type(result) is float
    assert result == pytest.approx(reference(2.0), rel=4e-16)


def fluence_args(data, backend, dtype):
    """flux always an array; exposure and beam size each an array or a Python float.

    At least 1-d: NumPy turns arithmetic on 0-d arrays (``flux * 3.0``) into scalars.
    """
    flux_np = draw_array(data, FLUX, min_dims=1)
    args = [backend.asarray(flux_np, dtype)]
    for elements in (EXPOSURE_S, BEAMSIZE_M):
        if data.draw(st.booleans(), label="as array"):
            args.append(backend.asarray(data.draw(arrays(np.float64, flux_np.shape, elements=elements)), dtype))
        else:
            args.append(data.draw(elements))
    as64 = [to_numpy(a).astype(np.float64) if not isinstance(a, float) else a for a in args]
    return args, as64


@given(data=st.data())
def test_fluence_from_flux(backend, float_dtype, data):
    ctx = backend.context(float_dtype)
    (flux, t, b), (flux64, t64, b64) = fluence_args(data, backend, float_dtype)
    fluence = u.fluence_from_flux(flux, t, b)
    assert_close(fluence, flux64 * t64 / b64**2, ctx)
    # linear in flux and exposure, inverse-square in beam size
    assert_close(u.fluence_from_flux(flux * 3.0, t, b), 3.0 * to_numpy(fluence), ctx)
    assert_close(u.fluence_from_flux(flux, t * 3.0, b), 3.0 * to_numpy(fluence), ctx)
    assert_close(u.fluence_from_flux(flux, t, b * 2.0), to_numpy(fluence) / 4.0, ctx)
    assert_close(u.flux_from_fluence(fluence, t, b), flux64, ctx, ulps=8)


@given(data=st.data())
def test_flux_from_fluence(backend, float_dtype, data):
    ctx = backend.context(float_dtype)
    fluence, f64 = on_backend(backend, float_dtype, draw_array(data, FLUENCE))
    t, b = data.draw(EXPOSURE_S), data.draw(BEAMSIZE_M)
    assert_close(u.flux_from_fluence(fluence, t, b), f64 * b**2 / t, ctx)


def test_numpy_scalars_never_widen(backend, float_dtype):
    ctx = backend.context(float_dtype)
    x = backend.asarray([1e12, 2e12], float_dtype)
    assert_same_backend(u.fluence_from_flux(x, np.float64(0.1), 1e-4), ctx, shape=(2,))
    assert_same_backend(u.flux_from_fluence(x, 0.5, np.float64(1e-4)), ctx, shape=(2,))
    assert_same_backend(u.fluence_from_flux(1e12, x[:1], np.float64(1e-4)), ctx, shape=(1,))
    zero_d = backend.asarray(1e12, float_dtype)
    assert_same_backend(u.fluence_from_flux(zero_d, 1.0, 1e-4), ctx, shape=())
    assert_same_backend(u.deg_to_rad(backend.asarray(90.0, float_dtype)), ctx, shape=())


def test_constants():
    assert u.energy_eV_to_wavelength_A(u.HC_EV_ANGSTROM) == 1.0
    assert u.deg_to_rad(180.0) == pytest.approx(math.pi, rel=1e-15)
    assert u.R_E_SQR_M2 * u.DEFAULT_FLUENCE_PHOTONS_PER_M2 == pytest.approx(1.0, rel=1e-12)
    assert math.sqrt(u.R_E_SQR_M2) == pytest.approx(2.8179403e-15, rel=1e-6)  # classical electron radius
    assert u.AVOGADRO == pytest.approx(6.02214e23, rel=1e-6)
    for c in (u.R_E_SQR_M2, u.AVOGADRO, u.HC_EV_ANGSTROM, u.DEFAULT_FLUENCE_PHOTONS_PER_M2):
        assert type(c) is float  # a NumPy scalar here would widen float32 arrays


INVALID = [
    (u.energy_eV_to_wavelength_A, (0.0,), "energy_eV"),
    (u.energy_eV_to_wavelength_A, (-9000.0,), "energy_eV"),
    (u.wavelength_A_to_energy_eV, (math.nan,), "wavelength_A"),
    (u.attenuation_depth_um_to_mu_per_m, (0.0,), "depth_um"),
    (u.mu_per_m_to_attenuation_depth_um, (-1.0,), "mu_per_m"),
    (u.dispersion_percent_to_fraction, (-0.5,), "dispersion_percent"),
    (u.deg_to_rad, (math.inf,), "angle_deg"),
    (u.mm_to_m, (math.nan,), "length_mm"),
    (u.fluence_from_flux, (1e12, 0.0, 1e-4), "exposure_s"),
    (u.fluence_from_flux, (1e12, 1.0, -1e-4), "beamsize_m"),
    (u.fluence_from_flux, (1e12, 1.0, 0.0), "beamsize_m"),
    (u.fluence_from_flux, (math.nan, 1.0, 1e-4), "flux_photons_per_s"),
    (u.flux_from_fluence, (1e24, -2.0, 1e-4), "exposure_s"),
    (u.flux_from_fluence, (1e24, 1.0, np.float32(0.0)), "beamsize_m"),
]


@pytest.mark.parametrize(("func", "args", "argname"), INVALID)
def test_invalid_scalars_rejected(func, args, argname):
    bad = args[list(inspect.signature(func).parameters).index(argname)]
    with pytest.raises(ValueError, match=rf"^{argname} must be .*got {re.escape(repr(bad))}"):
        func(*args)


@pytest.mark.parametrize(("func", "args", "argname"), INVALID)
def test_invalid_arrays_rejected(backend, func, args, argname):
    if backend.name in ("jax", "dask"):
        pytest.skip(f"{backend.name} arrays may be traced or lazy; their values are not checked (documented)")
    arrays_ = [backend.asarray([1.0, a], "float64") for a in args]
    with pytest.raises(ValueError, match=rf"^{argname} must be .*in an array of shape \(2,\)"):
        func(*arrays_)


def test_scalars_checked_next_to_lazy_arrays(backend):
    x = backend.asarray([1e12], "float32")
    with pytest.raises(ValueError, match="beamsize_m"):
        u.fluence_from_flux(x, 1.0, -1e-4)


def test_jax_jit_traces_through():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    f = jax.jit(lambda e, flux: (u.energy_eV_to_wavelength_A(e), u.fluence_from_flux(flux, 0.5, 1e-4)))
    lam, fluence = f(jnp.asarray([12398.42], dtype=jnp.float32), jnp.asarray([2e12], dtype=jnp.float32))
    assert lam.dtype == jnp.float32 and fluence.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(lam), [1.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(fluence), [1e20], rtol=1e-6)


def test_dask_stays_lazy():
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")

    def no_compute(*args, **kwargs):
        raise AssertionError("bragg_core.units computed a Dask graph")

    x = da.from_array(np.array([1e12, 2e12], dtype=np.float32), chunks=1)
    with dask.config.set(scheduler=no_compute):
        fluence = u.fluence_from_flux(x, 1.0, 1e-4)
        mu = u.attenuation_depth_um_to_mu_per_m(x)
    assert isinstance(fluence, da.Array) and fluence.dtype == np.float32 and mu.dtype == np.float32
    np.testing.assert_allclose(fluence.compute(), [1e20, 2e20], rtol=1e-6)


def test_torch_gradients_flow():
    torch = pytest.importorskip("torch")
    flux = torch.tensor([1e12], dtype=torch.float64, requires_grad=True)
    beamsize = torch.tensor([1e-4], dtype=torch.float64, requires_grad=True)
    u.fluence_from_flux(flux, 2.0, beamsize).sum().backward()
    torch.testing.assert_close(flux.grad, torch.tensor([2.0 / 1e-8], dtype=torch.float64))
    torch.testing.assert_close(beamsize.grad, torch.tensor([-2 * 1e12 * 2.0 / 1e-12], dtype=torch.float64))
