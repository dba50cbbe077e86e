"""Per-pixel diagnostics: every intermediate of one pixel's sum, as arrays.

``trace_pixel(setup, slow, fast)`` evaluates one pixel with the kernel's own
functions and returns what went into it, in the geometry dtype of the setup
(float64 where the backend has it).  Shapes use T thickness layers, S
sub-pixels (row-major over (sub_slow, sub_fast)), K sources and Q
orientations (phi-major over (phi step, mosaic domain)).

Keys (arrays on the setup's backend and device):

``pixel_pos_m`` (T, S, 3), ``airpath_m`` (T, S), ``diffracted`` (T, S, 3),
``incident`` (K, 3), ``wavelength_m`` (K,), ``scattering_per_m`` (T, S, K, 3),
``valid`` (T, S, K) (not cut by dmin), ``orientations_m`` (Q, 3, 3),
``hkl`` / ``hkl0`` (T, S, 3): fractional and nearest indices for source 0,
phi step 0, mosaic domain 0; ``hkl_all`` / ``hkl0_all`` (T, S, K, Q, 3);
``omega_sr`` (T, S) per sub-pixel and ``omega_pixel`` (the factor applied);
``polar`` (T, S, K) per path and ``polar_pixel``; ``capture_fraction``
(T, S) and ``capture_pixel``; ``F_latt_abc`` (T, S, 3) per axis (square
shape only, 1 for an axis with N <= 1) and ``F_latt`` (T, S) for source 0,
orientation 0; ``F_latt_all`` (T, S, K, Q); ``F_cell`` (T, S) and
``F_cell_all`` (T, S, K, Q); ``I_pixel``: the pixel value, computed by the
kernel in the working dtype (equal to the rendered image's pixel).

The ``*_pixel`` scalars are the values the reference holds at the end of the
pixel: omega and polarization of the first sub-pixel and path (of the last
ones under -oversample_omega/-oversample_polar), capture fraction of the last
layer's first sub-pixel (last sub-pixel under -oversample_thick).
"""

from __future__ import annotations

from ..geometry.vectors import dot, norm
from ..physics import lattice
from ..physics.polarization import kahn_factor
from ..physics.resolution import within_resolution
from .inputs import kernel_inputs
from .kernel import render_tile
from .miller import miller, orientation_last
from .paths import sub_pixel_geometry, sub_pixel_positions
from .render import render_mapped
from .setup import Setup
from .terms import cell_amplitude, terms_from_scattering
from .tiling import TilePlan

__all__ = ["trace_pixel"]


def _0d(xp, v):
    """A 0-d array (NumPy indexing returns scalars, which belong to no backend)."""
    return xp.reshape(xp.asarray(v), ())


def _first_or_last(xp, values, mask, last: bool):
    """values[i] for the first (or last) i where mask is true (flattened); 0 if none."""
    v = xp.reshape(values, (-1,))
    m = xp.reshape(mask, (-1,))
    c = xp.cumulative_sum(xp.astype(m, xp.int32))
    pick = m & (c == (c[-1] if last else 1))
    return xp.sum(xp.where(pick, v, xp.zeros_like(v)))


