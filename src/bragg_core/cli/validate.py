"""Type, finiteness and range of every number on the command line, checked before any work.

One table says, for each numeric flag, whether it takes whole numbers and
which values it accepts.  The bounds are wide (several orders of magnitude
beyond any real experiment) and exist so that no later arithmetic overflows
or divides by zero: a value outside them is refused with one sentence naming
the flag, the value and the accepted range.  The physical consistency of the
values together (a cell with zero volume, a wavelength that dispersion drives
to zero) is checked by :mod:`bragg_core.experiment`; :data:`FIELD_FLAGS` lets
the command line name the flag when such a check fails.
"""

from __future__ import annotations

import math
import os

__all__ = ["UsageError", "INT_MAX", "check_value", "parse_number", "FIELD_FLAGS", "flag_for_message"]


class UsageError(ValueError):
    """A command line that cannot be run; the message names the flag or file."""


INT_MAX = 2**31 - 1          # the reference stores counts, seeds and pixel indices in C ints
SEED64 = 2**63               # -seed is a long in the reference

# flag -> (low, high, low_inclusive); values are in the flag's own unit.
_BIG = 1e30                  # plain magnitudes: no product of a few of them overflows float64
_RANGES: dict[str, tuple[float, float, bool]] = {
    # whole numbers
    "-detpixels": (1, INT_MAX, True), "-detpixels_f": (1, INT_MAX, True), "-detpixels_s": (1, INT_MAX, True),
    "-misset_seed": (-INT_MAX, INT_MAX, True), "-mosaic_seed": (-INT_MAX, INT_MAX, True),
    "-seed": (-SEED64, SEED64 - 1, True),
    "-mosaic_dom": (0, INT_MAX, True), "-phisteps": (0, INT_MAX, True), "-dispsteps": (0, INT_MAX, True),
    "-hdivsteps": (0, INT_MAX, True), "-vdivsteps": (0, INT_MAX, True), "-divsteps": (0, INT_MAX, True),
    "-detector_thicksteps": (0, INT_MAX, True), "-oversample": (0, INT_MAX, True),
    "-roi": (-INT_MAX, INT_MAX, True), "-printout_pixel": (-INT_MAX, INT_MAX, True),
    "-trace_pixel": (-INT_MAX, INT_MAX, True),
    # lengths and counts of the crystal
    "-cell": (0.0, 1e9, False),          # lengths in Angstrom (angles are checked by the Experiment)
    "-N": (-INT_MAX, INT_MAX, True), "-Na": (-INT_MAX, INT_MAX, True),
    "-Nb": (-INT_MAX, INT_MAX, True), "-Nc": (-INT_MAX, INT_MAX, True),
    "-xtalsize": (0.0, 1e6, True), "-xtal_thick": (0.0, 1e6, True), "-xtal_width": (0.0, 1e6, True),
    "-xtal_height": (0.0, 1e6, True),
    "-fudge": (0.0, _BIG, False), "-default_F": (0.0, _BIG, True), "-dmin": (0.0, 1e9, True),
    "-mosaic": (0.0, 1e6, True), "-phi": (-1e6, 1e6, True), "-osc": (-1e6, 1e6, True),
    "-phistep": (-1e6, 1e6, True), "-misset": (-1e6, 1e6, True),
    # beam
    "-lambda": (1e-6, 1e6, True), "-energy": (1e-2, 1e10, True), "-dispersion": (0.0, 200.0, True),
    "-divergence": (0.0, 1e6, True), "-hdivrange": (0.0, 1e6, True), "-vdivrange": (0.0, 1e6, True),
    "-hdivstep": (0.0, 1e6, True), "-vdivstep": (0.0, 1e6, True),
    "-fluence": (0.0, 1e40, True), "-flux": (0.0, 1e40, True), "-exposure": (0.0, 1e12, True),
    "-beamsize": (0.0, 1e9, True), "-polar": (-1e6, 1e6, True), "-water": (0.0, 1e9, True),
    # detector (mm, degrees, micrometres)
    "-distance": (1e-6, 1e9, True), "-close_distance": (1e-6, 1e9, True),
    "-detsize": (0.0, 1e9, False), "-detsize_f": (0.0, 1e9, False), "-detsize_s": (0.0, 1e9, False),
    "-pixel": (1e-6, 1e6, True), "-Xbeam": (-1e9, 1e9, True), "-Ybeam": (-1e9, 1e9, True),
    "-Xclose": (-1e9, 1e9, True), "-Yclose": (-1e9, 1e9, True), "-ORGX": (-1e12, 1e12, True),
    "-ORGY": (-1e12, 1e12, True),
    "-detector_rotx": (-1e6, 1e6, True), "-detector_roty": (-1e6, 1e6, True),
    "-detector_rotz": (-1e6, 1e6, True), "-twotheta": (-1e6, 1e6, True),
    "-detector_thick": (0.0, 1e9, True), "-detector_abs": (0.0, math.inf, True),
    # outputs and run
    "-scale": (-_BIG, _BIG, True), "-pgmscale": (-_BIG, _BIG, True), "-adc": (-1e9, 1e9, True),
    "-memory_budget": (1.0, 2.0**40, True),
}
_VECTOR = (-1e12, 1e12, True)
for _f in ("-fdet_vector", "-sdet_vector", "-odet_vector", "-beam_vector", "-polar_vector",
           "-spindle_axis", "-twotheta_axis", "-pix0_vector"):
    _RANGES[_f] = _VECTOR
