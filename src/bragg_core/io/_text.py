"""Small helpers shared by the text-format readers (private)."""

from __future__ import annotations

import os
import re

# A decimal number as C's strtod/%lg accepts it (hexadecimal floats aside), and
# nothing else: Python's float() would also take "1_000" and surrounding space.
_NUMBER = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)\Z",
    re.IGNORECASE,
)


def parse_number(token: str) -> float | None:
    """``float(token)`` if ``token`` is a plain decimal number, else ``None``."""
    if _NUMBER.match(token) is None:
        return None
    return float(token)


def as_text(data: str | bytes) -> str:
    """Text of ``data``; bytes are decoded as UTF-8 with bad bytes replaced.

    A binary file thus surfaces as a format error naming the offending line
    rather than as a :class:`UnicodeDecodeError`.
    """
    if isinstance(data, str):
        return data
    return bytes(data).decode("utf-8", errors="replace")


def read_text(path: str | os.PathLike) -> str:
    """The whole file at ``path`` as text (see :func:`as_text`)."""
    with open(path, "rb") as fh:
        return as_text(fh.read())


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``; an unreadable file is an :class:`OSError` whose message names it."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise OSError(exc.errno, f"cannot read {path}: {exc.strerror}") from None


def lines(text: str):
    """Yield ``(line_number, line)`` with 1-based numbers; only ``\\n`` ends a line."""
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.rstrip("\r")
