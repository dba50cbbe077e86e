"""Every golden image, rendered through the command line, against the reference.

float64: Pearson r >= 0.999999 and max|ours - ref| <= 1e-5 max|ref|;
float32: r >= 0.9999 and max difference <= 1e-3 max|ref|.
The three order-dependent cases are checked in test_order_dependent.py.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from bragg_core.cli.main import main  # noqa: E402

import golden  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _record import RESULTS  # noqa: E402

ORDER_DEPENDENT = set(golden.order_dependent())
CASES = [c for c in golden.case_ids() if c not in ORDER_DEPENDENT]
# backends that run every case; Dask runs a representative subset
FULL = [("numpy", None), ("torch", None), ("jax", None), ("array_api_strict", None)]
DASK_SUBSET = ["cubic_default", "triclinic_misset_512", "mosaic", "oversample2_thick", "interpolate_n2",
               "divergence_round", "water", "roi", "conv_xds_orgx", "tophat_spots_fudge"]
TOL = {"float64": (0.999999, 1e-5), "float32": (0.9999, 1e-3)}


def _params():
    out = []
    for name, dev in FULL:
        if not golden.backend_selected(name):
            continue
        for dt in ("float64", "float32"):
            for c in CASES:
                marks = [pytest.mark.slow] if name != "numpy" else []
                out.append(pytest.param(c, name, dev, dt, id=f"{name}-{dt}-{c}", marks=marks))
    if golden.backend_selected("dask"):
        for c in DASK_SUBSET:
            out.append(pytest.param(c, "dask", None, "float64", id=f"dask-float64-{c}", marks=[pytest.mark.slow]))
    return out


def render_with_cli(case: str, backend: str, device, dtype: str, tmp_path, extra=()) -> np.ndarray:
    """Run the command line on a golden case in a scratch copy of its folder; return the float image."""
    src = golden.case_dir(case)
    for f in os.listdir(src):
        if f not in ("image.bin.gz", "stdout.txt") and not f.startswith("trace_"):
            shutil.copy(os.path.join(src, f), tmp_path / f)
    argv = golden.args(case)
    argv += ["-floatfile", "ours.bin", "-intfile", "ours.img", "-nonoise", "-nopgm", "-noprogress",
             "-backend", backend, "-dtype", dtype, *extra]
    if device:
        argv += ["-device", device]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(argv)
    finally:
        os.chdir(cwd)
    assert rc == 0
    ref = golden.image(case)
    return np.fromfile(tmp_path / "ours.bin", dtype="<f4").reshape(ref.shape)


@pytest.mark.parametrize("case,backend,device,dtype", _params())
def test_golden_image(case, backend, device, dtype, tmp_path, capsys):
    if backend == "jax":
        pytest.importorskip("jax")
    ours = render_with_cli(case, backend, device, dtype, tmp_path)
    capsys.readouterr()
    r, d = golden.compare(ours, golden.image(case))
    RESULTS.append((f"{backend}-{dtype}-{case}", r, d))
    r_min, d_max = TOL[dtype]
    assert r >= r_min and d <= d_max, f"{case} on {backend} {dtype}: r={r:.9f} maxdiff={d:.3e}"
