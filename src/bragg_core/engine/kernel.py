"""The tile kernel: the per-pixel sum over (layers, sub-pixels, sources, orientations) for a tile of pixels.

One pixel's intensity is

    I = I_bg + sum over layers t, sub-pixels s, sources k, orientations q of
              |F_cell(h)|^2 |F_latt(h)|^2,      h = A_q . (d_ts - i_k) / lambda_k

and the pixel value is r_e^2 * fluence * I / steps times the cached capture
fraction, polarization and solid angle (``specs/physics.md``).  The only
Python loop here is over blocks of orientations, when one pixel's sampling is
deeper than the memory budget; everything else is array code of the chosen
backend.  The pieces live beside this file: paths (``paths``), Miller
indices (``miller``), |F|^2 terms (``terms``) and the running sum of the
``-oversample_*`` flags (``running``).
"""

from __future__ import annotations

import numpy as np

from .._backend import is_scalar
from ..physics.detector_response import capture_fraction, solid_angle_from_inverse
from ..physics.polarization import is_unpolarised, kahn_from_components, kahn_from_projections, unpolarised
from ..physics.resolution import within_resolution
from .inputs import KernelInputs
from .miller import MillerTile
from .paths import sub_pixel_geometry, tile_paths
from .running import first_kept, render_running
from .terms import intensity_sqr


def render_tile(k: KernelInputs, f_idx, s_idx, q_block: int):
    """Pixel values (P,) in the working dtype for the tile ``s_idx`` x ``f_idx`` (row order).

    The scattering geometry (path lengths, directions, h, k, l and the
    per-pixel factors) is evaluated in the geometry dtype; h, k, l are then
    rounded once to the working dtype, in which the lattice and
    structure-factor terms are evaluated and summed.  In float32 this keeps
    h, k, l as accurate as float32 can hold them: forming them in float32
    would lose several ulps to the cancellation in a . (d - i) / lambda.
    """
    setup = k.setup
    ctx, g = k.ctx, k.gctx
    xp, gx = ctx.xp, g.xp
    P = s_idx.shape[0] * f_idx.shape[0]
    T, S, K = setup.thick.count, setup.oversample ** 2, setup.n_sources
    if setup.running_sum:
        d, omega, cap = sub_pixel_geometry(k, f_idx, s_idx)
        return render_running(k, d, omega, cap, P, T, S, K)
    fr = k.frame
    paths = tile_paths(k, f_idx, s_idx)                       # arrays (..., T, S, P): pixels innermost
    r = gx.sqrt(paths.norm2())                                # (T, S, P)
    inv_r = 1.0 / r
    one_path = T * S == 1
    inv_r0 = gx.reshape(inv_r, (P,)) if one_path else 1.0 / gx.sqrt(paths.norm2_at(0))
    # cached per-pixel factors: solid angle of the first sub-pixel, capture
    # fraction of the last layer, polarization of the first path dmin keeps
    dg = setup.detector
    factor = solid_angle_from_inverse(gx, inv_r0, g.asarray(dg.pixel_size_m), g.asarray(dg.close_distance_m),
                                      setup.point_pixel)
    if setup.thick.range > 0:
        inv_rl = inv_r0 if T == 1 else 1.0 / gx.sqrt(paths.norm2_at(T - 1))
        parallax = paths.dot_at(gx.reshape(g.asarray(dg.odet), (1, 3)), T - 1)[0, :] * inv_rl
        step, mu = setup.thick.step, setup.mu_per_m
        step, mu = (v if is_scalar(v) else g.asarray(v) for v in (step, mu))
        cap = capture_fraction(gx, float(T - 1), step, mu, parallax)
        if setup.sensor_present is not None:  # an array thickness of 0: no sensor factor, as for a plain 0
            cap = gx.where(g.asarray(setup.sensor_present, dtype=gx.bool), cap, gx.ones_like(cap))
        factor = factor * cap
    inc_g, lam_g = fr.incident_g, g.asarray(setup.sources.wavelength_m)
    col = lambda v: gx.reshape(v, (K, 1, 1, 1))  # noqa: E731
    valid = d = None
    if setup.dmin_m > 0:   # the reference's test on the explicit scattering vector
        dc = paths.dot(g.asarray(np.eye(3))) * inv_r[None, ...]
        d = (dc[0, ...], dc[1, ...], dc[2, ...])
        scat = tuple((c - col(inc_g[:, i])) / col(lam_g) for i, c in enumerate(d))     # (K, T, S, P)
        valid = within_resolution(scat, setup.dmin_m)
    if setup.polarization_correction:
        factor = factor * _pixel_polarization(k, paths, inv_r0, valid, d, P)
    stable = not (ctx.dtype_name == "float32" and g.dtype_name == "float64")
    miller = MillerTile(k, paths, r, inv_r, stable)
    Q = int(setup.orientations_m.shape[0])
    total = None
    for q0 in range(0, Q, q_block):  # blocks of orientations (only when memory demands)
        hkl = tuple(ctx.asarray(x) for x in miller(q0, q0 + q_block))     # (Qb, K, T, S, P) each
        terms = intensity_sqr(k, hkl)
        part = terms[0, ...] if terms.shape[0] == 1 else xp.sum(terms, axis=0)
        total = part if total is None else total + part                  # (K, T, S, P)
    if valid is not None:
        total = xp.where(ctx.asarray(valid, dtype=xp.bool), total, xp.zeros_like(total))
    total = total[0, ...] if K == 1 else xp.sum(total, axis=0)          # (T, S, P)
    if setup.sensor_present is not None and T > 1:
        # an array thickness of 0: one layer counts, as for a plain thickness of 0
        first = xp.reshape(ctx.arange(T) == 0, (T, 1, 1))
        present = ctx.asarray(setup.sensor_present, dtype=xp.bool)
        total = xp.where(present | first, total, xp.zeros_like(total))
    I = xp.reshape(total, (P,)) if one_path else xp.sum(xp.reshape(total, (T * S, P)), axis=0)
    if setup.water_on:
        I = k.I_bg + I
    return (k.scale * ctx.asarray(factor)) * I


