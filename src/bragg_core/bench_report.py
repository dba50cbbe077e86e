"""Output of the benchmark suite (``python -m bragg_core.bench``).

``DIR/bench.json`` and the plot ``DIR/bench.png`` (``_write``, ``make_plot``),
the table printed after a run (``print_table``) and the markdown table of
``--summarize`` (``markdown``).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _write(report: dict, out: str, plot: bool = True) -> None:
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, "bench.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(report, fh, indent=1, default=float)
    os.replace(tmp, os.path.join(out, "bench.json"))
    if plot:
        try:
            make_plot(report, os.path.join(out, "bench.png"))
        except Exception as exc:  # a plot must never lose the numbers
            _log(f"plot failed: {exc}")


def make_plot(report: dict, path: str, dpi: int = 110) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    series: dict = {}
    for r in report["results"]:
        if r["case"].startswith("bench_") and r.get("pixels_per_s"):
            series.setdefault((r["backend"], r["dtype"]), []).append((r["pixels"], r["pixels_per_s"]))
    for (b, d), pts in sorted(series.items()):
        pts.sort()
        ax1.plot([p for p, _ in pts], [v for _, v in pts], "o-" if d == "float64" else "s--", label=f"{b} {d}")
    ref_pts = sorted((report["cases"][c]["pixels"], v["pixels_per_s"]) for c, v in report["reference"].items()
                     if c.startswith("bench_") and "pixels_per_s" in v)
    if ref_pts:
        ax1.plot([p for p, _ in ref_pts], [v for _, v in ref_pts], "k^-", label="reference (whole process)")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xlabel("pixels")
    ax1.set_ylabel("pixels / s (steady state)")
    ax1.set_title("throughput vs image size")
    ax1.grid(True, which="both", alpha=0.3)
    if series or ref_pts:
        ax1.legend(fontsize=8)

    rows = [r for r in report["results"] if "ratio_whole" in r or "ratio_steady" in r]
    if rows:
        labels = [f"{r['case']}\n{r['backend']} {r['dtype']}" for r in rows]
        x = np.arange(len(rows))
        ax2.bar(x - 0.2, [r.get("ratio_whole", 0) for r in rows], 0.4, label="whole process")
        ax2.bar(x + 0.2, [r.get("ratio_steady", 0) for r in rows], 0.4, label="steady state")
        ax2.axhline(1.0, color="k", lw=0.8)
        ax2.set_xticks(x)
        ax2.set_xticklabels(labels, rotation=90, fontsize=6)
        ax2.set_yscale("log")
        ax2.set_ylabel("reference time / our time  (>1: faster)")
        ax2.legend(fontsize=8)
        ax2.set_title("speed relative to the reference")
    else:
        ax2.text(0.5, 0.5, "no --reference given", ha="center", va="center", transform=ax2.transAxes)
        ax2.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _div(v, d):
    return v / d if isinstance(v, (int, float)) else None


def print_table(report: dict) -> None:
    print(f"{'case':<17}{'backend':<8}{'dtype':<9}{'whole s':>9}{'steady s':>10}{'ref s':>8}"
          f"{'x whole':>8}{'x steady':>9}{'Mpix/s':>8}{'Mpath/s':>9}{'RSS MiB':>9}  f32: 1-r / max|diff|/max")
    for r in report["results"]:
        w, s = r.get("whole", {}), r.get("steady", {})
        ref = report["reference"].get(r["case"], {})
        acc = r.get("accuracy_vs_float64")

        def f(v, fmt):
            if isinstance(v, (int, float)):
                return format(v, fmt)
            return "-".rjust(int(fmt.split(".")[0]))

        print(f"{r['case']:<17}{r['backend']:<8}{r['dtype']:<9}{f(w.get('median_s'), '9.3f')}"
              f"{f(s.get('median_s'), '10.3f')}{f(ref.get('median_s'), '8.3f')}{f(r.get('ratio_whole'), '8.2f')}"
              f"{f(r.get('ratio_steady'), '9.2f')}{f(_div(r.get('pixels_per_s'), 1e6), '8.2f')}"
              f"{f(_div(r.get('paths_per_s'), 1e6), '9.2f')}{f(_div(w.get('peak_rss_bytes'), 2**20), '9.0f')}"
              + (f"  {1 - acc['pearson_r']:.1e} / {acc['max_abs_diff_over_max']:.1e}" if acc else "")
              + (f"  ERROR {r['error'][:60]}" if r.get("error") else ""))
    st = report.get("startup")
    if st:
        print(f"python -m bragg_core -h: median {st['bragg_core_h']['median_s']:.3f} s "
              f"(python -c pass: {st['python_baseline']['median_s']:.3f} s)")


def markdown(reports: list[dict]) -> str:
    """One markdown table over the results of one or more reports (``--summarize``)."""

    def f(v, fmt, scale=1.0):
        return format(v / scale, fmt) if isinstance(v, (int, float)) else "–"

    lines = ["| case | paths/px | backend | dtype | whole s | steady s (first call) | reference s | "
             "ref/ours whole | ref/ours steady | Mpix/s | Mpaths/s | peak RSS whole / steady MiB | "
             "reference RSS MiB | float32 vs float64: 1 − r, max abs Δ / max |",
             "|" + "---|" * 14]
    for rep in reports:
        for r in rep["results"]:
            w, s = r.get("whole", {}), r.get("steady", {})
            ref = rep["reference"].get(r["case"], {})
            acc = r.get("accuracy_vs_float64")
            ppp = rep["cases"].get(r["case"], {}).get("paths_per_pixel")
            lines.append(
                f"| {r['case']} | {ppp} | {r['backend']} | {r['dtype']} | {f(w.get('median_s'), '.3g')} | "
                f"{f(s.get('median_s'), '.3g')} ({f(s.get('first_call_s'), '.3g')}) | "
                f"{f(ref.get('median_s'), '.3g')} | "
                f"{f(r.get('ratio_whole'), '.2f')} | {f(r.get('ratio_steady'), '.2f')} | "
                f"{f(r.get('pixels_per_s'), '.2f', 1e6)} | {f(r.get('paths_per_s'), '.1f', 1e6)} | "
                f"{f(w.get('peak_rss_bytes'), '.0f', 2**20)} / {f(s.get('peak_rss_bytes'), '.0f', 2**20)} | "
                f"{f(ref.get('peak_rss_bytes'), '.0f', 2**20)} | "
                + (f"{1 - acc['pearson_r']:.1e}, {acc['max_abs_diff_over_max']:.1e}" if acc else "") + " |")
    return "\n".join(lines)
