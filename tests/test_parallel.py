"""The tile loop on forked worker processes (``bragg_core.engine.parallel``): NumPy, and torch on the CPU.

Forking changes where tiles are computed, never what: the image must be
bit-identical to the one-process render, every tile must be rendered exactly
once, and a worker that dies must not leave holes or hide its error.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest

from bragg_core.engine import parallel

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forking is Linux-only")

ARGS = ("-cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 5 -distance 100 -detpixels 96 "
        "-mosaic 0.5 -mosaic_dom 3 -mosaic_seed 7 -oversample 2").split()


def _in_fresh_process(code: str) -> None:
    """Run ``code`` in a new interpreter: this test process may hold threads (Dask's pool,
    for one) that rightly stop it from forking."""
    import subprocess
    import textwrap

    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAGG_CORE_")}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("OK"), res.stdout + res.stderr


_RENDER = f"""
    import os
    import numpy as np
    from bragg_core.engine import parallel
    from bragg_core import simulate_args

    ARGS = {ARGS!r}
    parallel.MIN_FORK_PATHS = 0
    used = []
    real = parallel.run_forked
    parallel.run_forked = lambda *a, **k: (used.append(a[1]), real(*a, **k))

    def image(threads, fork, dtype, progress=None, backend="numpy"):
        os.environ["BRAGG_CORE_THREADS"] = threads
        os.environ["BRAGG_CORE_FORK"] = fork
        img = simulate_args(ARGS, backend=backend, dtype=dtype, memory_budget_bytes=64 * 1024,
                            progress=progress).image
        return img.numpy() if backend == "torch" else np.asarray(img)
"""


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forked_image_is_bit_identical(dtype):
    _in_fresh_process(_RENDER + f"""
    serial = image("1", "0", "{dtype}")
    assert not used
    forked = image("2", "1", "{dtype}")
    assert used and used[0] > 2, used            # several tiles, shared by two processes
    assert forked.dtype == serial.dtype
    assert np.array_equal(forked, serial)
    assert np.count_nonzero(serial) > 0.9 * serial.size
    print("OK")
    """)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_forked_image_is_bit_identical_and_shares_the_host_block(dtype):
    pytest.importorskip("torch")
    _in_fresh_process(_RENDER + f"""
    import torch
    serial = image("1", "0", "{dtype}", backend="torch")
    assert not used
    threaded = image("2", "0", "{dtype}", backend="torch")
    forked = image("2", "1", "{dtype}", backend="torch")
    assert used and used[0] > 2, used
    assert forked.dtype == serial.dtype == np.dtype("{dtype}")
    assert np.array_equal(forked, serial) and np.array_equal(threaded, serial)
    assert torch.get_num_threads() > 0
    print("OK")
    """)


def test_progress_counts_every_pixel_once():
    _in_fresh_process(_RENDER + """
    seen = []
    img = image("2", "1", "float64", progress=seen.append)
    assert used
    assert sum(seen) == img.size, (sum(seen), img.size)
    print("OK")
    """)


def test_no_fork_while_other_threads_run(monkeypatch):
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not parallel.fork_available()
    finally:
        stop.set()
        t.join()
    monkeypatch.setenv("BRAGG_CORE_FORK", "0")
    assert not parallel.fork_available()


def test_run_forked_covers_every_item_once():
    _in_fresh_process("""
    import numpy as np
    from bragg_core.engine import parallel

    n = 37
    out = parallel.shared_empty((n,), np.int64)
    out[:] = 0

    def work(i):
        out[i] += 1 + i
        return 1

    parallel.run_forked(work, n, 2)
    assert np.array_equal(out, 1 + np.arange(n)), out
    print("OK")
    """)


def test_dead_worker_tiles_are_redone_here():
    _in_fresh_process("""
    import os
    import numpy as np
    from bragg_core.engine import parallel

    n = 12
    out = parallel.shared_empty((n,), np.int64)
    out[:] = -1
    parent = os.getpid()

    def work(i):
        if os.getpid() != parent:
            os._exit(3)             # a worker killed mid-run: its item is lost
        out[i] = i
        return 1

    parallel.run_forked(work, n, 2)
    assert np.array_equal(out, np.arange(n)), out
    print("OK")
    """)


def test_worker_error_is_raised_in_this_process():
    _in_fresh_process("""
    from bragg_core.engine import parallel

    def work(i):
        if i == 4:
            raise ValueError("tile 4 is bad")
        return 1

    try:
        parallel.run_forked(work, 6, 2)
    except ValueError as exc:
        assert "tile 4 is bad" in str(exc)
        print("OK")
    """)


def test_started_jax_runtime_blocks_forking():
    pytest.importorskip("jax")
    _in_fresh_process("""
    import threading
    import jax
    from bragg_core.engine import parallel

    assert not parallel._jax_running()      # importing JAX starts nothing
    jax.numpy.zeros(1)                       # using it starts a backend
    assert parallel._jax_running()
    assert not parallel.fork_available()
    print("OK")
    """)


def test_fork_refused_by_the_system_renders_here():
    _in_fresh_process("""
    import os
    import numpy as np
    from bragg_core.engine import parallel

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    os.fork = no_fork
    out = parallel.shared_empty((9,), np.int64)

    def work(i):
        out[i] = 2 * i
        return 1

    parallel.run_forked(work, 9, 2)
    assert np.array_equal(out, 2 * np.arange(9)), out
    print("OK")
    """)
