"""Throughput of many still shots: bragg_core (worker processes, a Dask LocalCluster) against the reference
program run once per shot.

    python docs/examples/bench_shots.py --shots 1000 --reference /path/to/nanoBragg --out bench_shots.json

Every shot is a 512 x 512 still of a randomly oriented crystal (uniform on
SO(3), from ``bragg_core.shots``); the reference gets the same orientation as
``-misset`` angles, one process per shot with ``--ref-threads`` OpenMP
threads, in a fresh temporary folder.  bragg_core runs in each working
dtype of ``--dtypes`` (float64 and float32 by default).  Reported: shots/s of each, the
speed-up, the largest resident memory of a worker process (per-shot memory),
the CPU time per shot (user + system, all processes: a figure that other
load on the machine disturbs less than shots/s), and how close the reference's
image of shot 0 is to bragg_core's in each dtype.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

from bragg_core.cli.args import build_config, parse_args
from bragg_core.shots import ShotRun, shot_truth, simulate_shots

FLAGS = "-cell 79.1 79.1 38 90 90 90 -default_F 100 -N 10 -lambda 1 -distance 100 -detpixels 512"


def _maxrss_children_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def _cpu_s(who) -> float:
    u = resource.getrusage(who)
    return u.ru_utime + u.ru_stime


def bench_bragg(run, mode: str, workers: int, dtype: str = "float64"):
    t0 = time.perf_counter()
    n = 0
    first = None
    if mode == "dask":
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            client._bragg_local = True
            start = time.perf_counter()  # the cluster's start-up is reported apart
            for res in simulate_shots(run, client=client, dtype=dtype):
                assert res.ok, res.error
                n += 1
                if res.index == 0:
                    first = res.image
            el = time.perf_counter() - start
            mem = max(w["metrics"]["memory"] for w in client.scheduler_info()["workers"].values()) / 2**20
        return {"mode": f"dask LocalCluster ({workers} processes), {dtype}", "shots": n, "seconds": el,
                "shots_per_s": n / el, "startup_s": start - t0, "worker_rss_mib_at_end": mem}, first
    cpu0 = _cpu_s(resource.RUSAGE_CHILDREN) + _cpu_s(resource.RUSAGE_SELF)
    for res in simulate_shots(run, workers=workers, dtype=dtype):
        assert res.ok, res.error
        n += 1
        if res.index == 0:
            first = res.image
    el = time.perf_counter() - t0
    out = {"mode": (f"numpy {dtype}, {workers} worker process{'es' if workers > 1 else ''}" if workers > 1
                    else f"numpy {dtype}, in process (the engine's own tile workers)"), "shots": n, "seconds": el,
           "shots_per_s": n / el,
           "cpu_s_per_shot": (_cpu_s(resource.RUSAGE_CHILDREN) + _cpu_s(resource.RUSAGE_SELF) - cpu0) / n}
    if workers > 1:
        out["worker_max_rss_mib"] = _maxrss_children_mib()
    else:
        out["process_max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out, first


def bench_reference(run, exe: str, threads: int):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    first = None
    rss = cpu = 0.0
    for k in range(run.n_shots):
        m = shot_truth(run, k).misset_deg
        with tempfile.TemporaryDirectory() as d:
            cmd = [exe, *shlex.split(FLAGS), "-noprogress", "-nonoise", "-nopgm", "-misset",
                   *(repr(float(a)) for a in m)]
            if k == 0:
                cmd += ["-floatfile", "ref.bin"]
            with open(os.path.join(d, "log.txt"), "wb") as log:
                proc = subprocess.Popen(cmd, cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            rss = max(rss, usage.ru_maxrss / 1024.0)
            cpu += usage.ru_utime + usage.ru_stime
            if proc.returncode:
                raise SystemExit(f"reference failed on shot {k} (exit status {proc.returncode})")
            if k == 0:
                first = np.fromfile(os.path.join(d, "ref.bin"), dtype="<f4").reshape(512, 512)
    el = time.perf_counter() - t0
    return {"mode": f"reference, one process per shot, {threads} threads", "shots": run.n_shots, "seconds": el,
            "shots_per_s": run.n_shots / el, "cpu_s_per_shot": cpu / run.n_shots, "max_rss_mib": rss}, first


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shots", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reference", help="the reference program (skipped when not given)")
    p.add_argument("--ref-threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--modes", default="pool,dask", help="comma-separated: pool, inprocess, dask")
    p.add_argument("--dtypes", default="float64,float32", help="comma-separated working dtypes of bragg_core")
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)
    base = build_config(parse_args(shlex.split(FLAGS)), ".").experiment
    run = ShotRun(base, n_shots=a.shots, seed=a.seed)
    results = [{"load_average_at_start": os.getloadavg()}]
    images = {}
    for dtype in a.dtypes.split(","):
        for mode in a.modes.split(","):
            if mode == "pool":
                r, img = bench_bragg(run, "pool", a.workers, dtype)
            elif mode == "inprocess":
                r, img = bench_bragg(run, "pool", 1, dtype)
            elif mode == "dask":
                try:
                    r, img = bench_bragg(run, "dask", a.workers, dtype)
                except ImportError:
                    print("dask.distributed is not installed: Dask skipped", file=sys.stderr)
                    continue
            else:
                raise SystemExit(f"--modes: unknown mode {mode!r}")
            results.append(r)
            images.setdefault(dtype, img)
            print(json.dumps(r), flush=True)
    if a.reference:
        r, ref_img = bench_reference(run, a.reference, a.ref_threads)
        results.append(r)
        print(json.dumps(r), flush=True)
        r_ref = r
        for dtype, ours in images.items():   # shot 0 of each dtype against the reference's
            if ours is None:
                continue
            scale = float(np.abs(ref_img).max())
            diff = float(np.abs(ours.astype(np.float64) - ref_img).max()) / scale
            cmp = {"dtype": dtype, "shot0_max_abs_diff_over_ref_max": diff, "shot0_ref_max": scale,
                   "shot0_ref_sum": float(ref_img.sum(dtype=np.float64)),
                   "shot0_ours_sum": float(ours.sum(dtype=np.float64))}
            print(json.dumps(cmp), flush=True)
            results.append(cmp)
        for o in results:
            if "mode" in o and o is not r_ref:
                o["speedup_vs_reference"] = o["shots_per_s"] / r_ref["shots_per_s"]
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"shots": a.shots, "flags": FLAGS, "cpus": os.cpu_count(), "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
