"""NeXus NXmx: round trips through our reader, the ``nxmx`` parser and DIALS; atomic writing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from bragg_core.experiment import Beam, Crystal, Detector, Experiment
from bragg_core.io._imageset import LAB_TO_MCSTAS
from bragg_core.io.atomic import OutputError
from bragg_core.panels import MultiPanelDetector, Panel

h5py = pytest.importorskip("h5py", reason="NeXus files need h5py (the nexus extra)")
from bragg_core.io.nexus import NexusWriter, read_nexus, read_nexus_frame, write_nexus  # noqa: E402

try:
    import hdf5plugin  # noqa: F401

    COMPRESSIONS = ["bslz4", "gzip"]
except ImportError:
    COMPRESSIONS = ["gzip"]


def _exp(osc=0.5, phi=10.0, **det):
    d = dict(fpixels=16, spixels=12, pixel_size_mm=0.1, distance_mm=80.0, beam_center_mm=(0.75, 0.55))
    d.update(det)
    return Experiment(beam=Beam(wavelength_A=1.2, fluence_photons_per_m2=2e24, beam_size_mm=0.05, kahn_factor=0.9),
                      detector=Detector(**d),
                      crystal=Crystal(cell_A_deg=(50, 60, 70, 90, 90, 90), osc_deg=osc, phi_start_deg=phi,
                                      N_cells=(5, 5, 5), default_F=1))


def _images(n, s=12, f=16, seed=0):
    return np.random.default_rng(seed).poisson(3.0, size=(n, s, f)).astype(np.float32) * 1.25


def _two_panels():
    p0 = Panel(fast_axis=(0, 0, 1), slow_axis=(0, -1, 0), origin_mm=(100.0, 1.3, -2.1), fpixels=16, spixels=12,
               pixel_size_mm=0.1, thickness_um=450.0, material="Si", name="A")
    t = np.radians(20.0)  # tilted about the slow axis
    p1 = Panel(fast_axis=(-np.sin(t), 0, np.cos(t)), slow_axis=(0, -1, 0), origin_mm=(98.0, 1.3, 0.5), fpixels=10,
               spixels=8, pixel_size_mm=0.1, thickness_um=450.0, material="Si", name="B")
    return MultiPanelDetector(panels=(p0, p1), base=Detector())


def _same_panels(a, b, rel=1e-12):
    assert len(a.panels) == len(b.panels)
    for p, q in zip(a.panels, b.panels):
        for attr in ("fast_axis", "slow_axis", "origin_mm"):
            np.testing.assert_allclose(np.asarray(q.__getattribute__(attr), float),
                                       np.asarray(p.__getattribute__(attr), float), rtol=rel, atol=1e-12)
        assert (q.fpixels, q.spixels) == (p.fpixels, p.spixels)
        assert q.pixel_size_mm == pytest.approx(p.pixel_size_mm, rel=rel)
        assert q.thickness_um == pytest.approx(p.thickness_um, rel=rel)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_rotation_series_round_trip_identical_arrays_and_geometry(tmp_path, compression):
    exp = _exp()
    imgs = _images(4)
    path = tmp_path / "series.nxs"
    g = write_nexus(path, imgs, exp, compression=compression)
    out, back = read_nexus(path)
    assert out.dtype == np.float32 and np.array_equal(out, imgs)
    _same_panels(g.detector, back.detector)
    np.testing.assert_allclose(back.angles_deg, [10.0, 10.5, 11.0, 11.5], rtol=0, atol=1e-12)
    assert back.osc_deg == 0.5
    assert back.wavelength_A == 1.2
    assert back.fluence_photons_per_m2 == pytest.approx(2e24, rel=1e-12)
    assert back.beam_size_mm == pytest.approx(0.05, rel=1e-12)
    assert back.kahn_factor == pytest.approx(0.9, rel=1e-12)
    for v in ("beam", "polar", "spindle"):
        np.testing.assert_allclose(getattr(back, v), getattr(g, v), atol=1e-12)
    e = back.experiment
    assert e.crystal.phi_start_deg == 10.0 and e.crystal.osc_deg == 0.5
    assert e.beam.wavelength_A == 1.2
    # one chunk per image, compressed
    with h5py.File(path) as f:
        d = f["/entry/data/data"]
        assert d.chunks == (1, 12, 16)
        assert d.compression == "gzip" if compression == "gzip" else ("32008" in d._filters)
    one, _ = read_nexus_frame(path, 2)
    assert np.array_equal(one, imgs[2])


def test_integer_stills_stack_with_a_wavelength_per_shot(tmp_path):
    exp = _exp(osc=None, phi=3.0)
    imgs = _images(3) * 4.0
    path = tmp_path / "shots.nxs"
    with NexusWriter(path, exp, dtype="int32", compression="gzip", saturation_value=60000, underload_value=-1) as w:
        for k, im in enumerate(imgs):
            w.append(im, wavelength_A=1.0 + 0.01 * k)
    out, back = read_nexus(path)
    assert out.dtype == np.int32 and np.array_equal(out, np.rint(imgs).astype(np.int32))
    assert back.osc_deg is None
    np.testing.assert_array_equal(back.angles_deg, [3.0, 3.0, 3.0])
    np.testing.assert_allclose(back.wavelengths_A, [1.0, 1.01, 1.02], rtol=1e-15)
    assert (back.saturation_value, back.underload_value) == (60000, -1)
    with h5py.File(path) as f:
        assert f["/entry/sample/depends_on"][()] == b"."


def test_multi_panel_round_trip(tmp_path):
    mp = _two_panels()
    exp = _exp()
    rng = np.random.default_rng(3)
    frames = [[rng.random((12, 16), dtype=np.float32), rng.random((8, 10), dtype=np.float32)] for _ in range(2)]
    path = tmp_path / "mp.nxs"
    with NexusWriter(path, exp, mp, n_images=2) as w:
        for fr in frames:
            w.append(fr)
    out, back = read_nexus(path)
    assert isinstance(out, list) and len(out) == 2
    for k in range(2):
        assert np.array_equal(out[k], np.stack([fr[k] for fr in frames]))
    _same_panels(mp, back.detector)
    assert [p.name for p in back.detector.panels] == ["A", "B"]


def test_nxmx_parser_reads_the_simulated_geometry(tmp_path):
    nxmx = pytest.importorskip("nxmx", reason="the nxmx parser is a test dependency")
    mp = _two_panels()
    exp = _exp(osc=0.25, phi=-4.0)
    path = tmp_path / "mp.nxs"
    with NexusWriter(path, exp, mp) as w:
        for _ in range(3):
            w.append([np.zeros((12, 16)), np.ones((8, 10))])
    with h5py.File(path) as f:
        entry = nxmx.NXmx(f).entries[0]
        det = entry.instruments[0].detectors[0]
        assert len(det.modules) == 2
        for p, m in zip(mp.panels, det.modules):
            f_m = LAB_TO_MCSTAS @ (np.asarray(p.fast_axis, float) / np.linalg.norm(p.fast_axis))
            s_m = LAB_TO_MCSTAS @ (np.asarray(p.slow_axis, float) / np.linalg.norm(p.slow_axis))
            o_m = LAB_TO_MCSTAS @ np.asarray(p.origin_mm, float)
            np.testing.assert_allclose(m.fast_pixel_direction.vector, f_m, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(m.slow_pixel_direction.vector, s_m, rtol=1e-9, atol=1e-12)
            A = nxmx.get_cumulative_transformation(nxmx.get_dependency_chain(m.fast_pixel_direction.depends_on))
            np.testing.assert_allclose(A[0, :3, 3], o_m, rtol=1e-9, atol=1e-12)
            assert m.fast_pixel_direction[()].to("mm").magnitude[0] == pytest.approx(0.1, rel=1e-9)
            assert m.slow_pixel_direction[()].to("mm").magnitude[0] == pytest.approx(0.1, rel=1e-9)
        beam = entry.instruments[0].beams[0]
        assert beam.incident_wavelength.to("angstrom").magnitude == pytest.approx(1.2, rel=1e-9)
        omega = entry.samples[0].depends_on
        assert omega.transformation_type == "rotation"
        np.testing.assert_allclose(omega[()].to("deg").magnitude, [-4.0, -3.75, -3.5], rtol=1e-9)
        np.testing.assert_allclose(omega.vector, LAB_TO_MCSTAS @ np.array([0.0, 0.0, 1.0]), atol=1e-12)
        assert omega.increment_set.to("deg").magnitude == pytest.approx(0.25, rel=1e-9)
        assert det.sensor_material == "Si"
        assert det.sensor_thickness.to("mm").magnitude == pytest.approx(0.45, rel=1e-9)


def test_failure_midway_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "run.nxs"
    path.write_bytes(b"old contents")
    exp = _exp()
    w = NexusWriter(path, exp, n_images=5, compression="gzip")
    w.append(_images(1)[0])
    real = h5py.Dataset.__setitem__

    def full_disk(self, key, value):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full_disk)
    with pytest.raises(OutputError, match="run.nxs"):
        w.append(_images(1)[0])
    monkeypatch.setattr(h5py.Dataset, "__setitem__", real)
    assert path.read_bytes() == b"old contents"
    assert sorted(os.listdir(tmp_path)) == ["run.nxs"]  # no temporary left behind
    # an exception inside the with-block discards too
    with pytest.raises(RuntimeError):
        with NexusWriter(tmp_path / "new.nxs", exp) as w2:
            w2.append(_images(1)[0])
            raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == ["run.nxs"]


def test_missing_directory_and_bad_images_are_refused(tmp_path):
    exp = _exp()
    with pytest.raises(OutputError, match="no such directory"):
        NexusWriter(tmp_path / "nope" / "x.nxs", exp)
    with NexusWriter(tmp_path / "x.nxs", exp) as w:
        with pytest.raises(ValueError, match="12 x 16"):
            w.append(np.zeros((16, 12)))
        w.append(np.zeros((12, 16)))
    assert read_nexus(tmp_path / "x.nxs")[0].shape == (1, 12, 16)


def _dials_import(path, tmp_path, name):
    env = dict(os.environ)
    try:
        import hdf5plugin

        env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH  # DIALS's HDF5 finds bitshuffle there
    except ImportError:
        pass
    out = tmp_path / f"{name}.expt"
    r = subprocess.run(["dials.import", str(path), f"output.experiments={out}"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return json.loads(out.read_text())


def _beam_centre_px(panel, s0_dir):
    f, s, o = (np.asarray(panel[k], float) for k in ("fast_axis", "slow_axis", "origin"))
    n = np.cross(f, s)
    b = -np.asarray(s0_dir, float)  # DIALS stores the sample-to-source direction
    d = (o @ n) / (b @ n)
    q = d * b - o
    px = panel["pixel_size"][0]
    return np.array([q @ f, q @ s]) / px, abs(o @ n)


@pytest.mark.skipif(shutil.which("dials.import") is None, reason="DIALS (dials.import) is not installed")
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_dials_import_reads_the_simulated_geometry(tmp_path, compression):
    from bragg_core.io._imageset import geometry_from_experiment

    exp = _exp(osc=0.3, phi=5.0, distance_mm=92.5, beam_center_mm=(0.61, 0.47))
    path = tmp_path / "d.nxs"
    write_nexus(path, _images(3), exp, compression=compression)
    doc = _dials_import(path, tmp_path, "d")
    g = geometry_from_experiment(exp, n_images=3)
    (panel,) = doc["detector"][0]["panels"]
    centre, dist = _beam_centre_px(panel, doc["beam"][0]["direction"])
    np.testing.assert_allclose(centre, g.beam_centre_px(0), atol=0.1)
    assert dist == pytest.approx(92.5, abs=0.01)
    np.testing.assert_allclose(doc["goniometer"][0]["rotation_axis"], [1.0, 0.0, 0.0], atol=1e-12)
    from bragg_core.io.dials_expt import parse_expt

    back = parse_expt(doc, "d.expt")
    assert back.n_images == 3
    assert back.oscillation_deg == pytest.approx((5.0, 0.3), abs=1e-9)
    assert doc["beam"][0]["wavelength"] == pytest.approx(1.2, rel=1e-9)


@pytest.mark.skipif(shutil.which("dials.import") is None, reason="DIALS (dials.import) is not installed")
def test_dials_import_reads_every_panel(tmp_path):
    mp = _two_panels()
    path = tmp_path / "mp.nxs"
    with NexusWriter(path, _exp(), mp, compression="gzip") as w:
        for _ in range(2):
            w.append([np.zeros((12, 16)), np.ones((8, 10))])
    doc = _dials_import(path, tmp_path, "mp")
    from bragg_core.io.dials_expt import parse_expt

    back = parse_expt(doc, "mp.expt")
    _same_panels(mp, back.detector, rel=1e-9)


def test_append_takes_any_backend_array(tmp_path, backend):
    imgs = _images(2)
    path = tmp_path / "b.nxs"
    with NexusWriter(path, _exp(), compression="gzip") as w:
        for im in imgs:
            w.append(backend.asarray(im, "float32"))
    assert np.array_equal(read_nexus(path)[0], imgs)


@pytest.mark.skipif(shutil.which("dials.import") is None, reason="DIALS (dials.import) is not installed")
def test_dials_import_reads_a_stack_of_shots_as_stills(tmp_path):
    path = tmp_path / "shots.nxs"
    with NexusWriter(path, _exp(osc=None), compression="gzip") as w:
        for k in range(3):
            w.append(np.full((12, 16), float(k)), wavelength_A=1.0 + 0.1 * k)
    doc = _dials_import(path, tmp_path, "shots")
    assert len(doc["experiment"]) == 3 and doc["scan"] == [] and doc["goniometer"] == []
    assert [b["wavelength"] for b in doc["beam"]] == pytest.approx([1.0, 1.1, 1.2], rel=1e-12)


def test_the_read_experiment_renders_the_same_image(tmp_path):
    from bragg_core import simulate

    exp = _exp(fpixels=24, spixels=20, distance_mm=50.0)
    a = np.asarray(simulate(exp, backend="numpy", dtype="float64").image)
    assert a.max() > 0
    write_nexus(tmp_path / "r.nxs", a.astype(np.float32), exp)
    _, g = read_nexus(tmp_path / "r.nxs", base=exp)  # base: the crystal, which the file does not hold
    assert g.experiment.detector.convention == "custom"
    b = np.asarray(simulate(g.experiment, backend="numpy", dtype="float64").image)
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * a.max())


def test_a_beam_spectrum_is_recorded_beside_the_nominal_wavelength(tmp_path):
    from dataclasses import replace

    exp = _exp()
    exp = replace(exp, beam=replace(exp.beam, dispersion_percent=2.0, dispersion_steps=5))
    write_nexus(tmp_path / "s.nxs", _images(1), exp)
    _, g = read_nexus(tmp_path / "s.nxs")
    assert g.wavelength_A == 1.2  # what DIALS reads: one wavelength
    np.testing.assert_allclose(g.spectrum_A, 1.2 * (1 + np.linspace(-0.01, 0.01, 5)), rtol=1e-12)
    np.testing.assert_allclose(g.spectrum_weights, np.full(5, 0.2), rtol=1e-12)
    write_nexus(tmp_path / "m.nxs", _images(1), _exp())
    assert read_nexus(tmp_path / "m.nxs")[1].spectrum_A is None
