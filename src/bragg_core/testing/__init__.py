"""Tools for testing code built on bragg_core, and for validating bragg_core against your own images.

bragg_core's own test suite uses these; ``docs/testing.md`` shows them at work.

Backends (:mod:`bragg_core.testing.backends`)
    :data:`BACKEND_IDS`, :class:`Backend`, :func:`available_backends`,
    :func:`backend_dtype_combinations`, :func:`skip_reason`, :func:`get_backend`:
    the backend x device x dtype combinations that run on this machine, found
    by real probes and restricted by ``BRAGG_BACKENDS=numpy,torch``.
Assertions (:mod:`bragg_core.testing.assertions`)
    :func:`assert_same_backend` (namespace, device and dtype of the inputs),
    :func:`assert_close` (a few ULP of the dtype), :func:`assert_images_close`
    and :func:`image_figures` (Pearson r and max |difference| / max |reference|).
Golden cases (:mod:`bragg_core.testing.golden`)
    :func:`run_golden_case`: a folder with flags and a float32 image, rendered
    again and compared.
Hypothesis strategies (:mod:`bragg_core.testing.strategies`, needs the ``test`` extra)
    :func:`experiments`, :func:`backends`, :func:`backend_dtypes`, :func:`arrays`;
    importing them without Hypothesis raises ImportError naming the extra.
"""

from __future__ import annotations

from .assertions import ImageFigures, assert_close, assert_images_close, assert_same_backend, image_figures
from .backends import (
    BACKEND_IDS,
    FLOAT_DTYPES,
    Backend,
    available_backends,
    backend_dtype_combinations,
    backend_selected,
    dtype_skip_reason,
    get_backend,
    selected_backend_ids,
    skip_reason,
)
from .golden import (
    DEFAULT_BOUNDS,
    GoldenCase,
    GoldenResult,
    load_golden_case,
    read_reference_image,
    run_golden_case,
)

_STRATEGIES = ("arrays", "backend_dtypes", "backends", "experiments")

__all__ = [
    "BACKEND_IDS",
    "DEFAULT_BOUNDS",
    "FLOAT_DTYPES",
    "Backend",
    "GoldenCase",
    "GoldenResult",
    "ImageFigures",
    "assert_close",
    "assert_images_close",
    "assert_same_backend",
    "available_backends",
    "backend_dtype_combinations",
    "backend_selected",
    "dtype_skip_reason",
    "get_backend",
    "image_figures",
    "load_golden_case",
    "read_reference_image",
    "run_golden_case",
    "selected_backend_ids",
    "skip_reason",
    *_STRATEGIES,
]


def __getattr__(name: str):
    # the strategies import Hypothesis, an optional dependency: only when asked for
    if name in _STRATEGIES:
        from . import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module 'bragg_core.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_STRATEGIES))
