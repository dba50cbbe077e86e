"""Writes the per-case parity numbers to a file at the end of the run, and prints a one-line summary.

The table goes to ``$BRAGG_PARITY_TABLE`` when set, else to
``.pytest_cache/d/bragg_core/parity.txt`` (pytest's cache folder), or, with
the cache switched off (``-p no:cacheprovider``), to the system's temporary folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _record import RESULTS  # noqa: E402

HEADER = "golden image parity (Pearson r, max|ours-ref|/max|ref|)"


def _table_path(config) -> Path:
    if os.environ.get("BRAGG_PARITY_TABLE"):
        return Path(os.environ["BRAGG_PARITY_TABLE"])
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("bragg_core")) / "parity.txt"
    return Path(tempfile.gettempdir()) / "bragg_core-parity.txt"


def pytest_terminal_summary(terminalreporter, config):
    if not RESULTS:
        return
    rows = sorted(RESULTS)
    worst_r = min(rows, key=lambda row: row[1])
    worst_d = max(rows, key=lambda row: row[2])
    summary = (f"golden image parity: {len(rows)} renders, lowest r={worst_r[1]:.9f} ({worst_r[0]}), "
               f"largest maxdiff={worst_d[2]:.3e} ({worst_d[0]})")
    path = _table_path(config)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(HEADER + "\n")
            for name, r, d in rows:
                fh.write(f"{name:70s} r={r:.9f} maxdiff={d:.3e}\n")
    except OSError as exc:
        terminalreporter.write_line(f"{summary}; table not written ({path}: {exc.strerror})")
        return
    terminalreporter.write_line(f"{summary}; table in {path}")
