"""Bad input: one sentence naming the flag or file, a non-zero status, no output, never a traceback."""

from __future__ import annotations

import os
import string
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bragg_core.cli.args import _SPEC, ALIASES
from bragg_core.cli.main import main

GOOD = "-cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 2 -distance 100 -detpixels 8".split()


def _run(argv, tmp_path, capsys):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(argv)
    finally:
        os.chdir(cwd)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_help_exits_zero(tmp_path, capsys):
    for flag in ("-h", "--help"):
        rc, out, _ = _run([flag], tmp_path, capsys)
        assert rc == 0 and "-cell" in out and "-backend" in out
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("argv,needle", [
    (GOOD + ["-bogus"], "unknown option -bogus"),
    (GOOD + ["-lambda"], "-lambda expects 1 value"),
    (GOOD + ["-lambda", "abc"], "-lambda expects a number, got 'abc'"),
    (GOOD + ["-detpixels", "1.5"], "-detpixels expects an integer"),
    (GOOD + ["-cell", "100", "100"], "-cell expects 6 values"),
    (GOOD + ["-pixel", "-0.1"], "-pixel must be positive"),
    (GOOD + ["-lambda", "0"], "-lambda must be positive"),
    (GOOD + ["-cell", "100", "100", "100", "90", "90", "180"], "cell_A_deg"),
    (GOOD + ["-hkl", "missing.hkl"], "-hkl: cannot read"),
    (GOOD + ["-mat", "missing.mat"], "-mat: cannot read"),
    (GOOD + ["-sourcefile", "missing.txt"], "-sourcefile: cannot read"),
    (GOOD + ["-backend", "nosuch"], "unknown backend 'nosuch'"),
    (GOOD + ["-dtype", "float16"], "-dtype expects float32 or float64"),
    (GOOD + ["-pivot", "middle", "-fdet_vector", "0", "0", "1"], "-pivot expects 'beam' or 'sample'"),
    (GOOD + ["-fdet_vector", "0", "0", "0"], "zero-length vector"),
    (GOOD + ["stray"], "unexpected argument 'stray'"),
    # found by the fuzz test: a beam along the detector plane left no distance to choose the oversampling from
    (GOOD + ["-beam_vector", "0", "1", "1"], "the detector plane passes through the sample"),
])
def test_bad_input(argv, needle, tmp_path, capsys):
    rc, out, err = _run(argv, tmp_path, capsys)
    assert rc == 2
    assert needle in err, err
    assert "Traceback" not in err + out
    assert os.listdir(tmp_path) == []


def test_printout_without_a_pixel_warns(tmp_path, capsys):
    rc, out, err = _run(GOOD + ["-printout", "-nopgm", "-nonoise", "-noprogress"], tmp_path, capsys)
    assert rc == 0
    assert "WARNING: -printout without -printout_pixel" in out


def test_no_structure_factors_prints_usage(tmp_path, capsys):
    rc, out, err = _run("-cell 100 100 100 90 90 90 -N 5 -detpixels 8".split(), tmp_path, capsys)
    assert rc == 2 and "usage:" in err and "no structure factors" in err
    assert os.listdir(tmp_path) == []


def test_malformed_input_files(tmp_path, capsys):
    (tmp_path / "bad.hkl").write_text("1 2 3 4 5\n")
    (tmp_path / "bad.mat").write_text("0.01 0 0\n0 x 0\n")
    (tmp_path / "bad_src.txt").write_text("0 0 -10 1 abc\n")
    (tmp_path / "bad.img").write_bytes(b"not an smv file" * 40)
    for flag, name, needle in (("-hkl", "bad.hkl", "bad.hkl"), ("-mat", "bad.mat", "bad.mat"),
                               ("-sourcefile", "bad_src.txt", "bad_src.txt"), ("-img", "bad.img", "-img"),
                               ("-mask", "bad.img", "-mask")):
        before = set(os.listdir(tmp_path))
        rc, out, err = _run(GOOD + [flag, name], tmp_path, capsys)
        assert rc == 2 and needle in err and "Traceback" not in err
        assert set(os.listdir(tmp_path)) == before
    (tmp_path / "Fdump.bin").write_bytes(b"1 2 3\n\x0cgarbage")
    rc, out, err = _run("-cell 100 100 100 90 90 90 -N 5 -detpixels 8".split(), tmp_path, capsys)
    assert rc == 2 and "Fdump.bin" in err


def test_success_writes_every_output(tmp_path, capsys):
    rc, out, err = _run(GOOD + ["-noprogress"], tmp_path, capsys)
    assert rc == 0
    assert sorted(os.listdir(tmp_path)) == ["floatimage.bin", "image.pgm", "intimage.img", "noiseimage.img"]


