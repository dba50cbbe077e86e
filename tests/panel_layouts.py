"""Detector layouts of the multi-panel tests (lab frame: beam along +x, MOSFLM fast +z, slow -y; mm).

Each layout is a list of panels; the shared experiment is ``COMMON`` (flags).
The C reference images under tests/data/panels/<layout>/panel<k>/ were made by
running the reference with each panel's own custom vectors (its cmd.txt).
"""

from __future__ import annotations

import math

import numpy as np

from bragg_core.panels import Panel

COMMON = ("-cell 50 60 70 90 90 90 -misset 10 20 30 -default_F 100 -N 5 -lambda 1.0 "
          "-oversample 2 -polar 0.9 -detector_thicksteps 2").split()

F0 = np.array([0.0, 0.0, 1.0])   # MOSFLM fast
S0 = np.array([0.0, -1.0, 0.0])  # MOSFLM slow


def _rot(axis, deg):
    a = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    t = math.radians(deg)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * K @ K


def _facing(R, centre, nf, ns, px, **kw):
    """A panel turned by R (about its own centre), centred on ``centre``."""
    f, s = R @ F0, R @ S0
    origin = np.asarray(centre, dtype=float) - 0.5 * nf * px * f - 0.5 * ns * px * s
    return Panel(fast_axis=tuple(f), slow_axis=tuple(s), origin_mm=tuple(origin), fpixels=nf, spixels=ns,
                 pixel_size_mm=px, **kw)


def eiger_2x2():
    """Four coplanar 40 x 30 modules at 60 mm, 1 mm gaps, the beam in the central gap."""
    out = []
    for j in range(2):          # rows (slow)
        for i in range(2):      # columns (fast)
            z0 = -4.5 + i * 5.0
            y0 = 3.5 - j * 4.0
            out.append(Panel(fast_axis=(0, 0, 1), slow_axis=(0, -1, 0), origin_mm=(60.0, y0, z0),
                             fpixels=40, spixels=30, pixel_size_mm=0.1, name=f"m{j}{i}"))
    return out


def tilted_tent():
    """Four panels tilted by 20 degrees out of the detector plane and turned 30 degrees in it; two absorb."""
    out = []
    for k, az in enumerate((0.0, 90.0, 180.0, 270.0)):
        R = _rot((1, 0, 0), az) @ _rot((0, 1, 0), 20.0) @ _rot((1, 0, 0), 30.0)
        centre = _rot((1, 0, 0), az) @ np.array([50.0, 0.0, 3.0])
        kw = dict(thickness_um=300.0, attenuation_depth_um=400.0) if k % 2 == 0 else {}
        out.append(_facing(R, centre, 32, 24, 0.1, name=f"t{k}", **kw))
    return out


def jungfrau_ring():
    """Eight panels on a cone at 2-theta 4-7 degrees facing the sample, two pixel sizes and shapes."""
    out = []
    for k in range(8):
        az = 45.0 * k
        tt = 4.0 + 3.0 * (k % 2)
        R = _rot((1, 0, 0), az) @ _rot((0, 0, 1), tt)
        centre = R @ np.array([55.0, 0.0, 0.0])
        if k % 2:
            out.append(_facing(R, centre, 24, 24, 0.075, name=f"j{k}", thickness_um=320.0))
        else:
            out.append(_facing(R, centre, 32, 16, 0.1, name=f"j{k}"))
    return out


def mirrored_pair():
    """Two panels whose fast x slow points towards the sample (read out mirrored), one tilted and absorbing."""
    a = Panel(fast_axis=(0, 0, 1), slow_axis=(0, 1, 0), origin_mm=(60.0, -3.5, -2.0), fpixels=40, spixels=30,
              pixel_size_mm=0.1, name="flat")
    R = _rot((0, 0, 1), 8.0)
    b = Panel(fast_axis=tuple(R @ np.array([0.0, 0.0, 1.0])), slow_axis=tuple(R @ np.array([0.0, 1.0, 0.0])),
              origin_mm=tuple(R @ np.array([60.0, 1.0, 2.5])), fpixels=24, spixels=20, pixel_size_mm=0.1,
              thickness_um=200.0, attenuation_depth_um=300.0, name="tilted")
    return [a, b]


def roof():
    """Two 512 x 768 panels turned 10 degrees either way about the vertical, 150 mm out (a roof), the beam
    2 mm inside the second; the DIALS interop layout (no C reference images: not in LAYOUTS)."""
    out = []
    for k, sgn in enumerate((-1.0, 1.0)):
        t = math.radians(10.0 * sgn)  # turned about the vertical (lab y)
        R = np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])
        f, s = R @ F0, R @ S0
        edge = np.array([150.0, 40.0, -3.0 if sgn < 0 else -2.0])  # inner edges; the beam meets panel 1
        origin = edge - (51.2 if sgn < 0 else 0.0) * f
        out.append(Panel(fast_axis=tuple(f), slow_axis=tuple(s), origin_mm=tuple(origin), fpixels=512,
                         spixels=768, pixel_size_mm=0.1, name=f"half{k}"))
    return out


LAYOUTS = {"eiger_2x2": eiger_2x2, "tilted_tent": tilted_tent, "jungfrau_ring": jungfrau_ring,
           "mirrored_pair": mirrored_pair}


def panel_flags(det) -> list[str]:
    """The reference's flags that place one panel (a custom-convention Detector from panel_detector)."""
    r = lambda v: [repr(float(x)) for x in v]  # noqa: E731
    flags = ["-fdet_vector", *r(det.fdet_vector), "-sdet_vector", *r(det.sdet_vector),
             "-odet_vector", *r(det.odet_vector), "-beam_vector", *r(det.beam_vector),
             "-polar_vector", *r(det.polar_vector), "-spindle_axis", *r(det.spindle_axis),
             "-Xbeam", repr(float(det.beam_center_mm[0])), "-Ybeam", repr(float(det.beam_center_mm[1])),
             "-distance", repr(float(det.distance_mm)), "-pivot", "beam",
             "-detpixels_f", str(det.fpixels), "-detpixels_s", str(det.spixels),
             "-pixel", repr(float(det.pixel_size_mm))]
    if det.thickness_um:
        flags += ["-detector_thick", repr(float(det.thickness_um))]
        if det.attenuation_depth_um is not None:
            flags += ["-detector_abs", repr(float(det.attenuation_depth_um))]
    return flags
