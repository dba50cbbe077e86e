"""nanoBragg-style argument lists -> an Experiment plus output and run options.

The flags are parsed by :mod:`bragg_core.cli.options` (``parse_args``,
``Options``, ``_SPEC`` and ``ALIASES`` can be imported from here too);
:func:`build_config` turns them into a :class:`RunConfig` in steps: camera
parameters from image headers, convention and pivot, detector size, beam,
detector, crystal and structure factors (:mod:`bragg_core.cli.crystal_flags`),
then outputs and the run estimate.
The steps run in a fixed order, which is also the order in which faults in
the input are reported.  The reference's precedence rules
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

from ..experiment import Beam, Detector, Experiment, ExperimentError
from .crystal_flags import crystal_from_flags
from .options import _SPEC as _SPEC  # the parser's names are importable from here too
from .options import ALIASES as ALIASES
from .options import HELP_FLAGS as HELP_FLAGS
from .options import Options, _last_of
from .options import help_requested as help_requested
from .options import parse_args as parse_args
from .validate import INT_MAX, UsageError, check_value, flag_for_message, flag_path, read_flag_file

_CONVENTION_FLAGS = ("-mosflm", "-xds", "-adxv", "-denzo", "-dials")
_CUSTOM_VECTORS = ("-fdet_vector", "-sdet_vector", "-odet_vector", "-beam_vector", "-polar_vector",
                   "-spindle_axis", "-twotheta_axis", "-pix0_vector")
_PIVOT_BEAM = ("-distance", "-Xbeam", "-Ybeam")
_PIVOT_SAMPLE = ("-Xclose", "-Yclose", "-ORGX", "-ORGY", "-close_distance", "-twotheta")


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
    """Turn parsed options into an Experiment and output settings (reads input files).

    The order of the steps is the order in which faults are reported (a
    command line with several is refused for the first): keep it.
    """
    warnings = list(opts.warnings)
    _ingest_headers(opts, cwd, warnings)
    _warn_flags_without_effect(opts, warnings)
    convention = _convention(opts)
    pivot = _pivot(opts, convention)
    fp, sp = _detector_pixels(opts)
    lam = _wavelength(opts)
    beam = _beam_from_flags(opts, cwd, convention, lam)
    det_kwargs = _detector_kwargs_from_flags(opts, convention, pivot, fp, sp)
    crystal, hkl_grid = crystal_from_flags(opts, cwd, lam, beam, det_kwargs, warnings)
    try:
        exp = Experiment(beam=beam, detector=Detector(**det_kwargs), crystal=crystal)
    except ExperimentError as exc:
        raise UsageError(flag_for_message(str(exc))) from exc
    cfg = _run_config_from_flags(opts, cwd, exp, fp, sp, hkl_grid, warnings)
    from .detector_flags import apply_detector_flags
    from .format_flags import apply_format_flags
    from .panel_flags import apply_panel_flags

    return apply_detector_flags(apply_format_flags(apply_panel_flags(cfg, opts, cwd), opts, cwd), opts, cwd)


# camera parameters from the headers of -img and -mask files

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
        path = flag_path(cwd, opts.get(flag))
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


def _warn_flags_without_effect(opts: Options, warnings: list) -> None:
    """Flags that are accepted, as the reference accepts them, but change nothing in the image."""
    for flag in ("-stol", "-4stol", "-Q", "-stolout", "-coherent", "-density", "-MW"):
        if opts.has(flag) and flag not in opts.from_header:
            warnings.append(f"{flag} has no effect on the image (as in the reference)")
    if opts.has("-pix0_vector"):
        warnings.append("-pix0_vector has no effect: the detector origin follows from the beam centre")


# convention, pivot and detector size

def _convention(opts: Options) -> str:
    """The last convention flag given; any ``-*_vector`` flag makes the geometry ``custom`` (default mosflm)."""
    conv_flag = _last_of(opts, _CONVENTION_FLAGS + _CUSTOM_VECTORS)
    convention = "mosflm"
    if conv_flag in _CUSTOM_VECTORS:
        convention = "custom"
    elif conv_flag is not None:
        convention = conv_flag[1:]
    return convention


def _pivot(opts: Options, convention: str) -> str | None:
    """The pivot of custom geometry (None for the others, whose convention fixes it).

    ``-pivot`` or the side effect of a placement flag, whichever was typed last
    (values read from an image header do not count); beam by default.
    """
    if convention != "custom":
        return None
    typed = Options(order=[f for f in opts.order if f not in opts.from_header])
    last = _last_of(typed, _PIVOT_BEAM + _PIVOT_SAMPLE + ("-pivot",))
    if last == "-pivot":
        p = opts.get("-pivot")
        if p not in ("beam", "sample"):
            raise UsageError(f"-pivot expects 'beam' or 'sample', got {p!r}")
        return p
    if last in _PIVOT_SAMPLE:
        return "sample"
    return "beam"


def _detector_pixels(opts: Options) -> tuple[int, int]:
    """(fast, slow) pixel counts: ``-detpixels*``, else ``-detsize*`` over ``-pixel``, rounded."""
    v = opts.get
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
    return fp, sp


# the beam

def _wavelength(opts: Options) -> float:
    """The wavelength in Angstrom: ``-lambda`` or ``-energy``, the later of the two (default 1 A)."""
    from .. import units

    v = opts.get
    lam = v("-lambda", 1.0)
    if opts.has("-energy"):
        e = v("-energy")
        if e <= 0:
            raise UsageError(f"-energy must be positive, got {e:g}")
        lam = units.energy_eV_to_wavelength_A(e)
    if _last_of(opts, ("-lambda", "-energy")) == "-lambda":
        lam = v("-lambda")
    return lam


def _beam_from_flags(opts: Options, cwd: str, convention: str, lam: float) -> Beam:
    """The Beam: fluence, polarization, spectral spread, divergence and the sources of ``-sourcefile``."""
    v = opts.get
    fluence = _fluence(opts)
    hdr, vdr, hds, vds = _divergence(opts)
    src_pos, src_lam = _sources_from_file(opts, cwd, convention, lam)
    return Beam(
        wavelength_A=lam, fluence_photons_per_m2=fluence, beam_size_mm=v("-beamsize", 0.1),
        kahn_factor=v("-polar", 0.0), polarization_correction=not (opts.has("-nopolar") and
                                                                  _last_of(opts, ("-nopolar", "-polar")) == "-nopolar"),
        dispersion_percent=v("-dispersion", 0.0), dispersion_steps=v("-dispsteps"),
        hdiv_range_mrad=hdr, vdiv_range_mrad=vdr, hdiv_step_mrad=v("-hdivstep"), vdiv_step_mrad=v("-vdivstep"),
        hdiv_steps=hds, vdiv_steps=vds,
        round_divergence=_last_of(opts, ("-round_div", "-square_div")) != "-square_div",
        source_positions_m=src_pos, source_wavelengths_A=src_lam, water_size_um=v("-water", 0.0),
    )


def _fluence(opts: Options) -> float:
    """Photons per m^2: ``-fluence`` (or the default), or a non-zero ``-flux`` x ``-exposure`` over a square beam.

    The square's side is ``-beamsize``.
    """
    from .. import units
    from ..units import DEFAULT_FLUENCE_PHOTONS_PER_M2

    v = opts.get
    fluence = v("-fluence", None)
    flux, exposure, beamsize_mm = v("-flux", 0.0), v("-exposure", 1.0), v("-beamsize", 0.1)
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
    return fluence


def _divergence(opts: Options) -> tuple:
    """(horizontal range, vertical range, horizontal steps, vertical steps) of the divergence.

    ``-divergence`` sets both ranges and ``-hdivrange``/``-vdivrange`` one, the
    later flag winning; ``-hdivsteps``/``-vdivsteps`` win over ``-divsteps``.
    """
    v = opts.get
    hdr = v("-hdivrange", v("-divergence"))
    vdr = v("-vdivrange", v("-divergence"))
    if opts.has("-divergence"):
        last = _last_of(opts, ("-divergence", "-hdivrange"))
        hdr = v("-divergence") if last == "-divergence" else v("-hdivrange")
        last = _last_of(opts, ("-divergence", "-vdivrange"))
        vdr = v("-divergence") if last == "-divergence" else v("-vdivrange")
    hds = v("-hdivsteps", v("-divsteps"))
    vds = v("-vdivsteps", v("-divsteps"))
    return hdr, vdr, hds, vds


def _sources_from_file(opts: Options, cwd: str, convention: str, lam: float) -> tuple:
    """(positions in m, wavelengths in A) of the ``-sourcefile`` sources, or (None, None) without one.

    Columns the file leaves out default to a point on the convention's beam axis and the wavelength ``lam``.
    """
    if not opts.has("-sourcefile"):
        return None, None
    from .. import units
    from ..geometry.detector import CONVENTION_VECTORS
    from ..io import read_sourcefile

    v = opts.get
    bvec = v("-beam_vector") if convention == "custom" and opts.has("-beam_vector") else \
        CONVENTION_VECTORS[convention]["beam"]
    s = read_flag_file("-sourcefile", read_sourcefile, flag_path(cwd, v("-sourcefile")), beam_vector=tuple(bvec),
              wavelength=units.angstrom_to_m(lam))
    return s.positions, units.m_to_angstrom(s.wavelengths)


# the detector

def _detector_kwargs_from_flags(opts: Options, convention: str, pivot: str | None, fp: int, sp: int) -> dict:
    """The Detector's keyword arguments.

    The Detector itself is made later: with the Experiment, after the
    crystal's checks, or first when a structure-factor file needs it.
    """
    v = opts.get
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
        fpixels=fp, spixels=sp, pixel_size_mm=v("-pixel", 0.1),
        distance_mm=v("-distance", 100.0), close_distance_mm=v("-close_distance"),
        convention=convention, pivot=pivot,
        beam_center_mm=beam_center,
        close_point_mm=close_point,
        xds_origin_px=org,
        rotation_deg=rot, twotheta_deg=v("-twotheta", 0.0),
        fdet_vector=v("-fdet_vector"), sdet_vector=v("-sdet_vector"), odet_vector=v("-odet_vector"),
        beam_vector=v("-beam_vector"), polar_vector=v("-polar_vector"), spindle_axis=v("-spindle_axis"),
        twotheta_axis=v("-twotheta_axis"), curved=opts.has("-curved_det"), point_pixel=opts.has("-point_pixel"),
        thickness_um=thick, thickness_steps=v("-detector_thicksteps"), attenuation_depth_um=absd,
        oversample=v("-oversample"), oversample_omega=opts.has("-oversample_omega"),
        oversample_polar=opts.has("-oversample_polar"), oversample_thick=opts.has("-oversample_thick"),
        roi=roi, mask=mask,
    )
    return _fill_pairs(det_kwargs)


def _fill_pairs(kw):
    """Pairs given with one member missing keep None there; resolved by the geometry defaults."""
    for key in ("beam_center_mm", "close_point_mm", "xds_origin_px"):
        p = kw[key]
        if p is not None and (p[0] is None or p[1] is None):
            kw[key] = None if p[0] is None and p[1] is None else p
    return kw


# outputs, the run estimate and the run options

def _run_config_from_flags(opts: Options, cwd: str, exp: Experiment, fp: int, sp: int, hkl_grid,
                           warnings: list) -> RunConfig:
    """The RunConfig of ``exp``: dtype, outputs (checked before any work), the run estimate and the run options."""
    v = opts.get
    dtype = v("-dtype", "float64")
    if dtype not in ("float32", "float64"):
        raise UsageError(f"-dtype expects float32 or float64, got {dtype!r}")
    outputs, write_noise, write_pgm = _outputs_from_flags(opts)
    paths = _distinct_outputs(outputs, write_noise, write_pgm, opts.has("-hkl"), cwd)
    budget = v("-memory_budget")
    seed = v("-seed", 1)
    _check_run(opts, exp, dtype, budget, write_pgm, write_noise, paths)
    return RunConfig(
        experiment=exp, outputs=outputs, backend=v("-backend"), device=v("-device"), dtype=dtype,
        seed=seed % 2**64, adc=v("-adc", 40.0), scale=v("-scale", 0.0), pgmscale=v("-pgmscale", 0.0),
        write_noise=write_noise, write_pgm=write_pgm,
        progress=not opts.has("-noprogress"),
        memory_budget=None if budget is None else int(budget * 2**20),
        fdump_written_from=hkl_grid if opts.has("-hkl") else None,
        warnings=warnings,
        trace_pixels=_trace_requests(opts, fp, sp, warnings),
    )


def _outputs_from_flags(opts: Options) -> tuple:
    """(output flag -> file named on the command line, write the noise image, write the PGM image)."""
    outputs = {k: opts.get(k) for k in ("-floatfile", "-intfile", "-noisefile", "-pgmfile", "-run_report")
               if opts.has(k)}
    write_noise = not opts.has("-nonoise") or opts.has("-noisefile")
    write_pgm = not opts.has("-nopgm") or opts.has("-pgmfile")
    return outputs, write_noise, write_pgm


def _trace_requests(opts: Options, fp: int, sp: int, warnings: list) -> list:
    """(slow, fast) pixels for -trace_pixel SLOW FAST and -printout_pixel FAST SLOW; a -printout that asks
    for no pixel adds to ``warnings``."""
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
        warnings.append("-printout without -printout_pixel: use -trace_pixel SLOW FAST for one pixel")
    return out


DEFAULT_OUTPUTS = {"-floatfile": "floatimage.bin", "-intfile": "intimage.img", "-pgmfile": "image.pgm",
                   "-noisefile": "noiseimage.img"}


def _distinct_outputs(outputs: dict, write_noise: bool, write_pgm: bool, fdump: bool, cwd: str) -> list:
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
        full = os.path.realpath(flag_path(cwd, path))
        if full in seen:
            raise UsageError(f"{seen[full]} and {flag} name the same file {path!r}; give each output its own")
        seen[full] = flag
    from ..io.atomic import OutputError, check_destination

    for flag, path in named:  # before any work: a run whose outputs cannot be written is not started
        try:
            check_destination(flag_path(cwd, path))
        except OutputError as exc:
            raise UsageError(f"{flag.split(' ')[0]}: cannot write {path}: {exc.reason}") from None
    return [flag_path(cwd, p) for _, p in named]


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
