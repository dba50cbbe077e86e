"""Golden cases: a user's own reference images, rendered again and compared.

A golden case is a folder holding

* ``cmd.txt``: the nanoBragg-style flags, quoted as a shell would
  (``-cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 5 -detpixels 64``);
  relative file names in them (``-hkl P1.hkl``, ``-mat A.mat``) are read from
  the folder;
* the reference image, float32 little-endian: the file the flags name with
  ``-floatfile`` (raw, or gzipped as ``NAME.gz``), else ``image.npy``,
  ``image.bin`` or ``image.bin.gz``.  A raw image takes the rendered image's
  shape (slow, fast); a ``.npy`` file carries its own.

:func:`run_golden_case` renders the flags with :func:`bragg_core.simulate_args`
(no files written) and compares the image with the reference.
"""

from __future__ import annotations

import gzip
import os
import shlex
from dataclasses import dataclass

import array_api_compat
import numpy as np

from .._types import Array, Device
from .assertions import ImageFigures, assert_images_close, image_figures

__all__ = ["GoldenCase", "GoldenResult", "DEFAULT_BOUNDS", "load_golden_case", "read_reference_image",
           "run_golden_case"]

DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {"float64": (0.999999, 1e-5), "float32": (0.9999, 1e-3)}
"""(r_min, max_rel) per dtype: the bounds bragg_core meets against the reference program on its own cases."""

_FALLBACK_IMAGES = ("image.npy", "image.bin", "image.bin.gz")


@dataclass(frozen=True)
class GoldenCase:
    """A golden-case folder: its flags and where its reference image is."""

    folder: str
    argv: tuple[str, ...]
    reference_path: str

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.folder))

    def reference(self, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The reference image as float32 NumPy (``shape`` for a raw file)."""
        return read_reference_image(self.reference_path, shape)


@dataclass(frozen=True)
class GoldenResult:
    """What :func:`run_golden_case` measured."""

    case: GoldenCase
    figures: ImageFigures
    image: Array              # the rendered image, in the backend, device and dtype it was rendered with
    reference: np.ndarray     # float32, same shape


def load_golden_case(folder: str | os.PathLike, flags_file: str = "cmd.txt") -> GoldenCase:
    """Read a golden-case folder; FileNotFoundError or ValueError naming the file that is missing or bad."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"golden case {folder}: not a folder")
    flags_path = os.path.join(folder, flags_file)
    try:
        with open(flags_path) as fh:
            argv = tuple(shlex.split(fh.read(), comments=True))
    except FileNotFoundError:
        raise FileNotFoundError(f"golden case {folder}: no {flags_file} (the flags to render)") from None
    except ValueError as exc:
        raise ValueError(f"{flags_path}: cannot split into flags ({exc})") from None
    if not argv:
        raise ValueError(f"{flags_path}: no flags")
    candidates = []
    if "-floatfile" in argv:
        i = argv.index("-floatfile")
        if i + 1 < len(argv):
            candidates += [argv[i + 1], argv[i + 1] + ".gz"]
    candidates += list(_FALLBACK_IMAGES)
    for c in candidates:
        path = os.path.join(folder, c)
        if os.path.isfile(path):
            return GoldenCase(folder=folder, argv=argv, reference_path=path)
    raise FileNotFoundError(f"golden case {folder}: no reference image (looked for {', '.join(candidates)})")


def read_reference_image(path: str | os.PathLike, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A float32 image from ``.npy``, or raw little-endian float32 (gzipped when the name ends in ``.gz``)."""
    path = os.fspath(path)
    if path.endswith(".npy"):
        img = np.load(path, allow_pickle=False)
        if img.dtype.kind != "f":
            raise ValueError(f"{path}: dtype {img.dtype}, expected a float image")
        img = img.astype(np.float32, copy=False)
        if shape is not None and img.shape != tuple(shape):
            raise ValueError(f"{path}: shape {img.shape}, the rendered image is {tuple(shape)}")
        return img
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) % 4:
        raise ValueError(f"{path}: {len(raw)} bytes is not a whole number of float32 values")
    img = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if shape is None:
        return img
    if img.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {img.size} values, the rendered image has {int(np.prod(shape))} {tuple(shape)}")
    return img.reshape(shape)


def run_golden_case(folder: str | os.PathLike, *, backend: str | None = None, device: Device = None,
                    dtype: str | None = None, r_min: float | None = None, max_rel: float | None = None,
                    check: bool = True, extra_flags: tuple[str, ...] = (),
                    flags_file: str = "cmd.txt") -> GoldenResult:
    """Render the case's flags (plus ``extra_flags``) and compare with its reference image.

    ``backend``/``device``/``dtype`` override ``-backend``/``-device``/``-dtype``
    in the flags.  With ``check`` (the default) an AssertionError gives the
    figures when r < ``r_min`` or max|ours - ref|/max|ref| > ``max_rel``;
    unset bounds are :data:`DEFAULT_BOUNDS` for the dtype rendered.
    """
    from .. import simulate_args

    case = load_golden_case(folder, flags_file)
    kwargs = {k: v for k, v in (("backend", backend), ("device", device), ("dtype", dtype)) if v is not None}
    sim = simulate_args(list(case.argv) + list(extra_flags), cwd=case.folder, **kwargs)
    image = sim.image
    ref = case.reference(tuple(image.shape))
    if check:
        dt = "float32" if image.dtype == array_api_compat.array_namespace(image).float32 else "float64"
        lo, hi = DEFAULT_BOUNDS[dt]
        fig = assert_images_close(image, ref, lo if r_min is None else r_min, hi if max_rel is None else max_rel,
                                  what=f"golden case {case.name} ({dt})")
    else:
        fig = image_figures(image, ref)
    return GoldenResult(case=case, figures=fig, image=image, reference=ref)
