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
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from ..experiment import Experiment, ExperimentError

__all__ = [
    "Uniform", "LogUniform", "Normal", "Integers", "Choice",
    "ShotRun", "ShotTruth", "ShotResult",
    "random_rotations", "rotation_to_misset_deg", "misset_deg_to_rotation",
    "shot_seed_sequence", "shot_orientations", "shot_truth", "truth_experiment", "shot_experiment",
    "render_shot", "render_truth", "simulate_shots", "image_sha256",
]


# ----------------------------------------------------------------------------
# per-shot distributions
# ----------------------------------------------------------------------------


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

# the spawn-key slot of each quantity: never reorder (it would change every run's shots)
_STREAM = {"orientation": 0, "N_cells": 1, "fluence_photons_per_m2": 2, "mosaic_spread_deg": 3,
           "mosaic_seed": 4, "distance_mm": 5, "wavelength_A": 6, "dispersion_percent": 7, "noise": 8}

VARIED = ("N_cells", "fluence_photons_per_m2", "mosaic_spread_deg", "distance_mm", "wavelength_A",
          "dispersion_percent")


# ----------------------------------------------------------------------------
# rotations
# ----------------------------------------------------------------------------


def _quaternions_to_matrices(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    m = np.empty((q.shape[0], 3, 3))
    m[:, 0, 0] = 1 - 2 * (y * y + z * z)
    m[:, 0, 1] = 2 * (x * y - z * w)
    m[:, 0, 2] = 2 * (x * z + y * w)
    m[:, 1, 0] = 2 * (x * y + z * w)
    m[:, 1, 1] = 1 - 2 * (x * x + z * z)
    m[:, 1, 2] = 2 * (y * z - x * w)
    m[:, 2, 0] = 2 * (x * z - y * w)
    m[:, 2, 1] = 2 * (y * z + x * w)
    m[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices ``(n, 3, 3)`` uniform on SO(3) (Haar measure), float64.

    Uniform unit quaternions from three uniform deviates each (Shoemake, 1992),
    then the usual quaternion-to-matrix formula.
    """
    u = rng.random((n, 3))
    a, b = np.sqrt(1.0 - u[:, 0]), np.sqrt(u[:, 0])
    t1, t2 = 2 * np.pi * u[:, 1], 2 * np.pi * u[:, 2]
    q = np.stack([b * np.cos(t2), a * np.sin(t1), a * np.cos(t1), b * np.sin(t2)], axis=1)
    return _quaternions_to_matrices(q)


def misset_deg_to_rotation(angles_deg) -> np.ndarray:
    """The matrix ``Rz @ Ry @ Rx`` of a misset (rotation about x, then y, then z, in degrees)."""
    ax, ay, az = (math.radians(float(v)) for v in angles_deg)
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotation_to_misset_deg(u) -> tuple[float, float, float]:
    """Misset angles (degrees, about x then y then z) of a rotation matrix: the inverse of
    :func:`misset_deg_to_rotation` (away from the measure-zero case |u[2, 0]| = 1)."""
    u = np.asarray(u, dtype=np.float64)
    rx = math.atan2(u[2, 1], u[2, 2])
    ry = math.atan2(-u[2, 0], math.hypot(u[2, 1], u[2, 2]))
    rz = math.atan2(u[1, 0], u[0, 0])
    return (math.degrees(rx), math.degrees(ry), math.degrees(rz))


def _check_rotations(mats, where: str) -> np.ndarray:
    try:
        m = np.asarray(mats, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExperimentError(f"{where} must be an array of 3x3 rotation matrices") from None
    if m.ndim != 3 or m.shape[1:] != (3, 3) or m.shape[0] < 1:
        raise ExperimentError(f"{where} must have shape (n, 3, 3), got {m.shape}")
    if not np.isfinite(m).all():
        raise ExperimentError(f"{where} must be finite")
    eye = np.einsum("nij,nkj->nik", m, m) - np.eye(3)
    bad = np.flatnonzero((np.abs(eye).max(axis=(1, 2)) > 1e-6) | (np.linalg.det(m) < 0))
    if bad.size:
        raise ExperimentError(f"{where}[{int(bad[0])}] is not a proper rotation (orthonormal, determinant +1)")
    return m


# ----------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------


@dataclass
class ShotResult:
    """One shot: its index, its image (NumPy float32, (slow, fast)) and ground truth; or the error that
    stopped it (``image`` is then None)."""

    index: int
    image: Optional[np.ndarray]
    truth: Optional[ShotTruth]
    error: Optional[str] = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def sha256(self) -> str:
        return image_sha256(self.image)


def image_sha256(image) -> str:
    """sha256 of the image as stored on disk (little-endian float32, row after row)."""
    return hashlib.sha256(np.ascontiguousarray(image, dtype="<f4").tobytes()).hexdigest()


def render_truth(base: Experiment, truth: ShotTruth, *, backend: str = "numpy", device: Any = None,
                 dtype: Any = "float64") -> np.ndarray:
    """Render a shot from the base experiment and its ground truth: a NumPy float32 image."""
    from .._backend import enable_float64, to_numpy
    from ..simulate import simulate

    enable_float64(backend, dtype)
    sim = simulate(truth_experiment(base, truth), backend=backend, device=device, dtype=dtype,
                   store_dtype=np.float32)
    image = np.asarray(to_numpy(sim.image), dtype=np.float32)
    if truth.noise_seed is not None:
        from ..noise import poisson_deviates

        rng = np.random.Generator(np.random.PCG64(int(truth.noise_seed)))
        image = poisson_deviates(image.astype(np.float64), rng).astype(np.float32).reshape(image.shape)
    return image


def render_shot(run: ShotRun, index: int, *, backend: str = "numpy", device: Any = None,
                dtype: Any = "float64") -> ShotResult:
    """Render shot ``index`` of ``run`` here, in this process."""
    truth = shot_truth(run, index)
    image = render_truth(run.base, truth, backend=backend, device=device, dtype=dtype)
    return ShotResult(index=int(index), image=image, truth=truth)


# worker-side state of a process pool: the run arrives once, with the pool, not with every task
_WORKER: dict = {}


def _init_worker(run, render, options, threads):
    if threads is not None:
        os.environ["BRAGG_CORE_THREADS"] = str(threads)
    _WORKER.update(run=run, render=render, options=options)


def _pool_task(index: int) -> ShotResult:
    return _WORKER["render"](_WORKER["run"], index, **_WORKER["options"])


def _dask_task(run, index, render, options, threads):
    if threads is not None:
        os.environ["BRAGG_CORE_THREADS"] = str(threads)
    return render(run, index, **options)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def simulate_shots(run: ShotRun, indices: Optional[Sequence[int]] = None, *, workers: int = 1,
                   backend: str = "numpy", device: Any = None, dtype: Any = "float64",
                   client: Any = None, retries: int = 1, max_in_flight: Optional[int] = None,
                   render: Callable[..., ShotResult] = render_shot) -> Iterator[ShotResult]:
    """Render the shots ``indices`` (default: all) and yield a :class:`ShotResult` for each as it finishes.

    ``workers=1`` renders here, in order; ``workers=N`` on N worker processes
    (each renders whole shots, one tile worker each); ``client`` (a
    ``dask.distributed.Client``) on that cluster: the run is scattered to the
    workers once, the tasks carry only shot indices.  At most
    ``max_in_flight`` shots (default 2 per worker) are pending at a time, so
    images never pile up.  A shot that raises is tried again ``retries``
    times; if it still fails, its result has ``error`` set and ``image`` None
    (it is never silently missing).  ``render(run, index, backend=, device=,
    dtype=)`` renders one shot (default :func:`render_shot`); with workers or
    a cluster it must be picklable (a module-level function).  Images are
    identical whatever ``workers`` or ``client``.
    """
    idx = list(range(run.n_shots)) if indices is None else [int(i) for i in indices]
    for i in idx:
        if not 0 <= i < run.n_shots:
            raise IndexError(f"shot index {i} is outside 0..{run.n_shots - 1}")
    options = {"backend": backend, "device": device, "dtype": dtype}
    if client is not None:
        yield from _on_dask(run, idx, client, render, options, retries, max_in_flight)
    elif workers <= 1:
        for i in idx:
            yield _attempt_here(run, i, render, options, retries)
    else:
        yield from _on_pool(run, idx, workers, render, options, retries, max_in_flight)


def _attempt_here(run, i, render, options, retries) -> ShotResult:
    err = None
    for attempt in range(1, retries + 2):
        try:
            res = render(run, i, **options)
            res.attempts = attempt
            return res
        except Exception as exc:  # reported by index, with the reason
            err = _describe(exc)
    return ShotResult(index=i, image=None, truth=None, error=err, attempts=retries + 1)


def _on_pool(run, idx, workers, render, options, retries, max_in_flight):
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    window = max_in_flight or 2 * workers
    # fork where the platform has it (as the engine's tile workers do): no re-import, no __main__ guard
    from ..engine.parallel import fork_available

    # fork where it is safe (no other thread, no JAX runtime in this process); a fresh interpreter otherwise
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() and fork_available(ignore_env=True) \
        else "spawn"
    ctx = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(run, render, options, 1)) as pool:
        todo = list(reversed(idx))
        pending = {}
        tries: dict[int, int] = {}

        broken: list[int] = []

        def submit(i):
            tries[i] = tries.get(i, 0) + 1
            try:
                pending[pool.submit(_pool_task, i)] = i
            except BrokenProcessPool:  # a worker died (killed, out of memory): no more shots here
                broken.append(i)

        while todo or pending:
            while todo and len(pending) < window:
                submit(todo.pop())
            for i in broken:
                yield ShotResult(index=i, image=None, truth=None, attempts=tries[i],
                                 error="BrokenProcessPool: a worker process died")
            broken.clear()
            if not pending:
                continue
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                exc = fut.exception()
                if exc is None:
                    res = fut.result()
                    res.attempts = tries[i]
                    yield res
                elif tries[i] <= retries and not isinstance(exc, BrokenProcessPool):
                    submit(i)
                else:
                    yield ShotResult(index=i, image=None, truth=None, error=_describe(exc), attempts=tries[i])


def _on_dask(run, idx, client, render, options, retries, max_in_flight):
    from distributed import as_completed

    nworkers = max(1, len(client.scheduler_info().get("workers", {})))
    window = max_in_flight or 2 * nworkers
    [run_f] = client.scatter([run], broadcast=True)
    threads = 1 if getattr(client, "_bragg_local", False) else None
    todo = list(reversed(idx))
    index_of = {}

    def submit():
        i = todo.pop()
        f = client.submit(_dask_task, run_f, i, render, options, threads, pure=False, retries=retries,
                          key=f"bragg-shot-{i}-{os.urandom(4).hex()}")
        index_of[f.key] = i
        return f

    first = [submit() for _ in range(min(window, len(todo)))]
    stream = as_completed(first)
    for fut in stream:
        i = index_of.pop(fut.key)
        if fut.status == "finished":
            res = fut.result()
            yield res
        else:
            try:
                exc = fut.exception()
            except Exception as e:  # a lost worker, a cancelled task
                exc = e
            yield ShotResult(index=i, image=None, truth=None, error=_describe(exc), attempts=retries + 1)
        fut.release()
        if todo:
            stream.add(submit())
