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

N1, N2 and the Poisson deviates come from the counter-based generator of :mod:`.counter_rng` keyed by
(``seed``, ``shot``, pixel); the calibration pattern Nc by
(``calibration_seed``, pixel) only, so it is the same on every shot.

The steps run in blocks of rows of about 64k pixels (the temporaries of a
block stay in the cache), fused into one pass where no PSF couples the
pixels (else two: noise, then PSF and ADC).  Where the backend writes into a
preallocated host image and no input carries a gradient, the blocks are
shared among forked workers (:func:`bragg_core.engine.parallel.map_row_blocks`);
a pixel's value depends only on its global index, so neither the blocks nor
the workers change any value.  Everything runs in the image's namespace and device; the continuous
parameters (scale, PSF width, gain, offset, noise levels) may be arrays and
the float ADU image is differentiable in them (the Poisson step passes no
gradient).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from .._backend import Context, carries_gradient, geometry_context, get_context, host_scalar, is_scalar
from ..engine import parallel
from .counter_rng import STREAMS, normal, normal_pair, pixel_base
from .poisson import poisson
from .psf import auto_radius, convolve_psf, gauss_rows, gauss_weights, lost_fraction, separable

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


def _zero(v) -> bool:
    return is_scalar(v) and float(v) == 0.0


def _as(xp, x, dtype):
    return x if x.dtype == dtype else xp.astype(x, dtype)


def _one(v) -> bool:
    return is_scalar(v) and float(v) == 1.0


def _noisy(xp, gg, flat, base, model: DetectorModel, want_readout: bool):
    """Flicker, calibration and Poisson noise of flat float64 photons; also the read-out deviates if wanted
    (their Box-Muller pair gives the Poisson normal approximation's deviates too)."""
    dt = gg.dtype
    fl, cal = model.flicker, model.calibration
    if not _zero(fl):
        flat = flat * (1.0 + _param(gg, fl) * normal(xp, base, model.seed, STREAMS["flicker"], model.shot, 0, dt))
    if not _zero(cal):
        nc = normal(xp, base, model.calibration_seed, STREAMS["calibration"], 0, 0, dt)
        flat = flat * (1.0 + _param(gg, cal) * nc)
    n2 = approx = None
    if want_readout:
        n2, approx = normal_pair(xp, base, model.seed, STREAMS["readout"], model.shot, 0, dt)
    return poisson(xp, flat, base, model.seed, model.shot, approx), n2


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
    flat = xp.reshape(gg.asarray(photons), (-1,))
    counts, _ = _noisy(xp, gg, flat, pixel_base(xp, xp.reshape(pixel_index, (-1,))), model, False)
    return xp.astype(xp.reshape(counts, photons.shape), g.dtype)


_BLOCK_PIXELS = 1 << 16      # per-pixel steps in blocks of rows of about this many pixels (cache-sized passes)
_PSF_BLOCK_PIXELS = 1 << 16  # PSF blocks: cache-sized too, but never under 4R rows (the halo is 2R rows a block)


