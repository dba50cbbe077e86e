"""The flag table and the strict parsing of a nanoBragg-style argument list into :class:`Options`.

Parsing is strict: every flag is matched by its full name (or a listed
alias), takes a fixed number of values, and numbers must be numbers.  Errors
raise :class:`UsageError` naming the flag.  Turning the parsed flags into an
Experiment is :mod:`bragg_core.cli.args`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .detector_flags import SPEC as _DETECTOR_SPEC  # -psf ... -gain, -bg_stol ... -bg_molecules
from .format_flags import SPEC as _FORMAT_SPEC  # -nexusfile, -cbffile, -pngfile
from .panel_flags import SPEC as _PANEL_SPEC  # -expt, -exptfile, -geom, -nimages, -dials_header
from .sf_files import SPEC as _SF_SPEC  # -mtz, -mtz_column, -sfcif, -model, -bulk_solvent
from .validate import UsageError, check_value, parse_number

# flag -> (number of values, kind); kinds: f float, i int, s string, - no value
_SPEC: dict[str, tuple[int, str]] = {
    "-cell": (6, "f"), "-mat": (1, "s"), "-hkl": (1, "s"), "-default_F": (1, "f"),
    "-misset": (3, "misset"), "-misset_seed": (1, "i"), "-N": (1, "f"), "-Na": (1, "f"), "-Nb": (1, "f"),
    "-Nc": (1, "f"),
    "-xtalsize": (1, "f"), "-xtal_thick": (1, "f"), "-xtal_width": (1, "f"), "-xtal_height": (1, "f"),
    "-square_xtal": (0, "-"), "-round_xtal": (0, "-"), "-gauss_xtal": (0, "-"), "-tophat_spots": (0, "-"),
    "-fudge": (1, "f"), "-mosaic": (1, "f"), "-mosaic_dom": (1, "i"), "-mosaic_seed": (1, "i"),
    "-phi": (1, "f"), "-osc": (1, "f"), "-phistep": (1, "f"), "-phisteps": (1, "i"),
    "-interpolate": (0, "-"), "-nointerpolate": (0, "-"), "-dmin": (1, "f"),
    "-lambda": (1, "f"), "-energy": (1, "f"), "-dispersion": (1, "f"), "-dispsteps": (1, "i"),
    "-divergence": (1, "f"), "-hdivrange": (1, "f"), "-vdivrange": (1, "f"), "-hdivstep": (1, "f"),
    "-vdivstep": (1, "f"), "-hdivsteps": (1, "i"), "-vdivsteps": (1, "i"), "-divsteps": (1, "i"),
    "-round_div": (0, "-"), "-square_div": (0, "-"), "-sourcefile": (1, "s"),
    "-fluence": (1, "f"), "-flux": (1, "f"), "-exposure": (1, "f"), "-beamsize": (1, "f"),
    "-polar": (1, "f"), "-nopolar": (0, "-"), "-water": (1, "f"),
    "-distance": (1, "f"), "-close_distance": (1, "f"), "-detsize": (1, "f"), "-detsize_f": (1, "f"),
    "-detsize_s": (1, "f"), "-detpixels": (1, "i"), "-detpixels_f": (1, "i"), "-detpixels_s": (1, "i"),
    "-pixel": (1, "f"), "-Xbeam": (1, "f"), "-Ybeam": (1, "f"), "-Xclose": (1, "f"), "-Yclose": (1, "f"),
    "-ORGX": (1, "f"), "-ORGY": (1, "f"), "-pivot": (1, "s"),
    "-mosflm": (0, "-"), "-xds": (0, "-"), "-adxv": (0, "-"), "-denzo": (0, "-"), "-dials": (0, "-"),
    "-fdet_vector": (3, "f"), "-sdet_vector": (3, "f"), "-odet_vector": (3, "f"), "-beam_vector": (3, "f"),
    "-polar_vector": (3, "f"), "-spindle_axis": (3, "f"), "-twotheta_axis": (3, "f"), "-pix0_vector": (3, "f"),
    "-detector_rotx": (1, "f"), "-detector_roty": (1, "f"), "-detector_rotz": (1, "f"), "-twotheta": (1, "f"),
    "-curved_det": (0, "-"), "-point_pixel": (0, "-"),
    "-detector_abs": (1, "abs"), "-detector_thick": (1, "f"), "-detector_thicksteps": (1, "i"),
    "-oversample": (1, "i"), "-oversample_omega": (0, "-"), "-oversample_polar": (0, "-"),
    "-oversample_thick": (0, "-"), "-roi": (4, "i"), "-mask": (1, "s"), "-img": (1, "s"),
    "-floatfile": (1, "s"), "-intfile": (1, "s"), "-noisefile": (1, "s"), "-pgmfile": (1, "s"),
    "-scale": (1, "f"), "-pgmscale": (1, "f"), "-adc": (1, "f"), "-seed": (1, "i"),
    "-nonoise": (0, "-"), "-nopgm": (0, "-"), "-noprogress": (0, "-"), "-progress": (0, "-"),
    "-printout": (0, "-"), "-printout_pixel": (2, "i"), "-trace_pixel": (2, "i"), "-coherent": (0, "-"),
    "-backend": (1, "s"), "-device": (1, "s"), "-dtype": (1, "s"), "-memory_budget": (1, "f"),
    "-stol": (1, "s"), "-4stol": (1, "s"), "-Q": (1, "s"), "-stolout": (1, "s"),
    "-density": (1, "f"), "-MW": (1, "f"), "-run_report": (1, "s"), "-force": (0, "-"),
}
# the flags of the companion modules, each described beside the code that applies it
_SPEC.update(_SF_SPEC)
_SPEC.update(_PANEL_SPEC)
_SPEC.update(_FORMAT_SPEC)
_SPEC.update(_DETECTOR_SPEC)

ALIASES = {
    "-wave": "-lambda", "-floatimage": "-floatfile", "-intimage": "-intfile", "-noiseimage": "-noisefile",
    "-pgmimage": "-pgmfile", "-mosaic_spread": "-mosaic", "-mosaicity": "-mosaic",
    "-mosaic_domains": "-mosaic_dom", "-detector_absorb": "-detector_abs", "-thicksteps": "-detector_thicksteps",
    "-detpixels_x": "-detpixels_f", "-detpixels_y": "-detpixels_s", "-xtal_size": "-xtalsize",
    "-samplesize": "-xtalsize", "-sample_size": "-xtalsize", "-xtal_x": "-xtal_thick", "-xtal_y": "-xtal_width",
    "-xtal_z": "-xtal_height", "-sample_x": "-xtal_thick", "-sample_y": "-xtal_width", "-sample_z": "-xtal_height",
    "-sample_thick": "-xtal_thick", "-sample_width": "-xtal_width", "-sample_height": "-xtal_height",
    "-width": "-xtal_width", "-height": "-xtal_height", "-xtal_heigh": "-xtal_height", "-sample_heigh": "-xtal_height",
    "-sample_den": "-density", "-molecules": "-MW", "-mosaic_spr": "-mosaic",
    "-binary_spots": "-tophat_spots", "-dump_pixel": "-trace_pixel",
}


@dataclass
class Options:
    """Everything a command line asked for, in order-resolved form."""

    values: dict = field(default_factory=dict)   # flag -> parsed value(s) (last wins)
    from_header: set = field(default_factory=set)  # flags filled from an -img/-mask header
    order: list = field(default_factory=list)    # flags in order
    warnings: list = field(default_factory=list)
    mask_data: Any = None

    def has(self, flag):
        return flag in self.values

    def get(self, flag, default=None):
        return self.values.get(flag, default)


def _number(flag, text, kind):
    return parse_number(flag, text, whole=kind == "i")


HELP_FLAGS = ("-h", "--help", "-help")


def help_requested(argv: list[str]) -> bool:
    """Whether a help flag stands where a flag is due (not as the value of another flag)."""
    i = 0
    while i < len(argv):
        raw = argv[i]
        if raw in HELP_FLAGS:
            return True
        spec = _SPEC.get(ALIASES.get(raw, raw))
        if spec is None:
            i += 1
            continue
        n = spec[0]
        if spec[1] == "misset" and i + 1 < len(argv) and argv[i + 1].startswith("rand"):
            n = 1
        i += 1 + n
    return False


def parse_args(argv: list[str]) -> Options:
    """Parse an argument list strictly; unknown flags and missing values are errors."""
    opts = Options()
    i = 0
    argv = list(argv)
    while i < len(argv):
        raw = argv[i]
        if not raw.startswith("-") or raw in ("-", "--"):
            raise UsageError(f"unexpected argument {raw!r} (values must follow their flag)")
        flag = ALIASES.get(raw, raw)
        if flag not in _SPEC:
            raise UsageError(f"unknown option {raw}; see -h for the list of options")
        n, kind = _SPEC[flag]
        if kind == "misset":
            if i + 1 < len(argv) and argv[i + 1].startswith("rand"):
                opts.values[flag] = "random"
                opts.order.append(flag)
                i += 2
                continue
            n, kind = 3, "f"
        vals = argv[i + 1:i + 1 + n]
        if len(vals) < n or any(_looks_like_flag(v) for v in vals):
            raise UsageError(f"{raw} expects {n} value{'s' if n != 1 else ''}")
        if kind == "-":
            parsed = True
        elif kind == "s":
            parsed = vals[0]
        elif kind == "abs":
            parsed = math.inf if vals[0].lower().startswith("inf") else _number(raw, vals[0], "f")
            check_value(flag, parsed, raw)
        else:
            parsed = [_number(raw, v, kind) for v in vals]
            parsed = parsed[0] if n == 1 else parsed
            check_value(flag, parsed, raw)
        opts.values[flag] = parsed
        opts.order.append(flag)
        i += 1 + n
    return opts


def _looks_like_flag(text: str) -> bool:
    if not text.startswith("-") or len(text) < 2:
        return False
    try:
        float(text)
        return False
    except ValueError:
        return True


def _last_of(opts: Options, flags) -> str | None:
    """Which of ``flags`` was given last (None when none was)."""
    last = None
    for f in opts.order:
        if f in flags:
            last = f
    return last
