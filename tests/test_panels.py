"""Multi-panel detectors: each panel renders as the single-panel detector of its own vectors.

* a one-panel render through simulate_panels is simulate()'s image, bit for bit;
* every panel of three layouts (coplanar modules, tilted and turned panels with
  per-panel absorption, a ring of panels with two pixel sizes) equals the
  single-panel render of that panel exactly, on every array backend;
* and equals the C reference run with that panel's custom vectors
  (tests/data/panels/<layout>/panel<k>, cmd.txt) within the float64 parity
  tolerances (r >= 0.999999, max difference <= 1e-5 of the maximum);
* the placement puts pixel (0, 0) at the panel's origin, statistics cover all
  panels, the float file holds the panels one after another.
"""

from __future__ import annotations

import gzip
import math
import os
import shlex
import sys

import numpy as np
import pytest

from bragg_core import simulate
from bragg_core.cli.args import build_config, parse_args
from bragg_core.experiment import Experiment
from bragg_core.io import write_panels_floatfile
from bragg_core.panels import (
    MultiPanelDetector,
    Panel,
    PanelError,
    panel_detector,
    panel_from_detector,
)
from bragg_core.simulate import simulate_panels

sys.path.insert(0, os.path.dirname(__file__))
from panel_layouts import COMMON, LAYOUTS, panel_flags  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "panels")


def _base() -> Experiment:
    return build_config(parse_args(COMMON), ".").experiment


def _ref(layout, k, shape):
    with gzip.open(os.path.join(DATA, layout, f"panel{k}", "image.bin.gz"), "rb") as fh:
        return np.frombuffer(fh.read(), dtype="<f4").reshape(shape)


def _compare(ours, ref):
    a = np.asarray(ours, dtype=np.float64).ravel()
    b = np.asarray(ref, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1]), float(np.abs(a - b).max() / np.abs(b).max())


def _host(x):
    from bragg_core._backend import to_numpy

    return np.asarray(to_numpy(x))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_panels_match_the_reference_run_with_each_panels_vectors(layout):
    exp = _base()
    mp = MultiPanelDetector(panels=tuple(LAYOUTS[layout]()), base=exp.detector)
    sim = simulate_panels(exp, mp, backend="numpy", dtype="float64")
    assert len(sim.images) == len(mp.panels)
    for k, (det, image) in enumerate(zip(mp.detectors(), sim.images)):
        with open(os.path.join(DATA, layout, f"panel{k}", "cmd.txt")) as fh:
            argv = shlex.split(fh.read())
        # the reference was run with exactly this panel's placement
        flags = panel_flags(det)
        got = argv[len(COMMON):len(COMMON) + len(flags)]
        assert argv[:len(COMMON)] == COMMON
        assert len(got) == len(flags)
        for a, b in zip(got, flags):
            if b.startswith("-") and not b[1:2].isdigit() or b == "beam":
                assert a == b
            else:
                assert float(a) == pytest.approx(float(b), rel=1e-14, abs=1e-14)
        ref = _ref(layout, k, (det.spixels, det.fpixels))
        assert ref.max() > 0
        r, d = _compare(image, ref)
        assert r >= 0.999999 and d <= 1e-5, (layout, k, r, d)


BACKENDS = ["numpy", "torch", "jax", "array_api_strict"]


def _available(name):
    try:
        if name == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
        elif name == "torch":
            import torch  # noqa: F401
        elif name == "array_api_strict":
            import array_api_strict  # noqa: F401
    except ImportError:
        return False
    sel = os.environ.get("BRAGG_BACKENDS")
    return not sel or name in [s.strip().split("-")[0] for s in sel.split(",")]


def _backend_layouts():
    """Every layout on every backend; JAX (which compiles each panel's kernel, ~5 s a panel) on the
    mirrored pair only (a flat and a tilted, absorbing panel), marked slow."""
    out = []
    for b in BACKENDS:
        for lay in sorted(LAYOUTS):
            if b == "jax" and lay != "mirrored_pair":
                continue
            marks = [pytest.mark.slow] if b == "jax" else []
            out.append(pytest.param(lay, b, id=f"{lay}-{b}", marks=marks))
    return out


@pytest.mark.parametrize("layout, backend", _backend_layouts())
def test_each_panel_equals_its_single_panel_render_exactly(layout, backend):
    if not _available(backend):
        pytest.skip(f"{backend} not installed or not selected")
    exp = _base()
    mp = MultiPanelDetector(panels=tuple(LAYOUTS[layout]()), base=exp.detector)
    sim = simulate_panels(exp, mp, backend=backend, dtype="float64")
    for det, image in zip(mp.detectors(), sim.images):
        alone = simulate(Experiment(beam=exp.beam, detector=det, crystal=exp.crystal), backend=backend,
                         dtype="float64").image
        assert type(image) is type(alone)
        assert np.array_equal(_host(image), _host(alone))


