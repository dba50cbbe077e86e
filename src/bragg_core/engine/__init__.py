"""The rendering engine: experiment -> setup -> kernel inputs -> tiles -> image.

``setup`` resolves an :class:`~bragg_core.experiment.Experiment` into host
decisions and geometry arrays; ``inputs`` casts what the kernel reads, once
per render; ``tiling`` cuts the image into tiles that fit the memory budget;
``paths``, ``miller``, ``terms`` and ``running`` are the pieces of the tile
kernel (``kernel``); ``render`` runs the tile loop on the workers of
``parallel``; ``stats`` and ``trace`` report on the result.
"""

from .inputs import KernelInputs, kernel_inputs
from .kernel import render_tile
from .render import RenderInfo, render_detailed
from .setup import Setup, build_setup
from .stats import ImageStats, image_stats
from .trace import trace_pixel

__all__ = ["KernelInputs", "kernel_inputs", "render_tile", "RenderInfo", "render_detailed",
           "Setup", "build_setup", "ImageStats", "image_stats", "trace_pixel"]
