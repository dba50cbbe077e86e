"""nanoBragg-style argument lists for Python callers: render without writing files."""

from __future__ import annotations

from ..simulate import Simulation, simulate
from .args import build_config, parse_args


def simulate_args(argv: list[str], cwd: str = ".", **kwargs) -> Simulation:
    """Render from a nanoBragg-style argument list (no files are written).

    Relative input files are read from ``cwd``.  Keyword arguments are those
    of :func:`bragg_core.simulate`; ``backend``, ``device`` and ``dtype``
    default to the ``-backend``, ``-device`` and ``-dtype`` flags.
    """
    from .._backend import enable_float64

    cfg = build_config(parse_args(argv), cwd)
    kwargs.setdefault("backend", cfg.backend)
    kwargs.setdefault("device", cfg.device)
    kwargs.setdefault("dtype", cfg.dtype)
    enable_float64(kwargs["backend"], kwargs["dtype"])
    return simulate(cfg.experiment, **kwargs)


__all__ = ["simulate_args"]
