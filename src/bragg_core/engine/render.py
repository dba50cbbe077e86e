"""Render an image: tile loop over pixels, assembly, statistics."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import is_scalar, to_numpy
from ..physics.structure_factors import FGrid
from ..units import R_E_SQR_M2
from .kernel import DEFAULT_MEMORY_BUDGET, plan_tiles, render_tile, tile_frame
from . import parallel
from .parallel import MIN_FORK_PATHS, fork_available, run_forked, shared_empty
from .setup import Setup


def _working_arrays(setup: Setup) -> None:
    """Cast the per-run arrays the kernel needs to the working dtype, once."""
    ctx = setup.ctx
    setup.orientations_w = ctx.asarray(setup.orientations_m)
    setup.fluence_w = ctx.asarray(setup.fluence)
    setup.I_bg_w = ctx.asarray(setup.I_bg)
    setup.scale_w = ctx.asarray(R_E_SQR_M2 * setup.fluence / setup.steps)
    setup.N_w = tuple(n if is_scalar(n) else ctx.asarray(n) for n in setup.N)
    F = setup.default_F
    setup.default_F_w = F if is_scalar(F) else ctx.asarray(F)
    setup.frame = tile_frame(setup)
    setup.grid_w = None
    if setup.grid is not None:
        setup.grid_w = FGrid(flat=ctx.asarray(setup.grid.flat), shape=setup.grid.shape, lower=setup.grid.lower)


_MALLOC_TUNED = False


def _keep_tile_buffers() -> None:
    """Let glibc reuse freed tile temporaries instead of unmapping and re-faulting them.

    Every tile allocates and frees arrays of a few hundred KiB to a few MiB;
    above glibc's mmap threshold each one is a fresh mapping whose pages fault
    in again, which cost more than the arithmetic (measured: 3.5 million
    faults, system time 1.5x user time, on a 512^2 heavy case).  Raising the
    mmap and trim thresholds keeps freed blocks in the heap for the next tile.
    Process-wide and harmless elsewhere; BRAGG_CORE_MALLOC_TUNE=0 turns it off.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or os.environ.get("BRAGG_CORE_MALLOC_TUNE", "1") == "0":
        return
    _MALLOC_TUNED = True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, 32 * 2**20)  # the largest value glibc accepts on 64-bit
    mallopt(M_TRIM_THRESHOLD, 1024 * 2**20)


def _compiled_kernel(setup: Setup, q_block: int):
    """The tile kernel; traced once per tile shape with ``jax.jit`` on JAX (which fuses it).

    The setup's arrays enter as closed-over constants; every branch in the
    kernel is on host values, so the trace is valid for every tile.
    """
    def kernel(f_idx, s_idx):
        return render_tile(setup, f_idx, s_idx, q_block)

    if setup.ctx.name == "jax":
        import jax

        return jax.jit(kernel)
    return kernel


def _paths_per_pixel(setup: Setup) -> int:
    return (setup.thick.count * setup.oversample ** 2 * setup.n_sources
            * int(setup.orientations_m.shape[0]))


def _torch_cpu(ctx) -> bool:
    return ctx.name == "torch" and getattr(ctx.device, "type", "cpu") == "cpu"


def _threads(ctx, n_tiles: int) -> int:
    """Worker threads for the tile loop: NumPy and torch on the CPU (their kernels release the GIL)."""
    if not (ctx.name == "numpy" or _torch_cpu(ctx)) or n_tiles < 2:
        return 1
    env = os.environ.get("BRAGG_CORE_THREADS")
    want = int(env) if env and env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)
    return max(1, min(want, n_tiles))