_DEFAULT = (-_BIG, _BIG, True)


def parse_number(flag: str, text: str, whole: bool):
    """``text`` as a float (or an int when ``whole``): finite, never NaN; else UsageError naming the flag."""
    what = "an integer" if whole else "a number"
    try:
        v = float(text)
    except ValueError:
        raise UsageError(f"{flag} expects {what}, got {text!r}") from None
    if not math.isfinite(v):
        if flag == "-detector_abs" and v == math.inf:
            return v
        raise UsageError(f"{flag} expects a finite number, got {text!r}")
    if whole:
        if v != math.floor(v):
            raise UsageError(f"{flag} expects an integer, got {text!r}")
        try:  # exact for integer literals beyond 2**53
            return int(text.strip())
        except ValueError:
            return int(v)
    return v


def _fmt(x) -> str:
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e16):
        return str(int(x))
    return "inf" if x == math.inf else f"{x:g}"


def check_value(flag: str, value, shown: str | None = None) -> None:
    """Raise UsageError when ``value`` (a number or a list of them) is outside the flag's range.

    ``flag`` is the canonical name (it selects the range), ``shown`` the
    spelling the user typed (it names the flag in the message).
    """
    shown = shown or flag
    lo, hi, lo_incl = _RANGES.get(flag, _DEFAULT)
    vals = value if isinstance(value, list) else [value]
    if flag == "-cell":
        vals = vals[:3]  # the angles: the Experiment says which are impossible
    for x in vals:
        if not isinstance(x, (int, float)) or isinstance(x, bool):
            continue
        if flag == "-dispersion" and x >= hi:
            raise UsageError(f"{shown} {_fmt(x)} gives a wavelength of zero or less; "
                             "it must be below 200 (percent)")
        below = x < lo or (x == lo and not lo_incl)
        if below or x > hi:
            lower = "above" if not lo_incl else "from"
            upper = "to" if lo_incl else "up to"
            sign = "positive, " if lo > 0 and x <= 0 else ""
            raise UsageError(f"{shown} must be {sign}{lower} {_fmt(lo)} {upper} {_fmt(hi)}, got {_fmt(x)}")


