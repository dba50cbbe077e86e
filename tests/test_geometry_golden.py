"""Setup (detector, cell, sampling) against every number the reference prints.

For each golden case the reference's stdout.txt and SMV header are parsed and
every geometric quantity is compared with our Setup to the precision it was
printed with:

* ``%.15g`` (DETECTOR_*_AXIS, DETECTOR_PIX0_VECTOR, the ``TRACE_C:`` detector
  lines, ``lambdaN =``): relative 1e-12, absolute floor 1e-15 x magnitude;
* ``%g`` (summary lines, Unit/Recp Cell, volume, crystal size, sources, SMV
  header): half a unit in the 6th significant digit;
* ``%11.8f`` (cell vector tables): absolute 5e-9; ``%f``: absolute 5e-7.

What the reference prints, and which of our quantities it is:

=====================================  ==========================================
printed                                ours
=====================================  ==========================================
Xbeam= Ybeam= Xclose= Yclose= (m)      DetectorGeometry.Xbeam_m ... (metres)
Fbeam= Sbeam= Fclose= Sclose= (m)      .Fbeam_m ... after the final update
TRACE_C:beam_center_m=X: Y:            Xbeam_m / 1000 (metres printed / 1000)
TRACE_C:Fclose_m (SAMPLE, pre-rotation) .Fclose_m (equal for a proper rotation)
TRACE_C:ratio                          close_distance_m / distance_m
TRACE_C:*_after_rotz (first listing)   the frame with two-theta set to 0
TRACE_C:*_after_rotz (BEAM listing)    the final frame (printed after two-theta)
TRACE_C:initial_* (BEAM listing)       MOSFLM's frame, whatever the convention
TRACE_C:R_total, Rx, Ry, Rz            rotate_xyz applied to the unit vectors
POLARIZATION_PLANE_NORMAL              beam x polar
dials origin= / DIALS_ORIGIN           dials_origin_mm
XDS_ORGX / XDS_ORGY (header)           orgx_px / orgy_px
Unit Cell / Recp Cell / volume         CellGeometry.cell_A_deg / reciprocal_cell / volume_A3
real-space table (Angstrom)            CellGeometry.real_m * 1e10 (columns a, b, c)
reciprocal-space table                 CellGeometry.reciprocal_per_A (columns a*, b*, c*)
crystal is ... microns                 |a| Na, |b| Nb, |c| Nc
sensor is T m thick in n layers, mu    Setup.thick.range, .thick.count, .mu_per_m
N phi steps from A to B                phi.count, phi0, phi0 + phi.range
source lines "X Y Z  I lambda"         -incident (direction only) and wavelength_m
=====================================  ==========================================

The full comparison runs on NumPy; the detector and cell part also runs on
every other available backend (torch, JAX with x64, array-api-strict, Dask)
for a varied subset of cases, checking that the arrays stay on that backend.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import replace

import numpy as np
import pytest

from bragg_core._backend import get_context, to_numpy
from bragg_core.cli.args import build_config, parse_args
from bragg_core.engine.setup import build_setup
from bragg_core.geometry import detector as detector_mod
from bragg_core.geometry.detector import detector_geometry
from bragg_core.geometry.vectors import rotate_xyz
from bragg_core.testing import assert_same_backend

import golden

RAD = 180.0 / math.pi
NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"

# every case runs on every backend but Dask, which runs a varied subset:
# every convention and pivot, rotations, two-theta, curved, custom vectors,
# misset (random and given), MOSFLM matrix, thickness, divergence, mosaic, phi
BACKEND_CASES = [
    "cubic_default", "conv_adxv_xbeam", "conv_denzo_xbeam", "conv_dials_default", "conv_xds_orgx",
    "conv_custom_oblique", "close_distance_xds_rot", "pivot_beam_custom_rot", "pivot_sample_custom_rot",
    "twotheta_axis_custom", "curved_det", "misset_random", "mat_hkl_sparse", "comprehensive_phi5",
    "nonsquare_adxv", "xclose_yclose_custom_rot",
]
# Dask builds a graph for every small vector: a few cases keep the run short
DASK_CASES = ["conv_xds_orgx", "pivot_beam_custom_rot", "comprehensive_phi5"]


# ----------------------------------------------------------------------------
# tolerances: the precision of what was printed
# ----------------------------------------------------------------------------


def _tolerance(text: str, fmt: str, scale: float) -> float:
    p = float(text)
    floor = 1e-15 * scale
    if fmt == "15g":
        return max(1e-12 * abs(p), floor)
    if fmt == "g":
        half = 0.5 * 10.0 ** (math.floor(math.log10(abs(p))) - 5) if p != 0 else 0.0
        return half * (1 + 1e-9) + 1e-12 * abs(p) + floor
    if fmt == "f8":
        return 5e-9 + 1e-12 * abs(p)
    if fmt == "f6":
        return 5e-7 + 1e-12 * abs(p)
    if fmt == "int":
        return 0.0
    raise ValueError(fmt)


class Comparison:
    """Collects every quantity compared and every mismatch."""

    def __init__(self, case):
        self.case = case
        self.errors: list[str] = []
        self.labels: list[str] = []

    def __call__(self, label, ours, printed, fmt, scale=None):
        ours = np.asarray(to_numpy(ours), dtype=np.float64).ravel()
        printed = list(printed)
        self.labels.append(label)
        if ours.size != len(printed):
            self.errors.append(f"{label}: {ours.size} values vs {len(printed)} printed")
            return
        ref = np.array([float(p) for p in printed])
        if scale is None:
            scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        for o, p, r in zip(ours, printed, ref):
            if not abs(o - r) <= _tolerance(p, fmt, scale):
                self.errors.append(f"{label}: ours {ours.tolist()} vs printed {printed} ({fmt})")
                return

    def flag(self, label, ours: bool, printed: bool):
        self.labels.append(label)
        if bool(ours) != bool(printed):
            self.errors.append(f"{label}: ours {bool(ours)} vs reference {bool(printed)}")

    def report(self):
        assert not self.errors, f"{self.case}: {len(self.errors)} of {len(self.labels)} checks differ:\n" + \
            "\n".join(self.errors)


# ----------------------------------------------------------------------------
# reading the reference's output
# ----------------------------------------------------------------------------


def _lines(case):
    return golden.stdout(case).splitlines()


def _trace_c(lines):
    """TRACE_C:key=value lines (the detector set-up), key -> list of raw values in order."""
    out: dict[str, list[str]] = {}
    for line in lines:
        m = re.match(r"TRACE_C:(\w+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def _nums(text):
    return re.findall(NUM, text)


def _find(lines, pattern):
    """Number groups of the first line matching ``pattern`` (anchored at the start), or None."""
    rx = re.compile(pattern)
    for line in lines:
        m = rx.match(line)
        if m:
            return m.groups()
    return None


def _table(lines, title):
    """The 3x3 table printed after ``title`` (rows X, Y, Z; columns a, b, c)."""
    i = lines.index(title)
    return [_nums(lines[i + 2 + r].split(":", 1)[1]) for r in range(3)]


def _header(case):
    """Keys of the SMV header the reference wrote (smv_header.txt, else the -intfile image)."""
    d = golden.case_dir(case)
    path = os.path.join(d, "smv_header.txt")
    if not os.path.exists(path):
        path = os.path.join(d, "image.smv")
    with open(path, "rb") as fh:
        text = fh.read(512).decode("ascii", "replace")
    return {m.group(1): m.group(2) for m in re.finditer(r"^(\w+)=([^;\n]*)", text, re.M)}


# ----------------------------------------------------------------------------
# our side
# ----------------------------------------------------------------------------

_CACHE: dict = {}


def _build(case, backend_name="numpy", device=None):
    key = (case, backend_name, str(device))
    if key not in _CACHE:
        cfg = build_config(parse_args(golden.args(case)), golden.case_dir(case))
        ctx = get_context(backend=backend_name, device=device, dtype="float64")
        _CACHE[key] = (cfg, build_setup(cfg.experiment, ctx))
    return _CACHE[key]


def _np(x):
    return np.asarray(to_numpy(x), dtype=np.float64)


def _beam_pivot_inputs(dg, det, ratio):
    """(Fbeam, Sbeam, distance) the BEAM pivot places pix0 from: the spec's half-pixel mapping."""
    px = _np(dg.pixel_size_m)
    Xb, Yb = _np(dg.Xbeam_m), _np(dg.Ybeam_m)
    conv = dg.convention
    if conv == "mosflm":
        Fb, Sb = Yb + 0.5 * px, Xb + 0.5 * px
    elif conv == "denzo":
        Fb, Sb = Yb, Xb
    elif conv == "adxv":
        Fb, Sb = Xb, _np(dg.detsize_s_m) - Yb
    else:
        Fb, Sb = Xb, Yb
    if det.close_distance_mm is not None:
        close = float(det.close_distance_mm) * 1e-3
    else:
        close = abs(ratio * float(det.distance_mm) * 1e-3)
    return Fb, Sb, close / ratio


