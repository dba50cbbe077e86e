"""An opt-in SMV header that DIALS reads with the simulated beam centre and pedestal.

The reference's header says ``BEAMLINE=fake``, which DIALS (dxtbx's
``FormatSMVJHSim``) reads as follows: the detector is untilted, fast along
+x and slow along -y of DIALS's frame (the MOSFLM frame), at ``DISTANCE``;
the beam meets it at fast ``BEAM_CENTER_X + p`` and slow
``SIZE2 * p - BEAM_CENTER_Y + p`` (mm from the outer corner of pixel (0, 0));
the pedestal is ``ADC_OFFSET``, 1 when absent.  The reference writes its
``Xbeam, Ybeam`` there (half a pixel off for a centred MOSFLM beam, far off
for other conventions) and no ``ADC_OFFSET``.

:func:`dials_smv_header` keeps every line of the reference's header and
changes only ``BEAM_CENTER_X/Y`` (to where the beam meets the detector, in
that reading: ``ADXV_CENTER_X - p`` and ``ADXV_CENTER_Y + p``) and adds
``ADC_OFFSET``.  Rotated or two-theta detectors cannot be described by this
format at all; their images need the experiment list (``-exptfile``).
"""

from __future__ import annotations

from dataclasses import replace

from .smv import HEADER_BYTES, SMVHeader, c_format_g, smv_header

__all__ = ["dials_smv_header", "dials_beam_centre_mm"]


def dials_beam_centre_mm(h: SMVHeader) -> tuple[float, float]:
    """(fast, slow) mm from pixel (0, 0)'s outer corner at which DIALS places the beam for header ``h``."""
    p = h.pixel_size
    return h.beam_center_x + p, h.size2 * p - h.beam_center_y + p


def dials_smv_header(h: SMVHeader, adc_offset: float) -> bytes:
    """The reference's header with DIALS's beam centre and ``ADC_OFFSET`` (bytes, padded to 512)."""
    p = h.pixel_size
    # the direct beam is at (Fbeam, Sbeam) = (ADXV_CENTER_X, SIZE2 * p - ADXV_CENTER_Y)
    text = smv_header(replace(h, beam_center_x=h.adxv_center_x - p, beam_center_y=h.adxv_center_y + p))
    body = text[text.index(b"\n") + 1:text.rindex(b"}")]
    body = body[body.index(b"\n") + 1:]  # drop the HEADER_BYTES line; it is recomputed
    extra = b"ADC_OFFSET=" + c_format_g(adc_offset).encode() + b";\n"
    body = body.replace(b"DETECTOR_SN=", extra + b"DETECTOR_SN=", 1) + b"}\f"
    size = HEADER_BYTES
    while len(b"{\nHEADER_BYTES=%d;\n" % size + body) > size:
        size += HEADER_BYTES
    return (b"{\nHEADER_BYTES=%d;\n" % size + body).ljust(size, b" ")
