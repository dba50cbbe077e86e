"""The :class:`Context` (namespace, device, float dtype) the rest of the package computes in.

:func:`get_context` works it out once per call, from the arrays passed or a backend named by string;
:func:`geometry_context` gives its float64 twin for geometry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import BackendError, _compat, _is_array, backend_name, namespace_of
from .capabilities import Capabilities, _set_intra_op_threads
from .dtypes import working_dtype
from .host import carries_gradient, to_numpy
from .resolve import resolve_backend


@dataclass(frozen=True)
class Context:
    """Namespace, device and float dtype of one computation."""

    xp: Any
    device: Any
    dtype: Any

    @property
    def name(self) -> str:
        return backend_name(self.xp)

    @property
    def caps(self) -> Capabilities:
        """What the engine may assume of this backend and device (see :class:`Capabilities`)."""
        return Capabilities.of(self.name, self.device)

    def from_host(self, a: np.ndarray):
        """A NumPy array as an array of this context; shares the memory where the library can (NumPy, torch)."""
        if self.name == "numpy":
            return a
        if self.name == "torch" and getattr(self.device, "type", "cpu") == "cpu":
            import torch

            return torch.from_numpy(a)
        return self.xp.asarray(a, device=self.device)

    def intra_op_threads(self, n: int | None = None) -> int | None:
        """Set (``n``) or read the backend's own thread count; None where it has none to set."""
        return _set_intra_op_threads(self.name, n)

    def asarray(self, x: Any, dtype: Any = None):
        """``x`` as an array of this context (float dtype unless ``dtype`` given)."""
        dt = self.dtype if dtype is None else dtype
        xp = self.xp
        if type(x) is np.ndarray and self.name == "numpy":  # the hot path of the NumPy kernel
            return x if x.dtype == dt else x.astype(dt)
        if _is_array(x):
            x_ns, _ = namespace_of(x)
            if x_ns is not xp and backend_name(x_ns) != self.name:
                if carries_gradient(x):  # never detach silently
                    raise BackendError(
                        f"a {backend_name(x_ns)} array that carries gradients cannot be moved to "
                        f"{self.name}; give every differentiable parameter in one backend"
                    )
                x = to_numpy(x)
            else:
                dev = _compat().device(x)
                same_dev = dev is None or self.device is None or dev == self.device
                if x.dtype == dt and same_dev:
                    return x
                if same_dev:
                    return xp.astype(x, dt)  # keeps the autograd graph (and no torch warning)
                return xp.asarray(x, dtype=dt, device=self.device)
        if isinstance(x, (tuple, list)) and any(_is_array(v) for v in x):
            # a sequence mixing numbers and arrays (e.g. a cell whose lengths are
            # tensors): stacked, so that gradients reach every array member
            return xp.stack([xp.reshape(self.asarray(v, dtype), ()) for v in x])
        if isinstance(x, np.generic):
            x = x.item()
        return xp.asarray(x, dtype=dt, device=self.device)

    def zeros(self, shape, dtype: Any = None):
        return self.xp.zeros(shape, dtype=self.dtype if dtype is None else dtype, device=self.device)

    def arange(self, n, dtype: Any = None):
        return self.xp.arange(n, dtype=self.dtype if dtype is None else dtype, device=self.device)

    @property
    def eps(self) -> float:
        return float(self.xp.finfo(self.dtype).eps)

    @property
    def dtype_name(self) -> str:
        return "float32" if self.dtype == self.xp.float32 else "float64"


def get_context(*values: Any, backend: str | None = None, device: Any = None, dtype: Any = None) -> Context:
    """Resolve the context of a call.

    Either the caller passes arrays (the result follows them) or names a
    ``backend``/``device``/``dtype``.  Naming a backend that differs from that
    of the arrays passed is an error.
    """
    if backend is not None:
        xp, dev = resolve_backend(backend, device)
        arr_xp, _ = namespace_of(*values)
        if any(_is_array(v) for v in values) and backend_name(arr_xp) != backend_name(xp):
            raise BackendError(
                f"backend {backend!r} was requested but the arrays passed are "
                f"{backend_name(arr_xp)} arrays"
            )
    else:
        xp, dev = namespace_of(*values)
        if device is not None:
            xp, dev = resolve_backend(backend_name(xp), device)
    dt = working_dtype(xp, *values, dtype=dtype)
    return Context(xp=xp, device=dev, dtype=dt)


def geometry_context(ctx: Context) -> Context:
    """float64 on the same backend and device, unless that backend cannot (JAX without x64)."""
    xp = ctx.xp
    if backend_name(xp) == "jax":
        import jax

        if not jax.config.read("jax_enable_x64"):
            return ctx
    return Context(xp=xp, device=ctx.device, dtype=xp.float64)
