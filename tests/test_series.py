"""Rotation series helpers and the opt-in SMV header for DIALS (pure functions; DIALS itself in tests/interop)."""

from __future__ import annotations

import numpy as np
import pytest

from bragg_core import simulate
from bragg_core._backend import get_context, to_numpy
from bragg_core.cli.args import build_config, parse_args
from bragg_core.experiment import ExperimentError
from bragg_core.geometry.detector import detector_geometry
from bragg_core.io import SMVHeader, parse_smv_header, smv_header
from bragg_core.io.smv_dials import dials_beam_centre_mm, dials_smv_header
from bragg_core.series import dials_template, image_name, series_experiments, simulate_series

FLAGS = ("-cell 50 60 70 90 90 90 -misset 10 20 30 -default_F 100 -N 5 -lambda 1 -distance 60 -detpixels 32 "
         "-phi 2 -osc 0.5 -phisteps 2").split()


def _exp(flags=FLAGS):
    return build_config(parse_args(list(flags)), ".").experiment


def test_image_names():
    assert image_name("img_####.img", 1) == "img_0001.img"
    assert image_name("run#_img_###.cbf", 12) == "run12_img_012.cbf"
    assert image_name("a_##.img", 123) == "a_123.img"   # more digits than '#': written in full
    assert image_name("plain.img", 3) == "plain.img"
    assert dials_template("run#_img_###.img") == "run1_img_###.img"


def test_image_i_is_the_single_image_starting_at_phi_plus_i_osc():
    exp = _exp()
    images = [np.asarray(to_numpy(s.image)) for s in simulate_series(exp, 3, backend="numpy")]
    for i, im in enumerate(images):
        alone = simulate(exp.replace(crystal__phi_start_deg=2.0 + 0.5 * i), backend="numpy").image
        assert np.array_equal(im, np.asarray(to_numpy(alone)))
    assert not np.array_equal(images[0], images[2])
    with pytest.raises(ExperimentError, match="oscillation"):
        list(series_experiments(exp.replace(crystal__osc_deg=None), 2))
    with pytest.raises(ExperimentError, match="positive integer"):
        list(series_experiments(exp, 0))


@pytest.mark.parametrize("flags", [
    "-detpixels_f 300 -detpixels_s 200 -pixel 0.1 -distance 100 -Xbeam 12.3 -Ybeam 20.1",   # MOSFLM, off centre
    "-detpixels 256 -pixel 0.172 -distance 250",                                            # MOSFLM, centred
    "-adxv -detpixels_f 128 -detpixels_s 100 -Xbeam 5 -Ybeam 6",
    "-xds -detpixels 100 -ORGX 40.5 -ORGY 61.25",
    "-denzo -detpixels 64 -Xbeam 3 -Ybeam 4",
])
def test_dials_header_puts_the_beam_where_it_meets_the_detector(flags):
    exp = _exp(("-cell 50 50 50 90 90 90 -default_F 1 " + flags).split())
    g = get_context(backend="numpy", dtype="float64")
    dg = detector_geometry(exp.detector, g)
    f = lambda x: float(np.asarray(to_numpy(x)))  # noqa: E731
    h = SMVHeader.from_geometry(
        fpixels=dg.fpixels, spixels=dg.spixels, pixel_size=f(dg.pixel_size_m), distance=f(dg.distance_m),
        wavelength=1e-10, xbeam=f(dg.Xbeam_m), ybeam=f(dg.Ybeam_m), fbeam=f(dg.Fbeam_m), sbeam=f(dg.Sbeam_m),
        detsize_s=f(dg.detsize_s_m), dials_origin=[0.0, 0.0, 0.0], orgx=f(dg.orgx_px), orgy=f(dg.orgy_px),
        close_distance=f(dg.close_distance_m), phi0=0.0, osc=0.0, twotheta=0.0)
    text = dials_smv_header(h, 40.0)
    assert len(text) == 512 and text.endswith(b" ")
    keys = parse_smv_header(text)
    # DIALS's reading of the new header: the beam at (Fbeam, Sbeam)
    read = SMVHeader.from_mapping({k: v for k, v in keys.items() if k != "ADC_OFFSET"})
    fast, slow = dials_beam_centre_mm(read)
    assert fast == pytest.approx(f(dg.Fbeam_m) * 1000, abs=1e-4)
    assert slow == pytest.approx(f(dg.Sbeam_m) * 1000, abs=1e-4)
    assert float(keys["ADC_OFFSET"]) == 40.0
    # every other line is the reference's
    ref = dict(parse_smv_header(smv_header(h)))
    ours = dict(keys)
    for k in set(ref) | set(ours):
        if k not in ("BEAM_CENTER_X", "BEAM_CENTER_Y", "ADC_OFFSET"):
            assert ours[k] == ref[k], k


def test_a_series_builds_its_setup_once_and_only_reuses_a_setup_of_the_same_series(monkeypatch):
    import importlib

    run = importlib.import_module("bragg_core.engine.run")
    built = []
    real = run.build_setup
    monkeypatch.setattr(run, "build_setup", lambda *a, **k: built.append(1) or real(*a, **k))
    exp = _exp()
    sims = list(simulate_series(exp, 3, backend="numpy"))
    assert len(built) == 1                                    # images 2 and 3 re-formed the orientations only
    assert sims[2].setup.cell is sims[0].setup.cell and sims[2].setup.detector is sims[0].setup.detector
    other = exp.replace(crystal__N_cells=(4.0, 4.0, 4.0), crystal__phi_start_deg=2.5)
    again = simulate(other, backend="numpy", reuse=sims[0].setup)  # not the same series: built afresh
    assert len(built) == 2
    alone = simulate(other, backend="numpy")
    assert np.array_equal(np.asarray(again.image), np.asarray(alone.image))


def test_the_command_line_series_builds_its_setup_once(tmp_path, monkeypatch):
    import importlib

    from bragg_core.cli import main

    run = importlib.import_module("bragg_core.engine.run")
    built = []
    real = run.build_setup
    monkeypatch.setattr(run, "build_setup", lambda *a, **k: built.append(1) or real(*a, **k))
    monkeypatch.chdir(tmp_path)
    assert main(FLAGS + ["-nimages", "3", "-floatfile", "f_#.bin", "-nonoise", "-nopgm", "-noprogress"]) == 0
    assert len(built) == 1
    assert sorted(p.name for p in tmp_path.glob("f_*.bin")) == ["f_1.bin", "f_2.bin", "f_3.bin"]
