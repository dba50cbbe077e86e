"""NeXus NXmx (HDF5) files: one image, a rotation series or a stack of shots, with their geometry.

Layout (McStas frame, mm, degrees, Angstrom; see :mod:`bragg_core.io._imageset`)::

    /entry                      NXentry, definition "NXmx", start_time, end_time
      data/data                 (images, slow, fast) float32 or integer, one image per chunk
      instrument                NXinstrument
        source                  NXsource
        beam                    NXbeam: incident_wavelength (scalar or one per image), flux and
                                total_flux (fluence per second of count_time), incident_beam_size,
                                incident_polarisation_stokes
        detector                NXdetector: data (link), depends_on, distance, beam_center_x/y,
                                sensor_material, sensor_thickness, saturation_value,
                                underload_value, count_time
          transformations/det_z translation along the beam to the first panel's plane
          module, module_1, ...  NXdetector_module per panel: data_origin, data_size,
                                module_offset (det_z -> corner of pixel (0, 0)),
                                fast_pixel_direction, slow_pixel_direction (value: pixel size)
      sample                    NXsample: depends_on (omega, or "." for stills)
        transformations/omega   rotation about the spindle: each image's start angle, with
                                omega_end and omega_increment_set for a rotation

Panels are stacked along the slow axis of the data (panel ``p`` at rows
``sum(spixels[:p])`` onwards; narrower panels padded with zeros at the fast
end), each an ``NXdetector_module`` whose ``data_origin``/``data_size``
select it, which is how DIALS reads multi-module files.

Data are compressed with bitshuffle-LZ4 through ``hdf5plugin`` (as EIGER
files are), or gzip where ``hdf5plugin`` is missing or ``compression="gzip"``
is asked for (readable by any HDF5 installation).

:class:`NexusWriter` appends image by image, so a long series is never held
in memory; the file is written under a hidden temporary name next to the
destination and renamed over it by :meth:`NexusWriter.close`; an error or
:meth:`NexusWriter.abort` removes it, leaving the destination as it was.
"""

from __future__ import annotations

import datetime
import errno
import math
import os
import secrets
from typing import Any, Optional

import numpy as np

from ._imageset import LAB_TO_MCSTAS, ImageSetGeometry, experiment_from_geometry, geometry_from_experiment
from .atomic import OutputError, OutputSet, _plan, _reason, atomic_write

__all__ = ["NexusWriter", "NexusFormatError", "write_nexus", "read_nexus", "read_nexus_frame",
           "nexus_available", "NEXUS_MISSING"]

NEXUS_MISSING = "NeXus output needs h5py (pip install 'bragg_core[nexus]')"


_NO_SENSOR_MM = 1e-6


class NexusFormatError(ValueError):
    """A NeXus file that cannot be read as NXmx; names the file and the field."""


def nexus_available() -> bool:
    try:
        import h5py  # noqa: F401
    except ImportError:
        return False
    return True


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(NEXUS_MISSING) from None
    return h5py