def check_detector(cmp: Comparison, lines, header, cfg, setup):
    dg = setup.detector
    g = setup.gctx
    det = cfg.experiment.detector
    f, s, o, pix0 = _np(dg.fdet), _np(dg.sdet), _np(dg.odet), _np(dg.pix0_m)
    pix0_scale = float(np.linalg.norm(pix0))

    cmp.flag("convention", f"{dg.convention} convention selected." in lines, True)
    cmp.flag("pivot SAMPLE", dg.pivot == "sample", "pivoting detector around sample" in lines)
    cmp.flag("odet regenerated", dg.odet_regenerated, "WARNING: auto-generating odet_vector" in lines)
    for name, v in (("FAST", f), ("SLOW", s), ("NORMAL", o)):
        cmp(f"DETECTOR_{name}_AXIS", v, _find(lines, rf"DETECTOR_{name}_AXIS ({NUM}) ({NUM}) ({NUM})$"), "15g", 1.0)
    cmp("DETECTOR_PIX0_VECTOR", pix0, _find(lines, rf"DETECTOR_PIX0_VECTOR ({NUM}) ({NUM}) ({NUM})$"), "15g",
        pix0_scale)

    # the TRACE_C set-up lines
    tc = _trace_c(lines)
    rot = [float(to_numpy(g.asarray(det.rotation_deg[i]))) / RAD for i in range(3)]
    flat = detector_geometry(replace(det, twotheta_deg=0.0), g)           # frame before two-theta
    bare = detector_geometry(replace(det, twotheta_deg=0.0, rotation_deg=(0.0, 0.0, 0.0)), g)
    ratio = float(_np(dg.close_distance_m) / _np(dg.distance_m))
    for a in tc.get("angles_rad", []):
        cmp("TRACE_C:angles_rad", rot + [_np(dg.twotheta_rad)], _nums(a), "15g", 1.0)
    for bc in tc.get("beam_center_m", []):
        if bc.startswith("Xclose"):
            ours = [_np(dg.Xclose_m) / 1000, _np(dg.Yclose_m) / 1000, _np(dg.pixel_size_m) * 1000]
        else:
            ours = [_np(dg.Xbeam_m) / 1000, _np(dg.Ybeam_m) / 1000, _np(dg.pixel_size_m) * 1000]
        cmp("TRACE_C:beam_center_m", ours, _nums(bc), "15g")
    beam_pivot = dg.pivot == "beam"
    mosflm0 = {"fdet": (0, 0, 1), "sdet": (0, -1, 0), "odet": (1, 0, 0)}
    for k in ("fdet", "sdet", "odet"):
        initial = mosflm0[k] if beam_pivot else _np(getattr(bare, k))
        for v in tc.get(f"initial_{k}", []):
            cmp(f"TRACE_C:initial_{k}", initial, _nums(v), "15g", 1.0)
        listed = tc.get(f"{k}_after_rotz", [])
        for i, v in enumerate(listed):
            # the BEAM-pivot listing (the second) prints the final frame under this name
            ours = getattr(dg, k) if (beam_pivot and i == 1) else getattr(flat, k)
            cmp(f"TRACE_C:{k}_after_rotz[{i}]", ours, _nums(v), "15g", 1.0)
        for v in tc.get(f"{k}_after_twotheta", []):
            cmp(f"TRACE_C:{k}_after_twotheta", getattr(dg, k), _nums(v), "15g", 1.0)
    tt_axis = det.twotheta_axis if (dg.convention == "custom" and det.twotheta_axis is not None) \
        else detector_mod.CONVENTION_VECTORS[dg.convention]["twotheta"]
    for v in tc.get("twotheta_axis", []):
        cmp("TRACE_C:twotheta_axis", tt_axis, _nums(v), "15g", 1.0)
    eye = g.asarray(np.eye(3))
    rx, ry, rz = (g.asarray(a) for a in rot)
    zero = g.asarray(0.0)
    mats = {
        "Rx": rotate_xyz(g.xp, eye, rx, zero, zero), "Ry": rotate_xyz(g.xp, eye, zero, ry, zero),
        "Rz": rotate_xyz(g.xp, eye, zero, zero, rz), "R_total": rotate_xyz(g.xp, eye, rx, ry, rz),
    }
    for name, m in mats.items():
        for v in tc.get(name, []):
            cmp(f"TRACE_C:{name}", _np(m).T, _nums(v), "15g", 1.0)   # rows of eye are images of e_j
    Fb, Sb, dist = _np(dg.Fbeam_m), _np(dg.Sbeam_m), _np(dg.distance_m)
    Fc, Sc, cd = _np(dg.Fclose_m), _np(dg.Sclose_m), _np(dg.close_distance_m)
    # The BEAM-pivot listing prints the values pix0 is built from (before the final update
    # of Fbeam, Sbeam and distance, which differ from them when two-theta is not about the
    # beam-normal plane); the SAMPLE-pivot listing prints values a rotation preserves.
    Fb_in, Sb_in, dist_in = _beam_pivot_inputs(dg, det, ratio)
    scalars = {"Fbeam_m": Fb_in, "Sbeam_m": Sb_in, "distance_m": dist_in if beam_pivot else dist,
               "Fclose_m": Fc, "Sclose_m": Sc, "close_distance_m": cd, "ratio": ratio}
    for name, ours in scalars.items():
        for v in tc.get(name, []):
            cmp(f"TRACE_C:{name}", ours, _nums(v), "15g", pix0_scale)
    f0, s0, o0 = _np(bare.fdet), _np(bare.sdet), _np(bare.odet)
    vecs = {
        "term_fast": -Fb_in * f, "term_slow": -Sb_in * s, "term_beam": dist_in * _np(dg.beam), "pix0_vector": pix0,
        "term_fast_before_rot": -Fc * f0, "term_slow_before_rot": -Sc * s0, "term_close_before_rot": cd * o0,
        "pix0_before_rotation": -Fc * f0 - Sc * s0 + cd * o0,
        "pix0_after_rotz": _np(flat.pix0_m), "pix0_after_twotheta": pix0,
    }
    for name, ours in vecs.items():
        for v in tc.get(name, []):
            cmp(f"TRACE_C:{name}", ours, _nums(v), "15g", pix0_scale)
    # pix0 under the BEAM pivot is built from exactly these
    if beam_pivot:
        cmp("pix0 = -Fbeam f - Sbeam s + distance b", -Fb_in * f - Sb_in * s + dist_in * _np(dg.beam),
            [repr(float(v)) for v in pix0], "15g", pix0_scale)

    # the summary block
    G = rf"({NUM})"
    m = _find(lines, rf"  distance={G} detsize={G}x{G}  pixel={G} meters \({G}x{G} pixels\)")
    cmp("distance/detsize/pixel", [dist, _np(dg.detsize_f_m), _np(dg.detsize_s_m), _np(dg.pixel_size_m)],
        m[:4], "g", pix0_scale)
    cmp("fpixels x spixels", [dg.fpixels, dg.spixels], m[4:], "int")
    for names, ours in ((("Xbeam", "Ybeam"), (dg.Xbeam_m, dg.Ybeam_m)), (("Fbeam", "Sbeam"), (Fb, Sb)),
                        (("Xclose", "Yclose"), (dg.Xclose_m, dg.Yclose_m)), (("Fclose", "Sclose"), (Fc, Sc))):
        cmp("{}/{}".format(*names), [_np(v) for v in ours], _find(lines, rf"  {names[0]}={G} {names[1]}={G}$"),
            "g", pix0_scale)
    beam, polar = _np(dg.beam), _np(dg.polar)
    for label, ours in (("DIRECTION_OF_DETECTOR_X-AXIS", f), ("DIRECTION_OF_DETECTOR_Y-AXIS", s),
                        ("DIRECTION_OF_DETECTOR_Z-AXIS", o), ("INCIDENT_BEAM_DIRECTION", beam),
                        ("spindle ROTATION_AXIS", dg.spindle), ("POLARIZATION_PLANE_NORMAL", np.cross(beam, polar))):
        cmp(label, ours, _find(lines, rf"  {re.escape(label)}= {G} {G} {G}$"), "g", 1.0)
    cmp("dials origin", dg.dials_origin_mm, _find(lines, rf"  dials origin= {G} {G} {G}$"), "g", 1e3 * pix0_scale)
    cmp("XDS incident beam", [beam @ f, beam @ s, beam @ o], _find(lines, rf"XDS incident beam: {G} {G} {G}$"),
        "g", 1.0)

    # the SMV header the reference wrote
    px_mm = _np(dg.pixel_size_m) * 1e3
    hdr = {
        "PIXEL_SIZE": px_mm, "DISTANCE": dist * 1e3, "CLOSE_DISTANCE": cd * 1e3,
        "BEAM_CENTER_X": _np(dg.Xbeam_m) * 1e3, "BEAM_CENTER_Y": _np(dg.Ybeam_m) * 1e3,
        "ADXV_CENTER_X": Fb * 1e3, "ADXV_CENTER_Y": (_np(dg.detsize_s_m) - Sb) * 1e3,
        "MOSFLM_CENTER_X": Sb * 1e3 - 0.5 * px_mm, "MOSFLM_CENTER_Y": Fb * 1e3 - 0.5 * px_mm,
        "DENZO_X_BEAM": Sb * 1e3, "DENZO_Y_BEAM": Fb * 1e3,
        "XDS_ORGX": dg.orgx_px, "XDS_ORGY": dg.orgy_px, "TWOTHETA": _np(dg.twotheta_rad) * RAD,
    }
    for key, ours in hdr.items():
        cmp(f"header {key}", ours, [header[key]], "g", 1e3 * pix0_scale)
    cmp("header DIALS_ORIGIN", dg.dials_origin_mm, header["DIALS_ORIGIN"].split(","), "g", 1e3 * pix0_scale)


