"""PNG previews: the scale shows spots and background, is recorded in the file, and panels are laid out."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bragg_core.experiment import Detector
from bragg_core.panels import MultiPanelDetector, Panel

pytest.importorskip("PIL", reason="PNG previews need Pillow (the png extra)")
from PIL import Image  # noqa: E402

from bragg_core.io.png import preview_scale, read_png_scale, write_png  # noqa: E402


def _image(seed=0):
    rng = np.random.default_rng(seed)
    im = rng.poisson(3.0, size=(40, 50)).astype(np.float32)
    im[10, 10] = 1e4
    im[30, 40] = 300.0
    return im


@pytest.mark.parametrize("scale", ["asinh", "log"])
def test_spots_and_background_both_visible_and_scale_recorded(tmp_path, scale):
    im = _image()
    path = tmp_path / "p.png"
    sc = write_png(path, im, scale=scale)
    with Image.open(path) as pic:
        assert pic.mode == "L" and pic.size == (50, 40)
        g = np.asarray(pic)
    assert g[10, 10] == 255                               # the brightest spot is white
    assert g[30, 40] > np.percentile(g, 99.0) - 1         # a weak spot stands out of the background
    bg = np.delete(g.reshape(-1), [10 * 50 + 10, 30 * 50 + 40])
    assert 15 < bg.mean() < 160                           # background visible, not black, not white
    assert len(np.unique(bg)) > 4                         # its noise shows as several grey levels
    assert np.corrcoef(bg, np.delete(im.reshape(-1), [510, 1540]))[0, 1] > 0.9  # monotonic in the counts
    meta = read_png_scale(path)
    assert meta["scale"] == scale and meta == sc
    ref = preview_scale(im, scale)
    assert (meta["lo"], meta["hi"], meta["soft"]) == (ref["lo"], ref["hi"], ref["soft"])
    # the recorded formula gives back every pixel
    fn = np.arcsinh if scale == "asinh" else np.log1p
    x = np.clip((im.astype(np.float64) - meta["lo"]) / meta["soft"], 0, None)
    v = np.clip(fn(x) / fn((meta["hi"] - meta["lo"]) / meta["soft"]), 0, 1)
    assert np.array_equal(np.rint(v * 255).astype(np.uint8), g)


def test_panels_in_a_row_and_projected(tmp_path):
    a, b = _image(1)[:20, :30], _image(2)[:20, :30]
    write_png(tmp_path / "row.png", [a, b], layout="row", gap=3)
    with Image.open(tmp_path / "row.png") as pic:
        assert pic.size == (63, 20)
    p0 = Panel(fast_axis=(0, 0, 1), slow_axis=(0, -1, 0), origin_mm=(100.0, 1.0, -3.0), fpixels=30, spixels=20)
    p1 = Panel(fast_axis=(0, 0, 1), slow_axis=(0, -1, 0), origin_mm=(100.0, 1.0, 0.5), fpixels=30, spixels=20)
    mp = MultiPanelDetector(panels=(p0, p1), base=Detector())
    write_png(tmp_path / "proj.png", [a, b], layout="projected", detector=mp)
    with Image.open(tmp_path / "proj.png") as pic:
        g = np.asarray(pic)
    # side by side along fast with a 0.5 mm (5 pixel) gap, every pixel of both panels kept
    assert g.shape == (20, 65)
    assert np.count_nonzero(g[:, 30:35]) == 0
    with pytest.raises(ValueError, match="projected layout needs the detector"):
        write_png(tmp_path / "x.png", [a, b], layout="projected")


def test_clear_message_without_pillow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"Pillow \(pip install 'bragg_core\[png\]'\)"):
        write_png(tmp_path / "p.png", _image())
    assert not (tmp_path / "p.png").exists()
