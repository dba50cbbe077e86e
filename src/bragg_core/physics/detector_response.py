"""Per-sub-pixel detector factors: solid angle and sensor capture fraction."""

from __future__ import annotations


def solid_angle(xp, airpath_m, pixel_size_m, close_distance_m, point_pixel: bool):
    """Pixel solid angle (sr): (p / R)^2 * (close distance / R); 1/R^2 for point pixels."""
    if point_pixel:
        return 1.0 / (airpath_m * airpath_m)
    return pixel_size_m * pixel_size_m / (airpath_m * airpath_m) * close_distance_m / airpath_m


def solid_angle_from_inverse(xp, inv_airpath, pixel_size_m, close_distance_m, point_pixel: bool):
    """The same solid angle from 1/R (per m), as the tile kernel holds it."""
    if point_pixel:
        return inv_airpath * inv_airpath
    return (pixel_size_m * pixel_size_m * close_distance_m) * (inv_airpath * inv_airpath) * inv_airpath


def capture_fraction(xp, layer, layer_step_m, mu_per_m, parallax):
    """Fraction of photons absorbed in sensor layer ``layer`` (0-based):

    exp(-t dz mu / c) - exp(-(t+1) dz mu / c), with c = diffracted . normal
    the obliquity of the ray through the sensor.
    """
    a = layer * layer_step_m * mu_per_m / parallax
    b = (layer + 1.0) * layer_step_m * mu_per_m / parallax
    return xp.exp(-a) - xp.exp(-b)
