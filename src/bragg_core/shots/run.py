"""The run and its ground truth: a :class:`ShotRun` (a base experiment and what changes from shot to shot),
the seeds of each shot, a shot's drawn :class:`ShotTruth`, and the experiment it makes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ..experiment import Experiment, ExperimentError
from .distributions import DISTRIBUTIONS, Choice, Integers, LogUniform, Normal
from .rotations import _check_rotations, misset_deg_to_rotation, random_rotations, rotation_to_misset_deg

# the spawn-key slot of each quantity: never reorder (it would change every run's shots)
_STREAM = {"orientation": 0, "N_cells": 1, "fluence_photons_per_m2": 2, "mosaic_spread_deg": 3,
           "mosaic_seed": 4, "distance_mm": 5, "wavelength_A": 6, "dispersion_percent": 7, "noise": 8}

VARIED = ("N_cells", "fluence_photons_per_m2", "mosaic_spread_deg", "distance_mm", "wavelength_A",
          "dispersion_percent")


def _check_dist(name: str, d, *, positive=False, nonneg=False, integer=False):
    where = f"ShotRun.{name}"
    if d is None:
        return
    if not isinstance(d, DISTRIBUTIONS):
        raise ExperimentError(f"{where} must be None or one of Uniform, LogUniform, Normal, Integers, "
                              f"Choice; got {d!r}")
    if isinstance(d, Choice):
        if len(d.values) < 1:
            raise ExperimentError(f"{where}: Choice needs at least one value")
        return
    lo, hi = (d.mean, d.sd) if isinstance(d, Normal) else (d.low, d.high)
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ExperimentError(f"{where}: the bounds must be finite numbers, got {d!r}")
    if isinstance(d, Normal):
        if d.sd < 0:
            raise ExperimentError(f"{where}: the standard deviation must not be negative, got {d.sd!r}")
        return
    if lo > hi:
        raise ExperimentError(f"{where}: low must not exceed high, got {d!r}")
    if isinstance(d, Integers) and not (isinstance(lo, int) and isinstance(hi, int)):
        raise ExperimentError(f"{where}: Integers needs integer bounds, got {d!r}")
    if isinstance(d, LogUniform) and lo <= 0:
        raise ExperimentError(f"{where}: LogUniform needs positive bounds, got {d!r}")
    if (positive and lo <= 0) or (nonneg and lo < 0):
        raise ExperimentError(f"{where}: the values must be {'positive' if positive else 'non-negative'}, "
                              f"got {d!r}")
    if integer and not isinstance(d, (Integers, Choice)):
        raise ExperimentError(f"{where} must be Integers or Choice, got {type(d).__name__}")


@dataclass(frozen=True)
class ShotRun:
    """A run of ``n_shots`` shots: a base experiment and what changes from shot to shot.

    ``orientation`` is ``"random"`` (uniform on SO(3), drawn from the shot's
    seed), ``"fixed"`` (the base crystal's own orientation, for every shot), or
    an array ``(n_shots, 3, 3)`` of rotation matrices.  A rotation ``U``
    enters the experiment as ``Crystal.misset_deg`` (U = Rz Ry Rx applied to
    the base reciprocal vectors); the base crystal's own misset is replaced.
    The other fields are ``None`` (the base value for every shot) or a
    distribution drawn per shot: ``N_cells`` (Integers or Choice; an integer
    means a cube of that many cells, a triple is used as is), fluence,
    mosaic spread, detector distance, central wavelength and bandwidth
    (``dispersion_percent``; the number of wavelengths is the base beam's
    ``dispersion_steps``).  With a base mosaic spread, each shot draws its own
    mosaic domains.  ``noise`` replaces each image by Poisson photon counts
    drawn from the shot's seed.
    """

    base: Experiment
    n_shots: int
    seed: int = 0
    orientation: Any = "random"
    N_cells: Any = None
    fluence_photons_per_m2: Any = None
    mosaic_spread_deg: Any = None
    distance_mm: Any = None
    wavelength_A: Any = None
    dispersion_percent: Any = None
    noise: bool = False

    def __post_init__(self):
        if not isinstance(self.base, Experiment):
            raise ExperimentError(f"ShotRun.base must be an Experiment, got {type(self.base).__name__}")
        for name in ("n_shots", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ExperimentError(f"ShotRun.{name} must be an integer, got {v!r}")
        if self.n_shots < 1:
            raise ExperimentError(f"ShotRun.n_shots must be at least 1, got {self.n_shots!r}")
        if self.seed < 0:
            raise ExperimentError(f"ShotRun.seed must not be negative, got {self.seed!r}")
        if not isinstance(self.noise, bool):
            raise ExperimentError(f"ShotRun.noise must be True or False, got {self.noise!r}")
        o = self.orientation
        if isinstance(o, str):
            if o not in ("random", "fixed"):
                raise ExperimentError(f"ShotRun.orientation must be 'random', 'fixed' or an array of "
                                      f"rotation matrices, got {o!r}")
        else:
            m = _check_rotations(o, "ShotRun.orientation")
            if m.shape[0] != self.n_shots:
                raise ExperimentError(f"ShotRun.orientation holds {m.shape[0]} matrices for "
                                      f"{self.n_shots} shots")
            m.setflags(write=False)
            object.__setattr__(self, "orientation", m)
        _check_dist("N_cells", self.N_cells, integer=True)
        if isinstance(self.N_cells, Integers) and self.N_cells.low < 1:
            raise ExperimentError(f"ShotRun.N_cells: at least one cell, got {self.N_cells!r}")
        _check_dist("fluence_photons_per_m2", self.fluence_photons_per_m2, nonneg=True)
        _check_dist("mosaic_spread_deg", self.mosaic_spread_deg, nonneg=True)
        _check_dist("distance_mm", self.distance_mm, positive=True)
        _check_dist("wavelength_A", self.wavelength_A, positive=True)
        _check_dist("dispersion_percent", self.dispersion_percent, nonneg=True)
        # every shot's experiment must be buildable: check shot 0 now
        truth_experiment(self.base, shot_truth(self, 0))


def shot_seed_sequence(run_seed: int, index: int, quantity: Optional[int] = None) -> np.random.SeedSequence:
    """The seed sequence of shot ``index`` (``SeedSequence(run_seed).spawn(...)[index]``), or of one of
    its quantities (the grandchild ``quantity``)."""
    key = (int(index),) if quantity is None else (int(index), int(quantity))
    return np.random.SeedSequence(int(run_seed), spawn_key=key)


def _rng(run: ShotRun, index: int, quantity: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(shot_seed_sequence(run.seed, index, _STREAM[quantity])))


@dataclass(frozen=True)
class ShotTruth:
    """Ground truth of one shot: everything needed to render it again from the base experiment."""

    index: int
    run_seed: int
    orientation: tuple          # row-major 3x3 rotation U (applied to the base reciprocal vectors)
    misset_deg: tuple           # the same rotation as the angles the renderer is given
    N_cells: tuple
    fluence_photons_per_m2: float
    mosaic_spread_deg: Optional[float]
    mosaic_seed: int
    distance_mm: float
    wavelength_A: float
    dispersion_percent: float
    noise_seed: Optional[int]

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ShotTruth":
        names = set(cls.__dataclass_fields__)
        vals = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        missing = names - set(vals)
        if missing:
            raise ValueError(f"ground-truth row lacks {', '.join(sorted(missing))}")
        return cls(**vals)

    @property
    def orientation_matrix(self) -> np.ndarray:
        return np.asarray(self.orientation, dtype=np.float64).reshape(3, 3)


def _float(v) -> Optional[float]:
    return None if v is None else float(v)


def _random_orientation(run: ShotRun, index: int) -> np.ndarray:
    return random_rotations(1, _rng(run, index, "orientation"))[0]


def shot_orientations(run: ShotRun, indices: Optional[Sequence[int]] = None) -> np.ndarray:
    """The rotation matrices ``(n, 3, 3)`` of shots ``indices`` (default: all), without the rest of
    their ground truth."""
    idx = range(run.n_shots) if indices is None else indices
    if isinstance(run.orientation, str) and run.orientation == "random":
        return np.stack([_random_orientation(run, int(i)) for i in idx])
    return np.stack([shot_truth(run, int(i)).orientation_matrix for i in idx])


def shot_truth(run: ShotRun, index: int) -> ShotTruth:
    """Draw shot ``index``'s ground truth (a pure function of the run and the index)."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < run.n_shots:
        raise IndexError(f"shot index {index!r} is outside 0..{run.n_shots - 1}")
    index = int(index)
    base = run.base
    if isinstance(run.orientation, str) and run.orientation == "random":
        u = _random_orientation(run, index)
        misset = rotation_to_misset_deg(u)
    elif isinstance(run.orientation, str):  # fixed: the base orientation
        m = base.crystal.misset_deg
        misset = tuple(float(v) for v in m) if m is not None else (0.0, 0.0, 0.0)
        u = misset_deg_to_rotation(misset)
    else:
        u = np.array(run.orientation[index])
        misset = rotation_to_misset_deg(u)

    def pick(name, default):
        d = getattr(run, name)
        return default if d is None else d.draw(_rng(run, index, name))

    n = pick("N_cells", base.crystal.N_cells)
    n_cells = (n, n, n) if isinstance(n, (int, float, np.integer, np.floating)) else tuple(n)
    spread = pick("mosaic_spread_deg", base.crystal.mosaic_spread_deg)
    varies_mosaic = spread is not None and float(spread) > 0
    mosaic_seed = (int(_rng(run, index, "mosaic_seed").integers(1, 2**31 - 1)) if varies_mosaic
                   else int(base.crystal.mosaic_seed))
    noise_seed = int(_rng(run, index, "noise").integers(0, 2**63 - 1)) if run.noise else None
    return ShotTruth(
        index=index, run_seed=int(run.seed),
        orientation=tuple(float(v) for v in np.asarray(u).reshape(-1)),
        misset_deg=tuple(float(v) for v in misset),
        N_cells=tuple(float(v) if not float(v).is_integer() else int(v) for v in n_cells),
        fluence_photons_per_m2=float(pick("fluence_photons_per_m2", base.beam.fluence_photons_per_m2)),
        mosaic_spread_deg=_float(spread),
        mosaic_seed=mosaic_seed,
        distance_mm=float(pick("distance_mm", base.detector.distance_mm)),
        wavelength_A=float(pick("wavelength_A", base.beam.wavelength_A)),
        dispersion_percent=float(pick("dispersion_percent", base.beam.dispersion_percent)),
        noise_seed=noise_seed,
    )


def truth_experiment(base: Experiment, truth: ShotTruth) -> Experiment:
    """The experiment of a shot: ``base`` with the shot's ground truth put in."""
    return base.replace(
        crystal__misset_deg=tuple(truth.misset_deg),
        crystal__misset_random=False,
        crystal__N_cells=tuple(truth.N_cells),
        crystal__mosaic_spread_deg=truth.mosaic_spread_deg,
        crystal__mosaic_seed=int(truth.mosaic_seed),
        beam__fluence_photons_per_m2=truth.fluence_photons_per_m2,
        beam__wavelength_A=truth.wavelength_A,
        beam__dispersion_percent=truth.dispersion_percent,
        detector__distance_mm=truth.distance_mm,
    )


def shot_experiment(run: ShotRun, index: int) -> Experiment:
    """The experiment of shot ``index``."""
    return truth_experiment(run.base, shot_truth(run, index))
