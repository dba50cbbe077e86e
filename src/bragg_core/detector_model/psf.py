"""Point-spread functions of the detector, as the reference's ``noisify`` defines them.

Both kernels are the PSF integrated over a square pixel, on a (2R+1)^2 grid
of pixel offsets (dx, dy), set to zero outside the disk dx^2 + dy^2 <= R^2:

* Gaussian of full width w (pixels): 1/4 [erf(c (dx+1/2)/w) - erf(c (dx-1/2)/w)]
  [erf(c (dy+1/2)/w) - erf(c (dy-1/2)/w)], c = 2 sqrt(ln 2);
* "fiber" (the Lorentzian-like PSF of a fibre-optic taper, g / (2 pi (g^2 +
  r^2)^(3/2))) with g = 0.652383013252053 w: the pixel integral of
  atan(x y / (g sqrt(g^2 + x^2 + y^2))) / (2 pi).

The image is convolved with the kernel (pixels <= 0 spread nothing; zero
padding at the edges).  The Gaussian kernel is a product of per-axis weights
e(dx) e(dy) cut to the disk, so its row dy holds the weights e(dx) for
|dx| <= w(dy) = floor(sqrt(R^2 - dy^2)): the image is summed along the rows
into H_w = sum_{|dx| <= w} e(dx) I(x + dx) (w = 0..R, one shifted pair per
step), and out = sum_dy e(dy) H_w(dy)(y + dy) along the columns, about 6R
array passes instead of (2R+1)^2 taps; this is done for radii up to
``MAX_TAP_RADIUS``, in blocks of rows with a halo of R rows.  Other kernels
(and wider Gaussians) go by FFT where the namespace has ``xp.fft`` and it
accepts the arrays, else (no FFT extension; Dask along a chunked axis) by a
sum over the (2R+1)^2 kernel taps of shifted copies of the image.  Then the photons the truncated kernel is taken to
lose, sum(I > 0) x exp(-ln 16 (R/w)^2) (Gaussian) or x g / sqrt(g^2 + R^2)
(fiber), are spread evenly over the image, as the reference does.
"""

from __future__ import annotations

import math

from .._backend import host_scalar, is_lazy

__all__ = ["erf", "psf_kernel", "convolve_psf", "auto_radius", "apply_psf", "FIBER_G_PER_FWHM", "MAX_TAP_RADIUS",
           "gauss_weights", "gauss_rows", "separable"]

FIBER_G_PER_FWHM = 0.652383013252053
_C = 2.0 * math.sqrt(math.log(2.0))
_ERF_TERMS = 128
#: the largest Gaussian radius convolved by row and column sums (about 6R passes) rather than by FFT
MAX_TAP_RADIUS = 32


def erf(xp, x):
    """erf(x) by the positive-term series 2/sqrt(pi) e^(-x^2) sum (2x^2)^n x / (2n+1)!!.

    Every term is positive, so there is no cancellation; |x| is capped at 6
    (erfc(6) = 2e-17: erf rounds to 1 in float64 beyond).  128 terms reach the
    sum's float64 precision at x = 6.  Pure array-API arithmetic: differentiable.
    """
    ax = xp.minimum(xp.abs(x), xp.full_like(x, 6.0))
    x2 = 2.0 * ax * ax
    t = ax
    s = ax
    for n in range(1, _ERF_TERMS):  # series terms, on the small kernel arrays only
        t = t * x2 / (2.0 * n + 1.0)
        s = s + t
    val = xp.minimum((2.0 / math.sqrt(math.pi)) * xp.exp(-ax * ax) * s, xp.ones_like(ax))
    return xp.where(x < 0, -val, val)


def gauss_weights(xp, fwhm_px, radius: int, like):
    """Per-axis weights (2R+1,) whose outer product is the Gaussian kernel before the disk cut (each
    carries a factor 1/2 of the kernel's 1/4)."""
    edges = xp.astype(xp.arange(-radius, radius + 2, device=_dev(like)), like.dtype) - 0.5
    E = erf(xp, _C * edges / fwhm_px)   # erf at the 2R+2 pixel edges, once (one array: one Dask chunk)
    return 0.5 * (E[1:] - E[:-1])


def separable(kind: str, radius: int) -> bool:
    """Whether the PSF of this kind and radius is convolved by row and column sums (:func:`gauss_rows`)."""
    return kind == "gauss" and 1 <= radius <= MAX_TAP_RADIUS


def _zeros(xp, shape, like):
    return xp.zeros(shape, dtype=like.dtype, device=_dev(like))


