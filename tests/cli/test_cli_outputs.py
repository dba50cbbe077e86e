"""The command line's files against the reference's: SMV headers, int images, PGM files."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from bragg_core.cli.main import main  # noqa: E402

import golden  # noqa: E402

HEADER_CASES = [c for c in golden.case_ids() if os.path.exists(os.path.join(golden.case_dir(c), "smv_header.txt"))]
# header values computed from the float image (none: every SMV key is geometry)
SMV_CASES = ["smv_scale_adc", "smv_autoscale_pgmscale"]


def _inputs(case):
    """The input files a case reads: .hkl, .mat and source files, and Fdump.bin when no -hkl is given."""
    reads_dump = "-hkl" not in golden.args(case)
    for f in os.listdir(golden.case_dir(case)):
        if f.endswith((".hkl", ".mat")) or f == "sources.txt" or (f == "Fdump.bin" and reads_dump):
            yield f


def _run(case, tmp_path, extra=()):
    for f in _inputs(case):
        shutil.copy(os.path.join(golden.case_dir(case), f), tmp_path / f)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(golden.args(case) + ["-noprogress", *extra])
    finally:
        os.chdir(cwd)
    assert rc == 0


@pytest.mark.parametrize("case", HEADER_CASES)
def test_smv_header_bytes(case, tmp_path, capsys):
    """The int image's 512-byte header equals the reference's, byte for byte."""
    _run(case, tmp_path, ["-nonoise", "-nopgm"])
    capsys.readouterr()
    with open(os.path.join(golden.case_dir(case), "smv_header.txt"), "rb") as fh:
        ref = fh.read()
    with open(tmp_path / "intimage.img", "rb") as fh:
        ours = fh.read(len(ref))
    assert ours == ref


@pytest.mark.parametrize("case", SMV_CASES)
def test_int_and_pgm_images(case, tmp_path, capsys):
    """-intfile pixels within one count of the reference's; the PGM file identical."""
    _run(case, tmp_path, ["-nonoise"])
    capsys.readouterr()
    ref_dir = golden.case_dir(case)
    with open(os.path.join(ref_dir, "image.smv"), "rb") as fh:
        ref = fh.read()
    with open(tmp_path / "image.smv", "rb") as fh:
        ours = fh.read()
    assert ours[:512] == ref[:512]
    a = np.frombuffer(ours[512:], dtype="<u2").astype(int)
    b = np.frombuffer(ref[512:], dtype="<u2").astype(int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1
    with open(os.path.join(ref_dir, "image.pgm"), "rb") as fh:
        ref_pgm = fh.read()
    with open(tmp_path / "image.pgm", "rb") as fh:
        assert fh.read() == ref_pgm


def test_noise_file_header_and_statistics(tmp_path, capsys):
    """The noise image: the reference's header; counts are Poisson around the float image plus the ADC offset."""
    case = "smv_scale_adc"
    _run(case, tmp_path)
    capsys.readouterr()
    with open(os.path.join(golden.case_dir(case), "noise.smv"), "rb") as fh:
        ref = fh.read()
    with open(tmp_path / "noise.smv", "rb") as fh:
        ours = fh.read()
    assert ours[:512] == ref[:512]
    counts = np.frombuffer(ours[512:], dtype="<u2").astype(float) - 10.0  # -adc 10
    mean = golden.image(case).astype(float).ravel()
    z = (counts.sum() - mean.sum()) / np.sqrt(mean.sum())
    assert abs(z) < 5


def test_fdump_written_with_hkl(tmp_path, capsys):
    """With -hkl, Fdump.bin is written and equals the reference's byte for byte."""
    case = "hkl_sparse_default_F"
    _run(case, tmp_path, ["-nonoise", "-nopgm"])
    capsys.readouterr()
    with open(os.path.join(golden.case_dir(case), "Fdump.bin"), "rb") as fh:
        ref = fh.read()
    with open(tmp_path / "Fdump.bin", "rb") as fh:
        assert fh.read() == ref
