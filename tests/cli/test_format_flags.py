"""-nexusfile, -cbffile, -pngfile: the files hold the rendered image and its geometry; bad requests refused."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cli_run import run_main as _run

pytest.importorskip("h5py", reason="NeXus output needs h5py (the nexus extra)")
pytest.importorskip("PIL", reason="PNG previews need Pillow (the png extra)")

BASE = ("-cell 50 60 70 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 80 -detpixels 24 -pixel 0.1 "
        "-phi 3 -osc 0.5 -noprogress -nonoise -nopgm").split()


def test_the_three_formats_hold_the_rendered_image(tmp_path, capsys):
    from bragg_core.io.cbf import read_cbf
    from bragg_core.io.nexus import read_nexus
    from bragg_core.io.png import read_png_scale

    rc, out, err = _run(BASE + ["-nexusfile", "run.nxs", "-cbffile", "img_###.cbf", "-pngfile", "p.png",
                                "-png_scale", "log", "-nexus_compression", "gzip"], tmp_path, capsys)
    assert rc == 0, err
    img = np.fromfile(tmp_path / "floatimage.bin", dtype="<f4").reshape(24, 24)
    nx, g = read_nexus(tmp_path / "run.nxs")
    assert np.array_equal(nx, img[None])
    assert g.angles_deg.tolist() == [3.0] and g.osc_deg == 0.5 and g.wavelength_A == 1.0
    counts, gc = read_cbf(tmp_path / "img_001.cbf")
    assert np.array_equal(counts, np.rint(img).astype(np.int32))
    np.testing.assert_allclose(gc.panels[0].origin_mm, g.panels[0].origin_mm, atol=1e-12)
    assert read_png_scale(tmp_path / "p.png")["scale"] == "log"
    assert "writing img_001.cbf" in out.replace(str(tmp_path) + os.sep, "")


@pytest.mark.parametrize("extra, message", [
    (["-cbffile", "img.cbf", "-nimages", "3"], "-cbffile 'img.cbf': with -nimages 3 the name needs a run of '#'"),
    (["-pngfile", "p.png", "-png_scale", "linear"], "-png_scale must be asinh or log"),
    (["-nexusfile", "x.nxs", "-nexus_compression", "zip"], "-nexus_compression must be bslz4, gzip or none"),
    (["-nexusfile", "nodir/x.nxs"], "-nexusfile: cannot write"),
])
def test_bad_requests_are_refused_before_any_output(tmp_path, capsys, extra, message):
    rc, out, err = _run(BASE + extra, tmp_path, capsys)
    assert rc == 2
    assert message in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_a_failed_run_leaves_no_nexus_file(tmp_path, capsys, monkeypatch):
    import importlib

    cli_main = importlib.import_module("bragg_core.cli.main")
    real = cli_main._run

    def fail_after_render(cfg):
        real(cfg)
        return 1

    monkeypatch.setattr(cli_main, "_run", fail_after_render)
    rc, out, err = _run(BASE + ["-nexusfile", "run.nxs"], tmp_path, capsys)
    assert rc == 1
    assert not (tmp_path / "run.nxs").exists()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_a_series_goes_into_one_nexus_file_and_numbered_cbf_files(tmp_path, capsys):
    from bragg_core.io.cbf import read_cbf_series
    from bragg_core.io.nexus import read_nexus

    rc, out, err = _run(BASE + ["-nimages", "3", "-floatfile", "f_#.bin", "-intfile", "i_#.img",
                                "-nexusfile", "run.nxs", "-cbffile", "c_#.cbf", "-nexus_compression", "gzip"],
                        tmp_path, capsys)
    assert rc == 0, err
    nx, g = read_nexus(tmp_path / "run.nxs")
    assert nx.shape == (3, 24, 24)
    np.testing.assert_allclose(g.angles_deg, [3.0, 3.5, 4.0], atol=1e-12)
    for i in range(3):
        assert np.array_equal(nx[i], np.fromfile(tmp_path / f"f_{i + 1}.bin", dtype="<f4").reshape(24, 24))
    counts, gc = read_cbf_series([tmp_path / f"c_{i + 1}.cbf" for i in range(3)])
    assert np.array_equal(counts, np.rint(nx).astype(np.int32))
    np.testing.assert_allclose(gc.angles_deg, g.angles_deg, atol=1e-12)


def test_every_panel_of_an_experiment_list_goes_into_the_nexus_file(tmp_path, capsys):
    from bragg_core.io.dials_expt import read_expt
    from bragg_core.io.nexus import read_nexus

    expt = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "dials", "multipanel_dxtbx.expt")
    rc, out, err = _run(BASE[:BASE.index("-distance")] + ["-phi", "3", "-osc", "0.5", "-noprogress", "-nonoise",
                                                         "-nopgm", "-expt", expt, "-nexusfile", "mp.nxs",
                                                         "-pngfile", "mp.png"], tmp_path, capsys)
    assert rc == 0, err
    images, g = read_nexus(tmp_path / "mp.nxs")
    want = read_expt(expt).detector
    assert images.shape == (1, len(want.panels), want.panels[0].spixels, want.panels[0].fpixels)
    assert np.array_equal(images.reshape(-1), np.fromfile(tmp_path / "floatimage.bin", dtype="<f4"))
    for p, q in zip(want.panels, g.panels):
        np.testing.assert_allclose(q.origin_mm, p.origin_mm, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(q.fast_axis, np.asarray(p.fast_axis) / np.linalg.norm(p.fast_axis), atol=1e-9)
        np.testing.assert_allclose(q.slow_axis, np.asarray(p.slow_axis) / np.linalg.norm(p.slow_axis), atol=1e-9)
    assert (tmp_path / "mp.png").exists()


NOISY = [f for f in BASE if f != "-nonoise"] + ["-fluence", "1e26"]


def _nexus_cbf_png(tmp_path):
    from bragg_core.io.cbf import read_cbf
    from bragg_core.io.nexus import read_nexus
    from bragg_core.io.png import read_png_scale
    from bragg_core.io.smv import read_smv

    nx, g = read_nexus(tmp_path / "run.nxs")
    counts, gc = read_cbf(tmp_path / "img_001.cbf")
    noise = read_smv(tmp_path / "n.img")[1] if (tmp_path / "n.img").exists() else None
    floats = np.fromfile(tmp_path / "floatimage.bin", dtype="<f4").reshape(24, 24)
    return nx, g, counts, gc, read_png_scale(tmp_path / "p.png"), noise, floats


@pytest.mark.parametrize("model", [[], ["-readout", "3", "-gain", "2", "-psf", "gauss"]],
                         ids=["poisson", "detector_model"])
def test_the_formats_hold_the_noise_image_when_the_run_makes_one(tmp_path, capsys, model):
    rc, out, err = _run(NOISY + model + ["-noisefile", "n.img", "-nexusfile", "run.nxs", "-cbffile", "img_###.cbf",
                                         "-pngfile", "p.png", "-nexus_compression", "gzip"], tmp_path, capsys)
    assert rc == 0, err
    nx, g, counts, gc, png, noise, floats = _nexus_cbf_png(tmp_path)
    assert noise.dtype == np.uint16 and nx.dtype == np.uint16
    assert np.array_equal(nx[0], noise) and np.array_equal(counts, noise.astype(np.int32))
    assert not np.array_equal(nx[0], np.rint(floats)) and not np.array_equal(counts, np.rint(floats))
    assert png["hi"] == float(noise.max()) != float(floats.max())
    # the noise image saturates at 65535 (nothing below 0): DIALS's trusted range is (-1, 65535) from both
    assert (g.saturation_value, g.underload_value) == (65535, 0)
    assert (gc.saturation_value, gc.underload_value) == (65535, -1)


def test_format_image_float_keeps_the_noise_free_image(tmp_path, capsys):
    rc, out, err = _run(NOISY + ["-noisefile", "n.img", "-nexusfile", "run.nxs", "-cbffile", "img_###.cbf",
                                 "-pngfile", "p.png", "-nexus_compression", "gzip", "-format_image", "float"],
                        tmp_path, capsys)
    assert rc == 0, err
    nx, g, counts, gc, png, noise, floats = _nexus_cbf_png(tmp_path)
    assert nx.dtype == np.float32 and np.array_equal(nx[0], floats)
    assert np.array_equal(counts, np.rint(floats).astype(np.int32))
    assert png["hi"] == pytest.approx(float(floats.max()), rel=1e-6)
    assert not np.array_equal(counts, noise.astype(np.int32))


@pytest.mark.parametrize("extra, message", [
    (["-nexusfile", "x.nxs", "-format_image", "noise"], "-format_image noise: this run makes no noise image"),
    (["-cbffile", "x.cbf", "-format_image", "counts"], "-format_image must be noise or float, got 'counts'"),
])
def test_format_image_requests_that_cannot_work_are_refused(tmp_path, capsys, extra, message):
    rc, out, err = _run(BASE + extra, tmp_path, capsys)  # BASE has -nonoise
    assert rc == 2
    assert message in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_every_panel_of_an_experiment_list_goes_into_each_cbf_file(tmp_path, capsys):
    from bragg_core.io.cbf import read_cbf_series
    from bragg_core.io.dials_expt import read_expt
    from bragg_core.io.smv import read_smv

    expt = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "dials", "multipanel_dxtbx.expt")
    flags = NOISY[:NOISY.index("-distance")] + ["-phi", "3", "-osc", "0.5", "-noprogress", "-nopgm",
                                                 "-fluence", "1e26"]
    rc, out, err = _run(flags + ["-expt", expt, "-nimages", "2", "-cbffile", "c_#.cbf", "-noisefile", "n_#.img"],
                        tmp_path, capsys)
    assert rc == 0, err
    want = read_expt(expt).detector
    counts, g = read_cbf_series([tmp_path / "c_1.cbf", tmp_path / "c_2.cbf"])
    assert counts.shape == (2, len(want.panels), want.panels[0].spixels, want.panels[0].fpixels)
    for i in range(2):
        for k in range(len(want.panels)):
            assert np.array_equal(counts[i, k], read_smv(tmp_path / f"n_{i + 1}_p{k}.img")[1].astype(np.int32))
    for p, q in zip(want.panels, g.panels):
        np.testing.assert_allclose(q.origin_mm, p.origin_mm, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(q.fast_axis, np.asarray(p.fast_axis) / np.linalg.norm(p.fast_axis), atol=1e-9)
    np.testing.assert_allclose(g.angles_deg, [3.0, 3.5], atol=1e-12)


def test_a_cbf_of_panels_of_different_sizes_is_refused(tmp_path, capsys):
    import sys

    from bragg_core.cli.args import build_config, parse_args
    from bragg_core.io.dials_expt import write_expt
    from bragg_core.panels import MultiPanelDetector

    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from panel_layouts import mirrored_pair

    exp = build_config(parse_args(BASE), str(tmp_path)).experiment
    expt = tmp_path.parent / f"{tmp_path.name}_pair.expt"
    write_expt(str(expt), exp, MultiPanelDetector(panels=tuple(mirrored_pair()), base=exp.detector))
    flags = BASE[:BASE.index("-distance")] + ["-phi", "3", "-osc", "0.5", "-noprogress", "-nonoise", "-nopgm"]
    rc, out, err = _run(flags + ["-expt", str(expt), "-cbffile", "c.cbf"], tmp_path, capsys)
    assert rc == 2
    assert "-cbffile: the panels of a CBF file must share a size" in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []
