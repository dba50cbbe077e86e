"""The structure-factor grid shared by the HKL and Fdump readers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["StructureFactorGrid"]


@dataclass(frozen=True, eq=False)
class StructureFactorGrid:
    """Structure-factor amplitudes on a dense Miller-index box.

    ``F[i, j, k]`` is ``|F|`` (electrons, float64) of reflection
    ``(h_min + i, k_min + j, l_min + k)``.  Reflections absent from the input
    hold the ``default_F`` the grid was read with (0 when none was given).
    ``F`` may also be a 3-D array of a compute backend (a torch tensor with
    ``requires_grad``, a JAX array): it is then kept as given, and a simulated
    image is differentiable in it.
    """

    F: np.ndarray
    h_min: int
    k_min: int
    l_min: int

    def __post_init__(self):
        F = self.F
        if _is_host(F):
            F = np.ascontiguousarray(F, dtype=np.float64)
        # otherwise an array of a compute backend (a torch tensor that requires
        # grad, a JAX array): kept as it is, so that gradients reach the amplitudes
        if len(F.shape) != 3 or 0 in tuple(F.shape):
            raise ValueError(f"F must be a non-empty 3-D array, got shape {F.shape}")
        object.__setattr__(self, "F", F)
        for name in ("h_min", "k_min", "l_min"):
            object.__setattr__(self, name, int(getattr(self, name)))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(h_range, k_range, l_range)``: the number of indices along each axis."""
        return tuple(int(n) for n in self.F.shape)

    @property
    def h_max(self) -> int:
        return self.h_min + self.F.shape[0] - 1

    @property
    def k_max(self) -> int:
        return self.k_min + self.F.shape[1] - 1

    @property
    def l_max(self) -> int:
        return self.l_min + self.F.shape[2] - 1

    def same_as(self, other: "StructureFactorGrid") -> bool:
        """True when both grids have the same bounds and bit-identical ``F`` (NaN == NaN)."""
        from .._backend import to_numpy

        return (
            (self.h_min, self.k_min, self.l_min) == (other.h_min, other.k_min, other.l_min)
            and self.shape == other.shape
            and np.array_equal(to_numpy(self.F), to_numpy(other.F), equal_nan=True)
        )


def _is_host(F) -> bool:
    """NumPy data or nested sequences (converted to float64); compute-backend arrays are not."""
    return isinstance(F, (np.ndarray, list, tuple)) or not hasattr(F, "shape")
