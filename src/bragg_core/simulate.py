"""The Python face of the engine: Experiment in, image out."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ._backend import Context, get_context, to_numpy
from .engine.render import ImageStats, image_stats, render
from .engine.setup import Setup, build_setup
from .experiment import Experiment

__all__ = ["simulate", "Simulation", "simulate_args"]


@dataclass
class Simulation:
    """An image and how it was made."""

    image: Any            # (slow, fast) in the working namespace, device and dtype
    setup: Setup

    @property
    def stats(self) -> ImageStats:
        return image_stats(np.asarray(to_numpy(self.image), dtype=np.float32), self.setup)


def _arrays_in(exp: Experiment):
    out = []
    for part in (exp.beam, exp.detector, exp.crystal):
        for f in fields(part):
            val = getattr(part, f.name)
            if f.name == "mask":
                continue
            if f.name == "structure_factors":
                val = getattr(val, "F", None)  # amplitudes given as a backend array decide too
            if hasattr(val, "shape") and not isinstance(val, np.ndarray):
                out.append(val)
            elif isinstance(val, (tuple, list)):
                out.extend(x for x in val if hasattr(x, "shape") and not isinstance(x, np.ndarray))
    return out


def simulate(experiment: Experiment, *, backend: str | None = None, device: Any = None,
             dtype: Any = None, memory_budget_bytes: int | None = None, progress=None) -> Simulation:
    """Render ``experiment``.

    The image follows the arrays found in the experiment (a torch tensor
    field makes a torch image on that device and dtype), or the named
    ``backend``/``device``/``dtype``; with neither, NumPy float64.
    """
    ctx: Context = get_context(*_arrays_in(experiment), backend=backend, device=device, dtype=dtype)
    setup = build_setup(experiment, ctx)
    image = render(setup, memory_budget_bytes, progress)
    return Simulation(image=image, setup=setup)


def simulate_args(argv: list[str], cwd: str = ".", **kwargs) -> Simulation:
    """Render from a nanoBragg-style argument list (no files are written)."""
    from .cli.args import build_config, parse_args

    cfg = build_config(parse_args(argv), cwd)
    kwargs.setdefault("backend", cfg.backend)
    kwargs.setdefault("device", cfg.device)
    kwargs.setdefault("dtype", cfg.dtype)
    return simulate(cfg.experiment, **kwargs)
