"""How an image is cut into tiles whose temporaries fit a memory budget."""

from __future__ import annotations

from dataclasses import dataclass

from .setup import Setup

DEFAULT_MEMORY_BUDGET = 16 * 2**20  # bytes of temporaries per tile (per worker)


@dataclass(frozen=True)
class TilePlan:
    pixels_per_tile: int
    orientations_per_block: int


def plan_tiles(setup: Setup, n_pixels: int, budget: int) -> TilePlan:
    """Choose tile and orientation-block sizes so temporaries stay within ``budget`` bytes."""
    item = 4 if setup.ctx.dtype_name == "float32" else 8
    T, S, K = setup.thick.count, setup.oversample ** 2, setup.n_sources
    Q = int(setup.orientations_m.shape[0])
    per_elem = (96 if setup.interpolate else 14) * item  # live temporaries per (path, orientation)
    if setup.smooth:
        per_elem += (27 * 12 + 8 * 8) * item  # 27 neighbours' shape factors, 8 corners' amplitudes
    per_path = 40 * 8                                   # per (pixel, layer, sub-pixel, source), float64
    q_block = Q
    if not setup.running_sum:
        q_block = max(1, min(Q, budget // max(1, T * S * K * per_elem)))
    per_pixel = T * S * K * (q_block * per_elem + per_path)
    p = max(1, min(n_pixels, budget // max(1, per_pixel)))
    return TilePlan(pixels_per_tile=int(p), orientations_per_block=int(q_block))


def tile_rects(width: int, height: int, pixels_per_tile: int) -> list[tuple[int, int, int, int]]:
    """Rectangles (row0, row1, col0, col1) covering a width x height block, in row order.

    Bands of whole rows, or pieces of one row when a row alone is larger
    than a tile.
    """
    per = pixels_per_tile
    if width <= per:
        band = per // width
        return [(r, min(height, r + band), 0, width) for r in range(0, height, band)]
    return [(r, r + 1, c, min(width, c + per)) for r in range(height) for c in range(0, width, per)]


__all__ = ["DEFAULT_MEMORY_BUDGET", "TilePlan", "plan_tiles", "tile_rects"]
