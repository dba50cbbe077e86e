"""``python -m bragg_core.noisify``: a float image through the detector model (PSF, noise, gain, ADC).

Takes the reference ``noisify`` program's flags (``-h`` lists them) plus
``-backend``, ``-device`` and ``-dtype``.  Writes the noiseless integer image
(``-intfile``, default intimage.img; the PSF is applied to it only with
``-nonoise``, as the reference does), the noise image (``-noisefile``, default
noiseimage.img) and a PGM (``-pgmfile``, default image.pgm, unless
``-nopgm``).  Bad input: a one-line error naming the flag or file, exit
status 2, nothing written.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from .nonbragg import UsageError, command_main, parse_flags, smv_bytes, write_outputs

USAGE = """\
usage: python -m bragg_core.noisify -floatfile floatimage.bin [options]
  -floatfile FILE (-floatimage, -bin)  float32 image in photons/pixel (raw, fast index innermost)
  -detpixels n  -detpixels_x n  -detpixels_y n   image size (default: the largest square-ish factorisation)
  -pixel mm (0.1)  -distance mm  -lambda A  -Xbeam -Ybeam mm  -phi -osc deg   (header values)
  -scale s      input scale (times -fluence ph/m^2 x r_e^2; both default to 1 photon per unit)
  -psf gauss|fiber  -psf_fwhm um (46)  -psf_radius px (0: automatic)
  -readout ADU  -flicker frac  -calibration frac (0.03)  -calib_seed n  -seed n
  -gain ADU/photon (1)  -adc ADU (40)  -nonoise  -nopgm
  -intfile FILE  -noisefile FILE  -pgmfile FILE
  -backend numpy|torch|cupy|jax|dask|array_api_strict  -device cpu|cuda|cuda:N  -dtype float32|float64
