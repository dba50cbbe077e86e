"""A run's configuration file: reading the TOML (:func:`_load_toml`), turning its tables into a
:class:`~bragg_core.shots.ShotRun` and the run options (:func:`build_run`), and the fingerprint of what decides
the images (:func:`_fingerprint`).  Every bad value is a :class:`ConfigError` whose message names the key."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import fields
from typing import Any

import numpy as np

from ..experiment import Beam, Crystal, Detector, Experiment, ExperimentError
from .distributions import Choice, Integers, LogUniform, Normal, Uniform
from .run import VARIED, ShotRun

SECTIONS = ("run", "experiment", "beam", "detector", "crystal", "vary")
RUN_KEYS = ("shots", "seed", "output", "backend", "dtype", "noise", "orientation", "nexus")
DIST_KEYS = {"uniform": Uniform, "log_uniform": LogUniform, "normal": Normal, "integers": Integers,
             "choice": Choice}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


def _load_toml(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError("reading TOML needs Python 3.11 or the tomli package (pip install tomli)") from None
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _dist(key: str, v: Any):
    where = f"[vary] {key}"
    if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in DIST_KEYS:
        raise ConfigError(f"{where} must be a table with one of {', '.join(DIST_KEYS)}, "
                          f"e.g. {{uniform = [90, 110]}}; got {v!r}")
    kind, args = next(iter(v.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: choice needs a non-empty list of values, got {args!r}")
        return Choice(tuple(tuple(a) if isinstance(a, list) else a for a in args))
    if not isinstance(args, list) or len(args) != 2:
        raise ConfigError(f"{where}: {kind} needs two numbers, got {args!r}")
    return DIST_KEYS[kind](*args)


def _part(cls, table: dict, section: str, base):
    known = {f.name for f in fields(cls)}
    for k in table:
        if k not in known:
            raise ConfigError(f"[{section}] {k}: unknown key ({cls.__name__} has no field {k!r})")
    vals = {k: (tuple(v) if isinstance(v, list) else v) for k, v in table.items()}
    try:
        from dataclasses import replace

        return replace(base, **vals)
    except ExperimentError as exc:
        raise ConfigError(f"[{section}] {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"[{section}] {exc}") from None


def build_run(cfg: dict, cfg_dir: str = ".") -> tuple[ShotRun, dict]:
    """The ShotRun a configuration describes, and the run options (output, backend, dtype)."""
    for sec in cfg:
        if sec not in SECTIONS:
            raise ConfigError(f"[{sec}]: unknown section (known: {', '.join(SECTIONS)})")
        if not isinstance(cfg[sec], dict):
            raise ConfigError(f"{sec}: must be a table ([{sec}])")
    run = cfg.get("run", {})
    for k in run:
        if k not in RUN_KEYS:
            raise ConfigError(f"[run] {k}: unknown key (known: {', '.join(RUN_KEYS)})")
    if "shots" not in run:
        raise ConfigError("[run] shots: required (the number of shots)")
    exp_tab = cfg.get("experiment", {})
    for k in exp_tab:
        if k != "args":
            raise ConfigError(f"[experiment] {k}: unknown key (known: args)")
    if "args" in exp_tab:
        from ..cli.args import build_config, parse_args
        from ..cli.validate import UsageError

        args = exp_tab["args"]
        if not isinstance(args, str):
            raise ConfigError(f"[experiment] args must be a string of reference-style flags, got {args!r}")
        try:
            base = build_config(parse_args(shlex.split(args)), cfg_dir).experiment
        except (UsageError, ExperimentError, OSError, ValueError) as exc:
            raise ConfigError(f"[experiment] args: {exc}") from None
    else:
        if "cell_A_deg" not in cfg.get("crystal", {}) and "reciprocal_vectors_per_A" not in cfg.get("crystal", {}):
            raise ConfigError("[crystal] cell_A_deg: required when [experiment] args is not given")
        base = Experiment(crystal=Crystal(cell_A_deg=(100, 100, 100, 90, 90, 90)))
    beam = _part(Beam, cfg.get("beam", {}), "beam", base.beam)
    det = _part(Detector, cfg.get("detector", {}), "detector", base.detector)
    cr = _part(Crystal, cfg.get("crystal", {}), "crystal", base.crystal)
    base = Experiment(beam=beam, detector=det, crystal=cr)

    vary = {}
    for k, v in cfg.get("vary", {}).items():
        if k not in VARIED:
            raise ConfigError(f"[vary] {k}: unknown key (known: {', '.join(VARIED)})")
        vary[k] = _dist(k, v)

    orientation: Any = run.get("orientation", "random")
    if isinstance(orientation, str) and orientation not in ("random", "fixed"):
        path = os.path.join(cfg_dir, orientation)
        try:
            orientation = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"[run] orientation: cannot read {orientation!r} as a .npy array of "
                              f"(shots, 3, 3) rotation matrices: {exc}") from None
    for k in ("shots", "seed"):
        if k in run and (isinstance(run[k], bool) or not isinstance(run[k], int)):
            raise ConfigError(f"[run] {k} must be an integer, got {run[k]!r}")
    backend = run.get("backend", "numpy")
    dtype = run.get("dtype", "float64")
    if backend not in ("numpy", "torch", "jax", "cupy", "dask", "array_api_strict"):
        raise ConfigError(f"[run] backend: unknown backend {backend!r}")
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"[run] dtype must be float32 or float64, got {dtype!r}")
    from .._backend import BackendError, enable_float64, get_context

    try:
        enable_float64(backend, dtype)  # as each shot's render does
        get_context(backend=backend, dtype=dtype)  # installed and usable here
    except BackendError as exc:
        raise ConfigError(f"[run] backend: {exc}") from None
    output = run.get("output", "shots")
    if not isinstance(output, str) or not output:
        raise ConfigError(f"[run] output must be a folder name, got {output!r}")
    nexus = run.get("nexus")
    if nexus is not None and (not isinstance(nexus, str) or not nexus):
        raise ConfigError(f"[run] nexus must be a file name, got {nexus!r}")
    try:
        shot_run = ShotRun(base=base, n_shots=run["shots"], seed=run.get("seed", 0), orientation=orientation,
                             noise=run.get("noise", False), **vary)
    except ExperimentError as exc:
        msg = str(exc)
        for name in ("n_shots", "seed", "noise", "orientation"):
            msg = msg.replace(f"ShotRun.{name}", "[run] " + {"n_shots": "shots"}.get(name, name))
        for name in VARIED:
            msg = msg.replace(f"ShotRun.{name}", f"[vary] {name}")
        raise ConfigError(msg) from None
    return shot_run, {"output": os.path.join(cfg_dir, output), "backend": backend, "dtype": dtype,
                      "nexus": None if nexus is None else os.path.join(cfg_dir, nexus)}


def _fingerprint(cfg: dict, shot_run: ShotRun) -> str:
    """What decides the images: the configuration less the output folder, plus given orientations."""
    c = json.loads(json.dumps(cfg, default=str))
    c.get("run", {}).pop("output", None)
    h = hashlib.sha256(json.dumps(c, sort_keys=True).encode())
    if not isinstance(shot_run.orientation, str):
        h.update(np.ascontiguousarray(shot_run.orientation, dtype="<f8").tobytes())
    return h.hexdigest()
