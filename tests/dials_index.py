"""The indexing check the DIALS interop tests share: find spots, index, and compare with the simulated cell.

Every indexed series there is the tetragonal 79.1 x 79.1 x 38.0 A crystal; ``run(cmd, cwd)`` runs a DIALS
command (asserting it succeeds) and returns its standard output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

EDGES_A = (38.0, 79.1, 79.1)


def index_and_check_cell(run, work) -> str:
    """dials.find_spots and dials.index on ``work``/imported.expt; asserts the cell edges within 0.5%, at
    least 80% of the strong spots indexed and RMSDs of at most 0.5 px.  Returns dials.index's log."""
    run(["dials.find_spots", "imported.expt", "nproc=2"], work)
    log = run(["dials.index", "imported.expt", "strong.refl"], work)
    cryst = json.loads((Path(work) / "indexed.expt").read_text())["crystal"][0]
    edges = sorted(np.linalg.norm(cryst[k]) for k in ("real_space_a", "real_space_b", "real_space_c"))
    for got, want in zip(edges, EDGES_A):
        assert abs(got - want) <= 0.005 * want, edges
    pct = float(re.findall(r"\|\s*0\s*\|\s*\d+\s*\|\s*\d+\s*\|\s*([\d.]+)%", log)[-1])
    assert pct >= 80.0, log[-3000:]
    rmsd = re.findall(r"\|\s*0\s*\|\s*\d+\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", log)[-1]
    assert float(rmsd[0]) <= 0.5 and float(rmsd[1]) <= 0.5, rmsd
    return log
