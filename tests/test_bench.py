"""The benchmark suite keeps working: ``python -m bragg_core.bench --quick`` end to end.

Not a timed test: it checks that the JSON report has its fields and that every
number in it is positive and finite.  A stand-in "reference" (a Python script
that writes a float image) exercises the --reference path without a nanoBragg
binary.
"""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import textwrap

import pytest

FAKE_REFERENCE = textwrap.dedent(
    """\
    #!{python}
    import sys
    import numpy as np
    a = sys.argv
    n = int(a[a.index("-detpixels") + 1])
    np.full((n, n), 0.5, dtype="<f4").tofile(a[a.index("-floatfile") + 1])
    """
)


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("matplotlib")
    tmp = tmp_path_factory.mktemp("bench")
    ref = tmp / "fake_nanoBragg"
    ref.write_text(FAKE_REFERENCE.format(python=sys.executable))
    ref.chmod(ref.stat().st_mode | stat.S_IXUSR)
    out = tmp / "out"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "bragg_core.bench", "--quick", "--out", str(out), "--reference", str(ref),
         "--threads", "1"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "bench.json") as fh:
        data = json.load(fh)
    data["_out"] = out
    data["_stdout"] = proc.stdout
    return data


def test_top_level_fields(report):
    for key in ("schema", "command", "machine", "options", "cases", "results", "reference", "startup"):
        assert key in report, key
    assert report["options"]["quick"] is True
    assert report["options"]["rounds"] == 1
    assert report["machine"]["cpu_count"] >= 1
    assert (report["_out"] / "bench.png").stat().st_size > 1000
    assert "bench_64" in report["_stdout"]


def test_cases_and_path_counts(report):
    cases = report["cases"]
    assert {"bench_64", "bench_128", "heavy_32"} <= set(cases)
    assert cases["bench_64"]["pixels"] == 64 * 64
    assert cases["bench_64"]["paths_per_pixel"] == 1
    # 15 sources (5 divergence points x 3 wavelengths) x 4 domains x 2 phi steps x 2x2 sub-pixels
    heavy = cases["heavy_32"]
    assert (heavy["sources"], heavy["mosaic_domains"], heavy["phi_steps"], heavy["oversample"]) == (15, 4, 2, 2)
    assert heavy["paths_per_pixel"] == 480


def test_every_result_is_complete_and_sane(report):
    results = report["results"]
    assert len(results) == len(report["cases"]) * 2  # numpy x (float64, float32)
    for r in results:
        where = f"{r['case']} {r['backend']} {r['dtype']}"
        assert r["error"] is None, (where, r["error"])
        w, s = r["whole"], r["steady"]
        for v in (w["median_s"], w["min_s"], w["peak_rss_bytes"], w["pixels_per_s"],
                  s["median_s"], s["min_s"], s["first_call_s"], s["peak_rss_bytes"],
                  r["pixels_per_s"], r["paths_per_s"], r["ratio_whole"], r["ratio_steady"]):
            assert _positive(v), (where, v)
        assert len(w["times_s"]) == 1 and len(s["times_s"]) == 1
        assert s["finite"] and s["image_sum"] > 0, where
        # a whole process holds at least the interpreter, NumPy and the image
        assert w["peak_rss_bytes"] > 10 * 2**20, where
        assert r["paths_per_s"] == pytest.approx(r["pixels_per_s"] * report["cases"][r["case"]]["paths_per_pixel"])
        acc = r["accuracy_vs_reference"]
        assert -1.0 <= acc["pearson_r"] <= 1.0 and math.isfinite(acc["max_abs_diff_over_max"])
        if r["dtype"] == "float32":
            a = r["accuracy_vs_float64"]
            assert a["pearson_r"] > 0.999999, where
            assert 0 <= a["max_abs_diff_over_max"] < 1e-4, where
        else:
            assert "accuracy_vs_float64" not in r


def test_reference_and_startup(report):
    for case in report["cases"]:
        ref = report["reference"][case]
        for v in (ref["median_s"], ref["peak_rss_bytes"], ref["pixels_per_s"]):
            assert _positive(v), (case, v)
    st = report["startup"]
    for k in ("bragg_core_h", "python_baseline"):
        assert _positive(st[k]["median_s"]) and len(st[k]["times_s"]) == 3


def test_bad_options_are_refused(tmp_path):
    for argv in (["--cases", "nope"], ["--dtypes", "float16"], ["--reference", str(tmp_path / "missing")]):
        proc = subprocess.run([sys.executable, "-m", "bragg_core.bench", "--quick", *argv],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode != 0, argv


def test_summarize_without_a_report_is_one_line_and_status_2(tmp_path):
    (tmp_path / "notjson.json").write_text("{")
    (tmp_path / "other.json").write_text('{"cases": []}')
    for argv, words in ((["MISSING.json"], "MISSING.json: No such file or directory"), ([], "needs one or more"),
                        (["notjson.json"], "notjson.json: Expecting"), (["other.json"], "not a benchmark report")):
        proc = subprocess.run([sys.executable, "-m", "bragg_core.bench", "--summarize", *argv],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert proc.stderr.count("\n") == 1 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stdout == ""


def test_summarize_a_report(report):
    proc = subprocess.run([sys.executable, "-m", "bragg_core.bench", "--summarize", str(report["_out"] / "bench.json")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ")]
    assert len(rows) == 1 + len(report["results"])
