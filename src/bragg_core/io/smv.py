"""SMV (ADSC) images: the reference's header, writer, a reader, and int conversion.

An SMV file is an ASCII header ``{\\nKEY=VALUE;\\n...}\\f`` padded with spaces to
``HEADER_BYTES`` (512 here), followed by ``SIZE1 * SIZE2`` unsigned 16-bit
pixels, fast index (``SIZE1``) varying fastest, in ``BYTE_ORDER``.

The header that :func:`smv_header` writes is byte-identical to the reference's:
same keys in the same order, values printed with C's ``%g`` (six significant
digits), ``DIALS_ORIGIN=x,y,z`` without the ``;`` every other line has.
Lengths are in mm, the wavelength in Å, angles in degrees, ``XDS_ORG*`` in
pixels.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import astuple, dataclass, fields

import numpy as np

from .atomic import atomic_write

__all__ = [
    "SMVFormatError", "SMVHeader", "c_format_g", "smv_header", "write_smv",
    "read_smv", "parse_smv", "parse_smv_header", "int_image", "int_image_scale",
]

HEADER_BYTES = 512
_M_1_PI = 0.31830988618379067154  # C's M_1_PI
_RTD = 180.0 * _M_1_PI  # the reference's radians-to-degrees factor


class SMVFormatError(ValueError):
    """A file that is not a readable SMV image; the message names the file."""


def c_format_g(x: float) -> str:
    """``printf("%g", x)`` as glibc prints it (also ``-0``, ``inf``, ``-nan``)."""
    x = float(x)
    if math.isnan(x):
        return "-nan" if math.copysign(1.0, x) < 0 else "nan"
    return "%g" % x


@dataclass(frozen=True)
class SMVHeader:
    """The values of the reference's SMV header, in header units.

    Field order is header order.  ``dials_origin`` is a 3-tuple (mm).
    """

    size1: int  #: pixels along the fast axis
    size2: int  #: pixels along the slow axis
    pixel_size: float  #: mm
    distance: float  #: mm
    wavelength: float  #: Å
    beam_center_x: float  #: mm
    beam_center_y: float  #: mm
    adxv_center_x: float  #: mm
    adxv_center_y: float  #: mm
    mosflm_center_x: float  #: mm
    mosflm_center_y: float  #: mm
    denzo_x_beam: float  #: mm
    denzo_y_beam: float  #: mm
    dials_origin: tuple  #: (x, y, z) mm
    xds_orgx: float  #: pixels
    xds_orgy: float  #: pixels
    close_distance: float  #: mm
    phi: float  #: degrees
    osc_start: float  #: degrees
    osc_range: float  #: degrees
    twotheta: float  #: degrees
    byte_order: str = "little_endian"

    @classmethod
    def from_geometry(
        cls, *, fpixels, spixels, pixel_size, distance, wavelength, xbeam, ybeam,
        fbeam, sbeam, detsize_s, dials_origin, orgx, orgy, close_distance,
        phi0, osc, twotheta, noise_image=False, byte_order="little_endian",
    ) -> "SMVHeader":
        """Header values from the reference's internal quantities (SI: m, rad).

        Each field is computed with the reference's expression, so the printed
        digits agree.  ``dials_origin`` is in mm and ``orgx``/``orgy`` in pixels
        already.  The noise image's header differs from the int image's only in
        the DENZO lines (``+0.0*pixel`` instead of ``-0.0*pixel``), which changes
        at most the sign of a zero.
        """
        shift = 0.0 * pixel_size
        if noise_image:
            denzo = ((sbeam + shift) * 1000.0, (fbeam + shift) * 1000)
        else:
            denzo = ((sbeam - shift) * 1000.0, (fbeam - shift) * 1000)
        return cls(
            int(fpixels), int(spixels), pixel_size * 1000.0, distance * 1000.0,
            wavelength * 1e10, xbeam * 1000.0, ybeam * 1000,
            fbeam * 1000.0, (detsize_s - sbeam) * 1000,
            (sbeam - 0.5 * pixel_size) * 1000.0, (fbeam - 0.5 * pixel_size) * 1000,
            denzo[0], denzo[1], tuple(float(v) for v in dials_origin),
            orgx, orgy, close_distance * 1000.0,
            phi0 * _RTD, phi0 * _RTD, osc * _RTD, twotheta * _RTD, byte_order,
        )

    @classmethod
    def from_mapping(cls, items: Mapping) -> "SMVHeader":
        """Build from header keys (``"PIXEL_SIZE"`` ...), values as str or numbers.

        Keys the reference writes with fixed values (``DIM``, ``TYPE``,
        ``DETECTOR_SN``, ``BEAMLINE``) may be present but must hold those
        values; ``HEADER_BYTES`` is ignored (it follows from the header's
        length); any other key raises :class:`ValueError`.
        """
        items = dict(items)
        items.pop("HEADER_BYTES", None)
        for key, fixed in _FIXED.items():
            if key in items and str(items.pop(key)).strip() != fixed:
                raise ValueError(f"SMV header key {key} must be {fixed!r}")
        names = {f.name.upper(): f.name for f in fields(cls)}
        unknown = set(items) - set(names)
        if unknown:
            raise ValueError(f"unknown SMV header keys: {sorted(unknown)}")
        kwargs = {}
        for key, value in items.items():
            name = names[key]
            if name in ("size1", "size2"):
                kwargs[name] = int(value)
            elif name == "dials_origin":
                parts = value.split(",") if isinstance(value, str) else value
                kwargs[name] = tuple(float(v) for v in parts)
            elif name == "byte_order":
                kwargs[name] = str(value).strip()
            else:
                kwargs[name] = float(value)
        return cls(**kwargs)

    def to_mapping(self) -> dict:
        """Header key -> value (numbers, and the tuple for ``DIALS_ORIGIN``)."""
        return {f.name.upper(): v for f, v in zip(fields(self), astuple(self))}


_FIXED = {"DIM": "2", "TYPE": "unsigned_short",
          "DETECTOR_SN": "000", "BEAMLINE": "fake"}


def smv_header(header: SMVHeader | Mapping) -> bytes:
    """The reference's 512-byte SMV header for ``header`` (an :class:`SMVHeader`
    or a mapping accepted by :meth:`SMVHeader.from_mapping`).

    The text is at most 512 bytes unless many values need exponents (about 450
    bytes with short values; each ``%g`` value takes up to 13 characters).  The
    reference then writes past byte 512 while announcing ``HEADER_BYTES=512``,
    which shifts the image data; here ``HEADER_BYTES`` grows to the next
    multiple of 512 instead, so the file stays readable.
    """
    h = header if isinstance(header, SMVHeader) else SMVHeader.from_mapping(header)
    g = c_format_g
    if h.byte_order not in ("little_endian", "big_endian"):
        raise ValueError(f"BYTE_ORDER must be little_endian or big_endian, not {h.byte_order!r}")
    if len(h.dials_origin) != 3:
        raise ValueError("dials_origin must have 3 components")
    body = (
        "DIM=2;\n"
        f"BYTE_ORDER={h.byte_order};\nTYPE=unsigned_short;\n"
        f"SIZE1={h.size1:d};\nSIZE2={h.size2:d};\n"
        f"PIXEL_SIZE={g(h.pixel_size)};\nDISTANCE={g(h.distance)};\n"
        f"WAVELENGTH={g(h.wavelength)};\n"
        f"BEAM_CENTER_X={g(h.beam_center_x)};\nBEAM_CENTER_Y={g(h.beam_center_y)};\n"
        f"ADXV_CENTER_X={g(h.adxv_center_x)};\nADXV_CENTER_Y={g(h.adxv_center_y)};\n"
        f"MOSFLM_CENTER_X={g(h.mosflm_center_x)};\nMOSFLM_CENTER_Y={g(h.mosflm_center_y)};\n"
        f"DENZO_X_BEAM={g(h.denzo_x_beam)};\nDENZO_Y_BEAM={g(h.denzo_y_beam)};\n"
        "DIALS_ORIGIN=" + ",".join(g(v) for v in h.dials_origin) + "\n"
        f"XDS_ORGX={g(h.xds_orgx)};\nXDS_ORGY={g(h.xds_orgy)};\n"
        f"CLOSE_DISTANCE={g(h.close_distance)};\n"
        f"PHI={g(h.phi)};\nOSC_START={g(h.osc_start)};\nOSC_RANGE={g(h.osc_range)};\n"
        f"TWOTHETA={g(h.twotheta)};\n"
        "DETECTOR_SN=000;\nBEAMLINE=fake;\n}\f"
    ).encode("ascii")
    size = HEADER_BYTES
    while len(b"{\nHEADER_BYTES=%d;\n" % size + body) > size:
        size += HEADER_BYTES
    return (b"{\nHEADER_BYTES=%d;\n" % size + body).ljust(size, b" ")


def write_smv(path: str | os.PathLike, image, header: SMVHeader | Mapping) -> None:
    """Write ``image`` (uint16, shape (slow, fast)) as an SMV file, atomically.

    The data are written in the header's ``BYTE_ORDER`` (little-endian by
    default); the shape must agree with ``SIZE1`` (fast) and ``SIZE2`` (slow).
    """
    h = header if isinstance(header, SMVHeader) else SMVHeader.from_mapping(header)
    image = np.asarray(image)
    if image.dtype != np.uint16:
        raise TypeError(f"SMV data must be uint16, got {image.dtype}")
    if image.shape != (h.size2, h.size1):
        raise ValueError(f"image shape {image.shape} != (SIZE2, SIZE1) = {(h.size2, h.size1)}")
    dtype = "<u2" if h.byte_order == "little_endian" else ">u2"
    atomic_write(path, smv_header(h) + np.ascontiguousarray(image, dtype=dtype).tobytes())


_START = re.compile(rb"\A\{\s*HEADER_BYTES\s*=\s*(\d+)")
_INTEGER = re.compile(r"\+?\d{1,18}\Z")


def _parse_header(data: bytes, source: str) -> tuple[dict, int]:
    match = _START.match(data[:HEADER_BYTES])
    if match is None:
        raise SMVFormatError(f"{source}: does not start like an SMV header ('{{' then HEADER_BYTES=)")
    header_bytes = int(match.group(1))
    if len(data) < header_bytes:
        raise SMVFormatError(f"{source}: truncated header ({len(data)} of {header_bytes} bytes)")
    close = data.find(b"}", 0, header_bytes)
    if close < 0:
        raise SMVFormatError(f"{source}: no closing '}}' within HEADER_BYTES={header_bytes}")
    header = {}
    for item in re.split(r"[;\n]", data[1:close].decode("latin-1")):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            header[key.strip()] = value.strip()  # a repeated key: the last one wins
    return header, header_bytes


def parse_smv_header(data: bytes, *, source: str = "<SMV bytes>") -> dict:
    """The key -> value-text mapping of an SMV header (``data``: at least the
    ``HEADER_BYTES`` header bytes; image data need not follow)."""
    return _parse_header(bytes(data), source)[0]


def parse_smv(data: bytes, *, source: str = "<SMV bytes>") -> tuple[dict, np.ndarray]:
    """Decode SMV file bytes; see :func:`read_smv`."""
    data = bytes(data)
    header, header_bytes = _parse_header(data, source)
    order = header.get("BYTE_ORDER", "little_endian")
    if order not in ("little_endian", "big_endian"):
        raise SMVFormatError(f"{source}: unknown BYTE_ORDER={order!r}")
    if header.get("TYPE", "unsigned_short") != "unsigned_short":
        raise SMVFormatError(f"{source}: TYPE={header['TYPE']!r}; only unsigned_short is supported")
    size = []
    for key in ("SIZE1", "SIZE2"):
        text = header.get(key)
        if text is None or not _INTEGER.match(text) or int(text) == 0:
            raise SMVFormatError(f"{source}: missing or invalid {key} ({text!r})")
        size.append(int(text))
    fast, slow = size
    need = 2 * fast * slow
    available = len(data) - header_bytes
    if available < need:
        raise SMVFormatError(
            f"{source}: truncated data ({available} of {need} bytes for {fast}x{slow} pixels)"
        )
    dtype = np.dtype("<u2" if order == "little_endian" else ">u2")
    image = np.frombuffer(data, dtype=dtype, count=fast * slow, offset=header_bytes)
    return header, image.reshape(slow, fast).astype(np.uint16)


def read_smv(path: str | os.PathLike) -> tuple[dict, np.ndarray]:
    """Read an SMV image.

    Returns ``(header, image)``: ``header`` maps each key to its value text
    (stripped, without ``;``), ``image`` is native uint16 of shape
    ``(SIZE2, SIZE1)`` = (slow, fast).  ``HEADER_BYTES`` may be any size and
    ``BYTE_ORDER`` either order (default little-endian when absent).  Raises
    :class:`SMVFormatError` for a file that does not start like an SMV header,
    lacks ``SIZE1``/``SIZE2``, or is truncated; bytes after the image are ignored.
    """
    with open(path, "rb") as fh:
        return parse_smv(fh.read(), source=os.fspath(path))


def int_image_scale(max_I: float, user_scale: float = 0.0) -> float:
    """The int-image scale: ``user_scale`` if > 0, else ``55000/max_I``, or 1 if
    ``max_I <= 0`` (``max_I``: largest float pixel in the ROI, floor 0)."""
    if user_scale > 0.0:
        return float(user_scale)
    return 55000.0 / max_I if max_I > 0.0 else 1.0


def int_image(float_image, scale: float, adc_offset: float = 40.0, roi_mask=None) -> np.ndarray:
    """Convert a float image (photons/pixel) to the reference's uint16 image.

    Per pixel, as the reference: ``t = v*scale + adc_offset`` in double
    precision (``v`` a float32 pixel), clipped to [0, 65535]; then ``t + 0.5`` is
    rounded to float32 (C passes the double to ``floorf``) and floored.  Pixels
    where ``roi_mask`` (bool, same shape) is False are 0; NaN pixels give 0 (the
    reference's result is undefined there).
    """
    t = np.asarray(float_image, dtype=np.float32).astype(np.float64)
    t *= float(scale)
    t += float(adc_offset)
    np.clip(t, 0.0, 65535.0, out=t)
    t += 0.5
    counts = np.floor(t.astype(np.float32))
    bad = np.isnan(counts)
    if roi_mask is not None:
        bad |= ~np.asarray(roi_mask, dtype=bool)
    counts[bad] = 0.0
    return counts.astype(np.uint16)