def check_cell(cmp: Comparison, lines, cfg, setup):
    cell = setup.cell
    G = rf"({NUM})"
    cmp("Unit Cell", cell.cell_A_deg, _find(lines, "Unit Cell: " + " ".join([G] * 6) + "$"), "g")
    cmp("Recp Cell", cell.reciprocal_cell, _find(lines, "Recp Cell: " + " ".join([G] * 6) + "$"), "g")
    cmp("volume", cell.volume_A3, _find(lines, rf"volume = {G} A\^3$"), "g")
    real = _np(cell.real_m) * 1e10
    rec = _np(cell.reciprocal_per_A)
    cmp("real-space cell vectors", real.T, sum(_table(lines, "real-space cell vectors (Angstrom):"), []), "f8")
    cmp("reciprocal-space cell vectors", rec.T,
        sum(_table(lines, "reciprocal-space cell vectors (Angstrom^-1):"), []), "f8")
    m = _find(lines, rf"random orientation misset angles: {G} {G} {G} deg$")
    cmp.flag("random misset", cell.misset_rad is not None and cfg.experiment.crystal.misset_random, m is not None)
    if m is not None:
        cmp("random orientation misset angles", _np(cell.misset_rad) * RAD, m, "f6")
    lengths = np.linalg.norm(real, axis=1) * 1e-10
    cmp("crystal size (um)", lengths * np.array(setup.N_host) * 1e6,
        _find(lines, rf"crystal is {G} x {G} x {G} microns$"), "g")


