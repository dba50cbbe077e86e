"""What an array is, and which library and device it belongs to.

The predicates every other piece (and module) asks of a value: is it a scalar, an array, a lazy array, can
its values be read; its device; the short name of a namespace; and :func:`namespace_of`, which finds the one
namespace and device of the arrays of a call.  :class:`BackendError` is raised for every backend, device or
dtype request that cannot be satisfied, here and in the other pieces.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


class BackendError(ValueError):
    """A backend, device or dtype request that cannot be satisfied."""


def _compat():
    import array_api_compat

    return array_api_compat


def is_scalar(x: Any) -> bool:
    """True for values that never decide the namespace: Python and NumPy scalars."""
    if isinstance(x, (bool, numbers.Number)) and not hasattr(x, "__array_namespace__"):
        return True
    if isinstance(x, np.generic):
        return True
    return False


def device_of(x: Any):
    """The device of an array of any backend (``array_api_compat.device``; None for a JAX tracer)."""
    return _compat().device(x)


def is_host_array(x: Any) -> bool:
    """True for a plain NumPy array: its values can be read for free and it never carries gradients."""
    return isinstance(x, np.ndarray)


def _is_array(x: Any) -> bool:
    if x is None or is_scalar(x):
        return False
    compat = _compat()
    return bool(compat.is_array_api_obj(x))


def is_lazy(x: Any) -> bool:
    """True for arrays whose values cannot be read cheaply: Dask arrays and JAX arrays.

    JAX arrays count as lazy whether or not they are traced (JAX's own advice);
    value checks on user input are skipped for them.
    """
    return _is_array(x) and bool(_compat().is_lazy_array(x))


def values_readable(x: Any) -> bool:
    """True where reading a value of ``x`` on the host is cheap and allowed: eager arrays, and JAX arrays
    outside a trace (concrete); False for tracers and for Dask (reading would compute the graph)."""
    if not is_lazy(x):
        return True
    mod = type(x).__module__
    if not mod.startswith("jax"):
        return False
    import jax

    return not isinstance(x, jax.core.Tracer)


def backend_name(xp: Any) -> str:
    """Short library name of a namespace: numpy, torch, cupy, jax, dask or array_api_strict."""
    compat = _compat()
    if compat.is_numpy_namespace(xp):
        return "numpy"
    if compat.is_torch_namespace(xp):
        return "torch"
    if compat.is_cupy_namespace(xp):
        return "cupy"
    if compat.is_jax_namespace(xp):
        return "jax"
    if compat.is_dask_namespace(xp):
        return "dask"
    if compat.is_array_api_strict_namespace(xp):
        return "array_api_strict"
    return getattr(xp, "__name__", type(xp).__name__)


_INDEX_SELECT: dict = {}


def take_rows(xp: Any, x: Any, indices: Any) -> Any:
    """``xp.take(x, indices, axis=0)`` for 1-D integer ``indices`` that are never negative.

    On torch this calls ``index_select`` directly: array_api_compat's ``take``
    first maps negative indices (a compare, an add and a select over the
    indices: three more passes), which indices known to be >= 0 do not need.
    """
    fn = _INDEX_SELECT.get(id(xp))
    if fn is None:
        fn = _INDEX_SELECT[id(xp)] = (getattr(xp, "index_select", None) or False) \
            if backend_name(xp) == "torch" else False
    if fn:
        return fn(x, 0, indices)
    return xp.take(x, indices, axis=0)


def namespace_of(*values: Any):
    """Return ``(xp, device)`` of the arrays among ``values``.

    Scalars and ``None`` are skipped.  With no array at all, NumPy on the CPU
    is returned.  Arrays of two different libraries raise :class:`BackendError`.
    """
    arrays = [v for v in values if _is_array(v)]
    compat = _compat()
    if not arrays:
        return compat.array_namespace(np.empty(0)), "cpu"
    try:
        xp = compat.array_namespace(*arrays)
    except TypeError as exc:
        libs = sorted({backend_name(compat.array_namespace(a)) for a in arrays})
        raise BackendError(
            "arrays from different libraries were mixed in one call ("
            + ", ".join(libs)
            + "); convert them to one backend first"
        ) from exc
    devices = []
    for a in arrays:
        d = compat.device(a)
        if d is None:
            continue  # a JAX tracer has no device: it adopts that of the others
        if not any(d == e for e in devices):
            devices.append(d)
    if not devices:
        devices = [None]
    if len(devices) > 1:
        raise BackendError(
            f"arrays on different devices were mixed in one call: {devices!r}"
        )
    return xp, devices[0]
