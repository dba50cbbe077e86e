"""Fuzz of the two companion commands, ``python -m bragg_core.nonbragg`` and ``python -m bragg_core.noisify``.

Adversarial argument lists (each command's own flags, values short, extra,
out of range, not numbers, paths that do not exist) on tiny images, in a
directory that already holds a file of every output kind.  Whatever the input,
the command exits 0 or 2 and prints no traceback; a run that fails prints one
line, ``<command>: error: ...``, and leaves every file as it was and adds none.
``BRAGG_FUZZ_EXAMPLES`` scales the number of cases for a longer local run.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bragg_core import noisify, nonbragg

N_ARGS = int(os.environ.get("BRAGG_FUZZ_EXAMPLES", "2000")) // 4

NUMBERS = ["0", "-0", "1", "-1", "2", "3", "0.5", "-0.5", "100", "1e-300", "1e300", "-1e30", "1e-7",
           "2147483648", "9223372036854775808", "1e400", "inf", "-inf", "nan", "abc", "", "0x10", "--", "-h",
           "45", "1e9", "6.2", "12"]
PATHS = ["in.bin", "missing.file", "nodir/x", ".", "", "floatimage.bin", "intimage.img", "a" * 300, "/",
         "water", "air", "in.stol", "gauss", "fiber", "beam", "sample", "float32", "float16", "numpy"]
PRE = {"floatimage.bin": b"PRE float", "intimage.img": b"PRE int", "image.pgm": b"PRE pgm",
       "noiseimage.img": b"PRE noise", "in.stol": b"0 1\n0.5 0.5\n1 0.1\n",
       "in.bin": np.linspace(0.0, 200.0, 144, dtype="<f4").tobytes()}
# flags that pick a library or device (their import, not the input, makes a run slow)
_SKIP = {"-backend", "-device"}

COMMANDS = {
    "nonbragg": (nonbragg, nonbragg._FLAGS, nonbragg._ALIASES, nonbragg._TEXT,
                 ["-stol", "water", "-detpixels", "12", "-noprogress"]),
    "noisify": (noisify, noisify._FLAGS, noisify._ALIASES, noisify._TEXT, ["-floatfile", "in.bin"]),
}


@st.composite
def argv_lists(draw, name):
    _, flags, aliases, text, base = COMMANDS[name]
    names = sorted(f for f in set(flags) | set(aliases) if aliases.get(f, f) not in _SKIP)
    argv = list(base)
    for _ in range(draw(st.integers(0, 4))):
        flag = draw(st.sampled_from(names))
        canon = aliases.get(flag, flag)
        n = draw(st.sampled_from([flags[canon]] * 4 + [max(0, flags[canon] - 1), flags[canon] + 1]))
        pool = PATHS if canon in text else NUMBERS
        argv += [flag] + [draw(st.sampled_from(pool)) for _ in range(n)]
    if draw(st.booleans()):
        argv = draw(st.permutations(argv))
    return argv


def _snapshot(d: Path) -> dict:
    return {p.name: p.read_bytes() if p.is_file() else "other" for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("companions")


def _reset(d: Path) -> None:
    for p in d.iterdir():
        if p.is_dir():
            for q in p.iterdir():
                q.unlink()
            p.rmdir()
        else:
            p.unlink()
    for name, data in PRE.items():
        (d / name).write_bytes(data)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_fuzz_companion_argument_lists(name, work, monkeypatch):
    monkeypatch.setenv("BRAGG_CORE_THREADS", "1")
    monkeypatch.delenv("BRAGG_CORE_DEBUG", raising=False)
    module = COMMANDS[name][0]

    @settings(max_examples=N_ARGS, deadline=None, suppress_health_check=list(HealthCheck))
    @given(argv=argv_lists(name))
    def check(argv):
        _reset(work)
        before = _snapshot(work)
        out, err = _io.StringIO(), _io.StringIO()
        old = os.getcwd()
        os.chdir(work)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = module.main(list(argv))
        finally:
            os.chdir(old)
        text = err.getvalue()
        assert rc in (0, 2), (argv, rc, text)
        assert "Traceback" not in text + out.getvalue(), (argv, text)
        if rc != 0:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith(f"{name}: error: "), (argv, text)
            assert _snapshot(work) == before, argv

    check()
