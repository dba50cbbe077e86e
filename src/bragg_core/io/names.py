"""Names of the files of a series: runs of ``#`` in a template become the image number."""

from __future__ import annotations

import re

__all__ = ["image_name", "dials_template"]

_RUN = re.compile(r"#+")


def image_name(template: str, number: int) -> str:
    """``template`` with every run of ``#`` replaced by ``number`` (1-based) zero-padded to the run's length.

    A number with more digits than a run has is written in full.
    """
    if number < 0:
        raise ValueError(f"image number must not be negative, got {number}")
    return _RUN.sub(lambda m: f"{number:0{len(m.group(0))}d}", template)


def dials_template(template: str) -> str:
    """The name as a DIALS template: the last run of ``#`` stays, earlier ones become image 1's digits."""
    runs = list(_RUN.finditer(template))
    if not runs:
        return template
    last = runs[-1]
    head = image_name(template[:last.start()], 1)
    return head + template[last.start():]
