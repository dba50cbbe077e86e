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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

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


def _summary(times: list[float]) -> dict:
    if not times:
        return {"times_s": [], "median_s": None, "min_s": None}
    return {"times_s": [round(t, 6) for t in times], "median_s": statistics.median(times), "min_s": min(times)}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def vm_hwm(pid: int | str = "self") -> int | None:
    """Peak resident set of a live process from /proc/PID/status (VmHWM), in bytes; None if unreadable.

    VmHWM belongs to the address space, which exec replaces: unlike
    ``ru_maxrss`` it does not inherit the high-water mark of the process that
    spawned the program (Linux carries the parent's mark across fork/vfork +
    exec into ``ru_maxrss``, so a large benchmark driver would inflate it).
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_measured(cmd: list[str], cwd: str, env: dict, timeout: float, run_report: str | None = None) -> dict:
    """Run ``cmd``; wall time, CPU time (user+sys) and peak RSS of that child alone.

    The wall time is taken where a thread blocked in ``os.wait4`` returns; the
    CPU time comes from that child's own rusage.  The peak RSS is the child's
    VmHWM, polled every millisecond while it runs (Linux); elsewhere
    ``ru_maxrss``, which on Linux can include the spawning process's
    high-water mark and is kept as ``ru_maxrss_bytes`` (an upper bound).
    """
    import threading

    out = open(os.path.join(cwd, "stdout.txt"), "wb")
    err = open(os.path.join(cwd, "stderr.txt"), "wb")
    done: dict = {}
    try:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

        def reap():
            _, status, ru = os.wait4(p.pid, 0)
            done["t"] = time.perf_counter()
            done["status"], done["ru"] = status, ru

        th = threading.Thread(target=reap, daemon=True)
        th.start()
        hwm = None
        deadline = t0 + timeout
        while th.is_alive():
            v = vm_hwm(p.pid)
            if v is not None:
                hwm = v if hwm is None else max(hwm, v)
            if time.perf_counter() > deadline:
                p.kill()
                th.join()
                p.returncode = -9
                raise TimeoutError(f"{cmd[0]} timed out after {timeout:g} s")
            th.join(0.001)
        wall = done["t"] - t0
        p.returncode = os.waitstatus_to_exitcode(done["status"])
        ru = done["ru"]
    finally:
        out.close()
        err.close()
    with open(os.path.join(cwd, "stderr.txt"), "rb") as fh:
        err_text = fh.read().decode("utf-8", "replace")
    if p.returncode != 0:
        raise RuntimeError(f"exit status {p.returncode}: {err_text[-800:].strip()}")
    ru_max = ru.ru_maxrss * 1024
    main_peak = hwm if hwm else ru_max
    # forked tile workers: bragg_core's run report (-run_report) gives the private memory
    # they added; their CPU time is in ru (reaped descendants)
    m = None
    if run_report is not None:
        with open(os.path.join(cwd, run_report)) as fh:
            m = (json.load(fh).get("render") or {}).get("workers_private_bytes")
    workers = int(m or 0)
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_bytes": main_peak + workers,
            "main_process_peak_rss_bytes": main_peak, "workers_private_bytes": workers,
            "peak_rss_source": ("VmHWM" if hwm else "ru_maxrss") + (" + workers' private" if m is not None else ""),
            "ru_maxrss_bytes": ru_max}


def _read_float_image(path: str, shape: tuple[int, int]) -> np.ndarray:
    return np.fromfile(path, dtype="<f4").reshape(shape[1], shape[0])


def accuracy(test: np.ndarray, ref: np.ndarray) -> dict:
    """Pearson r and max|diff|/max|ref| of ``test`` against ``ref``."""
    a = np.asarray(test, dtype=np.float64).ravel()
    b = np.asarray(ref, dtype=np.float64).ravel()
    da, db = a - a.mean(), b - b.mean()
    den = math.sqrt(float(da @ da) * float(db @ db))
    r = float(da @ db) / den if den > 0 else (1.0 if np.array_equal(a, b) else 0.0)
    scale = float(np.max(np.abs(b))) or 1.0
    return {"pearson_r": r, "max_abs_diff_over_max": float(np.max(np.abs(a - b))) / scale}


def _env(threads: int, backend: str | None = None, dtype: str | None = None) -> dict:
    env = dict(os.environ)
    t = str(threads)
    env.update(OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, BRAGG_CORE_THREADS=t)
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


# ----------------------------------------------------------------------------- worker


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its reaped children (forked tile workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def worker(spec: dict) -> dict:
    """Runs in a fresh process: warm-up, timed steady-state calls, peak RSS, image saved."""
    import resource

    backend, dtype = spec["backend"], spec["dtype"]
    from bragg_core._backend import enable_float64, to_numpy

    enable_float64(backend, dtype)  # as the command line does
    from bragg_core import simulate_args

    if backend == "torch":
        import torch
    elif backend == "jax":
        import jax  # noqa: F401

    rss_imported = vm_hwm() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def once():
        t0, c0 = time.perf_counter(), _cpu_with_children()
        sim = simulate_args(spec["argv"], cwd=spec["cwd"], backend=backend, dtype=dtype)
        img = sim.image
        if hasattr(img, "block_until_ready"):
            img.block_until_ready()
        return sim, time.perf_counter() - t0, _cpu_with_children() - c0

    sim, first, _ = once()
    workers = sim.info.workers_private_bytes
    times, cpus = [], []
    for _ in range(spec["rounds"]):
        del sim
        sim, t, c = once()
        times.append(t)
        cpus.append(c)
        workers = max(workers, sim.info.workers_private_bytes)
    # forked tile workers: their private memory adds to this process's peak
    peak = (vm_hwm() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) + workers
    s = sim.setup
    img = np.asarray(to_numpy(sim.image))
    if spec.get("save"):
        np.save(spec["save"], img)
    info = {
        "first_call_s": first, **_summary(times), "cpu_times_s": [round(c, 6) for c in cpus],
        "peak_rss_bytes": peak, "workers_private_bytes": workers, "rss_after_import_bytes": rss_imported,
        "steps": s.steps, "layers": int(s.thick.count), "sources": s.n_sources,
        "mosaic_domains": s.n_mosaic, "phi_steps": int(s.phi.count), "oversample": s.oversample,
        "image_dtype": str(img.dtype), "image_sum": float(np.sum(img, dtype=np.float64)),
        "finite": bool(np.all(np.isfinite(img))),
    }
    if backend == "torch":
        info["torch_threads"] = torch.get_num_threads()
    return info


def _counts(argv: list[str]) -> dict:
    """Sampling counts of a case from the setup alone (no image rendered)."""
    from bragg_core._backend import get_context
    from bragg_core.cli.args import build_config, parse_args
    from bragg_core.engine.setup import build_setup

    cfg = build_config(parse_args(argv), ".")
    s = build_setup(cfg.experiment, get_context(backend="numpy", dtype="float64"))
    return {"steps": s.steps, "layers": int(s.thick.count), "sources": s.n_sources,
            "mosaic_domains": s.n_mosaic, "phi_steps": int(s.phi.count), "oversample": s.oversample}


def run_worker(case_argv, backend, dtype, rounds, save, threads, timeout) -> dict:
    with tempfile.TemporaryDirectory(prefix="bragg_bench_w_") as d:
        spec = {"argv": case_argv, "backend": backend, "dtype": dtype, "rounds": rounds,
                "save": save, "cwd": d}
        spec_path = os.path.join(d, "spec.json")
        result_path = os.path.join(d, "result.json")
        with open(spec_path, "w") as fh:
            json.dump(spec, fh)
        m = run_measured([sys.executable, "-m", "bragg_core.bench", "--_worker", spec_path, result_path],
                         d, _env(threads, backend, dtype), timeout)
        with open(result_path) as fh:
            res = json.load(fh)
    res["process_wall_s"] = m["wall_s"]
    res["process_peak_rss_bytes"] = m["peak_rss_bytes"]
    return res


# ----------------------------------------------------------------------------- driver


def machine_info() -> dict:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L2 cache",
                             "L3 cache", "Hypervisor vendor"):
                info["lscpu_" + k.strip().replace(" ", "_").replace("(s)", "s")] = v.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    info["mem_total_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    info.update(source_info())
    import importlib.metadata as md

    for pkg in ("numpy", "torch", "jax", "jaxlib", "array-api-compat", "bragg_core"):
        try:
            info[f"version_{pkg}"] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return info


def source_info() -> dict:
    """Which bragg_core was measured: its path and, inside a git checkout, the commit and local edits."""
    import bragg_core

    pkg = os.path.dirname(os.path.abspath(bragg_core.__file__))
    info: dict[str, Any] = {"bragg_core_path": pkg, "pythonpath": os.environ.get("PYTHONPATH"),
                            "environment": {k: v for k, v in sorted(os.environ.items())
                                            if k.startswith(("MALLOC_", "OMP_", "MKL_", "OPENBLAS_", "BRAGG_CORE_",
                                                             "JAX_", "XLA_", "TORCH_", "LD_PRELOAD"))}}
    snap = os.path.join(os.path.dirname(os.path.dirname(pkg)), "SNAPSHOT_COMMIT")
    if os.path.exists(snap):  # a 'git archive' copy made for a stable long run
        with open(snap) as fh:
            info["git_head"] = fh.read().strip()
        info["git_dirty"] = []
        return info
    try:
        head = subprocess.run(["git", "-C", pkg, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            info["git_head"] = head.stdout.strip()
            st = subprocess.run(["git", "-C", pkg, "status", "--porcelain", "--", "."],
                                capture_output=True, text=True, timeout=10)
            info["git_dirty"] = [ln[3:] for ln in st.stdout.splitlines()]
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def startup_time(n: int, timeout: float) -> dict:
    """``python -m bragg_core -h`` timed ``n`` times after one warm-up run (hyperfine-like)."""
    res = {}
    for name, cmd in (("bragg_core_h", [sys.executable, "-m", "bragg_core", "-h"]),
                      ("python_baseline", [sys.executable, "-c", "pass"])):
        times = []
        with tempfile.TemporaryDirectory(prefix="bragg_bench_s_") as d:
            for i in range(n + 1):
                m = run_measured(cmd, d, dict(os.environ), timeout)
                if i:
                    times.append(m["wall_s"])
        res[name] = {**_summary(times), "mean_s": statistics.fmean(times),
                     "stdev_s": statistics.stdev(times) if len(times) > 1 else 0.0}
    return res


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
                    m = run_measured(cmd, d, _env(args.threads, b, dt), args.timeout, run_report="run.json")
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


# ----------------------------------------------------------------------------- output


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
