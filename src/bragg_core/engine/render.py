"""Render an image: the tile loop over pixels, on workers where the backend allows, and assembly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._backend import to_numpy
from .._types import Array
from . import parallel
from .inputs import KernelInputs, kernel_inputs
from .kernel import render_tile
from .setup import Setup, roi_bounds
from .stats import ImageStats, image_stats
from .tiling import DEFAULT_MEMORY_BUDGET, plan_tiles, tile_rects


@dataclass(frozen=True)
class RenderInfo:
    """How a render ran: tiles, workers, and the memory forked workers added."""

    tiles: int
    workers: int
    forked: bool
    workers_private_bytes: int   # private memory of forked workers (their shared pages are in ours)


def render(setup: Setup, memory_budget_bytes: int | None = None, progress=None, store_dtype=None) -> Array:
    """The float image (spixels, fpixels); see :func:`render_detailed`."""
    return render_detailed(setup, memory_budget_bytes, progress, store_dtype)[0]


def render_detailed(setup: Setup, memory_budget_bytes: int | None = None, progress=None,
                    store_dtype=None) -> tuple[Array, RenderInfo]:
    """The float image (spixels, fpixels) in the working namespace, device and dtype, and how it ran.

    Pixels outside the region of interest stay zero; masked pixels are zero.
    ``progress``, if given, is called with the number of pixels finished.
    ``store_dtype`` (honoured where the backend writes tiles into a
    preallocated host image; e.g. float32 for a float64 run whose image is
    written as float32) stores each tile in that dtype as it is finished, so
    the full image never exists in the working dtype.
    """
    ctx, g = setup.ctx, setup.gctx
    xp = ctx.xp
    caps = ctx.caps
    # a host image filled in place (and forked workers) only where no gradient has to pass through the tiles
    prealloc = caps.preallocated_image and not setup.autograd
    parallel.keep_tile_buffers()
    k = kernel_inputs(setup, untracked=prealloc)
    fp, sp = setup.detector.fpixels, setup.detector.spixels
    x0, x1, y0, y1 = roi_bounds(setup)

    host_dtype = np.dtype(store_dtype or ctx.dtype_name)

    def zeros(shape, dtype=None):
        if prealloc:
            return np.zeros(shape, dtype=dtype or host_dtype)
        return ctx.zeros(shape)

    if x1 < x0 or y1 < y0:
        empty = zeros((sp, fp))
        return (ctx.from_host(empty) if prealloc else empty), RenderInfo(tiles=0, workers=0, forked=False,
                                                                           workers_private_bytes=0)
    W, H = x1 - x0 + 1, y1 - y0 + 1
    n = W * H
    plan = plan_tiles(setup, n, memory_budget_bytes or DEFAULT_MEMORY_BUDGET)
    rects = tile_rects(W, H, plan.pixels_per_tile)
    if caps.jit_tiles:  # one compiled computation, reused for every tile
        block = render_mapped(k, plan, (x0, y0, W, H), progress)
        info = RenderInfo(tiles=len(rects), workers=1, forked=False, workers_private_bytes=0)
        return finish_block(setup, ctx, block, (x0, x1, y0, y1), zeros, prealloc), info

    def compute(rect):
        r0, r1, c0, c1 = rect
        s_idx = g.arange(r1 - r0) + float(y0 + r0)
        f_idx = g.arange(c1 - c0) + float(x0 + c0)
        return xp.reshape(render_tile(k, f_idx, s_idx, plan.orientations_per_block), (r1 - r0, c1 - c0))

    workers = parallel.worker_count(caps, len(rects))
    forked = prealloc and parallel.should_fork(caps, workers, n * setup.paths_per_pixel)
    added = 0
    if prealloc:
        # fill one preallocated host block instead of concatenating: peak memory is one image
        block = parallel.shared_empty((H, W), host_dtype) if forked else np.empty((H, W), dtype=host_dtype)

        def fill(rect):
            r0, r1, c0, c1 = rect
            block[r0:r1, c0:c1] = to_numpy(compute(rect))
            return (r1 - r0) * (c1 - c0)

        if forked:  # worker processes (the GIL would serialise threads)
            with parallel.intra_op_threads_paused(ctx):
                added = parallel.run_forked(lambda i: fill(rects[i]), len(rects), workers, progress,
                                            child_init=lambda: ctx.intra_op_threads(1))
        else:
            def fill_reported(rect):
                px = fill(rect)
                if progress is not None:
                    progress(px)

            parallel.run_threads(fill_reported, rects, workers, ctx)
    else:
        def tile(rect):
            out = compute(rect)
            if progress is not None:
                r0, r1, c0, c1 = rect
                progress((r1 - r0) * (c1 - c0))
            return out

        tiles = parallel.run_threads(tile, rects, workers, ctx)
        block = assemble_tiles(xp, tiles, H)
        del tiles
    info = RenderInfo(tiles=len(rects), workers=workers, forked=forked, workers_private_bytes=added)
    return finish_block(setup, ctx, block, (x0, x1, y0, y1), zeros, prealloc), info


def finish_block(setup, ctx, block, roi, zeros, prealloc):
    """The rendered region-of-interest block, masked and placed on the whole detector (``prealloc``: a host
    block, changed in place)."""
    xp = ctx.xp
    x0, x1, y0, y1 = roi
    fp, sp = setup.detector.fpixels, setup.detector.spixels
    W, H = x1 - x0 + 1, y1 - y0 + 1
    if prealloc:  # a NumPy block: masked and placed in place, then handed to the library without a copy
        if setup.mask is not None:
            block[np.asarray(to_numpy(setup.mask))[y0:y1 + 1, x0:x1 + 1] == 0] = 0
        if (W, H) != (fp, sp):
            whole = zeros((sp, fp), block.dtype)
            whole[y0:y1 + 1, x0:x1 + 1] = block
            block = whole
        return ctx.from_host(block)
    if setup.mask is not None:
        m = ctx.asarray(np.asarray(to_numpy(setup.mask))[y0:y1 + 1, x0:x1 + 1] != 0, dtype=xp.bool)
        block = xp.where(m, block, xp.zeros_like(block))
    if (W, H) == (fp, sp):
        return block
    return pad_to_detector(xp, block, (x0, x1, y0, y1), (fp, sp), zeros)


def render_mapped(k: KernelInputs, plan, origin, progress):
    """The (H, W) block as tiles of one shape under a loop primitive (``jax.lax.map``).

    Every tile is the same traced computation, so compiling (also under
    ``jax.jit(jax.grad(...))``) costs the same whatever the image size; the
    tile body is checkpointed, so reverse mode keeps one tile's
    intermediates at a time and recomputes each in the backward pass.  The
    last band (or row piece) is padded with pixels beyond the block, which
    are computed and dropped.
    """
    import jax

    x0, y0, W, H = origin
    g = k.gctx
    xp = k.ctx.xp
    kernel = lambda f_idx, s_idx: render_tile(k, f_idx, s_idx, plan.orientations_per_block)  # noqa: E731
    per = plan.pixels_per_tile
    if W <= per:
        rows, cols = max(1, min(H, per // W)), W
        n_r, n_c = -(-H // rows), 1
    else:
        rows, cols = 1, per
        n_r, n_c = H, -(-W // per)
    r_base = g.arange(rows) + float(y0)
    c_base = g.arange(cols) + float(x0)

    @jax.checkpoint
    def body(i):
        r = i // n_c
        c = i - r * n_c
        s_idx = r_base + xp.astype(r, g.dtype) * float(rows)
        f_idx = c_base + xp.astype(c, g.dtype) * float(cols)
        return xp.reshape(kernel(f_idx, s_idx), (rows, cols))

    tiles = jax.lax.map(body, xp.arange(n_r * n_c))               # (n_r * n_c, rows, cols)
    block = xp.reshape(xp.permute_dims(xp.reshape(tiles, (n_r, n_c, rows, cols)), (0, 2, 1, 3)),
                       (n_r * rows, n_c * cols))
    if progress is not None:
        progress(W * H)
    return block[:H, :W]


def assemble_tiles(xp, tiles, H):
    """One (H, W) block from tiles in row order (bands of rows, or pieces of each row)."""
    if len(tiles) > H:  # pieces of rows: join each row first
        per_row = len(tiles) // H
        tiles = [xp.concat(tiles[i * per_row:(i + 1) * per_row], axis=1) for i in range(H)]
    return xp.concat(tiles, axis=0) if len(tiles) > 1 else tiles[0]


def pad_to_detector(xp, block, roi, size, zeros):
    """Place the region-of-interest block (roi = (x0, x1, y0, y1), inclusive) into a zero image of the whole
    detector (size = (fast, slow) pixels); ``zeros(shape)`` makes the zero parts (joined: gradients pass)."""
    x0, x1, y0, y1 = roi
    fp, sp = size
    H = block.shape[0]
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


__all__ = ["render", "render_detailed", "render_mapped", "assemble_tiles", "finish_block", "pad_to_detector",
           "RenderInfo", "ImageStats", "image_stats"]
