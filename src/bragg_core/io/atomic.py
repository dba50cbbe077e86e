"""Atomic file output.

Every writer in :mod:`bragg_core.io` goes through :func:`atomic_open`: the bytes
are written to a temporary file in the destination directory and moved over the
destination with :func:`os.replace` only once everything was written.  A failure
part-way (an exception, a full disk) therefore never leaves a truncated output;
the temporary file is removed and any previous file at ``path`` is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator

__all__ = ["atomic_open", "atomic_write"]


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # fallback: read by setting and restoring
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary file for writing that appears at ``path`` only on success.

    Usage::

        with atomic_open("image.smv") as fh:
            fh.write(header)
            fh.write(data)

    The temporary file lives next to ``path`` (same file system, so the final
    :func:`os.replace` is atomic).  Atomic against errors and interruptions
    of this process; like any ordinary write it is not flushed to the disk
    (no fsync), so it is no guarantee against a power failure.  The new file gets the permissions an
    ordinary ``open(path, "wb")`` would give (``0o666`` less the umask).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`).

    ``data`` is bytes-like (bytes, a memoryview, a contiguous NumPy array) or
    a list or tuple of such pieces, written in order without joining them.
    """
    pieces = data if isinstance(data, (list, tuple)) else (data,)
    with atomic_open(path) as fh:
        for piece in pieces:
            fh.write(piece)
