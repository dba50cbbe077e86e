"""One experiment, one detector panel: context, pre-run estimate, setup, render.

:func:`run_single` is what :func:`bragg_core.simulate` does for a detector of
one panel, and what :func:`bragg_core.simulate_panels` does for each
panel; it sits below both, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._backend import Context, carries_gradient, get_context, to_numpy
from .._types import Array
from ..estimate import check_run, estimate_run
from ..experiment import Experiment
from .render import RenderInfo, render_detailed
from .setup import Setup, build_setup, input_arrays, reuse_setup
from .stats import ImageStats, image_stats

__all__ = ["Simulation", "run_single"]


@dataclass
class Simulation:
    """An image and how it was made."""

    image: Array          # (slow, fast) in the working namespace, device and dtype
    setup: Setup
    info: RenderInfo | None = None   # tiles, workers and the memory forked workers added

    @property
    def stats(self) -> ImageStats:
        return image_stats(np.asarray(to_numpy(self.image), dtype=np.float32), self.setup)


def run_single(experiment: Experiment, *, backend: str | None = None, device: Any = None, dtype: Any = None,
               memory_budget_bytes: int | None = None, progress: Callable[[int], None] | None = None,
               store_dtype: Any = None, force: bool = False, reuse: Setup | None = None) -> Simulation:
    """Render an experiment whose detector is one panel (see :func:`bragg_core.simulate` for the arguments)."""
    arrays = input_arrays(experiment)
    ctx: Context = get_context(*arrays, backend=backend, device=device, dtype=dtype)
    # what cannot fit or finish is refused before any work (RunTooLarge names the cause; force=True lifts it)
    if not force:  # (a caller that has checked already, the command line, passes force: no second estimate)
        check_run(estimate_run(experiment, dtype=ctx.dtype_name, memory_budget_bytes=memory_budget_bytes,
                               pgm=False, noise=False, outputs_in_memory=False))
    setup = (reuse_setup(reuse, experiment, ctx) if reuse is not None else None) or build_setup(experiment, ctx)
    image, info = render_detailed(setup, memory_budget_bytes, progress, store_dtype=store_dtype)
    return Simulation(image=_connect_inert(image, arrays, ctx), setup=setup, info=info)


def _connect_inert(image, arrays, ctx: Context):
    """Give every differentiable input a part in the image, with weight zero.

    A parameter that cannot change the image (the beam centre under the
    DIALS or XDS conventions, ``fudge`` with the square shape) then gets a
    gradient of zero on every framework, as JAX gives, instead of torch's
    ``None``.  Nothing is added when no input carries gradients.
    """
    live = [a for a in arrays if carries_gradient(a)]
    if not live:
        return image
    xp = ctx.xp
    zero = None
    for a in live:
        part = xp.sum(ctx.asarray(a)) * 0.0
        zero = part if zero is None else zero + part
    return image + zero
