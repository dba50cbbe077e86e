"""-nexusfile, -cbffile, -pngfile: the files hold the rendered image and its geometry; bad requests refused."""

from __future__ import annotations

import os

import numpy as np
import pytest

from bragg_core.cli import main

pytest.importorskip("h5py", reason="NeXus output needs h5py (the nexus extra)")
pytest.importorskip("PIL", reason="PNG previews need Pillow (the png extra)")

BASE = ("-cell 50 60 70 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 80 -detpixels 24 -pixel 0.1 "
        "-phi 3 -osc 0.5 -noprogress -nonoise -nopgm").split()


def _run(argv, cwd, capsys):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        rc = main(list(argv))
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return rc, out.out, out.err


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
