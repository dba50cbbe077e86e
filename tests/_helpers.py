"""Assertions shared by the test modules (``from _helpers import ...``)."""

from __future__ import annotations

import array_api_compat
import numpy as np

from bragg_core._backend import Context, to_numpy


def assert_same_backend(result, ctx: Context, shape=None) -> None:
    """``result`` is an array of ``ctx``'s namespace, device and dtype (and ``shape``)."""
    assert array_api_compat.is_array_api_obj(result) and not isinstance(result, np.generic), (
        f"expected a {ctx.name} array, got {type(result).__name__}"
    )
    xp = array_api_compat.array_namespace(result)
    assert xp is ctx.xp, f"namespace {xp.__name__} instead of {ctx.xp.__name__}"
    dev = array_api_compat.device(result)
    assert dev == ctx.device, f"device {dev!r} instead of {ctx.device!r}"
    assert result.dtype == ctx.dtype, f"dtype {result.dtype} instead of {ctx.dtype}"
    if shape is not None:
        assert tuple(result.shape) == tuple(shape), f"shape {tuple(result.shape)} instead of {tuple(shape)}"


def assert_close(result, expected, ctx: Context, ulps: float = 4) -> None:
    """Same backend as ``ctx`` and within ``ulps`` relative units of ``finfo(dtype).eps``."""
    expected = np.asarray(expected, dtype=np.float64)
    assert_same_backend(result, ctx, shape=expected.shape)
    np.testing.assert_allclose(
        to_numpy(result).astype(np.float64), expected, rtol=ulps * ctx.eps, atol=0
    )