def test_one_panel_is_simulate_bit_for_bit():
    exp = _base().replace(detector__fpixels=24, detector__spixels=20, detector__distance_mm=60.0,
                          detector__twotheta_deg=3.0)
    a = _host(simulate(exp, backend="numpy").image)
    sim = simulate_panels(exp, backend="numpy")
    assert np.array_equal(_host(sim.image)[0], a)
    st, st1 = sim.stats, simulate(exp, backend="numpy").stats
    assert (st.max_I, st.mean, st.rms, st.rmsd) == (st1.max_I, st1.mean, st1.rms, st1.rmsd)


def test_a_detector_as_a_panel_renders_the_same_image():
    exp = _base().replace(detector__fpixels=24, detector__spixels=20, detector__distance_mm=60.0,
                          detector__twotheta_deg=5.0, detector__beam_center_mm=(1.0, 1.5))
    a = _host(simulate(exp, backend="numpy").image)
    sim = simulate_panels(exp, [panel_from_detector(exp.detector)], backend="numpy")
    b = _host(sim.images[0])
    assert np.allclose(b, a, rtol=1e-9, atol=1e-9 * a.max())


def test_a_mirrored_panel_gets_a_normal_pointing_away_from_the_sample():
    p = LAYOUTS["mirrored_pair"]()[0]
    det = panel_detector(p, _base().detector)
    o = np.asarray(det.odet_vector)
    assert np.allclose(o, [1.0, 0.0, 0.0]) and math.sqrt(sum(x * x for x in det.odet_vector)) == 1.0
    assert np.dot(np.cross(p.fast_axis, p.slow_axis), o) < 0


def test_pixel_zero_corner_is_at_the_panel_origin():
    from bragg_core._backend import get_context
    from bragg_core.geometry.detector import detector_geometry

    g = get_context(backend="numpy", dtype="float64")
    exp = _base()
    for fn in LAYOUTS.values():
        for p in fn():
            dg = detector_geometry(panel_detector(p, exp.detector), g)
            assert np.allclose(np.asarray(dg.pix0_m) * 1000.0, p.origin_mm, atol=1e-12)
            f = np.asarray(p.fast_axis) / np.linalg.norm(p.fast_axis)
            assert np.allclose(np.asarray(dg.fdet), f, atol=1e-15)


def test_statistics_cover_every_panel():
    exp = _base()
    mp = MultiPanelDetector(panels=tuple(LAYOUTS["jungfrau_ring"]()), base=exp.detector)
    sim = simulate_panels(exp, mp, backend="numpy")
    vals = np.concatenate([_host(im).astype(np.float32).ravel() for im in sim.images]).astype(np.float64)
    st = sim.stats
    assert st.n_pixels == vals.size
    assert st.max_I == pytest.approx(float(vals.max()), rel=1e-7)
    assert np.argmax([_host(im).max() for im in sim.images]) == st.max_I_panel
    assert st.mean == pytest.approx(vals.mean(), rel=1e-9)
    assert st.rms == pytest.approx(math.sqrt((vals ** 2).sum() / (vals.size - 1)), rel=1e-9)
    assert st.rmsd == pytest.approx(vals.std(ddof=1), rel=1e-9)
    with pytest.raises(PanelError, match="different sizes"):
        sim.image  # noqa: B018


def test_floatfile_holds_the_panels_one_after_another(tmp_path):
    exp = _base()
    mp = MultiPanelDetector(panels=tuple(LAYOUTS["eiger_2x2"]()), base=exp.detector)
    sim = simulate_panels(exp, mp, backend="numpy")
    path = str(tmp_path / "panels.bin")
    write_panels_floatfile(path, sim.images)
    data = np.fromfile(path, dtype="<f4")
    assert data.size == 4 * 40 * 30
    assert np.array_equal(data.reshape(4, 30, 40), _host(sim.image).astype(np.float32))


def test_panels_that_cannot_be_placed_are_refused():
    base = _base().detector
    edge_on = Panel(fast_axis=(1, 0, 0), slow_axis=(0, -1, 0), origin_mm=(10, 5, -3), fpixels=4, spixels=4)
    with pytest.raises(PanelError, match="parallel to the beam"):
        panel_detector(edge_on, base)
    through = Panel(fast_axis=(0, 0, 1), slow_axis=(0, 1, 0), origin_mm=(0, 0, 0), fpixels=4, spixels=4)
    with pytest.raises(PanelError, match="through the sample"):
        panel_detector(through, base)
    with pytest.raises(PanelError, match="parallel"):
        Panel(fast_axis=(0, 0, 1), slow_axis=(0, 0, 2), origin_mm=(60, 0, 0), fpixels=4, spixels=4)
    with pytest.raises(PanelError, match="at least one panel"):
        MultiPanelDetector(panels=())


def test_simulate_renders_an_experiment_holding_several_panels():
    exp = _base()
    mp = MultiPanelDetector(panels=tuple(LAYOUTS["eiger_2x2"]()), base=exp.detector)
    sim = simulate(Experiment(beam=exp.beam, detector=mp, crystal=exp.crystal), backend="numpy")
    assert _host(sim.image).shape == (4, 30, 40)
    ref = simulate_panels(exp, mp, backend="numpy")
    assert np.array_equal(_host(sim.image), _host(ref.image))
