"""Unit conversions, done once at the edge of bragg_core.

Inside the package lengths are metres and angles radians; every function here
converts user-facing units to or from that system, and says so in its name.

Inputs may be Python or NumPy scalars, or arrays of any supported backend:

* all inputs scalars -> the result is a Python ``float``;
* any input an array -> the result is an array of that array's namespace,
  device and float dtype (float32 stays float32; integers become float64).
  Scalars mixed in adopt the array's dtype and never widen it.

Inputs that make no physical sense (NaN, infinities, a zero or negative
energy, exposure or beam size...) raise ``ValueError`` naming the argument and
the offending value.  Scalars are always checked; arrays are checked only when
their values can be read cheaply: JAX arrays (which may be tracers) and Dask
arrays (which would have to be computed) are passed through unchecked.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._backend import get_context, is_lazy, is_scalar, namespace_of, to_numpy

__all__ = [
    "R_E_SQR_M2",
    "AVOGADRO",
    "HC_EV_ANGSTROM",
    "DEFAULT_FLUENCE_PHOTONS_PER_M2",
    "angstrom_to_m",
    "m_to_angstrom",
    "mm_to_m",
    "m_to_mm",
    "um_to_m",
    "deg_to_rad",
    "rad_to_deg",
    "mrad_to_rad",
    "energy_eV_to_wavelength_A",
    "wavelength_A_to_energy_eV",
    "dispersion_percent_to_fraction",
    "attenuation_depth_um_to_mu_per_m",
    "mu_per_m_to_attenuation_depth_um",
    "fluence_from_flux",
    "flux_from_fluence",
]

# Constants stay Python floats so that they take the dtype of the arrays they
# meet instead of promoting float32 to float64.
R_E_SQR_M2 = 7.94079248018965e-30
"""Thomson cross-section factor r_e^2 (classical electron radius squared), m^2."""
AVOGADRO = 6.02214179e23
"""Avogadro's number, 1/mol."""
HC_EV_ANGSTROM = 12398.42
"""Planck's constant times the speed of light, eV*Angstrom (the value nanoBragg uses)."""
DEFAULT_FLUENCE_PHOTONS_PER_M2 = 125932015286227086360700780544.0
"""Default fluence, photons/m^2; chosen so that R_E_SQR_M2 * fluence == 1."""

_DEG_PER_RAD = 180.0 / math.pi

# rule -> (words for the error message, test returning True where valid)
_RULES = {
    "finite": ("finite", lambda xp, x: xp.isfinite(x)),
    "positive": ("positive and finite", lambda xp, x: xp.isfinite(x) & (x > 0)),
    "nonnegative": ("non-negative and finite", lambda xp, x: xp.isfinite(x) & (x >= 0)),
}


def _check(name: str, value: Any, rule: str) -> None:
    words, valid = _RULES[rule]
    if is_scalar(value):
        if not valid(np, float(value)):
            raise ValueError(f"{name} must be {words}, got {value!r}")
        return
    if is_lazy(value):
        return
    xp, _ = namespace_of(value)
    ok = valid(xp, value)
    try:
        all_ok = bool(xp.all(ok))
    except RuntimeError:  # inside a torch.func transform the values cannot be read: like a JAX tracer
        return
    if not all_ok:
        bad = to_numpy(value)[~to_numpy(ok)].flat[0].item()
        raise ValueError(
            f"{name} must be {words}, got {bad!r} in an array of shape {tuple(value.shape)}"
        )


def _convert(formula, **named: tuple[Any, str]):
    """Check each ``name=(value, rule)``, then return ``formula(*values)``.

    All scalars: the values are Python floats and so is the result.  Otherwise
    every value becomes an array of the one context (namespace, device, float
    dtype) the arrays agree on, and so does the result.
    """
    for name, (value, rule) in named.items():
        _check(name, value, rule)
    values = [value for value, _ in named.values()]
    if all(is_scalar(v) for v in values):
        return formula(*(float(v) for v in values))
    ctx = get_context(*values)
    out = formula(*(ctx.asarray(v) for v in values))
    # NumPy turns arithmetic on 0-d arrays into NumPy scalars; give back an array.
    return ctx.asarray(out) if is_scalar(out) else out


