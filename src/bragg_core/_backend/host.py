"""Host copies of backend values: NumPy arrays and Python floats, for I/O, input checks and discrete choices.

Also whether a value carries gradients, so that a copy never detaches a parameter silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import _compat, _is_array, is_host_array, is_scalar


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array of any backend to a NumPy array on the host."""
    if x is None or is_scalar(x):
        return np.asarray(x)
    if isinstance(x, np.ndarray):
        return x
    mod = type(x).__module__.split(".")[0]
    if mod == "torch":
        return x.detach().cpu().numpy()
    if mod == "cupy":
        return x.get()
    if mod == "dask":
        return np.asarray(x.compute())
    if mod == "array_api_strict":
        import array_api_strict as xps

        cpu = xps.Device("CPU_DEVICE")
        if x.device != cpu:
            x = x.to_device(cpu)
        return np.asarray(x)
    return np.asarray(x)


def host_scalar(value: Any):
    """A host copy (Python float) of a scalar value, for discrete choices only; None if unknowable.

    Python/NumPy numbers, one-element NumPy, torch (detached), CuPy, Dask and
    concrete JAX arrays give their value.  A JAX tracer (inside ``jax.grad`` or
    ``jax.jit``) has no value to read: the result is ``None`` and the caller
    must make its choice without it.  Never use the result in arithmetic that
    should carry gradients.
    """
    if value is None:
        return None
    if is_scalar(value):
        return float(value)
    try:
        return float(np.asarray(to_numpy(value), dtype=np.float64).reshape(()))
    except TypeError:  # JAX's ConcretizationTypeError/TracerArrayConversionError are TypeErrors
        return None
    except RuntimeError:  # a tensor inside a torch.func transform has no storage to read
        if type(value).__module__.startswith("torch"):
            return None
        raise


def host_values(x: Any):
    """The values of an array as float64 NumPy, or None where reading them is not harmless.

    For input checks.  A JAX tracer or a tensor inside a torch.func transform
    has no values; a Dask array would be computed (never done for a check); a
    torch tensor on the meta device has none.  Reading a tensor that
    requires grad (detached) changes nothing in its graph.
    """
    if is_host_array(x):
        arr = x
    else:
        if _is_array(x) and _compat().is_dask_array(x):
            return None
        try:
            arr = to_numpy(x)
        except Exception:  # a tracer, a meta tensor, a device without a host copy
            return None
    try:
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def carries_gradient(value: Any) -> bool:
    """True for a value that autodiff is following: a torch tensor that requires grad, a JAX tracer."""
    if value is None or is_scalar(value) or isinstance(value, np.ndarray):
        return False
    if getattr(value, "requires_grad", False):
        return True
    mod = type(value).__module__
    if not (mod.startswith("jax") or mod.startswith("torch")):
        return False
    try:
        to_numpy(value)
    except (TypeError, RuntimeError):  # a JAX tracer; a tensor inside a torch.func transform
        return True
    return False


def host_only(value: Any, what: str):
    """Host copy (float) of a parameter the engine uses only on the host (a count, a cut-off).

    Such a parameter cannot carry gradients; rather than detach it silently, a
    tensor that requires grad or a JAX tracer is refused with a ValueError
    naming ``what``.
    """
    if value is None:
        return None
    if carries_gradient(value):
        raise ValueError(
            f"{what} is not differentiable (it is used on the host to choose sampling counts "
            "or cut-offs); pass it as a plain number or an array that does not require grad"
        )
    return host_scalar(value)
