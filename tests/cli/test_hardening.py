"""A careless or hostile user: every numbered finding of the hardening review, one test each.

Outputs replace their destinations as a set or not at all; workers and
temporaries die with the process; no argument gives a traceback; what cannot
fit or finish is refused before it starts; NaN or inf is never written as an
image.  In-process runs go through ``bragg_core.cli.main(argv)``; faults that
need a process of their own (signals, file-size limits, a closed pipe) run
``python -m bragg_core`` in a subprocess.
"""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from cli_run import run_main as _run

B = "-cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 2 -distance 100 -noprogress".split()
B16 = B + ["-detpixels", "16"]


def _snapshot(d):
    """Name -> bytes of every file (and kind of every other entry) in a directory."""
    snap = {}
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        st = os.lstat(p)
        snap[name] = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else stat.S_IFMT(st.st_mode)
    return snap


def _env(**extra):
    env = dict(os.environ)
    env.pop("BRAGG_CORE_DEBUG", None)
    env.update(extra)
    return env


def _cli(args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "bragg_core", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=120, **kw)


def _one_error(rc, out, err, *needles):
    assert rc == 2, (rc, err)
    assert "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("bragg_core: error:"), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    for exc in ("OverflowError", "IndexError", "TypeError", "AttributeError", "ZeroDivisionError", "Warning"):
        assert exc not in lines[0], lines[0]


# ---------------------------------------------------------------- 1. outputs atomic as a set


def test_1_failing_output_path_leaves_earlier_outputs(tmp_path, capsys):
    (tmp_path / "floatimage.bin").write_bytes(b"PRE")
    rc, out, err = _run(B16 + ["-intfile", "nodir/x.img"], tmp_path, capsys)
    _one_error(rc, out, err, "-intfile", "nodir/x.img")
    assert _snapshot(tmp_path) == {"floatimage.bin": b"PRE"}


def _fsize_limit(nbytes):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


