"""CrystFEL geometry files (``.geom``) in: the panels of a detector.

A geometry file is ``key = value`` lines (``;`` starts a comment); a key
``name/key`` belongs to panel ``name``, a bare key is a default for the
panels that follow it (as CrystFEL reads it).  What is read:

* ``min_fs max_fs min_ss max_ss``: the panel's size in pixels;
* ``corner_x corner_y`` (pixels): where the outer corner of the panel's first
  pixel lies, relative to the direct beam, in the detector plane;
* ``fs ss``: fast and slow directions, as ``+0.0x +1.0y [+0.0z]``;
* ``clen`` (m), ``coffset`` (m): the distance of the panel from the sample;
* ``res`` (pixels per metre): the pixel size is ``1/res``;
* ``adu_per_eV``, ``adu_per_photon``, ``photon_energy`` (eV), ``max_adu``.

Frames: CrystFEL's lab frame has the beam along +z with y up; it is turned
into the reference's (beam along +x) by ``lab = (z, y, -x)`` (the same
proper rotation as DIALS's frame, ``dials = (-x, y, -z)``).

Not supported, with an error naming the file and line: ``clen`` or
``photon_energy`` given as an HDF5 path, panels without a size, corner or
directions, pixel sizes other than ``res``.  Keys that do not change the
geometry (``data``, ``dim*``, masks, bad regions, rigid groups) are read and
ignored; :attr:`GeomContents.ignored` lists them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ._text import read_bytes

__all__ = ["GeomFormatError", "GeomContents", "parse_geom", "read_geom", "read_geom_contents",
           "crystfel_to_lab"]


class GeomFormatError(ValueError):
    """A geometry file that cannot be read; names the file and the line."""


def crystfel_to_lab(v) -> np.ndarray:
    """A vector of CrystFEL's frame (beam +z, y up) in the reference's lab frame (beam +x)."""
    x, y, z = (float(c) for c in v)
    return np.array([z, y, -x])


@dataclass
class GeomContents:
    panels: list
    photon_energy_eV: float | None = None
    adu_per_eV: dict = field(default_factory=dict)      # panel name -> value (when given)
    adu_per_photon: dict = field(default_factory=dict)
    max_adu: dict = field(default_factory=dict)
    ignored: list = field(default_factory=list)          # (line number, key) read and not used


_PANEL_KEYS = {"min_fs", "max_fs", "min_ss", "max_ss", "corner_x", "corner_y", "fs", "ss", "clen", "coffset",
               "res", "adu_per_eV", "adu_per_photon", "max_adu"}
_IGNORED_KEYS = {"data", "mask", "mask_file", "mask_good", "mask_bad", "mask0_data", "mask1_data",
                 "mask2_data", "mask0_file", "mask1_file", "mask2_file", "mask0_goodbits", "mask0_badbits",
                 "no_index", "flag_lessthan", "flag_morethan", "flag_equal", "peak_list", "peak_list_type",
                 "detector_shift_x", "detector_shift_y", "bandwidth", "saturation_map", "saturation_map_file",
                 "dim0", "dim1", "dim2", "dim3", "dim4", "panel_description", "badrow_direction", "wavelength"}
_GLOBAL_ONLY = {"photon_energy", "photon_energy_scale", "beam_bandwidth"}
_VEC = re.compile(r"\s*([+-]?)\s*((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)?\s*([xyz])")


def _vector(text: str, where: str) -> np.ndarray:
    out = np.zeros(3)
    pos, found = 0, False
    s = text.strip()
    while pos < len(s):
        m = _VEC.match(s, pos)
        if m is None or m.end() == pos:
            raise GeomFormatError(f"{where}: cannot read the direction {text!r} (expected e.g. +1.0x -0.0y)")
        coef = float(m.group(2)) if m.group(2) else 1.0
        out["xyz".index(m.group(3))] += -coef if m.group(1) == "-" else coef
        pos = m.end()
        found = True
    if not found or not np.any(out):
        raise GeomFormatError(f"{where}: the direction {text!r} is zero")
    return out


def _number(text: str, where: str, key: str) -> float:
    try:
        x = float(text)
    except ValueError:
        if key in ("clen", "coffset", "photon_energy"):
            raise GeomFormatError(f"{where}: {key} = {text} is an HDF5 path or an expression; "
                                  f"only a number is supported ({'metres' if key != 'photon_energy' else 'eV'})"
                                  ) from None
        raise GeomFormatError(f"{where}: {key} must be a number, got {text!r}") from None
    if not math.isfinite(x):
        raise GeomFormatError(f"{where}: {key} must be finite, got {text!r}")
    return x


def parse_geom(text: str, path: str = "<geom>") -> GeomContents:
    """The panels (lab frame, mm) and detector values of a CrystFEL geometry file's text."""
    from ..panels import Panel, PanelError

    defaults: dict = {}
    panels: dict = {}            # name -> {key: (value, line)}
    order: list = []
    out = GeomContents(panels=[])
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        where = f"{path}, line {n}"
        if "=" not in line:
            raise GeomFormatError(f"{where}: expected 'key = value', got {raw.strip()!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        if "/" in key:
            name, _, k = key.partition("/")
            name, k = name.strip(), k.strip()
            if name.startswith("bad") or name.startswith("rigid_group"):
                out.ignored.append((n, key))
                continue
            if k in _IGNORED_KEYS:
                out.ignored.append((n, key))
                continue
            if k not in _PANEL_KEYS:
                raise GeomFormatError(f"{where}: panel key {k!r} is not supported")
            if k not in ("fs", "ss"):
                _number(value, where, k)
            if name not in panels:
                panels[name] = dict(defaults)
                order.append(name)
            panels[name][k] = (value, n)
        else:
            k = key
            if k.startswith("rigid_group") or k.startswith("bad"):
                out.ignored.append((n, key))
            elif k in _IGNORED_KEYS:
                out.ignored.append((n, key))
            elif k == "photon_energy":
                out.photon_energy_eV = _number(value, where, k)
                if not out.photon_energy_eV > 0:
                    raise GeomFormatError(f"{where}: photon_energy must be positive")
            elif k in _GLOBAL_ONLY:
                out.ignored.append((n, key))
            elif k in _PANEL_KEYS:
                if k not in ("fs", "ss"):
                    _number(value, where, k)
                defaults[k] = (value, n)  # a default for the panels that follow
            else:
                raise GeomFormatError(f"{where}: key {k!r} is not supported")
    if not order:
        raise GeomFormatError(f"{path}: no panels (lines such as 'p0/min_fs = 0')")
    for name in order:
        d = panels[name]

        def need(k, name=name, d=d):
            if k not in d:
                raise GeomFormatError(f"{path}: panel {name}: {k} is missing")
            return d[k]

        def num(k, name=name):
            v, n = need(k)
            return _number(v, f"{path}, line {n}", f"{name}/{k}")

        ints = {}
        for k in ("min_fs", "max_fs", "min_ss", "max_ss"):
            x = num(k)
            if x != int(x) or x < 0:
                v, n = need(k)
                raise GeomFormatError(f"{path}, line {n}: {name}/{k} must be a non-negative integer, got {v}")
            ints[k] = int(x)
        nf, ns = ints["max_fs"] - ints["min_fs"] + 1, ints["max_ss"] - ints["min_ss"] + 1
        if nf < 1 or ns < 1:
            raise GeomFormatError(f"{path}: panel {name}: max_fs/max_ss below min_fs/min_ss")
        res = num("res")
        if not res > 0:
            v, n = need("res")
            raise GeomFormatError(f"{path}, line {n}: {name}/res must be positive, got {v}")
        clen = num("clen")
        coffset = num("coffset") if "coffset" in d else 0.0
        fv, fl = need("fs")
        sv, sl = need("ss")
        fs = _vector(fv, f"{path}, line {fl}")
        ss = _vector(sv, f"{path}, line {sl}")
        px_m = 1.0 / res
        for vec, (v, ln) in ((fs, (fv, fl)), (ss, (sv, sl))):
            if abs(np.linalg.norm(vec) - 1.0) > 1e-3:
                raise GeomFormatError(f"{path}, line {ln}: {name}: direction {v!r} is not of unit length "
                                      "(pixels of another size than 1/res are not supported)")
        corner = np.array([num("corner_x") * px_m, num("corner_y") * px_m, clen + coffset])  # metres
        for k, store in (("adu_per_eV", out.adu_per_eV), ("adu_per_photon", out.adu_per_photon),
                         ("max_adu", out.max_adu)):
            if k in d:
                store[name] = num(k)
        try:
            out.panels.append(Panel(
                fast_axis=tuple(crystfel_to_lab(fs / np.linalg.norm(fs))),
                slow_axis=tuple(crystfel_to_lab(ss / np.linalg.norm(ss))),
                origin_mm=tuple(crystfel_to_lab(corner * 1000.0)), fpixels=nf, spixels=ns,
                pixel_size_mm=px_m * 1000.0, name=name))
        except PanelError as exc:
            raise GeomFormatError(f"{path}: panel {name}: {exc}") from None
    return out


def read_geom_contents(path: str) -> GeomContents:
    raw = read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GeomFormatError(f"{path}: not a text file") from None
    return parse_geom(text, path)


def read_geom(path: str, base=None):
    """The panels of a geometry file as a MultiPanelDetector sharing ``base``'s beam and sampling."""
    from ..experiment import Detector
    from ..panels import MultiPanelDetector, PanelError, panel_detector

    c = read_geom_contents(path)
    mp = MultiPanelDetector(panels=tuple(c.panels), base=base if base is not None else Detector())
    for p in mp.panels:  # every panel must be placeable against the beam
        try:
            panel_detector(p, mp.base)
        except PanelError as exc:
            raise GeomFormatError(f"{path}: panel {p.name}: {exc}") from None
    return mp
