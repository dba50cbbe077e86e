"""Refine a crystal and detector model against an image by gradient descent (PyTorch, Adam).

A 64x64 target image (cubic cell of 100 A, 5x5x5 cells, 1 A beam, 100 mm
detector, beam centre at the panel's corner) is simulated; then the unit cell
lengths (a, b, c), the detector distance and the three misset angles are
perturbed and recovered by minimising the squared image difference with Adam,
the gradients coming from autograd through ``bragg_core.simulate``.

Why the parametrisation: on a flat detector at small angles a spot's position
depends on the cell length and the distance only through a / D, while the
absolute intensity (the pixel solid angle, ~1/D^2) fixes D.  Refining
rho = (a, b, c) / D and D separately makes the two kinds of information fall
on separate parameters, which a per-parameter method like Adam needs; refined
as (a, b, c, D) directly, the common scale of the four converges very slowly.

Run:  python docs/examples/refine_torch.py [--iterations 400]
"""

from __future__ import annotations

import argparse
import time

import torch

from bragg_core import Beam, Crystal, Detector, Experiment, simulate

F64 = torch.float64

TRUE = {"abc_A": (100.0, 100.0, 100.0), "distance_mm": 100.0, "misset_deg": (20.0, 30.0, 40.0)}
START = {"abc_A": (100.6, 99.5, 100.4), "distance_mm": 101.5, "misset_deg": (20.3, 29.8, 40.25)}

# Adam step sizes per parameter group, in the parameters' own units, and their decay per step
LR = {"rho": 5e-4, "distance_mm": 0.2, "misset_deg": 0.02}
DECAY = 0.993


def render(abc_A, distance_mm, misset_deg):
    """The image (64, 64) for cell lengths, distance and misset given as float64 tensors."""
    cell = torch.cat([abc_A, torch.tensor([90.0, 90.0, 90.0], dtype=F64)])
    experiment = Experiment(
        beam=Beam(wavelength_A=1.0),
        detector=Detector(fpixels=64, spixels=64, pixel_size_mm=0.1, distance_mm=distance_mm,
                          beam_center_mm=(0.0, 0.0), oversample=1),
        crystal=Crystal(cell_A_deg=cell, misset_deg=misset_deg, N_cells=(5, 5, 5), default_F=100.0),
    )
    return simulate(experiment).image


def as_tensors(values):
    return {k: torch.tensor(v, dtype=F64) for k, v in values.items()}


def refine(target, start, iterations=400, lr=LR, decay=DECAY, log=None):
    """Adam on (rho = abc / D, D, misset) from ``start``; returns (final values, losses)."""
    s = as_tensors(start)
    rho = (s["abc_A"] / s["distance_mm"]).requires_grad_(True)
    dist = s["distance_mm"].clone().requires_grad_(True)
    misset = s["misset_deg"].clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": [rho], "lr": lr["rho"]},
                            {"params": [dist], "lr": lr["distance_mm"]},
                            {"params": [misset], "lr": lr["misset_deg"]}])
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, decay)
    norm = torch.sum(target * target)
    losses = []
    for it in range(iterations):
        opt.zero_grad()
        image = render(rho * dist, dist, misset)
        loss = torch.sum((image - target) ** 2) / norm
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log is not None and (it % 50 == 0 or it == iterations - 1):
            log(f"  step {it:4d}  loss {losses[-1]:.3e}")
    with torch.no_grad():
        final = {"abc_A": (rho * dist).tolist(), "distance_mm": float(dist), "misset_deg": misset.tolist()}
    return final, losses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=400)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with torch.no_grad():
        target = render(**as_tensors(TRUE))
    final, losses = refine(target, START, args.iterations, log=print)
    print(f"\n{args.iterations} Adam steps in {time.perf_counter() - t0:.1f} s; "
          f"loss {losses[0]:.3e} -> {losses[-1]:.3e}\n")
    print(f"{'parameter':<14}{'true':>10}{'start':>10}{'recovered':>12}")
    for key, names in (("abc_A", ("a (A)", "b (A)", "c (A)")), ("distance_mm", ("distance (mm)",)),
                       ("misset_deg", ("misset x (deg)", "misset y (deg)", "misset z (deg)"))):
        true, start, got = (v if isinstance(v, (tuple, list)) else (v,)
                            for v in (TRUE[key], START[key], final[key]))
        for n, t_, s_, g_ in zip(names, true, start, got):
            print(f"{n:<14}{t_:>10.3f}{s_:>10.3f}{g_:>12.4f}")


if __name__ == "__main__":
    main()
