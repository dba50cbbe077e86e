"""DIALS reads a rotation series of two-panel full CBF files written from the command line, every panel.

The roof of ``test_dials.py`` (two 512 x 768 panels turned 10 degrees either way, the beam inside the
second), rendered in one run from its experiment list with ``-nimages 3 -cbffile roof_####.cbf -noisefile
noise_####.img``: one CBF per image holds both panels.  dials.import gives, for each panel, the simulated
fast and slow axes and origin, pixel size and image size, the beam centre (where the beam meets the panel's
plane) within 0.1 px and the distance within 0.01 mm; the rotation axis, image range and oscillation as
simulated; the trusted range of the noise image (-1, 65535).  DIALS's experiment list (its goniometer the
multi-axis kind, with one axis, that it builds from imgCIF) reads back with the same spindle, scan and panels.
dxtbx (DIALS's Python) gives each image's pixels, panel by panel, equal to the run's noise files.

A one-panel run's NXmx file and CBF series hold its noise image by default: DIALS gets the same trusted
range, (-1, 65535), from both, and the pixels of the -noisefile images.  Skipped, with the reason, where
DIALS (or, for NeXus, h5py) is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bragg_core.cli.args import build_config, parse_args

pytestmark = pytest.mark.skipif(shutil.which("dials.import") is None,
                                reason="DIALS is not installed (apt-get install -y dials)")

FLAGS = ("-cell 79.1 79.1 38.0 90 90 90 -default_F 100 -N 8 -gauss_xtal -lambda 1 -misset 10 20 30 -phi 0 "
         "-osc 1 -phisteps 3 -fluence 1e30").split()
ENV = dict(os.environ, OMP_NUM_THREADS="2")

# DIALS's Python: the models as dxtbx builds them (every panel in the lab frame) and each image's pixels,
# panel by panel
DXTBX = ("import json, sys, numpy as np\n"
         "from dxtbx.model.experiment_list import ExperimentListFactory\n"
         "e = ExperimentListFactory.from_json_file(sys.argv[1], check_format=True)[0]\n"
         "iset = e.imageset\n"
         "out = {}\n"
         "for i in range(len(iset)):\n"
         "    for k, a in enumerate(iset.get_raw_data(i)):\n"
         "        out[f'i{i}p{k}'] = a.as_numpy_array()\n"
         "np.savez(sys.argv[2], **out)\n"
         "s0 = e.beam.get_s0()\n"
         "print(json.dumps(dict(format=iset.get_format_class().__name__, panels=[dict(\n"
         "    origin=p.get_origin(), fast=p.get_fast_axis(), slow=p.get_slow_axis(), pixel=p.get_pixel_size(),\n"
         "    size=p.get_image_size(), trusted=p.get_trusted_range(), distance=p.get_distance(),\n"
         "    centre=p.get_beam_centre_px(s0)) for p in e.detector],\n"
         "    s0=s0, wavelength=e.beam.get_wavelength(), axis=e.goniometer.get_rotation_axis(),\n"
         "    image_range=e.scan.get_image_range(), oscillation=e.scan.get_oscillation())))\n")


def _run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=ENV)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def test_two_tilted_panels_in_one_cbf_per_image_come_back_from_dials(tmp_path):
    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from bragg_core.io._imageset import geometry_from_experiment
    from bragg_core.io.dials_expt import lab_to_dials, read_expt, write_expt
    from bragg_core.io.smv import read_smv
    from bragg_core.panels import MultiPanelDetector, panel_detector
    from panel_layouts import roof

    exp = build_config(parse_args(FLAGS), ".").experiment
    mp = MultiPanelDetector(panels=tuple(roof()), base=exp.detector)
    write_expt(str(tmp_path / "roof.expt"), exp, mp, n_images=3)
    _run([sys.executable, "-m", "bragg_core", "-expt", "roof.expt", "-N", "8", "-default_F", "100", "-gauss_xtal",
          "-fluence", "1e30", "-phisteps", "3", "-nimages", "3", "-cbffile", "roof_####.cbf",
          "-noisefile", "noise_####.img", "-nopgm", "-noprogress"], tmp_path)
    _run(["dials.import", *[f"roof_{i:04d}.cbf" for i in (1, 2, 3)]], tmp_path)
    dxtbx_python = shutil.which("python3", path="/usr/bin") or "python3"
    got = json.loads(_run([dxtbx_python, "-c", DXTBX, "imported.expt", "pixels.npz"], tmp_path).splitlines()[-1])
    assert got["format"] == "FormatCBFMultiTileHierarchy"

    g = geometry_from_experiment(exp, mp, n_images=3)
    assert len(got["panels"]) == 2
    np.testing.assert_allclose(np.asarray(got["s0"]) * got["wavelength"], lab_to_dials(g.beam), atol=1e-12)
    assert got["wavelength"] == 1.0
    unit = lambda v: np.asarray(v, float) / np.linalg.norm(v)  # noqa: E731
    for p, q in zip(mp.panels, got["panels"]):
        np.testing.assert_allclose(q["fast"], lab_to_dials(unit(p.fast_axis)), atol=1e-12)
        np.testing.assert_allclose(q["slow"], lab_to_dials(unit(p.slow_axis)), atol=1e-12)
        np.testing.assert_allclose(q["origin"], lab_to_dials(p.origin_mm), atol=1e-9)
        assert q["pixel"] == [0.1, 0.1] and q["size"] == [512, 768]
        assert q["trusted"] == [-1.0, 65535.0]  # the noise image: saturated at 65535, none below 0
        # where the beam meets the panel's plane (on panel 1, off panel 0), in pixels
        want = np.asarray(panel_detector(p, mp.base).beam_center_mm) / 0.1
        np.testing.assert_allclose(q["centre"], want, atol=0.1)
        assert abs(q["distance"] - float(np.dot(p.origin_mm, p.normal))) <= 0.01
    assert got["axis"] == list(lab_to_dials(g.spindle))
    assert got["image_range"] == [1, 3] and got["oscillation"] == [0.0, 1.0]
    # and DIALS's experiment list (a one-axis goniometer built from the imgCIF axes) reads back
    back = read_expt(str(tmp_path / "imported.expt"))
    assert back.n_images == 3 and back.oscillation_deg == (0.0, 1.0) and len(back.detector.panels) == 2
    np.testing.assert_allclose(back.experiment.detector.spindle_axis, g.spindle, atol=1e-12)
    for p, q in zip(mp.panels, back.detector.panels):
        np.testing.assert_allclose(q.origin_mm, p.origin_mm, atol=1e-9)

    pixels = np.load(tmp_path / "pixels.npz")
    assert sorted(pixels.files) == sorted(f"i{i}p{k}" for i in range(3) for k in range(2))
    for i in range(3):
        for k in range(2):
            _, want = read_smv(tmp_path / f"noise_{i + 1:04d}_p{k}.img")
            assert pixels[f"i{i}p{k}"].shape == (768, 512)
            assert np.array_equal(pixels[f"i{i}p{k}"], want.astype(np.int64)), (i, k)
        assert pixels[f"i{i}p1"].max() > pixels[f"i{i}p1"].min()  # not a blank panel


def test_the_noise_image_reaches_dials_with_one_trusted_range_from_nexus_and_cbf(tmp_path):
    pytest.importorskip("h5py", reason="the NeXus writer needs h5py (pip install 'bragg_core[nexus]')")
    from bragg_core.io.smv import read_smv

    _run([sys.executable, "-m", "bragg_core", "-cell", "50", "60", "70", "90", "90", "90", "-default_F", "100",
          "-N", "5", "-lambda", "1", "-distance", "80", "-detpixels", "24", "-pixel", "0.1", "-phi", "3", "-osc",
          "0.5", "-fluence", "1e26", "-nimages", "2", "-noisefile", "n_#.img", "-nexusfile", "run.nxs",
          "-nexus_compression", "gzip", "-cbffile", "c_#.cbf", "-nopgm", "-noprogress"], tmp_path)
    dxtbx_python = shutil.which("python3", path="/usr/bin") or "python3"
    for kind, files in (("nexus", ["run.nxs"]), ("cbf", ["c_1.cbf", "c_2.cbf"])):
        _run(["dials.import", *files, f"output.experiments={kind}.expt"], tmp_path)
        got = json.loads(_run([dxtbx_python, "-c", DXTBX, f"{kind}.expt", f"{kind}.npz"], tmp_path).splitlines()[-1])
        assert got["panels"][0]["trusted"] == [-1.0, 65535.0], kind
        pixels = np.load(tmp_path / f"{kind}.npz")
        for i in range(2):
            noise = read_smv(tmp_path / f"n_{i + 1}.img")[1]
            assert np.array_equal(pixels[f"i{i}p0"], noise.astype(np.int64)), (kind, i)
