"""What a newcomer meets first: the README's commands, CI, ignored outputs, license, typing marker, citation."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts)) as fh:
        return fh.read()


def _readme_commands() -> list[str]:
    return [b.strip() for b in re.findall(r"^```bash\n(.*?)^```", _read("README.md"), flags=re.S | re.M)]


def test_readme_starts_with_the_main_job_then_the_tests():
    first, second = _readme_commands()[:2]
    assert "pip install -e ." in first and "python3 -m bragg_core " in first
    assert "pip install -e \".[test]\"" in second and second.endswith("python3 -m pytest -q -ra")


def test_ci_runs_the_readmes_test_command_with_ci_true():
    test_command = _readme_commands()[1]
    run = _read(".ci", "run")
    assert re.search(r"^export CI=true$", run, flags=re.M)
    assert re.search(r"^" + re.escape(test_command) + r" \|\| status=\$\?$", run, flags=re.M), run


def test_default_outputs_are_ignored_by_git(tmp_path):
    (tmp_path / "P1.hkl").write_text("0 0 0 10\n1 0 0 5\n0 1 0 5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bragg_core", "-cell", "50", "50", "50", "90", "90", "90", "-hkl", "P1.hkl",
         "-lambda", "1", "-N", "2", "-distance", "50", "-detpixels", "8", "-noprogress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in tmp_path.iterdir() if p.name != "P1.hkl")
    assert {"floatimage.bin", "intimage.img", "image.pgm", "noiseimage.img", "Fdump.bin"} <= set(written)
    ignored = set(_read(".gitignore").split())
    assert [w for w in written if "/" + w not in ignored] == []


def test_license_typing_marker_and_citation():
    assert _read("LICENSE").startswith("BSD 3-Clause License")
    assert 'license = { text = "BSD-3-Clause" }' in _read("pyproject.toml")
    assert os.path.isfile(os.path.join(ROOT, "src", "bragg_core", "py.typed"))
    cff = _read("CITATION.cff")
    assert "title: nanoBragg" in cff and "family-names: Holton" in cff
    assert "nanoBragg" in _read("README.md") and "James Holton" in _read("README.md")


def test_py_typed_ships_with_the_package():
    tomllib = pytest.importorskip("tomllib")
    data = tomllib.loads(_read("pyproject.toml"))
    assert "py.typed" in data["tool"]["setuptools"]["package-data"]["bragg_core"]
    test_extra = " ".join(data["project"]["optional-dependencies"]["test"])
    assert "matplotlib" in test_extra and "ruff" in test_extra  # the benchmark and lint tests run in CI


def test_dir_lists_each_name_once():
    code = "import bragg_core, bragg_core.io, bragg_core.units; d = dir(bragg_core); print(len(d) - len(set(d)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
