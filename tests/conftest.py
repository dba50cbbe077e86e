"""The backend matrix every bragg_core test runs on.

Fixtures (names are stable; other test modules rely on them)
-------------------------------------------------------------
``backend``
    One array backend, parametrised over the ids ``numpy``, ``array_api_strict``,
    ``array_api_strict-device1``, ``torch``, ``torch-cuda``, ``cupy``, ``jax`` and
    ``dask``.  A frozen ``bragg_core.testing.Backend`` with

    * ``.id``     the pytest id above;
    * ``.name``   the library name bragg_core uses (``get_context(backend=...)``);
    * ``.xp``     the array namespace, ``.device`` the native device object;
    * ``.context(dtype)`` -> ``bragg_core._backend.Context`` for that dtype;
    * ``.asarray(data, dtype)`` moves NumPy/Python data onto this backend.

    Each id is skipped, with the reason, when a real probe finds it unusable
    (not installed, no GPU...).  JAX runs with x64 enabled.
``xp``
    Shortcut for ``backend.xp``.
``float_dtype``
    ``"float32"`` or ``"float64"``; ``backend.context(float_dtype).dtype`` is the native dtype.

Typical use::

    def test_something(backend, float_dtype):
        ctx = backend.context(float_dtype)
        x = backend.asarray([1.0, 2.0], float_dtype)
        assert_same_backend(f(x), ctx)          # from bragg_core.testing

Selection: ``BRAGG_BACKENDS=numpy,torch`` runs only those (library names select
every id of that library; ids such as ``torch-cuda`` select one).  The ids, the
probes and :class:`Backend` are ``bragg_core.testing``'s (see docs/testing.md).

Hypothesis: profile ``ci`` (derandomised) loads when ``CI`` is set, ``dev``
otherwise; ``HYPOTHESIS_PROFILE`` overrides both.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from bragg_core.testing import BACKEND_IDS, Backend, get_backend, selected_backend_ids, skip_reason

_IDS = list(BACKEND_IDS)

try:
    SELECTED = set(selected_backend_ids())
except ValueError as exc:
    raise pytest.UsageError(str(exc)) from None

if "jax" in SELECTED:
    try:
        import jax
    except ImportError:
        pass
    else:
        jax.config.update("jax_enable_x64", True)

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=50, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session", params=_IDS)
def backend(request) -> Backend:
    reason = skip_reason(request.param)
    if reason:
        pytest.skip(reason)
    return get_backend(request.param)


@pytest.fixture(scope="session")
def xp(backend):
    return backend.xp


@pytest.fixture(scope="session", params=["float32", "float64"])
def float_dtype(request) -> str:
    return request.param


def pytest_terminal_summary(terminalreporter):
    """Say which backends ran, so a green run cannot hide a matrix of skips."""
    ran = [i for i in _IDS if skip_reason(i) is None]
    terminalreporter.write_line("bragg_core backends run: " + (", ".join(ran) or "NONE"))
    for i in _IDS:
        if skip_reason(i):
            terminalreporter.write_line(f"  skipped {skip_reason(i)}")