def test_module_entry_point_runs(tmp_path):
    """``python -m bragg_core`` works as a process, and a bad flag gives status 2 without a traceback."""
    ok = subprocess.run([sys.executable, "-m", "bragg_core", *GOOD, "-nonoise", "-nopgm", "-noprogress"],
                        cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "bragg_core", "-N"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "-N expects 1 value" in bad.stderr


FLAGS = sorted(set(_SPEC) | set(ALIASES))
token = st.one_of(
    st.sampled_from(FLAGS),
    st.sampled_from(["0", "1", "-1", "5", "100", "1e3", "nan", "inf", "-inf", "abc", "", "1.5", "90", "random"]),
    st.text(alphabet=string.ascii_letters + string.digits + "-._", max_size=8),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.lists(token, max_size=8))
def test_fuzz_argument_lists(extra, tmp_path_factory, capsys):
    """Random argument lists: either a run that succeeds or an error with status 2 and nothing written."""
    tmp = tmp_path_factory.mktemp("fuzz")
    argv = "-cell 100 100 100 90 90 90 -default_F 10 -N 2 -detpixels 4".split() + extra + ["-noprogress"]
    rc, out, err = _run(argv, tmp, capsys)
    assert "Traceback" not in out + err
    if rc != 0:
        assert rc == 2 and err.startswith(("bragg_core: error:", "usage:")), err
        assert os.listdir(tmp) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["-hkl", "-mat", "-sourcefile", "-img", "fdump"]), data=st.binary(max_size=600))
def test_fuzz_input_files(kind, data, tmp_path_factory, capsys):
    """Malformed input files of every kind: a message and status 2, or a run; never a traceback or a partial file."""
    tmp = tmp_path_factory.mktemp("fuzzfile")
    argv = "-cell 100 100 100 90 90 90 -N 2 -detpixels 4 -noprogress".split()
    if kind == "fdump":
        (tmp / "Fdump.bin").write_bytes(data)
    else:
        (tmp / "input").write_bytes(data)
        argv += [kind, "input", "-default_F", "1"]
    before = set(os.listdir(tmp))
    rc, out, err = _run(argv, tmp, capsys)
    assert "Traceback" not in out + err
    if rc != 0:
        assert rc == 2 and "error" in err
        assert set(os.listdir(tmp)) == before


def test_trace_pixel_prints_the_reference_quantities(tmp_path, capsys):
    """-trace_pixel prints the pixel's intermediates; the position equals the reference trace's."""
    rc, out, err = _run("-cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 5 -distance 100 "
                        "-detpixels 256 -trace_pixel 128 128 -nonoise -nopgm -noprogress".split(),
                        tmp_path, capsys)
    assert rc == 0
    lines = {ln.split()[1]: ln.split()[2:] for ln in out.splitlines() if ln.startswith("TRACE ")}
    pos = [float(x) for x in lines["pixel_pos_m"]]
    assert pos == pytest.approx([0.1, 4.99999999999997e-05, -4.99999999999997e-05], rel=1e-12)
    assert float(lines["I_pixel"][0]) == pytest.approx(154.652464271383, rel=1e-9)


def test_img_and_mask_headers(tmp_path, capsys):
    """-img takes the camera from an SMV header; -mask also skips its zero pixels
    (Y centre measured from the far edge)."""
    import numpy as np

    from bragg_core import io

    argv = "-cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 5 -distance 100 -detpixels 64 " \
           "-pixel 0.2 -Xbeam 5 -Ybeam 7 -nonoise -nopgm -noprogress".split()
    rc, _, _ = _run(argv + ["-floatfile", "direct.bin", "-intfile", "camera.img"], tmp_path, capsys)
    assert rc == 0
    header, data = io.read_smv(tmp_path / "camera.img")
    assert float(header["PIXEL_SIZE"]) == 0.2 and data.shape == (64, 64)
    base = "-cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 5 -nonoise -nopgm -noprogress".split()
    rc, _, _ = _run(base + ["-img", "camera.img", "-floatfile", "from_img.bin"], tmp_path, capsys)
    assert rc == 0
    direct = np.fromfile(tmp_path / "direct.bin", dtype="<f4")
    assert np.array_equal(np.fromfile(tmp_path / "from_img.bin", dtype="<f4"), direct)
    # a mask: zero pixels are skipped; its BEAM_CENTER_Y counts from the other edge
    mask = np.ones((64, 64), np.uint16)
    mask[:10, :] = 0
    fields = dict(header)
    fields["BEAM_CENTER_Y"] = str(64 * 0.2 - float(header["BEAM_CENTER_Y"]))
    io.write_smv(tmp_path / "mask.img", mask, io.SMVHeader.from_mapping(fields))
    rc, _, _ = _run(base + ["-mask", "mask.img", "-floatfile", "masked.bin"], tmp_path, capsys)
    assert rc == 0
    masked = np.fromfile(tmp_path / "masked.bin", dtype="<f4").reshape(64, 64)
    assert (masked[:10] == 0).all()
    np.testing.assert_array_equal(masked[10:], direct.reshape(64, 64)[10:])