def _compression(kind: Optional[str]):
    """h5py dataset keyword arguments for ``kind`` ('bslz4', 'gzip', 'none' or None for the best available)."""
    if kind in (None, "bslz4", "bitshuffle"):
        try:
            import hdf5plugin

            return "bslz4", dict(hdf5plugin.Bitshuffle(cname="lz4"))
        except ImportError:
            if kind is not None:
                raise ImportError("bitshuffle-LZ4 compression needs hdf5plugin "
                                  "(pip install 'bragg_core[nexus]'); compression='gzip' needs nothing") from None
            kind = "gzip"
    if kind == "gzip":
        return "gzip", {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if kind == "none":
        return "none", {}
    raise ValueError(f"compression must be 'bslz4', 'gzip' or 'none', got {kind!r}")


def _host(image) -> np.ndarray:
    from .._backend import to_numpy

    return np.asarray(to_numpy(image))


def _str(ds) -> str:
    v = ds[()] if hasattr(ds, "shape") else ds
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode() if isinstance(v, bytes) else str(v)


class NexusWriter:
    """Write images to an NXmx file one at a time.

    Usage::

        with NexusWriter("run.nxs", experiment, detector=None, n_images=20) as w:
            for sim in simulate_series(experiment, 20):
                w.append(sim.image)
        # closed and renamed into place on leaving the block without an error

    ``detector``: a :class:`~bragg_core.panels.MultiPanelDetector` or a list
    of panels (default: the experiment's detector as one panel).
    ``rotation``: images are a rotation series (default: the crystal has a
    non-zero ``osc_deg``); otherwise they are stills (shots), each at
    ``phi_start`` unless :meth:`append` is given an angle.  ``dtype``:
    ``float32`` (default) or an integer type (values rounded and clipped).
    ``compression``: ``"bslz4"``, ``"gzip"``, ``"none"`` or None (bitshuffle-LZ4
    when hdf5plugin is installed, else gzip).  ``n_images``: expected count
    (a hint for the angles; the file holds as many images as are appended).
    """

    def __init__(self, path, experiment, detector=None, *, n_images: Optional[int] = None,
                 rotation: Optional[bool] = None, dtype: Any = "float32", compression: Optional[str] = None,
                 saturation_value: Optional[float] = None, underload_value: Optional[float] = None,
                 sensor_material: str = "", count_time_s: float = 1.0):
        h5py = _h5py()
        self.path = os.fspath(path)
        self.geometry: ImageSetGeometry = geometry_from_experiment(
            experiment, detector, n_images=max(int(n_images or 1), 1), rotation=rotation,
            saturation_value=saturation_value, underload_value=underload_value, sensor_material=sensor_material)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind not in "fiu":
            raise ValueError(f"dtype must be a float or integer type, got {self.dtype}")
        self.compression, self._ckw = _compression(compression)
        self.count_time_s = float(count_time_s)
        self._angles: list[float] = []
        self._wavelengths: list[float] = []
        self._sizes = [(int(p.spixels), int(p.fpixels)) for p in self.geometry.panels]
        self._rows = np.cumsum([0] + [s for s, _ in self._sizes])
        self._width = max(f for _, f in self._sizes)
        self._A = LAB_TO_MCSTAS @ self.geometry.file_frame()
        self._out = OutputSet()
        self._closed = False
        self._file = None
        kind, target, st = _plan(self.path)  # OutputError now for a missing directory or a directory
        self._kind, self._target, self._stat = kind, target, st
        where = os.path.dirname(target) or "."
        self._tmp = os.path.join(where, f".{os.path.basename(target)[:64]}.{secrets.token_hex(4)}.tmp")
        self._out._track(self._tmp)
        try:
            self._file = h5py.File(self._tmp, "w-")
            self._layout()
        except BaseException as exc:
            self._fail(exc, None)
            raise

    def _fail(self, exc: BaseException, default_errno) -> None:
        """Remove the partial file; an OS error is raised as an :class:`OutputError` naming the file (the
        caller re-raises anything else)."""
        self.abort()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(self.path, _reason(exc) if exc.errno else str(exc), exc.errno or default_errno) \
                from None

    # -- layout ---------------------------------------------------------------------------------------

    def _vec(self, v) -> np.ndarray:
        return self._A @ np.asarray(v, dtype=np.float64)

    def _layout(self) -> None:
        g = self.geometry
        f = self._file
        f.attrs["NX_class"] = "NXroot"
        f.attrs["default"] = "entry"
        f.attrs["creator"] = "bragg_core"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        entry["definition"] = "NXmx"
        entry["start_time"] = _now()
        nxdata = entry.create_group("data")
        nxdata.attrs["NX_class"] = "NXdata"
        nxdata.attrs["signal"] = "data"
        rows = int(self._rows[-1])
        self._data = nxdata.create_dataset(
            "data", shape=(0, rows, self._width), maxshape=(None, rows, self._width), dtype=self.dtype,
            chunks=(1, rows, self._width), **self._ckw)
        self._data.attrs["units"] = "counts"
        inst = entry.create_group("instrument")
        inst.attrs["NX_class"] = "NXinstrument"
        inst["name"] = "bragg_core simulation"
        src = inst.create_group("source")
        src.attrs["NX_class"] = "NXsource"
        src["name"] = "simulated"
        beam = inst.create_group("beam")
        beam.attrs["NX_class"] = "NXbeam"
        self._beam = beam
        if g.spectrum_A is not None:
            # the spectrum the sources sample; incident_wavelength itself stays the nominal wavelength, which
            # is what DIALS reads (it takes an array there as one wavelength per image)
            beam["incident_wavelength_spectrum"] = g.spectrum_A
            beam["incident_wavelength_spectrum"].attrs["units"] = "angstrom"
            beam["incident_wavelength_spectrum_weights"] = g.spectrum_weights
        beam["incident_beam_size"] = np.array([g.beam_size_mm, g.beam_size_mm])
        beam["incident_beam_size"].attrs["units"] = "mm"
        fl = g.fluence_photons_per_m2 / self.count_time_s
        beam["flux"] = fl
        beam["flux"].attrs["units"] = "1/s/m**2"
        beam["total_flux"] = fl * (g.beam_size_mm * 1e-3) ** 2
        beam["total_flux"].attrs["units"] = "1/s"
        e = self._vec(g.polar)
        psi = math.atan2(e[1], e[0])
        K = g.kahn_factor
        stokes = beam.create_dataset("incident_polarisation_stokes",
                                     data=np.array([1.0, K * math.cos(2 * psi), K * math.sin(2 * psi), 0.0]))
        stokes.attrs["bragg_core_e_vector"] = e  # the E-vector itself (its angle is lost when K = 0)

        det = inst.create_group("detector")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = self._data  # hard link: the same dataset
        det["depends_on"] = "/entry/instrument/detector/transformations/det_z"
        det["description"] = "simulated pixel array detector"
        det["type"] = "pixel"
        det["sensor_material"] = g.sensor_material
        # no sensor absorption simulated (thickness 0): DIALS refuses a zero thickness, so a thickness
        # whose parallax is far below a pixel (1 nm) is written, marked so that our reader gives back 0
        thick = g.sensor_thickness_um * 1e-3
        det["sensor_thickness"] = thick if thick > 0 else _NO_SENSOR_MM
        det["sensor_thickness"].attrs["units"] = "mm"
        if not thick > 0:
            det["sensor_thickness"].attrs["bragg_core_no_absorption"] = 1
        d0 = g.beam_distance_mm(0)
        det["distance"] = d0
        det["distance"].attrs["units"] = "mm"
        bx, by = g.beam_centre_px(0)
        det["beam_center_x"] = bx
        det["beam_center_x"].attrs["units"] = "pixel"
        det["beam_center_y"] = by
        det["beam_center_y"].attrs["units"] = "pixel"
        det["count_time"] = self.count_time_s
        det["count_time"].attrs["units"] = "s"
        det["frame_time"] = self.count_time_s
        det["frame_time"].attrs["units"] = "s"
        if g.saturation_value is not None:
            det["saturation_value"] = _int_or_float(g.saturation_value)
        elif self.dtype.kind in "iu":
            det["saturation_value"] = int(np.iinfo(self.dtype).max)
        if g.underload_value is not None:
            det["underload_value"] = _int_or_float(g.underload_value)
        tr = det.create_group("transformations")
        tr.attrs["NX_class"] = "NXtransformations"
        z = tr.create_dataset("det_z", data=np.array([d0]))
        _axis(z, "translation", "mm", self._vec(g.beam), ".")
        for i, p in enumerate(g.panels):
            fvec, svec, origin = g.panel_vectors(i)
            m = det.create_group("module" if i == 0 else f"module_{i}")
            m.attrs["NX_class"] = "NXdetector_module"
            if p.name:
                m.attrs["bragg_core_name"] = p.name
            m["data_origin"] = np.array([int(self._rows[i]), 0], dtype=np.int64)
            m["data_size"] = np.array(self._sizes[i], dtype=np.int64)
            m["data_stride"] = np.array([1, 1], dtype=np.int64)
            r = self._vec(origin) - d0 * self._vec(g.beam)
            rn = float(np.linalg.norm(r))
            off = m.create_dataset("module_offset", data=np.array([rn]))
            _axis(off, "translation", "mm", r / rn if rn > 0 else np.array([1.0, 0.0, 0.0]),
                  "/entry/instrument/detector/transformations/det_z")
            px = float(p.pixel_size_mm)
            mo = f"{m.name}/module_offset"
            fd = m.create_dataset("fast_pixel_direction", data=np.array([px]))
            _axis(fd, "translation", "mm", self._vec(fvec), mo)
            sd = m.create_dataset("slow_pixel_direction", data=np.array([px]))
            _axis(sd, "translation", "mm", self._vec(svec), mo)
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        sample["name"] = "simulated crystal"
        sample["depends_on"] = "/entry/sample/transformations/omega" if g.osc_deg is not None else "."
        sample["beam"] = beam  # NXmx places the beam under the sample too: the same group
        st = sample.create_group("transformations")
        st.attrs["NX_class"] = "NXtransformations"
        self._sample_tr = st
        self._omega = st.create_dataset("omega", shape=(0,), maxshape=(None,), dtype="f8", chunks=(1024,))
        _axis(self._omega, "rotation", "deg", self._vec(g.spindle), ".")
        self._file.flush()

    # -- appending ------------------------------------------------------------------------------------

    def append(self, image, *, angle_deg: Optional[float] = None, wavelength_A: Optional[float] = None) -> None:
        """Add one image: ``(slow, fast)`` for one panel, ``(panel, slow, fast)`` or a list of panel arrays.

        ``angle_deg``: this image's start angle (default: the series' next
        angle, or ``phi_start`` for stills); ``wavelength_A``: this shot's
        wavelength (default: the beam's).  Any array namespace is accepted.
        """
        if self._closed:
            raise RuntimeError(f"{self.path}: the NeXus writer is closed")
        try:
            frame = self._frame(image)
            i = len(self._angles)
            g = self.geometry
            if angle_deg is None:
                angle_deg = (float(g.angles_deg[0]) + i * g.osc_deg) if g.osc_deg is not None \
                    else float(g.angles_deg[0])
            self._data.resize(i + 1, axis=0)
            self._data[i] = frame
            self._omega.resize(i + 1, axis=0)
            self._omega[i] = float(angle_deg)
            self._angles.append(float(angle_deg))
            self._wavelengths.append(float(wavelength_A) if wavelength_A is not None else g.wavelength_A)
        except (ValueError, TypeError):
            raise
        except BaseException as exc:
            self._fail(exc, errno.EIO)
            raise

    def _frame(self, image) -> np.ndarray:
        n = len(self._sizes)
        if isinstance(image, (list, tuple)):
            panels = [_host(im) for im in image]
        else:
            a = _host(image)
            panels = [a] if a.ndim == 2 and n == 1 else [a[k] for k in range(a.shape[0])] if a.ndim == 3 else None
            if panels is None:
                raise ValueError(f"{self.path}: an image must be (slow, fast) or (panel, slow, fast), "
                                 f"got shape {a.shape}")
        if len(panels) != n:
            raise ValueError(f"{self.path}: the detector has {n} panels, the image {len(panels)}")
        frame = np.zeros((int(self._rows[-1]), self._width), dtype=self.dtype)
        for k, (a, (s, f)) in enumerate(zip(panels, self._sizes)):
            if a.shape != (s, f):
                raise ValueError(f"{self.path}: panel {k} is {s} x {f} pixels (slow x fast), the image {a.shape}")
            frame[self._rows[k]:self._rows[k] + s, :f] = _cast(a, self.dtype)
        return frame

    # -- finishing ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish the file and move it over the destination (nothing happens if already closed)."""
        if self._closed:
            return
        try:
            self._finish_metadata()
            self._file.close()
            self._file = None
            if self._kind == "replace":
                mode = (self._stat.st_mode & 0o7777) if self._stat is not None else None
                if mode is not None:
                    os.chmod(self._tmp, mode)
                os.replace(self._tmp, self._target)
                self._out._forget(self._tmp)
            else:  # a symbolic link's target, a device or a hard-linked file: written through
                with open(self._tmp, "rb") as fh:
                    atomic_write(self.path, fh.read())
                os.unlink(self._tmp)
                self._out._forget(self._tmp)
        except BaseException as exc:
            self._fail(exc, errno.EIO)
            raise
        self._closed = True
        self._out._finish()

    commit = close

    def _finish_metadata(self) -> None:
        g = self.geometry
        wl = np.asarray(self._wavelengths or [g.wavelength_A])
        if np.all(wl == wl[0]):
            self._beam["incident_wavelength"] = float(wl[0])
        else:
            self._beam["incident_wavelength"] = wl
        self._beam["incident_wavelength"].attrs["units"] = "angstrom"
        if g.osc_deg is not None:
            a = np.asarray(self._angles, dtype=np.float64)
            self._sample_tr["omega_end"] = a + g.osc_deg
            self._sample_tr["omega_end"].attrs["units"] = "deg"
            self._sample_tr["omega_increment_set"] = float(g.osc_deg)
            self._sample_tr["omega_increment_set"].attrs["units"] = "deg"
        self._file["entry"]["end_time"] = _now()

    def abort(self) -> None:
        """Stop and remove the temporary file; the destination is left as it was."""
        if self._closed:
            return
        self._closed = True
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - a broken file is removed anyway
                pass
            self._file = None
        try:
            os.unlink(self._tmp)
        except OSError:
            pass
        self._out._forget(self._tmp)
        self._out._finish()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def __len__(self) -> int:
        return len(self._angles)


def _int_or_float(v):
    v = float(v)
    return int(v) if v.is_integer() else v


def _cast(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "f":
        return a.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    r = np.rint(np.nan_to_num(a.astype(np.float64), nan=0.0))
    return np.clip(r, info.min, info.max).astype(dtype)


def _axis(ds, kind: str, units: str, vector, depends_on: str) -> None:
    ds.attrs["transformation_type"] = kind
    ds.attrs["units"] = units
    ds.attrs["vector"] = np.asarray(vector, dtype=np.float64)
    ds.attrs["offset"] = np.zeros(3)
    ds.attrs["offset_units"] = "mm"
    ds.attrs["depends_on"] = depends_on


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_nexus(path, images, experiment, detector=None, **kwargs) -> ImageSetGeometry:
    """Write ``images`` (one image, or an iterable/array of images) to ``path`` as NXmx, atomically.

    An array of shape ``(n, slow, fast)`` (one panel) or ``(n, panel, slow,
    fast)`` is ``n`` images; a ``(slow, fast)`` array is one image; a list is
    one image per element.  Keyword arguments as :class:`NexusWriter`.
    """
    if hasattr(images, "shape"):
        a = images
        n_panels = 1 if detector is None else len(getattr(detector, "panels", detector))
        single = a.ndim == 2 or (a.ndim == 3 and n_panels > 1)
        images = [a] if single else [a[i] for i in range(a.shape[0])]
    images = list(images)
    kwargs.setdefault("n_images", len(images))
    with NexusWriter(path, experiment, detector, **kwargs) as w:
        for im in images:
            w.append(im)
    return w.geometry


# -- reading ----------------------------------------------------------------------------------------------


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

