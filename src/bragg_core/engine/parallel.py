"""Run the NumPy tile loop on several cores.

NumPy releases the GIL inside each ufunc, but a tile is a chain of a hundred
short operations and the interpreter holds the GIL between them; measured on
2 cores, two threads render no faster than one.  On Linux the tile loop
therefore forks worker processes instead: the image lives in a shared
anonymous mapping, the workers inherit the prepared setup (nothing is
pickled), and each takes the next tile from a pipe pre-filled with tile
numbers, so faster workers take more tiles.

Forking is only done where it is safe and pays: Linux, NumPy, no other Python
thread running, no JAX runtime started in the process (JAX's threads do not
survive a fork), and enough work to cover the few milliseconds a fork costs.
``BRAGG_CORE_FORK=0`` turns it off (tiles then run on threads).
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable

import numpy as np

# below this many sub-pixel paths (~30 ms on one core) a fork costs more than it gives
MIN_FORK_PATHS = 1 << 20

_TOKEN = np.dtype("<u4")


def private_bytes(pid: int | str = "self") -> int:
    """Private resident memory (Private_Clean + Private_Dirty) of a process, in bytes; 0 if unknown."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total


def fork_available(ignore_env: bool = False) -> bool:
    """Whether worker processes may be forked from this process now (``BRAGG_CORE_FORK=0`` says no, unless
    ``ignore_env``: the variable is about the tile workers)."""
    if not ignore_env and os.environ.get("BRAGG_CORE_FORK", "1") == "0":
        return False
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    if threading.active_count() > 1:  # a fork copies only this thread: others' locks would stay held
        return False
    return not _jax_running()


def _jax_running() -> bool:
    """Whether JAX has started its runtime (and its threads) in this process.

    Importing JAX starts nothing; its backends start at first use.  When the
    private registry cannot be read, an imported JAX counts as running.
    """
    if "jax" not in sys.modules:
        return False
    bridge = sys.modules.get("jax._src.xla_bridge")
    backends = getattr(bridge, "_backends", None)
    return not isinstance(backends, dict) or bool(backends)


def shared_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array in memory shared with processes forked later."""
    dt = np.dtype(dtype)
    n = max(1, int(np.prod(shape)) * dt.itemsize)
    buf = mmap.mmap(-1, n)  # anonymous, MAP_SHARED
    return np.frombuffer(buf, dtype=dt, count=int(np.prod(shape))).reshape(shape)


def _die_with_parent(parent: int) -> None:
    """In a forked worker: be killed when the parent dies, however it dies (SIGKILL included).

    Linux's PR_SET_PDEATHSIG delivers SIGKILL to this process when the thread
    that forked it ends; a parent that died before the request took effect is
    seen by the parent id no longer being the one that forked us.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux/glibc: the parent-id check below still applies
        pass
    if os.getppid() != parent:
        os._exit(1)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # already reaped (SIGCHLD ignored by the application)
        pass


