"""The backend x device x dtype combinations that can run on this machine.

Each backend id names one library on one device.  Whether it runs here is
found by a real probe (import the library, allocate on the device), built
from the libraries themselves rather than from ``bragg_core._backend``, so
that a bug in bragg_core's own backend resolution cannot turn into a quiet
skip.  ``BRAGG_BACKENDS=numpy,torch`` (library names select every id of that
library; ids such as ``torch-cuda`` select one) restricts the selection.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from .._backend import Context, get_context
from .._types import Array, Device, Namespace

__all__ = [
    "BACKEND_IDS",
    "FLOAT_DTYPES",
    "Backend",
    "available_backends",
    "backend_dtype_combinations",
    "backend_selected",
    "dtype_skip_reason",
    "get_backend",
    "selected_backend_ids",
    "skip_reason",
]

# (id, library name as bragg_core spells it)
_BACKENDS = (
    ("numpy", "numpy"),
    ("array_api_strict", "array_api_strict"),
    ("array_api_strict-device1", "array_api_strict"),
    ("torch", "torch"),
    ("torch-cuda", "torch"),
    ("cupy", "cupy"),
    ("jax", "jax"),
    ("dask", "dask"),
)
BACKEND_IDS: tuple[str, ...] = tuple(i for i, _ in _BACKENDS)
"""Every backend id, in the order the test matrix lists them."""

FLOAT_DTYPES: tuple[str, ...] = ("float32", "float64")


def _library(backend_id: str) -> str:
    for i, name in _BACKENDS:
        if i == backend_id:
            return name
    raise ValueError(f"unknown backend id {backend_id!r}; known: {', '.join(BACKEND_IDS)}")


def selected_backend_ids(spec: str | None = None) -> list[str]:
    """The ids selected by ``spec`` (default: the ``BRAGG_BACKENDS`` environment variable; empty selects all).

    Raises ValueError naming any unknown entry.
    """
    raw = (os.environ.get("BRAGG_BACKENDS", "") if spec is None else spec).strip()
    if not raw:
        return list(BACKEND_IDS)
    wanted = {w.strip() for w in raw.split(",") if w.strip()}
    names = {name for _, name in _BACKENDS}
    unknown = wanted - names - set(BACKEND_IDS)
    if unknown:
        raise ValueError(f"BRAGG_BACKENDS names unknown backends {sorted(unknown)}; known: {', '.join(BACKEND_IDS)}")
    return [i for i, name in _BACKENDS if i in wanted or name in wanted]


def backend_selected(name: str, spec: str | None = None) -> bool:
    """Whether the selection includes any id of library ``name`` (``"numpy"``, ``"torch"`` ...)."""
    return any(_library(i) == name for i in selected_backend_ids(spec))


@functools.cache
def _native(backend_id: str) -> tuple[Namespace, Device]:
    """Import the library and return ``(xp, device)``, or raise why it cannot run."""
    import array_api_compat as compat

    if backend_id == "numpy":
        return compat.array_namespace(np.empty(0)), "cpu"
    if backend_id.startswith("array_api_strict"):
        import array_api_strict as xps

        dev = xps.Device("device1" if backend_id.endswith("device1") else "CPU_DEVICE")
        return xps, dev
    if backend_id.startswith("torch"):
        import torch

        if backend_id == "torch":
            return compat.array_namespace(torch.empty(0)), torch.device("cpu")
        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False (no GPU, or a CPU-only torch build)")
        return compat.array_namespace(torch.empty(0)), torch.device("cuda", 0)
    if backend_id == "cupy":
        import cupy  # importing succeeds without a GPU; the probe below does not

        if not cupy.is_available():
            raise RuntimeError("cupy.is_available() is False (no CUDA GPU or driver)")
        return compat.array_namespace(cupy.empty(0)), cupy.cuda.Device(0)
    if backend_id == "jax":
        import jax

        return compat.array_namespace(jax.numpy.empty(0)), jax.devices()[0]
    if backend_id == "dask":
        import dask.array as da

        return compat.array_namespace(da.empty(0)), "cpu"
    raise ValueError(f"unknown backend id {backend_id!r}; known: {', '.join(BACKEND_IDS)}")


def skip_reason(backend_id: str, spec: str | None = None) -> str | None:
    """Why ``backend_id`` does not run here (not selected, not installed, no GPU ...), or None when it does."""
    if backend_id not in selected_backend_ids(spec):
        return f"{backend_id}: not selected by BRAGG_BACKENDS"
    try:
        _native(backend_id)
    except Exception as exc:  # ImportError, or a library failing without its hardware
        return f"{backend_id}: unavailable ({type(exc).__name__}: {exc})"
    return None


def dtype_skip_reason(backend_id: str, dtype: str) -> str | None:
    """Why ``dtype`` cannot run on an available backend, or None (JAX needs x64 mode for float64)."""
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype!r}")
    if _library(backend_id) == "jax" and dtype == "float64":
        import jax

        if not jax.config.read("jax_enable_x64"):
            return "jax: float64 needs jax.config.update('jax_enable_x64', True)"
    return None


@dataclass(frozen=True)
class Backend:
    """One library on one device.

    ``id`` is the matrix id (``"torch-cuda"``), ``name`` the library name
    bragg_core uses (``get_context(backend=name)``), ``xp`` the array
    namespace and ``device`` the library's native device object.
    """

    id: str
    name: str
    xp: Namespace
    device: Device

    def context(self, dtype: str = "float64") -> Context:
        """The ``bragg_core`` context of this backend, device and float dtype."""
        return get_context(backend=self.name, device=self.device, dtype=dtype)

    def asarray(self, data: object, dtype: str = "float64") -> Array:
        """NumPy or Python data as an array of this backend, device and float dtype."""
        return self.context(dtype).asarray(np.asarray(data))


def get_backend(backend_id: str) -> Backend:
    """The :class:`Backend` of ``backend_id``; RuntimeError with the reason when it cannot run here."""
    name = _library(backend_id)
    try:
        xp, device = _native(backend_id)
    except Exception as exc:
        raise RuntimeError(f"{backend_id}: unavailable ({type(exc).__name__}: {exc})") from exc
    return Backend(id=backend_id, name=name, xp=xp, device=device)


def available_backends(spec: str | None = None) -> list[Backend]:
    """Every selected backend that runs here, in :data:`BACKEND_IDS` order."""
    return [get_backend(i) for i in BACKEND_IDS if skip_reason(i, spec) is None]


def backend_dtype_combinations(
    dtypes: tuple[str, ...] = FLOAT_DTYPES, spec: str | None = None
) -> list[tuple[Backend, str]]:
    """Every (backend, dtype) pair that runs here (see :func:`available_backends`, :func:`dtype_skip_reason`)."""
    return [(b, dt) for b in available_backends(spec) for dt in dtypes if dtype_skip_reason(b.id, dt) is None]
