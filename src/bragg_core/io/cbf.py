"""Full CBF (imgCIF) images: byte-offset compressed counts with the axis and geometry categories.

Each file holds one image as signed 32-bit counts (a float image is
rounded; ``scale`` and ``offset`` apply first) and the categories from which
DIALS, XDS and other imgCIF readers rebuild the experiment:

* ``diffrn_radiation_wavelength``: the wavelength; ``diffrn_radiation``: the
  polarization (Kahn factor as ``polarizn_source_ratio``, the E-vector's
  angle from +Y about the beam as ``polarizn_source_norm``);
* ``axis``: ``GONIOMETER_OMEGA`` (the spindle, a rotation), ``DETECTOR_Z``
  (a translation along the beam by the distance to the panel's plane),
  ``ELEMENT_X`` and ``ELEMENT_Y`` (the fast and slow pixel directions;
  ``ELEMENT_X``'s offset puts the outer corner of pixel (0, 0) in place);
* ``diffrn_scan_axis`` / ``diffrn_scan_frame_axis``: the image's start angle
  and oscillation width (0 for a still), the detector displacement;
* ``array_structure_list`` / ``array_structure_list_axis``: fast and slow
  dimensions tied to ``ELEMENT_X``/``ELEMENT_Y``, one pixel per step, the
  first data point at displacement 0, i.e. at the outer corner of pixel
  (0, 0): DIALS (dxtbx) takes that point as the panel origin, and it writes
  its own full CBFs the same way; ``array_element_size`` in metres;
* ``array_intensities``: gain, overload and the undefined value.

Vectors are in the imgCIF frame (DIALS's, ``bragg_core.io.dials_expt``),
with the beam along -Z (a beam not along the lab's +x is first turned onto
it, as for NeXus).

Several panels (of one size) become one detector element and one array
each in one file, written so that DIALS 3.12's multi-tile reader
(``FormatCBFMultiTileHierarchy``) takes it and reads every panel:

* each panel's fast axis ``ELEMENT_X_k`` depends on its slow axis
  ``ELEMENT_Y_k``, which carries the panel's offset and depends on
  ``DETECTOR_Z`` (that reader requires the first surface axis to hang on the
  second, and takes the vectors as they are written);
* the ``axis`` category has ``equipment_component`` (one component per
  panel, ``detector`` for ``DETECTOR_Z``): the reader builds the panel
  hierarchy from it; without the column the file goes to the plain
  multi-tile reader, which swaps fast and slow and gives no pixels (it looks
  for the ``array_data`` category by comparing CBFlib's bytes name with a
  str, never equal, and it uses ``numpy.float``, gone since NumPy 1.24);
* the element axes are listed, at 0, in ``diffrn_scan_axis`` and
  ``diffrn_scan_frame_axis`` (the reader asks for every axis's setting);
* each binary section names its third dimension (1) and writes the
  conversion as ``conversions = "x-CBF_BYTE_OFFSET"`` (see
  :func:`_binary_section`).

That reader gives every panel the size of the last array, hence one size
for all.  One panel keeps the single-array layout (``ELEMENT_Y`` on
``ELEMENT_X``), read by DIALS's byte-offset reader, fabio and XDS; fabio
reads single-array files only (it refuses a file whose ``_array_data``
is a loop).

The byte-offset code (imgCIF ``x-CBF_BYTE_OFFSET``) is written with array
operations; reading walks only the escaped (multi-byte) differences.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import math
import os
import re
from typing import Optional

import numpy as np

from ._imageset import ImageSetGeometry, beam_alignment, experiment_from_geometry, geometry_from_experiment
from .atomic import atomic_write
from .dials_expt import LAB_TO_DIALS

__all__ = ["CBFFormatError", "cbf_bytes", "write_cbf", "write_cbf_series", "read_cbf", "read_cbf_series",
           "byte_offset_encode", "byte_offset_decode"]

_MARK = b"\x0c\x1a\x04\xd5"
_PAD = 4095


class CBFFormatError(ValueError):
    """A CBF file that cannot be read; names the file and the item."""


# -- byte offset ---------------------------------------------------------------------------------------


def byte_offset_encode(values) -> bytes:
    """imgCIF byte-offset code of integer ``values`` (flattened in C order)."""
    v = np.asarray(values).astype(np.int64).reshape(-1)
    d = np.diff(v, prepend=np.int64(0))
    a = np.abs(d)
    one = a <= 127
    three = ~one & (a <= 32767)
    seven = ~one & ~three & (a <= 2**31 - 1)
    fifteen = ~(one | three | seven)
    lengths = np.where(one, 1, np.where(three, 3, np.where(seven, 7, 15)))
    ends = np.cumsum(lengths)
    start = ends - lengths
    out = np.zeros(int(ends[-1]) if len(ends) else 0, dtype=np.uint8)
    out[start[one]] = d[one].astype(np.int8).view(np.uint8)
    esc = start[~one]
    out[esc] = 0x80
    i3 = start[three]
    b = d[three].astype("<i2").view(np.uint8).reshape(-1, 2)
    out[i3 + 1], out[i3 + 2] = b[:, 0], b[:, 1]
    big = start[seven | fifteen]
    out[big + 1], out[big + 2] = 0x00, 0x80  # int16 -32768: a 32-bit value follows
    i7 = start[seven]
    b = d[seven].astype("<i4").view(np.uint8).reshape(-1, 4)
    for k in range(4):
        out[i7 + 3 + k] = b[:, k]
    i15 = start[fifteen]
    out[i15 + 3], out[i15 + 4], out[i15 + 5], out[i15 + 6] = 0x00, 0x00, 0x00, 0x80  # int32 -2^31: 64 bits follow
    b = d[fifteen].astype("<i8").view(np.uint8).reshape(-1, 8)
    for k in range(8):
        out[i15 + 7 + k] = b[:, k]
    return out.tobytes()


def byte_offset_decode(data: bytes, n: int) -> np.ndarray:
    """The first ``n`` integers (int64) of a byte-offset code."""
    buf = np.frombuffer(data, dtype=np.uint8)
    small = buf.view(np.int8).astype(np.int64)
    cand = np.flatnonzero(buf == 0x80)
    pieces = []
    p = 0
    count = 0
    k = int(np.searchsorted(cand, 0))
    while count < n:
        if k >= len(cand):  # the rest are single bytes
            take = min(n - count, len(buf) - p)
            pieces.append(small[p:p + take])
            count += take
            break
        c = int(cand[k])
        if c > p:
            take = min(c - p, n - count)
            pieces.append(small[p:p + take])
            count += take
            if count >= n:
                break
        v = int(np.frombuffer(data, "<i2", 1, c + 1)[0])
        q = c + 3
        if v == -32768:
            v = int(np.frombuffer(data, "<i4", 1, c + 3)[0])
            q = c + 7
            if v == -(2**31):
                v = int(np.frombuffer(data, "<i8", 1, c + 7)[0])
                q = c + 15
        pieces.append(np.array([v], dtype=np.int64))
        count += 1
        p = q
        k = int(np.searchsorted(cand, p))
    d = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    if d.size < n:
        raise ValueError(f"byte-offset data end after {d.size} of {n} values")
    return np.cumsum(d[:n])


# -- writing -------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return repr(float(x))


def _loop(cat: str, cols, rows) -> str:
    head = "loop_\r\n" + "".join(f"_{cat}.{c}\r\n" for c in cols)
    return head + "".join(" ".join(str(v) for v in r) + "\r\n" for r in rows) + "\r\n"


def _items(cat: str, pairs) -> str:
    return "".join(f"_{cat}.{k} {v}\r\n" for k, v in pairs) + "\r\n"


def _date(index: int) -> str:
    """A fixed start (the epoch) plus one second per image: files of a series differ only where they should."""
    return (datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%S.000")


def _counts(image, scale: float, offset: float) -> np.ndarray:
    from .._backend import to_numpy

    a = np.asarray(to_numpy(image))
    if a.dtype.kind in "iu" and scale == 1.0 and offset == 0.0:
        return np.clip(a.astype(np.int64), -(2**31) + 1, 2**31 - 1).astype(np.int32)
    t = np.nan_to_num(a.astype(np.float64) * scale + offset, nan=0.0)
    return np.clip(np.rint(t), -(2**31) + 1, 2**31 - 1).astype(np.int32)


def _names(k: int):
    """(element, x axis, y axis, array) names of panel ``k`` (panel 0: the usual single-panel names)."""
    if k == 0:
        return "ELEMENT1", "ELEMENT_X", "ELEMENT_Y", "ARRAY1"
    return f"ELEMENT{k + 1}", f"ELEMENT_X_{k + 1}", f"ELEMENT_Y_{k + 1}", f"ARRAY{k + 1}"


def _panel_list(image, n: int) -> list:
    from .._backend import to_numpy

    if isinstance(image, (list, tuple)):
        return list(image)
    a = to_numpy(image)
    if n == 1 and a.ndim == 2:
        return [a]
    if a.ndim == 3 and a.shape[0] == n:
        return [a[k] for k in range(n)]
    raise ValueError(f"the detector has {n} panels; expected (panel, slow, fast) or a list, got shape {a.shape}")


def _saturation(panels, scale: float, offset: float) -> float:
    """The largest value of the images' integer type when it is narrower than int32 and kept as it is."""
    from .._backend import to_numpy

    if scale != 1.0 or offset != 0.0:
        return 2**31 - 1
    kinds = {np.asarray(to_numpy(a)).dtype for a in panels}
    if len(kinds) == 1:
        (dt,) = kinds
        if dt.kind in "iu" and dt.itemsize < 4:
            return float(np.iinfo(dt).max)
    return 2**31 - 1


