"""DIALS as the real client: images and experiment lists written by bragg_core, processed by DIALS.

* A 20-image rotation series (tetragonal 79.1 79.1 38.0, misset 10 20 30, 1 degree per image in 3 phi
  steps, 1024^2 at 150 mm, 1 A, beam off centre at -Xbeam 40 -Ybeam 60, -twotheta 15, peaks below
  saturation) written with ``-nimages 20 -noisefile img_####.img -exptfile sim.expt`` goes through
  dials.import (with the experiment list as the reference geometry), dials.find_spots and dials.index:
  the cell within 0.5% on every edge, >= 80% of the strong spots indexed, RMSD <= 0.5 px; dials.show
  gives the simulated beam centre within 0.1 px and the distance within 0.01 mm.
* ``-dials_header``: an untilted, off-centre image imported from its SMV header alone has the simulated
  beam centre (0.1 px) and pedestal (the ADC offset); the reference's header is half a pixel off.
* A multi-panel experiment list loads in dxtbx with every panel where bragg_core put it.
* Two panels tilted 10 degrees either way (a roof, the beam 2 mm inside the second), rendered in one
  run from a multi-panel experiment list with ``-nimages 20 -nexusfile roof.nxs`` (SMV holds one panel; the
  NeXus file holds both): dials.import sees both panels where they were simulated (each panel's distance
  within 0.01 mm, the beam centre on its panel within 0.1 px), and dials.find_spots and dials.index meet the
  same cell, indexed-fraction and RMSD limits.

Skipped, with the reason, where DIALS is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bragg_core._backend import get_context, to_numpy
from bragg_core.cli.args import build_config, parse_args
from bragg_core.geometry.detector import detector_geometry
from dials_index import index_and_check_cell

DIALS = shutil.which("dials.import")
pytestmark = pytest.mark.skipif(DIALS is None, reason="DIALS is not installed (apt-get install -y dials)")

SERIES = ("-cell 79.1 79.1 38.0 90 90 90 -default_F 100 -N 8 -gauss_xtal -lambda 1 -distance 150 "
          "-detpixels 1024 -misset 10 20 30 -phi 0 -osc 1 -phisteps 3 -Xbeam 40 -Ybeam 60 -twotheta 15 "
          "-fluence 1e30").split()
ENV = dict(os.environ, OMP_NUM_THREADS="2")


def _run(cmd, cwd, timeout=600):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _bragg(args, cwd):
    return _run([sys.executable, "-m", "bragg_core", *args, "-noprogress"], cwd)


def _true_beam_centre_px(flags):
    """Where the beam meets the detector plane, in pixels (fast, slow), and the plane's distance (mm)."""
    g = get_context(backend="numpy", dtype="float64")
    dg = detector_geometry(build_config(parse_args(list(flags)), ".").experiment.detector, g)
    h = lambda v: np.asarray(to_numpy(v), dtype=np.float64)  # noqa: E731
    pix0, f, s, o, b = h(dg.pix0_m), h(dg.fdet), h(dg.sdet), h(dg.odet), h(dg.beam)
    t = (pix0 @ o) / (b @ o)
    q = t * b - pix0
    px = float(h(dg.pixel_size_m))
    return q @ f / px, q @ s / px, 1000.0 * float(pix0 @ o)


def _show_beam_centre(expt, cwd):
    out = _run(["dials.show", expt], cwd)
    m = re.search(r"Beam centre:\s*\n\s*mm:.*\n\s*px:\s*\(([-\d.]+),\s*([-\d.]+)\)", out)
    d = re.search(r"distance:\s*([-\d.]+)", out)
    assert m and d, out[-2000:]
    return float(m.group(1)), float(m.group(2)), float(d.group(1)), out


@pytest.mark.slow
def test_rotation_series_with_offset_beam_and_two_theta_indexes_in_dials(tmp_path):
    out = _bragg([*SERIES, "-nimages", "20", "-noisefile", "img_####.img", "-exptfile", "sim.expt", "-nopgm"],
                 tmp_path)
    assert "(0 overloads)" in out and "overloads)" in out
    assert all(f"({n} overloads)" not in out for n in range(1, 100))  # peaks below saturation
    assert sorted(p.name for p in tmp_path.glob("img_*.img")) == [f"img_{i:04d}.img" for i in range(1, 21)]
    _run(["dials.import", f"template={tmp_path / 'img_####.img'}", "reference_geometry=sim.expt"], tmp_path)
    index_and_check_cell(_run, tmp_path)

    fx, fy, dist, _ = _show_beam_centre("imported.expt", tmp_path)
    tf, ts, tdist = _true_beam_centre_px(SERIES)
    assert abs(fx - tf) <= 0.1 and abs(fy - ts) <= 0.1, ((fx, fy), (tf, ts))
    assert abs(dist - tdist) <= 0.01, (dist, tdist)


