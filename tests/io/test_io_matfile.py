import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bragg_core.io import (
    MatFormatError,
    parse_mosflm_matrix,
    read_mosflm_matrix,
    reciprocal_vectors_from_mosflm,
)

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _trace_vectors(stdout, label):
    """The three vectors the reference printed after 'TRACE:   a_star (label) = [..]'."""
    out = []
    for name in ("a_star", "b_star", "c_star"):
        match = re.search(rf"TRACE:   {name}{re.escape(label)} = \[([^\]]*)\]", stdout)
        out.append([s.strip() for s in match.group(1).split(",")])
    return out


def test_golden_mat_hkl_sparse():
    case = GOLDEN / "mat_hkl_sparse"
    assert "-lambda 1.2" in (case / "cmd.txt").read_text()
    stdout = (case / "stdout.txt").read_text()
    raw = read_mosflm_matrix(case / "A.mat")
    assert raw.shape == (3, 3) and raw.dtype == np.float64
    # rows are a*, b*, c*: the columns of the file
    assert raw[0].tolist() == [0.01534669, 0.01056302, 0.01198896]
    assert [[f"{v:g}" for v in row] for row in raw] == _trace_vectors(stdout, " (raw)")
    vectors = reciprocal_vectors_from_mosflm(raw, 1.2)
    assert [[f"{v:g}" for v in row] for row in vectors] == _trace_vectors(stdout, "")
    norms = [f"{np.linalg.norm(v):g}" for v in vectors]
    for name, norm in zip(("a_star", "b_star", "c_star"), norms):
        assert re.search(rf"TRACE:   {name} = \[[^\]]*\] \|{name}\| = {norm}\n", stdout)


def test_reciprocal_vectors_units():
    m = np.eye(3) * 0.5
    np.testing.assert_allclose(reciprocal_vectors_from_mosflm(m, 2.0), np.eye(3) * 0.25)


def test_blank_lines_before_and_trailing_lines_ignored():
    m = parse_mosflm_matrix("\n  1 2 3\n4 5 6\r\n7 8 9\nthis is ignored\n")
    assert m.tolist() == [[1, 4, 7], [2, 5, 8], [3, 6, 9]]


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("1 2 3\n4 5\n7 8 9\n", r"line 2"),
        ("1 2 3\n4 5 6 7\n7 8 9\n", r"line 2"),
        ("1 2 3\n4 5 6\n7 8 x\n", r"line 3"),
        ("1 2 3\n4 5 6\n", r"found 2 of the 3"),
        ("", r"found 0 of the 3"),
    ],
)
def test_malformed(text, pattern, tmp_path):
    path = tmp_path / "A.mat"
    path.write_text(text)
    with pytest.raises(MatFormatError, match=re.escape(str(path)) + ".*" + pattern):
        read_mosflm_matrix(path)


_LINE = st.one_of(
    st.text(alphabet=" \t0123456789-+.eE\r", max_size=30),
    st.lists(st.floats(allow_nan=False).map(repr), min_size=2, max_size=4).map(" ".join),
    st.text(max_size=20),
)


@settings(deadline=None, max_examples=200)
@given(st.lists(_LINE, max_size=6))
def test_fuzz_text(lines):
    try:
        m = parse_mosflm_matrix("\n".join(lines))
    except MatFormatError:
        return
    assert m.shape == (3, 3)