def _binary_section(counts: np.ndarray, binary_id: int, several: bool = False) -> bytes:
    """One MIME-framed byte-offset section.

    ``several``: one of several arrays in the file.  The parameter is then
    written ``conversions = "x-CBF_BYTE_OFFSET"`` (white space around ``=`` is
    allowed in MIME headers and CBFlib reads it): DIALS 3.12 (dxtbx) tries its
    single-array byte-offset reader first, which claims a file only when the
    first MIME header holds the exact text ``conversions="x-CBF_BYTE_OFFSET"``
    and then reads the first array alone; declined there, the file goes to its
    multi-tile reader, which reads every array.  The third dimension (1) is
    named too: that reader shapes each array from CBFlib's three dimensions,
    and an unnamed one is 0.
    """
    S, F = counts.shape
    packed = byte_offset_encode(counts)
    md5 = base64.b64encode(hashlib.md5(packed).digest()).decode()
    conv = 'conversions = "x-CBF_BYTE_OFFSET"' if several else 'conversions="x-CBF_BYTE_OFFSET"'
    third = "X-Binary-Size-Third-Dimension: 1\r\n" if several else ""
    mime = (";\r\n--CIF-BINARY-FORMAT-SECTION--\r\n"
            "Content-Type: application/octet-stream;\r\n"
            f"     {conv}\r\n"
            "Content-Transfer-Encoding: BINARY\r\n"
            f"X-Binary-Size: {len(packed)}\r\n"
            f"X-Binary-ID: {binary_id}\r\n"
            'X-Binary-Element-Type: "signed 32-bit integer"\r\n'
            "X-Binary-Element-Byte-Order: LITTLE_ENDIAN\r\n"
            f"Content-MD5: {md5}\r\n"
            f"X-Binary-Number-of-Elements: {S * F}\r\n"
            f"X-Binary-Size-Fastest-Dimension: {F}\r\n"
            f"X-Binary-Size-Second-Dimension: {S}\r\n"
            f"{third}"
            f"X-Binary-Size-Padding: {_PAD}\r\n\r\n")
    tail = b"\r\n--CIF-BINARY-FORMAT-SECTION----\r\n;\r\n"
    return b"".join([mime.encode("ascii"), _MARK, packed, bytes(_PAD), tail])


