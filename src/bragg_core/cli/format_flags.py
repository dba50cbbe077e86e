"""Flags for the formats others read: -nexusfile, -cbffile, -pngfile (and their options).

* ``-nexusfile FILE.nxs`` writes every image of the run (one, a ``-nimages``
  series, every panel) into one NeXus NXmx file, appended image by image and
  renamed into place when the run has finished; ``-nexus_compression``
  ``bslz4`` (default when hdf5plugin is installed), ``gzip`` or ``none``.
* ``-cbffile TEMPLATE_####.cbf`` writes one full CBF per image, every panel
  in one file (the panels must share a size: DIALS reads one size for all).
* ``-pngfile FILE.png`` writes a preview per image (``#`` runs numbered as
  for the other outputs); ``-png_scale asinh`` (default) or ``log``.
* ``-format_image noise|float`` chooses the image these files hold:
  ``noise``, the run's noise image (the ``-noisefile`` counts: Poisson, or
  the detector model's, with the ``-adc`` offset, saturated at 65535), the
  default whenever the run makes one; ``float``, the noise-free rendered
  image in photons per pixel (CBF rounds it to integer counts), the default
  with ``-nonoise``.

The geometry is the run's (the ``-expt``/``-geom`` panels when given), so
DIALS and XDS read it back.
"""

from __future__ import annotations

import os

SPEC = {"-nexusfile": (1, "s"), "-cbffile": (1, "s"), "-pngfile": (1, "s"), "-png_scale": (1, "s"),
        "-nexus_compression": (1, "s"), "-format_image": (1, "s")}

#: the noise image's saturation (an unsigned 16-bit image, as the -noisefile SMV holds it) and the lowest
#: value that is a reading (NXmx ``underload_value``; CBF's ``undefined_value`` is one below it)
NOISE_SATURATION = 65535
NOISE_UNDERLOAD = 0


def _path(cwd, p):
    return p if os.path.isabs(p) else os.path.join(cwd, p)


def apply_format_flags(cfg, opts, cwd):
    """``cfg`` with ``formats`` set (a :class:`FormatOutputs`, or None when no such flag is given).

    Refuses, with a one-line UsageError naming the flag, what cannot be
    written: a missing optional package, a series name without ``#``, a
    CBF of panels of different sizes, an unknown scale, compression or image
    choice, ``-format_image noise`` in a run without a noise image, a missing
    directory.
    """
    from ..io.atomic import OutputError, check_destination
    from .validate import UsageError

    wanted = {f: opts.get(f) for f in ("-nexusfile", "-cbffile", "-pngfile") if opts.has(f)}
    for f in ("-png_scale", "-nexus_compression", "-format_image"):
        if opts.has(f) and not wanted:
            cfg.warnings.append(f"{f} is ignored without -nexusfile, -cbffile or -pngfile")
    if not wanted:
        cfg.formats = None
        return cfg
    scale = opts.get("-png_scale") if opts.has("-png_scale") else "asinh"
    if scale not in ("asinh", "log"):
        raise UsageError(f"-png_scale must be asinh or log, got {scale!r}")
    comp = opts.get("-nexus_compression") if opts.has("-nexus_compression") else None
    if comp not in (None, "bslz4", "gzip", "none"):
        raise UsageError(f"-nexus_compression must be bslz4, gzip or none, got {comp!r}")
    image = opts.get("-format_image") if opts.has("-format_image") else ("noise" if cfg.write_noise else "float")
    if image not in ("noise", "float"):
        raise UsageError(f"-format_image must be noise or float, got {image!r}")
    if image == "noise" and not cfg.write_noise:
        raise UsageError("-format_image noise: this run makes no noise image (-nonoise); drop -nonoise, or "
                         "give -format_image float")
    if "-nexusfile" in wanted:
        from ..io.nexus import NEXUS_MISSING, nexus_available

        if not nexus_available():
            raise UsageError(f"-nexusfile: {NEXUS_MISSING}")
        if comp == "bslz4":
            try:
                import hdf5plugin  # noqa: F401
            except ImportError:
                raise UsageError("-nexus_compression bslz4 needs hdf5plugin (pip install 'bragg_core[nexus]'); "
                                 "gzip needs nothing") from None
    if "-pngfile" in wanted:
        from ..io.png import PNG_MISSING, png_available

        if not png_available():
            raise UsageError(f"-pngfile: {PNG_MISSING}")
    sizes = {(int(p.spixels), int(p.fpixels)) for p in cfg.panels.panels} if cfg.panels is not None else set()
    if "-cbffile" in wanted and len(sizes) > 1:
        shown = ", ".join(f"{s} x {f}" for s, f in sorted(sizes))
        raise UsageError(f"-cbffile: the panels of a CBF file must share a size (DIALS reads one size for all), "
                         f"these are {shown} (slow x fast): use -nexusfile")
    for f in ("-cbffile", "-pngfile"):
        if f in wanted and cfg.nimages > 1 and "#" not in wanted[f]:
            raise UsageError(f"{f} {wanted[f]!r}: with -nimages {cfg.nimages} the name needs a run of '#' for "
                             "the image number (e.g. img_####.cbf)")
    from ..io.names import image_name

    for f, name in wanted.items():
        try:
            check_destination(_path(cwd, image_name(name, 1)))
        except OutputError as exc:
            raise UsageError(f"{f}: {exc}") from None
    cfg.formats = FormatOutputs({f: _path(cwd, n) for f, n in wanted.items()}, cfg.experiment, cfg.panels,
                                cfg.nimages, png_scale=scale, compression=comp, image=image)
    return cfg


