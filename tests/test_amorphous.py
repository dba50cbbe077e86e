"""Amorphous background (nonBragg's term) against the reference's images, on every backend."""

from __future__ import annotations

import gzip
import math
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest

from bragg_core._backend import get_context, to_numpy
from bragg_core.amorphous import amorphous_background
from bragg_core.geometry.detector import detector_geometry
from bragg_core.io.stol import BUILTIN_TABLES, StolFormatError, StolOrderWarning, builtin_table, parse_stol, read_stol
from bragg_core.nonbragg import build_request
from bragg_core.testing import assert_images_close, assert_same_backend

DATA = Path(__file__).parent / "data" / "nonbragg"
CASES = {}
for _line in (DATA / "cmd.txt").read_text().splitlines():
    if _line.strip() and not _line.startswith("#"):
        _name, *_args = shlex.split(_line)
        CASES[_name] = _args

# shortwater.stol lists 0.2 before 0.18 1/A: the reference's search of an unsorted table depends on the
# previous pixel, so pixels whose four interpolation nodes include those rows are left out of the comparison
UNSORTED_BAND_PER_A = {"shortwater_a": (0.12, 0.236)}


def _reference(name, shape):
    raw = gzip.decompress((DATA / f"{name}.bin.gz").read_bytes())
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float64)


def _stol_per_A(exp):
    """sin(theta)/lambda (1/A) at each pixel centre (one source, no oversampling), for masking only."""
    dg = detector_geometry(exp.detector, get_context())
    s, f = np.meshgrid(np.arange(exp.detector.spixels) + 0.5, np.arange(exp.detector.fpixels) + 0.5, indexing="ij")
    p = float(dg.pixel_size_m)
    pos = dg.pix0_m + (s * p)[..., None] * dg.sdet + (f * p)[..., None] * dg.fdet
    d = pos / np.linalg.norm(pos, axis=-1, keepdims=True)
    return 0.5 * np.linalg.norm(d - dg.beam, axis=-1) / float(exp.beam.wavelength_A)


# every case runs on every backend; the ones that take JAX's eager mode several seconds are marked slow
QUICK = ["nanoice_offset", "shortwater_a", "unity_molecules", "water_a", "water_b", "water_d"]


@pytest.mark.parametrize("name", QUICK)
def test_background_matches_nonbragg(name, backend):
    _check_case(name, backend)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(CASES) - set(QUICK)))
def test_background_matches_nonbragg_more_cases(name, backend):
    _check_case(name, backend)


def _check_case(name, backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StolOrderWarning)  # shortwater.stol is unsorted (see above)
        exp, kw, _ = build_request(CASES[name])
        image = amorphous_background(exp, backend=backend.name, device=backend.device, dtype="float64", **kw)
    shape = (exp.detector.spixels, exp.detector.fpixels)
    assert_same_backend(image, backend.context("float64"), shape=shape)
    ours = np.asarray(to_numpy(image), dtype=np.float64)
    ref = _reference(name, shape)
    if name in UNSORTED_BAND_PER_A:
        lo, hi = UNSORTED_BAND_PER_A[name]
        stol = _stol_per_A(exp)
        keep = (stol < lo - 0.002) | (stol >= hi + 0.002)
        assert keep.sum() > 0.3 * keep.size  # the comparison still covers a large part of the image
        ours, ref = ours[keep], ref[keep]
    assert_images_close(ours, ref, r_min=0.999999, max_rel=1e-5, what=name)


def test_float32_image_within_tolerance(backend):
    exp, kw, _ = build_request(CASES["water_b"])
    image = amorphous_background(exp, backend=backend.name, device=backend.device, dtype="float32", **kw)
    assert_same_backend(image, backend.context("float32"))
    assert_images_close(image, _reference("water_b", tuple(image.shape)), r_min=0.999999, max_rel=1e-5)


def test_scale_follows_thickness_density_and_molecules():
    exp, kw, _ = build_request(CASES["water_a"])
    base = np.asarray(amorphous_background(exp, **kw))
    double = np.asarray(amorphous_background(exp, **{**kw, "thickness_mm": 2 * kw["thickness_mm"],
                                                     "density_g_cm3": 1.5}))
    np.testing.assert_allclose(double, 3.0 * base, rtol=1e-12)
    clipped = np.asarray(amorphous_background(exp, **{**kw, "width_mm": 5.0}))  # clipped to the 0.1 mm beam
    np.testing.assert_allclose(clipped, base, rtol=1e-12)


