"""Beam sources: divergence grid x spectral dispersion, or a source file.

Each source is an incident unit vector (pointing from the source through the
sample) and a wavelength in metres.  Divergence angles tilt the beam about the
polarization vector (vertical angle) and then about beam x polarization
(horizontal angle); with ``round_divergence`` the corners of the grid outside
the inscribed ellipse are dropped.  Source-file weights are read but, as in the
reference, every source counts equally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import host_only
from ..experiment import Beam, ExperimentError
from .sampling import Steps, range_steps
from .vectors import cross, rotate_axis, unit

SOURCE_DISTANCE_M = 10.0


@dataclass(frozen=True)
class Sources:
    incident: Any        # (K, 3) unit vectors along the incident beam
    wavelength_m: Any    # (K,)
    n_divergence: int
    hdiv: Steps
    vdiv: Steps
    disp: Steps
    offsets_rad: Any     # (n_divergence, 2) host array of (hdiv, vdiv) kept


def divergence_offsets(h: Steps, v: Steps, round_div: bool) -> np.ndarray:
    """(hdiv, vdiv) pairs of the grid, in row order, with the elliptical cut."""
    i = np.arange(h.count, dtype=np.float64)
    j = np.arange(v.count, dtype=np.float64)
    hd = h.step * i - h.range / 2.0
    vd = v.step * j - v.range / 2.0
    H, Vv = np.meshgrid(hd, vd, indexing="ij")
    with np.errstate(divide="ignore", invalid="ignore"):
        test = (H * H - h.step * h.step / 4.0 * (1 - h.count % 2)) / h.range / h.range
        test = test + (Vv * Vv - v.step * v.step / 4.0 * (1 - v.count % 2)) / v.range / v.range
        drop = round_div & (test * 4.0 > 1.1)  # NaN (a zero range) keeps the point
    keep = ~drop
    if not keep.any():  # the reference would divide by zero sources
        raise ExperimentError(
            f"Beam.hdiv_steps/vdiv_steps: the round divergence cut keeps none of the {h.count} x {v.count} "
            "grid points (one step spans the whole range); use at least 2 steps, or square divergence")
    return np.stack([H[keep], Vv[keep]], axis=-1)


def beam_sources(beam: Beam, beam_vec, polar_vec, g) -> Sources:
    """The list of sources for a beam, on the geometry context ``g``."""
    xp, A = g.xp, g.asarray
    lam0 = A(beam.wavelength_A) * 1e-10
    if beam.source_positions_m is not None:
        pos = A(beam.source_positions_m)
        lam = A(beam.source_wavelengths_A) * 1e-10
        incident = -unit(xp, pos)
        one = Steps(0.0, 0.0, 1)
        return Sources(incident, lam, int(pos.shape[0]), one, one, one, np.zeros((int(pos.shape[0]), 2)))

    mr = 1e-3
    # divergence and dispersion set the source grid on the host: not differentiable
    h = range_steps(_mr(beam.hdiv_range_mrad, "Beam.hdiv_range_mrad"),
                    _mr(beam.hdiv_step_mrad, "Beam.hdiv_step_mrad"), beam.hdiv_steps,
                    what="Beam.hdiv_step_mrad (horizontal divergence steps)")
    v = range_steps(_mr(beam.vdiv_range_mrad, "Beam.vdiv_range_mrad"),
                    _mr(beam.vdiv_step_mrad, "Beam.vdiv_step_mrad"), beam.vdiv_steps,
                    what="Beam.vdiv_step_mrad (vertical divergence steps)")
    d = range_steps(_frac(beam.dispersion_percent, "Beam.dispersion_percent"), None, beam.dispersion_steps)
    offs = divergence_offsets(h, v, beam.round_divergence)
    vert = unit(xp, cross(xp, beam_vec, polar_vec))
    toward_source = -SOURCE_DISTANCE_M * beam_vec
    hdiv = A(offs[:, 0])
    vdiv = A(offs[:, 1])
    tilted = rotate_axis(xp, toward_source, polar_vec, vdiv)
    tilted = rotate_axis(xp, tilted, vert, hdiv)                  # (D, 3)
    incident = -unit(xp, tilted)
    t = A(np.arange(d.count, dtype=np.float64))
    lam = lam0 * (1.0 + d.step * t - d.range / 2.0)               # (W,)
    n_div = int(offs.shape[0])
    incident = xp.reshape(xp.broadcast_to(incident[:, None, :], (n_div, d.count, 3)), (n_div * d.count, 3))
    lam = xp.reshape(xp.broadcast_to(lam[None, :], (n_div, d.count)), (n_div * d.count,))
    del mr
    return Sources(incident, lam, n_div, h, v, d, offs)


def _mr(v, what):
    return None if v is None else host_only(v, what) * 1e-3


def _frac(v, what):
    return None if v is None else host_only(v, what) / 100.0
