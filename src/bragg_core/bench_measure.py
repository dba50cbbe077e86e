"""Measuring for the benchmark suite (``python -m bragg_core.bench``).

Wall and CPU time and peak RSS of a child process (``run_measured``,
``vm_hwm``), the steady-state worker that runs in a fresh process
(``worker``, started by ``run_worker`` as ``python -m bragg_core.bench
--_worker SPEC RESULT``), the accuracy of one image against another, and what
was measured where (``machine_info``, ``source_info``, ``startup_time``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------- helpers


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


def _env(threads: int) -> dict:
    """The environment of a measured process: ``threads`` threads for every library that reads one."""
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
                         d, _env(threads), timeout)
        with open(result_path) as fh:
            res = json.load(fh)
    res["process_wall_s"] = m["wall_s"]
    res["process_peak_rss_bytes"] = m["peak_rss_bytes"]
    return res


# ----------------------------------------------------------------------------- machine and start-up


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
