"""F-calc time and peak memory: the array-backend path against gemmi's host path.

A 1000-atom protein-like model (C/N/O/S with two Fe, P 21 21 21, a cell of
protein-like density: about 16.5 A^3 per atom and half solvent) to 2 A.
Each method runs in a fresh process: a warm-up on a two-atom model (which
loads the library's kernels), then the model twice (the first call still
includes per-shape compilation on JAX); the report gives both times, the
ratio of the second to gemmi's, and the peak memory the computation added
(resident-set growth over a reset high-water mark, largest of the two
calls; for CUDA, the peak allocated device memory).

    python docs/examples/bench_fcalc.py                    # gemmi, numpy, torch (and torch-cuda if present)
    python docs/examples/bench_fcalc.py --methods gemmi,numpy --budget-mib 64 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

CELL = (45.0, 52.0, 56.0, 90.0, 90.0, 90.0)


def model_text(n_atoms: int = 1000, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    els = list(rng.choice(["C", "N", "O", "S"], size=n_atoms - 2, p=[0.62, 0.17, 0.19, 0.02])) + ["FE", "FE"]
    lines = [f"CRYST1{CELL[0]:9.3f}{CELL[1]:9.3f}{CELL[2]:9.3f}{CELL[3]:7.2f}{CELL[4]:7.2f}{CELL[5]:7.2f} P 21 21 21"]
    for i, el in enumerate(els):
        x, y, z = rng.uniform(0.0, 1.0, 3) * np.array(CELL[:3])
        name = f" {el:<3s}" if len(el) == 1 else f"{el:<4s}"
        lines.append("ATOM  %5d %-4s ALA A%4d    %8.3f%8.3f%8.3f%6.2f%6.2f          %2s"
                     % (i + 1, name, i // 8 + 1, x, y, z, rng.uniform(0.5, 1.0), rng.uniform(8.0, 40.0), el))
    return "\n".join(lines) + "\nEND\n"


def _rss_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def run_one(method: str, dmin: float, budget_mib: float) -> dict:
    import gemmi

    from bragg_core import sfdata
    from bragg_core.io.models import model_from_structure

    model = model_from_structure(gemmi.read_structure_string(model_text()), "bench.pdb")
    plan = sfdata.fcalc_plan(model, dmin)
    kw = {}
    sync = None
    if method != "gemmi":
        backend, _, device = method.partition("-")
        kw = dict(backend=backend, dtype="float64", memory_budget_bytes=int(budget_mib * 2**20))
        if device:
            kw["device"] = device
        if backend == "torch" and device == "cuda":
            import torch

            sync = torch.cuda.synchronize
        if backend == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)

    def once():
        if method == "gemmi":
            return sfdata.fcalc_gemmi(model, 1.0, dmin, plan=plan)
        g = sfdata.fcalc(model, 1.0, dmin, plan=plan, **kw)
        if hasattr(g.F, "block_until_ready"):
            g.F.block_until_ready()
        if sync:
            sync()
        return g

    # warm-up on a two-atom model: loads the library's kernels, so that the peak below is the working set
    small = model_from_structure(gemmi.read_structure_string(model_text(2)), "warm.pdb")
    if method == "gemmi":
        sfdata.fcalc_gemmi(small, 1.0, 6.0)
    else:
        sfdata.fcalc(small, 1.0, 6.0, **kw)
    times = []
    peak_kib = 0
    for _ in range(2):
        try:
            with open("/proc/self/clear_refs", "w") as fh:   # reset the resident high-water mark
                fh.write("5")
        except OSError:
            pass
        base = _rss_kib("VmRSS")
        if sync:
            import torch

            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
        peak_kib = max(peak_kib, _rss_kib("VmHWM") - base)
    out = dict(method=method, n_atoms=model.n_atoms, n_unique=int(plan.hkl.shape[0]),
               n_p1=int(np.count_nonzero(plan.index < 2 * plan.hkl.shape[0])), n_ops=int(plan.ops.rot.shape[0]),
               first_s=times[0], second_s=times[1], peak_host_MiB=peak_kib / 1024.0)
    if sync:
        import torch

        out["peak_device_MiB"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=None, help="comma list of gemmi, numpy, torch, torch-cuda, jax")
    ap.add_argument("--dmin", type=float, default=2.0)
    ap.add_argument("--budget-mib", type=float, default=64.0, help="F-calc working-memory budget (backend path)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--mmap-threshold-kib", type=int, default=None,
                    help="fix glibc's mmap threshold (freed large arrays then leave the resident set at once, "
                         "so the peak measures the live working set rather than what the allocator keeps)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        if args.mmap_threshold_kib:
            import ctypes

            ctypes.CDLL("libc.so.6").mallopt(-3, int(args.mmap_threshold_kib) * 1024)   # M_MMAP_THRESHOLD
        if args.threads and args.one.startswith("torch"):
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(run_one(args.one, args.dmin, args.budget_mib)))
        return 0
    methods = args.methods.split(",") if args.methods else ["gemmi", "numpy", "torch"]
    if args.methods is None:
        try:
            import torch

            if torch.cuda.is_available():
                methods.append("torch-cuda")
        except ImportError:
            pass
    results = []
    for m in methods:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", m, "--dmin", str(args.dmin),
               "--budget-mib", str(args.budget_mib)] + (["--threads", str(args.threads)] if args.threads else []) \
            + (["--mmap-threshold-kib", str(args.mmap_threshold_kib)] if args.mmap_threshold_kib else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{m}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ref = next((r for r in results if r["method"] == "gemmi"), None)
    print(f"{'method':<12} {'first s':>9} {'second s':>9} {'/ gemmi':>8} {'peak MiB':>9}")
    for r in results:
        ratio = r["second_s"] / ref["second_s"] if ref else float("nan")
        r["ratio_to_gemmi"] = ratio
        peak = r.get("peak_device_MiB", r["peak_host_MiB"])
        print(f"{r['method']:<12} {r['first_s']:9.3f} {r['second_s']:9.3f} {ratio:8.2f} {peak:9.1f}")
    if results:
        r = results[0]
        print(f"{r['n_atoms']} atoms, {r['n_ops']} operators, {r['n_unique']} unique reflections "
              f"({r['n_p1']} P1 indices) to {args.dmin:g} A; budget {args.budget_mib:g} MiB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
