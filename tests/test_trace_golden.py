"""trace_pixel against the reference's -trace_pixel output, line by line, in float64.

The reference prints one block per (thickness layer, sub-pixel), in loop order
(layer, then slow sub-pixel, then fast sub-pixel), for source 0; the lattice
lines of a block belong to phi step 0 and mosaic domain 0, and one
``TRACE_C_PHI`` line follows per phi step.  The closing lines (capture
fraction, polar, omega, I_pixel_final) come once per pixel.  Caveats
(NANOBRAGG_NOTES 2.10): ``scattering_vec_A_inv`` is in 1/m; ``rot_*_star`` are
the unrotated reciprocal vectors; ``omega_pixel_sr`` is the cached value (the
first sub-pixel's) unless -oversample_omega.  Values that need structure
factors (F_cell, I_before_scaling) are left to the image tests, except the
final pixel value, which is compared as a whole.

In the order-dependent cases only what the reference computes independently
of loop order is compared: with several phi steps one of which is exactly 0,
the reference's lattice lines at that step use a stale orientation (the last
phi step's, NANOBRAGG_NOTES 2.1), so they are skipped; the final pixel value
of every order-dependent case is skipped (stale phi, or the shared
interpolation switch of 2.9).
"""

from __future__ import annotations

import glob
import math
import os
import re

import numpy as np
import pytest

from bragg_core._backend import get_context, to_numpy
from bragg_core.cli.args import build_config, parse_args
from bragg_core.engine.setup import build_setup
from bragg_core.engine.trace import trace_pixel
from bragg_core.physics import lattice

import golden

RTOL = 1e-10
ATOL_REL = 1e-15  # absolute floor, relative to the magnitude of the quantity's terms
FINAL_KEYS = {
    "I_before_scaling", "r_e_meters", "r_e_sqr", "fluence_photons_per_m2", "steps",
    "oversample_thick", "oversample_polar", "oversample_omega", "capture_fraction", "polar",
    "omega_pixel", "cos_2theta", "I_pixel_final", "floatimage_accumulated",
}


def parse_trace(path):
    """(blocks, final): per-(layer, sub-pixel) dicts of printed values, and the closing values."""
    blocks, final = [], {}
    with open(path) as fh:
        for line in fh:
            if line.startswith("TRACE_C: "):
                key, *vals = line[len("TRACE_C: "):].split()
                nums = [float(v) for v in vals]
                if key == "pix0_vector_meters":
                    blocks.append({"phi": [], "source2": {}})
                if key in FINAL_KEYS:
                    final[key] = nums
                else:
                    blocks[-1][key] = nums
            elif line.startswith("TRACE_C_PHI "):
                blocks[-1]["phi"].append({k: float(v) for k, v in re.findall(r"(\w+)=(\S+)", line)})
            elif line.startswith("TRACE_C_SOURCE2: "):
                key, val = line[len("TRACE_C_SOURCE2: "):].split()
                blocks[-1]["source2"][key] = float(val)
    return blocks, final


def _traces():
    out = []
    for case in golden.case_ids():
        for path in sorted(glob.glob(os.path.join(golden.case_dir(case), "trace_*.txt"))):
            slow, fast = (int(v) for v in re.findall(r"\d+", os.path.basename(path)))
            out.append(pytest.param(case, path, slow, fast, id=f"{case}-{slow}_{fast}"))
    return out


_SETUPS: dict = {}


def _setup(case):
    if case not in _SETUPS:
        cfg = build_config(parse_args(golden.args(case)), golden.case_dir(case))
        _SETUPS[case] = build_setup(cfg.experiment, get_context(backend="numpy", dtype="float64"))
    return _SETUPS[case]


class Checker:
    """Collects every mismatch of one trace so that a failure lists them all."""

    def __init__(self):
        self.errors = []

    def __call__(self, what, ours, ref, scale=None, rtol=RTOL):
        ours = np.asarray(to_numpy(ours), dtype=np.float64).ravel()
        ref = np.asarray(ref, dtype=np.float64).ravel()
        if ours.shape != ref.shape:
            self.errors.append(f"{what}: shape {ours.shape} vs printed {ref.shape}")
            return
        mag = float(np.max(np.abs(ref))) if scale is None else float(scale)
        atol = ATOL_REL * max(mag, np.finfo(float).tiny)
        if not np.all(np.abs(ours - ref) <= atol + rtol * np.abs(ref)):
            self.errors.append(f"{what}: ours {ours.tolist()} vs reference {ref.tolist()}")

    def equal(self, what, ours, ref):
        ours = np.asarray(to_numpy(ours)).ravel().tolist()
        if [float(v) for v in ours] != [float(v) for v in ref]:
            self.errors.append(f"{what}: ours {ours} vs reference {list(ref)}")