def _hkl(path, n=40):
    h = np.arange(-n // 2, n // 2)
    with open(path, "w") as fh:
        for i in h:
            for j in h:
                for k in h:
                    fh.write(f"{i} {j} {k} {1 + abs(i) + abs(j) + abs(k)}\n")


def test_1_failing_third_output_under_file_size_limit(tmp_path):
    """float, int, then Fdump.bin (about 550 KB) against a 100 KB limit: the first two stay as they were."""
    _hkl(tmp_path / "f.hkl")
    for name in ("floatimage.bin", "intimage.img", "Fdump.bin"):
        (tmp_path / name).write_bytes(b"OLD " + name.encode())
    before = _snapshot(tmp_path)
    p = subprocess.run([sys.executable, "-m", "bragg_core", *B16, "-hkl", "f.hkl", "-nopgm", "-nonoise"],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
                       preexec_fn=_fsize_limit(100_000))
    _one_error(p.returncode, p.stdout, p.stderr, "Fdump.bin")
    assert ".tmp" not in p.stderr
    assert _snapshot(tmp_path) == before


def test_1_disk_full_leaves_every_destination(tmp_path):
    """ulimit -f below the size of every output: each existing file is as it was, nothing else appears."""
    for name in ("floatimage.bin", "intimage.img", "image.pgm", "noiseimage.img"):
        (tmp_path / name).write_bytes(b"OLD " + name.encode())
    before = _snapshot(tmp_path)
    p = subprocess.run([sys.executable, "-m", "bragg_core", *B + ["-detpixels", "64"]], cwd=tmp_path,
                       env=_env(), capture_output=True, text=True, timeout=120, preexec_fn=_fsize_limit(2048))
    _one_error(p.returncode, p.stdout, p.stderr, "floatimage.bin", "file too large")
    assert _snapshot(tmp_path) == before


def test_1_output_set_third_add_fails(tmp_path):
    from bragg_core.io.atomic import OutputError, OutputSet

    (tmp_path / "a").write_bytes(b"A0")
    (tmp_path / "b").write_bytes(b"B0")
    with pytest.raises(OutputError) as info:
        with OutputSet() as out:
            out.add(tmp_path / "a", b"A1")
            out.add(tmp_path / "b", [b"B", np.arange(3, dtype="<u2")])
            out.add(tmp_path / "missing" / "c", b"C1")
            out.commit()
    assert str(tmp_path / "missing" / "c") in str(info.value) and ".tmp" not in str(info.value)
    assert _snapshot(tmp_path) == {"a": b"A0", "b": b"B0"}


def test_1_output_set_rename_failure_restores_earlier(tmp_path, monkeypatch):
    from bragg_core.io import atomic

    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode() + b"0")
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 3 and str(dst).endswith("c"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", flaky)
    out = atomic.OutputSet()
    for name in ("a", "b", "c"):
        out.add(tmp_path / name, name.encode() + b"1")
    with pytest.raises(atomic.OutputError):
        out.commit()
    monkeypatch.undo()
    assert _snapshot(tmp_path) == {"a": b"a0", "b": b"b0", "c": b"c0"}


# ---------------------------------------------------------------- 2. links and devices


def test_2_symlink_is_written_through(tmp_path, capsys):
    (tmp_path / "real.bin").write_bytes(b"PRE")
    os.symlink("real.bin", tmp_path / "floatimage.bin")
    rc, out, err = _run(B16 + ["-nopgm", "-nonoise"], tmp_path, capsys)
    assert rc == 0, err
    assert os.path.islink(tmp_path / "floatimage.bin")
    assert (tmp_path / "real.bin").stat().st_size == 16 * 16 * 4


def test_2_hard_link_is_written_through(tmp_path, capsys):
    (tmp_path / "floatimage.bin").write_bytes(b"PRE")
    os.link(tmp_path / "floatimage.bin", tmp_path / "other.bin")
    rc, out, err = _run(B16 + ["-nopgm", "-nonoise"], tmp_path, capsys)
    assert rc == 0, err
    assert os.path.samefile(tmp_path / "floatimage.bin", tmp_path / "other.bin")
    assert (tmp_path / "other.bin").stat().st_size == 16 * 16 * 4


def test_2_fifo_is_written_through(tmp_path, capsys):
    fifo = tmp_path / "pipe.pgm"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    rc, out, err = _run(B16 + ["-pgmfile", "pipe.pgm", "-nonoise"], tmp_path, capsys)
    reader.join(10)
    assert rc == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got and got[0].startswith(b"P5") and len(got[0]) > 16 * 16


def test_2_character_device_is_written_through(tmp_path, capsys):
    dev = tmp_path / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with open(dev, "wb") as fh:
            fh.write(b"x")
    except OSError as exc:
        pytest.skip(f"cannot make a character device here: {exc}")
    rc, out, err = _run(B16 + ["-floatfile", "null", "-nopgm", "-nonoise"], tmp_path, capsys)
    assert rc == 0, err
    assert stat.S_ISCHR(os.lstat(dev).st_mode)


# ---------------------------------------------------------------- 3. no traceback from any number


@pytest.mark.parametrize("extra,flag", [
    ("-detpixels inf", "-detpixels"), ("-seed inf", "-seed"), ("-mosaic_dom inf", "-mosaic_dom"),
    ("-roi 0 10 0 inf", "-roi"), ("-N inf", "-N"), ("-memory_budget inf", "-memory_budget"),
    ("-detsize inf", "-detsize"), ("-flux 1e12 -exposure 1 -beamsize 1e-300", "-beamsize"),
    ("-misset_seed nan", "-misset_seed"), ("-detpixels 1e400", "-detpixels"),
])
def test_3_non_finite_numbers(extra, flag, tmp_path, capsys):
    rc, out, err = _run(B16 + extra.split(), tmp_path, capsys)
    _one_error(rc, out, err, flag)
    assert os.listdir(tmp_path) == []


def test_3_zero_pixel_without_detpixels(tmp_path, capsys):
    rc, out, err = _run(B + ["-pixel", "0"], tmp_path, capsys)
    _one_error(rc, out, err, "-pixel")


# ---------------------------------------------------------------- 4. the field, not the exception type


@pytest.mark.parametrize("extra,flag", [
    ("-cell 1e300 100 100 90 90 90", "-cell"), ("-lambda 1e-300", "-lambda"), ("-distance 1e-300", "-distance"),
    ("-N 1e300", "-N"), ("-dmin 1e300", "-dmin"), ("-mosaic_seed 1e30", "-mosaic_seed"),
    ("-divsteps 1", "-hdivsteps"),
])
def test_4_values_that_overflowed(extra, flag, tmp_path, capsys):
    rc, out, err = _run(B16 + extra.split(), tmp_path, capsys)
    _one_error(rc, out, err, flag)
    assert os.listdir(tmp_path) == []


def _api_cases():
    from bragg_core.experiment import Beam, Crystal, Detector, Experiment

    det = Detector(fpixels=8, spixels=8)
    cr = dict(cell_A_deg=(100, 100, 100, 90, 90, 90), default_F=100.0, N_cells=(2, 2, 2))
    return {
        "structure_factors an ndarray": lambda: Experiment(detector=det, crystal=Crystal(
            **cr, structure_factors=np.ones((3, 3, 3)))),
        "roi an int": lambda: Detector(fpixels=8, spixels=8, roi=5),
        "unknown replace": lambda: Experiment().replace(detector__nosuch=1),
        "sources of shape (2, 2)": lambda: Experiment(detector=det, crystal=Crystal(**cr), beam=Beam(
            source_positions_m=np.zeros((2, 2)), source_wavelengths_A=np.ones(2))),
        "mosaic_seed a string": lambda: Experiment(detector=det, crystal=Crystal(**cr, mosaic_seed="x")),
        "misset_seed a float": lambda: Experiment(detector=det, crystal=Crystal(
            **cr, misset_seed=1.5, misset_random=True)),
        "pixel size a vector": lambda: Experiment(detector=Detector(fpixels=8, spixels=8,
                                                                    pixel_size_mm=np.ones(3)), crystal=Crystal(**cr)),
    }


@pytest.mark.parametrize("case", list(_api_cases()))
def test_4_api_misuse_names_the_field(case):
    import bragg_core as bc
    from bragg_core.experiment import ExperimentError

    with pytest.raises(ExperimentError):
        exp = _api_cases()[case]()
        bc.simulate(exp)


# ---------------------------------------------------------------- 5. workers die with their parent


def _children(pid):
    kids = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                kids.update(int(x) for x in fh.read().split())
        except OSError:
            pass
    return kids


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked tile workers are Linux-only")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_5_workers_die_with_parent(sig, tmp_path):
    args = B + "-detpixels 512 -oversample 5 -mosaic 1 -mosaic_dom 10 -nopgm -nonoise".split()
    p = subprocess.Popen([sys.executable, "-m", "bragg_core", *args], cwd=tmp_path,
                         env=_env(BRAGG_CORE_THREADS="2", BRAGG_CORE_FORK="1"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        kids = set()
        while time.monotonic() < deadline and p.poll() is None:
            me = _cmdline(p.pid)  # forked workers run the parent's command line (helpers do not)
            kids = {k for k in _children(p.pid) if _alive(k) and _cmdline(k) == me}
            if kids:
                break
            time.sleep(0.01)
        assert kids, "the render did not fork a worker"
        os.kill(p.pid, sig)
        p.wait(10)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0 and any(_alive(k) for k in kids):
            time.sleep(0.01)
        assert not any(_alive(k) for k in kids), "a worker outlived its parent by 1 s"
        assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_5_kill_while_writing_leaves_no_temporary(sig, tmp_path):
    """Killed while its temporaries exist: within 1 s none is left, and nothing of the old files changed."""
    for name in ("floatimage.bin", "intimage.img", "image.pgm", "noiseimage.img"):
        (tmp_path / name).write_bytes(b"OLD")
    args = B + "-detpixels 3072 -roi 0 0 0 0".split()
    for _attempt in range(5):
        p = subprocess.Popen([sys.executable, "-m", "bragg_core", *args], cwd=tmp_path, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen = False
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            if any(n.endswith(".tmp") for n in os.listdir(tmp_path)):
                os.kill(p.pid, sig)
                seen = True
                break
            time.sleep(0.0005)
        p.wait(10)
        if not seen:
            continue
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0 and any(n.endswith((".tmp", ".old")) for n in os.listdir(tmp_path)):
            time.sleep(0.01)
        assert sorted(os.listdir(tmp_path)) == ["floatimage.bin", "image.pgm", "intimage.img", "noiseimage.img"]
        for n in os.listdir(tmp_path):  # each file old or complete (a kill between two renames)
            assert (tmp_path / n).read_bytes() == b"OLD" or (tmp_path / n).stat().st_size >= 3072 * 3072
        return
    pytest.skip("the writing phase was never caught in progress")


# ---------------------------------------------------------------- 6. work and memory checked first


def test_6_huge_detector_refused_before_work(tmp_path, capsys):
    t0 = time.monotonic()
    rc, out, err = _run(B + ["-detpixels", "1000000"], tmp_path, capsys)
    _one_error(rc, out, err, "memory", "-force")
    assert "lower -memory_budget" not in err
    assert time.monotonic() - t0 < 5
    assert os.listdir(tmp_path) == []


def test_6_sparse_hkl_refused_before_allocating(tmp_path, capsys):
    (tmp_path / "two.hkl").write_text("0 0 0 1\n16777215 0 0 1\n")
    t0 = time.monotonic()
    rc, out, err = _run(B16 + ["-hkl", "two.hkl"], tmp_path, capsys)
    _one_error(rc, out, err, "-hkl", "-force")
    assert time.monotonic() - t0 < 5
    assert sorted(os.listdir(tmp_path)) == ["two.hkl"]


@pytest.mark.parametrize("extra", ["-oversample 100000", "-mosaic 1 -mosaic_dom 2147483647",
                                   "-dispersion 10 -dispsteps 2147483647", "-phisteps 2147483647 -osc 1",
                                   "-detector_thick 100 -detector_thicksteps 2147483647"])
def test_6_counts_that_cannot_finish(extra, tmp_path, capsys):
    t0 = time.monotonic()
    rc, out, err = _run(B16 + extra.split(), tmp_path, capsys)
    _one_error(rc, out, err, "-force")
    assert time.monotonic() - t0 < 10


def test_6_mosaic_deviates_match_one_by_one():
    from bragg_core.rng import ShuffledLehmer, cap_deviates, mosaic_deviates

    axes, fr = mosaic_deviates(2000, -12345678)
    stream, state = ShuffledLehmer(), [-12345678]
    for i in range(2000):
        ax, f = cap_deviates(stream, state)
        assert tuple(axes[i]) == ax and fr[i] == f


# ---------------------------------------------------------------- 7. a reader that exits early


def test_7_closed_stdout_does_not_lose_the_run(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "bragg_core", *B16], cwd=tmp_path, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first line
    err = p.stderr.read().decode()
    assert p.wait(120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert sorted(os.listdir(tmp_path)) == ["floatimage.bin", "image.pgm", "intimage.img", "noiseimage.img"]


# ---------------------------------------------------------------- 8. -detpixels with -img / -mask


def test_8_detpixels_wins_over_img_size(tmp_path, capsys):
    rc, _, err = _run(B16 + ["-intfile", "x16.img", "-nopgm", "-nonoise", "-floatfile", "f16.bin"], tmp_path, capsys)
    assert rc == 0, err
    rc, _, err = _run(B + ["-img", "x16.img", "-detpixels", "64", "-nopgm", "-nonoise"], tmp_path, capsys)
    assert rc == 0, err
    assert (tmp_path / "floatimage.bin").stat().st_size == 64 * 64 * 4


# ---------------------------------------------------------------- 9. physical checks with the Experiment


def test_9_bad_matrices_and_arrays():
    from bragg_core.experiment import Crystal, Detector, ExperimentError

    for m in (np.zeros((3, 3)), np.full((3, 3), np.nan), np.diag([np.inf, 1.0, 1.0]),
              np.array([[0.01, 0, 0], [0.02, 0, 0], [0, 0, 0.01]])):
        with pytest.raises(ExperimentError, match="reciprocal_vectors_per_A"):
            Crystal(reciprocal_vectors_per_A=m)
    with pytest.raises(ExperimentError, match="cell_A_deg"):
        Crystal(cell_A_deg=np.array([-100.0, 100, 100, 90, 90, 90]))
    with pytest.raises(ExperimentError, match="pixel_size_mm"):
        Detector(pixel_size_mm=np.array(-0.1))
    torch = pytest.importorskip("torch")
    with pytest.raises(ExperimentError, match="pixel_size_mm"):
        Detector(pixel_size_mm=torch.tensor(-0.1, requires_grad=True))


def test_9_singular_mat_file(tmp_path, capsys):
    (tmp_path / "s.mat").write_text("0.01 0.02 0\n0.01 0.02 0\n0 0 0.01\n0 0 0\n0 0 0\n")
    rc, out, err = _run(B16 + ["-mat", "s.mat"], tmp_path, capsys)
    _one_error(rc, out, err, "-mat")


# ---------------------------------------------------------------- 10. NaN and inf are reported


@pytest.mark.parametrize("setup,extra,needle", [
    (lambda d: (d / "nan.hkl").write_text("0 0 0 nan\n1 1 1 10\n"), "-hkl nan.hkl", "-hkl"),
    (lambda d: (d / "inf.hkl").write_text("0 0 0 inf\n1 1 1 10\n"), "-hkl inf.hkl", "-hkl"),
    (lambda d: (d / "src.txt").write_text("-10 0 0 1 0\n"), "-sourcefile src.txt", "-sourcefile"),
    (None, "-dispersion 200 -dispsteps 3", "-dispersion"),
    (None, "-Xbeam 1e300", "-Xbeam"),
    (None, "-default_F 1e30 -N 60", "overflow"),
])
def test_10_non_finite_images_are_errors(setup, extra, needle, tmp_path, capsys):
    if setup:
        setup(tmp_path)
    before = _snapshot(tmp_path)
    rc, out, err = _run(B16 + extra.split(), tmp_path, capsys)
    _one_error(rc, out, err, needle)
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------- 11. messages that point the right way


def test_11_negative_seed_accepted(tmp_path, capsys):
    rc, out, err = _run(B16 + ["-seed", "-1"], tmp_path, capsys)
    assert rc == 0, err


def test_11_write_error_names_the_users_path(tmp_path, capsys):
    rc, out, err = _run(B16 + ["-floatfile", "nodir/x.bin"], tmp_path, capsys)
    _one_error(rc, out, err, "nodir/x.bin")
    assert ".tmp" not in err


def test_11_no_python_warning_beside_the_error(tmp_path, capsys):
    (tmp_path / "r.hkl").write_text("0 0 0.5 10\n1 1 1 10\n")
    rc, out, err = _run(B16 + ["-hkl", "r.hkl", "-floatfile", "nodir/x.bin"], tmp_path, capsys)
    _one_error(rc, out, err, "nodir/x.bin")


def test_11_long_legal_file_name(tmp_path, capsys):
    name = "a" * 250
    rc, out, err = _run(B16 + ["-floatfile", name, "-nopgm", "-nonoise"], tmp_path, capsys)
    assert rc == 0, err
    assert (tmp_path / name).stat().st_size == 16 * 16 * 4


def test_11_help_as_a_value_is_not_help(tmp_path, capsys):
    rc, out, err = _run(B16 + ["-floatfile", "-h"], tmp_path, capsys)
    _one_error(rc, out, err, "-floatfile")
    assert "usage" not in out


def test_11_same_path_for_two_outputs(tmp_path, capsys):
    rc, out, err = _run(B16 + ["-floatfile", "same", "-intfile", "./same"], tmp_path, capsys)
    _one_error(rc, out, err, "-floatfile", "-intfile")
    assert os.listdir(tmp_path) == []


def test_api_refuses_what_cannot_fit_before_any_work():
    from bragg_core import simulate
    from bragg_core.estimate import RunTooLarge
    from bragg_core.experiment import Beam, Crystal, Detector, Experiment

    exp = Experiment(beam=Beam(), detector=Detector(fpixels=200_000, spixels=200_000),
                     crystal=Crystal(cell_A_deg=(100, 100, 100, 90, 90, 90), default_F=1.0))
    with pytest.raises(RunTooLarge, match="force=True"):
        simulate(exp)


def test_a_series_replaces_its_files_as_a_set(tmp_path, monkeypatch):
    """-nimages: an image that fails after two were rendered leaves every destination as it was."""
    import importlib

    from bragg_core.cli.args import build_config, parse_args
    from bragg_core.cli.panel_flags import run_all

    main_mod = importlib.import_module("bragg_core.cli.main")  # the module (the package exports the function)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f_01.bin").write_bytes(b"PRE")
    argv = B + "-detpixels 16 -osc 1 -nimages 3 -floatfile f_##.bin -intfile i_##.img -nonoise -nopgm".split()
    cfg = build_config(parse_args(argv), str(tmp_path))
    calls = []

    def third_fails(c):
        calls.append(c.outputs["-floatfile"])
        return 2 if len(calls) == 3 else main_mod._run(c)

    assert run_all(cfg, third_fails) == 2
    assert calls == ["f_01.bin", "f_02.bin", "f_03.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f_01.bin"]   # no image written, no temporary left
    assert (tmp_path / "f_01.bin").read_bytes() == b"PRE"
    assert run_all(cfg, main_mod._run) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f_01.bin", "f_02.bin", "f_03.bin",
                                                          "i_01.img", "i_02.img", "i_03.img"]


def test_a_detector_of_several_panels_replaces_its_files_as_a_set(tmp_path, monkeypatch):
    """-geom with several panels: a panel that fails after the first leaves every destination as it was."""
    import importlib
    import os

    from bragg_core.cli.args import build_config, parse_args
    from bragg_core.cli.panel_flags import run_all

    main_mod = importlib.import_module("bragg_core.cli.main")
    geom = os.path.join(os.path.dirname(__file__), "..", "data", "geom", "jungfrau_like.geom")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jf.bin").write_bytes(b"PRE")
    argv = ["-geom", geom, "-cell", "79.1", "79.1", "38", "90", "90", "90", "-default_F", "100", "-N", "5",
            "-lambda", "1", "-distance", "100", "-floatfile", "jf.bin", "-nonoise", "-nopgm", "-noprogress",
            "-roi", "0", "3", "0", "3"]
    cfg = build_config(parse_args(argv), str(tmp_path))
    assert cfg.panels is not None and len(cfg.panels.panels) > 2
    calls = []

    def second_fails(c):
        calls.append(1)
        return 2 if len(calls) == 2 else main_mod._run(c)

    assert run_all(cfg, second_fails) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jf.bin"]
    assert (tmp_path / "jf.bin").read_bytes() == b"PRE"
    assert run_all(cfg, main_mod._run) == 0
    n = len(cfg.panels.panels)
    assert (tmp_path / "jf.bin").stat().st_size == sum(4 * p.fpixels * p.spixels for p in cfg.panels.panels)
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("intimage_p")]) == n
