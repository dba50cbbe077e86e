"""What the engine may assume of a backend: :class:`Capabilities`, answered once per library and device.

No other module tests a backend's name to decide what to do; it reads these answers instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
