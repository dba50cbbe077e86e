"""Access to the reference outputs committed under tests/data/golden.

Each case folder is a golden case in the sense of ``bragg_core.testing``
(``cmd.txt`` and the float image); the comparison and the backend selection are
that module's, so the project's parity numbers and a user's are the same figures.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

import numpy as np

from bragg_core.testing import backend_selected, image_figures, load_golden_case, read_reference_image

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "golden")


@lru_cache(maxsize=None)
def manifest() -> dict:
    with open(os.path.join(GOLDEN, "manifest.json")) as fh:
        return json.load(fh)


def case_ids() -> list[str]:
    return [c["id"] for c in manifest()["cases"]]


def order_dependent() -> list[str]:
    return list(manifest()["summary"]["order_dependent_cases"])


def case_dir(case: str) -> str:
    return os.path.join(GOLDEN, case)


def args(case: str) -> list[str]:
    return list(load_golden_case(case_dir(case)).argv)


def image(case: str) -> np.ndarray:
    info = next(c for c in manifest()["cases"] if c["id"] == case)
    shape = tuple(info["detector"]["image_shape_slow_fast"])
    return read_reference_image(os.path.join(case_dir(case), "image.bin.gz"), shape)


def stdout(case: str) -> str:
    with open(os.path.join(case_dir(case), "stdout.txt")) as fh:
        return fh.read()


def compare(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(Pearson r, max |ours - ref| / max |ref|)."""
    return tuple(image_figures(ours, ref))


__all__ = ["GOLDEN", "manifest", "case_ids", "order_dependent", "case_dir", "args", "image", "stdout", "compare",
           "backend_selected"]
