"""Image statistics as the reference reports them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._backend import to_numpy
from .setup import Setup, roi_bounds


@dataclass(frozen=True)
class ImageStats:
    """Statistics as the reference reports them (over rendered, unmasked ROI pixels)."""

    max_I: float
    max_I_fast_m: float
    max_I_slow_m: float
    max_fast: int
    max_slow: int
    mean: float
    rms: float
    rmsd: float
    n: int


def image_stats(image_f32: np.ndarray, setup: Setup) -> ImageStats:
    """max, mean, rms over rendered pixels; rmsd over the whole ROI (masked pixels as zero).

    As the reference: sums in double of float32 pixel values (squares formed
    in float32), the first maximum in raster order (never below 0), reported
    at the detector coordinates (m) of that pixel's last sub-pixel.  Bands of
    rows keep the temporaries small.
    """
    x0, x1, y0, y1 = roi_bounds(setup)
    mask = None if setup.mask is None else np.asarray(to_numpy(setup.mask))
    n, s, ss, max_I, mf, ms = 0, 0.0, 0.0, 0.0, 0, 0
    bands = []
    if x1 >= x0 and y1 >= y0:
        step = max(1, (1 << 19) // (x1 - x0 + 1))
        bands = [(r, min(y1 + 1, r + step)) for r in range(y0, y1 + 1, step)]
    for r0, r1 in bands:
        v = image_f32[r0:r1, x0:x1 + 1]
        keep = None if mask is None else mask[r0:r1, x0:x1 + 1] != 0
        vals = v if keep is None else v[keep]
        n += int(vals.size)
        s += float(np.sum(vals, dtype=np.float64))
        ss += float(np.sum(vals * vals, dtype=np.float64))
        if vals.size:
            cand = v if keep is None else np.where(keep, v, -np.inf)
            i = int(np.argmax(cand))
            if float(cand.flat[i]) > max_I:
                max_I = float(cand.flat[i])
                ms, mf = r0 + i // cand.shape[1], x0 + i % cand.shape[1]
    mean = s / max(n, 1)
    rms = math.sqrt(ss / (max(n, 2) - 1))
    dev2, nr = 0.0, 0
    for r0, r1 in bands:
        d = image_f32[r0:r1, x0:x1 + 1].astype(np.float64) - mean
        dev2 += float(np.sum(d * d))
        nr += int(d.size)
    rmsd = math.sqrt(dev2 / (max(nr, 2) - 1))
    os_ = setup.oversample
    sub = float(to_numpy(setup.detector.pixel_size_m)) / os_
    fdet = sub * (mf * os_ + os_ - 1) + sub / 2.0
    sdet = sub * (ms * os_ + os_ - 1) + sub / 2.0
    return ImageStats(max_I, fdet, sdet, mf, ms, mean, rms, rmsd, n)


__all__ = ["ImageStats", "image_stats"]
