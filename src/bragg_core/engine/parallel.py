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
from typing import Callable

import numpy as np

# below this many sub-pixel paths (~30 ms on one core) a fork costs more than it gives
MIN_FORK_PATHS = 1 << 20

_TOKEN = np.dtype("<u4")


# Memory the forked workers of the last run_forked call added to this process's
# (the sum of their private resident bytes, read as each finished; their pages
# shared with this process are counted here already).  For benchmarks.
last_workers_private_bytes = 0


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


def fork_available() -> bool:
    """Whether worker processes may be forked from this process now."""
    if os.environ.get("BRAGG_CORE_FORK", "1") == "0":
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


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # already reaped (SIGCHLD ignored by the application)
        pass


def run_forked(work: Callable[[int], int], n_items: int, workers: int,
               progress: Callable[[int], None] | None = None) -> None:
    """Call ``work(i)`` for i in range(n_items) across ``workers`` processes (this one included).

    ``work`` writes its results into shared memory and returns how many
    pixels it finished (for ``progress``, which only this process calls).
    Items a worker did not finish (it crashed or was killed) are run again
    here, so an error is raised in this process with its own traceback.
    """
    global last_workers_private_bytes
    last_workers_private_bytes = 0
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
    try:
        for slot in range(1, workers):
            try:
                pid = os.fork()
            except OSError:  # no more processes allowed (limits, memory): work with those there are
                break
            if pid == 0:  # worker: never returns into the caller's code
                code = 1
                try:
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
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
        last_workers_private_bytes = int(private.sum())
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
