"""Raw float images (``-floatfile``): float32, little-endian, fast index fastest.

No header: a ``(slow, fast)`` image is stored as ``slow*fast`` 4-byte floats,
row after row, so the reader needs the shape from elsewhere.
"""

from __future__ import annotations

import os

import numpy as np

from .atomic import atomic_write

__all__ = ["FloatFileFormatError", "write_floatfile", "read_floatfile", "write_panels_floatfile"]


class FloatFileFormatError(ValueError):
    """A float file whose size does not fit the requested image shape."""


def write_floatfile(path: str | os.PathLike, image) -> None:
    """Write ``image`` (any real array, stored as float32) to ``path``, atomically."""
    atomic_write(path, np.ascontiguousarray(image, dtype="<f4").tobytes())


def read_floatfile(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a raw float file as native float32, reshaped to ``shape`` = (slow, fast)
    if given (otherwise 1-D).  Raises :class:`FloatFileFormatError` when the size
    is not a whole number of floats or does not match ``shape``."""
    with open(path, "rb") as fh:
        data = fh.read()
    if len(data) % 4:
        raise FloatFileFormatError(f"{os.fspath(path)}: {len(data)} bytes is not a multiple of 4")
    image = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if shape is not None:
        shape = tuple(int(n) for n in shape)
        if int(np.prod(shape)) != image.size:
            raise FloatFileFormatError(
                f"{os.fspath(path)}: {image.size} floats do not fill shape {shape}"
            )
        image = image.reshape(shape)
    return image


def write_panels_floatfile(path: str, images) -> None:
    """Every panel's float32 image, one after another (each as a single-panel float file), atomically."""
    from .._backend import to_numpy

    atomic_write(path, [np.ascontiguousarray(np.asarray(to_numpy(im), dtype="<f4")) for im in images])