# Lengths. Dividing by an exact power of ten rounds once; multiplying by an
# inexact reciprocal would round twice.


def angstrom_to_m(length_A):
    """L[m] = L[Å] / 1e10."""
    return _convert(lambda x: x / 1e10, length_A=(length_A, "finite"))


def m_to_angstrom(length_m):
    """L[Å] = L[m] * 1e10."""
    return _convert(lambda x: x * 1e10, length_m=(length_m, "finite"))


def mm_to_m(length_mm):
    """L[m] = L[mm] / 1000."""
    return _convert(lambda x: x / 1000.0, length_mm=(length_mm, "finite"))


def m_to_mm(length_m):
    """L[mm] = L[m] * 1000."""
    return _convert(lambda x: x * 1000.0, length_m=(length_m, "finite"))


def um_to_m(length_um):
    """L[m] = L[µm] / 1e6."""
    return _convert(lambda x: x / 1e6, length_um=(length_um, "finite"))


# Angles


def deg_to_rad(angle_deg):
    """θ[rad] = θ[deg] · π/180."""
    return _convert(lambda x: x / _DEG_PER_RAD, angle_deg=(angle_deg, "finite"))


def rad_to_deg(angle_rad):
    """θ[deg] = θ[rad] · 180/π."""
    return _convert(lambda x: x * _DEG_PER_RAD, angle_rad=(angle_rad, "finite"))


def mrad_to_rad(angle_mrad):
    """θ[rad] = θ[mrad] / 1000."""
    return _convert(lambda x: x / 1000.0, angle_mrad=(angle_mrad, "finite"))


# Beam


def energy_eV_to_wavelength_A(energy_eV):
    """λ[Å] = hc / E[eV], with hc = HC_EV_ANGSTROM = 12398.42 eV·Å."""
    return _convert(lambda e: HC_EV_ANGSTROM / e, energy_eV=(energy_eV, "positive"))


def wavelength_A_to_energy_eV(wavelength_A):
    """E[eV] = hc / λ[Å], with hc = HC_EV_ANGSTROM = 12398.42 eV·Å."""
    return _convert(lambda lam: HC_EV_ANGSTROM / lam, wavelength_A=(wavelength_A, "positive"))


def dispersion_percent_to_fraction(dispersion_percent):
    """Relative spectral width Δλ/λ = dispersion[%] / 100."""
    return _convert(lambda x: x / 100.0, dispersion_percent=(dispersion_percent, "nonnegative"))


def attenuation_depth_um_to_mu_per_m(depth_um):
    """Linear attenuation coefficient μ[1/m] = 1 / (depth[µm] · 1e-6)."""
    return _convert(lambda d: 1e6 / d, depth_um=(depth_um, "positive"))


def mu_per_m_to_attenuation_depth_um(mu_per_m):
    """Attenuation depth[µm] = 1e6 / μ[1/m] (inverse of attenuation_depth_um_to_mu_per_m)."""
    return _convert(lambda mu: 1e6 / mu, mu_per_m=(mu_per_m, "positive"))


def fluence_from_flux(flux_photons_per_s, exposure_s, beamsize_m):
    """Fluence[photons/m²] = flux[photons/s] · exposure[s] / beamsize[m]²."""
    return _convert(
        lambda flux, t, b: flux * t / (b * b),
        flux_photons_per_s=(flux_photons_per_s, "nonnegative"),
        exposure_s=(exposure_s, "positive"),
        beamsize_m=(beamsize_m, "positive"),
    )


def flux_from_fluence(fluence_photons_per_m2, exposure_s, beamsize_m):
    """Flux[photons/s] = fluence[photons/m²] · beamsize[m]² / exposure[s]."""
    return _convert(
        lambda fluence, t, b: fluence * (b * b) / t,
        fluence_photons_per_m2=(fluence_photons_per_m2, "nonnegative"),
        exposure_s=(exposure_s, "positive"),
        beamsize_m=(beamsize_m, "positive"),
    )