def test_gradients_in_thickness_and_density():
    torch = pytest.importorskip("torch")
    exp, kw, _ = build_request(["-stol", "water.stol", "-detpixels", "4", "-pixel", "5", "-distance", "60"])

    def f(t, d):
        return amorphous_background(exp, "water", thickness_mm=t, density_g_cm3=d, dtype="float64")

    t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    d = torch.tensor(1.1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, d: f(t, d) * 1e-14, (t, d))


def test_builtin_tables_load_and_kinds_scale_the_abscissa():
    for name in BUILTIN_TABLES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StolOrderWarning)
            t = builtin_table(name)
        assert t.stol_per_m.size >= 4 and np.all(np.diff(t.stol_per_m) > 0)
    assert builtin_table("water").F_low == pytest.approx(2.56999)
    a = parse_stol("0 1\n0.5 2\n", kind="stol").stol_per_m
    np.testing.assert_allclose(parse_stol("0 1\n0.5 2\n", kind="4stol").stol_per_m, a / 4)
    np.testing.assert_allclose(parse_stol("0 1\n0.5 2\n", kind="Q").stol_per_m, a / (4 * math.pi))


def test_stol_reader_rules(tmp_path):
    t = parse_stol("# comment\n\n0 1 i\n0.1\n0.2, 3\n")
    assert list(t.F) == [1.0, 0.0, 3.0] and (t.F_low, t.F_high) == (1.0, 3.0)
    with pytest.warns(StolOrderWarning, match="line 3: abscissa decreases"):
        t = parse_stol("0 1\n0.3 2\n0.2 5\n")
    np.testing.assert_allclose(t.F, [1, 5, 2])
    bad = tmp_path / "bad.stol"
    bad.write_text("0 1\n0.1 x\n")
    with pytest.raises(StolFormatError, match=r"bad\.stol: line 2"):
        read_stol(bad)
    bad.write_text("0 1\n0.1 2\n0.1 3\n")
    with pytest.raises(StolFormatError, match=r"line 3: abscissa repeats that of line 2"):
        read_stol(bad)
    with pytest.raises(StolFormatError, match="cannot read"):
        read_stol(tmp_path / "missing.stol")


def test_panels_split_of_a_detector_gives_the_same_background():
    from dataclasses import replace

    from bragg_core.amorphous import amorphous_background_panels
    from bragg_core.panels import panel_from_detector

    exp, kw, _ = build_request(["-stol", "water.stol", "-detpixels", "24", "-pixel", "2", "-distance", "60",
                                "-detector_rotx", "3"])
    whole = np.asarray(amorphous_background(exp, **kw))
    top = panel_from_detector(exp.detector)
    s = np.asarray(top.slow_axis, dtype=float) / np.linalg.norm(top.slow_axis)
    upper = replace(top, spixels=10)
    lower = replace(top, spixels=14, origin_mm=tuple(np.asarray(top.origin_mm, dtype=float) + 10 * 2.0 * s))
    parts = amorphous_background_panels(exp, [upper, lower], **kw)
    np.testing.assert_allclose(np.concatenate([np.asarray(p) for p in parts]), whole, rtol=1e-9)


def test_table_row_by_guide_equals_binary_search():
    from bragg_core.physics.amorphous import Lookup, row_lookup

    g = get_context(dtype="float64")
    rng = np.random.default_rng(0)
    for name in BUILTIN_TABLES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StolOrderWarning)
            t = builtin_table(name)
        lk = Lookup(t)
        x = t.stol_per_m
        assert lk.guide is not None, name
        s = np.concatenate([rng.uniform(x[0] - 0.1 * (x[-1] - x[0]), 1.2 * x[-1], 100_000), x,
                            np.nextafter(x, -np.inf), np.nextafter(x, np.inf), [np.inf, -np.inf, 1e300]])
        assert np.array_equal(row_lookup(np, lk, lk.arrays(g), s), np.searchsorted(x, s, side="right")), name
        # a NaN argument (a degenerate geometry) reads a row of the table, never one beyond it
        with np.errstate(invalid="ignore"):
            row = row_lookup(np, lk, lk.arrays(g), np.array([np.nan, 0.0]))
        assert 0 <= row[0] <= x.size, name


