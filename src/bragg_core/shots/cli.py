"""``python -m bragg_core.shots CONFIG.toml``: write a run of shots to disk, resumably.

One little-endian float32 file per shot (``shot_000042.f32``, (slow, fast)
row after row), ``manifest.jsonl`` (one JSON object per shot: file, sha256 of
the file's bytes, image shape and the shot's ground truth) and ``run.json``
(the configuration and its fingerprint).  Each image is written atomically
and its manifest row appended after it; a run started again over the same
output skips every shot whose file's sha256 matches its row and whose row
matches the ground truth drawn again (content, not names).  The whole
configuration is checked before anything is written; a bad value is one
line naming the key, exit status 2.  Exit status 1 lists the shots that
failed twice.  With ``--nexus FILE.nxs`` (or ``[run] nexus``), once every
shot is written the run is also gathered into one NXmx file of stills, in
shot order, each with its own wavelength (the per-shot files stay the
resumable store; the NXmx file is written atomically from them, one image
at a time).  See ``docs/shots.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import sys
import time
from dataclasses import fields
from typing import Any

import numpy as np

from .. import shots as S
from ..experiment import Beam, Crystal, Detector, Experiment, ExperimentError

PROG = "bragg_core.shots"
MANIFEST = "manifest.jsonl"
RUN_FILE = "run.json"
SECTIONS = ("run", "experiment", "beam", "detector", "crystal", "vary")
RUN_KEYS = ("shots", "seed", "output", "backend", "dtype", "noise", "orientation", "nexus")
DIST_KEYS = {"uniform": S.Uniform, "log_uniform": S.LogUniform, "normal": S.Normal, "integers": S.Integers,
             "choice": S.Choice}


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
        return S.Choice(tuple(tuple(a) if isinstance(a, list) else a for a in args))
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


def build_run(cfg: dict, cfg_dir: str = ".") -> tuple[S.ShotRun, dict]:
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
        if k not in S.VARIED:
            raise ConfigError(f"[vary] {k}: unknown key (known: {', '.join(S.VARIED)})")
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
        shot_run = S.ShotRun(base=base, n_shots=run["shots"], seed=run.get("seed", 0), orientation=orientation,
                             noise=run.get("noise", False), **vary)
    except ExperimentError as exc:
        msg = str(exc)
        for name in ("n_shots", "seed", "noise", "orientation"):
            msg = msg.replace(f"ShotRun.{name}", "[run] " + {"n_shots": "shots"}.get(name, name))
        for name in S.VARIED:
            msg = msg.replace(f"ShotRun.{name}", f"[vary] {name}")
        raise ConfigError(msg) from None
    return shot_run, {"output": os.path.join(cfg_dir, output), "backend": backend, "dtype": dtype,
                      "nexus": None if nexus is None else os.path.join(cfg_dir, nexus)}


def check_nexus_stack(shot_run: S.ShotRun, path: str, where: str) -> None:
    """Refuse, before any work, a stack that one NXmx file cannot describe (``where`` names the option)."""
    if shot_run.distance_mm is not None:
        raise ConfigError(f"{where}: the run varies distance_mm, and one NXmx file holds one detector "
                          "position; write the per-shot files only")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"{where}: folder {folder} does not exist")
    try:
        import h5py  # noqa: F401
    except ImportError:
        raise ConfigError(f"{where}: writing NXmx needs h5py (pip install 'bragg_core[formats]')") from None


def write_nexus_stack(shot_run: S.ShotRun, out_dir: str, path: str, shape) -> None:
    """Gather the written shots into one NXmx file of stills, in shot order (one image in memory at a time)."""
    from ..io.nexus import NexusWriter

    rows = read_manifest(out_dir)
    n = shot_run.n_shots
    with NexusWriter(path, shot_run.base, n_images=n, rotation=False, dtype="float32") as w:
        for i in range(n):  # over shots: each read from its file and appended
            row = rows[i]
            img = np.fromfile(os.path.join(out_dir, row["file"]), dtype="<f4").reshape(shape)
            w.append(img, wavelength_A=row.get("wavelength_A"))


def _fingerprint(cfg: dict, shot_run: S.ShotRun) -> str:
    """What decides the images: the configuration less the output folder, plus given orientations."""
    c = json.loads(json.dumps(cfg, default=str))
    c.get("run", {}).pop("output", None)
    h = hashlib.sha256(json.dumps(c, sort_keys=True).encode())
    if not isinstance(shot_run.orientation, str):
        h.update(np.ascontiguousarray(shot_run.orientation, dtype="<f8").tobytes())
    return h.hexdigest()


def shot_file(index: int) -> str:
    return f"shot_{index:06d}.f32"


def read_manifest(out_dir: str) -> dict[int, dict]:
    """The manifest's rows by shot index (a later row wins; a torn last line is ignored)."""
    rows: dict[int, dict] = {}
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        return rows
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
                rows[int(row["index"])] = row
            except (ValueError, KeyError, TypeError):
                continue
    return rows


