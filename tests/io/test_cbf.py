"""Full CBF: byte-offset code, round trips through our reader, fabio and DIALS; atomic writing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from bragg_core.experiment import Beam, Crystal, Detector, Experiment
from bragg_core.io._imageset import geometry_from_experiment
from bragg_core.io.cbf import (
    CBFFormatError,
    byte_offset_decode,
    byte_offset_encode,
    read_cbf,
    read_cbf_series,
    write_cbf,
    write_cbf_series,
)


def _exp(osc=0.5, phi=10.0, **det):
    d = dict(fpixels=16, spixels=12, pixel_size_mm=0.1, distance_mm=80.0, beam_center_mm=(0.75, 0.55))
    d.update(det)
    return Experiment(beam=Beam(wavelength_A=1.2, fluence_photons_per_m2=2e24, kahn_factor=0.9),
                      detector=Detector(**d),
                      crystal=Crystal(cell_A_deg=(50, 60, 70, 90, 90, 90), osc_deg=osc, phi_start_deg=phi,
                                      N_cells=(5, 5, 5), default_F=1))


def _images(n, s=12, f=16, seed=0):
    rng = np.random.default_rng(seed)
    imgs = rng.poisson(3.0, size=(n, s, f)).astype(np.float32)
    imgs[:, 2, 3] = 5e4      # a 16-bit difference
    imgs[:, 5, 7] = 3e9      # beyond int32: clipped
    imgs[:, 6, 1] = -1e6     # a 32-bit difference
    return imgs


def _expected_counts(im):
    return np.clip(np.rint(im.astype(np.float64)), -(2**31) + 1, 2**31 - 1).astype(np.int32)


def test_byte_offset_code_every_width():
    v = np.array([0, 5, -3, 127, -127, 128, -128, 200, -200, 32767, -32767, 32768, -32768, 40000, -40000,
                  2**31 - 1, -(2**31) + 1, 2**31 - 1, 7], dtype=np.int64)
    code = byte_offset_encode(v)
    assert np.array_equal(byte_offset_decode(code, len(v)), v)
    # widths: 1 byte for |d| <= 127, 3 for 16-bit, 7 for 32-bit, 15 for 64-bit differences
    assert byte_offset_encode([100]) == bytes([100])
    assert byte_offset_encode([128]) == b"\x80\x80\x00"
    assert byte_offset_encode([-32768]) == b"\x80\x00\x80\x00\x80\xff\xff"
    assert len(byte_offset_encode([2**31 - 1, -(2**31) + 1])) == 7 + 15
    rnd = np.random.default_rng(5).integers(-(2**31) + 1, 2**31 - 1, size=500)
    assert np.array_equal(byte_offset_decode(byte_offset_encode(rnd), 500), rnd)


def test_series_round_trip_identical_counts_and_geometry(tmp_path):
    exp = _exp()
    imgs = _images(3)
    names = write_cbf_series(str(tmp_path / "img_####.cbf"), imgs, exp)
    assert [os.path.basename(n) for n in names] == ["img_0001.cbf", "img_0002.cbf", "img_0003.cbf"]
    counts, g = read_cbf_series(names)
    assert counts.dtype == np.int32
    assert np.array_equal(counts, _expected_counts(imgs))
    ref = geometry_from_experiment(exp, n_images=3)
    p, q = ref.panels[0], g.panels[0]
    for attr in ("fast_axis", "slow_axis", "origin_mm"):
        np.testing.assert_allclose(getattr(q, attr), getattr(p, attr), rtol=1e-12, atol=1e-12)
    assert (q.fpixels, q.spixels, q.pixel_size_mm) == (16, 12, 0.1)
    np.testing.assert_allclose(g.angles_deg, [10.0, 10.5, 11.0], atol=1e-12)
    assert g.osc_deg == 0.5 and g.wavelength_A == 1.2 and g.kahn_factor == 0.9
    for v in ("beam", "polar", "spindle"):
        np.testing.assert_allclose(getattr(g, v), getattr(ref, v), atol=1e-12)
    assert g.fluence_photons_per_m2 == 2e24
    assert g.experiment.crystal.phi_start_deg == 10.0


def test_still_with_scale_and_offset(tmp_path):
    exp = _exp(osc=None, phi=2.0)
    im = _images(1)[0]
    write_cbf(tmp_path / "still.cbf", im, exp, scale=2.0, offset=40.0)
    counts, g = read_cbf(tmp_path / "still.cbf")
    assert np.array_equal(counts, _expected_counts(im.astype(np.float64) * 2.0 + 40.0))
    assert g.osc_deg is None and g.angles_deg[0] == 2.0


def test_fabio_reads_identical_pixel_values(tmp_path):
    fabio = pytest.importorskip("fabio", reason="fabio is a test dependency")
    imgs = _images(2)
    names = write_cbf_series(str(tmp_path / "f_##.cbf"), imgs, _exp())
    for nm, im in zip(names, imgs):
        data = fabio.open(nm).data
        assert data.shape == (12, 16)
        assert np.array_equal(data.astype(np.int64), _expected_counts(im).astype(np.int64))


def _two_panels(tilt_deg=20.0, size=(12, 16)):
    from bragg_core.panels import MultiPanelDetector, Panel

    t = np.radians(tilt_deg)
    p0 = Panel(fast_axis=(0, 0, 1), slow_axis=(0, -1, 0), origin_mm=(100.0, 1.3, -2.1), fpixels=16, spixels=12,
               pixel_size_mm=0.1, name="A")
    p1 = Panel(fast_axis=(-np.sin(t), 0, np.cos(t)), slow_axis=(0, -1, 0), origin_mm=(98.0, 1.3, 0.5),
               fpixels=size[1], spixels=size[0], pixel_size_mm=0.1, name="B")
    return MultiPanelDetector(panels=(p0, p1), base=Detector())


def test_multi_panel_round_trip(tmp_path):
    mp = _two_panels()
    imgs = _images(2)  # image i: panel 0 and panel 1
    names = write_cbf_series(str(tmp_path / "mp_#.cbf"), [np.stack([im, im[::-1]]) for im in imgs], _exp(), mp)
    counts, g = read_cbf_series(names)
    assert counts.shape == (2, 2, 12, 16)
    assert np.array_equal(counts[:, 0], _expected_counts(imgs))
    assert np.array_equal(counts[:, 1], _expected_counts(imgs[:, ::-1]))
    for p, q in zip(mp.panels, g.panels):
        for attr in ("fast_axis", "slow_axis", "origin_mm"):
            np.testing.assert_allclose(getattr(q, attr), np.asarray(getattr(p, attr), float) /
                                       (1.0 if attr == "origin_mm" else np.linalg.norm(getattr(p, attr))),
                                       rtol=1e-12, atol=1e-12)
        assert (q.fpixels, q.spixels, q.pixel_size_mm) == (16, 12, 0.1)
    ref = geometry_from_experiment(_exp(), mp, n_images=2)
    np.testing.assert_allclose(g.angles_deg, [10.0, 10.5], atol=1e-12)
    assert g.osc_deg == 0.5 and g.wavelength_A == 1.2
    for v in ("beam", "spindle", "polar"):
        np.testing.assert_allclose(getattr(g, v), getattr(ref, v), atol=1e-12)


def test_fabio_reads_single_array_files_only(tmp_path):
    """fabio's CBF reader takes the item ``_array_data.data``; a multi-panel file loops over its arrays."""
    fabio = pytest.importorskip("fabio", reason="fabio is a test dependency")
    (name,) = write_cbf_series(str(tmp_path / "mp_#.cbf"), [np.stack([_images(1)[0]] * 2)], _exp(), _two_panels())
    with pytest.raises(Exception, match="_array_data.data"):
        fabio.open(name)


