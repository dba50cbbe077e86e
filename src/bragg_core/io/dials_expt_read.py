"""Reading DIALS experiment lists (``.expt``, JSON) into bragg_core objects, without dxtbx.

What is read, and how the frames and models map, is described in
:mod:`bragg_core.io.dials_expt`, which re-exports everything here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np

from ._dials_frame import LAB_TO_DIALS, _unit, dials_to_lab
from ._text import read_bytes

__all__ = ["ExptFormatError", "ExptContents", "parse_expt", "read_expt", "expt_reciprocal_vectors"]


class ExptFormatError(ValueError):
    """A DIALS experiment list that cannot be read; names the file and the field."""


@dataclass
class ExptContents:
    """What an experiment list describes, as bragg_core objects.

    ``experiment``'s detector is the first panel as a custom-convention
    Detector (the whole detector when there is one panel); ``detector`` holds
    every panel.  ``n_images`` and ``oscillation_deg`` (start, width) come
    from the scan (None for stills); ``template`` or ``image_files`` from the
    imageset; ``pedestal`` is the first panel's.
    """

    experiment: Any
    detector: Any
    n_images: Optional[int]
    oscillation_deg: Optional[tuple]
    template: Optional[str]
    image_files: list
    pedestal: float


# ----------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------


class _Ctx:
    def __init__(self, path):
        self.path = path

    def fail(self, field, problem):
        raise ExptFormatError(f"{self.path}: {field}: {problem}")

    def get(self, d, key, field):
        if not isinstance(d, dict) or key not in d:
            self.fail(field, "missing")
        return d[key]

    def vec(self, d, key, field, n=3):
        v = self.get(d, key, field)
        try:
            a = np.asarray([float(x) for x in v], dtype=np.float64)
        except (TypeError, ValueError):
            self.fail(field, f"expected {n} numbers, got {v!r}")
        if a.shape != (n,) or not np.all(np.isfinite(a)):
            self.fail(field, f"expected {n} finite numbers, got {v!r}")
        return a

    def num(self, d, key, field, default=None):
        if default is not None and (not isinstance(d, dict) or key not in d or d[key] is None):
            return float(default)
        v = self.get(d, key, field)
        try:
            x = float(v)
        except (TypeError, ValueError):
            self.fail(field, f"expected a number, got {v!r}")
        if not math.isfinite(x):
            self.fail(field, f"expected a finite number, got {v!r}")
        return x

    def model(self, doc, kind, idx, field):
        lst = doc.get(kind)
        if idx is None:
            return None
        if not isinstance(lst, list) or not isinstance(idx, int) or not 0 <= idx < len(lst):
            self.fail(field, f"refers to {kind}[{idx!r}], which the file does not have")
        return lst[idx]


def _axis_angle_matrix(axis, angle_deg: float) -> np.ndarray:
    """The right-handed rotation by ``angle_deg`` about the unit vector ``axis`` (Rodrigues)."""
    x, y, z = axis
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    K = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return c * np.eye(3) + s * K + (1.0 - c) * np.outer(axis, axis)


def _multi_axis(ctx, gd, gw):
    """(scan axis, fixed rotation, setting rotation) of a multi-axis goniometer (``axes``, ``angles``,
    ``scan_axis``; what DIALS builds from imgCIF and NeXus files).

    As dxtbx composes them: axes before the scan axis, each turned to its
    angle, make the fixed rotation (later ones applied after earlier ones),
    axes after it the setting rotation, in the same order.
    """
    axes = ctx.get(gd, "axes", gw + ".axes")
    if not isinstance(axes, list) or not axes:
        ctx.fail(gw + ".axes", f"expected a list of axes, got {axes!r}")
    vecs = [ctx.vec({"axis": a}, "axis", f"{gw}.axes[{i}]") for i, a in enumerate(axes)]
    for i, v in enumerate(vecs):
        if np.linalg.norm(v) == 0:
            ctx.fail(f"{gw}.axes[{i}]", "zero vector")
    angles = ctx.get(gd, "angles", gw + ".angles")
    if not isinstance(angles, list) or len(angles) != len(vecs):
        ctx.fail(gw + ".angles", f"expected {len(vecs)} angles (one per axis), got {angles!r}")
    angles = [ctx.num({"angle": a}, "angle", f"{gw}.angles[{i}]") for i, a in enumerate(angles)]
    scan = ctx.get(gd, "scan_axis", gw + ".scan_axis")
    if isinstance(scan, bool) or not isinstance(scan, int) or not 0 <= scan < len(vecs):
        ctx.fail(gw + ".scan_axis", f"expected an axis number from 0 to {len(vecs) - 1}, got {scan!r}")
    F, S = np.eye(3), np.eye(3)
    for i, (v, a) in enumerate(zip(vecs, angles)):
        if i != scan:
            R = _axis_angle_matrix(_unit(v), a)
            if i < scan:
                F = R @ F
            else:
                S = R @ S
    return vecs[scan], F, S


def _panels_global(ctx: _Ctx, det: dict, di: int):
    """Every panel's (fast, slow, origin) in DIALS's frame, composing the hierarchy."""
    panels = ctx.get(det, "panels", f"detector[{di}].panels")
    if not isinstance(panels, list) or not panels:
        ctx.fail(f"detector[{di}].panels", "expected a non-empty list")
    frames = [None] * len(panels)
    hier = det.get("hierarchy")

    def local(i):
        p = panels[i]
        f = f"detector[{di}].panels[{i}]"
        return (ctx.vec(p, "fast_axis", f + ".fast_axis"), ctx.vec(p, "slow_axis", f + ".slow_axis"),
                ctx.vec(p, "origin", f + ".origin"))

    def walk(node, d1, d2, d0, where, depth):
        if depth > 32:
            ctx.fail(where, "hierarchy nested too deeply")
        gf = ctx.vec(node, "fast_axis", where + ".fast_axis")
        gs = ctx.vec(node, "slow_axis", where + ".slow_axis")
        go = ctx.vec(node, "origin", where + ".origin")
        dn = _unit(np.cross(d1, d2))
        T = np.stack([d1, d2, dn], axis=1)  # local -> parent
        n1, n2, n0 = T @ gf, T @ gs, d0 + T @ go
        for k, ch in enumerate(node.get("children", []) or []):
            w = f"{where}.children[{k}]"
            if isinstance(ch, dict) and "panel" in ch:
                i = ch["panel"]
                if not isinstance(i, int) or not 0 <= i < len(panels):
                    ctx.fail(w + ".panel", f"no panel {i!r}")
                lf, ls, lo = local(i)
                m1, m2 = n1, n2
                mn = _unit(np.cross(m1, m2))
                Tm = np.stack([m1, m2, mn], axis=1)
                frames[i] = (Tm @ lf, Tm @ ls, n0 + Tm @ lo)
            elif isinstance(ch, dict):
                walk(ch, n1, n2, n0, w, depth + 1)
            else:
                ctx.fail(w, f"expected a panel reference or a group, got {ch!r}")

    if isinstance(hier, dict):
        walk(hier, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.zeros(3), f"detector[{di}].hierarchy", 0)
    for i in range(len(panels)):
        if frames[i] is None:  # no hierarchy, or a panel outside it: its frame is global
            frames[i] = local(i)
    return panels, frames


def _panel(ctx: _Ctx, p: dict, frame, di: int, i: int):
    from ..panels import Panel, PanelError

    f = f"detector[{di}].panels[{i}]"
    fast, slow, origin = frame
    px = ctx.vec(p, "pixel_size", f + ".pixel_size", 2)
    if not np.all(px > 0):
        ctx.fail(f + ".pixel_size", f"must be positive, got {list(px)}")
    if abs(px[0] - px[1]) > 1e-9 * px[0]:
        ctx.fail(f + ".pixel_size", f"rectangular pixels ({px[0]:g} x {px[1]:g} mm) are not supported")
    size = ctx.get(p, "image_size", f + ".image_size")
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size)):
        ctx.fail(f + ".image_size", f"expected two positive integers, got {size!r}")
    thick_mm = ctx.num(p, "thickness", f + ".thickness", default=0.0)
    mu = ctx.num(p, "mu", f + ".mu", default=0.0)
    if thick_mm < 0 or mu < 0:
        ctx.fail(f + ".thickness", "thickness and mu must not be negative")
    try:
        return Panel(fast_axis=tuple(dials_to_lab(fast)), slow_axis=tuple(dials_to_lab(slow)),
                     origin_mm=tuple(dials_to_lab(origin)), fpixels=int(size[0]), spixels=int(size[1]),
                     pixel_size_mm=float(px[0]), thickness_um=thick_mm * 1000.0,
                     attenuation_depth_um=(1000.0 / mu) if mu > 0 and thick_mm > 0 else None,
                     material=str(p.get("material") or ""), name=str(p.get("name") or ""))
    except PanelError as exc:
        ctx.fail(f, str(exc))


def parse_expt(doc: Any, path: str = "<expt>", base=None, experiment_index: int = 0) -> ExptContents:
    """An experiment list (the parsed JSON) as :class:`ExptContents`.

    ``base`` (an Experiment) supplies what the file does not say: cell counts,
    structure factors, fluence, sampling and sensor options.  Errors name
    ``path`` and the field.
    """
    from ..experiment import Experiment, ExperimentError
    from ..panels import MultiPanelDetector, PanelError, panel_detector

    ctx = _Ctx(path)
    if not isinstance(doc, dict) or doc.get("__id__") != "ExperimentList":
        ctx.fail("__id__", "not a DIALS experiment list (expected \"ExperimentList\")")
    exps = doc.get("experiment")
    if not isinstance(exps, list) or not exps:
        ctx.fail("experiment", "expected a non-empty list")
    if not 0 <= experiment_index < len(exps):
        ctx.fail("experiment", f"has no experiment {experiment_index}")
    e = exps[experiment_index]
    ew = f"experiment[{experiment_index}]"
    base = base or Experiment()

    # beam
    bi = ctx.get(e, "beam", ew + ".beam")
    bd = ctx.model(doc, "beam", bi, ew + ".beam")
    bw = f"beam[{bi}]"
    direction = ctx.vec(bd, "direction", bw + ".direction")
    if np.linalg.norm(direction) == 0:
        ctx.fail(bw + ".direction", "zero vector")
    wavelength = ctx.num(bd, "wavelength", bw + ".wavelength")
    if not wavelength > 0:
        ctx.fail(bw + ".wavelength", f"must be positive, got {wavelength:g}")
    b_lab = _unit(dials_to_lab(-_unit(direction)))
    pn = bd.get("polarization_normal")
    frac = ctx.num(bd, "polarization_fraction", bw + ".polarization_fraction", default=0.5)
    if not 0.0 <= frac <= 1.0:
        ctx.fail(bw + ".polarization_fraction", f"must lie in [0, 1], got {frac:g}")
    polar_lab = None
    if pn is not None:
        n_lab = dials_to_lab(ctx.vec(bd, "polarization_normal", bw + ".polarization_normal"))
        e_vec = np.cross(n_lab, b_lab)
        if np.linalg.norm(e_vec) < 1e-9:
            ctx.fail(bw + ".polarization_normal", "parallel to the beam")
        polar_lab = _unit(e_vec)

    # goniometer and scan
    gi, si = e.get("goniometer"), e.get("scan")
    spindle_lab, S_lab = None, np.eye(3)
    if gi is not None:
        gd = ctx.model(doc, "goniometer", gi, ew + ".goniometer")
        gw = f"goniometer[{gi}]"
        if "axes" in gd and "rotation_axis" not in gd:
            axis, F, S = _multi_axis(ctx, gd, gw)
        else:
            axis = ctx.vec(gd, "rotation_axis", gw + ".rotation_axis")
            if np.linalg.norm(axis) == 0:
                ctx.fail(gw + ".rotation_axis", "zero vector")
            F = ctx.vec(gd, "fixed_rotation", gw + ".fixed_rotation", 9).reshape(3, 3) \
                if "fixed_rotation" in gd else np.eye(3)
            S = ctx.vec(gd, "setting_rotation", gw + ".setting_rotation", 9).reshape(3, 3) \
                if "setting_rotation" in gd else np.eye(3)
        # lab = S R(axis, phi) F A = R(S axis, phi) (S F) A
        spindle_lab = _unit(dials_to_lab(S @ _unit(axis)))
        S_lab = LAB_TO_DIALS.T @ (S @ F) @ LAB_TO_DIALS
    n_images = osc = None
    if si is not None:
        sd = ctx.model(doc, "scan", si, ew + ".scan")
        sw = f"scan[{si}]"
        ir = ctx.get(sd, "image_range", sw + ".image_range")
        if (not isinstance(ir, list) or len(ir) != 2 or not all(isinstance(x, int) for x in ir)
                or ir[1] < ir[0]):
            ctx.fail(sw + ".image_range", f"expected [first, last], got {ir!r}")
        n_images = ir[1] - ir[0] + 1
        props = sd.get("properties") if isinstance(sd.get("properties"), dict) else sd
        if "oscillation" not in props:
            ctx.fail(sw + ".oscillation", "missing")
        o = props["oscillation"]
        try:
            vals = [float(x) for x in o]
        except (TypeError, ValueError):
            ctx.fail(sw + ".oscillation", f"expected numbers, got {o!r}")
        if props is sd and len(vals) == 2:  # DIALS 3.x: [start, width] of the first image
            osc = (vals[0], vals[1])
        elif len(vals) >= 2:  # newer files: one start angle per image
            osc = (vals[0], vals[1] - vals[0])
        if osc is None or not all(math.isfinite(x) for x in osc):
            ctx.fail(sw + ".oscillation", f"expected [start, width], got {o!r}")

    # detector
    di = ctx.get(e, "detector", ew + ".detector")
    dd = ctx.model(doc, "detector", di, ew + ".detector")
    pdicts, frames = _panels_global(ctx, dd, di)
    panels = tuple(_panel(ctx, p, fr, di, i) for i, (p, fr) in enumerate(zip(pdicts, frames)))
    pedestal = ctx.num(pdicts[0], "pedestal", f"detector[{di}].panels[0].pedestal", default=0.0)

    bdet = base.detector
    shared = replace(bdet, convention="custom", pivot="beam", beam_vector=tuple(b_lab),
                     polar_vector=tuple(polar_lab) if polar_lab is not None else bdet.polar_vector,
                     spindle_axis=tuple(spindle_lab) if spindle_lab is not None else bdet.spindle_axis,
                     fdet_vector=None, sdet_vector=None, odet_vector=None, twotheta_axis=None,
                     rotation_deg=(0.0, 0.0, 0.0), twotheta_deg=0.0, beam_center_mm=None,
                     close_point_mm=None, xds_origin_px=None, close_distance_mm=None, roi=None, mask=None)
    try:
        mp = MultiPanelDetector(panels=panels, base=shared)
        first = panel_detector(panels[0], shared)
    except PanelError as exc:
        ctx.fail(f"detector[{di}]", str(exc))

    # crystal
    cr = base.crystal
    ci = e.get("crystal")
    if ci is not None:
        cd = ctx.model(doc, "crystal", ci, ew + ".crystal")
        cw = f"crystal[{ci}]"
        real = np.stack([ctx.vec(cd, k, f"{cw}.{k}") for k in ("real_space_a", "real_space_b", "real_space_c")])
        real_lab = dials_to_lab(real) @ S_lab.T  # rows a, b, c in the lab frame at the zero angle
        if abs(np.linalg.det(real_lab)) < 1e-9:
            ctx.fail(cw + ".real_space_a", "cell vectors have no volume")
        recip = np.linalg.inv(real_lab).T  # rows a*, b*, c* (1/Angstrom)
        cr = replace(cr, cell_A_deg=None, reciprocal_vectors_per_A=recip, misset_deg=None, misset_random=False)
    if osc is not None:
        cr = replace(cr, phi_start_deg=osc[0], osc_deg=osc[1])
    kahn = 2.0 * frac - 1.0 if "polarization_fraction" in bd else base.beam.kahn_factor
    try:
        beam = replace(base.beam, wavelength_A=wavelength, kahn_factor=kahn)
        exp = Experiment(beam=beam, detector=first, crystal=cr)
    except ExperimentError as exc:
        ctx.fail(ew, str(exc))

    # imageset
    template, files = None, []
    ii = e.get("imageset")
    if ii is not None:
        isd = ctx.model(doc, "imageset", ii, ew + ".imageset")
        template = isd.get("template")
        files = list(isd.get("images") or [])
    return ExptContents(experiment=exp, detector=mp, n_images=n_images, oscillation_deg=osc, template=template,
                        image_files=files, pedestal=pedestal)


def read_expt(path: str, base=None, experiment_index: int = 0) -> ExptContents:
    """Read a DIALS experiment list (``.expt``); errors name the file and the field."""
    raw = read_bytes(path)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExptFormatError(f"{path}: not JSON ({exc})") from None
    return parse_expt(doc, path, base, experiment_index)


def expt_reciprocal_vectors(path: str) -> np.ndarray:
    """Rows a*, b*, c* (1/Angstrom, lab frame) of the first experiment's crystal."""
    c = read_expt(path)
    m = c.experiment.crystal.reciprocal_vectors_per_A
    if m is None:
        raise ExptFormatError(f"{path}: crystal: missing (the experiment has no crystal)")
    return m
