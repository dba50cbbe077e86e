"""PNG previews: spots and background visible at once, the scale recorded in the file.

An image (or every panel of a multi-panel image) is mapped to 8-bit grey by

    asinh:  v = asinh((x - lo) / soft) / asinh((hi - lo) / soft)
    log:    v = log1p((x - lo) / soft) / log1p((hi - lo) / soft)

clipped to [0, 1] and scaled to 0..255 (255 - that with ``invert``), where
``lo`` is the 1st percentile of the finite pixels, ``hi`` their maximum and
``soft`` the background's spread (1.4826 times the median absolute
deviation), so a Poisson background of a few photons shows as dark grey and
the brightest spot is white.  Any of the three can be given instead.  The
scale, its formula and the numbers are written as PNG text chunks
(``bragg_core.scale``, ``bragg_core.lo``, ``bragg_core.hi``,
``bragg_core.soft``, ``bragg_core.formula``).

Panels are laid out in a row, a column, a grid, or ``"projected"``: every
pixel centre projected along its line from the sample onto the plane
perpendicular to the beam at the first panel's distance, so the picture
looks like the detector seen from the sample.

Needs Pillow (``pip install 'bragg_core[png]'``); without it the writer
raises ImportError with that advice.
"""

from __future__ import annotations

import io
import math
from typing import Optional

import numpy as np

from .atomic import atomic_write

__all__ = ["PNG_MISSING", "png_available", "preview_scale", "preview_array", "png_bytes", "write_png",
           "read_png_scale"]

PNG_MISSING = "PNG previews need Pillow (pip install 'bragg_core[png]')"


def png_available() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


def _pil():
    try:
        from PIL import Image, PngImagePlugin
    except ImportError:
        raise ImportError(PNG_MISSING) from None
    return Image, PngImagePlugin


def _panels(images) -> list:
    from .._backend import to_numpy

    if isinstance(images, (list, tuple)):
        arrs = [np.asarray(to_numpy(a), dtype=np.float64) for a in images]
    else:
        a = np.asarray(to_numpy(images), dtype=np.float64)
        arrs = [a] if a.ndim == 2 else [a[k] for k in range(a.shape[0])] if a.ndim == 3 else None
        if arrs is None:
            raise ValueError(f"a preview needs (slow, fast) or (panel, slow, fast) images, got shape {a.shape}")
    for a in arrs:
        if a.ndim != 2 or a.size == 0:
            raise ValueError(f"each panel must be a non-empty (slow, fast) array, got shape {a.shape}")
    return arrs


def preview_scale(images, scale: str = "asinh", lo: Optional[float] = None, hi: Optional[float] = None,
                  soft: Optional[float] = None) -> dict:
    """The numbers of the preview scale (``scale``, ``lo``, ``hi``, ``soft``, ``formula``) for ``images``."""
    if scale not in ("asinh", "log"):
        raise ValueError(f"scale must be 'asinh' or 'log', got {scale!r}")
    vals = np.concatenate([a.reshape(-1) for a in _panels(images)])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        vals = np.zeros(1)
    lo = float(np.percentile(vals, 1.0)) if lo is None else float(lo)
    hi = float(vals.max()) if hi is None else float(hi)
    if soft is None:
        med = float(np.median(vals))
        soft = 1.4826 * float(np.median(np.abs(vals - med)))
        if not soft > 0:
            soft = (hi - lo) / 1000.0 if hi > lo else 1.0
    soft = float(soft)
    if not soft > 0 or not math.isfinite(soft):
        raise ValueError(f"the scale's soft threshold must be positive, got {soft!r}")
    f = "asinh" if scale == "asinh" else "log1p"
    return {"scale": scale, "lo": lo, "hi": hi, "soft": soft,
            "formula": f"v = {f}((x - lo) / soft) / {f}((hi - lo) / soft), 0..1 -> 0..255"}


def _map(a: np.ndarray, sc: dict, invert: bool) -> np.ndarray:
    fn = np.arcsinh if sc["scale"] == "asinh" else np.log1p
    top = fn(max(sc["hi"] - sc["lo"], 0.0) / sc["soft"])
    x = np.clip((np.nan_to_num(a, nan=sc["lo"]) - sc["lo"]) / sc["soft"], 0.0, None)
    v = np.clip(fn(x) / top, 0.0, 1.0) if top > 0 else np.zeros_like(x)
    g = np.rint(v * 255.0).astype(np.uint8)
    return 255 - g if invert else g


def _layout(grey: list, layout: str, gap: int, detector, fill: int) -> np.ndarray:
    if len(grey) == 1 and layout != "projected":
        return grey[0]
    if layout in ("row", "column", "grid"):
        n = len(grey)
        cols = n if layout == "row" else 1 if layout == "column" else int(math.ceil(math.sqrt(n)))
        rows = int(math.ceil(n / cols))
        h = max(g.shape[0] for g in grey)
        w = max(g.shape[1] for g in grey)
        canvas = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap), fill, dtype=np.uint8)
        for k, g in enumerate(grey):
            r, c = divmod(k, cols)
            canvas[r * (h + gap):r * (h + gap) + g.shape[0], c * (w + gap):c * (w + gap) + g.shape[1]] = g
        return canvas
    if layout == "projected":
        if detector is None:
            raise ValueError("the projected layout needs the detector (its panels' positions)")
        return _projected(grey, detector, fill)
    raise ValueError(f"layout must be 'row', 'column', 'grid' or 'projected', got {layout!r}")