@pytest.mark.skipif(shutil.which("dials.import") is None, reason="DIALS (dials.import) is not installed")
def test_dials_import_reads_every_panel(tmp_path):
    from bragg_core.io.dials_expt import parse_expt

    mp = _two_panels()
    imgs = _images(2)
    names = write_cbf_series(str(tmp_path / "mp_####.cbf"), [np.stack([im, im[::-1]]) for im in imgs], _exp(), mp)
    r = subprocess.run(["dials.import", *names, "output.experiments=mp.expt"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads((tmp_path / "mp.expt").read_text())
    gon = doc["goniometer"][0]  # an imgCIF goniometer is read as a (one-)axis goniometer, which we do not parse
    assert gon["axes"][gon["scan_axis"]] == [1.0, 0.0, 0.0]
    del doc["experiment"][0]["goniometer"]
    assert doc["scan"][0]["image_range"] == [1, 2]
    assert doc["scan"][0]["oscillation"] == pytest.approx([10.0, 0.5], abs=1e-12)
    back = parse_expt(doc, "mp.expt")
    assert len(back.detector.panels) == 2
    for p, q in zip(mp.panels, back.detector.panels):
        for attr in ("fast_axis", "slow_axis", "origin_mm"):
            want = np.asarray(getattr(p, attr), float)
            np.testing.assert_allclose(getattr(q, attr), want if attr == "origin_mm" else want / np.linalg.norm(want),
                                       atol=1e-9)
        assert (q.fpixels, q.spixels, q.pixel_size_mm) == (16, 12, 0.1)


def test_bad_requests_and_bad_files_named(tmp_path):
    with pytest.raises(ValueError, match="share a size"):
        write_cbf(tmp_path / "x.cbf", [np.zeros((12, 16)), np.zeros((8, 10))], _exp(), _two_panels(size=(8, 10)))
    assert not (tmp_path / "x.cbf").exists()
    (tmp_path / "bad.cbf").write_bytes(b"hello")
    with pytest.raises(CBFFormatError, match="bad.cbf"):
        read_cbf(tmp_path / "bad.cbf")
    good = tmp_path / "good.cbf"
    write_cbf(good, _images(1)[0], _exp())
    raw = good.read_bytes()
    (tmp_path / "cut.cbf").write_bytes(raw[:raw.index(b"\x0c\x1a\x04\xd5") + 14])
    with pytest.raises(CBFFormatError, match="cut.cbf.*truncated"):
        read_cbf(tmp_path / "cut.cbf")


def test_failure_midway_leaves_no_partial_file(tmp_path, monkeypatch):
    import bragg_core.io.atomic as atomic

    calls = {"n": 0}
    real = atomic._write_all

    def fail_second(fd, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(atomic, "_write_all", fail_second)
    with pytest.raises(OSError, match="img_0002.cbf"):
        write_cbf_series(str(tmp_path / "img_####.cbf"), _images(3), _exp())
    assert sorted(os.listdir(tmp_path)) == ["img_0001.cbf"]  # complete; nothing of image 2


@pytest.mark.skipif(shutil.which("dials.import") is None, reason="DIALS (dials.import) is not installed")
def test_dials_import_reads_the_simulated_geometry(tmp_path):
    exp = _exp(osc=0.3, phi=5.0, distance_mm=92.5, beam_center_mm=(0.61, 0.47))
    names = write_cbf_series(str(tmp_path / "d_####.cbf"), _images(3), exp)
    r = subprocess.run(["dials.import", *names, "output.experiments=d.expt"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads((tmp_path / "d.expt").read_text())
    (panel,) = doc["detector"][0]["panels"]
    f, s, o = (np.asarray(panel[k], float) for k in ("fast_axis", "slow_axis", "origin"))
    n = np.cross(f, s)
    b = -np.asarray(doc["beam"][0]["direction"], float)
    d = (o @ n) / (b @ n)
    q = d * b - o
    centre = np.array([q @ f, q @ s]) / panel["pixel_size"][0]
    g = geometry_from_experiment(exp, n_images=3)
    np.testing.assert_allclose(centre, g.beam_centre_px(0), atol=0.1)
    assert abs(o @ n) == pytest.approx(92.5, abs=0.01)
    gon = doc["goniometer"][0]  # an imgCIF goniometer is read as a (one-)axis goniometer
    axis = gon["rotation_axis"] if "rotation_axis" in gon else gon["axes"][gon["scan_axis"]]
    np.testing.assert_allclose(axis, [1.0, 0.0, 0.0], atol=1e-12)
    scan = doc["scan"][0]
    assert scan["image_range"] == [1, 3]
    assert scan["oscillation"] == pytest.approx([5.0, 0.3], abs=1e-9)
    assert doc["beam"][0]["wavelength"] == pytest.approx(1.2, rel=1e-9)



def test_the_read_experiment_renders_the_same_image(tmp_path):
    from bragg_core import simulate

    exp = _exp(fpixels=24, spixels=20, distance_mm=50.0)
    a = np.asarray(simulate(exp, backend="numpy", dtype="float64").image)
    assert a.max() > 0
    write_cbf(tmp_path / "r.cbf", a, exp)
    _, g = read_cbf(tmp_path / "r.cbf", base=exp)
    b = np.asarray(simulate(g.experiment, backend="numpy", dtype="float64").image)
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * a.max())


def test_a_uint16_noise_image_saturates_at_65535_as_in_nexus(tmp_path):
    from bragg_core.noise import noise_image

    noisy = noise_image(_images(1)[0].clip(0, 1e4), adc_offset=40.0, rng=np.random.default_rng(3)).image
    assert noisy.dtype == np.uint16
    write_cbf(tmp_path / "n.cbf", noisy, _exp())
    counts, g = read_cbf(tmp_path / "n.cbf")
    assert np.array_equal(counts, noisy.astype(np.int32))
    assert (g.saturation_value, g.underload_value) == (65535.0, -1.0)
    write_cbf(tmp_path / "f.cbf", noisy.astype(np.float32), _exp())  # a float image: no type to take it from
    assert read_cbf(tmp_path / "f.cbf")[1].saturation_value == 2**31 - 1
