"""Prints the per-case parity numbers at the end of the run."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _record import RESULTS  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("golden image parity (Pearson r, max|ours-ref|/max|ref|)")
    for name, r, d in sorted(RESULTS):
        tr.write_line(f"{name:70s} r={r:.9f} maxdiff={d:.3e}")