def cbf_bytes(image, geometry: ImageSetGeometry, index: int = 0, *, scale: float = 1.0, offset: float = 0.0,
              gain: float = 1.0, overload: Optional[float] = None, undefined: float = -1.0,
              name: str = "image") -> bytes:
    """The full CBF of image ``index`` of ``geometry``, pixel values ``image * scale + offset``.

    Several panels (``(panel, slow, fast)`` or a list) become one detector
    element and one array each, in one file, laid out for DIALS's multi-tile
    reader (module notes); they must share a size, as that reader gives
    every panel the last array's size.

    ``overload`` (the saturation) defaults to the geometry's, else, for an
    integer image narrower than 32 bits written as it is (a noise image is
    ``uint16``), the largest value of its type (as :class:`NexusWriter` takes
    it from an integer ``dtype``), else 2**31 - 1.
    """
    g = geometry
    n = len(g.panels)
    panels = _panel_list(image, n)
    if len(panels) != n:
        raise ValueError(f"the detector has {n} panels, the image {len(panels)}")
    if len({(int(p.spixels), int(p.fpixels)) for p in g.panels}) != 1:
        raise ValueError("the panels of a CBF file must share a size (DIALS reads the last panel's size for "
                         "all); write NeXus instead")
    counts = []
    for k, (im, p) in enumerate(zip(panels, g.panels)):
        c = _counts(im, float(scale), float(offset))
        if c.shape != (int(p.spixels), int(p.fpixels)):
            raise ValueError(f"panel {k}: the image is {c.shape}, the panel {p.spixels} x {p.fpixels} (slow x fast)")
        counts.append(c)
    R = LAB_TO_DIALS @ beam_alignment(g.beam)
    beam = R @ g.beam  # (0, 0, -1)
    d = g.beam_distance_mm(0)
    spin = R @ g.spindle
    angle = float(g.angles_deg[index]) if g.n_images else 0.0
    osc = float(g.osc_deg) if g.osc_deg is not None else 0.0
    e = R @ g.polar
    norm_deg = math.degrees(math.atan2(-e[0], e[1]))  # angle of the E-vector from +Y, about the beam
    sat = overload if overload is not None else (g.saturation_value if g.saturation_value is not None
                                                 else _saturation(panels, scale, offset))
    block = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    t = ["###CBF: VERSION 1.5, bragg_core full CBF (imgCIF)\r\n\r\n", f"data_{block}\r\n\r\n"]
    t.append(_items("diffrn", [("id", "DS1")]))
    t.append(_items("diffrn_source", [("diffrn_id", "DS1"), ("source", "simulation"), ("type", "bragg_core")]))
    t.append(_items("diffrn_radiation", [("diffrn_id", "DS1"), ("wavelength_id", "WAVELENGTH1"),
                                         ("probe", "x-ray"), ("polarizn_source_ratio", _fmt(g.kahn_factor)),
                                         ("polarizn_source_norm", _fmt(norm_deg))]))
    t.append(_loop("diffrn_radiation_wavelength", ["id", "wavelength", "wt"],
                   [["WAVELENGTH1", _fmt(g.wavelength_A), "1.0"]]))
    t.append(_items("diffrn_measurement", [("diffrn_id", "DS1"), ("id", "GONIOMETER"), ("number_of_axes", 1),
                                           ("method", "rotation" if g.osc_deg is not None else "still")]))
    t.append(_items("diffrn_measurement_axis", [("measurement_id", "GONIOMETER"), ("axis_id", "GONIOMETER_OMEGA")]))
    t.append(_items("diffrn_detector", [("diffrn_id", "DS1"), ("id", "DETECTOR"), ("type", "simulated"),
                                        ("number_of_axes", 1)]))
    t.append(_loop("diffrn_detector_axis", ["detector_id", "axis_id"], [["DETECTOR", "DETECTOR_Z"]]))
    names = [_names(k) for k in range(n)]
    t.append(_loop("diffrn_detector_element", ["id", "detector_id"], [[el, "DETECTOR"] for el, _, _, _ in names]))
    t.append(_loop("diffrn_data_frame", ["id", "detector_element_id", "array_id", "binary_id"],
                   [["FRAME1", el, arr, k + 1] for k, (el, _, _, arr) in enumerate(names)]))
    axis_rows = [["GONIOMETER_OMEGA", "rotation", "goniometer", ".", *map(_fmt, spin), "0", "0", "0"],
                 ["DETECTOR_Z", "translation", "detector", ".", *map(_fmt, beam), "0", "0", "0"]]
    asl, asla, aes, ai, ast = [], [], [], [], []
    for k, (p, (_el, ax, ay, arr)) in enumerate(zip(g.panels, names)):
        fvec, svec, origin = g.panel_vectors(k)
        f, sv, o = R @ fvec, R @ svec, R @ origin
        off = o - d * beam
        px = float(p.pixel_size_mm)
        S, F = counts[k].shape
        if n == 1:
            axis_rows += [[ax, "translation", "detector", "DETECTOR_Z", *map(_fmt, f), *map(_fmt, off)],
                          [ay, "translation", "detector", ax, *map(_fmt, sv), "0", "0", "0"]]
        else:  # the fast axis hangs on the slow one, which carries the offset (see the module notes)
            axis_rows += [[ax, "translation", "detector", ay, *map(_fmt, f), "0", "0", "0", _el],
                          [ay, "translation", "detector", "DETECTOR_Z", *map(_fmt, sv), *map(_fmt, off), _el]]
        asl += [[arr, 1, F, 1, "increasing", ax], [arr, 2, S, 2, "increasing", ay]]
        asla += [[ax, ax, "0.0", _fmt(px)], [ay, ay, "0.0", _fmt(px)]]
        aes += [[arr, 1, _fmt(px * 1e-3)], [arr, 2, _fmt(px * 1e-3)]]
        ai.append([arr, k + 1, "linear", _fmt(gain), "0.0", _fmt(sat), _fmt(undefined),
                   _fmt(scale) if scale != 1.0 or offset != 0.0 else "1.0"])
        ast.append([arr, '"signed 32-bit integer"', "byte_offset", "little_endian"])
    axis_cols = ["id", "type", "equipment", "depends_on", "vector[1]", "vector[2]", "vector[3]",
                 "offset[1]", "offset[2]", "offset[3]"]
    # several panels: the element axes are set (at 0) for the scan too; DIALS's multi-tile reader asks CBFlib
    # for every axis's setting, which fails for an axis the scan does not list
    element_axes = [a for _, ax, ay, _ in names for a in (ax, ay)] if n > 1 else []
    if n > 1:  # each panel's two axes are one component, hung on the detector's
        axis_rows[0].append("goniometer")
        axis_rows[1].append("detector")
        axis_cols.append("equipment_component")
    t.append(_loop("axis", axis_cols, axis_rows))
    t.append(_items("diffrn_scan", [("id", "SCAN1"), ("frame_id_start", "FRAME1"), ("frame_id_end", "FRAME1"),
                                    ("frames", 1)]))
    t.append(_loop("diffrn_scan_axis", ["scan_id", "axis_id", "angle_start", "angle_range", "angle_increment",
                                        "displacement_start", "displacement_range", "displacement_increment"], [
        ["SCAN1", "GONIOMETER_OMEGA", _fmt(angle), _fmt(osc), _fmt(osc), "0", "0", "0"],
        ["SCAN1", "DETECTOR_Z", "0", "0", "0", _fmt(d), "0", "0"],
    ] + [["SCAN1", a, "0", "0", "0", "0", "0", "0"] for a in element_axes]))
    t.append(_items("diffrn_scan_frame", [("frame_id", "FRAME1"), ("frame_number", index + 1),
                                          ("integration_time", "1.0"), ("scan_id", "SCAN1"),
                                          ("date", _date(index))]))
    t.append(_loop("diffrn_scan_frame_axis", ["frame_id", "axis_id", "angle", "displacement"], [
        ["FRAME1", "GONIOMETER_OMEGA", _fmt(angle), "0"], ["FRAME1", "DETECTOR_Z", "0", _fmt(d)]] +
        [["FRAME1", a, "0", "0"] for a in element_axes]))
    t.append(_loop("array_structure_list", ["array_id", "index", "dimension", "precedence", "direction",
                                            "axis_set_id"], asl))
    t.append(_loop("array_structure_list_axis", ["axis_set_id", "axis_id", "displacement", "displacement_increment"],
                   asla))
    t.append(_loop("array_element_size", ["array_id", "index", "size"], aes))
    t.append(_loop("array_intensities", ["array_id", "binary_id", "linearity", "gain", "gain_esd", "overload",
                                         "undefined_value", "scaling"], ai))
    t.append(_loop("array_structure", ["id", "encoding_type", "compression_type", "byte_order"], ast))
    # bragg_core's own items (the sensor, the fluence, the pedestal) for its reader
    p0 = g.panels[0]
    t.append(_items("bragg_core", [("fluence_photons_per_m2", _fmt(g.fluence_photons_per_m2)),
                                   ("beam_size_mm", _fmt(g.beam_size_mm)),
                                   ("sensor_thickness_um", _fmt(p0.thickness_um)),
                                   ("sensor_material", (p0.material or g.sensor_material or "Si")),
                                   ("count_offset", _fmt(offset)), ("count_scale", _fmt(scale)),
                                   ("polar_vector", "'" + " ".join(_fmt(x) for x in e) + "'"),
                                   ("oscillation", "rotation" if g.osc_deg is not None else "still")]))
    if n == 1:  # items, not a loop: single-array readers (fabio) look for the item _array_data.data
        t.append("_array_data.array_id ARRAY1\r\n_array_data.binary_id 1\r\n_array_data.data\r\n")
        parts = ["".join(t).encode("ascii"), _binary_section(counts[0], 1)]
    else:
        t.append("loop_\r\n_array_data.array_id\r\n_array_data.binary_id\r\n_array_data.data\r\n")
        parts = ["".join(t).encode("ascii")]
        for k, (_, _, _, arr) in enumerate(names):
            parts.append(f"{arr} {k + 1}\r\n".encode("ascii"))
            parts.append(_binary_section(counts[k], k + 1, several=True))
    parts.append(b"\r\n")
    return b"".join(parts)


