"""Standard output that survives a reader that goes away (``| head``, ``| grep -m1``).

The run's report lines are a courtesy; its files are the result.  When the
program reading standard output exits early, writing raises BrokenPipeError:
:func:`tolerant_stdout` swallows it, points the file descriptor at
``/dev/null`` (so that the interpreter's final flush is quiet too) and lets
the run finish and write its files, as the reference does.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["tolerant_stdout", "TolerantStream", "fail"]


class TolerantStream:
    """A text stream wrapper whose write and flush ignore a closed pipe."""

    def __init__(self, stream):
        self._stream = stream
        self.broken = False

    def _gone(self) -> None:
        self.broken = True
        with contextlib.suppress(Exception):
            fd = self._stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)

    def write(self, text):
        if self.broken:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self):
        if self.broken:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def tolerant_stdout():
    """Within the block, ``sys.stdout`` ignores a closed pipe (restored afterwards)."""
    before = sys.stdout
    if before is None or isinstance(before, TolerantStream):
        yield before
        return
    sys.stdout = TolerantStream(before)
    try:
        yield sys.stdout
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        sys.stdout = before


def fail(msg: str, code: int = 2) -> int:
    """Print the one-line error of a run on stderr and return its exit status."""
    print(f"bragg_core: error: {msg}", file=sys.stderr)
    return code
