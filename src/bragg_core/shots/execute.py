"""Rendering shots: one here (:func:`render_shot`, :func:`render_truth`), or many (:func:`simulate_shots`) on
worker processes or a Dask cluster, with retries, yielding a :class:`ShotResult` for each as it finishes."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from ..experiment import Experiment
from .run import ShotRun, ShotTruth, shot_truth, truth_experiment


@dataclass
class ShotResult:
    """One shot: its index, its image (NumPy float32, (slow, fast)) and ground truth; or the error that
    stopped it (``image`` is then None)."""

    index: int
    image: Optional[np.ndarray]
    truth: Optional[ShotTruth]
    error: Optional[str] = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def sha256(self) -> str:
        return image_sha256(self.image)


def image_sha256(image) -> str:
    """sha256 of the image as stored on disk (little-endian float32, row after row)."""
    return hashlib.sha256(np.ascontiguousarray(image, dtype="<f4").tobytes()).hexdigest()


def render_truth(base: Experiment, truth: ShotTruth, *, backend: str = "numpy", device: Any = None,
                 dtype: Any = "float64") -> np.ndarray:
    """Render a shot from the base experiment and its ground truth: a NumPy float32 image."""
    from .._backend import enable_float64, to_numpy
    from ..simulate import simulate

    enable_float64(backend, dtype)
    sim = simulate(truth_experiment(base, truth), backend=backend, device=device, dtype=dtype,
                   store_dtype=np.float32)
    image = np.asarray(to_numpy(sim.image), dtype=np.float32)
    if truth.noise_seed is not None:
        from ..noise import poisson_deviates

        rng = np.random.Generator(np.random.PCG64(int(truth.noise_seed)))
        image = poisson_deviates(image.astype(np.float64), rng).astype(np.float32).reshape(image.shape)
    return image


def render_shot(run: ShotRun, index: int, *, backend: str = "numpy", device: Any = None,
                dtype: Any = "float64") -> ShotResult:
    """Render shot ``index`` of ``run`` here, in this process."""
    truth = shot_truth(run, index)
    image = render_truth(run.base, truth, backend=backend, device=device, dtype=dtype)
    return ShotResult(index=int(index), image=image, truth=truth)


# worker-side state of a process pool: the run arrives once, with the pool, not with every task
_WORKER: dict = {}


def _init_worker(run, render, options, threads):
    if threads is not None:
        os.environ["BRAGG_CORE_THREADS"] = str(threads)
    _WORKER.update(run=run, render=render, options=options)


def _pool_task(index: int) -> ShotResult:
    return _WORKER["render"](_WORKER["run"], index, **_WORKER["options"])


def _dask_task(run, index, render, options, threads):
    if threads is not None:
        os.environ["BRAGG_CORE_THREADS"] = str(threads)
    return render(run, index, **options)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def simulate_shots(run: ShotRun, indices: Optional[Sequence[int]] = None, *, workers: int = 1,
                   backend: str = "numpy", device: Any = None, dtype: Any = "float64",
                   client: Any = None, retries: int = 1, max_in_flight: Optional[int] = None,
                   render: Callable[..., ShotResult] = render_shot) -> Iterator[ShotResult]:
    """Render the shots ``indices`` (default: all) and yield a :class:`ShotResult` for each as it finishes.

    ``workers=1`` renders here, in order; ``workers=N`` on N worker processes
    (each renders whole shots, one tile worker each); ``client`` (a
    ``dask.distributed.Client``) on that cluster: the run is scattered to the
    workers once, the tasks carry only shot indices.  At most
    ``max_in_flight`` shots (default 2 per worker) are pending at a time, so
    images never pile up.  A shot that raises is tried again ``retries``
    times; if it still fails, its result has ``error`` set and ``image`` None
    (it is never silently missing).  ``render(run, index, backend=, device=,
    dtype=)`` renders one shot (default :func:`render_shot`); with workers or
    a cluster it must be picklable (a module-level function).  Images are
    identical whatever ``workers`` or ``client``.
    """
    idx = list(range(run.n_shots)) if indices is None else [int(i) for i in indices]
    for i in idx:
        if not 0 <= i < run.n_shots:
            raise IndexError(f"shot index {i} is outside 0..{run.n_shots - 1}")
    options = {"backend": backend, "device": device, "dtype": dtype}
    if client is not None:
        yield from _on_dask(run, idx, client, render, options, retries, max_in_flight)
    elif workers <= 1:
        for i in idx:
            yield _attempt_here(run, i, render, options, retries)
    else:
        yield from _on_pool(run, idx, workers, render, options, retries, max_in_flight)


def _attempt_here(run, i, render, options, retries) -> ShotResult:
    err = None
    for attempt in range(1, retries + 2):
        try:
            res = render(run, i, **options)
            res.attempts = attempt
            return res
        except Exception as exc:  # reported by index, with the reason
            err = _describe(exc)
    return ShotResult(index=i, image=None, truth=None, error=err, attempts=retries + 1)


def _on_pool(run, idx, workers, render, options, retries, max_in_flight):
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    window = max_in_flight or 2 * workers
    # fork where the platform has it (as the engine's tile workers do): no re-import, no __main__ guard
    from ..engine.parallel import fork_available

    # fork where it is safe (no other thread, no JAX runtime in this process); a fresh interpreter otherwise
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() and fork_available(ignore_env=True) \
        else "spawn"
    ctx = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(run, render, options, 1)) as pool:
        todo = list(reversed(idx))
        pending = {}
        tries: dict[int, int] = {}

        broken: list[int] = []

        def submit(i):
            tries[i] = tries.get(i, 0) + 1
            try:
                pending[pool.submit(_pool_task, i)] = i
            except BrokenProcessPool:  # a worker died (killed, out of memory): no more shots here
                broken.append(i)

        while todo or pending:
            while todo and len(pending) < window:
                submit(todo.pop())
            for i in broken:
                yield ShotResult(index=i, image=None, truth=None, attempts=tries[i],
                                 error="BrokenProcessPool: a worker process died")
            broken.clear()
            if not pending:
                continue
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                exc = fut.exception()
                if exc is None:
                    res = fut.result()
                    res.attempts = tries[i]
                    yield res
                elif tries[i] <= retries and not isinstance(exc, BrokenProcessPool):
                    submit(i)
                else:
                    yield ShotResult(index=i, image=None, truth=None, error=_describe(exc), attempts=tries[i])


def _on_dask(run, idx, client, render, options, retries, max_in_flight):
    from distributed import as_completed

    nworkers = max(1, len(client.scheduler_info().get("workers", {})))
    window = max_in_flight or 2 * nworkers
    [run_f] = client.scatter([run], broadcast=True)
    threads = 1 if getattr(client, "_bragg_local", False) else None
    todo = list(reversed(idx))
    index_of = {}

    def submit():
        i = todo.pop()
        f = client.submit(_dask_task, run_f, i, render, options, threads, pure=False, retries=retries,
                          key=f"bragg-shot-{i}-{os.urandom(4).hex()}")
        index_of[f.key] = i
        return f

    first = [submit() for _ in range(min(window, len(todo)))]
    stream = as_completed(first)
    for fut in stream:
        i = index_of.pop(fut.key)
        if fut.status == "finished":
            res = fut.result()
            yield res
        else:
            try:
                exc = fut.exception()
            except Exception as e:  # a lost worker, a cancelled task
                exc = e
            yield ShotResult(index=i, image=None, truth=None, error=_describe(exc), attempts=retries + 1)
        fut.release()
        if todo:
            stream.add(submit())