def write_cbf(path, image, experiment, detector=None, *, index: int = 0, n_images: int = 1,
              rotation: Optional[bool] = None, **kwargs) -> ImageSetGeometry:
    """Write one image as a full CBF, atomically; image ``index`` of ``n_images`` sets its start angle.

    ``kwargs``: ``scale``, ``offset`` (counts = image * scale + offset, rounded), ``gain``,
    ``overload``, ``undefined`` (see :func:`cbf_bytes`).
    """
    g = geometry_from_experiment(experiment, detector, n_images=max(n_images, index + 1), rotation=rotation)
    atomic_write(path, cbf_bytes(image, g, index, name=os.path.splitext(os.path.basename(os.fspath(path)))[0],
                                 **kwargs))
    return g


def write_cbf_series(template: str, images, experiment, detector=None, *, n_images: Optional[int] = None,
                     first: int = 1, **kwargs) -> list:
    """Write each image of ``images`` (an iterable) to ``template`` (``img_####.cbf``), each file atomically.

    Image ``i`` (0-based) is named with number ``first + i`` and starts at
    ``phi_start + i * osc``.  Returns the names written.
    """
    from .names import image_name

    names = []
    images = list(images) if n_images is None else images
    n = len(images) if n_images is None else int(n_images)
    g = geometry_from_experiment(experiment, detector, n_images=max(n, 1), rotation=kwargs.pop("rotation", None))
    for i, im in enumerate(images):
        name = image_name(template, first + i)
        atomic_write(name, cbf_bytes(im, g, i, name=os.path.splitext(os.path.basename(name))[0], **kwargs))
        names.append(name)
    return names


# -- reading -------------------------------------------------------------------------------------------


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
