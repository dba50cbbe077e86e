"""Rotation series: N consecutive images in one run.

Image ``i`` (0-based) starts at ``phi + i * osc`` and covers one oscillation
in the experiment's phi steps; everything else is the experiment's.  Output
names carry the image number: every run of ``#`` in a name is replaced by
the 1-based image number zero-padded to the run's length
(``img_####.img`` -> ``img_0001.img`` ...).  Input files (structure
factors, source files, masks) are read once; each image rebuilds its own
small setup (geometry, orientations) before rendering.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from .experiment import Experiment, ExperimentError
from .io.names import dials_template, image_name

__all__ = ["image_name", "series_experiments", "check_series_names", "dials_template", "simulate_series"]

def check_series_names(names: dict, n_images: int) -> None:
    """Every output name must tell the images apart when more than one image is written.

    ``names`` maps a flag (``-noisefile``) to its file name.  Raises
    ValueError naming the flag.
    """
    if n_images <= 1:
        return
    for flag, name in names.items():
        if "#" not in name:
            raise ValueError(f"{flag} {name!r}: with -nimages {n_images} the name needs a run of '#' "
                             "for the image number (e.g. img_####.img)")


def series_experiments(experiment: Experiment, n_images: int) -> Iterator[Experiment]:
    """The experiment of each image: phi start moved on by one oscillation per image."""
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ExperimentError(f"number of images must be a positive integer, got {n_images!r}")
    cr = experiment.crystal
    if n_images > 1 and (cr.osc_deg is None or float(cr.osc_deg) == 0.0):
        raise ExperimentError("a series of images needs an oscillation (Crystal.osc_deg, -osc) per image")
    for i in range(n_images):
        if i == 0:
            yield experiment
        else:
            yield Experiment(beam=experiment.beam, detector=experiment.detector,
                             crystal=replace(cr, phi_start_deg=cr.phi_start_deg + i * cr.osc_deg))


def simulate_series(experiment: Experiment, n_images: int, detector=None, **kwargs):
    """Yield each image's simulation in order (:func:`bragg_core.simulate_panels` with ``detector``
    for several panels, else :func:`bragg_core.simulate`)."""
    from .simulate import simulate

    setup = None
    for exp in series_experiments(experiment, n_images):
        if detector is None:
            sim = simulate(exp, reuse=setup, **kwargs)  # only the orientations change between images
            setup = sim.setup
            yield sim
        else:
            from .simulate import simulate_panels

            yield simulate_panels(exp, detector, **kwargs)
