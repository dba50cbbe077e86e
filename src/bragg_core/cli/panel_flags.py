"""Flags for real detectors and DIALS: -expt, -exptfile, -geom, -nimages, -dials_header.

* ``-expt FILE`` reads a DIALS experiment list as the experiment: beam
  (direction, wavelength, polarization), every panel, the goniometer axis,
  the scan's first angle and width (``-phi``, ``-osc``) and the crystal.
  Flags given explicitly override the file: ``-lambda``/``-energy``,
  ``-polar``, ``-phi``, ``-osc``, ``-cell``/``-mat`` (the crystal; ``-misset``
  turns the file's crystal further), and any detector placement flag
  (``-distance``, ``-Xbeam``, ``-detpixels``, ... then the detector is the
  flags' one).  Everything the file does not describe (``-N``,
  ``-default_F``, ``-hkl``, ``-oversample``, ...) comes from the flags.
* ``-exptfile FILE`` writes the experiment list of what was simulated.
* ``-geom FILE`` reads the panels of a CrystFEL geometry file.
* ``-nimages N`` renders N images, image i starting at ``phi + i osc``;
  ``#`` runs in output names become the 1-based image number.
* ``-dials_header`` writes SMV headers that DIALS reads with the simulated
  beam centre and ``ADC_OFFSET`` (``bragg_core.io.smv_dials``).
"""

from __future__ import annotations

import os
from dataclasses import replace

SPEC = {"-expt": (1, "s"), "-exptfile": (1, "s"), "-geom": (1, "s"), "-nimages": (1, "i"),
        "-dials_header": (0, "-")}

# flags that place the detector; given with -expt or -geom, the detector comes from the flags
PLACEMENT = ("-distance", "-close_distance", "-detsize", "-detsize_f", "-detsize_s", "-detpixels", "-detpixels_f",
             "-detpixels_s", "-pixel", "-Xbeam", "-Ybeam", "-Xclose", "-Yclose", "-ORGX", "-ORGY",
             "-mosflm", "-xds", "-adxv", "-denzo", "-dials", "-fdet_vector", "-sdet_vector", "-odet_vector",
             "-pix0_vector", "-detector_rotx", "-detector_roty", "-detector_rotz", "-twotheta")
_OUTPUT_DEFAULTS = {"-floatfile": "floatimage.bin", "-intfile": "intimage.img", "-noisefile": "noiseimage.img",
                    "-pgmfile": "image.pgm"}


def _explicit(opts, flag) -> bool:
    return opts.has(flag) and flag not in getattr(opts, "from_header", set())


def _path(cwd, p):
    return p if os.path.isabs(p) else os.path.join(cwd, p)


def expt_reciprocal(opts, cwd):
    """The crystal's reciprocal vectors from -expt (used when no -cell/-mat is given)."""
    from ..io.dials_expt import ExptFormatError, expt_reciprocal_vectors
    from .validate import UsageError

    try:
        return expt_reciprocal_vectors(_path(cwd, opts.get("-expt")))
    except OSError as exc:
        raise UsageError(f"-expt: {exc.strerror or exc}") from None
    except ExptFormatError as exc:
        raise UsageError(f"-expt: {exc}") from None


