"""``python -m bragg_core.nonbragg``: the amorphous background image of a sample.

Takes the reference ``nonBragg`` program's flags (``-h`` lists them) plus
``-backend``, ``-device`` and ``-dtype``; writes the float image (and, when
named, the SMV, PGM and noise images).  Bad input is a one-line error naming
the flag or file, exit status 2, and nothing is written.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

USAGE = """\
usage: python -m bragg_core.nonbragg -stol water.stol [options]
amorphous material (nonBragg) background image; lengths in mm, angles in degrees
  -stol FILE | -4stol FILE | -Q FILE   structure-factor table (sin(theta)/lambda, 4 sin(theta)/lambda or Q vs F);
                                       built-in: water air ice nanoice shortwater unity
  -thickness mm (-sample_thick, -sample_x)   sample size along the beam
  -samplesize mm    cube edge;  -width mm (-sample_y)  -height mm (-sample_z)   clipped to -beamsize
  -density g/cm^3   -MW g/mol (-molecular_weight)   -molecules N (replaces the count from the volume)
  -lambda A | -energy eV   -fluence ph/m^2 | -flux ph/s -exposure s -beamsize mm
  -dispersion %  -dispsteps n  -divergence mrad  -hdivrange -vdivrange mrad  -hdivstep -vdivstep mrad
  -hdivsteps -vdivsteps -divsteps n  -round_div | -square_div
  -distance mm  -detsize mm  -detsize_x -detsize_y mm  -detpixels n  -detpixels_x -detpixels_y n  -pixel mm
  -Xbeam -Ybeam mm  -Xclose -Yclose mm  -ORGX -ORGY px  -pivot beam|sample  -twotheta deg  -twotheta_axis x y z
  -detector_rotx -detector_roty -detector_rotz deg  -xdet_vector -ydet_vector -beam_vector -polar_vector x y z
  -polar K  -nopolar  -oversample n  -curved_det  -point_pixel  -roi xmin xmax ymin ymax
  -floatfile FILE (default floatimage.bin)  -intfile FILE  -pgmfile FILE  -noisefile FILE  -scale s  -pgmscale s
  -adc ADU  -seed n  -noprogress
  -force   run even when the pre-run check says the work (pixels x oversample^2 x sources) will not finish
  -backend numpy|torch|cupy|jax|dask|array_api_strict  -device cpu|cuda|cuda:N  -dtype float32|float64