def run_forked(work: Callable[[int], int], n_items: int, workers: int,
               progress: Callable[[int], None] | None = None,
               child_init: Callable[[], object] | None = None) -> int:
    """Call ``work(i)`` for i in range(n_items) across ``workers`` processes (this one included).

    ``work`` writes its results into shared memory and returns how many
    pixels it finished (for ``progress``, which only this process calls).
    Items a worker did not finish (it crashed or was killed) are run again
    here, so an error is raised in this process with its own traceback.
    Returns the memory the forked workers added to this process's: the sum
    of their private resident bytes, read as each finished (their pages
    shared with this process are counted in this process already).
    """
    added = 0
    # per item: done flag; per worker: pixels finished and private memory at exit
    # (each slot written by one process)
    state = shared_empty((n_items + 2 * workers,), np.int64)
    state[:] = 0
    done, finished = state[:n_items], state[n_items:n_items + workers]
    private = state[n_items + workers:]
    chunk = max(1, -(-n_items // 16000))  # tokens stand for runs of items; the pipe holds 64 KiB
    tokens = np.arange(0, n_items, chunk, dtype=_TOKEN)
    r, w = os.pipe()
    try:
        os.write(w, tokens.tobytes())  # fits in the pipe's buffer: no reader needed yet
    finally:
        os.close(w)

    def loop(slot: int) -> None:
        while True:
            b = os.read(r, 4)  # a pipe read of 4 bytes is atomic among readers
            if len(b) < 4:
                return
            first = int(np.frombuffer(b, dtype=_TOKEN)[0])
            for i in range(first, min(n_items, first + chunk)):
                px = work(i)
                done[i] = 1
                finished[slot] += px

    sys.stdout.flush()
    sys.stderr.flush()
    pids: list[int] = []
    parent = os.getpid()
    try:
        for slot in range(1, workers):
            try:
                pid = os.fork()
            except OSError:  # no more processes allowed (limits, memory): work with those there are
                break
            if pid == 0:  # worker: never returns into the caller's code
                code = 1
                try:
                    _die_with_parent(parent)
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    if child_init is not None:  # e.g. one intra-op thread: a library's pool does not survive a fork
                        child_init()
                    loop(slot)
                    private[slot] = private_bytes()
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        reported = 0
        while True:  # this process works too, and reports everyone's progress
            b = os.read(r, 4)
            if len(b) < 4:
                break
            first = int(np.frombuffer(b, dtype=_TOKEN)[0])
            for i in range(first, min(n_items, first + chunk)):
                finished[0] += work(i)
                done[i] = 1
                if progress is not None:
                    total = int(finished.sum())
                    progress(total - reported)
                    reported = total
        for pid in pids:
            _reap(pid)
        pids = []
        added = int(private.sum())
        if progress is not None:
            total = int(finished.sum())
            if total > reported:
                progress(total - reported)
    finally:
        os.close(r)
        for pid in pids:  # interrupted: stop and reap the workers
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            _reap(pid)
    missing = np.flatnonzero(done == 0)
    for i in missing:  # a worker died: redo its tiles here (raises the worker's error, if it recurs)
        px = work(int(i))
        if progress is not None:
            progress(px)
    return added


# ----------------------------------------------------------------------------
# Choosing and tuning the workers
# ----------------------------------------------------------------------------

_MALLOC_TUNED = False


def keep_tile_buffers() -> None:
    """Let glibc reuse freed tile temporaries instead of unmapping and re-faulting them.

    Every tile allocates and frees arrays of a few hundred KiB to a few MiB;
    above glibc's mmap threshold each one is a fresh mapping whose pages fault
    in again, which cost more than the arithmetic (measured: 3.5 million
    faults, system time 1.5x user time, on a 512^2 heavy case).  Raising the
    mmap and trim thresholds keeps freed blocks in the heap for the next tile.
    Process-wide and harmless elsewhere; BRAGG_CORE_MALLOC_TUNE=0 turns it off.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or os.environ.get("BRAGG_CORE_MALLOC_TUNE", "1") == "0":
        return
    _MALLOC_TUNED = True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, 32 * 2**20)  # the largest value glibc accepts on 64-bit
    mallopt(M_TRIM_THRESHOLD, 1024 * 2**20)


def worker_count(caps, n_tiles: int) -> int:
    """Workers for the tile loop: the CPU count (or BRAGG_CORE_THREADS) where the backend allows them."""
    if not caps.thread_workers or n_tiles < 2:
        return 1
    env = os.environ.get("BRAGG_CORE_THREADS")
    want = int(env) if env and env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)
    return max(1, min(want, n_tiles))


def should_fork(caps, workers: int, paths: int) -> bool:
    """Whether the tile loop runs on forked processes: the backend allows it, it pays, and it is safe now."""
    return caps.fork_workers and workers > 1 and paths >= MIN_FORK_PATHS and fork_available()


@contextmanager
def intra_op_threads_paused(ctx):
    """One intra-op thread for the backend while tile threads run (many small parallel regions cost more
    than they give), restored afterwards."""
    if not ctx.caps.pause_intra_op_threads:
        yield
        return
    before = ctx.intra_op_threads(1)
    try:
        yield
    finally:
        ctx.intra_op_threads(before)


def run_threads(work: Callable, items: list, workers: int, ctx) -> list:
    """``[work(x) for x in items]`` on ``workers`` threads (in order); one worker runs inline."""
    if workers <= 1:
        return [work(x) for x in items]
    with intra_op_threads_paused(ctx), ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, items))


# ----------------------------------------------------------------------------
# Per-pixel image steps in blocks of rows
# ----------------------------------------------------------------------------

#: pixels of one block of a per-pixel image step: its temporaries stay in the core's cache
BLOCK_PIXELS = 1 << 16


def block_rows(width: int, per_pixel: int = 1, pixels: int | None = None) -> int:
    """Rows of one block of an image ``width`` pixels wide, ``per_pixel`` elements each (cache-sized)."""
    target = BLOCK_PIXELS if pixels is None else pixels
    return max(1, target // max(1, width * per_pixel))


def map_row_blocks(ctx, n_rows: int, rows: int, fn: Callable, outputs, *, host: bool, pixels: int):
    """The arrays ``fn(r0, r1)`` gives for blocks of rows, joined along the rows (a tuple, one per output).

    ``fn(r0, r1)`` returns a tuple of arrays of this context whose first axis
    has r1 - r0 entries; ``outputs`` names each one's host dtype and trailing
    shape, e.g. ``(("float64", (W,)), ("int64", ()))``.  A block's values must
    depend on nothing but its rows (never on the blocking), so the result is
    the same however the rows are split.

    * lazy backends (one graph): a single call over all rows;
    * ``host`` (the caller says the backend writes into a preallocated host
      array and no input carries a gradient): every block is written into one
      host array per output, by forked workers where :func:`should_fork`
      allows (``pixels``: the work, in pixels), else in this process;
    * otherwise the blocks are concatenated (gradients flow through).
    """
    if ctx.caps.lazy or n_rows <= rows:
        return tuple(fn(0, n_rows))
    starts = list(range(0, n_rows, rows))
    if not host:
        parts = [fn(r0, min(n_rows, r0 + rows)) for r0 in starts]
        return tuple(ctx.xp.concat([p[i] for p in parts], axis=0) for i in range(len(outputs)))
    from .._backend import to_numpy

    keep_tile_buffers()
    workers = worker_count(ctx.caps, len(starts))
    forked = should_fork(ctx.caps, workers, pixels)
    make = shared_empty if forked else np.empty
    host_out = [make((n_rows,) + tuple(shape), np.dtype(dt)) for dt, shape in outputs]

    def fill(i: int) -> int:
        r0 = starts[i]
        r1 = min(n_rows, r0 + rows)
        for dst, part in zip(host_out, fn(r0, r1)):
            dst[r0:r1] = to_numpy(part)
        return r1 - r0

    if forked:
        with intra_op_threads_paused(ctx):
            run_forked(fill, len(starts), workers, child_init=lambda: ctx.intra_op_threads(1))
    else:
        for i in range(len(starts)):
            fill(i)
    return tuple(ctx.from_host(a) for a in host_out)
