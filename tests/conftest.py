"""The backend matrix every bragg_core test runs on.

Fixtures (names are stable; other test modules rely on them)
-------------------------------------------------------------
``backend``
    One array backend, parametrised over the ids ``numpy``, ``array_api_strict``,
    ``array_api_strict-device1``, ``torch``, ``torch-cuda``, ``cupy``, ``jax`` and
    ``dask``.  A frozen :class:`Backend` with

    * ``.id``     the pytest id above;
    * ``.name``   the library name bragg_core uses (``get_context(backend=...)``);
    * ``.xp``     the array namespace, ``.device`` the native device object;
    * ``.context(dtype)`` -> ``bragg_core._backend.Context`` for that dtype;
    * ``.asarray(data, dtype)`` moves NumPy/Python data onto this backend.

    Each id is skipped, with the reason, when a real probe finds it unusable
    (not installed, no GPU...).  JAX runs with x64 enabled.
``xp``
    Shortcut for ``backend.xp``.
``float_dtype``
    ``"float32"`` or ``"float64"``; ``backend.context(float_dtype).dtype`` is the native dtype.

Typical use::

    def test_something(backend, float_dtype):
        ctx = backend.context(float_dtype)
        x = backend.asarray([1.0, 2.0], float_dtype)
        assert_same_backend(f(x), ctx)          # from tests/_helpers.py

Selection: ``BRAGG_BACKENDS=numpy,torch`` runs only those (library names select
every id of that library; ids such as ``torch-cuda`` select one).

Hypothesis: profile ``ci`` (derandomised) loads when ``CI`` is set, ``dev``
otherwise; ``HYPOTHESIS_PROFILE`` overrides both.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from bragg_core._backend import Context, get_context

# (id, library name, device the arrays live on, or None for the default)
_BACKENDS = [
    ("numpy", "numpy", None),
    ("array_api_strict", "array_api_strict", None),
    ("array_api_strict-device1", "array_api_strict", "device1"),
    ("torch", "torch", None),
    ("torch-cuda", "torch", "cuda"),
    ("cupy", "cupy", None),
    ("jax", "jax", None),
    ("dask", "dask", None),
]
_IDS = [b[0] for b in _BACKENDS]


def _selected() -> set[str]:
    raw = os.environ.get("BRAGG_BACKENDS", "").strip()
    if not raw:
        return set(_IDS)
    wanted = {w.strip() for w in raw.split(",") if w.strip()}
    names = {name for _, name, _ in _BACKENDS}
    unknown = wanted - names - set(_IDS)
    if unknown:
        raise pytest.UsageError(
            f"BRAGG_BACKENDS names unknown backends {sorted(unknown)}; known: {', '.join(_IDS)}"
        )
    return {i for i, name, _ in _BACKENDS if i in wanted or name in wanted}


SELECTED = _selected()

if "jax" in SELECTED:
    try:
        import jax
    except ImportError:
        pass
    else:
        jax.config.update("jax_enable_x64", True)

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=50, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


@functools.cache
def _native(backend_id: str) -> tuple[Any, Any]:
    """Import the library and return ``(xp, device)``, or raise why it cannot run.

    Built from the libraries themselves, not from bragg_core._backend, so that
    a bug there cannot quietly turn into a skip here.
    """
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
    raise ValueError(backend_id)


@functools.cache
def skip_reason(backend_id: str) -> str | None:
    """Why ``backend_id`` does not run here, or None when it does."""
    if backend_id not in SELECTED:
        return f"{backend_id}: not selected by BRAGG_BACKENDS"
    try:
        _native(backend_id)
    except Exception as exc:  # ImportError, or a library failing without its hardware
        return f"{backend_id}: unavailable ({type(exc).__name__}: {exc})"
    return None


@dataclass(frozen=True)
class Backend:
    id: str
    name: str
    xp: Any
    device: Any

    def context(self, dtype: Any = "float64") -> Context:
        return get_context(backend=self.name, device=self.device, dtype=dtype)

    def asarray(self, data: Any, dtype: Any = "float64"):
        return self.context(dtype).asarray(np.asarray(data))


@pytest.fixture(scope="session", params=_IDS)
def backend(request) -> Backend:
    reason = skip_reason(request.param)
    if reason:
        pytest.skip(reason)
    name = next(name for i, name, _ in _BACKENDS if i == request.param)
    xp, device = _native(request.param)
    return Backend(id=request.param, name=name, xp=xp, device=device)


@pytest.fixture(scope="session")
def xp(backend):
    return backend.xp


@pytest.fixture(scope="session", params=["float32", "float64"])
def float_dtype(request) -> str:
    return request.param


def pytest_terminal_summary(terminalreporter):
    """Say which backends ran, so a green run cannot hide a matrix of skips."""
    ran = [i for i in _IDS if skip_reason(i) is None]
    terminalreporter.write_line("bragg_core backends run: " + (", ".join(ran) or "NONE"))
    for i in _IDS:
        if skip_reason(i):
            terminalreporter.write_line(f"  skipped {skip_reason(i)}")
