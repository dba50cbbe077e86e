import os
import stat

import pytest

from bragg_core.io import atomic_open, atomic_write


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write(path, b"first")
    assert path.read_bytes() == b"first"
    atomic_write(str(path), b"second, longer")
    assert path.read_bytes() == b"second, longer"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_failure_keeps_old_file_and_removes_temp(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old contents")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as fh:
            fh.write(b"partial")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_failure_without_old_file_leaves_nothing(tmp_path):
    path = tmp_path / "new.bin"
    with pytest.raises(TypeError):
        atomic_write(path, "not bytes")
    assert os.listdir(tmp_path) == []


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "p.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "p.bin").st_mode) == 0o640
