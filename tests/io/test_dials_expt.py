"""DIALS experiment lists: the frame conversion, write/read round trips, files written by DIALS itself.

Test data (tests/data/dials, see README.md there): ``rotation_imported.expt``
and ``rotation_indexed.expt`` were written by dials.import and dials.index
for a 20-image series simulated with ``SIM_FLAGS``; ``multipanel_dxtbx.expt``
by dxtbx for a two-level hierarchy of four tilted modules, with dxtbx's own
global panel frames in ``multipanel_dxtbx_frames.json``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bragg_core import simulate
from bragg_core._backend import get_context, to_numpy
from bragg_core.cli.args import build_config, parse_args
from bragg_core.geometry.detector import detector_geometry
from bragg_core.io.dials_expt import (
    LAB_TO_DIALS,
    ExptFormatError,
    dials_to_lab,
    expt_dict,
    lab_to_dials,
    parse_expt,
    read_expt,
    write_expt,
)
from bragg_core.panels import MultiPanelDetector, Panel, panel_detector
from bragg_core.simulate import simulate_panels

HERE = os.path.dirname(os.path.dirname(__file__))
DATA = os.path.join(HERE, "data", "dials")
GOLDEN = os.path.join(HERE, "data", "golden")
SIM_FLAGS = ("-cell 79.1 79.1 38.0 90 90 90 -default_F 100 -N 8 -gauss_xtal -lambda 1 -distance 150 "
             "-detpixels 1024 -misset 10 20 30 -phi 0 -osc 1 -phisteps 3 -Xbeam 40 -Ybeam 60 -twotheta 15 "
             "-fluence 1e30").split()
G = get_context(backend="numpy", dtype="float64")


def _exp(flags):
    return build_config(parse_args(list(flags)), ".").experiment


def _h(v):
    return np.asarray(to_numpy(v), dtype=np.float64)


def test_frame_conversion_is_a_proper_rotation_taking_the_mosflm_frame_to_dials():
    assert np.allclose(LAB_TO_DIALS @ LAB_TO_DIALS.T, np.eye(3))
    assert np.linalg.det(LAB_TO_DIALS) == pytest.approx(1.0)
    assert np.allclose(lab_to_dials([1, 0, 0]), [0, 0, -1])   # beam
    assert np.allclose(lab_to_dials([0, 0, 1]), [1, 0, 0])    # MOSFLM fast, spindle
    assert np.allclose(lab_to_dials([0, -1, 0]), [0, -1, 0])  # MOSFLM slow
    v = np.random.default_rng(1).normal(size=(5, 3))
    assert np.allclose(dials_to_lab(lab_to_dials(v)), v)


@pytest.mark.parametrize("case", ["conv_custom_oblique", "twotheta_mosflm", "close_distance_xds_rot",
                                  "conv_dials_default"])
def test_conversion_gives_the_references_dials_origin(case):
    """The reference's header line DIALS_ORIGIN is pix0 in DIALS's frame: ours agrees to its printed digits."""
    folder = os.path.join(GOLDEN, case)
    if not os.path.isdir(folder):
        pytest.skip(f"golden case {case} not present")
    with open(os.path.join(folder, "cmd.txt")) as fh:
        import shlex

        flags = [a for a in shlex.split(fh.read())]
    with open(os.path.join(folder, "smv_header.txt")) as fh:
        line = next(x for x in fh.read().splitlines() if x.startswith("DIALS_ORIGIN="))
    ref = [float(x) for x in line.split("=")[1].rstrip(";").split(",")]
    dg = detector_geometry(_exp(flags).detector, G)
    ours = lab_to_dials(_h(dg.pix0_m) * 1000.0)
    assert np.allclose(ours, ref, rtol=1e-5, atol=1e-4)


def _roundtrip_case():
    return _exp(("-cell 70 80 90 85 95 105 -misset 10 5 3 -default_F 100 -N 4 -lambda 1.3 -distance 80 "
                 "-detpixels_f 40 -detpixels_s 32 -pixel 0.3 -Xbeam 4 -Ybeam 7 -twotheta 12 -detector_rotx 3 "
                 "-detector_roty -2 -detector_rotz 5 -phi 7 -osc 0.5 -phisteps 2 -polar 0.6").split())


def test_write_read_render_gives_the_same_image(tmp_path):
    exp = _roundtrip_case()
    path = str(tmp_path / "sim.expt")
    write_expt(path, exp, n_images=3, image_template="img_###.img", pedestal=40.0)
    doc = json.load(open(path))
    assert doc["imageset"][0]["template"] == os.path.abspath("img_###.img")
    assert doc["scan"][0]["image_range"] == [1, 3] and doc["scan"][0]["oscillation"] == [7.0, 0.5]
    back = read_expt(path, base=exp)
    assert back.n_images == 3 and back.oscillation_deg == (7.0, 0.5) and back.pedestal == 40.0
    e2 = back.experiment.replace(crystal__phi_steps=2)
    a = _h(simulate(exp, backend="numpy").image)
    b = _h(simulate(e2, backend="numpy").image)
    assert a.max() > 0
    assert np.allclose(b, a, rtol=1e-9, atol=1e-9 * a.max())
    # and the detector is the same detector
    d1, d2 = detector_geometry(exp.detector, G), detector_geometry(e2.detector, G)
    for k in ("pix0_m", "fdet", "sdet", "odet", "beam", "polar", "spindle"):
        assert np.allclose(_h(getattr(d1, k)), _h(getattr(d2, k)), atol=1e-14), k
    assert e2.beam.kahn_factor == pytest.approx(0.6)


def test_a_still_is_written_at_the_orientation_used(tmp_path):
    exp = _roundtrip_case().replace(crystal__osc_deg=None, crystal__phi_steps=None)
    doc = expt_dict(exp, image_files=["a.img"])
    assert doc["experiment"][0].get("goniometer") is None and doc["imageset"][0]["__id__"] == "ImageSet"
    back = parse_expt(doc, "mem", base=exp)
    # phi 7 was applied to the cell written; read back as a still at phi 0 it renders the same image
    e2 = back.experiment.replace(crystal__phi_start_deg=0.0)
    a = _h(simulate(exp, backend="numpy").image)
    b = _h(simulate(e2, backend="numpy").image)
    assert np.allclose(b, a, rtol=1e-8, atol=1e-8 * a.max())


def test_multipanel_round_trip(tmp_path):
    exp = _roundtrip_case()
    panels = tuple(Panel(fast_axis=(0, 0.1 * k, 1), slow_axis=(0, -1, 0.1 * k), origin_mm=(70.0 + k, 5.0 - 6 * k, -3.0),
                         fpixels=20, spixels=16, pixel_size_mm=0.3, thickness_um=100.0 * k,
                         attenuation_depth_um=200.0 if k else None, name=f"p{k}") for k in range(3))
    mp = MultiPanelDetector(panels=panels, base=exp.detector)
    path = str(tmp_path / "mp.expt")
    write_expt(path, exp, mp, n_images=1, image_template="x_#.img")
    back = read_expt(path, base=exp)
    assert len(back.detector.panels) == 3
    for p, q in zip(panels, back.detector.panels):
        assert np.allclose(q.origin_mm, p.origin_mm, atol=1e-12)
        assert np.allclose(q.fast_axis, np.asarray(p.fast_axis) / np.linalg.norm(p.fast_axis), atol=1e-15)
        assert (q.fpixels, q.spixels, q.pixel_size_mm, q.name) == (p.fpixels, p.spixels, p.pixel_size_mm, p.name)
        assert q.thickness_um == pytest.approx(p.thickness_um)
        if p.thickness_um:
            assert q.attenuation_depth_um == pytest.approx(p.attenuation_depth_um)
    a = simulate_panels(exp, mp, backend="numpy").images
    b = simulate_panels(back.experiment.replace(crystal__phi_steps=2), back.detector, backend="numpy").images
    for x, y in zip(a, b):
        assert np.allclose(_h(y), _h(x), rtol=1e-9, atol=1e-9 * _h(x).max())


def test_reads_what_dials_import_wrote():
    """dials.import of the simulated series (with our geometry) reads back as the simulated detector."""
    exp = _exp(SIM_FLAGS)
    got = read_expt(os.path.join(DATA, "rotation_imported.expt"), base=exp)
    assert got.n_images == 20 and got.oscillation_deg == (0.0, 1.0) and got.pedestal == 40.0
    assert got.template == "/sim/img_####.img"
    d1, d2 = detector_geometry(exp.detector, G), detector_geometry(got.experiment.detector, G)
    assert np.allclose(_h(d2.pix0_m), _h(d1.pix0_m), atol=1e-12)
    for k in ("fdet", "sdet", "beam", "spindle"):
        assert np.allclose(_h(getattr(d2, k)), _h(getattr(d1, k)), atol=1e-12), k
    assert got.experiment.beam.wavelength_A == 1.0


def test_reads_the_crystal_dials_index_found():
    """DIALS's indexed orientation is the simulated one (up to DIALS's choice of axes) within 0.2 degrees."""
    exp = _exp(SIM_FLAGS)
    got = read_expt(os.path.join(DATA, "rotation_indexed.expt"), base=exp)
    from bragg_core.geometry.crystal import cell_geometry
    from bragg_core.rng import ShuffledLehmer

    ours = _h(cell_geometry(exp.crystal, 1.0, G, ShuffledLehmer()).real_m) * 1e10
    recip = np.asarray(got.experiment.crystal.reciprocal_vectors_per_A)
    theirs = np.linalg.inv(recip).T  # rows a, b, c (lab frame, Angstrom)
    for v in theirs:
        cos = [abs(v @ w) / np.linalg.norm(v) / np.linalg.norm(w) for w in ours]
        k = int(np.argmax(cos))
        assert cos[k] > np.cos(np.radians(0.2))
        assert np.linalg.norm(v) == pytest.approx(np.linalg.norm(ours[k]), rel=1e-3)


def test_reads_a_hierarchical_detector_written_by_dxtbx():
    frames = json.load(open(os.path.join(DATA, "multipanel_dxtbx_frames.json")))
    got = read_expt(os.path.join(DATA, "multipanel_dxtbx.expt"))
    assert [p.name for p in got.detector.panels] == [p["name"] for p in frames["panels"]]
    for p, ref in zip(got.detector.panels, frames["panels"]):
        assert np.allclose(lab_to_dials(p.origin_mm), ref["origin"], atol=1e-9)
        assert np.allclose(lab_to_dials(p.fast_axis), ref["fast"], atol=1e-12)
        assert np.allclose(lab_to_dials(p.slow_axis), ref["slow"], atol=1e-12)
        assert (p.fpixels, p.spixels, p.pixel_size_mm, p.material) == (192, 96, 0.2, "Si")
        assert p.thickness_um == pytest.approx(450.0) and p.attenuation_depth_um == pytest.approx(1000 / 3.9)
        # where the beam meets the panel: dxtbx's get_beam_centre, ours the beam-pivot (Fbeam, Sbeam)
        det = panel_detector(p, got.detector.base)
        assert np.allclose(det.beam_center_mm, ref["s0_beam_centre_mm"], atol=1e-9)
    assert got.experiment.beam.wavelength_A == 0.9793
    assert got.n_images == 10 and got.oscillation_deg == (5.0, 0.5)
    real = np.linalg.inv(np.asarray(got.experiment.crystal.reciprocal_vectors_per_A)).T
    assert np.allclose(np.linalg.norm(real, axis=1), [55.0, 66.0, 77.0])
    assert np.allclose(lab_to_dials(real[0]), [55.0, 0, 0], atol=1e-9)


def _doc():
    return json.load(open(os.path.join(DATA, "multipanel_dxtbx.expt")))


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["beam"][0].pop("wavelength"), "beam[0].wavelength"),
    (lambda d: d["beam"][0].__setitem__("wavelength", -1), "beam[0].wavelength"),
    (lambda d: d["detector"][0]["panels"][2].__setitem__("pixel_size", [0.2, 0.1]),
     "detector[0].panels[2].pixel_size"),
    (lambda d: d["detector"][0]["panels"][1].__setitem__("image_size", [10.5, 3]),
     "detector[0].panels[1].image_size"),
    (lambda d: d["experiment"][0].__setitem__("detector", 4), "experiment[0].detector"),
    (lambda d: d["crystal"][0].__setitem__("real_space_a", [1, 2]), "crystal[0].real_space_a"),
    (lambda d: d["scan"][0].__setitem__("image_range", [5, 1]), "scan[0].image_range"),
    (lambda d: d.__setitem__("__id__", "Other"), "__id__"),
    (lambda d: d["goniometer"].__setitem__(0, {"axes": [[1, 0, 0]], "angles": [0], "scan_axis": 1}),
     "goniometer[0].scan_axis"),
    (lambda d: d["goniometer"].__setitem__(0, {"axes": [[1, 0, 0], [0, 1, 0]], "angles": [0], "scan_axis": 0}),
     "goniometer[0].angles"),
    (lambda d: d["goniometer"].__setitem__(0, {"axes": [[1, 0, 0], [0, 0]], "angles": [0, 5], "scan_axis": 0}),
     "goniometer[0].axes[1]"),
    (lambda d: d["goniometer"].__setitem__(0, {"axes": [[0, 0, 0]], "angles": [0], "scan_axis": 0}),
     "goniometer[0].axes[0]"),
])
def test_bad_files_name_the_file_and_the_field(tmp_path, edit, field):
    doc = _doc()
    edit(doc)
    path = tmp_path / "bad.expt"
    path.write_text(json.dumps(doc))
    with pytest.raises(ExptFormatError) as info:
        read_expt(str(path))
    assert str(info.value).startswith(f"{path}: {field}")


def test_not_json_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "x.expt"
    path.write_text("{ not json")
    with pytest.raises(ExptFormatError, match="x.expt: not JSON"):
        read_expt(str(path))