@contextmanager
def _single_threaded_torch(ctx):
    if not _torch_cpu(ctx):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def render(setup: Setup, memory_budget_bytes: int | None = None, progress=None, store_dtype=None):
    """The float image (spixels, fpixels) in the working namespace, device and dtype.

    Pixels outside the region of interest stay zero; masked pixels are zero.
    ``progress``, if given, is called with the number of pixels finished.
    ``store_dtype`` (NumPy only; e.g. float32 for a float64 run whose image
    is written as float32) stores each tile in that dtype as it is finished,
    so the full image never exists in the working dtype.
    """
    ctx, g = setup.ctx, setup.gctx
    xp = ctx.xp
    _keep_tile_buffers()
    _working_arrays(setup)
    fp, sp = setup.detector.fpixels, setup.detector.spixels
    xmin, xmax, ymin, ymax = setup.roi
    x0, x1 = max(xmin, 0), min(xmax, fp - 1)
    y0, y1 = max(ymin, 0), min(ymax, sp - 1)
    if x1 < x0 or y1 < y0:
        return np.zeros((sp, fp), dtype=store_dtype) if store_dtype is not None and ctx.name == "numpy" \
            else ctx.zeros((sp, fp))
    W, H = x1 - x0 + 1, y1 - y0 + 1
    n = W * H
    plan = plan_tiles(setup, n, memory_budget_bytes or DEFAULT_MEMORY_BUDGET)
    # rectangular tiles: bands of whole ROI rows, or pieces of one row when a row is too large
    per = plan.pixels_per_tile
    if W <= per:
        band = per // W
        rects = [(r, min(H, r + band), 0, W) for r in range(0, H, band)]
    else:
        rects = [(r, r + 1, c, min(W, c + per)) for r in range(H) for c in range(0, W, per)]

    kernel = _compiled_kernel(setup, plan.orientations_per_block)

    def compute(rect):
        r0, r1, c0, c1 = rect
        s_idx = g.arange(r1 - r0) + float(y0 + r0)
        f_idx = g.arange(c1 - c0) + float(x0 + c0)
        return xp.reshape(kernel(f_idx, s_idx), (r1 - r0, c1 - c0))

    def tile(rect):
        out = compute(rect)
        if progress is not None:
            r0, r1, c0, c1 = rect
            progress((r1 - r0) * (c1 - c0))
        return out

    workers = _threads(ctx, len(rects))  # the tile loop
    parallel.last_workers_private_bytes = 0
    forked = False
    if ctx.name == "numpy":
        # fill one preallocated block instead of concatenating: peak memory is one image
        forked = workers > 1 and n * _paths_per_pixel(setup) >= MIN_FORK_PATHS and fork_available()
        store = np.dtype(store_dtype or ctx.dtype)
        block = shared_empty((H, W), store) if forked else np.empty((H, W), dtype=store)

        def fill(rect):
            r0, r1, c0, c1 = rect
            block[r0:r1, c0:c1] = compute(rect)
            return (r1 - r0) * (c1 - c0)

        def tile(rect):  # noqa: F811
            px = fill(rect)
            if progress is not None:
                progress(px)

    if forked:  # worker processes (the GIL would serialise threads)
        run_forked(lambda i: fill(rects[i]), len(rects), workers, progress)
        tiles = []
    elif workers > 1:
        # tiles run concurrently, one core each; torch's own intra-op threads
        # are paused meanwhile (many small parallel regions cost more than they give)
        with _single_threaded_torch(ctx), ThreadPoolExecutor(max_workers=workers) as pool:
            tiles = list(pool.map(tile, rects))
    else:
        tiles = [tile(rect) for rect in rects]
    if ctx.name != "numpy":
        if W > per:  # join the pieces of each row
            per_row = len(tiles) // H
            tiles = [xp.concat(tiles[i * per_row:(i + 1) * per_row], axis=1) if per_row > 1
                     else tiles[i * per_row] for i in range(H)]
        block = xp.concat(tiles, axis=0) if len(tiles) > 1 else tiles[0]
    del tiles
    if setup.mask is not None:
        m = ctx.asarray(np.asarray(to_numpy(setup.mask))[y0:y1 + 1, x0:x1 + 1] != 0, dtype=xp.bool)
        block = xp.where(m, block, xp.zeros_like(block))
    if (W, H) == (fp, sp):
        return block
    zeros = (lambda shape: np.zeros(shape, dtype=block.dtype)) if ctx.name == "numpy" else ctx.zeros
    parts = []
    if x0 > 0:
        parts.append(zeros((H, x0)))
    parts.append(block)
    if x1 < fp - 1:
        parts.append(zeros((H, fp - 1 - x1)))
    rows = xp.concat(parts, axis=1) if len(parts) > 1 else block
    vparts = []
    if y0 > 0:
        vparts.append(zeros((y0, fp)))
    vparts.append(rows)
    if y1 < sp - 1:
        vparts.append(zeros((sp - 1 - y1, fp)))
    return xp.concat(vparts, axis=0) if len(vparts) > 1 else rows


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
    sp, fp = image_f32.shape
    xmin, xmax, ymin, ymax = setup.roi
    x0, x1, y0, y1 = max(xmin, 0), min(xmax, fp - 1), max(ymin, 0), min(ymax, sp - 1)
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
