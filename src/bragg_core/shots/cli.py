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

The configuration file is read in :mod:`~bragg_core.shots.config`, the output folder kept in
:mod:`~bragg_core.shots.output`; their names stay importable from here.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from .. import shots as S  # S.simulate_shots is looked up when called, on the package
from .config import DIST_KEYS as DIST_KEYS
from .config import RUN_KEYS as RUN_KEYS
from .config import SECTIONS as SECTIONS
from .config import ConfigError, _fingerprint, _load_toml, build_run
from .config import _dist as _dist
from .config import _part as _part
from .output import MANIFEST as MANIFEST
from .output import RUN_FILE as RUN_FILE
from .output import (
    _compact_manifest,
    _done_shots,
    check_nexus_stack,
    check_output_folder,
    write_nexus_stack,
    write_results,
    write_run_file,
)
from .output import _file_sha256 as _file_sha256
from .output import read_manifest as read_manifest
from .output import shot_file as shot_file

PROG = "bragg_core.shots"


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
    check_output_folder(out_dir, fp)
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
    write_run_file(out_dir, fp, cfg, shape)
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