def gauss_rows(xp, image, e, radius: int, r0: int, r1: int, scale=None, clip: bool = True):
    """Rows r0:r1 of the Gaussian-PSF convolution of ``image`` x ``scale`` (whole image (H, W)), values
    below 0 (and NaN) counted as 0 unless ``clip`` is False (an image without any).

    ``e``: :func:`gauss_weights`.  Reads rows r0 - R .. r1 + R; the result
    depends on the rows asked for only through which ones it returns.
    """
    H, W = image.shape
    R = int(radius)
    a, b = max(0, r0 - R), min(H, r1 + R)
    tile = image[a:b, :]
    if scale is not None:
        tile = tile * scale
    if clip and (is_lazy(tile) or not bool(xp.all(tile > 0))):  # a check costs less than the where
        tile = xp.where(tile > 0, tile, xp.zeros_like(tile))
    zc = _zeros(xp, (b - a, R), tile)
    tile = xp.concat([zc, tile, zc], axis=1)                # (b - a, W + 2R)
    pad_top, pad_bottom = R - (r0 - a), R - (b - r1)
    if pad_top or pad_bottom:
        rows = [tile]
        if pad_top:
            rows.insert(0, _zeros(xp, (pad_top, W + 2 * R), tile))
        if pad_bottom:
            rows.append(_zeros(xp, (pad_bottom, W + 2 * R), tile))
        tile = xp.concat(rows, axis=0)                      # (r1 - r0 + 2R, W + 2R)
    h = r1 - r0
    widths = [math.isqrt(R * R - d * d) for d in range(R + 1)]
    need = set(widths)
    acc = e[R] * tile[:, R:R + W]
    sums = {0: acc}
    for dx in range(1, max(widths) + 1):  # kernel columns, one symmetric pair each
        acc = acc + e[R + dx] * (tile[:, R - dx:R - dx + W] + tile[:, R + dx:R + dx + W])
        if dx in need:
            sums[dx] = acc
    out = e[R] * sums[widths[0]][R:R + h, :]
    for dy in range(1, R + 1):  # kernel rows, one symmetric pair each
        s = sums[widths[dy]]
        out = out + e[R + dy] * (s[R - dy:R - dy + h, :] + s[R + dy:R + dy + h, :])
    return out


def psf_kernel(xp, kind: str, fwhm_px, radius: int, like, extent: tuple[int, int] | None = None):
    """The kernel (rows dy, columns dx) in the dtype/device of ``like``: (2R+1, 2R+1), or its central
    (2 ry + 1, 2 rx + 1) part for ``extent`` = (ry, rx) (ry, rx <= R; the disk is still the one of radius R)."""
    ry, rx = (radius, radius) if extent is None else extent
    dev = _dev(like)

    def offsets(r):
        return xp.astype(xp.arange(-r, r + 1, device=dev), like.dtype)

    dy, dx = offsets(ry), offsets(rx)
    if kind == "gauss":
        def axis(r):  # erf at the 2r+2 pixel edges, once (one array: one Dask chunk)
            E = erf(xp, _C * (xp.astype(xp.arange(-r, r + 2, device=dev), like.dtype) - 0.5) / fwhm_px)
            return E[1:] - E[:-1]

        k = 0.25 * axis(ry)[:, None] * axis(rx)[None, :]
    elif kind == "fiber":
        g = fwhm_px * FIBER_G_PER_FWHM

        def F(x, y):
            return xp.atan((x * y) / (g * xp.sqrt(g * g + x * x + y * y))) / (2.0 * math.pi)

        y, x = dy[:, None], dx[None, :]
        k = F(x + 0.5, y + 0.5) - F(x + 0.5, y - 0.5) - F(x - 0.5, y + 0.5) + F(x - 0.5, y - 0.5)
    else:
        raise ValueError(f"unknown PSF kind {kind!r}; use 'gauss' or 'fiber'")
    r2 = dy[:, None] * dy[:, None] + dx[None, :] * dx[None, :]
    return xp.where(r2 > float(radius * radius), xp.zeros_like(k), k)


def lost_fraction(xp, kind: str, fwhm_px, radius: int):
    """The fraction of a pixel's photons the reference counts as lost beyond radius R."""
    if kind == "gauss":
        return xp.exp(-math.log(16.0) * (radius / fwhm_px) ** 2)
    g = fwhm_px * FIBER_G_PER_FWHM
    return g / xp.sqrt(g * g + float(radius * radius))