def _projected(grey: list, detector, fill: int) -> np.ndarray:
    from ..panels import shared_vectors

    beam = np.asarray(shared_vectors(detector.base)[0], dtype=np.float64)
    beam = beam / np.linalg.norm(beam)
    panels = detector.panels
    # picture axes: the first panel's fast and slow directions, made perpendicular to the beam
    f0 = np.asarray(panels[0].fast_axis, float)
    e1 = f0 - (f0 @ beam) * beam
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(beam, e1)
    s0 = np.asarray(panels[0].slow_axis, float)
    if e2 @ s0 < 0:
        e2 = -e2
    o0 = np.asarray(panels[0].origin_mm, float)
    n0 = np.cross(f0, s0)
    D = abs((o0 @ n0) / (beam @ n0)) if abs(beam @ n0) > 1e-12 else float(np.linalg.norm(o0))
    px = min(float(p.pixel_size_mm) for p in panels)
    us, vs, gs = [], [], []
    for p, g in zip(panels, grey):
        f = np.asarray(p.fast_axis, float)
        s = np.asarray(p.slow_axis, float)
        f, s = f / np.linalg.norm(f), s / np.linalg.norm(s)
        o = np.asarray(p.origin_mm, float)
        S, F = g.shape
        j = (np.arange(F) + 0.5) * float(p.pixel_size_mm)
        i = (np.arange(S) + 0.5) * float(p.pixel_size_mm)
        pos = o + i[:, None, None] * s + j[None, :, None] * f  # (S, F, 3)
        along = pos @ beam
        ok = along > 0
        t = np.where(ok, D / np.where(ok, along, 1.0), 0.0)
        us.append(((pos @ e1) * t)[ok] / px)
        vs.append(((pos @ e2) * t)[ok] / px)
        gs.append(g[ok])
    u, v, gv = np.concatenate(us), np.concatenate(vs), np.concatenate(gs)
    if u.size == 0:
        raise ValueError("no panel faces the beam's side of the sample")
    c = np.floor(u - u.min()).astype(np.int64)
    r = np.floor(v - v.min()).astype(np.int64)
    canvas = np.full((int(r.max()) + 1, int(c.max()) + 1), fill, dtype=np.uint8)
    if fill == 0:
        np.maximum.at(canvas, (r, c), gv)
    else:
        np.minimum.at(canvas, (r, c), gv)
    return canvas


def preview_array(images, *, scale: str = "asinh", lo=None, hi=None, soft=None, invert: bool = False,
                  layout: str = "row", gap: int = 4, detector=None):
    """``(uint8 picture, scale dict)`` for ``images`` (one panel, or several laid out by ``layout``)."""
    arrs = _panels(images)
    sc = preview_scale(arrs, scale, lo, hi, soft)
    grey = [_map(a, sc, invert) for a in arrs]
    fill = 255 if invert else 0
    return _layout(grey, layout, int(gap), detector, fill), sc


def png_bytes(images, **kwargs) -> bytes:
    """The PNG (8-bit grey) of :func:`preview_array`, the scale in its text chunks."""
    Image, PngImagePlugin = _pil()
    pic, sc = preview_array(images, **kwargs)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "bragg_core")
    for k in ("scale", "lo", "hi", "soft", "formula"):
        info.add_text(f"bragg_core.{k}", repr(sc[k]) if isinstance(sc[k], float) else str(sc[k]))
    info.add_text("bragg_core.invert", str(bool(kwargs.get("invert", False))))
    buf = io.BytesIO()
    Image.fromarray(pic, mode="L").save(buf, format="PNG", pnginfo=info, optimize=False)
    return buf.getvalue()


def write_png(path, images, **kwargs) -> dict:
    """Write the preview of ``images`` to ``path`` atomically; returns the scale used.

    ``kwargs``: ``scale`` ('asinh' or 'log'), ``lo``, ``hi``, ``soft``,
    ``invert``, ``layout`` ('row', 'column', 'grid', 'projected'), ``gap``
    (pixels between panels), ``detector`` (a MultiPanelDetector, for
    'projected').
    """
    data = png_bytes(images, **kwargs)
    atomic_write(path, data)
    return read_png_scale(io.BytesIO(data))


def read_png_scale(path_or_file) -> dict:
    """The scale a preview was written with (from its text chunks)."""
    Image, _ = _pil()
    with Image.open(path_or_file) as im:
        text = dict(getattr(im, "text", {}) or {})
    out = {}
    for k in ("scale", "formula"):
        if f"bragg_core.{k}" in text:
            out[k] = text[f"bragg_core.{k}"]
    for k in ("lo", "hi", "soft"):
        if f"bragg_core.{k}" in text:
            out[k] = float(text[f"bragg_core.{k}"])
    return out
