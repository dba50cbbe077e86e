import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bragg_core.io import (
    FdumpFormatError,
    StructureFactorGrid,
    fdump_bytes,
    parse_fdump,
    read_fdump,
    read_hkl,
    write_fdump,
)

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
HKL_CASES = sorted(p.parent.name for p in GOLDEN.glob("*/*.hkl"))


def _case_default_F(case):
    match = re.search(r"-default_F\s+(\S+)", (GOLDEN / case / "cmd.txt").read_text())
    return float(match.group(1)) if match else 0.0


def _case_hkl(case):
    (path,) = (GOLDEN / case).glob("*.hkl")
    return read_hkl(path, default_F=_case_default_F(case))


def test_hkl_cases_found():
    assert len(HKL_CASES) == 5


@pytest.mark.parametrize("case", HKL_CASES)
def test_reference_dump_matches_hkl(case):
    assert read_fdump(GOLDEN / case / "Fdump.bin").same_as(_case_hkl(case))


@pytest.mark.parametrize("case", HKL_CASES)
def test_writer_is_byte_identical_to_reference(case):
    assert fdump_bytes(_case_hkl(case)) == (GOLDEN / case / "Fdump.bin").read_bytes()


def test_mat_hkl_sparse_size():
    # 19x19x19 grid, padded to 20^3 doubles after a 16-byte header
    data = (GOLDEN / "mat_hkl_sparse" / "Fdump.bin").read_bytes()
    assert len(data) == 64016 and data[:16] == b"-9 9 -9 9 -9 9\n\f"
    padded = np.frombuffer(data[16:], "<f8").reshape(20, 20, 20)
    assert not padded[19].any() and not padded[:, 19].any() and not padded[:, :, 19].any()


def test_fdump_reuse():
    # fdump_reuse ran without -hkl and read ./Fdump.bin left by hkl_sparse_default_F
    stdout = (GOLDEN / "fdump_reuse" / "stdout.txt").read_text()
    assert "reading Fs from Fdump.bin" in stdout
    grid = read_fdump(GOLDEN / "fdump_reuse" / "Fdump.bin")
    assert f"  {grid.F.size} initialized hkls (all others =10)" in stdout
    assert grid.same_as(_case_hkl("hkl_sparse_default_F"))


def test_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    grid = StructureFactorGrid(rng.normal(size=(3, 4, 5)) * 100, -1, -2, 7)
    write_fdump(tmp_path / "Fdump.bin", grid)
    back = read_fdump(tmp_path / "Fdump.bin")
    assert back.same_as(grid)
    assert (back.h_max, back.k_max, back.l_max) == (1, 1, 11)


def _valid():
    return fdump_bytes(StructureFactorGrid(np.arange(8.0).reshape(2, 2, 2), 0, -1, 3))


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (lambda b: b[:-1], "data bytes follow"),
        (lambda b: b + b"\0" * 8, "data bytes follow"),
        (lambda b: b.replace(b"\n\f", b"\n", 1), "not an Fdump"),
        (lambda b: b"0 1 x 1 3 4\n\f" + b[b.index(b"\f") + 1:], "not an Fdump"),
        (lambda b: b"0 1 0 1 3\n\f" + b[b.index(b"\f") + 1:], "not an Fdump"),
        (lambda b: b"1 0 0 1 3 4\n\f" + b[b.index(b"\f") + 1:], "empty index range"),
        (lambda b: b"", "not an Fdump"),
    ],
)
def test_malformed(mutate, pattern, tmp_path):
    path = tmp_path / "Fdump.bin"
    path.write_bytes(mutate(_valid()))
    with pytest.raises(FdumpFormatError, match=re.escape(str(path)) + ".*" + pattern):
        read_fdump(path)


@st.composite
def _near_valid(draw):
    lo = [draw(st.integers(-3, 3)) for _ in range(3)]
    hi = [a + draw(st.integers(-1, 3)) for a in lo]
    header = " ".join(f"{a} {b}" for a, b in zip(lo, hi)) + "\n\f"
    cells = 1
    for a, b in zip(lo, hi):
        cells *= max(b - a + 2, 0)
    size = max(cells * 8 + draw(st.sampled_from([0, 0, 0, -1, 1, 8, -8])), 0)
    return header.encode() + draw(st.binary(min_size=size, max_size=size))


@settings(deadline=None, max_examples=200)
@given(st.one_of(st.binary(max_size=300), _near_valid()))
def test_fuzz_bytes(data):
    try:
        grid = parse_fdump(data)
    except FdumpFormatError:
        return
    assert parse_fdump(fdump_bytes(grid)).same_as(grid)
