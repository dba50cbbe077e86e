"""Reading full CBF (imgCIF) files: the categories :mod:`bragg_core.io.cbf` writes (described there), or a
file with the same categories, back into counts and an :class:`~bragg_core.io._imageset.ImageSetGeometry`.

A small CIF parser (items and loops, enough for these files) reads the text
before the first binary section; each binary section is decoded with the
byte-offset code (:mod:`bragg_core.io._cbf_codec`).  A file that cannot be
read raises :class:`CBFFormatError`, naming the file and the item.
Everything here is importable from :mod:`bragg_core.io.cbf` too.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from ._cbf_codec import _MARK, byte_offset_decode
from ._imageset import ImageSetGeometry, experiment_from_geometry
from .dials_expt import LAB_TO_DIALS

__all__ = ["CBFFormatError", "read_cbf", "read_cbf_series"]


class CBFFormatError(ValueError):
    """A CBF file that cannot be read; names the file and the item."""


def _tokens(line: str):
    return re.findall(r"'[^']*'|\"[^\"]*\"|\S+", line)


def _unquote(v: str) -> str:
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"" else v


def _parse_cif(text: str) -> dict:
    """category -> list of row dicts (key-value items are one row)."""
    cats: dict = {}
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("loop_"):
            cols = []
            i += 1
            while i < len(lines) and lines[i].strip().startswith("_"):
                cols.append(lines[i].strip()[1:])
                i += 1
            cat = cols[0].split(".")[0].lower() if cols else ""
            names = [c.split(".", 1)[1].lower() for c in cols]
            vals = []
            while i < len(lines):
                s = lines[i].strip()
                if not s or s.startswith(("_", "loop_", "data_", "#", ";")):
                    break
                vals.extend(_unquote(v) for v in _tokens(s))
                i += 1
            rows = [dict(zip(names, vals[k:k + len(names)])) for k in range(0, len(vals) - len(names) + 1,
                                                                           len(names))]
            cats.setdefault(cat, []).extend(rows)
            continue
        if line.startswith("_") and "." in line.split()[0]:
            tok = _tokens(line)
            key = tok[0][1:]
            cat, item = key.split(".", 1)
            value = _unquote(" ".join(tok[1:])) if len(tok) > 1 else ""
            rows = cats.setdefault(cat.lower(), [])
            if not rows or item.lower() in rows[-1]:
                rows.append({})
            rows[-1][item.lower()] = value
        i += 1
    return cats


def read_cbf(path, base=None):
    """``(counts, geometry)`` of a full CBF written by :func:`write_cbf` (or with the same categories).

    ``counts`` is the int32 ``(slow, fast)`` array (``(panel, slow, fast)`` for several); ``geometry`` an
    :class:`~bragg_core.io._imageset.ImageSetGeometry` of this one image
    (its ``experiment``: the Experiment, ``base`` for what the file lacks).
    """
    from ..panels import MultiPanelDetector, Panel, PanelError

    path = os.fspath(path)
    with open(path, "rb") as fh:
        raw = fh.read()

    def fail(item, problem):
        raise CBFFormatError(f"{path}: {item}: {problem}")

    if not raw.startswith(b"###CBF"):
        fail("header", "not a CBF file (no ###CBF line)")
    cut = raw.find(b"--CIF-BINARY-FORMAT-SECTION--")
    if cut < 0:
        fail("_array_data.data", "no binary section")
    text = raw[:cut].decode("latin-1")
    cats = _parse_cif(text)
    sections = {}
    pos = cut
    while pos >= 0:
        mime_end = raw.find(_MARK, pos)
        if mime_end < 0:
            fail("_array_data.data", "no binary start marker")
        mime = raw[pos:mime_end].decode("latin-1")

        def mval(key, mime=mime):
            m = re.search(rf"{key}:\s*(\S+)", mime)
            if not m:
                fail("_array_data.data", f"no {key}")
            return m.group(1)

        if "x-CBF_BYTE_OFFSET" not in mime:
            fail("_array_data.data", "only byte-offset compression is read")
        size, F, S = int(mval("X-Binary-Size")), int(mval("X-Binary-Size-Fastest-Dimension")), \
            int(mval("X-Binary-Size-Second-Dimension"))
        bid = mval("X-Binary-ID")
        start = mime_end + 4
        if start + size > len(raw):
            fail("_array_data.data", f"truncated: {len(raw) - start} of {size} bytes")
        try:
            sections[bid] = byte_offset_decode(raw[start:start + size], S * F).astype(np.int32).reshape(S, F)
        except ValueError as exc:
            fail("_array_data.data", str(exc))
        nxt = re.search(rb"--CIF-BINARY-FORMAT-SECTION--\r?\nContent-Type", raw[start + size:])
        pos = start + size + nxt.start() if nxt else -1

    def one(cat, key, where=None):
        rows = cats.get(cat) or fail(f"_{cat}", "missing")
        for r in rows:
            if where is None or all(r.get(k) == v for k, v in where.items()):
                if key not in r:
                    fail(f"_{cat}.{key}", "missing")
                return r[key]
        fail(f"_{cat}", f"no row with {where}")

    def num(cat, key, where=None):
        v = one(cat, key, where)
        try:
            return float(v)
        except ValueError:
            fail(f"_{cat}.{key}", f"expected a number, got {v!r}")

    axes = {r["id"]: r for r in cats.get("axis", [])}
    if not axes:
        fail("_axis", "missing")

    def vec(aid, what="vector"):
        r = axes.get(aid) or fail("_axis", f"no axis {aid}")
        try:
            return np.array([float(r[f"{what}[{k}]"]) for k in (1, 2, 3)])
        except (KeyError, ValueError):
            fail(f"_axis {aid}", f"{what} must be 3 numbers")

    lab = lambda v: LAB_TO_DIALS.T @ v  # noqa: E731
    own = (cats.get("bragg_core") or [{}])[0]
    thick = float(own.get("sensor_thickness_um", 0.0))
    material = own.get("sensor_material", "")
    frame_disp = {r["axis_id"]: float(r.get("displacement", 0) or 0) for r in cats.get("diffrn_scan_frame_axis", [])}
    sla = {r["axis_id"]: r for r in cats.get("array_structure_list_axis", [])}
    frames = cats.get("diffrn_data_frame") or [{"array_id": "ARRAY1", "binary_id": "1"}]
    panels, counts = [], []
    for fr in frames:
        arr = fr.get("array_id")
        asl = {r["index"]: r for r in cats.get("array_structure_list", []) if r.get("array_id") == arr}
        if set(asl) != {"1", "2"}:
            fail("_array_structure_list", f"expected two dimensions for {arr}")
        xaxis, yaxis = asl["1"]["axis_set_id"], asl["2"]["axis_set_id"]
        disp = {}
        for a in (xaxis, yaxis):
            r = sla.get(a) or fail("_array_structure_list_axis", f"no axis {a}")
            disp[a] = (float(r["displacement"]), float(r["displacement_increment"]))
        # the first data point: every translation of the chain from the surface axis that hangs on the other
        # one down (DIALS takes it as the panel's corner); one panel: the slow axis on the fast one, several:
        # the fast axis on the slow one
        corner = np.zeros(3)
        aid, depth = (xaxis if (axes.get(xaxis) or {}).get("depends_on") == yaxis else yaxis), 0
        while aid not in (".", "", None):
            r = axes.get(aid) or fail("_axis", f"no axis {aid}")
            if r.get("type") != "translation":
                fail(f"_axis {aid}", "only translations are read in the detector chain")
            dd = disp[aid][0] if aid in disp else frame_disp.get(aid, 0.0)
            v = vec(aid)
            corner = corner + vec(aid, "offset") + dd * v / np.linalg.norm(v)
            aid = r.get("depends_on")
            depth += 1
            if depth > 16:
                fail("_axis", "depends_on chain too long")
        fx, sx = vec(xaxis), vec(yaxis)
        fx, sx = fx / np.linalg.norm(fx), sx / np.linalg.norm(sx)
        px = disp[xaxis][1]
        if not (px > 0 and abs(disp[yaxis][1] - px) <= 1e-9 * px):
            fail("_array_structure_list_axis", "pixels must be square")
        data = sections.get(str(fr.get("binary_id", "1")))
        if data is None:
            fail("_array_data.data", f"no binary section {fr.get('binary_id')} for {arr}")
        S, F = data.shape
        counts.append(data)
        try:
            panels.append(Panel(fast_axis=tuple(float(x) for x in lab(fx)), slow_axis=tuple(float(x) for x in lab(sx)),
                                origin_mm=tuple(float(x) for x in lab(corner)), fpixels=F, spixels=S,
                                pixel_size_mm=px, thickness_um=thick, material=material,
                                name=fr.get("detector_element_id", "") if len(frames) > 1 else ""))
        except PanelError as exc:
            fail("_axis", str(exc))
    wl = num("diffrn_radiation_wavelength", "wavelength")
    gon = one("diffrn_measurement_axis", "axis_id") if "diffrn_measurement_axis" in cats else "GONIOMETER_OMEGA"
    spindle = lab(vec(gon))
    angle = num("diffrn_scan_axis", "angle_start", {"axis_id": gon})
    width = num("diffrn_scan_axis", "angle_increment", {"axis_id": gon})
    still = own.get("oscillation") == "still"
    kahn = float(one("diffrn_radiation", "polarizn_source_ratio")) if "diffrn_radiation" in cats else 0.0
    if "polar_vector" in own:
        polar = lab(np.array([float(x) for x in own["polar_vector"].split()]))
    else:
        nd = math.radians(float(one("diffrn_radiation", "polarizn_source_norm")))
        polar = lab(np.array([-math.sin(nd), math.cos(nd), 0.0]))
    over = cats.get("array_intensities", [{}])[0]
    geom = ImageSetGeometry(
        experiment=None, detector=MultiPanelDetector(panels=tuple(panels)), beam=lab(np.array([0.0, 0.0, -1.0])),
        polar=polar / np.linalg.norm(polar), spindle=spindle / np.linalg.norm(spindle), wavelength_A=wl,
        fluence_photons_per_m2=float(own.get("fluence_photons_per_m2", 0.0)),
        beam_size_mm=float(own.get("beam_size_mm", 0.1)), kahn_factor=kahn, angles_deg=np.array([angle]),
        osc_deg=None if still else width,
        saturation_value=float(over["overload"]) if "overload" in over else None,
        underload_value=float(over["undefined_value"]) if "undefined_value" in over else None,
        sensor_material=material, sensor_thickness_um=thick)
    experiment_from_geometry(geom, base)
    return (counts[0] if len(counts) == 1 else np.stack(counts)), geom


def read_cbf_series(names, base=None):
    """``(counts (n, slow, fast), geometry)`` of several CBF files, the angles of all of them."""
    imgs, angles, geom = [], [], None
    for nm in names:
        c, g = read_cbf(nm, base)
        imgs.append(c)
        angles.append(float(g.angles_deg[0]))
        geom = geom or g
    if geom is None:
        raise CBFFormatError("no CBF files given")
    geom.angles_deg = np.asarray(angles)
    return np.stack(imgs), geom
