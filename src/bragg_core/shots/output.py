"""The output folder of a run: ``run.json`` (the configuration and its fingerprint), one little-endian float32
file per shot (:func:`shot_file`), ``manifest.jsonl`` (a row per shot: file, sha256 of its bytes, shape and
ground truth), the shots already written (:func:`_done_shots`, by content, not names), writing results as they
arrive, and gathering the shots into one NXmx stack."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .. import shots as S  # S.shot_truth is looked up when called, on the package
from .config import ConfigError

MANIFEST = "manifest.jsonl"
RUN_FILE = "run.json"


def check_output_folder(out_dir: str, fingerprint: str) -> None:
    """Refuse, before any work, an output folder that holds a different run, or a file in its place."""
    run_path = os.path.join(out_dir, RUN_FILE)
    if os.path.exists(run_path):
        try:
            with open(run_path, encoding="utf-8") as fh:
                old = json.load(fh).get("fingerprint")
        except (OSError, ValueError):
            old = None
        if old != fingerprint:
            raise ConfigError(f"[run] output: {out_dir} holds a different run ({RUN_FILE} does not match this "
                              "configuration); choose another output folder")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"[run] output: {out_dir} exists and is not a folder")


def write_run_file(out_dir: str, fingerprint: str, cfg: dict, shape) -> None:
    """Write ``run.json`` atomically, unless the folder has one already (a resumed run keeps it)."""
    run_path = os.path.join(out_dir, RUN_FILE)
    if not os.path.exists(run_path):
        from ..io.atomic import atomic_write

        doc = {"fingerprint": fingerprint, "config": json.loads(json.dumps(cfg, default=str)), "shape": shape,
               "dtype": "<f4", "files": "shot_NNNNNN.f32 (slow, fast), row after row"}
        atomic_write(run_path, (json.dumps(doc, indent=1) + "\n").encode())


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