"""

# flag -> number of values; aliases map to one canonical name
_FLAGS = {
    "-stol": 1, "-4stol": 1, "-Q": 1, "-thickness": 1, "-samplesize": 1, "-width": 1, "-height": 1,
    "-density": 1, "-MW": 1, "-molecules": 1, "-lambda": 1, "-energy": 1, "-fluence": 1, "-flux": 1,
    "-exposure": 1, "-beamsize": 1, "-dispersion": 1, "-dispsteps": 1, "-divergence": 1, "-hdivrange": 1,
    "-vdivrange": 1, "-hdivstep": 1, "-vdivstep": 1, "-hdivsteps": 1, "-vdivsteps": 1, "-divsteps": 1,
    "-round_div": 0, "-square_div": 0, "-distance": 1, "-detsize": 1, "-detsize_x": 1, "-detsize_y": 1,
    "-detpixels": 1, "-detpixels_x": 1, "-detpixels_y": 1, "-pixel": 1, "-Xbeam": 1, "-Ybeam": 1,
    "-Xclose": 1, "-Yclose": 1, "-ORGX": 1, "-ORGY": 1, "-pivot": 1, "-twotheta": 1, "-twotheta_axis": 3,
    "-detector_rotx": 1, "-detector_roty": 1, "-detector_rotz": 1, "-xdet_vector": 3, "-ydet_vector": 3,
    "-beam_vector": 3, "-polar_vector": 3, "-polar": 1, "-nopolar": 0, "-oversample": 1, "-curved_det": 0,
    "-point_pixel": 0, "-roi": 4, "-floatfile": 1, "-intfile": 1, "-pgmfile": 1, "-noisefile": 1,
    "-scale": 1, "-pgmscale": 1, "-adc": 1, "-seed": 1, "-noprogress": 0, "-nonoise": 0, "-nopgm": 0,
    "-backend": 1, "-device": 1, "-dtype": 1, "-force": 0,
}
_ALIASES = {
    "-sample_thick": "-thickness", "-sample_x": "-thickness", "-sample_size": "-samplesize",
    "-sample_width": "-width", "-sample_y": "-width", "-sample_height": "-height", "-sample_z": "-height",
    "-sample_density": "-density", "-molecular_weight": "-MW", "-sample_molecules": "-molecules",
    "-wavelength": "-lambda", "-floatimage": "-floatfile", "-intimage": "-intfile", "-pgmimage": "-pgmfile",
    "-noiseimage": "-noisefile", "-progress": "-noprogress",
}
_TEXT = {"-stol", "-4stol", "-Q", "-pivot", "-floatfile", "-intfile", "-pgmfile", "-noisefile", "-backend",
         "-device", "-dtype"}
_INTS = {"-dispsteps", "-hdivsteps", "-vdivsteps", "-divsteps", "-detpixels", "-detpixels_x", "-detpixels_y",
         "-oversample", "-roi", "-seed"}


class UsageError(ValueError):
    """A command-line problem; the message names the flag."""


@dataclass
class Options:
    values: dict = field(default_factory=dict)
    order: list = field(default_factory=list)   # flags in the order given (pivot is order-dependent)

    def get(self, flag, default=None):
        return self.values.get(flag, default)

    def has(self, flag):
        return flag in self.values


def parse_flags(argv, flags=_FLAGS, aliases=_ALIASES, text=_TEXT, ints=_INTS) -> Options:
    """Flags with their values; unknown flags, missing or malformed values raise :class:`UsageError`."""
    opts = Options()
    i = 0
    while i < len(argv):
        raw = argv[i]
        flag = aliases.get(raw, raw)
        if flag not in flags:
            raise UsageError(f"{raw}: unknown flag (see -h)")
        n = flags[flag]
        vals = argv[i + 1:i + 1 + n]
        if len(vals) < n:
            raise UsageError(f"{raw}: needs {n} value{'s' if n > 1 else ''}")
        if flag in text:
            parsed: Any = vals[0]
        else:
            parsed = []
            for v in vals:
                try:
                    x = int(v) if flag in ints else float(v)
                except ValueError:
                    kind = "an integer" if flag in ints else "a number"
                    raise UsageError(f"{raw}: {v!r} is not {kind}") from None
                if isinstance(x, float) and not math.isfinite(x):
                    raise UsageError(f"{raw}: {v!r} is not a finite number")
                parsed.append(x)
            parsed = True if n == 0 else (parsed[0] if n == 1 else tuple(parsed))
        opts.values[flag] = parsed
        opts.order.append(flag)
        i += 1 + n
    return opts


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    n = float(np.sqrt(v @ v))
    if n == 0:
        raise UsageError("a detector or beam vector has zero length")
    return tuple(float(x) for x in v / n)


def build_request(argv):
    """(experiment, background keyword arguments, options) from nonBragg-style flags."""
    from .amorphous import resolve_material
    from .experiment import Beam, Detector, Experiment, ExperimentError
    from .io.stol import StolFormatError

    o = parse_flags(argv)
    table_flag = next((f for f in reversed(o.order) if f in ("-stol", "-4stol", "-Q")), None)
    if table_flag is None:
        raise UsageError("-stol: a structure-factor table is required (-stol, -4stol or -Q)")
    kind = {"-stol": "stol", "-4stol": "4stol", "-Q": "Q"}[table_flag]
    try:
        table = resolve_material(o.get(table_flag), kind)
    except StolFormatError as exc:
        raise UsageError(f"{table_flag}: {exc}") from None

    for flag in ("-pixel", "-distance", "-lambda", "-energy", "-MW", "-detsize", "-detsize_x", "-detsize_y"):
        if o.has(flag) and not o.get(flag) > 0:
            raise UsageError(f"{flag}: must be positive, got {o.get(flag)!r}")
    for flag in ("-detpixels", "-detpixels_x", "-detpixels_y", "-oversample"):
        if o.has(flag) and o.get(flag) < 1:
            raise UsageError(f"{flag}: must be at least 1, got {o.get(flag)!r}")
    pixel = o.get("-pixel", 0.1)
    dx = dy = 102.4
    if o.has("-detsize"):
        dx = dy = o.get("-detsize")
    dx, dy = o.get("-detsize_x", dx), o.get("-detsize_y", dy)
    nx = ny = None
    if o.has("-detpixels"):
        nx = ny = o.get("-detpixels")
    nx, ny = o.get("-detpixels_x", nx), o.get("-detpixels_y", ny)
    if nx:
        dx = pixel * nx
    if ny:
        dy = pixel * ny
    nx = int(math.ceil(dx / pixel - 0.5))
    ny = int(math.ceil(dy / pixel - 0.5))
    dx, dy = pixel * nx, pixel * ny

    # the pivot follows the last flag that implies one (the reference's rule), unless -pivot is given
    pivot = "beam"
    for f in o.order:
        if f in ("-distance", "-Xbeam", "-Ybeam"):
            pivot = "beam"
        elif f in ("-Xclose", "-Yclose", "-ORGX", "-ORGY", "-twotheta"):
            pivot = "sample"
        elif f == "-pivot":
            val = o.get("-pivot")
            if val not in ("beam", "sample"):
                raise UsageError(f"-pivot: must be beam or sample, got {val!r}")
            pivot = val
    xclose = o.get("-ORGX") * pixel if o.has("-ORGX") else o.get("-Xclose", (dx - pixel) / 2)
    yclose = o.get("-ORGY") * pixel if o.has("-ORGY") else o.get("-Yclose", (dy + pixel) / 2)
    xbeam, ybeam = o.get("-Xbeam", xclose), o.get("-Ybeam", yclose)
    centre = (xclose, yclose) if pivot == "sample" else (xbeam, ybeam)
    fdet = _unit(o.get("-xdet_vector", (0.0, 0.0, 1.0)))
    sdet = _unit(o.get("-ydet_vector", (0.0, -1.0, 0.0)))
    odet = _unit(np.cross(fdet, sdet))
    try:
        det = Detector(
            fpixels=nx, spixels=ny, pixel_size_mm=pixel, distance_mm=o.get("-distance", 100.0),
            convention="custom", pivot=pivot, beam_center_mm=centre,
            rotation_deg=(o.get("-detector_rotx", 0.0), o.get("-detector_roty", 0.0), o.get("-detector_rotz", 0.0)),
            twotheta_deg=o.get("-twotheta", 0.0), fdet_vector=fdet, sdet_vector=sdet, odet_vector=odet,
            beam_vector=_unit(o.get("-beam_vector", (1.0, 0.0, 0.0))),
            polar_vector=_unit(o.get("-polar_vector", (0.0, 0.0, 1.0))),
            twotheta_axis=o.get("-twotheta_axis", (0.0, 1.0, 0.0)),
            curved=o.has("-curved_det"), point_pixel=o.has("-point_pixel"), oversample=o.get("-oversample", 1),
            roi=o.get("-roi"),
        )
        lam = 12398.42 / o.get("-energy") if o.has("-energy") else o.get("-lambda", 1.0)
        beamsize = o.get("-beamsize", 0.1)
        fluence = o.get("-fluence", None)
        flux, exposure = o.get("-flux", 0.0), o.get("-exposure", 1.0)
        if flux != 0.0 and exposure > 0 and beamsize >= 0:
            fluence = flux * exposure / (beamsize * 1e-3) ** 2
        beam_kw = {} if fluence is None else {"fluence_photons_per_m2": fluence}
        hr = o.get("-hdivrange", o.get("-divergence"))
        vr = o.get("-vdivrange", o.get("-divergence"))
        beam = Beam(
            wavelength_A=lam, beam_size_mm=max(beamsize, 0.0), kahn_factor=o.get("-polar", 0.0),
            polarization_correction=not o.has("-nopolar"), dispersion_percent=o.get("-dispersion", 0.0),
            dispersion_steps=o.get("-dispsteps"), hdiv_range_mrad=hr, vdiv_range_mrad=vr,
            hdiv_step_mrad=o.get("-hdivstep"), vdiv_step_mrad=o.get("-vdivstep"),
            hdiv_steps=o.get("-hdivsteps", o.get("-divsteps")), vdiv_steps=o.get("-vdivsteps", o.get("-divsteps")),
            round_divergence=not o.has("-square_div"), **beam_kw,
        )
        exp = Experiment(beam=beam, detector=det)
    except ExperimentError as exc:
        raise UsageError(str(exc)) from None

    size = o.get("-samplesize", 0.1)
    kw = dict(material=table, thickness_mm=o.get("-thickness", size), width_mm=o.get("-width", size),
              height_mm=o.get("-height", size), density_g_cm3=o.get("-density", 1.0),
              molecular_weight=o.get("-MW", 18.0), molecules=o.get("-molecules") or None)
    for flag in ("-thickness", "-samplesize", "-width", "-height", "-density", "-molecules", "-MW"):
        v = o.get(flag)
        if v is not None and not (0 <= v < math.inf and (v > 0 or flag != "-MW")):
            what = "positive" if flag == "-MW" else "non-negative"
            raise UsageError(f"{flag}: must be a finite {what} number, got {v!r}")
    return exp, kw, o


def command_main(argv, usage: str, prog: str, run) -> int:
    """The companion commands' entry: usage on ``-h`` or no arguments; one-line errors, never a traceback.

    Status 2 for what the arguments, the input files or the values they make
    got wrong; 1 for anything else (``BRAGG_CORE_DEBUG=1`` shows its traceback).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "-help"):
        sys.stdout.write(usage)
        return 0
    try:
        return run(argv)
    except UsageError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: error: interrupted; no output written\n")
        return 130
    except MemoryError:
        sys.stderr.write(f"{prog}: error: out of memory; no output written (use a smaller image)\n")
        return 1
    except ValueError as exc:  # a value only the engine could judge (ExperimentError, BackendError)
        sys.stderr.write(f"{prog}: error: {exc}; no output written\n")
        return 2
    except Exception as exc:
        if os.environ.get("BRAGG_CORE_DEBUG"):
            raise
        sys.stderr.write(f"{prog}: error: {type(exc).__name__}: {exc}; no output written "
                         "(set BRAGG_CORE_DEBUG=1 for the traceback)\n")
        return 1