# Experiment fields -> the flag that sets them (for messages of the physical checks)
FIELD_FLAGS = {
    "Beam.wavelength_A": "-lambda", "Beam.fluence_photons_per_m2": "-fluence", "Beam.beam_size_mm": "-beamsize",
    "Beam.kahn_factor": "-polar", "Beam.dispersion_percent": "-dispersion", "Beam.dispersion_steps": "-dispsteps",
    "Beam.hdiv_range_mrad": "-hdivrange", "Beam.vdiv_range_mrad": "-vdivrange",
    "Beam.hdiv_step_mrad": "-hdivstep", "Beam.vdiv_step_mrad": "-vdivstep", "Beam.hdiv_steps": "-hdivsteps",
    "Beam.vdiv_steps": "-vdivsteps", "Beam.water_size_um": "-water", "Beam.source_positions_m": "-sourcefile",
    "Beam.source_wavelengths_A": "-sourcefile",
    "Detector.fpixels": "-detpixels_f", "Detector.spixels": "-detpixels_s", "Detector.pixel_size_mm": "-pixel",
    "Detector.distance_mm": "-distance", "Detector.close_distance_mm": "-close_distance",
    "Detector.beam_center_mm": "-Xbeam/-Ybeam", "Detector.close_point_mm": "-Xclose/-Yclose",
    "Detector.xds_origin_px": "-ORGX/-ORGY", "Detector.rotation_deg": "-detector_rotx/y/z",
    "Detector.twotheta_deg": "-twotheta", "Detector.fdet_vector": "-fdet_vector",
    "Detector.sdet_vector": "-sdet_vector", "Detector.odet_vector": "-odet_vector",
    "Detector.beam_vector": "-beam_vector", "Detector.polar_vector": "-polar_vector",
    "Detector.spindle_axis": "-spindle_axis", "Detector.twotheta_axis": "-twotheta_axis",
    "Detector.thickness_um": "-detector_thick", "Detector.thickness_steps": "-detector_thicksteps",
    "Detector.attenuation_depth_um": "-detector_abs", "Detector.oversample": "-oversample",
    "Detector.roi": "-roi", "Detector.mask": "-mask",
    "Crystal.cell_A_deg": "-cell", "Crystal.reciprocal_vectors_per_A": "-mat", "Crystal.misset_deg": "-misset",
    "Crystal.N_cells": "-N/-Na/-Nb/-Nc", "Crystal.size_mm": "-xtalsize", "Crystal.fudge": "-fudge",
    "Crystal.mosaic_spread_deg": "-mosaic", "Crystal.mosaic_domains": "-mosaic_dom",
    "Crystal.phi_start_deg": "-phi", "Crystal.osc_deg": "-osc", "Crystal.phi_step_deg": "-phistep",
    "Crystal.phi_steps": "-phisteps", "Crystal.default_F": "-default_F", "Crystal.dmin_A": "-dmin",
    "Crystal.structure_factors": "-hkl",
}


def flag_for_message(message: str) -> str:
    """An Experiment message with each field name followed by the flag that sets it."""
    for fld, flag in FIELD_FLAGS.items():
        if fld in message:
            message = message.replace(fld, f"{flag} ({fld})", 1)
            break
    return message


class NonFiniteImage(ValueError):
    """A rendered image holding NaN or infinite pixels; the message names the inputs that scale it."""


def check_finite(image, exp, dtype: str = "float64") -> None:
    """Raise :class:`NonFiniteImage` when the image (a host array) holds NaN or inf.

    The inputs checked before the run (finite values, positive wavelengths,
    finite structure factors, dispersion below 200 %) cannot produce them, so
    what is left is overflow: an intensity beyond the largest float32 the
    files hold (3.4e38).  The message lists the inputs that set the scale.
    """
    import numpy as np

    arr = np.asarray(image)
    bad = ~np.isfinite(arr)
    if not bad.any():
        return
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(bad.sum()) - n_nan
    cr, beam = exp.crystal, exp.beam
    sf = "-hkl amplitudes" if cr.structure_factors is not None else f"-default_F {cr.default_F}"
    what = []
    if n_inf:
        what.append(f"{n_inf} infinite")
    if n_nan:
        what.append(f"{n_nan} NaN")
    raise NonFiniteImage(
        f"the image holds {' and '.join(what)} pixels of {arr.size}: the intensity overflows the float32 "
        f"files (above 3.4e38); it scales with -fluence/-flux ({beam.fluence_photons_per_m2:g} photons/m^2), "
        f"the structure factors squared ({sf}), the cell counts to the sixth power (-N {tuple(cr.N_cells)}) "
        f"and -fudge; lower them (no file was written)")


def read_flag_file(flag: str, reader, path: str, *args, warnings_out: list | None = None, **kwargs):
    """Call a file reader; turn its failures into a UsageError naming the flag and file.

    The reader's warnings (a rounded Miller index) are returned as WARNING
    lines in ``warnings_out`` rather than printed by Python next to an error.
    """
    import warnings as _warnings

    try:
        with _warnings.catch_warnings(record=True) as caught:
            _warnings.simplefilter("always")
            out = reader(path, *args, **kwargs)
        if warnings_out is not None:
            warnings_out.extend(str(w.message) for w in caught)
        return out
    except OSError as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def flag_path(cwd, p):
    """A path given on the command line, relative to the run's folder unless absolute."""
    return p if os.path.isabs(p) else os.path.join(cwd, p)
