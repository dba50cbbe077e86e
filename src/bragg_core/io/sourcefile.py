"""Reader for the ``-sourcefile`` text format (one X-ray source point per line).

Columns, in order: ``X Y Z weight lambda`` -- position of the source point in
metres (only its direction matters to the simulation), relative weight, and
wavelength in metres.  Columns are separated by any run of the characters
``" \\t,;:!"`` (as in the reference's ``read_text_file``); blank lines are
skipped.  Trailing columns may be omitted (or given as ``nan``); they then take
the reference's defaults: position ``-source_distance * beam_vector`` (10 m
up-stream of the sample), weight 1, wavelength ``lambda0``.

Deliberate differences from the reference reader, which converts tokens with
``atof`` and never fails:

* a token that is not a number raises :class:`SourceFileFormatError` naming
  the file and line (the reference silently reads it as 0, so a stray word
  creates a source at the origin with zero wavelength);
* more than five columns is an error (the reference ignores the extras);
* lines whose first character after the delimiters is ``#`` are comments;
* a last line without a newline gets the defaults like any other (the
  reference reads its missing columns as 0, i.e. a zero weight and wavelength);
* ``\\r`` before the newline is ignored (the reference reads a CRLF line's
  next missing column as 0).
"""

from __future__ import annotations

import math
import os
import re
from typing import NamedTuple

import numpy as np

from ._text import as_text, lines, parse_number, read_text

__all__ = ["SourceFileFormatError", "Sources", "read_sourcefile", "parse_sourcefile"]

_DELIMITERS = re.compile(r"[ \t,;:!]+")


class SourceFileFormatError(ValueError):
    """A malformed source file; the message names the file and line."""


class Sources(NamedTuple):
    """Source points read from a source file (NumPy float64 arrays)."""

    positions: np.ndarray  #: (n, 3) X, Y, Z in metres
    weights: np.ndarray  #: (n,) relative weights
    wavelengths: np.ndarray  #: (n,) wavelengths in metres


def parse_sourcefile(
    text: str | bytes,
    *,
    beam_vector=(1.0, 0.0, 0.0),
    source_distance: float = 10.0,
    wavelength: float = 1e-10,
    source: str = "<source text>",
) -> Sources:
    """Parse source-file text; see :func:`read_sourcefile` for the arguments."""
    rows = []
    for number, line in lines(as_text(text)):
        body = line
        tokens = [t for t in _DELIMITERS.split(body) if t]
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) > 5:
            raise SourceFileFormatError(
                f"{source}, line {number}: {len(tokens)} columns, at most 5 "
                f"(X Y Z weight lambda) allowed: {body!r}"
            )
        row = [math.nan] * 5
        for column, token in enumerate(tokens):
            value = parse_number(token)
            if value is None:
                raise SourceFileFormatError(
                    f"{source}, line {number}: {token!r} is not a number"
                )
            row[column] = value
        rows.append(row)
    if not rows:
        raise SourceFileFormatError(f"{source}: no sources found (empty file)")

    table = np.array(rows, dtype=np.float64)
    beam = np.asarray(beam_vector, dtype=np.float64).reshape(3)
    defaults = np.concatenate([-float(source_distance) * beam, [1.0, float(wavelength)]])
    table = np.where(np.isnan(table), defaults, table)
    return Sources(table[:, :3].copy(), table[:, 3].copy(), table[:, 4].copy())


def read_sourcefile(
    path: str | os.PathLike,
    *,
    beam_vector=(1.0, 0.0, 0.0),
    source_distance: float = 10.0,
    wavelength: float = 1e-10,
) -> Sources:
    """Read a source file.

    ``beam_vector`` is the unit incident-beam direction of the convention in use
    (``(1, 0, 0)`` for MOSFLM), ``source_distance`` in metres, and
    ``wavelength`` (``lambda0``) in metres; they supply the defaults for
    omitted columns.  Returns :class:`Sources` (positions before the
    simulation normalises them to unit vectors).
    """
    return parse_sourcefile(
        read_text(path),
        beam_vector=beam_vector,
        source_distance=source_distance,
        wavelength=wavelength,
        source=os.fspath(path),
    )
