"""Per-shot distributions: what a :class:`~bragg_core.shots.ShotRun` field draws, shot by shot, from the
shot's own random generator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high)."""

    low: float
    high: float

    def draw(self, rng: np.random.Generator):
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class LogUniform:
    """A float whose logarithm is uniform between log(low) and log(high) (both positive)."""

    low: float
    high: float

    def draw(self, rng: np.random.Generator):
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


@dataclass(frozen=True)
class Normal:
    """A float drawn from a normal distribution (mean, standard deviation)."""

    mean: float
    sd: float

    def draw(self, rng: np.random.Generator):
        return float(rng.normal(self.mean, self.sd))


@dataclass(frozen=True)
class Integers:
    """An integer drawn uniformly from low..high, both included."""

    low: int
    high: int

    def draw(self, rng: np.random.Generator):
        return int(rng.integers(self.low, self.high, endpoint=True))


@dataclass(frozen=True)
class Choice:
    """One of ``values``, each equally likely."""

    values: tuple

    def draw(self, rng: np.random.Generator):
        v = self.values[int(rng.integers(0, len(self.values)))]
        return tuple(v) if isinstance(v, list) else v


DISTRIBUTIONS = (Uniform, LogUniform, Normal, Integers, Choice)
