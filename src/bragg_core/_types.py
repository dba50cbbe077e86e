"""Names for the kinds of values that flow through bragg_core, for readers and type checkers.

An array is any array of a library that follows the Python array API
standard (NumPy, torch, CuPy, JAX, Dask, array-api-strict); a namespace is
the module of functions that operates on it (``xp``); a device is whatever
that library uses to say where an array lives.  None of them is checked at
run time.

They are aliases of ``Any``, not Protocols: torch tensors and Dask arrays
reach the standard through array-api-compat rather than through methods of
their own (no ``__array_namespace__``), so a Protocol would reject arrays that
bragg_core accepts.  Import them instead of ``Any`` where a signature takes or
returns an array, a namespace or a device::

    from bragg_core._types import Array, Namespace

    def peak(xp: Namespace, image: Array) -> Array: ...
"""

from __future__ import annotations

from typing import Any, TypeAlias

Array: TypeAlias = Any
"""An array of any array-API library (``numpy.ndarray``, ``torch.Tensor``, ``jax.Array`` ...)."""

Namespace: TypeAlias = Any
"""An array-API namespace (``xp``), as returned by ``array_api_compat.array_namespace``."""

Device: TypeAlias = Any
"""A device of the array's library (``"cpu"``, ``torch.device("cuda", 0)``, a JAX device ...)."""

Scalar: TypeAlias = Any
"""A Python or NumPy number, or a 0-d array that may carry gradients."""

__all__ = ["Array", "Namespace", "Device", "Scalar"]
