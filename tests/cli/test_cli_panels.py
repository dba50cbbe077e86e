"""Command line: -nimages, -exptfile, -expt, -geom, -dials_header."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bragg_core.cli.args import build_config, parse_args
from bragg_core.io import parse_smv_header
from bragg_core.simulate import simulate_panels

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEOM = os.path.join(HERE, "data", "geom", "jungfrau_like.geom")
BASE = ("-cell 50 60 70 90 90 90 -misset 10 20 30 -default_F 100 -N 5 -lambda 1 -distance 60 -detpixels 24 "
        "-phi 2 -osc 0.5 -phisteps 2 -oversample 1 -nopgm -noprogress").split()


def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "bragg_core", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _f32(path):
    return np.fromfile(path, dtype="<f4")


def test_nimages_writes_numbered_images_each_the_single_image_at_its_phi(tmp_path):
    r = _cli([*BASE, "-nimages", "3", "-noisefile", "n_##.img", "-floatfile", "f_#.bin", "-exptfile", "s.expt"],
             tmp_path)
    assert r.returncode == 0, r.stderr
    names = sorted(os.listdir(tmp_path))
    assert {"n_01.img", "n_02.img", "n_03.img", "f_1.bin", "f_2.bin", "f_3.bin", "intimage_1.img",
            "s.expt"} <= set(names)
    one = tmp_path / "one"
    one.mkdir()
    r1 = _cli([*BASE, "-phi", "3", "-floatfile", "f.bin", "-nonoise"], one)  # image 3 starts at 2 + 2 * 0.5
    assert r1.returncode == 0, r1.stderr
    assert np.array_equal(_f32(tmp_path / "f_3.bin"), _f32(one / "f.bin"))
    doc = json.load(open(tmp_path / "s.expt"))
    assert doc["scan"][0]["image_range"] == [1, 3] and doc["scan"][0]["oscillation"] == [2.0, 0.5]
    assert doc["imageset"][0]["template"] == str(tmp_path / "n_##.img")
    assert doc["detector"][0]["panels"][0]["pedestal"] == 40.0


@pytest.mark.parametrize("args, message", [
    (["-nimages", "2", "-noisefile", "plain.img"], "needs a run of '#'"),
    (["-nimages", "2", "-osc", "0"], "needs -osc"),
    (["-nimages", "0"], "-nimages must be from 1"),
    (["-expt", "missing.expt"], "-expt"),
    (["-geom", GEOM, "-expt", "x.expt"], "give one"),
])
def test_bad_series_and_detector_flags_exit_2_and_write_nothing(tmp_path, args, message):
    r = _cli([*BASE, *args], tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert os.listdir(tmp_path) == []


def test_bad_files_name_file_and_field(tmp_path):
    doc = json.load(open(os.path.join(HERE, "data", "dials", "multipanel_dxtbx.expt")))
    doc["detector"][0]["panels"][1]["pixel_size"] = [0.2, 0.3]
    (tmp_path / "bad.expt").write_text(json.dumps(doc))
    (tmp_path / "bad.geom").write_text("clen = /det/clen\nres = 10000\n")
    before = set(os.listdir(tmp_path))
    r = _cli([*BASE, "-expt", "bad.expt"], tmp_path)
    assert r.returncode == 2 and "bad.expt: detector[0].panels[1].pixel_size" in r.stderr, r.stderr
    r = _cli([*BASE, "-geom", "bad.geom"], tmp_path)
    assert r.returncode == 2 and "bad.geom, line 1" in r.stderr and "HDF5 path" in r.stderr, r.stderr
    assert set(os.listdir(tmp_path)) == before


def test_exptfile_then_expt_renders_the_same_image(tmp_path):
    flags = [*BASE, "-twotheta", "7", "-Xbeam", "1.0", "-Ybeam", "1.6", "-detector_rotz", "4"]
    r = _cli([*flags, "-floatfile", "a.bin", "-exptfile", "a.expt", "-nonoise"], tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli(["-expt", "a.expt", "-N", "5", "-default_F", "100", "-phisteps", "2", "-oversample", "1", "-polar", "0",
              "-floatfile", "b.bin", "-nonoise", "-nopgm", "-noprogress"], tmp_path)
    assert r.returncode == 0, r.stderr
    a, b = _f32(tmp_path / "a.bin"), _f32(tmp_path / "b.bin")
    assert a.max() > 0
    assert np.allclose(b, a, rtol=1e-5, atol=1e-6 * a.max())


def test_geom_writes_every_panel_into_the_float_file(tmp_path):
    flags = "-cell 79.1 79.1 38.0 90 90 90 -default_F 100 -N 5 -misset 10 20 30 -oversample 1".split()
    r = _cli(["-geom", GEOM, *flags, "-floatfile", "jf.bin", "-exptfile", "jf.expt", "-nopgm", "-noprogress"],
             tmp_path)
    assert r.returncode == 0, r.stderr
    assert "all 8 panels: max_I" in r.stdout
    data = _f32(tmp_path / "jf.bin").reshape(8, 32, 64)
    cfg = build_config(parse_args(["-geom", GEOM, *flags]), ".")
    sim = simulate_panels(cfg.experiment, cfg.panels, backend="numpy")
    assert np.array_equal(data, np.asarray(sim.image, dtype=np.float32))
    assert len(json.load(open(tmp_path / "jf.expt"))["detector"][0]["panels"]) == 8
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("noiseimage")) == \
        [f"noiseimage_p{k}.img" for k in range(8)]


def test_dials_header_is_opt_in(tmp_path):
    flags = [*BASE, "-Xbeam", "1.0", "-Ybeam", "1.6", "-nonoise"]
    assert _cli([*flags, "-intfile", "ref.img"], tmp_path).returncode == 0
    assert _cli([*flags, "-intfile", "ours.img", "-dials_header"], tmp_path).returncode == 0
    ref = parse_smv_header(open(tmp_path / "ref.img", "rb").read())
    ours = parse_smv_header(open(tmp_path / "ours.img", "rb").read())
    assert "ADC_OFFSET" not in ref and float(ours["ADC_OFFSET"]) == 40.0
    # MOSFLM: Fbeam = Ybeam + p/2 = 1.65, Sbeam = Xbeam + p/2 = 1.05; DIALS reads X + p and 24 p - Y + p
    assert float(ours["BEAM_CENTER_X"]) == pytest.approx(1.65 - 0.1)
    assert float(ours["BEAM_CENTER_Y"]) == pytest.approx(2.4 - 1.05 + 0.1)
    assert {k: v for k, v in ref.items() if not k.startswith(("BEAM_CENTER", "HEADER"))} == \
        {k: v for k, v in ours.items() if not k.startswith(("BEAM_CENTER", "HEADER", "ADC"))}
    assert open(tmp_path / "ref.img", "rb").read()[512:] == open(tmp_path / "ours.img", "rb").read()[512:]
