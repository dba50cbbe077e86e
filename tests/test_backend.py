"""bragg_core._backend: namespace, device and dtype resolution."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from bragg_core._backend import (
    BACKEND_NAMES,
    BackendError,
    get_context,
    is_lazy,
    namespace_of,
    resolve_backend,
    to_numpy,
)
from bragg_core.testing import assert_same_backend


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (global flags and sys.modules untouched here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# ---------------------------------------------------------------------------
# namespace and device detection
# ---------------------------------------------------------------------------


def test_scalars_and_none_do_not_decide(backend):
    x = backend.asarray([1.0, 2.0])
    for values in [(x,), (1.0, x), (None, np.float64(2.5), x, 3, np.float32(1.0), True)]:
        xp, dev = namespace_of(*values)
        assert xp is backend.xp and dev == backend.device


def test_no_arrays_means_numpy_on_cpu():
    ctx = get_context(1.0, None, np.float32(2.0), 7)
    assert ctx.name == "numpy" and ctx.device == "cpu" and ctx.dtype == ctx.xp.float64
    assert namespace_of()[1] == "cpu"


def test_mixing_libraries_rejected(backend):
    if backend.name == "numpy":
        other_name, other = "array_api_strict", pytest.importorskip("array_api_strict").ones(1)
    else:
        other_name, other = "numpy", np.ones(1)
    libs = ", ".join(sorted([backend.name, other_name]))
    with pytest.raises(BackendError, match=re.escape(f"different libraries were mixed in one call ({libs})")):
        get_context(backend.asarray([1.0]), other)


def test_mixing_torch_and_jax_rejected():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(BackendError, match=r"\(jax, torch\); convert them to one backend first"):
        namespace_of(torch.ones(1), 2.0, jnp.ones(1))


def test_mixing_devices_rejected():
    xps = pytest.importorskip("array_api_strict")
    a = xps.ones(1, device=xps.Device("CPU_DEVICE"))
    b = xps.ones(1, device=xps.Device("device1"))
    with pytest.raises(BackendError, match="different devices"):
        get_context(a, b)


def test_named_backend_must_match_arrays():
    with pytest.raises(BackendError, match="'array_api_strict' was requested but the arrays passed are numpy"):
        get_context(np.ones(1), backend="array_api_strict")


def test_is_lazy(backend):
    assert is_lazy(backend.asarray([1.0])) == (backend.name in ("jax", "dask"))
    assert not is_lazy(1.0) and not is_lazy(None)


def test_to_numpy_round_trip(backend, float_dtype):
    data = np.array([[1.5, -2.0], [3.25, 0.0]])
    x = backend.asarray(data, float_dtype)
    out = to_numpy(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.dtype(float_dtype)
    np.testing.assert_array_equal(out, data)


# ---------------------------------------------------------------------------
# resolving backends and devices by name
# ---------------------------------------------------------------------------


def test_resolve_each_backend(backend):
    xp, dev = resolve_backend(backend.name, backend.device)
    assert xp is backend.xp and dev == backend.device
    x = xp.asarray([1.0], dtype=xp.float32, device=dev)
    assert_same_backend(x, get_context(x), shape=(1,))
    if backend.id in ("numpy", "array_api_strict", "torch", "jax", "dask"):
        # no device named: the backend's default, the one the fixture uses
        assert resolve_backend(backend.name.upper())[1] == backend.device


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "dask", "array_api_strict"])
def test_resolve_cpu(name):
    pytest.importorskip(name)
    xp, dev = resolve_backend(name, "cpu")
    assert "cpu" in str(dev).lower()
    x = xp.asarray([1.0], device=dev)
    assert namespace_of(x) == (xp, dev)


@pytest.mark.parametrize("name", ["numpy", "dask"])
def test_cpu_only_backends_reject_cuda(name):
    pytest.importorskip(name)
    with pytest.raises(BackendError, match=rf"'{name}' has no device 'cuda'; it runs on 'cpu' only"):
        resolve_backend(name, "cuda")


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_torch_cuda_without_gpu(device):
    torch = pytest.importorskip("torch")
    if torch.cuda.device_count() > (1 if device == "cuda:1" else 0):
        pytest.skip(f"torch has {torch.cuda.device_count()} CUDA device(s); {device!r} exists")
    with pytest.raises(BackendError, match=rf"'torch' has no device '{device}': .*CUDA"):
        get_context(backend="torch", device=device)


def test_jax_cuda_without_gpu():
    jax = pytest.importorskip("jax")
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("JAX sees a GPU")
    with pytest.raises(BackendError, match="'jax' has no device 'cuda'"):
        resolve_backend("jax", "cuda")


def test_cupy_unavailable_is_clear():
    try:
        import cupy

        if cupy.is_available():
            pytest.skip("CuPy has a GPU here")
    except ImportError:
        pass
    with pytest.raises(BackendError, match="'cupy' is (not available|installed but no CUDA GPU)"):
        resolve_backend("cupy")


@pytest.mark.parametrize("name", ["tensorflow", "", "num py", 3, None])
def test_unknown_backend_names(name):
    with pytest.raises(BackendError, match="unknown backend") as info:
        resolve_backend(name)
    assert all(n in str(info.value) for n in BACKEND_NAMES), "the message should list the choices"


@pytest.mark.parametrize(("name", "device"), [("array_api_strict", "device9"), ("torch", "warp-drive"), ("jax", "tpu")])
def test_unknown_devices(name, device):
    pytest.importorskip(name)
    with pytest.raises(BackendError, match=f"'{name}' has no device '{device}'"):
        resolve_backend(name, device)


# ---------------------------------------------------------------------------
# dtype promotion
# ---------------------------------------------------------------------------


def test_float_dtype_survives_scalars(backend, float_dtype):
    ctx = backend.context(float_dtype)
    x = backend.asarray([1.0], float_dtype)
    got = get_context(x, 2.5, np.float64(0.1), np.float32(3.0), 7, None)
    assert got.dtype == ctx.dtype and got.device == ctx.device
    assert_same_backend(got.asarray(np.float64(0.1)), ctx, shape=())


def test_floats_promote_together(backend):
    x32, x64 = backend.asarray([1.0], "float32"), backend.asarray([1.0], "float64")
    assert get_context(x32, x64).dtype == backend.xp.float64


def test_integers_and_booleans_give_float64(backend):
    xp = backend.xp
    ints = xp.asarray([1, 2], device=backend.device)
    assert get_context(ints).dtype == xp.float64
    assert get_context(ints == 1).dtype == xp.float64
    assert get_context(ints, backend.asarray([1.0], "float32")).dtype == xp.float32


def test_explicit_dtype_wins(backend, float_dtype):
    xp = backend.xp
    other = "float64" if float_dtype == "float32" else "float32"
    x = backend.asarray([1.0], other)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # array-api-strict warns on comparing its dtypes with NumPy's
        for spelled in (float_dtype, getattr(xp, float_dtype), np.dtype(float_dtype), getattr(np, float_dtype)):
            assert get_context(x, dtype=spelled).dtype == getattr(xp, float_dtype)


@pytest.mark.parametrize("dtype", ["float16", "int32", "complex64", np.int64])
def test_non_float_dtypes_rejected(dtype):
    with pytest.raises(BackendError, match="dtype must be 'float32' or 'float64'"):
        get_context(np.ones(1), dtype=dtype)


def test_complex_arrays_rejected(backend):
    z = backend.xp.asarray([1.0 + 2.0j], device=backend.device)
    with pytest.raises(BackendError, match="complex"):
        get_context(z)


def test_jax_float64_needs_x64():
    pytest.importorskip("jax")
    run_python(
        """
        import jax.numpy as jnp
        from bragg_core._backend import BackendError, get_context
        assert get_context(jnp.ones(2, dtype=jnp.float32)).dtype == jnp.float32
        for call in (lambda: get_context(backend="jax", dtype="float64"),
                     lambda: get_context(jnp.arange(3))):
            try:
                call()
            except BackendError as exc:
                assert "jax_enable_x64" in str(exc), exc
            else:
                raise AssertionError("float64 on JAX without x64 was accepted")
        """
    )


# ---------------------------------------------------------------------------
# import cost
# ---------------------------------------------------------------------------


def test_import_is_light():
    out = run_python(
        """
        import sys, time
        t0 = time.perf_counter()
        import bragg_core, bragg_core.units
        elapsed = time.perf_counter() - t0
        import numpy as np
        bragg_core.units.fluence_from_flux(np.ones(3), 1.0, 1e-4)  # NumPy work alone
        heavy = [m for m in ("torch", "jax", "cupy", "dask") if m in sys.modules]
        assert not heavy, f"importing or using bragg_core with NumPy imported {heavy}"
        print(elapsed)
        """
    )
    assert float(out) < 1.0, f"import bragg_core took {float(out):.2f} s"


def test_take_rows_equals_take_on_every_backend(backend):
    from bragg_core._backend import take_rows

    ctx = backend.context("float64")
    table = ctx.asarray(np.arange(12.0).reshape(6, 2) ** 1.5)
    idx = ctx.asarray(np.array([5, 0, 3, 3, 1], dtype=np.int64), dtype=ctx.xp.int64)
    got = take_rows(ctx.xp, table, idx)
    assert_same_backend(got, ctx, shape=(5, 2))
    np.testing.assert_array_equal(to_numpy(got), np.asarray(to_numpy(ctx.xp.take(table, idx, axis=0))))
    np.testing.assert_array_equal(to_numpy(got), (np.arange(12.0).reshape(6, 2) ** 1.5)[[5, 0, 3, 3, 1]])


def test_take_rows_passes_gradients_on_torch():
    torch = pytest.importorskip("torch")
    from bragg_core._backend import get_context, take_rows

    x = torch.arange(5.0, dtype=torch.float64, requires_grad=True)
    xp = get_context(x).xp
    take_rows(xp, x, torch.tensor([4, 4, 0])).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 0.0, 0.0, 2.0]
