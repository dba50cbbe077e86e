"""Atomic file output, one file or a whole set.

:class:`OutputSet` gathers every output of a run.  Each :meth:`OutputSet.add`
writes its bytes to a hidden temporary file next to the destination at once;
:meth:`OutputSet.commit` then moves all of them over their destinations with
:func:`os.replace`.  If anything fails before that (an exception, a full
disk, a file-size limit, a missing directory, Ctrl-C, SIGTERM) the
temporaries are removed and every existing destination is left exactly as it
was.  If a rename itself fails half-way, the destinations already replaced
are put back from hard-linked backups taken just before.

Temporaries never outlive the process: they are removed on errors and on
SIGTERM by this process, and, where ``/bin/sh`` exists, a small helper in its
own session removes them if the process is killed outright (SIGKILL): it
holds their names and the read end of a pipe, and deletes the files when the
pipe closes without the word "done".

Destinations that are not plain files are written the way the reference
writes them, by opening the path itself: a symbolic link is followed (its
target is replaced atomically and the link stays a link); a character or
block device, a FIFO or a socket is opened and written in place; a regular
file with other hard links is rewritten in place, so that every name sees
the new image.  These in-place writes come last, after every ordinary output
is in place; space for a hard-linked file is reserved first, so a full disk
fails before its old content is touched.  A directory at the path is refused.

Atomic against errors and interruptions of this process, not against a power
failure (no fsync), like any ordinary write.  New files get the permissions
an ordinary ``open(path, "wb")`` would give (``0o666`` less the umask); a
replaced file keeps its permission bits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
import stat
import subprocess
import threading
from typing import BinaryIO, Iterator

__all__ = ["OutputError", "OutputSet", "check_destination", "atomic_open", "atomic_write"]


class OutputError(OSError):
    """An output that cannot be written; ``path`` is the destination the user named."""

    def __init__(self, path: str, reason: str, err: int | None = None):
        super().__init__(err or errno.EIO, reason)
        self.path = os.fspath(path)
        self.reason = reason
        self.filename = self.path

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


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


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EFBIG:
        return "file too large (the file-size limit, ulimit -f, was reached)"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def _plan(path: str):
    """(kind, target) for a destination: 'replace' a regular file or a new name, or write 'through'."""
    target = os.path.realpath(path)  # a symbolic link is followed to what it names
    try:
        st = os.stat(target)
    except FileNotFoundError:
        parent = os.path.dirname(target) or "."
        if not os.path.isdir(parent):
            raise OutputError(path, "no such directory", errno.ENOENT) from None
        return "replace", target, None
    except OSError as exc:
        raise OutputError(path, _reason(exc), exc.errno) from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(path, "it is a directory", errno.EISDIR)
    if stat.S_ISREG(st.st_mode) and st.st_nlink <= 1:
        return "replace", target, st
    return "through", target, st


def check_destination(path: str | os.PathLike) -> None:
    """Raise :class:`OutputError` now if ``path`` cannot receive an output (checked before a run)."""
    path = os.fspath(path)
    kind, target, st = _plan(path)
    where = os.path.dirname(target) or "."
    if kind == "replace" and not os.access(where, os.W_OK | os.X_OK):
        raise OutputError(path, f"directory {where} is not writable", errno.EACCES)
    if kind == "through" and not os.access(target, os.W_OK):
        raise OutputError(path, "permission denied", errno.EACCES)


# temporaries of every live OutputSet of this process (removed on SIGTERM)
_LIVE: set[str] = set()
_LIVE_LOCK = threading.Lock()


def _unlink_quietly(paths) -> None:
    for p in list(paths):
        with contextlib.suppress(OSError):
            os.unlink(p)


class _Janitor:
    """A helper process that removes named files unless told "done" (survives SIGKILL of this one)."""

    def __init__(self):
        self.fd = None
        sh = shutil.which("sh") or "/bin/sh"
        if os.name != "posix" or not os.path.exists(sh):
            return
        script = ('trap "" INT TERM HUP; set -f; '
                  'while IFS= read -r p; do [ "$p" = done ] && exit 0; set -- "$@" "$p"; done; '
                  '[ $# -gt 0 ] && rm -f -- "$@"; exit 0')
        try:
            r, w = os.pipe()
            try:
                self.proc = subprocess.Popen([sh, "-c", script], stdin=r, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL, close_fds=True,
                                             start_new_session=True)
            finally:
                os.close(r)
            self.fd = w
        except OSError:
            self.fd = None

    def watch(self, path: str) -> bool:
        if self.fd is None or "\n" in path:
            return False
        try:
            os.write(self.fd, os.fsencode(path) + b"\n")
            return True
        except OSError:
            return False

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.fd, b"done\n")
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)


class _SigtermCleanup:
    """While active (main thread only), SIGTERM removes the live temporaries, then acts as before."""

    def __init__(self):
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self.previous = signal.signal(signal.SIGTERM, self._handler)
            except (ValueError, OSError):
                self.previous = None
        return self

    def _handler(self, signum, frame):
        with _LIVE_LOCK:
            _unlink_quietly(_LIVE)
            _LIVE.clear()
        prev = self.previous
        if callable(prev):
            prev(signum, frame)
            return
        if prev == signal.SIG_IGN:
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def __exit__(self, *exc):
        if self.previous is not None:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, self.previous)
        return False


def _pieces(data):
    return data if isinstance(data, (list, tuple)) else (data,)


def _write_all(fd: int, data) -> None:
    with open(fd, "wb", closefd=False) as fh:
        for piece in _pieces(data):
            fh.write(piece)


def _nbytes(data) -> int:
    return sum(memoryview(p).nbytes for p in _pieces(data))


class OutputSet:
    """Files that replace their destinations together, or not at all.

    Usage::

        with OutputSet() as out:
            out.add("floatimage.bin", image)        # bytes, a contiguous array, or a list of them
            out.add("intimage.img", [header, data])
            out.commit()                             # leaving the block without commit discards

    ``add`` raises :class:`OutputError` naming the destination (not the
    temporary) when it cannot be written; the set is then discarded.
    """

    def __init__(self):
        self._items: list[tuple[str, str, str, object, object]] = []  # (path, kind, target, tmp|data, stat)
        self._targets: dict[str, str] = {}
        self._janitor: _Janitor | None = None
        self._guard = _SigtermCleanup()
        self._guarded = False
        self.committed = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self.committed:
            self.discard()
        return False

    def _track(self, tmp: str) -> None:
        if not self._guarded:
            self._guard.__enter__()
            self._guarded = True
        with _LIVE_LOCK:
            _LIVE.add(tmp)
        if self._janitor is None:
            self._janitor = _Janitor()
        self._janitor.watch(tmp)

    def add(self, path: str | os.PathLike, data) -> None:
        """Write ``data`` for ``path`` now (to a temporary; to the path itself only at commit)."""
        path = os.fspath(path)
        if self.committed:
            raise RuntimeError("OutputSet already committed")
        try:
            kind, target, st = _plan(path)
            if target in self._targets:
                raise OutputError(path, f"the same file is already an output ({self._targets[target]})")
            self._targets[target] = path
            if kind == "through":
                for piece in _pieces(data):
                    memoryview(piece)  # a TypeError now, not at commit
                self._items.append((path, kind, target, data, st))
                return
            directory = os.path.dirname(target) or "."
            base = os.path.basename(target)[:64]  # short: a legal long name leaves room for the suffix
            tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
            self._track(tmp)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
            except OSError as exc:
                self._forget(tmp)
                raise OutputError(path, _reason(exc), exc.errno) from None
            self._items.append((path, kind, target, tmp, st))
            try:
                _write_all(fd, data)
                mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_current_umask()
                os.fchmod(fd, mode)
            except OSError as exc:
                raise OutputError(path, _reason(exc), exc.errno) from None
            finally:
                os.close(fd)
        except BaseException:
            self.discard()
            raise

    def _forget(self, tmp: str) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(tmp)

    def commit(self) -> None:
        """Move every temporary over its destination, then write the in-place ones."""
        if self.committed:
            return
        done: list[tuple[str, str | None]] = []  # (target, backup or None) of replaced destinations
        try:
            for path, kind, target, tmp, st in self._items:
                if kind != "replace":
                    continue
                backup = None
                if st is not None:
                    backup = tmp + ".old"
                    self._track(backup)
                    try:
                        os.link(target, backup)
                    except OSError:
                        self._forget(backup)
                        backup = None  # no hard links here: a failed rename cannot be undone
                try:
                    os.replace(tmp, target)
                except OSError as exc:
                    if backup:
                        _unlink_quietly([backup])
                    raise OutputError(path, _reason(exc), exc.errno) from None
                self._forget(tmp)
                done.append((target, backup))
        except BaseException:
            for target, backup in reversed(done):  # put the earlier destinations back
                if backup:
                    with contextlib.suppress(OSError):
                        os.replace(backup, target)
                else:
                    _unlink_quietly([target])
            self.discard()
            raise
        _unlink_quietly(b for _, b in done if b)
        with _LIVE_LOCK:
            for _, b in done:
                _LIVE.discard(b)
        self.committed = True
        try:
            for path, kind, target, data, st in self._items:
                if kind == "through":
                    self._write_through(path, target, data, st)
        finally:
            self._finish()

    @staticmethod
    def _write_through(path, target, data, st) -> None:
        regular = st is not None and stat.S_ISREG(st.st_mode)
        try:
            fd = os.open(target, os.O_WRONLY | (0 if regular else os.O_TRUNC) | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise OutputError(path, _reason(exc), exc.errno) from None
        try:
            if regular:
                size = _nbytes(data)
                if hasattr(os, "posix_fallocate") and size > st.st_size:
                    os.posix_fallocate(fd, 0, size)  # a full disk fails here, before the old bytes change
                _write_all(fd, data)
                os.ftruncate(fd, size)
            else:
                _write_all(fd, data)
        except OSError as exc:
            raise OutputError(path, _reason(exc), exc.errno) from None
        finally:
            os.close(fd)

    def discard(self) -> None:
        """Remove every temporary; no destination is touched."""
        tmps = [t for _, kind, _, t, _ in self._items if kind == "replace"]
        _unlink_quietly(tmps)
        with _LIVE_LOCK:
            for t in tmps:
                _LIVE.discard(t)
        self._items = []
        self._finish()

    def _finish(self) -> None:
        if self._janitor is not None:
            self._janitor.release()
            self._janitor = None
        if self._guarded:
            self._guard.__exit__(None, None, None)
            self._guarded = False


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary file for writing that appears at ``path`` only on success.

    Usage::

        with atomic_open("image.smv") as fh:
            fh.write(header)
            fh.write(data)

    The bytes are gathered in memory and written with an :class:`OutputSet`
    of one file when the block ends without an exception.
    """
    import io

    buf = io.BytesIO()
    yield buf
    atomic_write(path, buf.getbuffer())


def atomic_write(path: str | os.PathLike, data) -> None:
    """Write ``data`` to ``path`` atomically (an :class:`OutputSet` of one file).

    ``data`` is bytes-like (bytes, a memoryview, a contiguous NumPy array) or
    a list or tuple of such pieces, written in order without joining them.
    """
    with OutputSet() as out:
        out.add(path, data)
        out.commit()