class FormatOutputs:
    """Receives each rendered image (panel by panel) and writes the NeXus, CBF and PNG outputs."""

    def __init__(self, names: dict, experiment, panels, n_images: int, *, png_scale="asinh", compression=None,
                 image="float"):
        self.names = names
        self.image = image  # "noise": the noise image (uint16 counts); "float": the rendered image
        self.experiment = experiment
        self.panels = panels
        self.n_images = int(n_images)
        self.png_scale = png_scale
        self.compression = compression
        self.n_panels = len(panels.panels) if panels is not None else 1
        self._pending: list = []
        self._count = 0
        self._nexus = None
        self._written: list = []

    def add(self, image, experiment=None, noise=None) -> None:
        """One panel's float image and noise image (None without one), the panels of an image in order.

        The files get the image chosen by ``-format_image``; a full image is written at once.
        """
        import numpy as np

        from .._backend import to_numpy

        if self.image == "noise":
            if noise is None:
                raise ValueError("-format_image noise: no noise image was made")
            self._pending.append(np.asarray(to_numpy(noise), dtype=np.uint16))
        else:
            self._pending.append(np.asarray(to_numpy(image), dtype=np.float32))
        if len(self._pending) < self.n_panels:
            return
        frame, self._pending = self._pending, []
        number = self._count + 1
        exp = self.experiment
        if "-nexusfile" in self.names:
            if self._nexus is None:
                from ..io.nexus import NexusWriter

                counts = dict(dtype="uint16", saturation_value=NOISE_SATURATION,
                              underload_value=NOISE_UNDERLOAD) if self.image == "noise" else {}
                self._nexus = NexusWriter(self.names["-nexusfile"], exp, self.panels, n_images=self.n_images,
                                          compression=self.compression, **counts)
            angle = float(experiment.crystal.phi_start_deg) if experiment is not None else None
            self._nexus.append(frame if self.n_panels > 1 else frame[0], angle_deg=angle)
        if "-cbffile" in self.names:
            from ..io._imageset import geometry_from_experiment
            from ..io.atomic import atomic_write
            from ..io.cbf import cbf_bytes
            from ..io.names import image_name

            g = geometry_from_experiment(exp, self.panels, n_images=self.n_images)
            name = image_name(self.names["-cbffile"], number)
            counts = dict(overload=NOISE_SATURATION, undefined=NOISE_UNDERLOAD - 1) if self.image == "noise" else {}
            atomic_write(name, cbf_bytes(frame if self.n_panels > 1 else frame[0], g, self._count,
                                         name=os.path.splitext(os.path.basename(name))[0], **counts))
            print(f"writing {name}")
        if "-pngfile" in self.names:
            from ..io.names import image_name
            from ..io.png import write_png

            name = image_name(self.names["-pngfile"], number)
            layout = "projected" if self.n_panels > 1 else "row"
            write_png(name, frame if self.n_panels > 1 else frame[0], scale=self.png_scale, layout=layout,
                      detector=self.panels)
            print(f"writing {name}")
        self._count += 1

    def close(self) -> int:
        """Finish the NeXus file (renamed into place); 0, or 2 with a one-line message."""
        if self._nexus is not None:
            from .streams import fail

            try:
                self._nexus.close()
            except OSError as exc:
                return fail(f"cannot write {exc.filename or self.names['-nexusfile']}: {exc.strerror or exc}")
            print(f"writing {self.names['-nexusfile']} ({self._count} images)")
            self._nexus = None
        return 0

    def abort(self) -> None:
        """Drop the unfinished NeXus file (the destination is left as it was)."""
        if self._nexus is not None:
            self._nexus.abort()
            self._nexus = None


def run_with_formats(cfg, run) -> int:
    """``run(cfg)``, then the NeXus file is finished; on an error or a non-zero status it is dropped."""
    sink = getattr(cfg, "formats", None)
    if sink is None:
        return run(cfg)
    try:
        rc = run(cfg)
    except BaseException:
        sink.abort()
        raise
    if rc:
        sink.abort()
        return rc
    return sink.close()
