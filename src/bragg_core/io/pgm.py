"""8-bit PGM preview images as the reference writes them, and its image statistics.

File layout: ``"P5\\n{fast} {slow}\\n# pixels scaled by {pgm_scale:%g}\\n255\\n"``
followed by one byte per pixel, slow-major (rows of ``fast`` bytes).  A pixel
is ``min(v * pgm_scale, 255)`` (double precision) truncated toward zero.
Negative values are clipped to 0 here: the reference casts a negative
``double`` to ``unsigned char``, which is undefined behaviour in C.  NaN
pixels give 0 for the same reason.  Pixels outside the ROI are 0.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from .atomic import atomic_write
from .smv import c_format_g

__all__ = ["ImageStatistics", "image_statistics", "pgm_auto_scale", "pgm_bytes", "write_pgm"]


class ImageStatistics(NamedTuple):
    """The reference's summary of a float image (the ``max_I``/``mean=`` lines)."""

    max_I: float  #: largest pixel in the ROI, never below 0 (the running max starts at 0)
    mean: float  #: mean over the ROI
    rms: float  #: sqrt(sum v^2 / (n-1)), with v^2 formed in float32 as in C
    rmsd: float  #: sqrt(sum (v-mean)^2 / (n-1))


def _roi_values(float_image, roi_mask) -> np.ndarray:
    v = np.asarray(float_image, dtype=np.float32)
    if roi_mask is not None:
        v = v[np.asarray(roi_mask, dtype=bool)]
    return v.ravel()


def _sequential_sum(values: np.ndarray) -> float:
    """Left-to-right float64 sum (the order of the reference's single-threaded loop)."""
    return float(np.cumsum(values, dtype=np.float64)[-1]) if values.size else 0.0


def image_statistics(float_image, roi_mask=None) -> ImageStatistics:
    """``max_I``, mean, rms and rmsd of the float image over ``roi_mask`` (bool).

    Follows the reference: sums are accumulated in double in raster order,
    ``n`` is replaced by 1 for the mean when 0 and by 2 for the ``n-1`` divisors
    when <= 1.  (The reference excludes ``-mask``ed pixels from max/mean/rms but
    not from rmsd; pass the ROI and mask combined if that matters.)
    """
    v = _roi_values(float_image, roi_mask)
    n = v.size
    max_I = max(0.0, float(v.max())) if n else 0.0
    mean = _sequential_sum(v.astype(np.float64)) / max(n, 1)
    dof = max(n, 2) - 1
    rms = np.sqrt(_sequential_sum((v * v).astype(np.float64)) / dof)
    dev = v.astype(np.float64) - mean
    rmsd = np.sqrt(_sequential_sum(dev * dev) / dof)
    return ImageStatistics(max_I, mean, float(rms), float(rmsd))


def pgm_auto_scale(user_scale: float, rmsd: float, intfile_scale: float) -> float:
    """The PGM scale: ``user_scale`` if > 0, else ``250/(5*rmsd)`` when
    ``rmsd > 0``, else the int-image scale."""
    if user_scale > 0.0:
        return float(user_scale)
    return 250.0 / (5.0 * rmsd) if rmsd > 0.0 else float(intfile_scale)


def pgm_pixels(float_image, pgm_scale: float, roi_mask=None) -> np.ndarray:
    """The PGM's 8-bit pixels: trunc(min(v * scale, 255)), 0 for negative/NaN values and outside the ROI."""
    image = np.asarray(float_image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (slow, fast), got shape {image.shape}")
    t = np.minimum(image.astype(np.float64) * float(pgm_scale), 255.0)
    t = np.where(np.isnan(t) | (t < 0.0), 0.0, t)
    pixels = np.trunc(t).astype(np.uint8)
    if roi_mask is not None:
        pixels = np.where(np.asarray(roi_mask, dtype=bool), pixels, np.uint8(0))
    return pixels


def pgm_header(fast: int, slow: int, pgm_scale: float) -> bytes:
    """The reference's PGM header for an image of ``slow`` rows of ``fast`` pixels."""
    return f"P5\n{fast} {slow}\n# pixels scaled by {c_format_g(pgm_scale)}\n255\n".encode("ascii")


def pgm_bytes(float_image, pgm_scale: float, roi_mask=None) -> bytes:
    """The bytes of the reference's PGM for ``float_image`` (shape (slow, fast))."""
    pixels = pgm_pixels(float_image, pgm_scale, roi_mask)
    slow, fast = pixels.shape
    return pgm_header(fast, slow, pgm_scale) + pixels.tobytes()


def write_pgm(path: str | os.PathLike, float_image, pgm_scale: float, roi_mask=None) -> None:
    """Write the reference's PGM preview of ``float_image`` to ``path``, atomically."""
    atomic_write(path, pgm_bytes(float_image, pgm_scale, roi_mask))
