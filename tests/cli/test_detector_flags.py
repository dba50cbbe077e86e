"""The main command's detector-model and amorphous-background flags call the same functions as the Python API."""

from __future__ import annotations

import numpy as np
import pytest

from bragg_core.cli.args import build_config, parse_args
from bragg_core.cli.main import main

B = ("-cell 100 100 100 90 90 90 -default_F 100 -lambda 1 -N 5 -distance 100 -detpixels 48 -noprogress "
     "-fluence 1e20").split()


def _run(tmp_path, monkeypatch, extra):
    monkeypatch.chdir(tmp_path)
    rc = main(B + extra + ["-floatfile", "f.bin", "-intfile", "i.img", "-nopgm"])
    return rc


def test_background_is_added_to_the_float_image(tmp_path, monkeypatch):
    from bragg_core.amorphous import amorphous_background

    assert _run(tmp_path, monkeypatch, ["-nonoise"]) == 0
    plain = np.fromfile(tmp_path / "f.bin", dtype="<f4").reshape(48, 48)
    extra = ["-bg_stol", "water", "-bg_thick", "0.2", "-bg_density", "0.9", "-nonoise"]
    assert _run(tmp_path, monkeypatch, extra) == 0
    with_bg = np.fromfile(tmp_path / "f.bin", dtype="<f4").reshape(48, 48)
    exp = build_config(parse_args(B), ".").experiment
    bg = np.asarray(amorphous_background(exp, "water", thickness_mm=0.2, density_g_cm3=0.9), dtype=np.float32)
    assert float(np.max(bg)) > 0
    np.testing.assert_array_equal(with_bg, plain + bg)


def test_detector_model_flags_make_the_noise_image(tmp_path, monkeypatch):
    from bragg_core.detector_model import DetectorModel, apply_detector_model

    extra = ["-psf", "gauss", "-psf_fwhm", "120", "-readout", "2", "-calibration", "0.02", "-seed", "11",
             "-noisefile", "n.img"]
    assert _run(tmp_path, monkeypatch, extra) == 0
    img = np.fromfile(tmp_path / "f.bin", dtype="<f4").reshape(48, 48)
    noise = np.frombuffer((tmp_path / "n.img").read_bytes()[-48 * 48 * 2:], dtype="<u2").reshape(48, 48)
    model = DetectorModel(psf="gauss", psf_fwhm_um=120.0, pixel_size_mm=0.1, readout_adu=2.0, calibration=0.02,
                          adc_offset=40.0, seed=11)
    ref = np.clip(np.asarray(apply_detector_model(img.astype(np.float64), model).image), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(noise, ref)
    assert noise.std() > 0


@pytest.mark.parametrize("extra,needle", [
    (["-psf", "box"], "-psf must be gauss or fiber"),
    (["-psf_fwhm", "0"], "-psf_fwhm must be positive"),
    (["-readout", "-1"], "-readout must not be negative"),
    (["-bg_thick", "0.1"], "-bg_thick needs a background table"),
    (["-bg_stol", "nosuch.stol"], "-bg_stol 'nosuch.stol'"),
    (["-bg_stol", "water", "-bg_Q", "water"], "give one background table"),
    (["-bg_stol", "water", "-bg_MW", "0"], "-bg_MW must be positive"),
])
def test_bad_values_name_the_flag_and_write_nothing(tmp_path, monkeypatch, capsys, extra, needle):
    assert _run(tmp_path, monkeypatch, extra) == 2
    assert needle in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