def auto_radius(kind: str, fwhm_px: float, max_photons: float, shape) -> int:
    """The reference's automatic kernel radius from the brightest pixel (host values)."""
    lost = math.sqrt(max_photons) / 10.0
    if kind == "gauss":
        r = 1 + math.ceil(math.sqrt(-math.log(lost / max_photons) / math.log(16.0)) * fwhm_px)
    else:
        r = 1 + math.ceil(fwhm_px * FIBER_G_PER_FWHM * (max_photons / lost))
    return max(1, min(r, max(shape)))


def _dev(x):
    from .._backend import device_of

    return device_of(x)


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (a transform length every FFT library does quickly)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def convolve_psf(xp, img, kind: str, fwhm_px, radius: int):
    """'same'-size convolution of ``img`` with the PSF of radius R, zero padding: the kernel's offsets
    beyond the image's own size (|dy| >= H, |dx| >= W) reach no pixel, so only its central part is made."""
    H, W = img.shape
    extent = (min(radius, H - 1), min(radius, W - 1))
    return _convolve(xp, img, psf_kernel(xp, kind, fwhm_px, radius, img, extent))


def _convolve(xp, img, kernel, radius: int | None = None):
    """'same'-size linear convolution of ``img`` with a (2 ry + 1, 2 rx + 1) kernel, zero padding.

    By FFT, on lengths of at least H + ry and W + rx (the circular
    convolution's wrap-around then falls outside the rows and columns kept).
    ``radius`` is not needed (the kernel's shape gives ry and rx).
    """
    H, W = img.shape
    ry, rx = (int(kernel.shape[0]) - 1) // 2, (int(kernel.shape[1]) - 1) // 2
    fft = getattr(xp, "fft", None)
    if fft is not None and hasattr(fft, "rfftn"):
        Hp, Wp = _fast_length(H + ry), _fast_length(W + rx)
        try:
            spec = fft.rfftn(img, s=(Hp, Wp), axes=(0, 1)) * fft.rfftn(kernel, s=(Hp, Wp), axes=(0, 1))
        except ValueError:  # an FFT that refuses these arrays (Dask along a chunked axis): the tap sum below
            spec = None
        if spec is not None:
            full = fft.irfftn(spec, s=(Hp, Wp), axes=(0, 1))[ry:ry + H, rx:rx + W]
            # a non-negative image and kernel give a non-negative result: drop the transform's rounding below 0
            return xp.where(full < 0, xp.zeros_like(full), full)
    # no FFT in this namespace: a sum over the kernel taps of shifted copies of the padded image
    p = img
    if ry:
        zr = xp.zeros((ry, W), dtype=img.dtype, device=_dev(img))
        p = xp.concat([zr, p, zr], axis=0)
    if rx:
        zc = xp.zeros((H + 2 * ry, rx), dtype=img.dtype, device=_dev(img))
        p = xp.concat([zc, p, zc], axis=1)
    out = xp.zeros_like(img)
    for dy in range(2 * ry + 1):  # kernel taps, not pixels
        for dx in range(2 * rx + 1):
            out = out + kernel[dy, dx] * p[2 * ry - dy:2 * ry - dy + H, 2 * rx - dx:2 * rx - dx + W]
    return out


def apply_psf(xp, image, kind: str, fwhm_px, radius: int = 0):
    """The image (photons, (slow, fast)) spread by the PSF; ``radius`` 0 picks it as the reference does.

    ``fwhm_px`` (PSF full width in pixels) may be an array (differentiable);
    the radius is a host integer.
    """
    fw_h = host_scalar(fwhm_px)
    if fw_h is not None and fw_h <= 0:
        return image
    if not hasattr(fwhm_px, "shape"):
        fwhm_px = xp.asarray(fw_h, dtype=image.dtype, device=_dev(image))
    positive = xp.where(image > 0, image, xp.zeros_like(image))
    if radius <= 0:
        mx = host_scalar(xp.max(image))
        if mx is None or fw_h is None:
            raise ValueError("psf_radius must be given when the image or the PSF width is traced "
                             "(the automatic radius reads the brightest pixel)")
        if mx <= 0:
            return xp.zeros_like(image)  # the reference's "no photons" case
        radius = auto_radius(kind, fw_h, mx, image.shape)
    radius = max(1, min(int(radius), max(image.shape)))
    if separable(kind, radius):
        out = gauss_rows(xp, positive, gauss_weights(xp, fwhm_px, radius, image), radius, 0, image.shape[0],
                         clip=False)
    else:
        out = convolve_psf(xp, positive, kind, fwhm_px, radius)
    lost = xp.sum(positive) * lost_fraction(xp, kind, fwhm_px, radius)
    return out + lost / float(image.shape[0] * image.shape[1])
