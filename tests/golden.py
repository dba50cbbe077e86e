"""Access to the reference outputs committed under tests/data/golden."""

from __future__ import annotations

import gzip
import json
import os
import shlex
from functools import lru_cache

import numpy as np

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
    with open(os.path.join(case_dir(case), "cmd.txt")) as fh:
        return shlex.split(fh.read())


def image(case: str) -> np.ndarray:
    info = next(c for c in manifest()["cases"] if c["id"] == case)
    shape = tuple(info["detector"]["image_shape_slow_fast"])
    with gzip.open(os.path.join(case_dir(case), "image.bin.gz"), "rb") as fh:
        return np.frombuffer(fh.read(), dtype="<f4").reshape(shape)


def stdout(case: str) -> str:
    with open(os.path.join(case_dir(case), "stdout.txt")) as fh:
        return fh.read()


def compare(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(Pearson r, max |ours - ref| / max |ref|)."""
    a = np.asarray(ours, dtype=np.float64).ravel()
    b = np.asarray(ref, dtype=np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        r = 1.0 if np.array_equal(a, b) else 0.0
    else:
        r = float(np.corrcoef(a, b)[0, 1])
    scale = float(np.abs(b).max()) or 1.0
    return r, float(np.abs(a - b).max() / scale)


def backend_selected(name: str) -> bool:
    """Whether BRAGG_BACKENDS (comma-separated library names or ids) selects this library."""
    raw = os.environ.get("BRAGG_BACKENDS", "").strip()
    if not raw:
        return True
    wanted = {w.strip() for w in raw.split(",")}
    return name in wanted or any(w.startswith(name + "-") for w in wanted)