def write_outputs(outputs: list) -> None:
    """Write ``[(file name, bytes), ...]`` so that every file replaces its destination, or none does."""
    from .io.atomic import OutputError, OutputSet

    seen: dict = {}
    for name, _ in outputs:
        key = os.path.realpath(name)
        if key in seen:
            raise UsageError(f"two outputs are the same file: {seen[key]} and {name}")
        seen[key] = name
    try:
        with OutputSet() as out:
            for name, data in outputs:
                out.add(name, data)
            out.commit()
    except OutputError as exc:
        raise UsageError(f"{exc}; no file was changed") from None
    except OSError as exc:
        raise UsageError(f"{exc.filename or 'output'}: cannot write: {exc.strerror or exc}; no file was changed") \
            from None


# bytes held per pixel while the image is made and written: the float64 image, its float32 copy and file
# bytes, the integer image's float64 temporaries and the noise image's
_BYTES_PER_PIXEL = 64


def check_image_size(pixels: int, flags: str) -> None:
    """Refuse, naming ``flags``, an image whose making would not fit in the memory available."""
    from .estimate import available_memory_bytes, format_bytes

    need = pixels * _BYTES_PER_PIXEL
    avail = available_memory_bytes()
    if avail is not None and need > avail:
        raise UsageError(f"{flags}: a {pixels}-pixel image needs about {format_bytes(need)}, more than the "
                         f"{format_bytes(avail)} of memory available")


