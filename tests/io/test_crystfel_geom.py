"""CrystFEL geometry files: panels, corners, directions, clen, res, adu_per_eV; errors name file and line."""

from __future__ import annotations

import os

import numpy as np
import pytest

from bragg_core import simulate
from bragg_core.cli.args import build_config, parse_args
from bragg_core.io.crystfel_geom import GeomFormatError, crystfel_to_lab, parse_geom, read_geom, read_geom_contents
from bragg_core.io.dials_expt import lab_to_dials
from bragg_core.simulate import simulate_panels

GEOM = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "geom", "jungfrau_like.geom")

ONE = """\
; one panel, the MOSFLM frame: fast along -x, slow along -y of CrystFEL's frame
clen = 0.06
res = 10000
p0/min_fs = 0
p0/max_fs = 47
p0/min_ss = 0
p0/max_ss = 39
p0/fs = -1.0x +0.0y
p0/ss = -y
p0/corner_x = 12.5
p0/corner_y = 20.5
"""


def test_frame_beam_along_z_becomes_beam_along_x_and_agrees_with_dials():
    assert np.allclose(crystfel_to_lab((0, 0, 1)), (1, 0, 0))
    assert np.allclose(crystfel_to_lab((0, 1, 0)), (0, 1, 0))
    # CrystFEL's and DIALS's frames differ by a half turn about the vertical: dials = (-x, y, -z)
    v = np.array([0.3, -1.2, 2.5])
    assert np.allclose(lab_to_dials(crystfel_to_lab(v)), [-v[0], v[1], -v[2]])


def test_a_single_panel_file_renders_as_the_same_detector_given_by_flags():
    c = parse_geom(ONE, "one.geom")
    (p,) = c.panels
    assert (p.fpixels, p.spixels, p.pixel_size_mm) == (48, 40, 0.1)
    assert np.allclose(p.fast_axis, (0, 0, 1)) and np.allclose(p.slow_axis, (0, -1, 0))
    # MOSFLM: Fbeam = Ybeam + p/2 = corner_x * p, Sbeam = Xbeam + p/2 = corner_y * p
    flags = ("-cell 50 60 70 90 90 90 -misset 10 20 30 -default_F 100 -N 5 -lambda 1 -oversample 1 "
             "-distance 60 -detpixels_f 48 -detpixels_s 40 -Xbeam 2.0 -Ybeam 1.2").split()
    exp = build_config(parse_args(flags), ".").experiment
    a = np.asarray(simulate(exp, backend="numpy").image)
    b = np.asarray(simulate_panels(exp, c.panels, backend="numpy").images[0])
    assert a.max() > 0
    assert np.allclose(b, a, rtol=1e-9, atol=1e-9 * a.max())


def test_jungfrau_like_file():
    c = read_geom_contents(GEOM)
    assert [p.name for p in c.panels] == [f"m{k}" for k in range(8)]
    assert all((p.fpixels, p.spixels) == (64, 32) for p in c.panels)
    assert all(p.pixel_size_mm == pytest.approx(0.075, rel=1e-6) for p in c.panels)
    assert all(p.origin_mm[0] == pytest.approx(80.0) for p in c.panels)  # clen + coffset
    m0 = c.panels[0]
    # corner (-70.6667, 52) px of 75 um: lab z = -x, lab y = y
    assert m0.origin_mm[2] == pytest.approx(70.6667 * 0.075, rel=1e-5)
    assert m0.origin_mm[1] == pytest.approx(52 * 0.075, rel=1e-5)
    assert np.allclose(m0.fast_axis, (0, 0, -1)) and np.allclose(m0.slow_axis, (0, 1, 0))
    assert c.adu_per_eV["m5"] == 0.0042 and c.photon_energy_eV == 12400.0
    assert {k for _, k in c.ignored} >= {"data", "bad_gap/min_x", "rigid_group_top"}
    mp = read_geom(GEOM)
    assert len(mp.detectors()) == 8


@pytest.mark.parametrize("text, line, message", [
    ("clen = /LCLS/detector0-EncoderValue\np0/min_fs = 0\n", 1, "HDF5 path"),
    ("res = 10000\nclen = 0.1\np0/min_fs = 0\np0/colour = red\n", 4, "panel key 'colour' is not supported"),
    ("res = 10000\nclen = 0.1\nfoo = 1\n", 3, "key 'foo' is not supported"),
    ("res = 10000\nclen = 0.1\np0/min_fs = 0\np0/max_fs = 9\np0/min_ss = 0\np0/max_ss = 9\n"
     "p0/fs = +1.0q\np0/ss = +1y\np0/corner_x = 0\np0/corner_y = 0\n", 7, "cannot read the direction"),
    ("res = 10000\nclen = 0.1\np0/min_fs = 0\np0/max_fs = 9\np0/min_ss = 0\np0/max_ss = 9\n"
     "p0/fs = +2.0x\np0/ss = +1y\np0/corner_x = 0\np0/corner_y = 0\n", 7, "not of unit length"),
    ("res = 10000\nclen = 0.1\np0/min_fs = 0.5\n", 3, "non-negative integer"),
    ("just words\n", 1, "expected 'key = value'"),
])
def test_unsupported_or_malformed_lines_name_the_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad.geom"
    path.write_text(text)
    with pytest.raises(GeomFormatError) as info:
        read_geom(str(path))
    msg = str(info.value)
    assert msg.startswith(f"{path}, line {line}:") and message in msg


def test_missing_values_name_the_panel(tmp_path):
    path = tmp_path / "bad.geom"
    path.write_text("clen = 0.1\np0/min_fs = 0\np0/max_fs = 9\np0/min_ss = 0\np0/max_ss = 9\n")
    with pytest.raises(GeomFormatError, match=r"bad.geom: panel p0: res is missing"):
        read_geom(str(path))
    path.write_text("; nothing\n")
    with pytest.raises(GeomFormatError, match="no panels"):
        read_geom(str(path))