SINGLE = ("-cell 79.1 79.1 38.0 90 90 90 -default_F 100 -N 8 -gauss_xtal -lambda 1 -distance 120 "
          "-detpixels 256 -pixel 0.2 -misset 10 20 30 -phi 0 -osc 1 -phisteps 3 -Xbeam 20 -Ybeam 31 "
          "-fluence 1e30 -adc 40").split()


def test_dials_header_gives_dials_the_beam_centre_and_pedestal(tmp_path):
    _bragg([*SINGLE, "-noisefile", "ours_0001.img", "-nopgm", "-dials_header"], tmp_path)
    _bragg([*SINGLE, "-noisefile", "ref_0001.img", "-nopgm"], tmp_path)
    tf, ts, tdist = _true_beam_centre_px(SINGLE)
    _run(["dials.import", "ours_0001.img", "output.experiments=ours.expt"], tmp_path)
    fx, fy, dist, show = _show_beam_centre("ours.expt", tmp_path)
    assert abs(fx - tf) <= 0.1 and abs(fy - ts) <= 0.1, ((fx, fy), (tf, ts))
    assert abs(dist - tdist) <= 0.01
    assert re.search(r"pedestal:\s*40\b", show), show
    # the reference's header, as DIALS reads it: (Xbeam + p, 256 p - Ybeam + p), far from the beam; pedestal 1
    _run(["dials.import", "ref_0001.img", "output.experiments=ref.expt"], tmp_path)
    rx, ry, _, rshow = _show_beam_centre("ref.expt", tmp_path)
    assert abs(rx - (20.0 + 0.2) / 0.2) < 0.01 and abs(ry - (256 * 0.2 - 31.0 + 0.2) / 0.2) < 0.01
    assert max(abs(rx - tf), abs(ry - ts)) > 10
    assert re.search(r"pedestal:\s*1\b", rshow)


def test_multipanel_experiment_list_loads_in_dxtbx_with_the_panels_in_place(tmp_path):
    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from bragg_core.io.dials_expt import lab_to_dials, write_expt
    from bragg_core.panels import MultiPanelDetector, panel_detector
    from panel_layouts import LAYOUTS

    exp = build_config(parse_args(SINGLE), ".").experiment
    mp = MultiPanelDetector(panels=tuple(LAYOUTS["tilted_tent"]()), base=exp.detector)
    write_expt(str(tmp_path / "mp.expt"), exp, mp, n_images=1, image_template="mp_#.img")
    script = ("import json, sys\n"
              "from dxtbx.model.experiment_list import ExperimentListFactory\n"
              "el = ExperimentListFactory.from_json_file(sys.argv[1], check_format=False)\n"
              "d, b = el[0].detector, el[0].beam\n"
              "print(json.dumps([dict(origin=list(p.get_origin()), fast=list(p.get_fast_axis()),"
              " bc=list(p.get_beam_centre(b.get_s0())), dist=p.get_distance()) for p in d]))\n")
    dxtbx_python = shutil.which("python3", path="/usr/bin") or "python3"
    got = json.loads(_run([dxtbx_python, "-c", script, "mp.expt"], tmp_path).strip().splitlines()[-1])
    assert len(got) == len(mp.panels)
    for p, g in zip(mp.panels, got):
        det = panel_detector(p, mp.base)
        assert np.allclose(g["origin"], lab_to_dials(p.origin_mm), atol=1e-9)
        assert np.allclose(g["bc"], det.beam_center_mm, atol=1e-9)  # where the beam meets the panel's plane
        assert abs(g["dist"] - float(np.dot(p.origin_mm, p.normal))) < 1e-9



