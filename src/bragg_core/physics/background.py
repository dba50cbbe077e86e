"""Amorphous background of the water around the crystal."""

from __future__ import annotations

from ..units import AVOGADRO, R_E_SQR_M2

WATER_F = 2.57      # forward-scattering amplitude of one water molecule (electrons)
WATER_MW = 18.0     # g/mol


def water_intensity(water_size_m, fluence):
    """I_bg = F_w^2 r_e^2 fluence (size)^3 1e6 N_A / MW, per pixel before the final scale.

    The size is the edge of a cube of water (m); 1e6 g/m^3 is its density.
    The final pixel scale multiplies by r_e^2 fluence once more, so the
    background grows as fluence squared (the reference's convention).
    """
    return WATER_F * WATER_F * R_E_SQR_M2 * fluence * water_size_m ** 3 * 1e6 * AVOGADRO / WATER_MW
