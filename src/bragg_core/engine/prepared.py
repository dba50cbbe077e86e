"""A render prepared once and called many times: all host work up front, then pure array code.

:func:`bragg_core.simulate` validates the experiment, builds the setup and
plans the tiles on every call, with host decisions (NumPy) along the way.
:class:`PreparedRender` does that once; its :meth:`~PreparedRender.render`
is then only array operations of the chosen backend on the prepared inputs,
with the crystal orientations and the fluence as optional arguments.  That
makes it the unit for function transforms that trace array code:
``torch.compile(prepared.render, fullgraph=True)``,
``torch.func.vmap(prepared.render)`` over a batch of orientations (a shot
axis), ``jax.jit`` and ``jax.vmap`` likewise.  Called with no arguments it
renders the experiment it was prepared from, and equals ``simulate``'s
image (tested).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._backend import Context, get_context, is_scalar
from .._types import Array
from ..experiment import Detector, Experiment, ExperimentError
from ..units import R_E_SQR_M2
from .inputs import KernelInputs, kernel_inputs
from .kernel import render_tile
from .render import assemble_tiles, finish_block, render_mapped
from .setup import Setup, build_setup, input_arrays, roi_bounds
from .tiling import DEFAULT_MEMORY_BUDGET, plan_tiles, tile_rects


class PreparedRender:
    """An experiment turned into kernel inputs and a tile plan, rendered on demand.

    ``orientations`` (Q, 3, 3) are the real-space cells of every orientation
    (phi step x mosaic domain) the render sums, rows a, b, c in metres, as
    :attr:`orientations` gives them for the prepared experiment.  Rotating
    the whole crystal (every domain) by R in the laboratory frame is
    ``prepared.orientations @ R.T``.  ``fluence`` is in photons/m^2.  Both
    may be arrays of the working namespace that carry gradients or are
    batched by ``vmap``; everything else is fixed at preparation (counts,
    sampling, detector, structure factors).
    """

    def __init__(self, experiment: Experiment, *, backend: str | None = None, device: Any = None,
                 dtype: Any = None, memory_budget_bytes: int | None = None):
        if not isinstance(experiment.detector, Detector):
            raise ExperimentError(f"prepare: the detector must be one panel (a Detector), got "
                                  f"{type(experiment.detector).__name__}; prepare one experiment per panel")
        ctx: Context = get_context(*input_arrays(experiment), backend=backend, device=device, dtype=dtype)
        setup = build_setup(experiment, ctx)
        self.setup: Setup = setup
        self.ctx = ctx
        self._k: KernelInputs = kernel_inputs(setup)
        x0, x1, y0, y1 = roi_bounds(setup)
        self._roi = (x0, x1, y0, y1)
        self._empty = x1 < x0 or y1 < y0
        W, H = max(x1 - x0 + 1, 0), max(y1 - y0 + 1, 0)
        self._plan = plan_tiles(setup, max(W * H, 1), memory_budget_bytes or DEFAULT_MEMORY_BUDGET)
        g = setup.gctx
        self._tiles = []
        if not self._empty:
            for r0, r1, c0, c1 in tile_rects(W, H, self._plan.pixels_per_tile):  # over tiles, fixed here
                self._tiles.append((g.arange(c1 - c0) + float(x0 + c0), g.arange(r1 - r0) + float(y0 + r0),
                                    (r1 - r0, c1 - c0)))
        self._H = H

    @property
    def orientations(self) -> Array:
        """The prepared (Q, 3, 3) real-space cells (rows a, b, c, metres) in the working namespace."""
        return self._k.orientations

    @property
    def fluence(self) -> Array:
        """The prepared fluence (photons/m^2), in the working namespace."""
        return self.ctx.asarray(self.setup.fluence)

    def _inputs(self, orientations, fluence) -> KernelInputs:
        k = self._k
        changes = {}
        if orientations is not None:
            q = tuple(orientations.shape)
            if len(q) != 3 or q[1:] != (3, 3) or q[0] != tuple(k.orientations.shape)[0]:
                raise ValueError(f"orientations: shape {q}, expected {tuple(k.orientations.shape)} "
                                 "(one 3x3 cell per prepared orientation)")
            changes["orientations"] = orientations
            g = self.setup.gctx
            changes["orientations_g"] = orientations if g.dtype_name == self.ctx.dtype_name else g.asarray(orientations)
        if fluence is not None:
            scale = R_E_SQR_M2 * fluence / self.setup.steps
            changes["scale"] = scale if is_scalar(scale) else self.ctx.asarray(scale)
            if self.setup.water_on:   # the water term is proportional to the fluence as well
                ratio = fluence / self.ctx.asarray(self.setup.fluence)
                changes["I_bg"] = k.I_bg * ratio
        return dataclasses.replace(k, **changes) if changes else k

    def render(self, orientations: Array | None = None, fluence: Any = None) -> Array:
        """The float image (spixels, fpixels), with the given orientations and fluence (default: prepared)."""
        setup, ctx = self.setup, self.ctx
        xp = ctx.xp
        k = self._inputs(orientations, fluence)
        zeros = lambda shape, dtype=None: ctx.zeros(shape)  # noqa: E731
        x0, x1, y0, y1 = self._roi
        if self._empty:
            fp, sp = setup.detector.fpixels, setup.detector.spixels
            return zeros((sp, fp))
        if ctx.caps.jit_tiles:
            block = render_mapped(k, self._plan, (x0, y0, x1 - x0 + 1, self._H), None)
        else:
            qb = self._plan.orientations_per_block
            tiles = [xp.reshape(render_tile(k, f_idx, s_idx, qb), shape)   # over tiles, not pixels
                     for f_idx, s_idx, shape in self._tiles]
            block = assemble_tiles(xp, tiles, self._H)
        return finish_block(setup, ctx, block, self._roi, zeros, False)

    __call__ = render


def prepare(experiment: Experiment, *, backend: str | None = None, device: Any = None, dtype: Any = None,
            memory_budget_bytes: int | None = None) -> PreparedRender:
    """Prepare ``experiment`` for repeated, traceable renders (see :class:`PreparedRender`)."""
    return PreparedRender(experiment, backend=backend, device=device, dtype=dtype,
                          memory_budget_bytes=memory_budget_bytes)


__all__ = ["PreparedRender", "prepare"]
