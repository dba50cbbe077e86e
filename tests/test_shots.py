"""Many shots (bragg_core.shots): reproducible shot by shot, resumable, uniform orientations, failures reported."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bragg_core.experiment import Beam, Crystal, Detector, Experiment, ExperimentError
from bragg_core.shots import (
    Choice,
    Integers,
    LogUniform,
    ShotResult,
    ShotRun,
    ShotTruth,
    Uniform,
    misset_deg_to_rotation,
    random_rotations,
    render_shot,
    render_truth,
    rotation_to_misset_deg,
    shot_orientations,
    shot_truth,
    simulate_shots,
)
from bragg_core.shots.cli import read_manifest

BASE = Experiment(
    beam=Beam(wavelength_A=1.0),
    detector=Detector(fpixels=20, spixels=16, pixel_size_mm=0.4, distance_mm=60.0),
    crystal=Crystal(cell_A_deg=(40, 40, 40, 90, 90, 90), N_cells=(3, 3, 3), default_F=100.0,
                    mosaic_spread_deg=0.5, mosaic_domains=3),
)


def _run(n=6, **kw):
    kw.setdefault("N_cells", Integers(2, 4))
    kw.setdefault("fluence_photons_per_m2", LogUniform(1e23, 1e24))
    kw.setdefault("distance_mm", Uniform(55.0, 65.0))
    kw.setdefault("mosaic_spread_deg", Uniform(0.1, 0.5))
    return ShotRun(BASE, n_shots=n, seed=2024, **kw)


@pytest.fixture(scope="module")
def serial():
    run = _run()
    return run, {r.index: r for r in simulate_shots(run)}


def _same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].ok and b[k].ok, (a[k].error, b[k].error)
        assert a[k].truth == b[k].truth
        assert np.array_equal(a[k].image, b[k].image), f"shot {k} differs"


def test_shots_differ_and_are_not_empty(serial):
    run, res = serial
    imgs = [res[k].image for k in sorted(res)]
    assert all(i.shape == (16, 20) and i.dtype == np.float32 and i.max() > 0 for i in imgs)
    assert len({i.tobytes() for i in imgs}) == len(imgs)
    assert len({res[k].truth.N_cells for k in res}) > 1
    # shot k does not depend on which other shots are asked for, nor their order
    again = {r.index: r for r in simulate_shots(run, indices=[4, 1])}
    _same({k: res[k] for k in (1, 4)}, again)


def test_two_workers_identical(serial):
    run, res = serial
    _same(res, {r.index: r for r in simulate_shots(run, workers=2)})


def test_local_cluster_identical(serial):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    run, res = serial
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        got = {r.index: r for r in simulate_shots(run, client=client)}
        assert len(client.scheduler_info()["workers"]) == 2
    _same(res, got)


def test_rerender_from_truth_row(serial):
    run, res = serial
    for r in res.values():
        row = json.loads(json.dumps(r.truth.to_dict()))  # as a manifest row holds it
        img = render_truth(run.base, ShotTruth.from_dict(row))
        assert np.array_equal(img, r.image)
        # the orientation recorded is the one rendered: misset angles and matrix agree
        assert np.allclose(misset_deg_to_rotation(r.truth.misset_deg), r.truth.orientation_matrix, atol=1e-12)


def test_given_orientations_and_fixed():
    mats = random_rotations(3, np.random.default_rng(5))
    run = ShotRun(BASE, n_shots=3, seed=1, orientation=mats)
    for k in range(3):
        t = shot_truth(run, k)
        assert np.allclose(t.orientation_matrix, mats[k], atol=1e-15)
        assert np.allclose(misset_deg_to_rotation(t.misset_deg), mats[k], atol=1e-12)
    fixed = ShotRun(BASE.replace(crystal__misset_deg=(10.0, 20.0, 30.0)), n_shots=2, orientation="fixed")
    assert shot_truth(fixed, 1).misset_deg == (10.0, 20.0, 30.0)
    with pytest.raises(ExperimentError, match="orientation"):
        ShotRun(BASE, n_shots=3, orientation=mats * 2.0)
    with pytest.raises(ExperimentError, match="orientation holds 3 matrices for 4 shots"):
        ShotRun(BASE, n_shots=4, orientation=mats)
    with pytest.raises(ExperimentError, match="distance_mm"):
        ShotRun(BASE, n_shots=2, distance_mm=Uniform(-1.0, 5.0))
    with pytest.raises(ExperimentError, match="N_cells"):
        ShotRun(BASE, n_shots=2, N_cells=Uniform(1.0, 5.0))


def test_noise_is_per_shot_and_reproducible():
    run = ShotRun(BASE, n_shots=3, seed=9, noise=True, fluence_photons_per_m2=Choice((1e24,)))
    a = render_shot(run, 2)
    b = render_shot(run, 2)
    assert a.truth.noise_seed is not None and np.array_equal(a.image, b.image)
    assert np.array_equal(a.image, np.round(a.image)) and a.image.min() >= 0


# -------------------------------------------------------------------- orientations: uniform on SO(3)

def _ks_p(sample: np.ndarray, cdf) -> float:
    """Kolmogorov-Smirnov p-value (asymptotic distribution) of ``sample`` against ``cdf``."""
    x = np.sort(sample)
    n = x.size
    f = cdf(x)
    d = max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    k = np.arange(1, 101)
    return float(min(1.0, max(0.0, 2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * k * k * lam * lam)))))


def _so3_pvalues(mats: np.ndarray) -> list[float]:
    """p-values of four KS tests against the Haar measure: rotation angle w with density (1 - cos w)/pi,
    i.e. CDF (w - sin w)/pi; and the rotated z and x axes uniform on the sphere (cos theta uniform on
    [-1, 1], azimuth uniform on [0, 2 pi))."""
    tr = np.trace(mats, axis1=1, axis2=2)
    w = np.arccos(np.clip((tr - 1) / 2, -1, 1))
    ps = [_ks_p(w, lambda t: (t - np.sin(t)) / np.pi)]
    for col in (2, 0):
        v = mats[:, :, col]
        ps.append(_ks_p(v[:, 2], lambda z: (z + 1) / 2))
        ps.append(_ks_p(np.arctan2(v[:, 1], v[:, 0]) % (2 * np.pi), lambda p: p / (2 * np.pi)))
    return ps


ALPHA = 1e-4  # false-alarm rate of each KS test below (five tests: at most 5e-4 for a correct sampler)


def test_random_orientations_uniform_on_so3():
    run = ShotRun(BASE, n_shots=20000, seed=77)
    mats = shot_orientations(run)  # one stream per shot, as the shots draw them
    for k in (0, 7, 19999):
        assert np.array_equal(shot_truth(run, k).orientation_matrix, mats[k])
    assert np.allclose(np.einsum("nij,nkj->nik", mats, mats), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(mats), 1.0)
    ps = _so3_pvalues(mats)
    assert min(ps) > ALPHA, ps
    # the misset angles handed to the renderer describe the same rotations
    back = np.stack([misset_deg_to_rotation(rotation_to_misset_deg(m)) for m in mats[:500]])
    assert np.allclose(back, mats[:500], atol=1e-12)


def test_so3_test_rejects_uniform_euler_angles():
    """The same test has power: uniform misset angles (the reference's random misset) are not uniform."""
    ang = np.random.default_rng(3).uniform(-180, 180, size=(20000, 3))
    mats = np.stack([misset_deg_to_rotation(a) for a in ang])
    assert min(_so3_pvalues(mats)) < ALPHA


# -------------------------------------------------------------------- failures and retries

def flaky_render(run, index, **kw):
    """Fails the first try of every shot (a marker file per shot), and every try of shot 3."""
    if index == 3:
        raise RuntimeError("shot 3 always fails")
    marker = os.path.join(os.environ["BRAGG_SHOTS_TEST_DIR"], f"tried_{index}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"first try of shot {index}")
    return render_shot(run, index, **kw)


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_shot_retried_then_reported(tmp_path, monkeypatch, serial, workers):
    monkeypatch.setenv("BRAGG_SHOTS_TEST_DIR", str(tmp_path))
    run, ref = serial
    got = {r.index: r for r in simulate_shots(run, workers=workers, render=flaky_render)}
    assert sorted(got) == list(range(run.n_shots))
    bad = got[3]
    assert not bad.ok and bad.image is None and "shot 3 always fails" in bad.error and bad.attempts == 2
    for k in set(got) - {3}:
        assert got[k].ok and got[k].attempts == 2
        assert np.array_equal(got[k].image, ref[k].image)


def test_failed_shot_reported_on_cluster(tmp_path, monkeypatch, serial):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    run, _ = serial
    monkeypatch.setenv("BRAGG_SHOTS_TEST_DIR", str(tmp_path))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=None) as client:
        got = {r.index: r for r in simulate_shots(run, indices=[2, 3], client=client, render=flaky_render)}
    assert got[2].ok and not got[3].ok and "shot 3 always fails" in got[3].error


# -------------------------------------------------------------------- the command

CONFIG = """
[run]
shots = {shots}
seed = 5
output = "out"

[experiment]
args = "-cell 40 40 40 90 90 90 -default_F 100 -N 3 -lambda 1 -distance 60 -detpixels 16 -pixel 0.4"

[vary]
N_cells = {{integers = [2, 4]}}
distance_mm = {{uniform = [55, 65]}}
"""


def _cli(*args, cwd, timeout=120):
    return subprocess.run([sys.executable, "-m", "bragg_core.shots", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _images(out):
    rows = read_manifest(out)
    return rows, {k: np.fromfile(os.path.join(out, r["file"]), dtype="<f4").reshape(r["shape"])
                  for k, r in rows.items()}


def test_cli_writes_resumes_and_matches_api(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(shots=8))
    p = _cli(str(cfg), "--workers", "2", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "shots/s" in p.stderr and "ETA" in p.stderr
    out = tmp_path / "out"
    rows, imgs = _images(out)
    assert sorted(rows) == list(range(8))
    # the manifest row renders the same image, through the API
    from bragg_core.shots.cli import _load_toml, build_run

    run, _ = build_run(_load_toml(str(cfg)), str(tmp_path))
    for k in (0, 5):
        assert np.array_equal(render_truth(run.base, ShotTruth.from_dict(rows[k])), imgs[k])
        assert np.array_equal(render_shot(run, k).image, imgs[k])
    # stop half-way: rows of shots 4..7 lost, shot 1's file damaged, a torn last line
    man = out / "manifest.jsonl"
    lines = man.read_text().splitlines()
    keep = [ln for ln in lines if json.loads(ln)["index"] < 4]
    man.write_text("\n".join(keep) + "\n" + lines[-1][:40])
    for k in range(4, 8):
        (out / f"shot_{k:06d}.f32").unlink()
    damaged = out / "shot_000001.f32"
    raw = bytearray(damaged.read_bytes())
    raw[0] ^= 1
    damaged.write_bytes(bytes(raw))
    untouched = (out / "shot_000002.f32").stat().st_mtime_ns
    p = _cli(str(cfg), "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows2, imgs2 = _images(out)
    assert sorted(rows2) == list(range(8))
    for k in range(8):
        assert np.array_equal(imgs2[k], imgs[k]), k
    assert (out / "shot_000002.f32").stat().st_mtime_ns == untouched  # skipped, not rewritten
    assert len(man.read_text().splitlines()) == 8  # compacted: one row per shot


def test_cli_killed_then_resumed_on_local_cluster(tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(shots=60))
    proc = subprocess.Popen([sys.executable, "-m", "bragg_core.shots", str(cfg), "--quiet"], cwd=tmp_path,
                            stderr=subprocess.PIPE, start_new_session=True)
    man = tmp_path / "out" / "manifest.jsonl"
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 60:
        if man.exists() and len(man.read_text().splitlines()) >= 3:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    written = len(read_manifest(tmp_path / "out"))
    p = _cli(str(cfg), "--dask", "--quiet", cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    rows, imgs = _images(tmp_path / "out")
    assert sorted(rows) == list(range(60)) and 3 <= written < 60  # killed part-way, then completed
    from bragg_core.shots.cli import _load_toml, build_run

    run, _ = build_run(_load_toml(str(cfg)), str(tmp_path))
    for k in (0, 1, 30, 59):
        assert np.array_equal(render_shot(run, k).image, imgs[k]), k


@pytest.mark.parametrize("body, key", [
    ("[run]\nshots = 0\n[crystal]\ncell_A_deg = [40, 40, 40, 90, 90, 90]\n", "[run] shots"),
    ("[run]\nshots = 2\nsed = 3\n", "[run] sed"),
    ("[run]\nshots = 2\n[crystal]\ncell_A_deg = [40, 40, 40, 90, 90, 90]\n[vary]\ndistance_mm = {uniform = [-5, 5]}\n",
     "[vary] distance_mm"),
    ("[run]\nshots = 2\n[crystal]\ncell_A_deg = [40, 40, 40, 90, 90, 90]\n[vary]\nspin = {uniform = [1, 2]}\n",
     "[vary] spin"),
    ("[run]\nshots = 2\n[detector]\ndistance_mm = -3\n[crystal]\ncell_A_deg = [40, 40, 40, 90, 90, 90]\n",
     "Detector.distance_mm"),
    ("[run]\nshots = 2\n[experiment]\nargs = \"-cell 40 40 40 90 90 -N 3\"\n", "[experiment] args"),
    ("[run\nshots = 2\n", "not valid TOML"),
    ("[run]\nshots = 2\nbackend = \"nonesuch\"\n[crystal]\ncell_A_deg = [40, 40, 40, 90, 90, 90]\n",
     "[run] backend"),
])
def test_cli_bad_config(tmp_path, body, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    p = _cli(str(cfg), cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], p.stderr
    assert sorted(os.listdir(tmp_path)) == ["bad.toml"]


def test_shot_result_hash():
    r = ShotResult(index=0, image=np.arange(6, dtype=np.float32).reshape(2, 3), truth=None)
    import hashlib

    assert r.sha256 == hashlib.sha256(np.arange(6, dtype="<f4").tobytes()).hexdigest()


def test_cli_lists_failed_shots_then_retries_them(tmp_path, monkeypatch, capsys):
    from bragg_core import shots as shots_mod
    from bragg_core.shots import cli as shots_cli

    monkeypatch.setenv("BRAGG_SHOTS_TEST_DIR", str(tmp_path))
    real = shots_mod.simulate_shots
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(shots=5))
    monkeypatch.setattr(shots_mod, "simulate_shots", lambda *a, **kw: real(*a, **kw, render=flaky_render))
    assert shots_cli.main([str(cfg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "1 shot(s) failed after 2 tries" in err and "shot 3: RuntimeError: shot 3 always fails" in err
    out = tmp_path / "out"
    assert sorted(read_manifest(out)) == [0, 1, 2, 4] and not (out / "shot_000003.f32").exists()
    before = {k: (out / f"shot_{k:06d}.f32").stat().st_mtime_ns for k in (0, 1, 2, 4)}
    monkeypatch.setattr(shots_mod, "simulate_shots", real)
    assert shots_cli.main([str(cfg), "--quiet"]) == 0  # only shot 3 is rendered again
    assert sorted(read_manifest(out)) == list(range(5))
    assert before == {k: (out / f"shot_{k:06d}.f32").stat().st_mtime_ns for k in (0, 1, 2, 4)}


# -------------------------------------------------------------------- an NXmx stack of the shots

STACK_CONFIG = """
[run]
shots = 5
seed = 9
output = "out"

[experiment]
args = "-cell 40 40 40 90 90 90 -default_F 100 -N 3 -lambda 1 -distance 60 -detpixels 16 -pixel 0.4"

[vary]
N_cells = {integers = [2, 4]}
wavelength_A = {uniform = [0.95, 1.05]}
"""


def test_cli_gathers_the_shots_into_one_nxmx_stack(tmp_path):
    """--nexus: every shot in order, each with its wavelength, read back by our reader and by nxmx."""
    pytest.importorskip("h5py")
    cfg = tmp_path / "run.toml"
    cfg.write_text(STACK_CONFIG)
    p = _cli(str(cfg), "--quiet", "--nexus", "stack.nxs", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows, imgs = _images(tmp_path / "out")
    from bragg_core.io.nexus import read_nexus

    data, geom = read_nexus(tmp_path / "stack.nxs")
    assert data.shape == (5, 16, 16)
    for k in range(5):
        assert np.array_equal(data[k], imgs[k]), k
    assert len({float(imgs[k].sum()) for k in range(5)}) == 5          # five different shots
    nxmx = pytest.importorskip("nxmx")
    import h5py

    with h5py.File(tmp_path / "stack.nxs", "r") as f:
        entry = nxmx.NXmx(f).entries[0]
        beam = entry.instruments[0].beams[0]
        wl = np.asarray(beam.incident_wavelength.to("angstrom").magnitude, dtype=float).reshape(-1)
    np.testing.assert_allclose(wl, [rows[k]["wavelength_A"] for k in range(5)], rtol=1e-12)


def test_cli_nexus_refused_before_any_work_when_the_distance_varies(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(shots=3))        # varies distance_mm
    p = _cli(str(cfg), "--nexus", "stack.nxs", cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "--nexus" in lines[0] and "distance_mm" in lines[0], p.stderr
    assert sorted(os.listdir(tmp_path)) == ["run.toml"]


@pytest.mark.skipif(__import__("shutil").which("dials.import") is None,
                    reason="DIALS (dials.import) is not installed")
def test_dials_imports_the_shots_stack_as_stills(tmp_path):
    pytest.importorskip("h5py")
    cfg = tmp_path / "run.toml"
    cfg.write_text(STACK_CONFIG)
    assert _cli(str(cfg), "--quiet", "--nexus", "stack.nxs", cwd=tmp_path).returncode == 0
    rows, _ = _images(tmp_path / "out")
    env = dict(os.environ)
    try:
        import hdf5plugin

        env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    except ImportError:
        pass
    r = subprocess.run(["dials.import", "stack.nxs", "output.experiments=stack.expt"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads((tmp_path / "stack.expt").read_text())
    assert len(doc["experiment"]) == 5 and doc["scan"] == [] and doc["goniometer"] == []
    assert [b["wavelength"] for b in doc["beam"]] == pytest.approx([rows[k]["wavelength_A"] for k in range(5)],
                                                                   rel=1e-9)
