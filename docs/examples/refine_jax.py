"""Refine a crystal and detector model against an image by gradient descent (JAX, a small Adam).

The same problem as ``refine_torch.py`` (see there for the geometry and for
why rho = (a, b, c) / D and D are refined rather than a, b, c and D): the
loss and its gradient come from ``jax.value_and_grad`` through
``bragg_core.simulate``, compiled once with ``jax.jit``; the Adam update is
written out below (optax is not needed).

Run:  python docs/examples/refine_jax.py [--iterations 400]
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from bragg_core import Beam, Crystal, Detector, Experiment, simulate  # noqa: E402

TRUE = {"abc_A": (100.0, 100.0, 100.0), "distance_mm": 100.0, "misset_deg": (20.0, 30.0, 40.0)}
START = {"abc_A": (100.6, 99.5, 100.4), "distance_mm": 101.5, "misset_deg": (20.3, 29.8, 40.25)}

LR = {"rho": 5e-4, "distance_mm": 0.2, "misset_deg": 0.02}
DECAY = 0.993


def render(abc_A, distance_mm, misset_deg):
    """The image (64, 64) for cell lengths, distance and misset given as float64 JAX arrays."""
    cell = jnp.concatenate([abc_A, jnp.array([90.0, 90.0, 90.0])])
    experiment = Experiment(
        beam=Beam(wavelength_A=1.0),
        detector=Detector(fpixels=64, spixels=64, pixel_size_mm=0.1, distance_mm=distance_mm,
                          beam_center_mm=(0.0, 0.0), oversample=1),
        crystal=Crystal(cell_A_deg=cell, misset_deg=misset_deg, N_cells=(5, 5, 5), default_F=100.0),
    )
    return simulate(experiment).image


def as_arrays(values):
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in values.items()}


def make_loss(target):
    norm = jnp.sum(target * target)

    def loss(params):
        image = render(params["rho"] * params["distance_mm"], params["distance_mm"], params["misset_deg"])
        return jnp.sum((image - target) ** 2) / norm

    return jax.jit(jax.value_and_grad(loss))


def adam_step(params, grads, state, lr, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam update (Kingma & Ba) with a learning rate per parameter group."""
    t = state["t"] + 1
    m = {k: b1 * state["m"][k] + (1 - b1) * grads[k] for k in params}
    v = {k: b2 * state["v"][k] + (1 - b2) * grads[k] ** 2 for k in params}
    new = {k: params[k] - lr[k] * (m[k] / (1 - b1 ** t)) / (jnp.sqrt(v[k] / (1 - b2 ** t)) + eps)
           for k in params}
    return new, {"t": t, "m": m, "v": v}


def refine(target, start, iterations=400, lr=LR, decay=DECAY, log=None):
    """Adam on (rho = abc / D, D, misset) from ``start``; returns (final values, losses)."""
    s = as_arrays(start)
    params = {"rho": s["abc_A"] / s["distance_mm"], "distance_mm": s["distance_mm"],
              "misset_deg": s["misset_deg"]}
    state = {"t": 0, "m": {k: jnp.zeros_like(p) for k, p in params.items()},
             "v": {k: jnp.zeros_like(p) for k, p in params.items()}}
    value_and_grad = make_loss(target)
    losses = []
    for it in range(iterations):
        loss, grads = value_and_grad(params)
        params, state = adam_step(params, grads, state, {k: r * decay ** it for k, r in lr.items()})
        losses.append(float(loss))
        if log is not None and (it % 50 == 0 or it == iterations - 1):
            log(f"  step {it:4d}  loss {losses[-1]:.3e}")
    final = {"abc_A": [float(x) for x in params["rho"] * params["distance_mm"]],
             "distance_mm": float(params["distance_mm"]),
             "misset_deg": [float(x) for x in params["misset_deg"]]}
    return final, losses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=400)
    args = ap.parse_args()
    t0 = time.perf_counter()
    target = render(**as_arrays(TRUE))
    final, losses = refine(target, START, args.iterations, log=print)
    print(f"\n{args.iterations} Adam steps in {time.perf_counter() - t0:.1f} s (compilation included); "
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