def check_work(exp, force: bool) -> None:
    """Refuse, before any work, a background of more sample evaluations (pixels x oversample^2 x sources)
    than the main command's work limit, unless ``-force``."""
    from .estimate import PATHS_PER_SECOND, estimate_run, format_duration, max_work_paths

    det = exp.detector
    os_ = int(det.oversample or 1)
    pixels = det.roi_pixels()   # the pixels evaluated: the region of interest
    n_src = estimate_run(exp).n_sources
    work = pixels * os_ * os_ * n_src
    limit = max_work_paths()
    if not force and work > limit:
        raise UsageError(f"-oversample/-detpixels/source steps: the background is {pixels} pixels x {os_ * os_} "
                         f"sub-pixels x {n_src} sources = {work:.3g} evaluations, about "
                         f"{format_duration(work / PATHS_PER_SECOND)} on one core (the limit is {limit:.3g}); "
                         "use fewer pixels, a smaller -oversample or fewer source steps, or -force to run it anyway")


def main(argv=None) -> int:
    return command_main(argv, USAGE, "nonbragg", _run)


def _run(argv) -> int:
    from ._backend import BackendError, enable_float64, to_numpy
    from .amorphous import amorphous_background
    from .detector_model import DetectorModel, apply_detector_model
    from .io.pgm import image_statistics, pgm_auto_scale, pgm_bytes

    exp, kw, o = build_request(argv)
    check_image_size(exp.detector.fpixels * exp.detector.spixels, "-detpixels/-detsize/-pixel")
    check_work(exp, o.has("-force"))
    backend, dtype = o.get("-backend"), o.get("-dtype", "float64")
    try:
        enable_float64(backend, "float64")  # also JAX's 64-bit integers, which the noise generator needs
        image = amorphous_background(exp, backend=backend, device=o.get("-device"), dtype=dtype, **kw)
    except BackendError as exc:
        raise UsageError(f"-backend/-device/-dtype: {exc}") from None
    img = np.asarray(to_numpy(image), dtype=np.float32)
    bad = int(np.size(img) - np.count_nonzero(np.isfinite(img)))
    if bad:
        raise UsageError(f"the background is NaN or infinite at {bad} pixels: the geometry or scale is out of "
                         "range (-lambda/-energy, -distance, -pixel, -fluence/-flux, -thickness)")
    outputs: list = []   # (file name, bytes)
    from io import BytesIO

    buf = BytesIO()
    buf.write(np.ascontiguousarray(img, dtype="<f4").tobytes())
    outputs.append((o.get("-floatfile", "floatimage.bin"), buf.getvalue()))
    adc = o.get("-adc", 40.0)
    if o.has("-intfile") or o.has("-pgmfile"):
        mx = float(img.max()) if img.size else 0.0
        scale = o.get("-scale", 0.0)
        if not scale > 0:
            scale = 55000.0 / mx if mx > 0 else 1.0
        ints = np.clip(img.astype(np.float64) * scale + adc, 0.0, 65535.0)
        ints = np.floor(ints + 0.5).astype(np.uint16)
        if o.has("-intfile"):
            outputs.append((o.get("-intfile"), smv_bytes(ints, exp)))
        if o.has("-pgmfile"):
            stats = image_statistics(img)
            outputs.append((o.get("-pgmfile"),
                            pgm_bytes(img, pgm_auto_scale(o.get("-pgmscale", 0.0), stats.rmsd, scale))))
    if o.has("-noisefile") and not o.has("-nonoise"):
        model = DetectorModel(calibration=0.0, adc_offset=adc, seed=o.get("-seed", 0))
        noisy = apply_detector_model(img, model)
        outputs.append((o.get("-noisefile"), smv_bytes(np.asarray(to_numpy(noisy.image)), exp)))
    write_outputs(outputs)
    return 0


def smv_bytes(image_u16, exp=None, *, pixel_mm=None, distance_mm=None, wavelength_A=None) -> bytes:
    """A 512-byte-header SMV file (the fields the reference family's companions write) with ``image_u16``."""
    from .io.smv import c_format_g as g

    slow, fast = image_u16.shape
    if exp is not None:
        pixel_mm = float(exp.detector.pixel_size_mm)
        distance_mm = float(exp.detector.distance_mm)
        wavelength_A = float(exp.beam.wavelength_A)
    head = (f"{{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\n"
            f"SIZE1={fast};\nSIZE2={slow};\nPIXEL_SIZE={g(pixel_mm or 0.1)};\nDISTANCE={g(distance_mm or 100.0)};\n"
            f"WAVELENGTH={g(wavelength_A or 1.0)};\nDETECTOR_SN=000;\nBEAMLINE=fake;\n}}\f").encode("ascii")
    return head.ljust(512, b" ") + np.ascontiguousarray(image_u16, dtype="<u2").tobytes()


if __name__ == "__main__":
    sys.exit(main())
