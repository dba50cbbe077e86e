"""The two commands: python -m bragg_core.noisify and python -m bragg_core.nonbragg."""

from __future__ import annotations

import gzip
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bragg_core import noisify, nonbragg

DATA = Path(__file__).parent / "data"


def _case(folder, name):
    for line in (DATA / folder / "cmd.txt").read_text().splitlines():
        if line.startswith(name + " "):
            return shlex.split(line)[1:]
    raise KeyError(name)


def _unpack(tmp_path, folder, name):
    out = tmp_path / name
    out.write_bytes(gzip.decompress((DATA / folder / (name + ".gz")).read_bytes()))
    return out


def test_help_of_both_commands_exits_zero():
    for mod in ("noisify", "nonbragg"):
        r = subprocess.run([sys.executable, "-m", f"bragg_core.{mod}", "-h"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: python -m bragg_core." + mod in r.stdout


def test_noisify_noiseless_image_equals_the_reference(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inp, *args = _case("noisify", "psf_fiber_w150_r9")
    _unpack(tmp_path, "noisify", inp)
    assert noisify.main(["-floatfile", inp, *args, "-intfile", "int.img", "-nopgm"]) == 0
    ours = np.frombuffer((tmp_path / "int.img").read_bytes()[512:], dtype="<u2")
    ref = np.frombuffer(gzip.decompress((DATA / "noisify" / "psf_fiber_w150_r9.int.img.gz").read_bytes())[512:],
                        dtype="<u2")
    assert np.array_equal(ours, ref)
    assert sorted(os.listdir(tmp_path)) == sorted([inp, "int.img"])


def test_noisify_writes_all_outputs_with_noise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _unpack(tmp_path, "noisify", "const_50.bin")
    assert noisify.main(["-floatfile", "const_50.bin", "-seed", "3", "-readout", "2"]) == 0
    noise = np.frombuffer((tmp_path / "noiseimage.img").read_bytes()[512:], dtype="<u2")
    assert noise.size == 128 * 128 and abs(noise.mean() - 89.5) < 1.0
    assert (tmp_path / "intimage.img").exists() and (tmp_path / "image.pgm").read_bytes().startswith(b"P5\n128 128")


@pytest.mark.parametrize("argv, flag", [
    (["-floatfile", "missing.bin"], "missing.bin"),
    (["-floatfile", "const_50.bin", "-psf", "airy"], "-psf"),
    (["-floatfile", "const_50.bin", "-readout"], "-readout"),
    (["-floatfile", "const_50.bin", "-gain", "two"], "-gain"),
    (["-floatfile", "const_50.bin", "-detpixels_x", "100"], "-floatfile"),
    (["-floatfile", "const_50.bin", "-wobble", "1"], "-wobble"),
    (["-floatfile", "const_50.bin", "-backend", "nosuch"], "-backend"),
    (["-floatfile", "const_50.bin", "-detpixels_x", "-1"], "-detpixels_x"),
    # the last of three outputs cannot be written: none of them is (no partial output)
    (["-floatfile", "const_50.bin", "-noisefile", "nodir/noise.img"], "nodir/noise.img"),
    (["-floatfile", "const_50.bin", "-noisefile", "x.img", "-intfile", "./x.img"], "same file"),
])
def test_noisify_errors_name_the_flag_and_write_nothing(tmp_path, monkeypatch, capsys, argv, flag):
    monkeypatch.chdir(tmp_path)
    _unpack(tmp_path, "noisify", "const_50.bin")
    assert noisify.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]
    assert os.listdir(tmp_path) == ["const_50.bin"]


def test_nonbragg_float_image_equals_the_reference(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _case("nonbragg", "water_d")
    assert nonbragg.main([*args, "-floatfile", "bg.bin", "-intfile", "bg.img", "-noisefile", "noise.img"]) == 0
    ours = np.frombuffer((tmp_path / "bg.bin").read_bytes(), dtype="<f4").astype(np.float64)
    ref = np.frombuffer(gzip.decompress((DATA / "nonbragg" / "water_d.bin.gz").read_bytes()), dtype="<f4")
    assert np.abs(ours - ref).max() <= 1e-6 * ref.max()
    assert (tmp_path / "bg.img").stat().st_size == 512 + 2 * ours.size
    assert (tmp_path / "noise.img").stat().st_size == 512 + 2 * ours.size


@pytest.mark.parametrize("argv, flag", [
    (["-detpixels", "8"], "-stol"),
    (["-stol", "nothere.stol"], "nothere.stol"),
    (["-stol", "water", "-pixel", "0"], "-pixel"),
    (["-stol", "water", "-detpixels", "8", "-density", "-1"], "-density"),
    (["-stol", "water", "-roi", "1", "2"], "-roi"),
    (["-stol", "water", "-pivot", "middle"], "-pivot"),
    (["-stol", "water", "-detpixels", "8", "-height", "-1"], "-height"),
    (["-stol", "water", "-detpixels", "8", "-lambda", "1e-300"], "-lambda"),
    (["-stol", "water", "-detsize", "100", "-pixel", "1e-5"], "-detpixels/-detsize/-pixel"),
    (["-stol", "water", "-detpixels", "8", "-divsteps", "1"], "square divergence"),
    (["-stol", "water", "-detpixels", "8", "-noisefile", "nodir/noise.img"], "nodir/noise.img"),
    (["-stol", "water", "-detpixels", "8", "-floatfile", "bg.bin", "-intfile", "bg.bin"], "same file"),
    (["-stol", "water", "-detpixels", "4096", "-oversample", "1000"], "-oversample"),
])
def test_nonbragg_errors_name_the_flag_and_write_nothing(tmp_path, monkeypatch, capsys, argv, flag):
    monkeypatch.chdir(tmp_path)
    assert nonbragg.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]
    assert os.listdir(tmp_path) == []


def test_nonbragg_work_limit_is_checked_before_any_work_and_force_lifts_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRAGG_CORE_MAX_WORK", "300")  # 8 x 8 pixels x 2^2 sub-pixels = 256 evaluations
    argv = ["-stol", "water", "-detpixels", "8", "-nopgm", "-floatfile", "bg.bin"]
    assert nonbragg.main(argv + ["-oversample", "2"]) == 0
    os.remove("bg.bin")
    capsys.readouterr()
    assert nonbragg.main(argv + ["-oversample", "3"]) == 2   # 576 evaluations
    err = capsys.readouterr().err
    assert "576 evaluations" in err and "-force" in err and os.listdir(tmp_path) == []
    assert nonbragg.main(argv + ["-oversample", "3", "-force"]) == 0
    assert (tmp_path / "bg.bin").stat().st_size == 4 * 64


def test_bench_detector_runs_on_a_tiny_image(tmp_path, capsys):
    from bragg_core import bench_detector

    out = tmp_path / "b.json"
    assert bench_detector.main(["--size", "24", "--rounds", "1", "--json", str(out)]) == 0
    import json

    row = json.loads(out.read_text())["rows"][0]
    assert row["backend"] == "numpy" and all(row[k] > 0 for k in ("bragg_s", "background_s", "psf_s", "noise_s"))
    assert "(bg+psf+noise)/bragg" in capsys.readouterr().out


def test_bench_detector_scales_the_noise_image_to_a_median(tmp_path, capsys):
    from bragg_core import bench_detector

    out = tmp_path / "b.json"
    assert bench_detector.main(["--size", "24", "--rounds", "1", "--median-photons", "3", "--json", str(out)]) == 0
    import json

    row = json.loads(out.read_text())["rows"][0]
    assert row["median_photons"] == 3.0 and row["noise_s"] > 0
    assert "median 3 photons" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        bench_detector.main(["--size", "24", "--median-photons", "0"])
    assert e.value.code == 2 and "--median-photons" in capsys.readouterr().err


def test_bench_detector_takes_a_device(tmp_path, capsys):
    from bragg_core import bench_detector

    out = tmp_path / "b.json"
    assert bench_detector.main(["--size", "16", "--rounds", "1", "--device", "cpu", "--json", str(out)]) == 0
    import json

    assert json.loads(out.read_text())["rows"][0]["device"] == "cpu"
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:   # a device this numpy cannot have: one line, status 2
        bench_detector.main(["--size", "16", "--rounds", "1", "--device", "cuda:7"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--device" in err and "Traceback" not in err