def _file_sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


def _done_shots(out_dir: str, shot_run: S.ShotRun) -> dict[int, dict]:
    """Rows of shots already written whose file content and ground truth match."""
    good = {}
    for i, row in read_manifest(out_dir).items():
        if not 0 <= i < shot_run.n_shots:
            continue
        if _file_sha256(os.path.join(out_dir, row.get("file", ""))) != row.get("sha256"):
            continue
        truth = S.shot_truth(shot_run, i).to_dict()
        if any(row.get(k) != v for k, v in json.loads(json.dumps(truth)).items()):
            continue
        good[i] = row
    return good


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Shots done, shots/s and ETA on stderr: one rewritten line on a terminal, a line every few seconds
    otherwise."""

    def __init__(self, total: int, skipped: int, quiet: bool):
        self.total, self.skipped, self.quiet = total, skipped, quiet
        self.done = 0
        self.t0 = time.monotonic()
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def update(self, final: bool = False):
        self.done += 0 if final else 1
        if self.quiet:
            return
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        el = now - self.t0
        rate = self.done / el if el > 0 else 0.0
        left = self.total - self.skipped - self.done
        eta = left / rate if rate > 0 else math.inf
        line = (f"{self.skipped + self.done}/{self.total} shots ({self.skipped} already written)  "
                f"{rate:.2f} shots/s  ETA {_eta(eta)}")
        end = "\n" if final or not self.tty else ""
        sys.stderr.write(("\r" if self.tty else "") + line + end)
        sys.stderr.flush()


def run_config(config: str, *, workers: int = 1, dask: bool = False, scheduler: str | None = None,
               output: str | None = None, quiet: bool = False, retries: int = 1, nexus: str | None = None) -> int:
    cfg = _load_toml(config)
    shot_run, opts = build_run(cfg, os.path.dirname(os.path.abspath(config)))
    out_dir = output or opts["output"]
    nexus_path = nexus or opts["nexus"]
    if nexus_path is not None:
        check_nexus_stack(shot_run, nexus_path, "--nexus" if nexus else "[run] nexus")
    fp = _fingerprint(cfg, shot_run)
    run_path = os.path.join(out_dir, RUN_FILE)
    if os.path.exists(run_path):
        try:
            with open(run_path, encoding="utf-8") as fh:
                old = json.load(fh).get("fingerprint")
        except (OSError, ValueError):
            old = None
        if old != fp:
            raise ConfigError(f"[run] output: {out_dir} holds a different run ({RUN_FILE} does not match this "
                              "configuration); choose another output folder")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"[run] output: {out_dir} exists and is not a folder")
    client = None
    cluster = None
    if dask or scheduler:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--dask/--scheduler need dask.distributed (pip install 'bragg_core[distributed]')"
                              ) from None
    shape = [shot_run.base.detector.spixels, shot_run.base.detector.fpixels]
    done = _done_shots(out_dir, shot_run) if os.path.isdir(out_dir) else {}
    todo = [i for i in range(shot_run.n_shots) if i not in done]

    os.makedirs(out_dir, exist_ok=True)
    if not os.path.exists(run_path):
        from ..io.atomic import atomic_write

        doc = {"fingerprint": fp, "config": json.loads(json.dumps(cfg, default=str)), "shape": shape,
               "dtype": "<f4", "files": "shot_NNNNNN.f32 (slow, fast), row after row"}
        atomic_write(run_path, (json.dumps(doc, indent=1) + "\n").encode())
    failed: list[S.ShotResult] = []
    try:
        if dask or scheduler:
            if scheduler:
                client = Client(scheduler)
            else:
                cluster = LocalCluster(n_workers=max(workers, 2) if workers > 1 else 2, threads_per_worker=1,
                                       processes=True, dashboard_address=None)
                client = Client(cluster)
                client._bragg_local = True
        progress = Progress(shot_run.n_shots, len(done), quiet)
        results = S.simulate_shots(shot_run, todo, workers=workers, backend=opts["backend"],
                                   dtype=opts["dtype"], client=client, retries=retries)
        write_results(out_dir, results, shape, failed, progress)
        progress.update(final=True)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    if failed:
        by_error: dict[str, list[int]] = {}
        for r in sorted(failed, key=lambda r: r.index):
            by_error.setdefault(r.error or "unknown error", []).append(r.index)
        sys.stderr.write(f"{PROG}: {len(failed)} shot(s) failed after {retries + 1} tries; run the command "
                         "again to retry them: "
                         + "; ".join(f"shot{'s' if len(ix) > 1 else ''} {', '.join(map(str, ix))}: {err}"
                                     for err, ix in by_error.items()) + "\n")
        return 1
    _compact_manifest(out_dir)
    if nexus_path is not None:
        from ..io.atomic import OutputError

        try:
            write_nexus_stack(shot_run, out_dir, nexus_path, shape)
        except OutputError as exc:
            sys.stderr.write(f"{PROG}: {exc}\n")
            return 1
    return 0


def write_results(out_dir, results, shape, failed, progress=None):
    """Write each finished shot (image atomically, then its manifest row) as it arrives."""
    from ..io.atomic import atomic_write

    with open(os.path.join(out_dir, MANIFEST), "a", encoding="utf-8") as man:
        for res in results:
            if not res.ok:
                failed.append(res)
                continue
            data = np.ascontiguousarray(res.image, dtype="<f4").tobytes()
            name = shot_file(res.index)
            atomic_write(os.path.join(out_dir, name), data)
            row = {"index": res.index, "file": name, "sha256": hashlib.sha256(data).hexdigest(),
                   "shape": shape, **res.truth.to_dict()}
            man.write(json.dumps(row) + "\n")
            man.flush()
            os.fsync(man.fileno())
            if progress is not None:
                progress.update()


def _compact_manifest(out_dir: str) -> None:
    """Once every shot is written: one row per shot, in index order (written atomically)."""
    from ..io.atomic import atomic_write

    rows = read_manifest(out_dir)
    text = "".join(json.dumps(rows[i]) + "\n" for i in sorted(rows))
    atomic_write(os.path.join(out_dir, MANIFEST), text.encode())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {PROG}",
                                description="Render a run of shots described by a TOML file.")
    p.add_argument("config", help="the run's TOML file (see docs/shots.md)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dask", action="store_true", help="a Dask LocalCluster on this machine (2 processes, "
                   "or --workers)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler (tcp://host:8786)")
    p.add_argument("--output", metavar="DIR", help="output folder (default: [run] output)")
    p.add_argument("--retries", type=int, default=1, help="tries again of a failed shot (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--nexus", metavar="FILE.nxs", help="also gather the shots into one NXmx file of stills "
                   "(default: [run] nexus)")
    a = p.parse_args(argv)
    if a.workers < 1:
        p.error("--workers must be at least 1")
    if a.retries < 0:
        p.error("--retries must not be negative")
    try:
        return run_config(a.config, workers=a.workers, dask=a.dask, scheduler=a.scheduler, output=a.output,
                          quiet=a.quiet, retries=a.retries, nexus=a.nexus)
    except ConfigError as exc:
        sys.stderr.write(f"{PROG}: {a.config}: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{PROG}: stopped; run the same command again to resume\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
