"""DIALS indexes the 20-image rotation series from one NXmx file and from a CBF series.

The series of ``test_dials.py`` (tetragonal 79.1 79.1 38.0, misset 10 20 30, 1 degree per image, 1024^2 at
150 mm, beam off centre, two-theta 15 degrees), rendered through the API, Poisson deviates written as
int32 counts once into an NXmx file (bitshuffle-LZ4 when hdf5plugin is installed, DIALS's HDF5 pointed at
its filters) and once as 20 full CBF files; each goes through dials.import, dials.find_spots and
dials.index with nothing but the file: the cell within 0.5% on every edge, >= 80% of the strong spots
indexed, RMSD <= 0.5 px, and dials.import's beam centre within 0.1 px and distance within 0.01 mm.
Skipped, with the reason, where DIALS or h5py is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from bragg_core.cli.args import build_config, parse_args
from bragg_core.io._imageset import geometry_from_experiment
from dials_index import index_and_check_cell

pytestmark = pytest.mark.skipif(shutil.which("dials.import") is None,
                                reason="DIALS is not installed (apt-get install -y dials)")
h5py = pytest.importorskip("h5py", reason="NeXus files need h5py (the nexus extra)")

SERIES = ("-cell 79.1 79.1 38.0 90 90 90 -default_F 100 -N 8 -gauss_xtal -lambda 1 -distance 150 "
          "-detpixels 1024 -misset 10 20 30 -phi 0 -osc 1 -phisteps 3 -Xbeam 40 -Ybeam 60 -twotheta 15 "
          "-fluence 1e30").split()


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="2")
    try:
        import hdf5plugin

        env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    except ImportError:
        pass
    return env


def _run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env=_env())
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    from bragg_core.io.cbf import write_cbf
    from bragg_core.io.nexus import NexusWriter
    from bragg_core.series import simulate_series

    d = tmp_path_factory.mktemp("series")
    exp = build_config(parse_args(SERIES), ".").experiment
    rng = np.random.default_rng(7)
    with NexusWriter(d / "series.nxs", exp, n_images=20, dtype="int32") as w:
        for i, sim in enumerate(simulate_series(exp, 20, backend="numpy", dtype="float32")):
            counts = rng.poisson(np.maximum(np.asarray(sim.image, dtype=np.float64), 0.0)).astype(np.int32)
            w.append(counts)
            write_cbf(d / f"img_{i + 1:04d}.cbf", counts, exp, index=i, n_images=20)
    return d, geometry_from_experiment(exp, n_images=20)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nexus", "cbf"])
def test_series_indexes_in_dials(series, kind):
    d, g = series
    work = d / kind
    work.mkdir()
    files = [str(d / "series.nxs")] if kind == "nexus" else [str(d / f"img_{i:04d}.cbf") for i in range(1, 21)]
    _run(["dials.import", *files], work)
    index_and_check_cell(_run, work)
    imported = json.loads((work / "imported.expt").read_text())
    (panel,) = imported["detector"][0]["panels"]
    f, s, o = (np.asarray(panel[k], float) for k in ("fast_axis", "slow_axis", "origin"))
    n = np.cross(f, s)
    b = -np.asarray(imported["beam"][0]["direction"], float)
    q = (o @ n) / (b @ n) * b - o
    centre = np.array([q @ f, q @ s]) / panel["pixel_size"][0]
    np.testing.assert_allclose(centre, g.beam_centre_px(0), atol=0.1)
    fv, sv, ov = g.panel_vectors(0)
    assert abs(o @ n) == pytest.approx(abs(ov @ np.cross(fv, sv)), abs=0.01)
