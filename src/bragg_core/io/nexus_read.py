"""Reading NeXus NXmx files: the layout :mod:`bragg_core.io.nexus` writes (described there), back into images
and an :class:`~bragg_core.io._imageset.ImageSetGeometry`.

Lengths, angles and wavelengths are converted from the units the file
declares; the panels are the ``NXdetector_module`` groups (ours first, in
panel order), each placed by the chain of translations its pixel directions
depend on.  A file that cannot be read raises :class:`NexusFormatError`,
naming the file and the field.  Everything here is importable from
:mod:`bragg_core.io.nexus` too.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ._imageset import LAB_TO_MCSTAS, ImageSetGeometry, experiment_from_geometry
from ._nexus_h5 import _h5py

__all__ = ["NexusFormatError", "read_nexus", "read_nexus_frame"]


class NexusFormatError(ValueError):
    """A NeXus file that cannot be read as NXmx; names the file and the field."""


def _str(ds) -> str:
    v = ds[()] if hasattr(ds, "shape") else ds
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode() if isinstance(v, bytes) else str(v)


class _Reader:
    def __init__(self, path, f):
        self.path, self.f = path, f

    def fail(self, field, problem):
        raise NexusFormatError(f"{self.path}: {field}: {problem}")

    def get(self, where):
        if where not in self.f:
            self.fail(where, "missing")
        return self.f[where]

    def num(self, where, unit_to=None):
        ds = self.get(where)
        v = np.asarray(ds[()], dtype=np.float64)
        if unit_to:
            v = v * _scale(ds.attrs.get("units", unit_to), unit_to, self, where)
        return v


_LENGTH_MM = {"mm": 1.0, "millimeter": 1.0, "millimetre": 1.0, "m": 1e3, "meter": 1e3, "metre": 1e3,
              "um": 1e-3, "micron": 1e-3, "micrometer": 1e-3, "cm": 10.0, "nm": 1e-6}
_ANGLE_DEG = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "rad": 180.0 / math.pi, "radian": 180.0 / math.pi,
              "radians": 180.0 / math.pi}
_WAVE_A = {"angstrom": 1.0, "a": 1.0, "nm": 10.0, "m": 1e10, "pm": 0.01}


def _scale(units, to, rd, where):
    u = units.decode() if isinstance(units, bytes) else str(units)
    u = u.strip().lower()
    table = {"mm": _LENGTH_MM, "deg": _ANGLE_DEG, "angstrom": _WAVE_A}[to]
    if u not in table:
        rd.fail(where, f"unknown units {u!r}")
    return table[u]


def _axis_vector(rd, ds, where):
    v = ds.attrs.get("vector")
    if v is None:
        rd.fail(where, "no vector attribute")
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
        rd.fail(where + "@vector", f"expected a non-zero 3-vector, got {v!r}")
    return v


def _translation_chain(rd, ds):
    """Cumulative position (file frame, mm) of the chain starting at ``ds`` (translations only)."""
    total = np.zeros(3)
    seen = 0
    while ds is not None:
        where = ds.name
        if seen > 32:
            rd.fail(where, "depends_on chain too long")
        kind = _str(ds.attrs.get("transformation_type", b""))
        if kind != "translation":
            rd.fail(where, f"only translations are read in a detector chain, got {kind!r}")
        val = float(np.asarray(ds[()], dtype=np.float64).reshape(-1)[0]) * \
            _scale(ds.attrs.get("units", "mm"), "mm", rd, where)
        total = total + val * _axis_vector(rd, ds, where) / np.linalg.norm(_axis_vector(rd, ds, where))
        off = ds.attrs.get("offset")
        if off is not None:
            total = total + np.asarray(off, dtype=np.float64) * \
                _scale(ds.attrs.get("offset_units", ds.attrs.get("units", "mm")), "mm", rd, where)
        dep = _str(ds.attrs.get("depends_on", b"."))
        ds = None if dep in ("", ".") else ds.parent[dep]
        seen += 1
    return total


def read_nexus(path, base=None, frames=None):
    """Images and geometry of an NXmx file: ``(images, geometry)``.

    ``images`` is ``(n, slow, fast)`` for one panel, ``(n, panel, slow,
    fast)`` for panels of one size, else a list of ``(n, slow, fast)`` arrays
    (one per panel); float32 or the stored integer type.  ``frames`` (an
    index, slice or list) reads only those images.  ``geometry`` is an
    :class:`~bragg_core.io._imageset.ImageSetGeometry` whose ``experiment``
    is an :class:`~bragg_core.experiment.Experiment` (first panel; ``base``
    supplies what the file does not hold: the crystal, sampling options).
    """
    h5py = _h5py()
    try:
        import hdf5plugin  # noqa: F401  (registers the bitshuffle-LZ4 filter for reading)
    except ImportError:
        pass
    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise NexusFormatError(f"{path}: not an HDF5 file ({exc})") from None
    with f:
        rd = _Reader(path, f)
        geom = _read_geometry(rd, base)
        data = rd.get("/entry/data/data")
        if data.ndim != 3:
            rd.fail("/entry/data/data", f"expected (images, slow, fast), got {data.ndim} dimensions")
        sel = slice(None) if frames is None else frames
        raw = data[sel] if not isinstance(sel, (list, tuple)) else data[np.asarray(sel, dtype=np.int64)]
        if raw.ndim == 2:
            raw = raw[None]
        mods = rd._modules
        panels = [raw[:, o[0]:o[0] + s[0], o[1]:o[1] + s[1]] for o, s in mods]
    if len(panels) == 1:
        return panels[0], geom
    if len({p.shape for p in panels}) == 1:
        return np.stack(panels, axis=1), geom
    return panels, geom


def _module_order(name: str):
    """Ours first in panel order (module, module_1, module_2, ...), then any others by name."""
    if name == "module":
        return (0, 0, "")
    head, _, tail = name.rpartition("_")
    if head == "module" and tail.isdigit():
        return (0, int(tail), "")
    return (1, 0, name)


def read_nexus_frame(path, index: int, base=None):
    """One image of an NXmx file (only that chunk is read), and the geometry."""
    images, geom = read_nexus(path, base=base, frames=int(index))
    if isinstance(images, list):
        return [p[0] for p in images], geom
    return images[0], geom


def _read_geometry(rd: _Reader, base) -> ImageSetGeometry:
    from ..panels import MultiPanelDetector, Panel, PanelError

    f = rd.f
    defn = _str(rd.get("/entry/definition"))
    if defn != "NXmx":
        rd.fail("/entry/definition", f"expected 'NXmx', got {defn!r}")
    M = LAB_TO_MCSTAS  # file -> lab: M.T
    lab = lambda v: M.T @ np.asarray(v, dtype=np.float64)  # noqa: E731
    wl = rd.num("/entry/instrument/beam/incident_wavelength", "angstrom")
    wls = None
    if wl.ndim:
        wls = wl.reshape(-1)
        wl = wls[0]
    wl = float(wl)
    if not wl > 0:
        rd.fail("/entry/instrument/beam/incident_wavelength", f"must be positive, got {wl:g}")
    det = "/entry/instrument/detector"
    count_time = float(rd.num(f"{det}/count_time")) if f"{det}/count_time" in f else 1.0
    flux = float(rd.num("/entry/instrument/beam/flux")) if "/entry/instrument/beam/flux" in f else 0.0
    size = rd.num("/entry/instrument/beam/incident_beam_size", "mm").reshape(-1)[0] \
        if "/entry/instrument/beam/incident_beam_size" in f else 0.1
    kahn, polar = 0.0, lab([1.0, 0.0, 0.0])
    sp = "/entry/instrument/beam/incident_polarisation_stokes"
    if sp in f:
        S = np.asarray(f[sp][()], dtype=np.float64).reshape(-1)
        if S.shape == (4,) and S[0] > 0:
            kahn = float(math.hypot(S[1], S[2]) / S[0])
            psi = 0.5 * math.atan2(S[2], S[1])
            e = f[sp].attrs.get("bragg_core_e_vector")
            polar = lab(e) if e is not None else lab([math.cos(psi), math.sin(psi), 0.0])
    spec = weights = None
    if "/entry/instrument/beam/incident_wavelength_spectrum" in f:
        spec = rd.num("/entry/instrument/beam/incident_wavelength_spectrum", "angstrom").reshape(-1)
        wp = "/entry/instrument/beam/incident_wavelength_spectrum_weights"
        weights = np.asarray(f[wp][()], dtype=np.float64).reshape(-1) if wp in f else np.full(spec.size, 1 / spec.size)
    material = _str(f[f"{det}/sensor_material"]) if f"{det}/sensor_material" in f else ""
    thick_um = float(rd.num(f"{det}/sensor_thickness", "mm")) * 1e3 if f"{det}/sensor_thickness" in f else 0.0
    if f"{det}/sensor_thickness" in f and f[f"{det}/sensor_thickness"].attrs.get("bragg_core_no_absorption"):
        thick_um = 0.0
    sat = float(rd.num(f"{det}/saturation_value")) if f"{det}/saturation_value" in f else None
    under = float(rd.num(f"{det}/underload_value")) if f"{det}/underload_value" in f else None
    modules = sorted((k for k in f[det] if _str(f[det][k].attrs.get("NX_class", b"")) == "NXdetector_module"),
                     key=_module_order)
    if not modules:
        rd.fail(det, "no NXdetector_module")
    panels, mods = [], []
    for k in modules:
        m = f[det][k]
        w = m.name
        origin = rd.get(f"{w}/data_origin")[()].astype(np.int64).reshape(-1)
        dsize = rd.get(f"{w}/data_size")[()].astype(np.int64).reshape(-1)
        if origin.shape != (2,) or dsize.shape != (2,) or np.any(dsize < 1) or np.any(origin < 0):
            rd.fail(w, f"data_origin/data_size must be 2 non-negative/positive integers, got {origin}, {dsize}")
        fd, sd = rd.get(f"{w}/fast_pixel_direction"), rd.get(f"{w}/slow_pixel_direction")
        pxf = float(np.asarray(fd[()]).reshape(-1)[0]) * _scale(fd.attrs.get("units", "mm"), "mm", rd, fd.name)
        pxs = float(np.asarray(sd[()]).reshape(-1)[0]) * _scale(sd.attrs.get("units", "mm"), "mm", rd, sd.name)
        if not (pxf > 0 and abs(pxf - pxs) <= 1e-9 * pxf):
            rd.fail(w, f"pixels must be square and positive, got {pxf:g} x {pxs:g} mm")
        dep = _str(fd.attrs.get("depends_on", b"."))
        corner = _translation_chain(rd, fd.parent[dep]) if dep not in ("", ".") else np.zeros(3)
        fv = _axis_vector(rd, fd, fd.name)
        sv = _axis_vector(rd, sd, sd.name)
        name = m.attrs.get("bragg_core_name", "")
        name = name.decode() if isinstance(name, bytes) else str(name)
        try:
            panels.append(Panel(fast_axis=tuple(lab(fv / np.linalg.norm(fv))),
                                slow_axis=tuple(lab(sv / np.linalg.norm(sv))), origin_mm=tuple(lab(corner)),
                                fpixels=int(dsize[1]), spixels=int(dsize[0]), pixel_size_mm=pxf,
                                thickness_um=thick_um, material=material, name=name))
        except PanelError as exc:
            rd.fail(w, str(exc))
        mods.append((origin, dsize))
    rd._modules = mods
    # the goniometer
    st = "/entry/sample/transformations/omega"
    if st in f:
        om = f[st]
        angles = np.asarray(om[()], dtype=np.float64).reshape(-1) * _scale(om.attrs.get("units", "deg"), "deg",
                                                                           rd, st)
        spindle = lab(_axis_vector(rd, om, st))
    else:
        angles = np.zeros(f["/entry/data/data"].shape[0])
        spindle = lab([1.0, 0.0, 0.0])
    dep = _str(f["/entry/sample/depends_on"]) if "/entry/sample/depends_on" in f else "."
    osc = None
    if dep not in ("", "."):
        inc = "/entry/sample/transformations/omega_increment_set"
        if inc in f:
            osc = float(rd.num(inc, "deg").reshape(-1)[0])
        elif len(angles) > 1:
            osc = float(angles[1] - angles[0])
        else:
            osc = 0.0
    beam_lab = lab([0.0, 0.0, 1.0])
    geom = ImageSetGeometry(
        experiment=None, detector=MultiPanelDetector(panels=tuple(panels)), beam=beam_lab,
        polar=polar / np.linalg.norm(polar), spindle=spindle / np.linalg.norm(spindle), wavelength_A=wl,
        fluence_photons_per_m2=flux * count_time, beam_size_mm=float(size), kahn_factor=kahn,
        angles_deg=angles, osc_deg=osc, wavelengths_A=wls, saturation_value=sat, underload_value=under,
        sensor_material=material, sensor_thickness_um=thick_um, spectrum_A=spec, spectrum_weights=weights)
    try:
        experiment_from_geometry(geom, base)
    except ValueError as exc:
        rd.fail(det, str(exc))
    return geom

