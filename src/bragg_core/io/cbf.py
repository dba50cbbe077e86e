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

The byte-offset code is in :mod:`bragg_core.io._cbf_codec`, reading
(:func:`read_cbf`, :func:`read_cbf_series`, :class:`CBFFormatError`) in
:mod:`bragg_core.io.cbf_read`; both are importable from here.
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

from ._cbf_codec import _MARK, byte_offset_decode, byte_offset_encode
from ._imageset import ImageSetGeometry, beam_alignment, geometry_from_experiment
from .atomic import atomic_write
from .cbf_read import CBFFormatError, read_cbf, read_cbf_series
from .dials_expt import LAB_TO_DIALS

__all__ = ["CBFFormatError", "cbf_bytes", "write_cbf", "write_cbf_series", "read_cbf", "read_cbf_series",
           "byte_offset_encode", "byte_offset_decode"]

_PAD = 4095


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
