"""The reference's running-sum semantics under ``-oversample_omega``, ``-oversample_polar``, ``-oversample_thick``."""

from __future__ import annotations

from ..physics.polarization import kahn_from_components
from ..physics.resolution import within_resolution
from .inputs import KernelInputs
from .miller import orientation_last
from .terms import terms_from_scattering


def first_kept(xp, values, valid, P):
    """values (P, T, S, K) at the first (t, s, k) that ``valid`` keeps; 0 where none is kept."""
    flat = xp.reshape(values, (P, -1))
    if valid is None:
        return flat[:, 0]
    v = xp.reshape(valid, (P, -1))
    first = v & (xp.cumulative_sum(xp.astype(v, xp.int32), axis=1) == 1)
    return xp.sum(xp.where(first, flat, xp.zeros_like(flat)), axis=1)


def render_running(k: KernelInputs, d, omega, cap, P, T, S, K):
    """The reference's running-sum semantics under -oversample_omega/_polar/_thick.

    After every term the running sum is multiplied by the current factors, so
    a term is scaled by the product of the factors of itself and of every later
    term.  Within a (layer, sub-pixel, source) group the factor g is constant,
    giving g^c for c counted terms; across groups the products are formed from
    log-sums with an explicit count of zero factors.  Arrays here are in the
    reference's path order (P, T, S, K).
    """
    setup = k.setup
    ctx, g = k.ctx, k.frame.ctx
    xp = ctx.xp
    fr = k.frame
    shape = (P, T, S, K)
    scat = tuple((c[..., None] - i) / fr.wavelength_m for c, i in zip(d, fr.incident_xyz))
    scat_w = tuple(ctx.asarray(c) for c in scat)
    valid = polar = None
    if setup.dmin_m > 0:
        valid = within_resolution(scat, setup.dmin_m)
    if setup.polarization_correction or setup.oversample_polar:
        polar = kahn_from_components(xp, tuple(c[..., None] for c in d), fr.incident_xyz, fr.polar_frame_xyz,
                                     fr.kahn)
    if cap is None:  # no sensor thickness: the factor is 1, or 0 when it is recomputed per path
        cap = xp.zeros_like(omega) if setup.oversample_thick else xp.ones_like(omega)
    if polar is None:
        polar = xp.ones(shape, dtype=g.dtype, device=g.device)
    if valid is None:
        valid = xp.ones(shape, dtype=xp.bool, device=g.device)
    gfac = xp.ones(shape, dtype=g.dtype, device=g.device)
    if setup.oversample_thick:
        gfac = gfac * cap[..., None]
    if setup.oversample_polar:
        gfac = gfac * polar
    if setup.oversample_omega:
        gfac = gfac * omega[..., None]
    G = P * T * S * K
    gw = ctx.asarray(xp.reshape(gfac, (G,)))
    vw = xp.reshape(ctx.asarray(valid, dtype=xp.bool), (G,))
    terms, Fl = terms_from_scattering(k, scat_w, k.orientations)
    terms, Fl = orientation_last(xp, terms), orientation_last(xp, Fl)   # (P, T, S, K, Q)
    Q = int(terms.shape[-1])
    terms = xp.reshape(terms, (G, Q))
    Fl = xp.reshape(Fl, (G, Q))
    if setup.water_on:  # host decision (I_bg may be a traced array)
        counted = xp.ones(Fl.shape, dtype=xp.bool, device=ctx.device)
    else:
        counted = Fl != 0
    counted = counted & vw[:, None]
    cnt = xp.astype(counted, ctx.dtype)
    # c_j: counted terms from j to the end of its group (inclusive)
    incl = xp.cumulative_sum(cnt, axis=1)
    c_from = incl[:, -1:] - incl + cnt
    contrib = xp.sum(xp.where(counted, terms * gw[:, None] ** c_from, xp.zeros_like(terms)), axis=1)
    Ggrp = gw ** incl[:, -1]                                              # whole-group multiplier
    contrib = xp.reshape(contrib, (P, T * S * K))
    Ggrp = xp.reshape(Ggrp, (P, T * S * K))
    zero = Ggrp == 0
    logG = xp.log(xp.where(zero, xp.ones_like(Ggrp), Ggrp))
    zc = xp.astype(zero, ctx.dtype)
    # product over strictly later groups
    later_log = xp.sum(logG, axis=1, keepdims=True) - xp.cumulative_sum(logG, axis=1)
    later_zero = xp.sum(zc, axis=1, keepdims=True) - xp.cumulative_sum(zc, axis=1)
    later = xp.where(later_zero > 0, xp.zeros_like(later_log), xp.exp(later_log))
    all_log = xp.sum(logG, axis=1)
    all_prod = xp.where(xp.sum(zc, axis=1) > 0, xp.zeros_like(all_log), xp.exp(all_log))
    I = k.I_bg * all_prod + xp.sum(contrib * later, axis=1)
    factor = xp.ones((P,), dtype=g.dtype, device=g.device)
    if not setup.oversample_thick:
        factor = factor * cap[:, T - 1, 0]
    if not setup.oversample_polar:
        pol = polar if setup.polarization_correction else xp.ones_like(polar)
        factor = factor * first_kept(xp, pol, valid, P)
    if not setup.oversample_omega:
        factor = factor * omega[:, 0, 0]
    return k.scale * I * ctx.asarray(factor)


__all__ = ["render_running", "first_kept"]