@pytest.mark.parametrize("name", ["water_d", "nanoice_offset"])
def test_forked_workers_change_nothing(monkeypatch, name):
    import bragg_core.amorphous as am
    from bragg_core.engine import parallel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StolOrderWarning)
        exp, kw, _ = build_request(CASES[name])
    monkeypatch.setenv("BRAGG_CORE_FORK", "0")
    one = np.asarray(amorphous_background(exp, dtype="float64", **kw))
    monkeypatch.setattr(parallel, "MIN_FORK_PATHS", 0)
    monkeypatch.setattr(am, "_TILE_ELEMENTS", 2000)
    monkeypatch.setenv("BRAGG_CORE_THREADS", "2")
    monkeypatch.setenv("BRAGG_CORE_FORK", "1")
    calls = []
    real = parallel.run_forked
    monkeypatch.setattr(parallel, "run_forked", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    forked = np.asarray(amorphous_background(exp, dtype="float64", **kw))
    # forking needs a process without other threads and without a started JAX runtime (an earlier test's)
    assert (calls and max(calls) == 2) or not parallel.fork_available()
    assert np.array_equal(one, forked)


@pytest.mark.parametrize("name,budget", [("water_b", 3), ("water_b", 50), ("water_c", 30), ("water_curved", 1)])
def test_a_row_larger_than_a_block_is_summed_in_bounded_pieces(monkeypatch, name, budget):
    """A row whose samples (columns x sub-pixels x sources) overflow a block goes in pieces of columns and
    sub-pixel rows, each within the block (one column's sub-pixel row at least): memory stays bounded
    however large the oversampling, and the image is the reference's."""
    import bragg_core.amorphous as am

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StolOrderWarning)
        exp, kw, _ = build_request(CASES[name])
    monkeypatch.setenv("BRAGG_CORE_FORK", "0")
    whole = np.asarray(amorphous_background(exp, dtype="float64", **kw))
    os_ = exp.detector.oversample or 1
    sizes = []
    real = am.amorphous_tile

    def spy(g, dg, sources, table, rows, cols, **k):
        j0, j1 = k.get("sub_rows") or (0, os_)
        K = int(sources.incident.shape[0])
        sizes.append((int(rows.shape[0]) * int(cols.shape[0]) * (j1 - j0) * os_ * K, K * os_))
        return real(g, dg, sources, table, rows, cols, **k)

    monkeypatch.setattr(am, "_TILE_ELEMENTS", budget)
    monkeypatch.setattr(am, "amorphous_tile", spy)
    pieces = np.asarray(amorphous_background(exp, dtype="float64", **kw))
    assert len(sizes) > exp.detector.spixels  # rows were cut
    assert all(n <= max(budget, smallest) for n, smallest in sizes), max(sizes)
    np.testing.assert_allclose(pieces, whole, rtol=1e-12, atol=0)
    shape = (exp.detector.spixels, exp.detector.fpixels)
    assert_images_close(pieces, _reference(name, shape), r_min=0.999999, max_rel=1e-5, what=name)


@pytest.mark.parametrize("roi", [(10, 40, 5, 30), (-5, 12, 50, 200), (0, 79, 0, 63), (50, 40, 0, 10), (90, 99, 0, 5)])
def test_region_of_interest_is_the_only_part_evaluated(monkeypatch, roi, backend):
    """Only the region of interest (clipped to the detector) is computed; it equals the whole image's
    pixels there, and every pixel outside is 0."""
    import dataclasses

    import bragg_core.amorphous as am

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StolOrderWarning)
        exp, kw, _ = build_request(CASES["water_b"])
    whole = np.asarray(amorphous_background(exp, dtype="float64", **kw))
    det = dataclasses.replace(exp.detector, roi=roi)
    seen = set()
    real = am.amorphous_tile

    def spy(g, dg, sources, table, rows, cols, **k):
        r, c = np.asarray(to_numpy(rows)), np.asarray(to_numpy(cols))
        seen.update((int(a), int(b)) for a in r for b in c)
        return real(g, dg, sources, table, rows, cols, **k)

    monkeypatch.setattr(am, "amorphous_tile", spy)
    image = amorphous_background(exp.replace(detector__roi=roi), backend=backend.name, device=backend.device,
                                 dtype="float64", **kw)
    assert_same_backend(image, backend.context("float64"), shape=whole.shape)
    got = np.asarray(to_numpy(image))
    x0, x1, y0, y1 = det.roi_box()
    inside = np.zeros(whole.shape, dtype=bool)
    inside[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = True
    assert seen == {(int(s), int(f)) for s, f in zip(*np.nonzero(inside))}
    np.testing.assert_allclose(got[inside], whole[inside], rtol=1e-12, atol=0)
    assert np.all(got[~inside] == 0)
    assert det.roi_pixels() == int(inside.sum())


def test_gradient_passes_through_a_region_of_interest():
    torch = pytest.importorskip("torch")

    exp, kw, _ = build_request(["-stol", "water.stol", "-detpixels", "6", "-pixel", "5", "-distance", "60"])
    exp = exp.replace(detector__roi=(1, 3, 2, 4))
    t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: amorphous_background(exp, "water", thickness_mm=t,
                                                                   dtype="float64") * 1e-14, (t,))