def check_sampling(cmp: Comparison, lines, cfg, setup):
    G = rf"({NUM})"
    beam, det = cfg.experiment.beam, cfg.experiment.detector
    m = _find(lines, rf"auto-selected {G}-fold oversampling$")
    cmp.flag("oversample auto-selected", not (det.oversample and det.oversample > 0), m is not None)
    if m is not None:
        cmp("auto-selected oversampling", [setup.oversample_auto, setup.oversample], [m[0], m[0]], "int")
    flags = "".join(f" +{w}" for w, on in (("thick", setup.oversample_thick), ("polar", setup.oversample_polar),
                                             ("omega", setup.oversample_omega)) if on)
    m = _find(lines, rf"  {G}x{G} pixel oversample steps((?: \+\w+)*)$")
    cmp("NxN pixel oversample steps", [setup.oversample] * 2, m[:2], "int")
    cmp.flag(f"oversample flags {flags!r} vs {m[2]!r}", flags == m[2], True)
    m = _find(lines, rf"  sensor is {G} m thick in {G} layers with mu= {G}$")
    cmp("sensor thickness, mu", [setup.thick.range, _np(setup.mu_per_m)], [m[0], m[2]], "g")
    cmp("sensor layers", setup.thick.count, [m[1]], "int")
    cmp("N sources", setup.n_sources, _find(lines, rf"  {G} sources$"), "int")
    src = setup.sources
    if beam.source_positions_m is None:  # with a source file the reference prints an unset -1
        cmp("N divergence steps", src.n_divergence, _find(lines, rf"  {G} divergence steps$"), "int")
    for hv, st in (("h", src.hdiv), ("v", src.vdiv)):
        if beam.source_positions_m is None:
            cmp(f"{hv}divrange/step", [st.range, st.step],
                _find(lines, rf"  {hv}divrange={G} {hv}divstep={G}  radians$"), "g")
    m = _find(lines, rf"  {G} mosaic domains over mosaic spread of {G} degrees$")
    cmp("N mosaic domains", setup.n_mosaic, [m[0]], "int")
    cmp("mosaic spread (deg)", setup.mosaic_spread_rad * RAD, [m[1]], "g")
    m = _find(lines, rf"  {G} phi steps from {G} to {G} degrees$")
    phi0 = float(_np(setup.phi0_rad))
    cmp("N phi steps", setup.phi.count, [m[0]], "int")
    cmp("phi from/to (deg)", [phi0 * RAD, (phi0 + setup.phi.range) * RAD], m[1:], "g", 360.0)
    m = _find(lines, rf"  wave={G} meters \+/- {G}% in {G} steps$")
    lam0 = float(_np(get_context().asarray(beam.wavelength_A))) * 1e-10
    cmp("wave, dispersion", [lam0, src.disp.range * 100], m[:2], "g", 1e-10)
    cmp("dispersion steps", src.disp.count, [m[2]], "int")
    shapes = {"square": "parallelpiped", "round": "ellipsoidal", "gauss": "gaussian", "tophat": "tophat-spot"}
    m = _find(lines, rf"  {shapes[setup.shape]} xtal: {G}x{G}x{G} cells$")
    cmp.flag(f"crystal shape {setup.shape}", m is not None, True)
    if m is not None:
        cmp("cells", setup.N_host, m, "int")
    m = _find(lines, rf"  Kahn polarization factor: {G}$")
    cmp.flag("polarization correction", setup.polarization_correction, m is not None)
    if m is not None:
        cmp("Kahn factor", _np(setup.kahn), m, "f6")
    cmp.flag("curved detector", setup.curved,
             "  curved detector: all pixels same distance from origin" in lines)
    cmp.flag("point pixel", setup.point_pixel, "  pixel obliquity effect disabled" in lines)
    cmp("incident fluence", setup.fluence, _find(lines, rf"  incident fluence: {G} photons/m\^2$"), "g")
    cmp("roi", setup.roi, _find(lines, rf"  roi: {G} < x < {G} && {G} < y < {G}$"), "int")
    # the source list: direction of each source position (printed unnormalised) and its wavelength
    i = next(k for k, line in enumerate(lines) if re.match(r"  created a total of \d+ sources:", line))
    rows = [_nums(line) for line in lines[i + 1:i + 1 + setup.n_sources]]
    pos = np.array([[float(v) for v in r[:3]] for r in rows])
    unit_printed = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    cmp("source directions", -_np(src.incident), [f"{v:.6g}" for v in unit_printed.ravel()], "g", 1.0)
    cmp("source wavelengths", src.wavelength_m, [r[4] for r in rows], "g", 1e-10)
    lam_lines = [_find([line], rf"lambda\d+ = {G}$") for line in lines if re.match(r"lambda\d+ = ", line)]
    if lam_lines and beam.source_positions_m is None:
        cmp("lambdaN (15g)", _np(src.wavelength_m)[: len(lam_lines)], [v[0] for v in lam_lines], "15g")
    offs = [_find([line], rf"divergence deviation: {G} {G}$") for line in lines
            if line.startswith("divergence deviation:")]
    if beam.source_positions_m is None:
        cmp("divergence deviations", src.offsets_rad, sum((list(v) for v in offs), []), "g", 1e-3)
    if setup.grid is not None and cfg.experiment.crystal.interpolate is None:
        cmp.flag("auto-selected interpolation", setup.interpolate,
                 "auto-selected tricubic interpolation of structure factors" in lines)