@pytest.mark.parametrize("case, path, slow, fast", _traces())
def test_trace_matches_reference(case, path, slow, fast):
    _check_trace(case, _setup(case), path, slow, fast)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(golden.case_dir("curved_det"), "trace_*.txt"))))
def test_curved_det_honoured_when_last(path):
    """Deviation: the reference ignores -curved_det given as the last argument; bragg_core does not.

    With the flag moved to the end, the traces of ``curved_det`` (where it is not
    last, so the reference honoured it) are still reproduced.
    """
    argv = [a for a in golden.args("curved_det") if a != "-curved_det"] + ["-curved_det"]
    cfg = build_config(parse_args(argv), golden.case_dir("curved_det"))
    setup = build_setup(cfg.experiment, get_context(backend="numpy", dtype="float64"))
    assert setup.curved
    slow, fast = (int(v) for v in re.findall(r"\d+", os.path.basename(path)))
    _check_trace("curved_det", setup, path, slow, fast)


def _check_trace(case, setup, path, slow, fast):
    blocks, final = parse_trace(path)
    tr = {k: to_numpy(v) for k, v in trace_pixel(setup, slow, fast).items()}
    dg = setup.detector
    T, S = setup.thick.count, setup.oversample ** 2
    n_mos = setup.n_mosaic
    assert len(blocks) == T * S, f"{len(blocks)} trace blocks for {T} layers x {S} sub-pixels"
    check = Checker()
    lam = tr["wavelength_m"]
    cell_len = float(np.max(np.linalg.norm(tr["orientations_m"][0], axis=-1)))
    order_dependent = case in golden.order_dependent()
    phi0 = float(to_numpy(setup.phi0_rad))
    phi_at = [phi0 + p * setup.phi.step for p in range(setup.phi.count)]
    stale = [setup.phi.count > 1 and v == 0.0 for v in phi_at]  # reference uses a stale orientation

    for b, blk in enumerate(blocks):
        t, s = divmod(b, S)
        at = f"block {b} (layer {t}, sub-pixel {s})"
        check(f"{at} pix0_vector_meters", dg.pix0_m, blk["pix0_vector_meters"])
        check(f"{at} fdet_vec", dg.fdet, blk["fdet_vec"])
        check(f"{at} sdet_vec", dg.sdet, blk["sdet_vec"])
        pos = tr["pixel_pos_m"][t, s]
        check(f"{at} pixel_pos_meters", pos, blk["pixel_pos_meters"], scale=np.linalg.norm(pos))
        check(f"{at} R_distance_meters", tr["airpath_m"][t, s], blk["R_distance_meters"])
        omega = tr["omega_sr"][t, s] if setup.oversample_omega else tr["omega_sr"][0, 0]
        check(f"{at} omega_pixel_sr", omega, blk["omega_pixel_sr"])
        check(f"{at} close_distance_meters", dg.close_distance_m, blk["close_distance_meters"])
        check(f"{at} obliquity_factor", dg.close_distance_m / tr["airpath_m"][t, s], blk["obliquity_factor"])
        check(f"{at} diffracted_vec", tr["diffracted"][t, s], blk["diffracted_vec"], scale=1.0)
        check(f"{at} incident_vec", tr["incident"][0], blk["incident_vec"], scale=1.0)
        check(f"{at} lambda_meters", lam[0], blk["lambda_meters"])
        check(f"{at} lambda_angstroms", lam[0] * 1e10, blk["lambda_angstroms"])
        check(f"{at} scattering_vec_A_inv (1/m)", tr["scattering_per_m"][t, s, 0], blk["scattering_vec_A_inv"],
              scale=2.0 / lam[0])
        if "hkl_frac" not in blk:  # the reference skipped the rest of this path (dmin)
            if bool(tr["valid"][t, s, 0]):
                check.errors.append(f"{at}: reference skipped the path, ours keeps it")
            continue
        # orientation the reference used at each phi step (mosaic domain 0)
        q_ref = [((setup.phi.count - 1) if stale[p] else p) * n_mos for p in range(setup.phi.count)]
        q0 = q_ref[0]
        for i, axis in enumerate("abc"):
            check(f"{at} rot_{axis}_angstroms", tr["orientations_m"][q0, i] * 1e10, blk[f"rot_{axis}_angstroms"])
            check(f"{at} rot_{axis}_star_A_inv", setup.cell.reciprocal_per_A[i], blk[f"rot_{axis}_star_A_inv"])
        hkl = tr["hkl"][t, s] if q0 == 0 else tr["hkl_all"][t, s, 0, q0]
        hkl0 = tr["hkl0"][t, s] if q0 == 0 else tr["hkl0_all"][t, s, 0, q0]
        hkl_scale = cell_len * 2.0 / lam[0]
        check(f"{at} hkl_frac", hkl, blk["hkl_frac"], scale=hkl_scale)
        check.equal(f"{at} hkl_rounded", hkl0, blk["hkl_rounded"])
        if setup.shape == "square":
            # F_latt is at most Na Nb Nc (N along one axis): the absolute floor's scale
            n_ax = setup.N_host
            fl_scale = n_ax[0] * n_ax[1] * n_ax[2]

            def per_axis(h, i):
                return lattice.sincg(np, np.asarray(h[i]), np.ceil(h[i] - 0.5), n_ax[i]) if n_ax[i] > 1 else 1.0  # noqa: B023

            for i, axis in enumerate("abc"):
                f_ax = tr["F_latt_abc"][t, s, i] if q0 == 0 else per_axis(hkl, i)
                check(f"{at} F_latt_{axis}", f_ax, blk[f"F_latt_{axis}"], scale=n_ax[i])
            check(f"{at} F_latt", tr["F_latt_all"][t, s, 0, q0], blk["F_latt"], scale=fl_scale)
            phis = blk["phi"]
            if len(phis) != setup.phi.count:
                check.errors.append(f"{at}: {len(phis)} TRACE_C_PHI lines for {setup.phi.count} phi steps")
            for p, line in enumerate(phis):
                q = q_ref[p]
                check(f"{at} phi {p} phi_deg", math.degrees(phi_at[p]), [line["phi_deg"]], scale=1.0)
                k_frac = tr["hkl_all"][t, s, 0, q]
                check(f"{at} phi {p} k_frac", k_frac[1], [line["k_frac"]], scale=hkl_scale)
                check(f"{at} phi {p} F_latt_b", per_axis(k_frac, 1), [line["F_latt_b"]], scale=n_ax[1])
                check(f"{at} phi {p} F_latt", tr["F_latt_all"][t, s, 0, q], [line["F_latt"]], scale=fl_scale)
        src2 = blk["source2"]
        if src2:
            check(f"{at} source 2 lambda", lam[2] * 1e10, [src2["lambda_angstroms"]])
            cos2 = float(np.dot(tr["incident"][2], tr["diffracted"][t, s]))
            check(f"{at} source 2 cos2theta", cos2, [src2["cos2theta"]], scale=1.0)
            check(f"{at} source 2 polar", tr["polar_pixel"], [src2["polar"]])
            if setup.shape == "square":
                check(f"{at} source 2 F_latt", tr["F_latt_all"][t, s, 2, q0], [src2["F_latt"]], scale=fl_scale)

    check("steps", setup.steps, final["steps"])
    check("capture_fraction", tr["capture_pixel"], final["capture_fraction"])
    check("polar", tr["polar_pixel"], final["polar"])
    check("omega_pixel", tr["omega_pixel"], final["omega_pixel"])
    check("cos_2theta", tr["cos_2theta"], final["cos_2theta"], scale=1.0)
    if not order_dependent:
        check("I_pixel_final", tr["I_pixel"], final["I_pixel_final"], rtol=1e-9,
              scale=1e-6 * max(abs(final["I_pixel_final"][0]), 1e-30))
    assert not check.errors, f"{case} pixel ({slow}, {fast}):\n" + "\n".join(check.errors)
