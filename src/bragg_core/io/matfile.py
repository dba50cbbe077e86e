"""Reader for MOSFLM orientation matrix files (``-mat``).

The first three lines of a MOSFLM ``.mat`` file hold the 3x3 "A matrix"
whose **columns** are the reciprocal vectors a*, b*, c* multiplied by the
wavelength (dimensionless: 1/Å times Å): line ``i`` holds the ``i``-th Cartesian
component of a*, b* and c*.  Later lines (missetting angles, U matrix, cell)
are ignored, as the reference ignores them.

The reference scans the numbers with ``fscanf`` free-format and divides by the
wavelength (multiplies by ``1e-10/lambda0``, ``lambda0`` in metres).  This
reader is line-based: blank lines before the matrix are skipped, and each of
the three matrix lines must hold exactly three numbers, otherwise
:class:`MatFormatError` names the file and line.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ._text import as_text, lines, parse_number, read_text

__all__ = ["MatFormatError", "read_mosflm_matrix", "parse_mosflm_matrix",
           "reciprocal_vectors_from_mosflm"]

_SPACE = re.compile(r"[ \t\r\f\v]+")


class MatFormatError(ValueError):
    """A malformed MOSFLM matrix file; the message names the file and line."""


def parse_mosflm_matrix(text: str | bytes, *, source: str = "<mat text>") -> np.ndarray:
    """Parse MOSFLM matrix text; see :func:`read_mosflm_matrix`."""
    rows = []
    for number, line in lines(as_text(text)):
        body = line.strip(" \t\r\f\v")
        if not body:
            continue
        tokens = _SPACE.split(body)
        values = [parse_number(t) for t in tokens]
        if len(tokens) != 3 or None in values:
            raise MatFormatError(
                f"{source}, line {number}: expected 3 numbers (a row of the A matrix), "
                f"got {body!r}"
            )
        rows.append(values)
        if len(rows) == 3:
            break
    else:
        raise MatFormatError(
            f"{source}: found {len(rows)} of the 3 lines of the orientation matrix"
        )
    # The file's columns are a*, b*, c*; return them as rows.
    return np.array(rows, dtype=np.float64).T.copy()


def read_mosflm_matrix(path: str | os.PathLike) -> np.ndarray:
    """Read the orientation matrix of a MOSFLM ``.mat`` file.

    Returns a float64 array of shape (3, 3) whose **rows** are a*, b*, c*
    (Cartesian components), still multiplied by the wavelength as in the file
    (dimensionless).  Use :func:`reciprocal_vectors_from_mosflm` to get Å⁻¹.
    """
    return parse_mosflm_matrix(read_text(path), source=os.fspath(path))


def reciprocal_vectors_from_mosflm(matrix, wavelength_A: float) -> np.ndarray:
    """Reciprocal vectors a*, b*, c* (rows, in Å⁻¹) from a wavelength-scaled matrix.

    ``matrix`` is what :func:`read_mosflm_matrix` returns and ``wavelength_A``
    the wavelength in Å that the matrix was scaled with.  The arithmetic is the
    reference's: ``lambda0 = wavelength_A / 1e10`` metres, then each component
    times ``1e-10 / lambda0``, so the results are bit-identical to it.
    """
    lambda0 = float(wavelength_A) / 1e10
    return np.asarray(matrix, dtype=np.float64) * (1e-10 / lambda0)
