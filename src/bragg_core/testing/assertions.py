"""Assertions for a validation suite: the backend is kept, and images agree.

They raise ``AssertionError`` (not ``assert`` statements, so ``python -O``
keeps them) with the measured figures in the message.
"""

from __future__ import annotations

from typing import NamedTuple

import array_api_compat
import numpy as np

from .._backend import Context, to_numpy
from .._types import Array, Device, Namespace

__all__ = ["ImageFigures", "assert_close", "assert_images_close", "assert_same_backend", "image_figures"]


def _is_array(x: object) -> bool:
    return array_api_compat.is_array_api_obj(x) and not isinstance(x, np.generic)


def _expected(like: tuple) -> tuple[Namespace, Device, object]:
    """Namespace, device and dtype that a result of ``like`` (contexts and arrays; scalars skipped) must have."""
    contexts = [v for v in like if isinstance(v, Context)]
    arrays = [v for v in like if _is_array(v)]
    if contexts:
        if len(contexts) > 1 or arrays:
            raise TypeError("assert_same_backend takes either one Context or the input arrays, not both")
        ctx = contexts[0]
        return ctx.xp, ctx.device, ctx.dtype
    if not arrays:
        raise TypeError("assert_same_backend needs a Context or at least one input array to compare with")
    xp = array_api_compat.array_namespace(*arrays)  # raises when the inputs mix libraries
    devices = {repr(array_api_compat.device(a)) for a in arrays}
    if len(devices) > 1:
        raise TypeError(f"the input arrays live on different devices ({', '.join(sorted(devices))})")
    return xp, array_api_compat.device(arrays[0]), xp.result_type(*arrays)


def assert_same_backend(result: Array, *like: object, shape: tuple[int, ...] | None = None) -> None:
    """``result`` has the namespace, device and dtype of ``like`` (and ``shape`` when given).

    ``like`` is either one ``bragg_core`` context (``get_context(...)``,
    ``Backend.context(dtype)``) or the input arrays of the call that made
    ``result``; Python and NumPy scalars among them are skipped, and the
    expected dtype is the standard promotion of the inputs' dtypes.
    """
    xp_want, dev_want, dt_want = _expected(like)
    if not _is_array(result):
        raise AssertionError(f"expected a {xp_want.__name__} array, got {type(result).__name__}")
    xp = array_api_compat.array_namespace(result)
    if xp is not xp_want:
        raise AssertionError(f"namespace {xp.__name__} instead of {xp_want.__name__}")
    dev = array_api_compat.device(result)
    if dev != dev_want:
        raise AssertionError(f"device {dev!r} instead of {dev_want!r}")
    if result.dtype != dt_want:
        raise AssertionError(f"dtype {result.dtype} instead of {dt_want}")
    if shape is not None and tuple(result.shape) != tuple(shape):
        raise AssertionError(f"shape {tuple(result.shape)} instead of {tuple(shape)}")


def assert_close(result: Array, expected: object, ctx: Context, ulps: float = 4) -> None:
    """Same backend as ``ctx`` and within ``ulps`` relative units of ``finfo(ctx.dtype).eps`` of ``expected``."""
    expected = np.asarray(expected, dtype=np.float64)
    assert_same_backend(result, ctx, shape=expected.shape)
    np.testing.assert_allclose(to_numpy(result).astype(np.float64), expected, rtol=ulps * ctx.eps, atol=0)


class ImageFigures(NamedTuple):
    """How close two images are: Pearson ``r`` and ``max_rel`` = max |a - b| / max |b|."""

    r: float
    max_rel: float

    def __str__(self) -> str:
        return f"r={self.r:.9f} max|a-b|/max|b|={self.max_rel:.3e}"


def image_figures(actual: Array, reference: Array) -> ImageFigures:
    """Pearson r and max |actual - reference| / max |reference|, in float64 on the host.

    Arrays of any backend.  Where either image is constant, r is 1 for equal
    images and 0 otherwise; an all-zero reference scales differences by 1.
    """
    a = np.asarray(to_numpy(actual), dtype=np.float64).ravel()
    b = np.asarray(to_numpy(reference), dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise AssertionError(f"images have {a.size} and {b.size} pixels")
    if a.std() == 0 or b.std() == 0:
        r = 1.0 if np.array_equal(a, b) else 0.0
    else:
        r = float(np.corrcoef(a, b)[0, 1])
    scale = float(np.abs(b).max()) if b.size else 0.0
    return ImageFigures(r, float(np.abs(a - b).max() / (scale or 1.0)) if a.size else 0.0)


def assert_images_close(actual: Array, reference: Array, r_min: float = 0.9999, max_rel: float = 1e-3,
                        what: str = "images") -> ImageFigures:
    """``actual`` matches ``reference``: Pearson r >= ``r_min`` and max difference <= ``max_rel`` of max |reference|.

    Shapes must be equal.  Returns the measured :class:`ImageFigures`; the
    failure message gives them with the bounds.
    """
    sa, sb = tuple(actual.shape), tuple(reference.shape)
    if sa != sb:
        raise AssertionError(f"{what}: shape {sa} instead of {sb}")
    fig = image_figures(actual, reference)
    if not (fig.r >= r_min and fig.max_rel <= max_rel):  # written so that NaN fails
        raise AssertionError(
            f"{what} differ: r={fig.r:.9f} (at least {r_min}), "
            f"max|a-b|/max|b|={fig.max_rel:.3e} (at most {max_rel:.1e})"
        )
    return fig
