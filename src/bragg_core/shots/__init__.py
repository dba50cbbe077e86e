"""Many shots: a base experiment plus per-shot variation, reproducible shot by shot.

A :class:`ShotRun` describes a serial-crystallography run or a training set:
one base :class:`~bragg_core.experiment.Experiment` and, per shot, a crystal
orientation (uniform random rotations, or given matrices), and optionally
drawn crystal size ``N``, fluence, mosaic spread, detector distance and
central wavelength/bandwidth.  Every random number of shot ``k`` comes from
``numpy.random.SeedSequence(run.seed, spawn_key=(k, j))`` (the ``k``-th child
of the run's seed sequence, then one grandchild ``j`` per quantity), so shot
``k`` is the same whatever the number of workers, their order, or how many
other quantities vary.

:func:`shot_truth` draws a shot's ground truth, :func:`truth_experiment`
turns ground truth back into an experiment (re-rendering a shot from its
manifest row), :func:`render_shot` renders one shot, and
:func:`simulate_shots` renders many, on worker processes or a Dask cluster,
yielding results as they finish.  ``python -m bragg_core.shots CONFIG.toml``
writes a run to disk (see ``docs/shots.md``).

The code is split by concept: :mod:`~bragg_core.shots.distributions` (what a
field draws per shot), :mod:`~bragg_core.shots.rotations` (random rotations,
misset angles), :mod:`~bragg_core.shots.run` (the run, the shots' seeds and
ground truth), :mod:`~bragg_core.shots.execute` (rendering one shot or many),
:mod:`~bragg_core.shots.config` (a run's TOML file), :mod:`~bragg_core.shots.output`
(the output folder: shot files, manifest, NXmx stack) and
:mod:`~bragg_core.shots.cli` (the command).  Every name but those of the last
three is importable from ``bragg_core.shots`` itself.
"""

from __future__ import annotations

from .distributions import DISTRIBUTIONS as DISTRIBUTIONS  # outside __all__, as before
from .distributions import Choice, Integers, LogUniform, Normal, Uniform
from .execute import ShotResult, image_sha256, render_shot, render_truth, simulate_shots
from .rotations import misset_deg_to_rotation, random_rotations, rotation_to_misset_deg
from .run import VARIED as VARIED  # outside __all__, used by the command
from .run import (
    ShotRun,
    ShotTruth,
    shot_experiment,
    shot_orientations,
    shot_seed_sequence,
    shot_truth,
    truth_experiment,
)

__all__ = [
    "Uniform", "LogUniform", "Normal", "Integers", "Choice",
    "ShotRun", "ShotTruth", "ShotResult",
    "random_rotations", "rotation_to_misset_deg", "misset_deg_to_rotation",
    "shot_seed_sequence", "shot_orientations", "shot_truth", "truth_experiment", "shot_experiment",
    "render_shot", "render_truth", "simulate_shots", "image_sha256",
]
