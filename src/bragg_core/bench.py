"""Benchmark suite: ``python -m bragg_core.bench``.

For every (case, backend, dtype) it measures

* **whole process**: wall and CPU time and peak RSS of
  ``python -m bragg_core <case> -backend B -dtype D -floatfile out.bin -nonoise -nopgm -noprogress``
  run in a temporary directory (start-up, import, simulation and output
  writing included);
* **steady state**: in a fresh worker process (so that its peak RSS is the
  simulation's alone), one warm-up ``simulate_args`` call and then ``--rounds``
  timed calls;
* throughput: pixels/s and sub-pixel paths/s (pixels x steps x sensor layers,
  where steps = sources x mosaic domains x phi steps x oversample^2);
* for float32: the accuracy against the float64 image of the same case
  (Pearson r and max|diff|/max), so that speed comes with its price;
* with ``--reference PATH`` (a nanoBragg binary): the same case run by the
  reference in a temporary directory, alternating round by round with our
  whole-process runs, and the ratios reference_time / our_time.

The results go to ``DIR/bench.json`` and a plot ``DIR/bench.png`` (throughput
against pixel count, ratio bars).  ``--quick`` runs tiny cases once, to keep
the suite working in CI; its numbers mean nothing.

The reference is never built here: pass the path of a binary you built.

Measuring (timed child processes, the steady-state worker, machine and source
information) lives in ``bench_measure``, the output (``bench.json``, the plot,
the tables) in ``bench_report``; their names stay importable from here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

from .bench_measure import (  # noqa: F401  (re-exported: bragg_core.bench.X keeps working)
    _counts,
    _cpu_with_children,
    _env,
    _loadavg,
    _read_float_image,
    _summary,
    accuracy,
    machine_info,
    run_measured,
    run_worker,
    source_info,
    startup_time,
    vm_hwm,
    worker,
)
from .bench_report import _div, _log, _write, make_plot, markdown, print_table  # noqa: F401

BASE = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-lambda", "6.2",
        "-N", "5", "-distance", "100"]
HEAVY = ["-oversample", "2", "-mosaic", "0.5", "-mosaic_dom", "4", "-mosaic_seed", "7",
         "-phi", "1", "-osc", "1", "-phisteps", "2", "-hdivrange", "0.5", "-vdivrange", "0.5",
         "-hdivsteps", "3", "-vdivsteps", "3", "-dispersion", "1", "-dispsteps", "3"]


def _px(n: int) -> list[str]:
    return ["-detpixels", str(n)]


CASES: dict[str, list[str]] = {
    "bench_512": BASE + _px(512),
    "bench_1024": BASE + _px(1024),
    "bench_2048": BASE + _px(2048),
    "bench_4096": BASE + _px(4096),
    "heavy_1024": BASE + _px(1024) + HEAVY,
    "mosaic100_1024": BASE + _px(1024) + ["-mosaic", "0.5", "-mosaic_dom", "100"],
    "mosaic1000_1024": BASE + _px(1024) + ["-mosaic", "0.5", "-mosaic_dom", "1000"],
}
QUICK_CASES: dict[str, list[str]] = {
    "bench_64": BASE + _px(64),
    "bench_128": BASE + _px(128),
    "heavy_32": BASE + _px(32) + HEAVY,
}
DEFAULT_CASES = list(CASES)
CPU_BACKENDS = ("numpy", "torch", "jax")
FLAGS_OURS = ["-floatfile", "out.bin", "-nonoise", "-nopgm", "-noprogress"]
FLAGS_REF = ["-nonoise", "-nopgm", "-floatfile", "image.bin"]


# ----------------------------------------------------------------------------- helpers


def installed_backends() -> list[str]:
    """The CPU backends among numpy, torch, jax that can be imported (checked without importing)."""
    import importlib.util

    return [b for b in CPU_BACKENDS if importlib.util.find_spec(b) is not None]


def _detpixels(argv: list[str]) -> tuple[int, int]:
    n = int(argv[argv.index("-detpixels") + 1])
    return n, n


# ----------------------------------------------------------------------------- driver


def run_suite(args) -> dict:
    case_names = args.cases or (list(QUICK_CASES) if args.quick else DEFAULT_CASES)
    unknown = [c for c in case_names if c not in {**CASES, **QUICK_CASES}]
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(unknown)}; known: {', '.join({**CASES, **QUICK_CASES})}")
    # --quick stays on NumPy unless told otherwise: importing torch/JAX and JAX's
    # compilation take longer than the whole quick run is allowed to
    backends = args.backends or (["numpy"] if args.quick else installed_backends())
    modes = args.modes
    dtypes = args.dtypes
    rounds = 1 if args.quick and args.rounds is None else (args.rounds or 3)
    ref = os.path.abspath(args.reference) if args.reference else None
    if ref and not os.access(ref, os.X_OK):
        raise SystemExit(f"--reference {args.reference}: not an executable file")

    report: dict[str, Any] = {
        "schema": 1, "command": [os.path.basename(sys.executable), "-m", "bragg_core.bench", *sys.argv[1:]],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
        "options": {"cases": case_names, "backends": backends, "dtypes": dtypes, "rounds": rounds, "modes": modes,
                    "threads": args.threads, "reference": ref, "quick": bool(args.quick)},
        "cases": {}, "results": [], "reference": {}, "startup": None,
    }
    _log(f"bench: cases={case_names} backends={backends} dtypes={dtypes} rounds={rounds} threads={args.threads}")
    if not args.no_startup:
        report["startup"] = startup_time(3 if args.quick else 10, args.timeout)
        _log(f"startup: -h {report['startup']['bragg_core_h']['median_s']:.3f} s")

    keep = tempfile.mkdtemp(prefix="bragg_bench_img_")
    try:
        for case in case_names:
            argv = {**CASES, **QUICK_CASES}[case]
            report["cases"][case] = _run_case(case, argv, backends, dtypes, rounds, ref, args, keep, report)
            if args.out:  # keep partial results of long runs
                _write(report, args.out, plot=False)
    finally:
        shutil.rmtree(keep, ignore_errors=True)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return report


def _run_case(case, argv, backends, dtypes, rounds, ref, args, keep, report) -> dict:
    fp, sp = _detpixels(argv)
    pixels = fp * sp
    configs = [(b, d) for b in backends for d in dtypes]
    results = {c: {"case": case, "backend": c[0], "dtype": c[1], "pixels": pixels, "error": None}
               for c in configs}
    case_info = {"argv": argv, "pixels": pixels, "detpixels": [fp, sp]}

    # steady state (fresh worker per configuration); float64 first so float32 can compare
    images = {}
    for b, d in sorted(configs, key=lambda c: c[1] != "float64") if "steady" in args.modes else ():
        r = results[(b, d)]
        save = os.path.join(keep, f"{case}_{b}_{d}.npy")
        _log(f"[{case}] steady {b} {d} ...")
        try:
            w = run_worker(argv, b, d, rounds, save, args.threads, args.timeout)
            w["loadavg_after"] = _loadavg()
            r["steady"] = w
            images[(b, d)] = save
            _log(f"[{case}] steady {b} {d}: first {w['first_call_s']:.3f} s, median {w['median_s']:.3f} s, "
                 f"peak RSS {w['peak_rss_bytes'] / 2**20:.0f} MiB")
            case_info.setdefault("steps", w["steps"])
            case_info.setdefault("layers", w["layers"])
            for k in ("sources", "mosaic_domains", "phi_steps", "oversample"):
                case_info.setdefault(k, w[k])
        except Exception as exc:  # record and carry on: one broken backend must not lose the run
            r["error"] = f"steady: {exc}"
            _log(f"[{case}] steady {b} {d} FAILED: {exc}")
    if "steps" not in case_info:
        case_info.update(_counts(argv))
    paths_per_pixel = case_info["steps"] * case_info["layers"]
    case_info["paths_per_pixel"] = paths_per_pixel

    # whole process, alternating with the reference round by round
    ref_times, ref_cpu, ref_rss, ref_image, ref_src = [], [], [], None, None
    whole: dict = {c: [] for c in configs}
    for rnd in range(rounds if "whole" in args.modes else 0):
        if ref:
            with tempfile.TemporaryDirectory(prefix="bragg_bench_ref_") as d:
                _log(f"[{case}] reference round {rnd + 1}/{rounds} ...")
                try:
                    m = run_measured([ref, *argv, *FLAGS_REF], d, _env(args.threads), args.timeout)
                    ref_times.append(m["wall_s"])
                    ref_cpu.append(m["cpu_s"])
                    ref_rss.append(m["peak_rss_bytes"])
                    ref_src = m["peak_rss_source"]
                    if ref_image is None:
                        ref_image = os.path.join(keep, f"{case}_reference.bin")
                        shutil.copy(os.path.join(d, "image.bin"), ref_image)
                    _log(f"[{case}] reference: {m['wall_s']:.3f} s")
                except Exception as exc:
                    report["reference"].setdefault(case, {})["error"] = str(exc)
                    _log(f"[{case}] reference FAILED: {exc}")
        for c in configs:
            b, dt = c
            with tempfile.TemporaryDirectory(prefix="bragg_bench_cli_") as d:
                cmd = [sys.executable, "-m", "bragg_core", *argv, "-backend", b, "-dtype", dt, *FLAGS_OURS,
                       "-run_report", "run.json"]
                try:
                    m = run_measured(cmd, d, _env(args.threads), args.timeout, run_report="run.json")
                    m["loadavg_after"] = _loadavg()
                    whole[c].append(m)
                    _log(f"[{case}] whole {b} {dt}: {m['wall_s']:.3f} s, "
                         f"peak RSS {m['peak_rss_bytes'] / 2**20:.0f} MiB")
                    if rnd == 0 and ref_image is not None:
                        ours = _read_float_image(os.path.join(d, "out.bin"), (fp, sp))
                        refimg = _read_float_image(ref_image, (fp, sp))
                        results[c]["accuracy_vs_reference"] = accuracy(ours, refimg)
                except Exception as exc:
                    prev = results[c]["error"]
                    results[c]["error"] = (prev + "; " if prev else "") + f"whole: {exc}"
                    _log(f"[{case}] whole {b} {dt} FAILED: {exc}")

    if ref and ref_times:
        report["reference"][case] = {**_summary(ref_times), "cpu_times_s": ref_cpu,
                                     "peak_rss_bytes": max(ref_rss), "peak_rss_source": ref_src,
                                     "threads": args.threads,
                                     "pixels_per_s": pixels / statistics.median(ref_times),
                                     "paths_per_s": pixels * paths_per_pixel / statistics.median(ref_times)
                                     if paths_per_pixel else None}

    for c in configs:
        r = results[c]
        runs = whole[c]
        if runs:
            times = [m["wall_s"] for m in runs]
            r["whole"] = {**_summary(times), "cpu_times_s": [round(m["cpu_s"], 6) for m in runs],
                          "peak_rss_bytes": max(m["peak_rss_bytes"] for m in runs),
                          "peak_rss_source": runs[0]["peak_rss_source"],
                          "ru_maxrss_bytes": max(m["ru_maxrss_bytes"] for m in runs),
                          "loadavg_after": [m["loadavg_after"] for m in runs]}
            r["whole"]["pixels_per_s"] = pixels / r["whole"]["median_s"]
        st = r.get("steady")
        if st and st.get("median_s"):
            r["pixels_per_s"] = pixels / st["median_s"]
            r["paths_per_s"] = pixels * paths_per_pixel / st["median_s"]
        if ref and ref_times:
            rt = statistics.median(ref_times)
            if runs:
                r["ratio_whole"] = rt / r["whole"]["median_s"]
                r["ratio_whole_best"] = min(ref_times) / r["whole"]["min_s"]
            if st and st.get("median_s"):
                r["ratio_steady"] = rt / st["median_s"]
                r["ratio_steady_best"] = min(ref_times) / st["min_s"]
        b, d = c
        if d == "float32" and c in images:
            f64 = images.get((b, "float64")) or next((images[k] for k in images if k[1] == "float64"), None)
            if f64:
                r["accuracy_vs_float64"] = accuracy(np.load(images[c]), np.load(f64))
                r["accuracy_vs_float64"]["float64_backend"] = b if (b, "float64") in images else \
                    next(k[0] for k in images if k[1] == "float64")
        report["results"].append(r)
    return case_info


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _usage_error(message: str) -> int:
    print(f"python -m bragg_core.bench: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--summarize"]:  # markdown table from saved reports
        reports = []
        if not argv[1:]:
            return _usage_error("--summarize needs one or more report files (bench.json, written by --out DIR)")
        for path in argv[1:]:
            try:
                with open(path) as fh:
                    reports.append(json.load(fh))
            except (OSError, ValueError) as exc:
                return _usage_error(f"--summarize: {path}: {getattr(exc, 'strerror', None) or exc}")
            if not isinstance(reports[-1], dict) or not {"results", "reference", "cases"} <= set(reports[-1]):
                return _usage_error(f"--summarize: {path}: not a benchmark report (no results, reference, cases)")
        print(markdown(reports))
        return 0
    if argv[:1] == ["--_worker"]:  # internal: one steady-state measurement in this fresh process
        with open(argv[1]) as fh:
            spec = json.load(fh)
        res = worker(spec)
        with open(argv[2], "w") as fh:
            json.dump(res, fh)
        return 0
    ap = argparse.ArgumentParser(prog="python -m bragg_core.bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="cases: " + ", ".join(CASES) + "; --quick cases: " + ", ".join(QUICK_CASES)
                                 + ".  'python -m bragg_core.bench --summarize A.json [B.json ...]' prints a markdown"
                                 " table of saved reports.")
    ap.add_argument("--cases", type=_csv, help="comma-separated case names (default: all, or the quick ones)")
    ap.add_argument("--backends", type=_csv, help="comma-separated (default: installed among numpy, torch, jax)")
    ap.add_argument("--dtypes", type=_csv, default=["float64", "float32"], help="default: float64,float32")
    ap.add_argument("--modes", type=_csv, default=["whole", "steady"],
                    help="whole (command line in a subprocess) and/or steady (in-process); default both")
    ap.add_argument("--rounds", type=int, help="timed rounds per measurement (default 3; 1 with --quick)")
    ap.add_argument("--reference", metavar="PATH", help="a nanoBragg binary to compare with (never built here)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="OMP_NUM_THREADS (and MKL/OpenBLAS) for the reference and our processes")
    ap.add_argument("--out", metavar="DIR", help="write DIR/bench.json and DIR/bench.png")
    ap.add_argument("--quick", action="store_true", help="tiny cases, 1 round: keeps the suite working in CI")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per process (default 3600)")
    ap.add_argument("--no-startup", action="store_true", help="skip the 'python -m bragg_core -h' timing")
    args = ap.parse_args(argv)
    for d in args.dtypes:
        if d not in ("float32", "float64"):
            ap.error(f"--dtypes: {d!r} is not float32 or float64")
    if not args.modes or any(m not in ("whole", "steady") for m in args.modes):
        ap.error("--modes: whole and/or steady")
    if args.rounds is not None and args.rounds < 1:
        ap.error("--rounds must be at least 1")
    report = run_suite(args)
    if args.out:
        _write(report, args.out)
        _log(f"wrote {os.path.join(args.out, 'bench.json')} and bench.png")
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
