"""Fuzz of the command line: adversarial argument lists and malformed input files.

Every run goes through ``bragg_core.cli.main(argv)`` in-process on a tiny
detector (8..32 pixels) in a directory that already holds an output of every
kind.  Whatever the input, the run exits 0 or 2, prints no traceback and no
Python warning, and a run that fails leaves every existing file as it was and
adds none.  ``BRAGG_CORE_MAX_WORK`` keeps every accepted run small (a run
above it is refused like any run that cannot finish); ``BRAGG_FUZZ_EXAMPLES``
and ``BRAGG_FUZZ_FILES`` scale the number of cases for a longer local run.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bragg_core.cli.args import _SPEC, ALIASES
from bragg_core.cli.main import main

N_ARGS = int(os.environ.get("BRAGG_FUZZ_EXAMPLES", "2000"))
N_FILES = int(os.environ.get("BRAGG_FUZZ_FILES", "500"))
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"

BASE = "-cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 2 -distance 100 -noprogress".split()
PRE = {"floatimage.bin": b"PRE float", "intimage.img": b"PRE int", "image.pgm": b"PRE pgm",
       "noiseimage.img": b"PRE noise", "out.bin": b"PRE out"}
_PY_WARNING = re.compile(r"\b\w+Warning\b: ")

# flags whose runs are slow for reasons that are not the input's fault (a new backend's import,
# printing every intermediate of a pixel) or that read the environment rather than the arguments
_SKIP = {"-backend", "-device", "-trace_pixel", "-printout_pixel", "-printout", "-run_report",
         "-mtz", "-sfcif", "-model", "-mtz_column", "-bulk_solvent", "-expt", "-exptfile", "-geom",
         "-nimages", "-dials_header", "-force", "-progress"}
FLAGS = sorted(f for f in set(_SPEC) | set(ALIASES) if ALIASES.get(f, f) not in _SKIP and f not in _SKIP)

NUMBERS = ["0", "-0", "1", "-1", "2", "3", "0.5", "-0.5", "100", "1e-300", "1e300", "1e30", "-1e30", "1e-7",
           "2147483647", "2147483648", "-2147483648", "9223372036854775808", "1e400", "-1e400", "inf", "-inf",
           "nan", "NaN", "1.5", "abc", "", " ", "0x10", "1_0", "--", "-h", "rand", "random", "200", "180",
           "90", "45", "1e9", "6.2"]
PATHS = ["in.hkl", "in.mat", "in.txt", "in.img", "missing.file", "nodir/x", ".", "..", "", "out.bin",
         "floatimage.bin", "intimage.img", "image.pgm", "a" * 300, "/", "/proc/self/status"]
WORDS = ["beam", "sample", "mosflm", "float32", "float64", "float16", "numpy", "x", ""]


def _value(kind):
    if kind in ("s",):
        return st.sampled_from(PATHS + WORDS)
    return st.sampled_from(NUMBERS)


@st.composite
def argv_lists(draw):
    px = draw(st.integers(8, 32))
    argv = BASE + ["-detpixels", str(px)]
    for _ in range(draw(st.integers(0, 4))):
        flag = draw(st.sampled_from(FLAGS))
        n, kind = _SPEC[ALIASES.get(flag, flag)]
        n = 3 if kind == "misset" else n
        n = draw(st.sampled_from([n, n, n, n, max(0, n - 1), n + 1]))  # sometimes a value short or extra
        argv += [flag] + [draw(_value(kind)) for _ in range(n)]
    if draw(st.booleans()):
        argv = draw(st.permutations(argv))  # values away from their flags
    return list(argv)


def _reset(d: Path) -> None:
    for p in d.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    for name, data in PRE.items():
        (d / name).write_bytes(data)


def _snapshot(d: Path) -> dict:
    return {p.name: p.read_bytes() if p.is_file() else "other" for p in sorted(d.iterdir())}


OUTCOMES: dict = {}  # exit status -> count (printed by the longer local run with -s)


def _check(argv, d: Path) -> int:
    old = os.getcwd()
    out, err = _io.StringIO(), _io.StringIO()
    before = _snapshot(d)
    os.chdir(d)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
    finally:
        os.chdir(old)
    text = err.getvalue()
    OUTCOMES[rc] = OUTCOMES.get(rc, 0) + 1
    assert rc in (0, 2), (argv, rc, text)
    assert "Traceback" not in text + out.getvalue(), (argv, text)
    assert not _PY_WARNING.search(text), (argv, text)
    if rc != 0:
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("usage")]
        assert any(ln.startswith("bragg_core: error:") for ln in lines), (argv, text)
        assert _snapshot(d) == before, argv
    return rc


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    return d


@pytest.fixture(autouse=True)
def _small_runs(monkeypatch):
    monkeypatch.setenv("BRAGG_CORE_MAX_WORK", "3e6")   # path evaluations: about a tenth of a second
    monkeypatch.setenv("BRAGG_CORE_THREADS", "1")
    monkeypatch.delenv("BRAGG_CORE_DEBUG", raising=False)


@settings(max_examples=N_ARGS, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=argv_lists())
def test_fuzz_argument_lists(argv, fuzz_dir):
    _reset(fuzz_dir)
    for name, data in _SEEDS.items():
        (fuzz_dir / name).write_bytes(data)
    _check(argv, fuzz_dir)


# ---------------------------------------------------------------- malformed files


def _seed_files() -> dict:
    smv = (GOLDEN / "mat_hkl_sparse" / "A.mat").read_bytes()
    from bragg_core import io

    header = io.smv_header(io.SMVHeader.from_geometry(
        fpixels=8, spixels=8, pixel_size=1e-4, distance=0.1, wavelength=6.2e-10, xbeam=4e-4, ybeam=4e-4,
        fbeam=4e-4, sbeam=4e-4, detsize_s=8e-4, dials_origin=[0.0, 0.0, 0.0], orgx=4.0, orgy=4.0,
        close_distance=0.1, phi0=0.0, osc=0.0, twotheta=0.0))
    import numpy as np

    img = header + np.arange(64, dtype="<u2").tobytes()
    grid = io.read_hkl(GOLDEN / "mat_hkl_sparse" / "sparse.hkl")
    return {"in.hkl": (GOLDEN / "mat_hkl_sparse" / "sparse.hkl").read_bytes()[:2000],
            "in.mat": smv, "in.txt": b"0 0 -10 1 6.2e-10\n0.01 0.01 -10 1 6.3e-10\n",
            "in.img": img, "Fdump.bin": io.fdump_bytes(grid)}


_SEEDS = _seed_files()
_SEEDS.pop("Fdump.bin")  # the argument fuzz reads no Fdump.bin (it would replace -default_F)
_FILE_SEEDS = _seed_files()
TOKENS = [b"nan", b"inf", b"-inf", b"1e999", b"-", b"99999999999999999999", b"\x00", b"\n", b" ", b"#",
          b"\xff\xfe", b"0", b"-1", b"1e-320", b";", b"=", b"SIZE1=100000000;", b"HEADER_BYTES=9999999;",
          b"BYTE_ORDER=big_endian;", b"SIZE2=0;", b"PIXEL_SIZE=0;", b"DISTANCE=nan;"]
FILE_FLAGS = {"in.hkl": "-hkl", "in.mat": "-mat", "in.txt": "-sourcefile", "in.img": "-img", "Fdump.bin": None}


@st.composite
def malformed(draw):
    name = draw(st.sampled_from(sorted(FILE_FLAGS) + ["in.img"]))  # SMV twice: -img and -mask
    data = bytearray(_FILE_SEEDS[name])
    if draw(st.integers(0, 9)) == 0:
        data = bytearray(draw(st.binary(max_size=300)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["cut", "byte", "insert", "delete"]))
        pos = draw(st.integers(0, len(data)))
        if op == "cut":
            del data[pos:]
        elif op == "byte" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 20))]
    flag = FILE_FLAGS[name]
    if name == "in.img" and draw(st.booleans()):
        flag = "-mask"
    return name, flag, bytes(data)


@settings(max_examples=N_FILES, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=malformed())
def test_fuzz_malformed_files(case, fuzz_dir):
    name, flag, data = case
    _reset(fuzz_dir)
    (fuzz_dir / name).write_bytes(data)
    argv = list(BASE)
    if flag in ("-img", "-mask"):
        argv += [flag, name]  # the size comes from the header
    else:
        argv += ["-detpixels", "8"] + ([flag, name] if flag else [])
    if flag == "-mat":  # the matrix gives the cell
        i = argv.index("-cell")
        del argv[i:i + 7]
    _check(argv, fuzz_dir)


def test_fuzz_sees_both_outcomes(fuzz_dir):
    """The strategies reach successful runs as well as refusals (a fuzz that only fails proves little)."""
    _reset(fuzz_dir)
    for name, data in _SEEDS.items():
        (fuzz_dir / name).write_bytes(data)
    assert _check(BASE + ["-detpixels", "8"], fuzz_dir) == 0
    for name, flag in (("in.hkl", "-hkl"), ("in.txt", "-sourcefile"), ("in.img", "-img")):
        _reset(fuzz_dir)
        (fuzz_dir / name).write_bytes(_FILE_SEEDS[name])
        assert _check(BASE + ["-detpixels", "8", flag, name], fuzz_dir) == 0, flag


def teardown_module(module):
    if os.environ.get("BRAGG_FUZZ_REPORT"):
        print(f"\nfuzz outcomes (exit status: runs): {dict(sorted(OUTCOMES.items()))}")
