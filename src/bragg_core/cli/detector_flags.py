"""Flags of the main command for the detector model and the amorphous background.

* Detector model (``noisify``'s steps, ``bragg_core.detector_model``):
  ``-psf gauss|fiber``, ``-psf_fwhm um``, ``-psf_radius px``, ``-readout ADU``,
  ``-flicker frac``, ``-calibration frac``, ``-calib_seed n``, ``-gain ADU/photon``.
  Any of them replaces the reference's Poisson noise image (``-noisefile``) by the
  detector model's integer image, keyed by ``-seed``, with ``-adc`` as its offset;
  the float image stays the noise-free one.
* Amorphous background (``nonBragg``'s term, ``bragg_core.amorphous``):
  ``-bg_stol FILE|NAME`` (or ``-bg_4stol``, ``-bg_Q``; built-in names: water, air, ice,
  nanoice, shortwater, unity), ``-bg_thick mm``, ``-bg_width mm``, ``-bg_height mm``,
  ``-bg_density g/cm^3``, ``-bg_MW g/mol``, ``-bg_molecules N``.  The background is
  added to the float image (and so to every output made from it).  These are new
  names: the reference's own ``-stol``/``-density``/``-MW`` have no effect on its
  image, and keep none here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

SPEC = {
    "-psf": (1, "s"), "-psf_fwhm": (1, "f"), "-psf_radius": (1, "i"), "-readout": (1, "f"), "-flicker": (1, "f"),
    "-calibration": (1, "f"), "-calib_seed": (1, "i"), "-gain": (1, "f"),
    "-bg_stol": (1, "s"), "-bg_4stol": (1, "s"), "-bg_Q": (1, "s"), "-bg_thick": (1, "f"), "-bg_width": (1, "f"),
    "-bg_height": (1, "f"), "-bg_density": (1, "f"), "-bg_MW": (1, "f"), "-bg_molecules": (1, "f"),
}
_MODEL_FLAGS = ("-psf", "-psf_fwhm", "-psf_radius", "-readout", "-flicker", "-calibration", "-calib_seed", "-gain")
_TABLE_FLAGS = {"-bg_stol": "stol", "-bg_4stol": "4stol", "-bg_Q": "Q"}
_BG_SIZE_FLAGS = ("-bg_thick", "-bg_width", "-bg_height", "-bg_density", "-bg_MW", "-bg_molecules")


@dataclass(frozen=True)
class Background:
    """The amorphous sample of ``-bg_*`` flags (arguments of :func:`bragg_core.amorphous.amorphous_background`)."""

    material: Any
    kind: str
    thickness_mm: float
    width_mm: float
    height_mm: float
    density_g_cm3: Any
    molecular_weight: Any
    molecules: Any

    def image(self, experiment, panels=None):
        """The background in photons per pixel, as float32 NumPy arrays: (slow, fast), or one per panel."""
        import numpy as np

        from .._backend import to_numpy
        from ..amorphous import amorphous_background, amorphous_background_panels

        kw = dict(kind=self.kind, thickness_mm=self.thickness_mm, width_mm=self.width_mm, height_mm=self.height_mm,
                  density_g_cm3=self.density_g_cm3, molecular_weight=self.molecular_weight,
                  molecules=self.molecules)
        if panels is not None:
            imgs = amorphous_background_panels(experiment, panels, self.material, **kw)
            return [np.asarray(to_numpy(i), dtype=np.float32) for i in imgs]
        return np.asarray(to_numpy(amorphous_background(experiment, self.material, **kw)), dtype=np.float32)


def apply_detector_flags(cfg, opts, cwd):
    """``cfg`` with ``detector_model`` (a DetectorModel or None) and ``background`` (a :class:`Background` or
    None) set from the flags; a value that cannot work is a UsageError naming the flag."""
    from .validate import UsageError

    cfg.detector_model = None
    cfg.background = None
    if any(opts.has(f) for f in _MODEL_FLAGS):
        from ..detector_model import DetectorModel

        psf = opts.get("-psf") if opts.has("-psf") else None
        if psf is not None and psf not in ("gauss", "fiber"):
            raise UsageError(f"-psf must be gauss or fiber, got {psf!r}")
        for flag in ("-psf_fwhm",):
            if opts.has(flag) and not opts.get(flag) > 0:
                raise UsageError(f"{flag} must be positive, got {opts.get(flag)!r}")
        for flag in ("-readout", "-flicker", "-calibration", "-psf_radius", "-gain"):
            if opts.has(flag) and opts.get(flag) < 0:
                raise UsageError(f"{flag} must not be negative, got {opts.get(flag)!r}")
        pixel_mm = opts.get("-pixel") if opts.has("-pixel") else cfg.experiment.detector.pixel_size_mm
        try:
            cfg.detector_model = DetectorModel(
                psf=psf, psf_fwhm_um=opts.get("-psf_fwhm", 46.0), psf_radius=opts.get("-psf_radius", 0),
                pixel_size_mm=float(pixel_mm), noise=True, flicker=opts.get("-flicker", 0.0),
                calibration=opts.get("-calibration", 0.0), readout_adu=opts.get("-readout", 0.0),
                quantum_gain=opts.get("-gain", 1.0), adc_offset=cfg.adc, seed=int(cfg.seed),
                calibration_seed=opts.get("-calib_seed", 123456789))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    tables = [f for f in _TABLE_FLAGS if opts.has(f)]
    if len(tables) > 1:
        raise UsageError(f"{' and '.join(tables)}: give one background table")
    if not tables:
        used = [f for f in _BG_SIZE_FLAGS if opts.has(f)]
        if used:
            raise UsageError(f"{used[0]} needs a background table: -bg_stol FILE|NAME (or -bg_4stol, -bg_Q)")
        return cfg
    flag = tables[0]
    name = opts.get(flag)
    from ..amorphous import resolve_material

    material = name if os.path.isabs(name) or not os.path.exists(os.path.join(cwd, name)) else os.path.join(cwd, name)
    try:
        resolve_material(material, _TABLE_FLAGS[flag])
    except (OSError, ValueError) as exc:
        raise UsageError(f"{flag} {name!r}: {exc}") from None
    for f in ("-bg_thick", "-bg_width", "-bg_height", "-bg_density", "-bg_molecules"):
        if opts.has(f) and not opts.get(f) >= 0:
            raise UsageError(f"{f} must not be negative, got {opts.get(f)!r}")
    if opts.has("-bg_MW") and not opts.get("-bg_MW") > 0:
        raise UsageError(f"-bg_MW must be positive, got {opts.get('-bg_MW')!r}")
    cfg.background = Background(
        material=material, kind=_TABLE_FLAGS[flag], thickness_mm=opts.get("-bg_thick", 0.1),
        width_mm=opts.get("-bg_width", 0.1), height_mm=opts.get("-bg_height", 0.1),
        density_g_cm3=opts.get("-bg_density"), molecular_weight=opts.get("-bg_MW"),
        molecules=opts.get("-bg_molecules"))
    return cfg


def detector_noise_image(image, model, pixel_offset: int = 0):
    """The detector model's integer image (uint16 NumPy, saturated) of a float image, and its photon count."""
    import numpy as np

    from .._backend import get_context, to_numpy
    from ..detector_model import apply_detector_model, detector_pixel_index

    xp_index = None
    if pixel_offset:
        xp_index = detector_pixel_index(get_context(backend="numpy").xp, tuple(image.shape), "cpu",
                                        offset=pixel_offset)
    out = apply_detector_model(np.asarray(image, dtype=np.float64), model, pixel_index=xp_index)
    counts = np.clip(np.asarray(to_numpy(out.image)), 0, 65535).astype(np.uint16)
    return counts, float(np.sum(np.asarray(to_numpy(out.photons)), dtype=np.float64)), int(to_numpy(out.overloads))


__all__ = ["SPEC", "Background", "apply_detector_flags", "detector_noise_image"]