# ----------------------------------------------------------------------------
# the tests
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", golden.case_ids())
def test_setup_matches_printed_values(case):
    cfg, setup = _build(case)
    lines = _lines(case)
    cmp = Comparison(case)
    check_detector(cmp, lines, _header(case), cfg, setup)
    check_cell(cmp, lines, cfg, setup)
    check_sampling(cmp, lines, cfg, setup)
    cmp.report()
    assert len(cmp.labels) > 60


@pytest.mark.parametrize("case", golden.case_ids())
def test_detector_and_cell_on_backend(backend, case):
    if backend.name == "numpy":
        pytest.skip("the NumPy run is test_setup_matches_printed_values")
    if backend.name == "dask" and case not in DASK_CASES + BACKEND_CASES[:3]:
        pytest.skip("Dask runs the DASK_CASES subset")
    cfg, setup = _build(case, backend.name, backend.device)
    ctx = backend.context("float64")
    dg, cell = setup.detector, setup.cell
    for name in ("fdet", "sdet", "odet", "beam", "polar", "spindle", "pix0_m", "dials_origin_mm"):
        assert_same_backend(getattr(dg, name), ctx, shape=(3,))
    for name in ("distance_m", "close_distance_m", "Fbeam_m", "Sbeam_m", "Fclose_m", "Sclose_m", "orgx_px"):
        assert_same_backend(getattr(dg, name), ctx, shape=())
    assert_same_backend(cell.real_m, ctx, shape=(3, 3))
    assert_same_backend(cell.reciprocal_per_A, ctx, shape=(3, 3))
    assert_same_backend(setup.orientations_m, ctx)
    lines = _lines(case)
    cmp = Comparison(f"{case} on {backend.id}")
    check_detector(cmp, lines, _header(case), cfg, setup)
    check_cell(cmp, lines, cfg, setup)
    cmp.report()


def test_twotheta_axis_does_not_set_the_angle():
    """Deviation: -twotheta_axis sets only the axis (the reference's substring match also sets 2theta).

    ``twotheta_axis_custom`` gives the axis before -twotheta, so the reference
    used the intended angle; with the axis given last bragg_core still
    reproduces every printed number (the reference would have set 2theta to the
    axis's first component, 0).
    """
    argv = golden.args("twotheta_axis_custom")
    i = argv.index("-twotheta_axis")
    axis = argv[i:i + 4]
    argv = argv[:i] + argv[i + 4:] + axis
    cfg = build_config(parse_args(argv), golden.case_dir("twotheta_axis_custom"))
    setup = build_setup(cfg.experiment, get_context(backend="numpy", dtype="float64"))
    assert float(to_numpy(setup.detector.twotheta_rad)) == pytest.approx(math.radians(15.0), rel=1e-15)
    cmp = Comparison("twotheta_axis_custom, axis last")
    check_detector(cmp, _lines("twotheta_axis_custom"), _header("twotheta_axis_custom"), cfg, setup)
    cmp.report()
