"""nanoBragg-style argument lists -> an Experiment plus output and run options.

Parsing is strict: every flag is matched by its full name (or a listed
alias), takes a fixed number of values, and numbers must be numbers.  Errors
raise :class:`UsageError` naming the flag.  The reference's precedence rules
are kept where they are conventions rather than accidents (``specs/cli.md``):
the convention fixes the pivot, only ``-custom`` geometry (any of the
``-*_vector`` flags) honours ``-pivot`` and the pivot side effects of
``-distance``/``-Xbeam``/``-Xclose``/``-ORGX``/``-close_distance``/``-twotheta``
(the last one given wins), and the last of repeated flags wins.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..experiment import Beam, Crystal, Detector, Experiment, ExperimentError
from .validate import INT_MAX, UsageError, check_value, flag_for_message, parse_number

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
from .sf_files import SPEC as _SF_SPEC  # noqa: E402  (-mtz, -mtz_column, -sfcif, -model, -bulk_solvent)

_SPEC.update(_SF_SPEC)
from .panel_flags import SPEC as _PANEL_SPEC  # noqa: E402  (-expt, -exptfile, -geom, -nimages, -dials_header)

_SPEC.update(_PANEL_SPEC)
from .format_flags import SPEC as _FORMAT_SPEC  # noqa: E402  (-nexusfile, -cbffile, -pngfile)

_SPEC.update(_FORMAT_SPEC)
from .detector_flags import SPEC as _DETECTOR_SPEC  # noqa: E402  (-psf ... -gain, -bg_stol ... -bg_molecules)

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
_CONVENTION_FLAGS = ("-mosflm", "-xds", "-adxv", "-denzo", "-dials")
_CUSTOM_VECTORS = ("-fdet_vector", "-sdet_vector", "-odet_vector", "-beam_vector", "-polar_vector",
                   "-spindle_axis", "-twotheta_axis", "-pix0_vector")
_PIVOT_BEAM = ("-distance", "-Xbeam", "-Ybeam")
_PIVOT_SAMPLE = ("-Xclose", "-Yclose", "-ORGX", "-ORGY", "-close_distance", "-twotheta")


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
    last = None
    for f in opts.order:
        if f in flags:
            last = f
    return last


@dataclass
class RunConfig:
    experiment: Experiment
    outputs: dict
    backend: str | None
    device: str | None
    dtype: str
    seed: int
    adc: float
    scale: float
    pgmscale: float
    write_noise: bool
    write_pgm: bool
    progress: bool
    memory_budget: int | None
    fdump_written_from: Any
    warnings: list
    trace_pixels: list = field(default_factory=list)   # (slow, fast) pixels to print every intermediate of
    panels: Any = None        # MultiPanelDetector from -expt/-geom (cli/panel_flags.py), else None
    nimages: int = 1          # -nimages
    exptfile: Any = None      # -exptfile
    dials_header: bool = False  # -dials_header
    formats: Any = None       # -nexusfile/-cbffile/-pngfile writers (cli/format_flags.py), else None
    detector_model: Any = None  # DetectorModel from -psf/-readout/... (cli/detector_flags.py), else None
    background: Any = None    # amorphous background from -bg_stol ... (cli/detector_flags.py), else None
    output_set: Any = None    # an io.atomic.OutputSet shared by every image of a series, committed at its end
    float_parts: Any = None   # a list that takes the float image instead of -floatfile (panels joined in one file)
    series_state: Any = None  # a dict shared by the images of a one-panel series: the previous image's setup


def build_config(opts: Options, cwd: str = ".") -> RunConfig:
    """Turn parsed options into an Experiment and output settings (reads input files).

    A value the Experiment refuses is reported with the flag that set it.
    """
    try:
        return _build_config(opts, cwd)
    except ExperimentError as exc:
        raise UsageError(flag_for_message(str(exc))) from None


def _build_config(opts: Options, cwd: str = ".") -> RunConfig:
    """Turn parsed options into an Experiment and output settings (reads input files)."""
    from .. import units
    from ..io import read_fdump, read_hkl, read_mosflm_matrix, read_sourcefile

    warnings = list(opts.warnings)
    _ingest_headers(opts, cwd, warnings)
    v = opts.get
    for flag in ("-stol", "-4stol", "-Q", "-stolout", "-coherent", "-density", "-MW"):
        if opts.has(flag) and flag not in opts.from_header:
            warnings.append(f"{flag} has no effect on the image (as in the reference)")

    # convention and pivot
    conv_flag = _last_of(opts, _CONVENTION_FLAGS + _CUSTOM_VECTORS)
    convention = "mosflm"
    if conv_flag in _CUSTOM_VECTORS:
        convention = "custom"
    elif conv_flag is not None:
        convention = conv_flag[1:]
    if opts.has("-pix0_vector"):
        warnings.append("-pix0_vector has no effect: the detector origin follows from the beam centre")
    pivot = None
    if convention == "custom":
        typed = Options(order=[f for f in opts.order if f not in opts.from_header])
        last = _last_of(typed, _PIVOT_BEAM + _PIVOT_SAMPLE + ("-pivot",))
        if last == "-pivot":
            p = v("-pivot")
            if p not in ("beam", "sample"):
                raise UsageError(f"-pivot expects 'beam' or 'sample', got {p!r}")
            pivot = p
        elif last in _PIVOT_SAMPLE:
            pivot = "sample"
        else:
            pivot = "beam"

    # detector size
    pixel = v("-pixel", 0.1)
    fp = sp = None
    if opts.has("-detpixels"):
        fp = sp = v("-detpixels")
    if opts.has("-detpixels_f"):
        fp = v("-detpixels_f")
    if opts.has("-detpixels_s"):
        sp = v("-detpixels_s")
    detsize_f = v("-detsize_f", v("-detsize", 102.4))
    detsize_s = v("-detsize_s", v("-detsize", 102.4))
    for name, size in (("fp", detsize_f), ("sp", detsize_s)):
        if (fp if name == "fp" else sp) is not None:
            continue
        count = math.ceil(size / pixel - 0.5)
        if not 1 <= count <= INT_MAX:
            which = "-detsize_f" if name == "fp" and opts.has("-detsize_f") else \
                "-detsize_s" if name == "sp" and opts.has("-detsize_s") else "-detsize"
            raise UsageError(f"{which} {size:g} mm with -pixel {pixel:g} mm gives {count} pixels; "
                             "give -detpixels or a larger size")
        if name == "fp":
            fp = int(count)
        else:
            sp = int(count)

    # beam
    lam = v("-lambda", 1.0)
    if opts.has("-energy"):
        e = v("-energy")
        if e <= 0:
            raise UsageError(f"-energy must be positive, got {e:g}")
        lam = units.energy_eV_to_wavelength_A(e)
    if _last_of(opts, ("-lambda", "-energy")) == "-lambda":
        lam = v("-lambda")
    fluence = v("-fluence", None)
    flux, exposure, beamsize_mm = v("-flux", 0.0), v("-exposure", 1.0), v("-beamsize", 0.1)
    from ..units import DEFAULT_FLUENCE_PHOTONS_PER_M2

    if fluence is None:
        fluence = DEFAULT_FLUENCE_PHOTONS_PER_M2
    if flux != 0.0 and exposure > 0.0 and beamsize_mm >= 0:
        side_m = units.mm_to_m(beamsize_mm)
        if side_m * side_m == 0:
            raise UsageError("-beamsize must be positive when -flux is given")
        try:
            fluence = units.fluence_from_flux(flux, exposure, side_m)
        except ValueError as exc:
            raise UsageError(f"-flux/-exposure/-beamsize: {exc}") from None
        if not math.isfinite(fluence) or fluence > 1e40:
            raise UsageError(f"-flux {flux:g} x -exposure {exposure:g} over -beamsize {beamsize_mm:g} mm "
                             f"gives a fluence of {fluence:g} photons/m^2, beyond 1e40")
    hdr = v("-hdivrange", v("-divergence"))
    vdr = v("-vdivrange", v("-divergence"))
    if opts.has("-divergence"):
        last = _last_of(opts, ("-divergence", "-hdivrange"))
        hdr = v("-divergence") if last == "-divergence" else v("-hdivrange")
        last = _last_of(opts, ("-divergence", "-vdivrange"))
        vdr = v("-divergence") if last == "-divergence" else v("-vdivrange")
    hds = v("-hdivsteps", v("-divsteps"))
    vds = v("-vdivsteps", v("-divsteps"))

    # sources from a file: default positions along the convention's beam vector
    src_pos = src_lam = None
    if opts.has("-sourcefile"):
        from ..geometry.detector import CONVENTION_VECTORS

        bvec = v("-beam_vector") if convention == "custom" and opts.has("-beam_vector") else \
            CONVENTION_VECTORS[convention]["beam"]
        s = _read("-sourcefile", read_sourcefile, _path(cwd, v("-sourcefile")), beam_vector=tuple(bvec),
                  wavelength=units.angstrom_to_m(lam))
        src_pos, src_lam = s.positions, units.m_to_angstrom(s.wavelengths)

    beam = Beam(
        wavelength_A=lam, fluence_photons_per_m2=fluence, beam_size_mm=beamsize_mm,
        kahn_factor=v("-polar", 0.0), polarization_correction=not (opts.has("-nopolar") and
                                                                  _last_of(opts, ("-nopolar", "-polar")) == "-nopolar"),
        dispersion_percent=v("-dispersion", 0.0), dispersion_steps=v("-dispsteps"),
        hdiv_range_mrad=hdr, vdiv_range_mrad=vdr, hdiv_step_mrad=v("-hdivstep"), vdiv_step_mrad=v("-vdivstep"),
        hdiv_steps=hds, vdiv_steps=vds,
        round_divergence=_last_of(opts, ("-round_div", "-square_div")) != "-square_div",
        source_positions_m=src_pos, source_wavelengths_A=src_lam, water_size_um=v("-water", 0.0),
    )

    # detector
    rot = (v("-detector_rotx", 0.0), v("-detector_roty", 0.0), v("-detector_rotz", 0.0))
    thick = v("-detector_thick", 0.0)
    absd = v("-detector_abs")
    beam_center = None
    if opts.has("-Xbeam") or opts.has("-Ybeam"):
        beam_center = (v("-Xbeam"), v("-Ybeam"))
    close_point = None
    if opts.has("-Xclose") or opts.has("-Yclose"):
        close_point = (v("-Xclose"), v("-Yclose"))
    org = None
    if opts.has("-ORGX") or opts.has("-ORGY"):
        org = (v("-ORGX"), v("-ORGY"))
    roi = None
    if opts.has("-roi"):
        roi = tuple(int(x) for x in v("-roi"))
    mask = getattr(opts, "mask_data", None)
    det_kwargs = dict(
        fpixels=fp, spixels=sp, pixel_size_mm=pixel,
        distance_mm=v("-distance", 100.0), close_distance_mm=v("-close_distance"),
        convention=convention, pivot=pivot,
        beam_center_mm=None if beam_center is None else _pair(beam_center),
        close_point_mm=None if close_point is None else _pair(close_point),
        xds_origin_px=None if org is None else _pair(org),
        rotation_deg=rot, twotheta_deg=v("-twotheta", 0.0),
        fdet_vector=v("-fdet_vector"), sdet_vector=v("-sdet_vector"), odet_vector=v("-odet_vector"),
        beam_vector=v("-beam_vector"), polar_vector=v("-polar_vector"), spindle_axis=v("-spindle_axis"),
        twotheta_axis=v("-twotheta_axis"), curved=opts.has("-curved_det"), point_pixel=opts.has("-point_pixel"),
        thickness_um=thick, thickness_steps=v("-detector_thicksteps"), attenuation_depth_um=absd,
        oversample=v("-oversample"), oversample_omega=opts.has("-oversample_omega"),
        oversample_polar=opts.has("-oversample_polar"), oversample_thick=opts.has("-oversample_thick"),
        roi=roi, mask=mask,
    )
    det_kwargs = _fill_pairs(det_kwargs)

    # crystal
    shape = "square"
    last_shape = _last_of(opts, ("-square_xtal", "-round_xtal", "-gauss_xtal", "-tophat_spots"))
    if last_shape:
        shape = {"-square_xtal": "square", "-round_xtal": "round", "-gauss_xtal": "gauss",
                 "-tophat_spots": "tophat"}[last_shape]
    N = [1.0, 1.0, 1.0]
    for f in opts.order:
        if f == "-N":
            N = [v("-N")] * 3
        elif f in ("-Na", "-Nb", "-Nc"):
            N["abc".index(f[-1])] = v(f)
    N = [float(int(n)) for n in N]  # cell counts are whole numbers on the command line
    size = None
    sx = sy = sz = 0.0
    for f in opts.order:
        if f == "-xtalsize":
            sx = sy = sz = v(f)
        elif f == "-xtal_thick":
            sx = v(f)
        elif f == "-xtal_width":
            sy = v(f)
        elif f == "-xtal_height":
            sz = v(f)
    if sx > 0 or sy > 0 or sz > 0:
        size = (sx, sy, sz)
    cell = v("-cell")
    recip = None
    if opts.has("-mat"):
        from ..io import reciprocal_vectors_from_mosflm

        m = _read("-mat", read_mosflm_matrix, _path(cwd, v("-mat")), warnings_out=warnings)
        recip = reciprocal_vectors_from_mosflm(m, lam)
    default_F = v("-default_F", 0.0)
    sf_file = None
    if any(opts.has(f) for f in ("-mtz", "-sfcif", "-model")):
        from .sf_files import load_structure_factors

        try:
            det_for_sf = Detector(**det_kwargs)
        except ExperimentError as exc:
            raise UsageError(flag_for_message(str(exc))) from exc
        sf_file = load_structure_factors(opts, cwd, lam, det_for_sf, beam, default_F, UsageError)
        warnings.append(sf_file.note)
        if cell is None and recip is None and sf_file.cell is not None:
            cell = sf_file.cell  # the file's cell when none is given
    if cell is None and recip is None and opts.has("-expt"):
        from .panel_flags import expt_reciprocal

        recip = expt_reciprocal(opts, cwd)  # the experiment list's crystal
    if cell is None and recip is None:
        raise UsageError("no unit cell: give -cell a b c alpha beta gamma or -mat FILE")
    grid = None
    fdump_src = None
    if sf_file is not None:
        grid = sf_file.grid
    elif opts.has("-hkl"):
        from ..estimate import MAX_GRID_CELLS

        limit = {} if opts.has("-force") else {"max_cells": MAX_GRID_CELLS}
        try:
            grid = _read("-hkl", read_hkl, _path(cwd, v("-hkl")), default_F, warnings_out=warnings, **limit)
        except UsageError as exc:
            if "more than the limit" in str(exc) and not opts.has("-force"):
                raise UsageError(f"{exc}; -force lifts the limit to {2**28} cells") from None
            raise
        fdump_src = grid
    else:
        dump = _path(cwd, "Fdump.bin")
        if os.path.exists(dump):
            grid = _read("Fdump.bin", read_fdump, dump, warnings_out=warnings)
            warnings.append("reading structure factors from Fdump.bin (no -hkl given)")
        elif default_F == 0.0:
            raise UsageError("no structure factors: give -hkl FILE, an Fdump.bin in the working "
                             "directory, or a non-zero -default_F")
    misset = v("-misset")
    interp = None
    if opts.has("-interpolate") or opts.has("-nointerpolate"):
        interp = _last_of(opts, ("-interpolate", "-nointerpolate")) == "-interpolate"
    crystal = Crystal(
        cell_A_deg=tuple(cell) if cell is not None and recip is None else None,
        reciprocal_vectors_per_A=recip,
        misset_deg=None if misset in (None, "random") else tuple(misset),
        misset_random=misset == "random", misset_seed=v("-misset_seed", v("-seed", 1)),
        N_cells=tuple(N), size_mm=size, shape=shape, fudge=v("-fudge", 1.0),
        mosaic_spread_deg=v("-mosaic"), mosaic_domains=v("-mosaic_dom"),
        mosaic_seed=v("-mosaic_seed", 12345678),
        phi_start_deg=v("-phi", 0.0), osc_deg=v("-osc"), phi_step_deg=v("-phistep"), phi_steps=v("-phisteps"),
        default_F=default_F, structure_factors=grid, interpolate=interp, dmin_A=v("-dmin", 0.0),
    )
    try:
        exp = Experiment(beam=beam, detector=Detector(**det_kwargs), crystal=crystal)
    except ExperimentError as exc:
        raise UsageError(flag_for_message(str(exc))) from exc

    dtype = v("-dtype", "float64")
    if dtype not in ("float32", "float64"):
        raise UsageError(f"-dtype expects float32 or float64, got {dtype!r}")
    outputs = {k: v(k) for k in ("-floatfile", "-intfile", "-noisefile", "-pgmfile", "-run_report")
               if opts.has(k)}
    write_noise = not opts.has("-nonoise") or opts.has("-noisefile")
    write_pgm = not opts.has("-nopgm") or opts.has("-pgmfile")
    paths = _distinct_outputs(outputs, write_noise, write_pgm, opts.has("-hkl"), cwd)
    budget = v("-memory_budget")
    seed = v("-seed", 1)
    _check_run(opts, exp, dtype, budget, write_pgm, write_noise, paths)
    cfg = RunConfig(
        experiment=exp, outputs=outputs, backend=v("-backend"), device=v("-device"), dtype=dtype,
        seed=seed % 2**64, adc=v("-adc", 40.0), scale=v("-scale", 0.0), pgmscale=v("-pgmscale", 0.0),
        write_noise=write_noise, write_pgm=write_pgm,
        progress=not opts.has("-noprogress"),
        memory_budget=None if budget is None else int(budget * 2**20),
        fdump_written_from=fdump_src if opts.has("-hkl") else None,
        warnings=warnings,
        trace_pixels=_trace_requests(opts, fp, sp),
    )
    from .detector_flags import apply_detector_flags
    from .format_flags import apply_format_flags
    from .panel_flags import apply_panel_flags

    return apply_detector_flags(apply_format_flags(apply_panel_flags(cfg, opts, cwd), opts, cwd), opts, cwd)


# SMV header keys -> (flag, conversion); applied before the command line's own flags
_HEADER_KEYS = (
    ("PIXEL_SIZE", "-pixel"), ("DISTANCE", "-distance"), ("CLOSE_DISTANCE", "-close_distance"),
    ("WAVELENGTH", "-lambda"), ("BEAM_CENTER_X", "-Xbeam"), ("BEAM_CENTER_Y", "-Ybeam"),
    ("ORGX", "-ORGX"), ("ORGY", "-ORGY"), ("PHI", "-phi"), ("OSC_RANGE", "-osc"),
)


def _ingest_headers(opts: Options, cwd: str, warnings: list) -> None:
    """Camera parameters from the headers of -mask and -img files (the last file read wins).

    Values given on the command line take precedence.  As in the reference,
    the mask's BEAM_CENTER_Y is measured from the other edge (detsize - Y).
    """
    from ..io import read_smv

    for flag in ("-mask", "-img"):
        if not opts.has(flag):
            continue
        path = _path(cwd, opts.get(flag))
        try:
            header, data = read_smv(path)
        except OSError as exc:
            raise UsageError(f"{flag}: cannot read {opts.get(flag)}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
        if flag == "-mask":
            opts.mask_data = data
        spixels, fpixels = data.shape
        found = {}
        for key, target in _HEADER_KEYS:
            if key in header:
                try:
                    found[target] = float(header[key].strip().rstrip(";"))
                except ValueError:
                    raise UsageError(f"{flag}: {opts.get(flag)} has a non-numeric {key}") from None
                try:
                    if not math.isfinite(found[target]):
                        raise UsageError("not finite")
                    check_value(target, found[target])
                except UsageError:
                    raise UsageError(f"{flag}: {opts.get(flag)} has an unusable {key} "
                                     f"({header[key].strip()!r})") from None
        pixel = found.get("-pixel", opts.values.get("-pixel", 0.1))
        if flag == "-mask" and "-Ybeam" in found:
            found["-Ybeam"] = spixels * pixel - found["-Ybeam"]
        explicit = {f for f in opts.order if f not in opts.from_header}
        sized = explicit & {"-detpixels", "-detpixels_f", "-detpixels_s", "-detsize", "-detsize_f", "-detsize_s"}
        if flag == "-mask" or not sized:
            found["-detpixels_f"], found["-detpixels_s"] = fpixels, spixels
        for target, val in found.items():
            if target in explicit:
                continue
            if target == "-close_distance" and "-distance" in explicit:
                continue  # a distance typed on the command line beats the header's close distance
            opts.values[target] = val
            opts.from_header.add(target)
            if target not in opts.order:
                opts.order.insert(0, target)


def _trace_requests(opts: Options, fp: int, sp: int) -> list:
    """(slow, fast) pixels for -trace_pixel SLOW FAST and -printout_pixel FAST SLOW."""
    out = []
    if opts.has("-trace_pixel"):
        out.append(tuple(opts.get("-trace_pixel")))
    if opts.has("-printout_pixel"):
        f, s = opts.get("-printout_pixel")
        out.append((s, f))
    for s, f in out:
        if not (0 <= s < sp and 0 <= f < fp):
            raise UsageError(f"pixel (slow {s}, fast {f}) is outside the {sp} x {fp} detector")
    if opts.has("-printout") and not opts.has("-printout_pixel"):
        opts.warnings.append("-printout without -printout_pixel: use -trace_pixel SLOW FAST for one pixel")
    return out


DEFAULT_OUTPUTS = {"-floatfile": "floatimage.bin", "-intfile": "intimage.img", "-pgmfile": "image.pgm",
                   "-noisefile": "noiseimage.img"}


def _distinct_outputs(outputs: dict, write_noise: bool, write_pgm: bool, fdump: bool, cwd: str) -> None:
    """Two outputs of one run naming the same file would silently keep only the last: refuse that."""
    wanted = ["-floatfile", "-intfile"] + (["-pgmfile"] if write_pgm else []) + \
        (["-noisefile"] if write_noise else [])
    named = [(f, outputs.get(f, DEFAULT_OUTPUTS[f])) for f in wanted]
    if fdump:
        named.append(("Fdump.bin (written with -hkl)", "Fdump.bin"))
    if "-run_report" in outputs:
        named.append(("-run_report", outputs["-run_report"]))
    seen: dict = {}
    for flag, path in named:
        if path == "":
            raise UsageError(f"{flag} expects a file name, got ''")
        full = os.path.realpath(_path(cwd, path))
        if full in seen:
            raise UsageError(f"{seen[full]} and {flag} name the same file {path!r}; give each output its own")
        seen[full] = flag
    from ..io.atomic import OutputError, check_destination

    for flag, path in named:  # before any work: a run whose outputs cannot be written is not started
        try:
            check_destination(_path(cwd, path))
        except OutputError as exc:
            raise UsageError(f"{flag.split(' ')[0]}: cannot write {path}: {exc.reason}") from None
    return [_path(cwd, p) for _, p in named]


def _check_run(opts, exp, dtype, budget_mib, pgm, noise, paths) -> None:
    """The pre-run estimate of memory, work and file sizes; -force lifts its limits."""
    from ..estimate import RunTooLarge, check_run, estimate_run

    try:
        est = estimate_run(exp, dtype=dtype, memory_budget_bytes=None if budget_mib is None else
                           int(budget_mib * 2**20), pgm=pgm, noise=noise, write_fdump=opts.has("-hkl"))
        check_run(est, force=opts.has("-force"), force_hint="-force",
                  output_dirs=tuple(os.path.dirname(os.path.realpath(p)) for p in paths))
    except RunTooLarge as exc:
        raise UsageError(str(exc)) from None
    except ExperimentError as exc:
        raise UsageError(flag_for_message(str(exc))) from None


def _pair(p):
    return p


def _fill_pairs(kw):
    """Pairs given with one member missing keep None there; resolved by the geometry defaults."""
    for key in ("beam_center_mm", "close_point_mm", "xds_origin_px"):
        p = kw[key]
        if p is not None and (p[0] is None or p[1] is None):
            kw[key] = None if p[0] is None and p[1] is None else p
    return kw


def _read(flag: str, reader, path: str, *args, warnings_out: list | None = None, **kwargs):
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


def _path(cwd, p):
    return p if os.path.isabs(p) else os.path.join(cwd, p)
