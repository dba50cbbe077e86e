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
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

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
]

BACKEND_NAMES = ("numpy", "torch", "cupy", "jax", "dask", "array_api_strict")


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


# ----------------------------------------------------------------------------
# Resolving a backend by name
# ----------------------------------------------------------------------------


def _missing(name: str, extra: str, exc: Exception) -> BackendError:
    return BackendError(
        f"backend {name!r} is not available: {exc}. "
        f"Install it with: pip install 'bragg_core[{extra}]'"
    )


def resolve_backend(name: str = "numpy", device: Any = None):
    """Return ``(xp, device)`` for a backend named by string.

    ``device`` may be ``None`` (the backend's default), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``, a native device object, or, for array-api-strict, the name of
    one of its devices (``"CPU_DEVICE"``, ``"device1"``...).
    """
    if not isinstance(name, str) or name.lower() not in BACKEND_NAMES:
        raise BackendError(
            f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}"
        )
    name = name.lower()
    compat = _compat()
    dev_str = None if device is None else device if isinstance(device, str) else None

    if name == "numpy":
        if dev_str not in (None, "cpu"):
            raise BackendError(f"backend 'numpy' has no device {device!r}; it runs on 'cpu' only")
        return compat.array_namespace(np.empty(0)), "cpu"

    if name == "dask":
        try:
            import dask.array as da  # noqa: F401
        except Exception as exc:  # pragma: no cover - depends on the environment
            raise _missing(name, "dask", exc) from exc
        if dev_str not in (None, "cpu"):
            raise BackendError(f"backend 'dask' has no device {device!r}; it runs on 'cpu' only")
        xp = compat.array_namespace(da.empty(0))
        return xp, "cpu"

    if name == "array_api_strict":
        try:
            import array_api_strict as xps
        except Exception as exc:  # pragma: no cover
            raise _missing(name, "test", exc) from exc
        if device is None or dev_str in ("cpu", "CPU_DEVICE"):
            dev = xps.Device("CPU_DEVICE")
        elif dev_str is not None:
            try:
                dev = xps.Device(dev_str)
            except Exception as exc:
                raise BackendError(
                    f"backend 'array_api_strict' has no device {device!r}"
                ) from exc
        else:
            dev = device
        return xps, dev

    if name == "torch":
        try:
            import torch
        except Exception as exc:
            raise _missing(name, "torch", exc) from exc
        xp = compat.array_namespace(torch.empty(0))
        if device is None:
            return xp, torch.device("cpu")
        try:
            dev = torch.device(device)
        except Exception as exc:
            raise BackendError(f"backend 'torch' has no device {device!r}: {exc}") from exc
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise BackendError(
                    f"backend 'torch' has no device {device!r}: CUDA is not available "
                    "(no GPU, or a CPU-only build of torch)"
                )
            idx = 0 if dev.index is None else dev.index
            if idx >= torch.cuda.device_count():
                raise BackendError(
                    f"backend 'torch' has no device {device!r}: "
                    f"{torch.cuda.device_count()} CUDA device(s) present"
                )
            # "cuda" and "cuda:0" compare unequal in torch; tensors report the index.
            dev = torch.device("cuda", idx)
        return xp, dev

    if name == "cupy":
        try:
            import cupy

            ok = bool(cupy.is_available())
        except Exception as exc:
            raise _missing(name, "cupy", exc) from exc
        if not ok:
            raise BackendError("backend 'cupy' is installed but no CUDA GPU is available")
        idx = 0
        if dev_str not in (None, "cuda", "gpu"):
            if dev_str is not None and dev_str.startswith("cuda:"):
                try:
                    idx = int(dev_str.split(":", 1)[1])
                except ValueError as exc:
                    raise BackendError(f"backend 'cupy' has no device {device!r}") from exc
            elif dev_str is not None:
                raise BackendError(f"backend 'cupy' has no device {device!r}; use 'cuda' or 'cuda:N'")
            else:
                return compat.array_namespace(cupy.empty(0)), device
        if idx >= cupy.cuda.runtime.getDeviceCount():
            raise BackendError(f"backend 'cupy' has no device {device!r}")
        return compat.array_namespace(cupy.empty(0)), cupy.cuda.Device(idx)

    # jax
    try:
        import jax
        import jax.numpy as jnp
    except Exception as exc:
        raise _missing(name, "jax", exc) from exc
    if device is None or dev_str is None and device is not None and not isinstance(device, str):
        dev = device if device is not None else jax.devices()[0]
        return jnp, dev
    platform, _, idx_s = dev_str.partition(":")
    platform = {"cuda": "gpu"}.get(platform, platform)
    try:
        devs = jax.devices(platform)
    except Exception as exc:
        raise BackendError(f"backend 'jax' has no device {device!r}: {exc}") from exc
    idx = int(idx_s) if idx_s else 0
    if idx >= len(devs):
        raise BackendError(f"backend 'jax' has no device {device!r}: {len(devs)} present")
    return jnp, devs[idx]


# ----------------------------------------------------------------------------
# dtype promotion
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# What the engine may assume of a backend
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Capabilities:
    """The questions the engine asks of a backend, answered once, here.

    No other module tests a backend's name to decide what to do: it reads
    these answers instead.
    """

    fork_workers: bool           # tiles may run in forked processes writing into shared host memory
                                 # (only for renders that carry no gradients)
    thread_workers: bool         # tiles may run on worker threads (the library releases the GIL)
    pause_intra_op_threads: bool  # the library's own thread pool is paused while tile workers run
    preallocated_image: bool     # tiles are written in place into one preallocated host (NumPy) image that
                                 # the library then wraps without a copy (renders without gradients)
    jit_tiles: bool              # the tile function is compiled once per tile shape
    slow_float64_trig: bool      # float64 sin/cos are not vectorised (a polynomial is faster)
    lazy: bool                   # values are not materialised until asked for
    wrapping_uint64: bool        # uint64 arrays multiply modulo 2^64 and shift right logically (the counter-based
                                 # generator hashes in them; in int64, with masked shifts, elsewhere)
    in_place: bool = False       # arithmetic may update fresh temporaries in place (a += b) in renders
                                 # without gradients: fewer allocations and passes over memory
    in_place_untracked: bool = False  # the same, where the tiles are known to carry no autograd graph

    @classmethod
    def of(cls, name: str, device: Any = None) -> "Capabilities":
        numpy = name == "numpy"
        torch_cpu = name == "torch" and getattr(device, "type", "cpu") == "cpu"
        return cls(
            fork_workers=numpy or torch_cpu,
            thread_workers=numpy or torch_cpu,
            pause_intra_op_threads=torch_cpu,
            preallocated_image=numpy or torch_cpu,
            jit_tiles=name == "jax",
            slow_float64_trig=numpy,
            lazy=name in ("dask", "jax"),
            wrapping_uint64=name in ("numpy", "array_api_strict", "dask"),
            in_place=numpy or name == "cupy",
            in_place_untracked=numpy or name in ("cupy", "torch"),
        )


def _set_intra_op_threads(name: str, n: int | None) -> int | None:
    """Set the backend's intra-op thread count (torch only); returns the previous count."""
    if name != "torch":
        return None
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    return before


# ----------------------------------------------------------------------------
# The context object the rest of the package uses
# ----------------------------------------------------------------------------


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


def enable_float64(backend: str | None, dtype: Any) -> None:
    """Switch on what a backend named by string needs for float64 (JAX's x64 mode).

    For callers that name a backend and a dtype (the command line, the
    benchmark workers) before any array exists.
    """
    if backend == "jax" and dtype is not None and _dtype_name(dtype) == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


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
