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

Reading (:func:`read_nexus`, :func:`read_nexus_frame`, :class:`NexusFormatError`)
lives in :mod:`bragg_core.io.nexus_read` and is importable from here; the
two share only the optional h5py import (:mod:`bragg_core.io._nexus_h5`).
"""

from __future__ import annotations

import datetime
import errno
import math
import os
import secrets
from typing import Any, Optional

import numpy as np

from ._imageset import LAB_TO_MCSTAS, ImageSetGeometry, geometry_from_experiment
from ._nexus_h5 import NEXUS_MISSING, _h5py, nexus_available
from .atomic import OutputError, OutputSet, _plan, _reason, atomic_write
from .nexus_read import NexusFormatError, read_nexus, read_nexus_frame

__all__ = ["NexusWriter", "NexusFormatError", "write_nexus", "read_nexus", "read_nexus_frame",
           "nexus_available", "NEXUS_MISSING"]


_NO_SENSOR_MM = 1e-6


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