def _pixel_polarization(k: KernelInputs, paths, inv_r0, valid, d, P):
    """The polarization factor the reference caches per pixel: that of the first path the cut keeps."""
    setup, g = k.setup, k.gctx
    gx = g.xp
    K = setup.n_sources
    fr = k.frame
    inc_g, be = fr.incident_g, fr.polar_be_g
    if valid is not None:   # every path's value is needed to find the first one kept
        col = lambda v: gx.reshape(v, (K, 1, 1, 1))  # noqa: E731
        xyz = lambda v: tuple(col(v[:, i]) for i in range(3))  # noqa: E731
        kahn = setup.kahn if is_scalar(setup.kahn) else g.asarray(setup.kahn)
        polar = kahn_from_components(gx, tuple(c[None, ...] for c in d), xyz(inc_g),
                                     (xyz(be[:, 0, :]), xyz(be[:, 1, :])), kahn)   # (K, T, S, P)
        path_order = lambda x: gx.permute_dims(x, (3, 1, 2, 0))  # noqa: E731  (P, T, S, K)
        return first_kept(gx, path_order(polar), path_order(valid), P)
    # only the first path's
    plain = is_unpolarised(setup.kahn)
    V = inc_g[0:1, :] if plain else gx.stack((inc_g[0, :], be[0, 1, :], be[0, 0, :]))
    proj = paths.dot_at(V, 0) * inv_r0
    c2t = proj[0, :]
    if plain:
        return unpolarised(c2t)
    kahn = setup.kahn if is_scalar(setup.kahn) else g.asarray(setup.kahn)
    return kahn_from_projections(gx, c2t, proj[1, :], proj[2, :], kahn)


__all__ = ["render_tile"]
