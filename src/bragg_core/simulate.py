"""The Python face of the engine: Experiment in, image out."""

from __future__ import annotations

from typing import Any, Callable

from .engine.run import Simulation, run_single
from .experiment import Experiment

__all__ = ["simulate", "Simulation"]


def simulate(experiment: Experiment, *, backend: str | None = None, device: Any = None,
             dtype: Any = None, memory_budget_bytes: int | None = None,
             progress: Callable[[int], None] | None = None, store_dtype: Any = None,
             force: bool = False) -> Simulation:
    """Render ``experiment``.

    An experiment whose detector is a :class:`bragg_core.panels.MultiPanelDetector`
    gives a :class:`bragg_core.panels.PanelSimulation` (``.image`` is
    ``(panel, slow, fast)``; see ``bragg_core.panels.simulate_panels``).
    The image follows the arrays found in the experiment (a torch tensor
    field makes a torch image on that device and dtype), or the named
    ``backend``/``device``/``dtype``; with neither, NumPy float64.
    ``progress`` is called with the number of pixels finished as tiles
    complete.  ``store_dtype`` (a NumPy dtype, e.g. ``numpy.float32`` for an
    image that will be written as float32) asks backends that fill a
    preallocated host image to store each finished tile in that dtype, so
    the whole image never exists in the working dtype; other backends return
    the working dtype.  A run whose estimated memory, work or size cannot
    fit or finish on this machine raises :class:`bragg_core.estimate.RunTooLarge`
    before any work, unless ``force``.
    """
    kwargs = dict(backend=backend, device=device, dtype=dtype, memory_budget_bytes=memory_budget_bytes,
                  progress=progress, store_dtype=store_dtype, force=force)
    if type(experiment.detector).__name__ == "MultiPanelDetector":  # several panels: a PanelSimulation
        from .panels import simulate_panels

        return simulate_panels(experiment, **kwargs)
    return run_single(experiment, **kwargs)