def apply_panel_flags(cfg, opts, cwd):
    """The run configuration with -expt, -geom, -nimages, -exptfile and -dials_header applied.

    Adds ``panels`` (a MultiPanelDetector or None), ``nimages``, ``exptfile``,
    ``dials_header`` to ``cfg``.  Raises UsageError naming the flag or file.
    """
    from ..experiment import ExperimentError
    from ..panels import PanelError
    from .validate import UsageError

    cfg.panels = None
    cfg.nimages = opts.get("-nimages", 1) if opts.has("-nimages") else 1
    cfg.exptfile = opts.get("-exptfile") if opts.has("-exptfile") else None
    cfg.dials_header = opts.has("-dials_header")
    if not 1 <= cfg.nimages <= 100000:
        raise UsageError(f"-nimages must be from 1 to 100000, got {cfg.nimages}")
    if opts.has("-expt") and opts.has("-geom"):
        raise UsageError("-expt and -geom both describe the detector: give one")
    exp = cfg.experiment
    placed_by_flags = any(_explicit(opts, f) for f in PLACEMENT)
    try:
        if opts.has("-expt"):
            exp, cfg.panels = _from_expt(exp, opts, cwd, placed_by_flags, cfg.warnings)
        elif opts.has("-geom"):
            if placed_by_flags:
                cfg.warnings.append("-geom: detector placement flags are ignored; the panels come from the file")
            cfg.panels, contents = _from_geom(exp, opts, cwd)
            exp = replace(exp, detector=cfg.panels.detectors()[0])
            if contents.photon_energy_eV and not (_explicit(opts, "-lambda") or _explicit(opts, "-energy")):
                from ..units import HC_EV_ANGSTROM

                exp = replace(exp, beam=replace(exp.beam, wavelength_A=HC_EV_ANGSTROM / contents.photon_energy_eV))
            if contents.adu_per_eV or contents.adu_per_photon:
                cfg.warnings.append("-geom: adu_per_eV/adu_per_photon are read but not applied (images are in "
                                    "photons; use -scale for the int image)")
    except (ExperimentError, PanelError) as exc:
        raise UsageError(f"{'-expt' if opts.has('-expt') else '-geom'}: {exc}") from None
    cfg.experiment = exp
    if cfg.nimages > 1:
        if exp.crystal.osc_deg is None or float(exp.crystal.osc_deg) == 0.0:
            raise UsageError(f"-nimages {cfg.nimages} needs -osc (the rotation of each image)")
        for flag, default in _OUTPUT_DEFAULTS.items():
            name = cfg.outputs.get(flag)
            if name is not None and "#" not in name:
                raise UsageError(f"{flag} {name!r}: with -nimages {cfg.nimages} the name needs a run of '#' for "
                                 "the image number (e.g. img_####.img)")
            if name is None:
                width = len(str(cfg.nimages))
                stem, ext = os.path.splitext(default)
                cfg.outputs[flag] = f"{stem}_{'#' * width}{ext}"
    return cfg


def _from_expt(exp, opts, cwd, placed_by_flags, warnings):
    from ..io.dials_expt import ExptFormatError, read_expt
    from .validate import UsageError

    path = _path(cwd, opts.get("-expt"))
    try:
        got = read_expt(path, base=exp)
    except OSError as exc:
        raise UsageError(f"-expt: {exc.strerror or exc}") from None
    except ExptFormatError as exc:
        raise UsageError(f"-expt: {exc}") from None
    new = got.experiment
    beam, cr = new.beam, new.crystal
    if _explicit(opts, "-lambda") or _explicit(opts, "-energy"):
        beam = replace(beam, wavelength_A=exp.beam.wavelength_A)
    if _explicit(opts, "-polar") or _explicit(opts, "-nopolar"):
        beam = replace(beam, kahn_factor=exp.beam.kahn_factor,
                       polarization_correction=exp.beam.polarization_correction)
    if opts.has("-cell") or opts.has("-mat"):
        cr = replace(cr, cell_A_deg=exp.crystal.cell_A_deg,
                     reciprocal_vectors_per_A=exp.crystal.reciprocal_vectors_per_A)
    cr = replace(cr, misset_deg=exp.crystal.misset_deg, misset_random=exp.crystal.misset_random)
    for flag, fld in (("-phi", "phi_start_deg"), ("-osc", "osc_deg")):
        if _explicit(opts, flag):
            cr = replace(cr, **{fld: getattr(exp.crystal, fld)})
    if placed_by_flags:
        warnings.append("-expt: detector placement flags given; the detector comes from the flags, not the file")
        return replace(exp, beam=beam, crystal=cr), None
    return replace(new, beam=beam, crystal=cr), got.detector


def _from_geom(exp, opts, cwd):
    from ..io.crystfel_geom import GeomFormatError, read_geom, read_geom_contents
    from .validate import UsageError

    path = _path(cwd, opts.get("-geom"))
    try:
        return read_geom(path, base=exp.detector), read_geom_contents(path)
    except OSError as exc:
        raise UsageError(f"-geom: cannot read {opts.get('-geom')}: {exc.strerror or exc}") from None
    except GeomFormatError as exc:
        raise UsageError(f"-geom: {exc}") from None


# ----------------------------------------------------------------------------
# running: a series of images, several panels, the experiment list
# ----------------------------------------------------------------------------


def _numbered(outputs: dict, number: int) -> dict:
    from ..io.names import image_name

    return {k: (image_name(v, number) if k != "-run_report" else v) for k, v in outputs.items()}


def _panel_name(name: str, k: int) -> str:
    stem, ext = os.path.splitext(name)
    return f"{stem}_p{k}{ext}"


