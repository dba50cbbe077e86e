"""Cost of the backward pass relative to the forward pass (PyTorch, CPU, float64).

A 256x256 image of a 100 A cubic cell, 5x5x5 cells, 1 A beam, 100 mm
detector, default sampling (the automatic oversample, here 2x2; one source,
one domain, one phi step).  The differentiable parameters (cell, misset,
distance, beam centre, wavelength, N) are tensors that require grad.

Prints the median of ``--repeats`` runs of: the forward pass with plain
numbers (no graph), the forward pass recording the graph, and the backward
pass of ``image.sum()``; and the ratio backward / forward.

Run:  python docs/examples/gradient_cost.py [--pixels 256] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bragg_core import Beam, Crystal, Detector, Experiment, simulate

F64 = torch.float64


def experiment(p, pixels):
    return Experiment(
        beam=Beam(wavelength_A=p["wavelength_A"]),
        detector=Detector(fpixels=pixels, spixels=pixels, pixel_size_mm=0.1, distance_mm=p["distance_mm"],
                          beam_center_mm=p["beam_center_mm"]),
        crystal=Crystal(cell_A_deg=p["cell_A_deg"], misset_deg=p["misset_deg"], N_cells=p["N_cells"],
                        default_F=100.0),
    )


NOMINAL = {"wavelength_A": 1.0, "distance_mm": 100.0, "beam_center_mm": (12.8, 12.8),
           "cell_A_deg": (100.0, 100.0, 100.0, 90.0, 90.0, 90.0), "misset_deg": (10.0, 20.0, 30.0),
           "N_cells": (5.0, 5.0, 5.0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pixels", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    plain = {k: torch.tensor(v, dtype=F64) for k, v in NOMINAL.items()}
    sim = simulate(experiment(plain, args.pixels))
    print(f"{args.pixels}x{args.pixels} pixels, oversample {sim.setup.oversample}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    t_plain, t_fwd, t_bwd = [], [], []
    for _ in range(args.repeats):
        with torch.no_grad():
            t0 = time.perf_counter()
            simulate(experiment(plain, args.pixels))
            t_plain.append(time.perf_counter() - t0)
        params = {k: v.clone().requires_grad_(True) for k, v in plain.items()}
        t0 = time.perf_counter()
        image = simulate(experiment(params, args.pixels)).image
        loss = image.sum()
        t_fwd.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loss.backward()
        t_bwd.append(time.perf_counter() - t0)
    med = statistics.median
    print(f"forward, no graph      {med(t_plain) * 1e3:8.1f} ms")
    print(f"forward, with graph    {med(t_fwd) * 1e3:8.1f} ms")
    print(f"backward               {med(t_bwd) * 1e3:8.1f} ms")
    print(f"backward / forward     {med(t_bwd) / med(t_fwd):8.2f}   "
          f"(backward / forward without graph {med(t_bwd) / med(t_plain):.2f})")


if __name__ == "__main__":
    main()