"""

_FLAGS = {
    "-floatfile": 1, "-detpixels": 1, "-detpixels_x": 1, "-detpixels_y": 1, "-pixel": 1, "-distance": 1,
    "-lambda": 1, "-Xbeam": 1, "-Ybeam": 1, "-phi": 1, "-osc": 1, "-scale": 1, "-fluence": 1, "-psf": 1,
    "-psf_fwhm": 1, "-psf_radius": 1, "-readout": 1, "-flicker": 1, "-calibration": 1, "-calib_seed": 1,
    "-seed": 1, "-gain": 1, "-adc": 1, "-nonoise": 0, "-nopgm": 0, "-intfile": 1, "-noisefile": 1,
    "-pgmfile": 1, "-backend": 1, "-device": 1, "-dtype": 1, "-detsize": 1,
}
_ALIASES = {"-floatimage": "-floatfile", "-bin": "-floatfile", "-psf_size": "-psf_fwhm", "-psf_width": "-psf_fwhm",
            "-readout_noise": "-readout", "-readnoise": "-readout", "-intimage": "-intfile",
            "-noiseimage": "-noisefile", "-pgmimage": "-pgmfile"}
_TEXT = {"-floatfile", "-psf", "-intfile", "-noisefile", "-pgmfile", "-backend", "-device", "-dtype"}
_INTS = {"-detpixels", "-detpixels_x", "-detpixels_y", "-psf_radius", "-calib_seed", "-seed"}
_R_E_SQR = 7.94079248018965e-30
_DEFAULT_FLUENCE = 125932015286227086360700780544.0


def _shape(o, n: int):
    for flag in ("-detpixels", "-detpixels_x", "-detpixels_y"):
        if o.has(flag) and not o.get(flag) > 0:
            raise UsageError(f"{flag}: must be a positive number of pixels, got {o.get(flag)!r}")
    nx = ny = o.get("-detpixels")
    nx, ny = o.get("-detpixels_x", nx), o.get("-detpixels_y", ny)
    if not nx and not ny:
        nx = int(math.isqrt(n))
        while nx > 1 and n % nx:
            nx -= 1
        nx = max(nx, 1)
        ny = n // nx
    elif nx and not ny:
        ny = n // nx
    elif ny and not nx:
        nx = n // ny
    if nx * ny != n:
        raise UsageError(f"-floatfile: {n} floats do not fill a {nx} x {ny} image (-detpixels_x/-detpixels_y)")
    return ny, nx


def build_model(argv):
    """(image as float32 NumPy (slow, fast), DetectorModel, options) from noisify-style flags."""
    from .detector_model import DetectorModel

    o = parse_flags(argv, _FLAGS, _ALIASES, _TEXT, _INTS)
    if not o.has("-floatfile"):
        raise UsageError("-floatfile: an input float image is required")
    path = o.get("-floatfile")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) % 4 or not data:
        raise UsageError(f"{path}: {len(data)} bytes is not a whole, non-zero number of 4-byte floats")
    flat = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(flat)):
        raise UsageError(f"{path}: the image holds NaN or infinite values")
    for flag in ("-pixel", "-psf_fwhm"):
        if o.has(flag) and not o.get(flag) > 0:
            raise UsageError(f"{flag}: must be positive, got {o.get(flag)!r}")
    for flag in ("-readout", "-flicker", "-calibration", "-psf_radius"):
        if o.has(flag) and o.get(flag) < 0:
            raise UsageError(f"{flag}: must not be negative, got {o.get(flag)!r}")
    psf = o.get("-psf")
    if psf is not None and psf not in ("gauss", "fiber"):
        raise UsageError(f"-psf: must be gauss or fiber, got {psf!r}")
    image = flat.reshape(_shape(o, flat.size))
    noise = not o.has("-nonoise")
    model = DetectorModel(
        psf=psf, psf_fwhm_um=o.get("-psf_fwhm", 46.0), psf_radius=o.get("-psf_radius", 0),
        pixel_size_mm=o.get("-pixel", 0.1), noise=noise, flicker=o.get("-flicker", 0.0) if noise else 0.0,
        calibration=o.get("-calibration", 0.03) if noise else 0.0, readout_adu=o.get("-readout", 0.0) if noise else 0.0,
        quantum_gain=o.get("-gain", 1.0), adc_offset=o.get("-adc", 40.0),
        scale=o.get("-scale", 1.0) * o.get("-fluence", _DEFAULT_FLUENCE) * _R_E_SQR,
        seed=o.get("-seed", 0), calibration_seed=o.get("-calib_seed", 123456789),
    )
    return image, model, o


def main(argv=None) -> int:
    return command_main(argv, USAGE, "noisify", _run)


def _run(argv) -> int:
    from dataclasses import replace

    from ._backend import BackendError, enable_float64, get_context, to_numpy
    from .detector_model import apply_detector_model
    from .io.pgm import pgm_header

    image, model, o = build_model(argv)
    backend, dtype = o.get("-backend"), o.get("-dtype", "float64")
    try:
        enable_float64(backend, "float64")  # also JAX's 64-bit integers, which the noise generator needs
        ctx = get_context(backend=backend or "numpy", device=o.get("-device"), dtype=dtype)
        img = ctx.asarray(image)
        noiseless = apply_detector_model(img, replace(model, noise=False, psf=model.psf if not model.noise else None))
        noisy = apply_detector_model(img, model) if model.noise else None
    except BackendError as exc:
        raise UsageError(f"-backend/-device/-dtype: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"-psf_radius: {exc}") from None
    hdr = dict(pixel_mm=o.get("-pixel", 0.1), distance_mm=o.get("-distance", 100.0), wavelength_A=o.get("-lambda", 1.0))
    ints = np.asarray(to_numpy(noiseless.image)).astype(np.uint16)
    outputs = [(o.get("-intfile", "intimage.img"), smv_bytes(ints, **hdr))]   # (file name, bytes)
    if not o.has("-nopgm"):
        pix = np.minimum(ints, 255).astype(np.uint8)
        outputs.append((o.get("-pgmfile", "image.pgm"), pgm_header(ints.shape[1], ints.shape[0], 1.0) + pix.tobytes()))
    if noisy is not None:
        noise = np.asarray(to_numpy(noisy.image)).astype(np.uint16)
        outputs.append((o.get("-noisefile", "noiseimage.img"), smv_bytes(noise, **hdr)))
        sys.stdout.write(f"{float(to_numpy(noisy.photons).sum()):.0f} photons on noise image "
                         f"({int(to_numpy(noisy.overloads))} overloads)\n")
    write_outputs(outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
