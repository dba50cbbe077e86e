"""Resolving a backend named by string (``"torch"``, ``"cuda:1"``...) to a namespace and a device.

The library is imported here, lazily, only when it is named; a missing library or a device that does not
exist raises :class:`BackendError` saying why and, for a missing library, which extra installs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import BackendError, _compat

BACKEND_NAMES = ("numpy", "torch", "cupy", "jax", "dask", "array_api_strict")


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
