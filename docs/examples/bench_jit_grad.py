"""Compile time, run time and peak memory of ``jax.jit(jax.grad(...))`` of a rendered image, over image sizes.

Each size runs in a fresh process (peak memory is the process's own high-water
mark).  The loss is the sum of squares of a triclinic 0.1 mm-pixel image at the
default memory budget, differentiated with respect to the distance, the cell
and the misset.  Usage::

    python docs/examples/bench_jit_grad.py 128 256 512 512x3 > jit_grad.json   # NxOVERSAMPLE
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from bragg_core.experiment import Beam, Crystal, Detector, Experiment
from bragg_core.simulate import simulate

n = int(sys.argv[1])
os_ = int(sys.argv[2])

def image(d, cell, misset):
    exp = Experiment(beam=Beam(wavelength_A=1.0),
                     detector=Detector(fpixels=n, spixels=n, pixel_size_mm=0.1, distance_mm=d, oversample=os_),
                     crystal=Crystal(cell_A_deg=cell, misset_deg=misset, N_cells=(5.0, 5.0, 5.0), default_F=10.0))
    sim = simulate(exp, backend="jax", dtype="float64")
    return sim.image, sim.info.tiles

args = (jnp.asarray(100.0), jnp.asarray([70.0, 80.0, 90.0, 85.0, 95.0, 105.0]), jnp.asarray([10.0, 5.0, 3.0]))
tiles = image(*args)[1]
f = jax.jit(jax.grad(lambda *a: jnp.sum(image(*a)[0] ** 2), argnums=(0, 1, 2)))
t0 = time.perf_counter()
g = f(*args)
jax.block_until_ready(g)
first = time.perf_counter() - t0
t0 = time.perf_counter()
jax.block_until_ready(f(args[0] + 0.1, args[1], args[2]))
run = time.perf_counter() - t0
print(json.dumps({"pixels": n, "oversample": os_, "tiles": tiles, "compile_and_first_run_s": round(first, 3),
                  "run_s": round(run, 3), "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def main(sizes):
    out = []
    for size in sizes:
        n, _, os_ = size.partition("x")
        res = subprocess.run([sys.executable, "-c", CHILD, n, os_ or "1"], capture_output=True, text=True,
                             check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(out[-1]), file=sys.stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:] or ["128", "256", "512", "512x3"])
