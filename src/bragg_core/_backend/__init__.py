"""The one place where array backends are resolved.

Every other module asks this one for a namespace, a device and a working
float dtype.  It is the only importer of ``array_api_compat``; heavy array
libraries (torch, jax, cupy, dask) are imported lazily, only when a caller
passes their arrays or names them.

Rules (see ``specs/backends.md``):

* Python scalars, NumPy scalars and ``None`` never decide the namespace, the
  device or the dtype: they adopt those of the arrays they are mixed with.
* Arrays from two different libraries in one call are an error.
* The working dtype is a real floating dtype found by promotion: float32 stays
  float32, integers and booleans become float64 unless a dtype is requested.

The code is split by concept, each piece readable on its own:

* :mod:`~bragg_core._backend.arrays`: what an array is and which library and
  device it belongs to (``is_scalar``, ``is_lazy``, ``values_readable``,
  ``device_of``, ``backend_name``, ``namespace_of``), and ``BackendError``;
* :mod:`~bragg_core._backend.resolve`: a backend named by string, with its
  lazy import and error messages (``resolve_backend``, ``BACKEND_NAMES``);
* :mod:`~bragg_core._backend.dtypes`: the working float dtype
  (``working_dtype``) and JAX's x64 mode (``enable_float64``);
* :mod:`~bragg_core._backend.capabilities`: what the engine may assume of a
  backend (``Capabilities``);
* :mod:`~bragg_core._backend.context`: the ``Context`` of a computation
  (``get_context``, ``geometry_context``);
* :mod:`~bragg_core._backend.host`: host copies (``to_numpy``,
  ``host_scalar``, ``host_values``, ``host_only``, ``carries_gradient``).

Other modules import every name from ``bragg_core._backend`` itself, never
from the pieces.
"""

from __future__ import annotations

# Names outside __all__ are imported by other modules (or tests) all the same.
from .arrays import BackendError, backend_name, device_of, is_host_array, is_lazy, is_scalar, namespace_of, take_rows
from .arrays import _compat as _compat
from .arrays import _is_array as _is_array
from .arrays import values_readable as values_readable
from .capabilities import Capabilities
from .capabilities import _set_intra_op_threads as _set_intra_op_threads
from .context import Context, geometry_context, get_context
from .dtypes import _check_jax_x64 as _check_jax_x64
from .dtypes import _dtype_name as _dtype_name
from .dtypes import _float_dtype as _float_dtype
from .dtypes import enable_float64
from .dtypes import working_dtype as working_dtype
from .host import carries_gradient, host_only, host_scalar, host_values, to_numpy
from .resolve import BACKEND_NAMES, resolve_backend
from .resolve import _missing as _missing

__all__ = [
    "BackendError",
    "Context",
    "BACKEND_NAMES",
    "get_context",
    "namespace_of",
    "resolve_backend",
    "to_numpy",
    "is_scalar",
    "is_host_array",
    "device_of",
    "is_lazy",
    "backend_name",
    "host_scalar",
    "host_only",
    "carries_gradient",
    "host_values",
    "Capabilities",
    "geometry_context",
    "enable_float64",
    "take_rows",
]
