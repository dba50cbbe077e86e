import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bragg_core.io import (
    HKLFormatError,
    NonIntegerIndexWarning,
    StructureFactorGrid,
    parse_hkl,
    read_hkl,
)

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def test_grid_bounds_fill_and_negative_indices():
    g = parse_hkl("0 0 0 10\n-2 1 3 5.5\n1 -1 -1 7\n", default_F=3.0)
    assert isinstance(g, StructureFactorGrid)
    assert (g.h_min, g.k_min, g.l_min) == (-2, -1, -1)
    assert (g.h_max, g.k_max, g.l_max) == (1, 1, 3)
    assert g.shape == g.F.shape == (4, 3, 5)
    assert g.F.dtype == np.float64
    assert g.F[0 + 2, 0 + 1, 0 + 1] == 10.0
    assert g.F[-2 + 2, 1 + 1, 3 + 1] == 5.5
    assert g.F[1 + 2, -1 + 1, -1 + 1] == 7.0
    assert np.count_nonzero(g.F == 3.0) == g.F.size - 3


def test_default_F_zero_fills_zero():
    g = parse_hkl("0 0 0 1\n2 2 2 1\n")
    assert g.F.sum() == 2.0 and g.F.size == 27


def test_blank_lines_comments_and_duplicates():
    g = parse_hkl("# header\n\n   \n1 2 3 4   # trailing comment\n\t1 2 3 5\r\n")
    assert g.shape == (1, 1, 1) and g.F[0, 0, 0] == 5.0  # last duplicate wins


def test_non_integer_index_warns_and_rounds():
    with pytest.warns(NonIntegerIndexWarning) as record:
        g = parse_hkl("0 0 0 1\n1.5 0 0 9\n-1.5 0 0 8\n0 0.2 0 4\n")
    messages = [str(w.message) for w in record]
    assert len(messages) == 3
    assert re.search(r"line 2: .*h=1\.5 rounded to 2", messages[0])
    assert re.search(r"line 3: .*h=-1\.5 rounded to -2", messages[1])
    assert re.search(r"line 4: .*k=0\.2 rounded to 0", messages[2])
    assert (g.h_min, g.h_max) == (-2, 2)
    assert g.F[2 + 2, 0, 0] == 9.0 and g.F[-2 + 2, 0, 0] == 8.0
    assert g.F[0 + 2, 0, 0] == 4.0  # 0.2 -> 0 overrides line 1


def test_integral_float_index_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = parse_hkl("1.0 2e0 -3. 5\n")
    assert (g.h_min, g.k_min, g.l_min) == (1, 2, -3)


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("0 0 0 1\n1 2 3\n", r"line 2.*found 3.*fewer"),
        ("0 0 0 1\n1 2 3 4 5\n", r"line 2.*found 5.*more"),
        ("0 0 0 1\n\n1 x 3 4\n", r"line 3.*'x' is not a number"),
        ("1 2 3 1_0\n", r"line 1.*'1_0'"),
        ("nan 0 0 1\n", r"line 1.*not a usable integer"),
        ("1e300 0 0 1\n", r"line 1"),
        ("", r"no reflections"),
        ("# only comments\n\n", r"no reflections"),
    ],
)
def test_malformed(text, pattern):
    with pytest.raises(HKLFormatError, match=pattern):
        parse_hkl(text, source="x.hkl")


def test_error_names_file(tmp_path):
    path = tmp_path / "bad.hkl"
    path.write_text("1 2 3 4\n1 2 3\n")
    with pytest.raises(HKLFormatError, match=re.escape(str(path)) + r", line 2"):
        read_hkl(path)
    assert issubclass(HKLFormatError, ValueError)


def test_huge_grid_rejected():
    with pytest.raises(HKLFormatError, match="limit"):
        parse_hkl("-100000 0 0 1\n100000 100000 100000 1\n")


@pytest.mark.parametrize(
    "case, name, default_F",
    [("hkl_sparse_default_F", "sparse_small.hkl", 10.0), ("mat_hkl_sparse", "sparse.hkl", 0.0),
     ("interpolate_n2", "grid.hkl", 0.0)],
)
def test_golden_hkl(case, name, default_F):
    text = (GOLDEN / case / name).read_text()
    rows = [line.split() for line in text.splitlines() if line.strip()]
    g = read_hkl(GOLDEN / case / name, default_F=default_F)
    # the reference reports the number of reflections it read
    stdout = (GOLDEN / case / "stdout.txt").read_text()
    assert f"  {len(rows)} initialized hkls (all others ={default_F:g})" in stdout
    for h, k, l, F in rows:
        assert g.F[int(h) - g.h_min, int(k) - g.k_min, int(l) - g.l_min] == float(F)
    assert np.count_nonzero(g.F != default_F) <= len(rows)


_LINE = st.one_of(
    st.text(alphabet=" \t0123456789-+.eE#xn\r", max_size=30),
    st.lists(st.integers(-5, 5).map(str), min_size=3, max_size=5).map(" ".join),
    st.text(max_size=20),
)


@settings(deadline=None, max_examples=150)
@given(st.lists(_LINE, max_size=8), st.floats(allow_nan=False, allow_infinity=False))
def test_fuzz_text(lines, default_F):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonIntegerIndexWarning)
            g = parse_hkl("\n".join(lines), default_F=default_F, max_cells=10**6)
    except HKLFormatError:
        return
    assert g.F.ndim == 3 and g.F.size <= 10**6


@settings(deadline=None, max_examples=100)
@given(st.binary(max_size=200))
def test_fuzz_bytes(data):
    try:
        parse_hkl(data, max_cells=10**6)
    except HKLFormatError:
        pass