def apply_detector_model(image, model: DetectorModel, *, dtype: Any = None, pixel_index=None) -> DetectorImage:
    """The detector's view of ``image`` (float photons/pixel, shape (slow, fast)), in its namespace and device.

    Steps and order as in the module docstring.  ``pixel_index`` (int64, the
    image's shape) places the image in a larger one for the generator (default:
    the image's own raster index).
    """
    params = [v for v in (model.psf_fwhm_um, model.quantum_gain, model.adc_offset, model.scale, model.flicker,
                          model.calibration, model.readout_adu, model.pixel_size_mm) if not is_scalar(v)]
    g = get_context(image, *params, dtype=dtype)
    xp = g.xp
    if len(image.shape) != 2:
        raise ValueError(f"apply_detector_model needs a 2-D image (slow, fast), got shape {tuple(image.shape)}")
    H, W = (int(n) for n in image.shape)
    src = g.asarray(image)
    gg = geometry_context(g)
    if pixel_index is not None and pixel_index.dtype != xp.int64:
        raise ValueError("the noise generator needs int64 pixel indices (on JAX: "
                         "jax.config.update('jax_enable_x64', True))")
    # a preallocated host image (and forked workers) only where no gradient has to pass through the blocks
    host = g.caps.preallocated_image and not any(carries_gradient(v) for v in [image, *params])
    scale = _param(g, model.scale)
    noise = model.noise
    readout = noise and not _zero(model.readout_adu)
    fdt = g.dtype_name
    if noise or readout:
        if pixel_index is None:
            rowb = pixel_base(xp, xp.arange(H, dtype=xp.int64, device=g.device) * W)
            colb = pixel_base(xp, xp.arange(W, dtype=xp.int64, device=g.device))

            def base_of(r0, r1):  # pixel * gamma = row * (W gamma) + col * gamma (mod 2^64)
                return xp.reshape(rowb[r0:r1, None] + colb[None, :], (-1,))
        else:
            def base_of(r0, r1):
                return pixel_base(xp, xp.reshape(pixel_index[r0:r1, :], (-1,)))

    def finish(r0, r1, photons, n2=None):
        """ADU, counts and overloads of rows r0:r1 from their final photons."""
        adu = photons if _one(model.quantum_gain) else photons * _param(g, model.quantum_gain)
        adu = adu + _param(g, model.adc_offset)
        if readout:
            if n2 is None:
                n2 = normal(xp, base_of(r0, r1), model.seed, STREAMS["readout"], model.shot, 0, gg.dtype)
            adu = adu + _param(g, model.readout_adu) * _as(xp, xp.reshape(n2, (r1 - r0, W)), g.dtype)
        sat = float(model.saturation_adu)
        if noise:
            over = xp.sum(xp.astype(adu > sat, xp.int64), axis=1)
        else:
            over = xp.zeros((r1 - r0,), dtype=xp.int64, device=g.device)
        counts = xp.astype(xp.floor(xp.clip(adu, 0.0, sat)), xp.int32)
        return photons, adu, counts, over

    def noisy_rows(r0, r1, want_readout):
        flat = xp.reshape(gg.asarray(src[r0:r1, :] * scale), (-1,))
        counts, n2 = _noisy(xp, gg, flat, base_of(r0, r1), model, want_readout)
        return _as(xp, xp.reshape(counts, (r1 - r0, W)), g.dtype), n2

    final_out = ((fdt, (W,)), (fdt, (W,)), ("int32", (W,)), ("int64", ()))
    rows = parallel.block_rows(W, pixels=_BLOCK_PIXELS)

    def run(fn, outputs, rows_per_block, weight):
        return parallel.map_row_blocks(g, H, rows_per_block, fn, outputs, host=host, pixels=H * W * weight)

    fwhm_px = None
    if model.psf is not None:
        fwhm_px = _param(g, model.psf_fwhm_um) * 1e-3 / _param(g, model.pixel_size_mm)
        fw_h = host_scalar(fwhm_px)
        if fw_h is not None and fw_h <= 0:
            fwhm_px = None
        elif not hasattr(fwhm_px, "shape"):
            fwhm_px = xp.asarray(fw_h, dtype=g.dtype, device=g.device)
    if fwhm_px is None:  # no PSF: every step in one pass
        def one_pass(r0, r1):
            if noise:
                photons, n2 = noisy_rows(r0, r1, readout)
            else:
                photons, n2 = src[r0:r1, :] * scale, None
            return finish(r0, r1, photons, n2)

        photons, adu, counts, over = run(one_pass, final_out, rows, 8)
        return DetectorImage(counts, adu, photons, xp.sum(over))

    # with a PSF: the (noisy) photons and their positive sum per row first; then the PSF and the ADC
    def first(r0, r1):
        if noise:
            p = noisy_rows(r0, r1, False)[0]
        else:
            p = src[r0:r1, :] if _one(model.scale) else src[r0:r1, :] * scale
        pos = xp.where(p > 0, p, xp.zeros_like(p))
        return p, xp.sum(pos, axis=1)

    if noise:
        photons, row_sums = run(first, ((fdt, (W,)), (fdt, ())), rows, 8)
        pscale, clip = None, False  # counts: never below 0
    else:
        row_sums = run(lambda r0, r1: first(r0, r1)[1:], ((fdt, ()),), rows, 1)[0]
        photons, pscale, clip = src, (None if _one(model.scale) else scale), True
    radius = model.psf_radius
    if radius <= 0:
        mx = host_scalar(xp.max(photons if pscale is None else photons * pscale))
        fw_h = host_scalar(fwhm_px)
        if mx is None or fw_h is None:
            raise ValueError("psf_radius must be given when the image or the PSF width is traced "
                             "(the automatic radius reads the brightest pixel)")
        if mx <= 0:  # the reference's "no photons" case
            zero = xp.zeros_like(photons)
            photons, adu, counts, over = run(lambda r0, r1: finish(r0, r1, zero[r0:r1, :]), final_out, rows, 2)
            return DetectorImage(counts, adu, photons, xp.sum(over))
        radius = auto_radius(model.psf, fw_h, mx, (H, W))
    radius = max(1, min(int(radius), max(H, W)))
    lost = xp.sum(row_sums) * lost_fraction(xp, model.psf, fwhm_px, radius) / float(H * W)
    if separable(model.psf, radius):
        e = gauss_weights(xp, fwhm_px, radius, photons)

        def spread(r0, r1):
            return finish(r0, r1, gauss_rows(xp, photons, e, radius, r0, r1, scale=pscale, clip=clip) + lost)

        prow = max(parallel.block_rows(W + 2 * radius, pixels=_PSF_BLOCK_PIXELS), 4 * radius)
        out = run(spread, final_out, prow, 4 * radius + 8)
    else:
        p = photons if pscale is None else photons * pscale
        positive = xp.where(p > 0, p, xp.zeros_like(p)) if clip else p
        conv = convolve_psf(xp, positive, model.psf, fwhm_px, radius) + lost
        out = run(lambda r0, r1: finish(r0, r1, conv[r0:r1, :]), final_out, rows, 2)
    photons, adu, counts, over = out
    return DetectorImage(counts, adu, photons, xp.sum(over))
