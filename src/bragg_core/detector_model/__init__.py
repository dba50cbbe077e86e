"""The detector model of the reference's ``noisify``: PSF, noise, gain, ADC and saturation.

:func:`apply_detector_model` turns a float image (photons per pixel, or any
scale with ``scale``) into the integer image of a detector, in ``noisify``'s
order of steps:

1. photons = scale x image;
2. without noise: the PSF (if any) on the photons; ADU = photons x gain + offset;
3. with noise: photons x (1 + flicker N1) x (1 + calibration Nc), a Poisson
   deviate of that, then the PSF, then ADU = photons x gain + offset +
   read-out x N2;
4. integer = trunc(ADU), clipped to [0, saturation] (a value above saturation
   counts as an overload).

N1, N2 and the Poisson deviates come from the counter-based generator of
:mod:`.counter_rng` keyed by (``seed``, ``shot``, pixel); the calibration
pattern Nc by (``calibration_seed``, pixel) only, so it is the same on every
shot.  Everything runs in the image's namespace and device; the continuous
parameters (scale, PSF width, gain, offset, noise levels) may be arrays and
the float ADU image is differentiable in them (the Poisson step passes no
gradient).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from .._backend import Context, geometry_context, get_context, is_scalar
from .counter_rng import STREAMS, normal, pixel_base
from .poisson import poisson
from .psf import apply_psf

__all__ = ["DetectorModel", "DetectorImage", "apply_detector_model", "pixel_noise", "detector_pixel_index"]


@dataclass(frozen=True)
class DetectorModel:
    """Detector parameters (``noisify``'s flags and defaults in brackets).

    ``psf``: None, ``"gauss"`` or ``"fiber"`` (-psf); ``psf_fwhm_um`` (-psf_fwhm, 46);
    ``psf_radius`` pixels, 0 = automatic (-psf_radius); ``pixel_size_mm`` (-pixel, 0.1);
    ``noise`` False gives the noiseless image (-nonoise); ``flicker`` (-flicker, 0),
    ``calibration`` (-calibration, 0.03) fractional rms; ``readout_adu`` (-readout, 0);
    ``quantum_gain`` ADU per photon (-gain, 1); ``adc_offset`` (-adc, 40);
    ``scale`` multiplies the input (-scale times fluence r_e^2, 1);
    ``saturation_adu`` (65535); ``seed`` (-seed), ``calibration_seed`` (-calib_seed,
    123456789), ``shot`` (0): the generator's keys.
    """

    psf: Optional[str] = None
    psf_fwhm_um: Any = 46.0
    psf_radius: int = 0
    pixel_size_mm: Any = 0.1
    noise: bool = True
    flicker: Any = 0.0
    calibration: Any = 0.03
    readout_adu: Any = 0.0
    quantum_gain: Any = 1.0
    adc_offset: Any = 40.0
    scale: Any = 1.0
    saturation_adu: float = 65535.0
    seed: int = 0
    calibration_seed: int = 123456789
    shot: int = 0

    def __post_init__(self):
        if self.psf not in (None, "gauss", "fiber"):
            raise ValueError(f"DetectorModel.psf must be None, 'gauss' or 'fiber', got {self.psf!r}")
        if not isinstance(self.psf_radius, int) or self.psf_radius < 0:
            raise ValueError(f"DetectorModel.psf_radius must be a non-negative integer, got {self.psf_radius!r}")
        for name in ("psf_fwhm_um", "flicker", "calibration", "readout_adu", "pixel_size_mm"):
            v = getattr(self, name)
            if is_scalar(v) and not float(v) >= 0:
                raise ValueError(f"DetectorModel.{name} must not be negative, got {v!r}")
        if is_scalar(self.pixel_size_mm) and not float(self.pixel_size_mm) > 0:
            raise ValueError(f"DetectorModel.pixel_size_mm must be positive, got {self.pixel_size_mm!r}")
        for name in ("seed", "calibration_seed", "shot"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"DetectorModel.{name} must be an integer, got {getattr(self, name)!r}")


class DetectorImage(NamedTuple):
    image: Any       #: int32 counts in [0, saturation] (the SMV pixels)
    adu: Any         #: float ADU before truncation and clipping (differentiable)
    photons: Any     #: float photons after noise and PSF
    overloads: Any   #: number of pixels above saturation (0-d integer array)


def detector_pixel_index(xp, shape, device, origin=(0, 0), full_fast: Optional[int] = None, offset: int = 0):
    """Global pixel indices (int64, ``shape``) of a tile at ``origin`` = (row, col) of an image
    ``full_fast`` pixels wide (default: the tile's width), plus ``offset`` (e.g. a panel's first pixel)."""
    rows, cols = shape
    W = cols if full_fast is None else int(full_fast)
    r = xp.arange(origin[0], origin[0] + rows, dtype=xp.int64, device=device)
    c = xp.arange(origin[1], origin[1] + cols, dtype=xp.int64, device=device)
    return r[:, None] * W + c[None, :] + offset


def _param(g: Context, v):
    return v if is_scalar(v) else g.asarray(v)


def pixel_noise(photons, model: DetectorModel, pixel_index):
    """Flicker, calibration and Poisson noise of a float photon image (or tile).

    ``pixel_index``: int64 global pixel indices of the same shape (see
    :func:`detector_pixel_index`); the result depends only on them and the
    model's seeds, so tiles give the same pixels as the whole image.
    """
    g = get_context(photons)
    xp = g.xp
    if pixel_index.dtype != xp.int64:
        raise ValueError("the noise generator needs int64 pixel indices (on JAX: "
                         "jax.config.update('jax_enable_x64', True))")
    gg = geometry_context(g)
    shape = photons.shape
    flat = xp.reshape(gg.asarray(photons), (-1,))
    base = pixel_base(xp, xp.reshape(pixel_index, (-1,)))
    dt = gg.dtype
    fl, cal = model.flicker, model.calibration
    if not (is_scalar(fl) and float(fl) == 0.0):
        flat = flat * (1.0 + _param(gg, fl) * normal(xp, base, model.seed, STREAMS["flicker"], model.shot, 0, dt))
    if not (is_scalar(cal) and float(cal) == 0.0):
        nc = normal(xp, base, model.calibration_seed, STREAMS["calibration"], 0, 0, dt)
        flat = flat * (1.0 + _param(gg, cal) * nc)
    counts = poisson(xp, flat, base, model.seed, model.shot)
    return xp.astype(xp.reshape(counts, shape), g.dtype)


_BLOCK_PIXELS = 1 << 17  # per-pixel noise in blocks of rows of about this many pixels (cache-sized passes)


def _by_row_blocks(xp, fn, like):
    """``fn(rows)`` over blocks of rows, concatenated; one call for lazy backends or small images.

    The noise of a pixel depends only on its global index, so blocks change nothing but the speed.
    """
    from .._backend import is_lazy

    H, W = like.shape
    step = max(1, _BLOCK_PIXELS // max(W, 1))
    if is_lazy(like) or H <= step:
        return fn(slice(0, H))
    return xp.concat([fn(slice(r, min(H, r + step))) for r in range(0, H, step)], axis=0)


def apply_detector_model(image, model: DetectorModel, *, dtype: Any = None, pixel_index=None) -> DetectorImage:
    """The detector's view of ``image`` (float photons/pixel, shape (slow, fast)), in its namespace and device.

    Steps and order as in the module docstring.  ``pixel_index`` (int64, the
    image's shape) places the image in a larger one for the generator (default:
    the image's own raster index).
    """
    g = get_context(image, *(v for v in (model.psf_fwhm_um, model.quantum_gain, model.adc_offset, model.scale,
                                          model.flicker, model.calibration, model.readout_adu, model.pixel_size_mm)
                             if not is_scalar(v)), dtype=dtype)
    xp = g.xp
    if len(image.shape) != 2:
        raise ValueError(f"apply_detector_model needs a 2-D image (slow, fast), got shape {tuple(image.shape)}")
    photons = g.asarray(image) * _param(g, model.scale)
    if pixel_index is None:
        pixel_index = detector_pixel_index(xp, tuple(image.shape), g.device)
    if model.noise:
        photons = _by_row_blocks(xp, lambda rows: pixel_noise(photons[rows, :], model, pixel_index[rows, :]),
                                 photons)
    if model.psf is not None:
        fwhm_px = _param(g, model.psf_fwhm_um) * 1e-3 / _param(g, model.pixel_size_mm)
        photons = apply_psf(xp, photons, model.psf, fwhm_px, model.psf_radius)
    adu = photons * _param(g, model.quantum_gain) + _param(g, model.adc_offset)
    if model.noise and not (is_scalar(model.readout_adu) and float(model.readout_adu) == 0.0):
        gg = geometry_context(g)

        def readout(rows):
            base = pixel_base(xp, xp.reshape(pixel_index[rows, :], (-1,)))
            n = normal(xp, base, model.seed, STREAMS["readout"], model.shot, 0, gg.dtype)
            return xp.reshape(xp.astype(n, g.dtype), pixel_index[rows, :].shape)

        adu = adu + _param(g, model.readout_adu) * _by_row_blocks(xp, readout, adu)
    sat = float(model.saturation_adu)
    over = adu > sat
    overloads = xp.sum(xp.astype(over, xp.int64)) if model.noise else xp.sum(xp.astype(over & False, xp.int64))
    clipped = xp.clip(adu, 0.0, sat)
    counts = xp.astype(xp.floor(clipped), xp.int32)
    return DetectorImage(counts, adu, photons, overloads)