def trace_pixel(setup: Setup, slow: int, fast: int) -> dict:
    """Intermediates of pixel (slow, fast); see the module docstring for the keys."""
    g = setup.gctx
    xp = g.xp
    if not (0 <= slow < setup.detector.spixels and 0 <= fast < setup.detector.fpixels):
        raise IndexError(f"pixel (slow={slow}, fast={fast}) is outside the "
                         f"{setup.detector.spixels}x{setup.detector.fpixels} detector")
    f_idx = g.asarray([float(fast)])
    s_idx = g.asarray([float(slow)])

    # the kernel, evaluated in the geometry dtype
    k64 = kernel_inputs(setup, g)
    d_xyz, omega, cap = sub_pixel_geometry(k64, f_idx, s_idx)  # (1, T, S) each
    d = xp.stack([c[0, ...] for c in d_xyz], axis=-1)                          # (T, S, 3)
    omega = omega[0, ...]
    if cap is None:  # no sensor thickness: 1, or 0 where it is recomputed per path (as the kernel)
        cap = xp.zeros_like(omega) if setup.oversample_thick else xp.ones_like(omega)
    else:
        cap = cap[0, ...]
    pos = xp.stack([c[0, ...] for c in sub_pixel_positions(k64, f_idx, s_idx)], axis=-1)  # (T, S, 3)
    inc, lam = setup.sources.incident, setup.sources.wavelength_m
    scat_xyz = tuple((c[..., None] - i) / lam for c, i in zip(d_xyz, k64.frame.incident_xyz))  # (1, T, S, K)
    scat = xp.stack([c[0, ...] for c in scat_xyz], axis=-1)                    # (T, S, K, 3)
    if setup.dmin_m > 0:
        valid = within_resolution((scat[..., 0], scat[..., 1], scat[..., 2]), setup.dmin_m)
    else:
        valid = xp.ones(scat.shape[:-1], dtype=xp.bool, device=g.device)
    if setup.polarization_correction or setup.oversample_polar:
        polar = kahn_factor(xp, inc, d[:, :, None, :], setup.detector.polar, k64.frame.kahn)
    else:
        polar = xp.ones(scat.shape[:-1], dtype=g.dtype, device=g.device)

    orient = k64.orientations                                              # (Q, 3, 3)
    hkl = xp.stack([orientation_last(xp, c)[0, ...] for c in miller(k64, scat_xyz, orient)], axis=-1)  # (T, S, K, Q, 3)
    hkl0 = lattice.nearest_index(xp, hkl)
    Fl = orientation_last(xp, terms_from_scattering(k64, scat_xyz, orient)[1])[0, ...]  # (T, S, K, Q)
    if k64.grid is None:
        Fc = xp.zeros_like(Fl) + k64.default_F
    else:
        Fc = cell_amplitude(k64, hkl, hkl0)

    h, h_0 = hkl[:, :, 0, 0, :], hkl0[:, :, 0, 0, :]
    if setup.shape == "square":
        hk = tuple(h[..., i] for i in range(3))
        axes = lattice.grating_factors(xp, hk, tuple(h_0[..., i] for i in range(3)), k64.N, k64.cos_pi)
    else:
        axes = [None] * 3
    axes = [xp.ones_like(h[..., i]) if f is None else f for i, f in enumerate(axes)]

    T, S, K = setup.thick.count, setup.oversample ** 2, setup.n_sources
    cap_pixel = cap[T - 1, S - 1] if setup.oversample_thick else cap[T - 1, 0]
    omega_pixel = omega[T - 1, S - 1] if setup.oversample_omega else omega[0, 0]
    if setup.oversample_polar:
        polar_pixel = _first_or_last(xp, polar, valid, last=True)
    elif setup.polarization_correction:
        polar_pixel = _first_or_last(xp, polar, valid, last=False)
    else:
        polar_pixel = g.asarray(1.0)

    k = kernel_inputs(setup)
    Q = int(orient.shape[0])
    if k.caps.jit_tiles:  # the render's compiled tile loop, for this one pixel
        I_pixel = render_mapped(k, TilePlan(pixels_per_tile=1, orientations_per_block=Q), (fast, slow, 1, 1), None)
    else:
        I_pixel = render_tile(k, f_idx, s_idx, Q)
    cxp = setup.ctx.xp

    return {
        "pixel_pos_m": pos, "airpath_m": norm(xp, pos), "diffracted": d,
        "incident": inc, "wavelength_m": lam, "scattering_per_m": scat, "valid": valid,
        "orientations_m": orient,
        "hkl": h, "hkl0": h_0, "hkl_all": hkl, "hkl0_all": hkl0,
        "omega_sr": omega, "omega_pixel": _0d(xp, omega_pixel),
        "polar": polar, "polar_pixel": _0d(xp, polar_pixel),
        "capture_fraction": cap, "capture_pixel": _0d(xp, cap_pixel),
        "F_latt_abc": xp.stack(axes, axis=-1), "F_latt": Fl[:, :, 0, 0], "F_latt_all": Fl,
        "F_cell": Fc[:, :, 0, 0], "F_cell_all": Fc,
        "cos_2theta": _0d(xp, dot(xp, inc[K - 1, :], d[T - 1, S - 1, :])),
        "I_pixel": _0d(cxp, I_pixel),
    }
