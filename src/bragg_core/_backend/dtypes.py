"""The working float dtype of a computation, and what JAX needs for float64.

Dtypes are compared by name, never by ``==``, across libraries; float64 on JAX needs its x64 mode, which
:func:`working_dtype` checks and :func:`enable_float64` switches on for callers that name a backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import BackendError, _is_array, backend_name


def _dtype_name(requested) -> str:
    if isinstance(requested, str):
        return requested
    # By name, never by ==: array-api-strict warns on (and refuses) comparing
    # its dtypes with NumPy's, and torch dtypes are not NumPy dtypes at all.
    try:
        return np.dtype(requested).name
    except Exception:
        return str(requested).rsplit(".", 1)[-1]


def _float_dtype(xp, requested):
    if requested is None:
        return None
    name = _dtype_name(requested)
    if name not in ("float32", "float64"):
        raise BackendError(f"dtype must be 'float32' or 'float64', not {requested!r}")
    return getattr(xp, name)


def _check_jax_x64(xp, dtype):
    if backend_name(xp) == "jax" and dtype == xp.float64:
        import jax

        if not jax.config.read("jax_enable_x64"):
            raise BackendError(
                "float64 on JAX needs x64 mode: call "
                "jax.config.update('jax_enable_x64', True) before creating arrays"
            )


def working_dtype(xp, *values: Any, dtype: Any = None):
    """One real floating dtype for a computation over ``values``.

    An explicit ``dtype`` wins.  Otherwise the floating arrays among ``values``
    are promoted together; integer or boolean arrays (or no arrays) give float64.
    """
    want = _float_dtype(xp, dtype)
    if want is not None:
        _check_jax_x64(xp, want)
        return want
    floats = []
    for v in values:
        if _is_array(v) and xp.isdtype(v.dtype, "real floating"):
            floats.append(v.dtype)
        elif _is_array(v) and xp.isdtype(v.dtype, "complex floating"):
            raise BackendError("complex arrays are not accepted here")
    if not floats:
        out = xp.float64
    else:
        out = floats[0]
        for d in floats[1:]:
            out = xp.result_type(out, d)
    _check_jax_x64(xp, out)
    return out


def enable_float64(backend: str | None, dtype: Any) -> None:
    """Switch on what a backend named by string needs for float64 (JAX's x64 mode).

    For callers that name a backend and a dtype (the command line, the
    benchmark workers) before any array exists.
    """
    if backend == "jax" and dtype is not None and _dtype_name(dtype) == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