@pytest.mark.slow
def test_two_tilted_panels_in_one_nexus_file_index_in_dials(tmp_path):
    pytest.importorskip("h5py", reason="the NeXus writer needs h5py (pip install 'bragg_core[nexus]')")
    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from bragg_core.io.dials_expt import read_expt, write_expt
    from bragg_core.panels import MultiPanelDetector, panel_detector
    from panel_layouts import roof

    flags = ("-cell 79.1 79.1 38.0 90 90 90 -default_F 100 -N 8 -gauss_xtal -lambda 1 -misset 10 20 30 -phi 0 "
             "-osc 1 -phisteps 3 -fluence 1e30").split()
    exp = build_config(parse_args(flags), ".").experiment
    panels = roof()
    mp = MultiPanelDetector(panels=tuple(panels), base=exp.detector)
    write_expt(str(tmp_path / "roof.expt"), exp, mp, n_images=20)
    out = _bragg(["-expt", "roof.expt", "-N", "8", "-default_F", "100", "-gauss_xtal", "-fluence", "1e30",
                  "-phisteps", "3", "-nimages", "20", "-nexusfile", "roof.nxs", "-nexus_compression", "gzip",
                  "-nonoise", "-nopgm"], tmp_path)
    assert "all 2 panels: max_I" in out
    _run(["dials.import", "roof.nxs"], tmp_path)
    # DIALS sees both panels where they were simulated
    got = read_expt(str(tmp_path / "imported.expt"))
    assert len(got.detector.panels) == 2 and got.n_images == 20 and got.oscillation_deg == (0.0, 1.0)
    for p, q in zip(panels, got.detector.panels):
        assert np.allclose(q.origin_mm, p.origin_mm, atol=1e-4) and np.allclose(q.fast_axis, p.fast_axis, atol=1e-6)
    show = _run(["dials.show", "imported.expt"], tmp_path)
    dists = [float(x) for x in re.findall(r"distance:\s*([-\d.]+)", show)]
    assert len(dists) == 2
    for p, d in zip(panels, dists):
        assert abs(d - float(np.dot(p.origin_mm, p.normal))) <= 0.01
    m = re.search(r"px:\s*panel 1,\s*\(([-\d.]+),\s*([-\d.]+)\)", show)
    assert m, show[-2000:]
    want = np.asarray(panel_detector(panels[1], mp.base).beam_center_mm) / 0.1  # where the beam meets panel 1
    assert abs(float(m.group(1)) - want[0]) <= 0.1 and abs(float(m.group(2)) - want[1]) <= 0.1
    index_and_check_cell(_run, tmp_path)


# a four-circle goniometer as dxtbx builds it (axes of DIALS's frame, degrees), scanning its third axis, and the
# single-axis goniometer dxtbx reduces it to (its datum axis, fixed and setting rotations)
MULTI_AXIS = ("import json\n"
              "from dxtbx.model import GoniometerFactory\n"
              "from scitbx.array_family import flex\n"
              "axes = [(1, 0, 0), (0, 1, 0), (0.914, 0.279, -0.297), (0, 0, 1), (0.6, 0.8, 0)]\n"
              "m = GoniometerFactory.make_multi_axis_goniometer(flex.vec3_double(axes),\n"
              "    flex.double([10.0, -30.0, 5.0, 20.0, -15.0]), flex.std_string(list('abcde')), 2)\n"
              "s = GoniometerFactory.make_goniometer(m.get_rotation_axis_datum(), m.get_fixed_rotation())\n"
              "s.set_setting_rotation(m.get_setting_rotation())\n"
              "print(json.dumps(dict(multi=m.to_dict(), single=s.to_dict(), axis=m.get_rotation_axis())))\n")


def test_a_multi_axis_goniometer_reads_as_dxtbx_composes_it(tmp_path):
    """DIALS writes the goniometer it builds from imgCIF (our CBF series) and NeXus files as axes, angles and
    a scan axis; read so, it gives the crystal and spindle of dxtbx's own single-axis reduction."""
    from bragg_core.io.dials_expt import lab_to_dials, read_expt, write_expt

    exp = build_config(parse_args("-cell 70 80 90 90 90 90 -default_F 1 -lambda 1 -distance 100 -detpixels 64 "
                                  "-misset 10 20 30 -phi 0 -osc 1".split()), ".").experiment
    write_expt(str(tmp_path / "base.expt"), exp, n_images=3)
    got = json.loads(_run([shutil.which("python3", path="/usr/bin") or "python3", "-c", MULTI_AXIS],
                          tmp_path).splitlines()[-1])
    doc = json.loads((tmp_path / "base.expt").read_text())
    read = {}
    for kind in ("multi", "single"):
        doc["goniometer"] = [got[kind]]
        (tmp_path / f"{kind}.expt").write_text(json.dumps(doc))
        read[kind] = read_expt(str(tmp_path / f"{kind}.expt"))
    assert "axes" in got["multi"] and "rotation_axis" in got["single"]
    m, s = read["multi"].experiment, read["single"].experiment
    np.testing.assert_allclose(m.detector.spindle_axis, s.detector.spindle_axis, atol=1e-12)
    np.testing.assert_allclose(m.crystal.reciprocal_vectors_per_A, s.crystal.reciprocal_vectors_per_A, atol=1e-14)
    np.testing.assert_allclose(lab_to_dials(m.detector.spindle_axis), np.asarray(got["axis"]) / np.linalg.norm(
        got["axis"]), atol=1e-12)
    # the fixed rotation turned the crystal: not the file's orientation
    plain = read_expt(str(tmp_path / "base.expt")).experiment
    assert np.max(np.abs(np.asarray(m.crystal.reciprocal_vectors_per_A)
                         - np.asarray(plain.crystal.reciprocal_vectors_per_A))) > 1e-3