def run_all(cfg, run_one) -> int:
    """Render every image (and panel) of ``cfg`` with ``run_one(cfg) -> status``, then write -exptfile."""
    from ..series import series_experiments

    if cfg.panels is None and cfg.nimages == 1 and not cfg.exptfile:
        return run_one(cfg)
    from ..io.atomic import OutputSet

    exps = list(series_experiments(cfg.experiment, cfg.nimages))
    several_panels = cfg.panels is not None and len(cfg.panels.panels) > 1
    # a series, or a detector of several panels, replaces its files as one set: every image's (and panel's)
    # outputs are written to temporaries as they are finished and renamed together at the end
    with OutputSet() as out:
        shared = out if cfg.nimages > 1 or several_panels else None
        state = {} if not several_panels else None  # one panel: each image reuses the previous one's setup
        for i, exp in enumerate(exps):
            ci = replace(cfg, experiment=exp, outputs=_numbered(cfg.outputs, i + 1), seed=cfg.seed + i,
                         warnings=cfg.warnings if i == 0 else [],
                         fdump_written_from=cfg.fdump_written_from if i == 0 else None, output_set=shared,
                         series_state=state)
            if cfg.nimages > 1:
                print(f"image {i + 1} of {cfg.nimages}: phi {float(exp.crystal.phi_start_deg):g} deg")
            rc = _run_panels(ci, run_one) if several_panels else run_one(ci)
            if rc:
                return rc  # leaving the block discards the set: no file of the series was changed
        out.commit()
    if cfg.exptfile:
        return _write_exptfile(cfg)
    return 0


def _run_panels(cfg, run_one) -> int:
    """Each panel through ``run_one``; the float images joined into one file, panel after panel."""
    import numpy as np

    float_name = cfg.outputs.get("-floatfile", "floatimage.bin")
    data = []  # each panel's float32 image, joined into one file at the end
    parts = []
    for k, det in enumerate(cfg.panels.detectors()):
        outputs = {f: _panel_name(n, k) for f, n in cfg.outputs.items() if f != "-run_report"}
        for f, default in _OUTPUT_DEFAULTS.items():
            outputs.setdefault(f, _panel_name(default, k))
        print(f"panel {k} ({cfg.panels.panels[k].name or k}):")
        ck = replace(cfg, experiment=replace(cfg.experiment, detector=det), outputs=outputs,
                     seed=cfg.seed + 7919 * k, warnings=cfg.warnings if k == 0 else [], float_parts=data)
        rc = run_one(ck)
        if rc:
            return rc
        parts.append(k)
    cfg.output_set.add(float_name, data)  # with every other output of the run, as one set
    # statistics over every panel (sums in double of the float32 values, as for one panel)
    n = sum(d.size for d in data)
    peak = [float(d.max()) if d.size else 0.0 for d in data]
    mean = sum(float(np.sum(d, dtype=np.float64)) for d in data) / max(n, 1)
    rms = (sum(float(np.sum(d.astype(np.float64) ** 2)) for d in data) / max(n - 1, 1)) ** 0.5
    rmsd = (sum(float(np.sum((d.astype(np.float64) - mean) ** 2)) for d in data) / max(n - 1, 1)) ** 0.5
    k = int(np.argmax(peak))
    print(f"all {len(parts)} panels: max_I = {max(peak + [0.0]):g} on panel {k}  mean= {mean:g} rms= {rms:g} "
          f"rmsd= {rmsd:g}")
    print(f"writing {float_name} ({len(parts)} panels, one after another)")
    return 0


def _write_exptfile(cfg) -> int:
    from ..io.dials_expt import write_expt
    from ..io.names import dials_template, image_name

    source = "-noisefile" if cfg.write_noise else "-intfile"
    name = cfg.outputs.get(source, _OUTPUT_DEFAULTS[source])
    multi = cfg.panels is not None and len(cfg.panels.panels) > 1
    rotation = cfg.experiment.crystal.osc_deg not in (None, 0, 0.0)
    kwargs = dict(n_images=cfg.nimages, pedestal=float(cfg.adc), rotation=rotation)
    if multi:
        # the SMV files hold one panel each; the experiment list describes the detector
        kwargs["image_files"] = [] if rotation else [image_name(name, i + 1) for i in range(cfg.nimages)]
    elif rotation:
        kwargs["image_template"] = dials_template(name) if "#" in name else name
    else:
        kwargs["image_files"] = [image_name(name, i + 1) for i in range(cfg.nimages)]
    write_expt(cfg.exptfile, cfg.experiment, cfg.panels, **kwargs)
    print(f"writing {cfg.exptfile}")
    return 0
