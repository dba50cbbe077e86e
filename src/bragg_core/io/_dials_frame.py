"""DIALS's laboratory frame and ours: the one rotation between them (see :mod:`bragg_core.io.dials_expt`).

Shared by the experiment-list reader and writer.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LAB_TO_DIALS", "lab_to_dials", "dials_to_lab"]

LAB_TO_DIALS = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])


def lab_to_dials(v) -> np.ndarray:
    """A vector (or rows of vectors) of the reference's lab frame in DIALS's frame."""
    return np.asarray(v, dtype=np.float64) @ LAB_TO_DIALS.T


def dials_to_lab(v) -> np.ndarray:
    """A vector (or rows of vectors) of DIALS's frame in the reference's lab frame."""
    return np.asarray(v, dtype=np.float64) @ LAB_TO_DIALS


def _unit(v):
    n = np.linalg.norm(v)
    return v / n if n > 0 else v
