import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bragg_core.io import SourceFileFormatError, Sources, parse_sourcefile, read_sourcefile

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def test_golden_sourcefile():
    case = GOLDEN / "sourcefile"
    assert "-lambda 1.0" in (case / "cmd.txt").read_text()
    src = read_sourcefile(case / "sources.txt", beam_vector=(1, 0, 0), wavelength=1.0e-10)
    assert isinstance(src, Sources)
    assert src.positions.shape == (4, 3)
    lines = (case / "stdout.txt").read_text().splitlines()
    start = lines.index("  created a total of 4 sources:") + 1
    printed = lines[start:start + 4]
    ours = ["%g %g %g   %g %g" % (*p, w, lam) for p, w, lam in zip(*src)]
    assert ours == printed
    # the defaults of the last line: 10 m up-stream of the sample, weight 1, lambda0
    assert src.weights[3] == 1.0 and src.wavelengths[3] == 1.0e-10
    assert src.positions[3, 0] == -10.0


def test_delimiters_and_defaults():
    text = "1,2;3:4!5\n\n \t,;\n# comment\n7\t8\n9 nan 0 2\n"
    src = parse_sourcefile(text, beam_vector=(0, 0, 1), source_distance=2.0, wavelength=1.5e-10)
    np.testing.assert_array_equal(src.positions, [[1, 2, 3], [7, 8, -2.0], [9, -0.0, 0]])
    np.testing.assert_array_equal(src.weights, [4, 1, 2])
    np.testing.assert_array_equal(src.wavelengths, [5, 1.5e-10, 1.5e-10])


def test_last_line_without_newline_gets_defaults():
    src = parse_sourcefile("-10 0 0\n-10 0 1")
    assert src.weights.tolist() == [1.0, 1.0]
    assert src.wavelengths.tolist() == [1e-10, 1e-10]


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("-10 0 0 1 1e-10\n-10 abc 0\n", r"line 2.*'abc' is not a number"),
        ("1 2 3 4 5 6\n", r"line 1.*6 columns"),
        ("\n\n", r"no sources"),
        ("", r"no sources"),
    ],
)
def test_malformed(text, pattern, tmp_path):
    path = tmp_path / "sources.txt"
    path.write_text(text)
    with pytest.raises(SourceFileFormatError, match=re.escape(str(path)) + ".*" + pattern):
        read_sourcefile(path)


_LINE = st.one_of(
    st.text(alphabet=" \t,;:!0123456789-+.eE#n", max_size=30),
    st.lists(st.floats().map(repr), min_size=1, max_size=6).map(" ".join),
    st.text(max_size=20),
)


@settings(deadline=None, max_examples=200)
@given(st.lists(_LINE, max_size=6))
def test_fuzz_text(lines):
    try:
        src = parse_sourcefile("\n".join(lines))
    except SourceFileFormatError:
        return
    n = len(src.weights)
    assert src.positions.shape == (n, 3) and src.wavelengths.shape == (n,) and n >= 1
