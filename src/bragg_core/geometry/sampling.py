"""How many phi steps, divergence points, wavelengths, sensor layers and domains.

Each sampled dimension is described by a range, a step and a count, any of
which may be left unset (``None``); the missing ones are chosen as the
reference chooses them (``specs/geometry.md``, "Sampling").  These are plain
host-side decisions on Python numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_COUNT = 2**31 - 1  # the reference's counts are C ints


def _ceil_count(total: float, step: float, what: str) -> int:
    """ceil(total / step) as a count; a ratio no int can hold is an error naming the quantity."""
    ratio = total / step
    if not ratio <= MAX_COUNT:  # also catches inf and NaN
        from ..experiment import ExperimentError

        raise ExperimentError(f"{what}: a range of {total:g} in steps of {step:g} is more than "
                              f"{MAX_COUNT} steps")
    return int(math.ceil(ratio))


@dataclass(frozen=True)
class Steps:
    range: float
    step: float
    count: int


def _scalar(v):
    if v is None:
        return None
    try:
        return float(v)
    except TypeError:
        from .._backend import to_numpy

        return float(to_numpy(v))


def phi_steps(osc, step, count) -> Steps:
    """Spindle sweep: osc (range), step and count, in radians.

    A count alone covers one degree; an osc alone is split in two steps.
    """
    osc = -1.0 if osc is None else osc
    step = -1.0 if step is None else step
    count = -1 if count is None else count
    if count < 0:
        if osc < 0:
            if step <= 0:
                return Steps(0.0, 0.0, 1)
            return Steps(step, step, 2)
        if step <= 0:
            return Steps(osc, osc / 2.0, 2)
        return Steps(osc, step, _ceil_count(osc, step, "Crystal.phi_step_deg (phi steps over Crystal.osc_deg)"))
    if count == 0:
        count = 1
    if osc < 0:
        if step <= 0:
            osc = math.pi / 180.0
            return Steps(osc, osc / count, count)
        return Steps(step, step, 2)
    if step < 0:
        return Steps(osc, osc / count, count)
    return Steps(osc, step, count)


def range_steps(rng, step, count, *, default_range=1.0, count_alone_centred=False,
                what: str = "a sampled range") -> Steps:
    """Divergence and dispersion: range, step, count with the reference's auto-selection.

    With a range and a count, the step is range/(count-1) (centred grid); with
    a range and a step, count = ceil(range/step); a count alone spans
    ``default_range``.  A non-positive range or step ends as one point.
    """
    rng = -1.0 if rng is None else rng
    step = -1.0 if step is None else step
    count = -1 if count is None else count
    if count <= 0:
        if rng < 0:
            if step <= 0:
                out = Steps(0.0, 0.0, 1)
            else:
                out = Steps(step, step, 2)
        elif step <= 0:
            out = Steps(rng, rng, 2)
        else:
            out = Steps(rng, step, _ceil_count(rng, step, what))
    elif rng < 0:
        if step <= 0:
            out = Steps(default_range, default_range / count, count)
        else:
            out = Steps(step, step, 2)
    elif step <= 0:
        count = max(count, 2)
        out = Steps(rng, rng / (count - 1), count)
    else:
        out = Steps(rng, step, count)
    if out.range <= 0 or out.step <= 0 or out.count <= 0:
        return Steps(0.0, 0.0, 1)
    return out


def thickness_steps(thick, step, count) -> Steps:
    """Sensor layers: thickness, layer step and count (metres).

    A thickness alone gives two layers of half the thickness; thickness and
    count give a step of thickness/(count-1), so the last layer starts at the
    back face (the reference's layering).
    """
    thick = 0.0 if thick is None else thick
    step = -1.0 if step is None else step
    count = -1 if count is None else count
    if count <= 0:
        if thick < 0:
            out = Steps(0.0, 0.0, 1) if step <= 0 else Steps(step, step, 2)
        elif step <= 0:
            out = Steps(thick, thick / 2, 2)
        else:
            out = Steps(thick, step, _ceil_count(thick, step, "Detector.thickness_um (sensor layers)"))
    elif thick < 0:
        out = Steps(0.5e-6, 0.5e-6 / count, count) if step <= 0 else Steps(step, step, 2)
    elif step <= 0:
        count = max(count, 2)
        out = Steps(thick, thick / (count - 1), count)
    else:
        out = Steps(thick, step, count)
    if out.range <= 0 or out.step <= 0 or out.count <= 0:
        return Steps(0.0, 0.0, 1)
    return out


def mosaic_domains(spread, count):
    """(spread_rad, n_domains): a spread alone gives 10 domains, a count alone 1."""
    spread = -1.0 if spread is None else spread
    count = -1 if count is None else count
    warnings = []
    if count <= 0:
        if spread < 0:
            return 0.0, 1, warnings
        if spread == 0.0:
            return 0.0, 1, warnings
        warnings.append("finite mosaicity with only one domain: using 10 mosaic domains")
        return spread, 10, warnings
    if spread < 0:
        warnings.append("no mosaic spread given: using 1 mosaic domain")
        return 0.0, 1, warnings
    if spread == 0.0:
        warnings.append("zero mosaic spread: using 1 mosaic domain")
        return 0.0, 1, warnings
    return spread, count, warnings


def recommended_oversample(xtal_size_max_m: float, wavelength_m: float, distance_m: float,
                           pixel_m: float) -> int | None:
    """ceil(3 * largest crystal dimension / (lambda * distance / pixel)), at least 1; None where that is not
    a finite number (a zero distance: the detector plane passes through the sample)."""
    reciprocal_pixel = wavelength_m * distance_m / pixel_m
    n = 3.0 * xtal_size_max_m / reciprocal_pixel if reciprocal_pixel != 0 else math.inf
    if not math.isfinite(n):
        return None
    return max(int(math.ceil(n)), 1)
