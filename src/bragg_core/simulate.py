"""The Python face of the engine: Experiment in, image out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ._backend import get_context, to_numpy
from .engine.run import Simulation, run_single
from .engine.setup import Setup, roi_bounds
from .experiment import Experiment
from .panels import MultiPanelDetector, Panel, PanelError, panel_from_detector

__all__ = ["simulate", "Simulation", "simulate_panels", "PanelSimulation", "PanelStats", "panel_stats"]


def simulate(experiment: Experiment, *, backend: str | None = None, device: Any = None,
             dtype: Any = None, memory_budget_bytes: int | None = None,
             progress: Callable[[int], None] | None = None, store_dtype: Any = None,
             force: bool = False, reuse: Setup | None = None) -> Simulation:
    """Render ``experiment``.

    An experiment whose detector is a :class:`bragg_core.panels.MultiPanelDetector`
    gives a :class:`PanelSimulation` (``.image`` is
    ``(panel, slow, fast)``; see :func:`simulate_panels`).
    The image follows the arrays found in the experiment (a torch tensor
    field makes a torch image on that device and dtype), or the named
    ``backend``/``device``/``dtype``; with neither, NumPy float64.
    ``progress`` is called with the number of pixels finished as tiles
    complete.  ``store_dtype`` (a NumPy dtype, e.g. ``numpy.float32`` for an
    image that will be written as float32) asks backends that fill a
    preallocated host image to store each finished tile in that dtype, so
    the whole image never exists in the working dtype; other backends return
    the working dtype.  A run whose estimated memory, work or size cannot
    fit or finish on this machine raises :class:`bragg_core.estimate.RunTooLarge`
    before any work, unless ``force``.  ``reuse`` is the ``setup`` of an
    earlier simulation of the same rotation series (the experiment with
    another ``phi_start_deg`` only, as :func:`bragg_core.series.series_experiments`
    makes it): what does not change between the images is kept, and only
    the orientations are formed again (one panel; otherwise ignored).
    """
    kwargs = dict(backend=backend, device=device, dtype=dtype, memory_budget_bytes=memory_budget_bytes,
                  progress=progress, store_dtype=store_dtype, force=force)
    if isinstance(experiment.detector, MultiPanelDetector):  # several panels: a PanelSimulation
        return simulate_panels(experiment, **kwargs)
    return run_single(experiment, reuse=reuse, **kwargs)


@dataclass
class PanelSimulation:
    """Images of every panel and how each was made."""

    images: list            # one (slow, fast) array per panel, in the working namespace
    simulations: list       # the per-panel Simulation objects
    detector: MultiPanelDetector

    @property
    def image(self):
        """(panel, slow, fast) when the panels share a size (the working namespace)."""

        shapes = {tuple(im.shape) for im in self.images}
        if len(shapes) != 1:
            raise PanelError("panels of different sizes have no common (panel, slow, fast) array; use .images")
        xp = get_context(self.images[0]).xp
        return xp.stack(self.images, axis=0)

    @property
    def stats(self):
        return panel_stats(self)


def _as_multipanel(experiment: Experiment, detector) -> MultiPanelDetector:
    if detector is None:
        return MultiPanelDetector(panels=(panel_from_detector(experiment.detector),), base=experiment.detector)
    if isinstance(detector, Panel):
        detector = (detector,)
    if isinstance(detector, MultiPanelDetector):
        return detector
    return MultiPanelDetector(panels=tuple(detector), base=experiment.detector)


def simulate_panels(experiment: Experiment, detector: MultiPanelDetector | Sequence[Panel] | None = None,
                    **kwargs) -> PanelSimulation:
    """Render every panel of ``detector`` (default: ``experiment.detector`` as one panel).

    Keyword arguments go to :func:`bragg_core.simulate` (backend, device,
    dtype, memory_budget_bytes, progress).  Beam and crystal are shared; each
    panel is ``experiment`` with its detector replaced by the panel's
    (:func:`panel_detector`).  Without ``detector`` the experiment's own
    detector is rendered unchanged, so the single-panel result is
    :func:`bragg_core.simulate`'s, bit for bit.
    """

    if detector is None and isinstance(experiment.detector, MultiPanelDetector):
        detector = experiment.detector  # an Experiment holding several panels
        experiment = Experiment(beam=experiment.beam, detector=detector.base, crystal=experiment.crystal)
    if detector is None:
        sims = [run_single(experiment, **kwargs)]
        mp = _as_multipanel(experiment, None)
    else:
        mp = _as_multipanel(experiment, detector)
        sims = [run_single(Experiment(beam=experiment.beam, detector=d, crystal=experiment.crystal), **kwargs)
                for d in mp.detectors()]
    return PanelSimulation(images=[s.image for s in sims], simulations=sims, detector=mp)


@dataclass(frozen=True)
class PanelStats:
    """Statistics over every panel, as the single-panel ImageStats (position: panel, fast, slow in m)."""

    max_I: float
    max_I_panel: int
    max_I_fast_m: float
    max_I_slow_m: float
    mean: float
    rms: float
    rmsd: float
    n_pixels: int


def panel_stats(psim: PanelSimulation) -> PanelStats:
    """max, mean, rms, rmsd over all panels' pixels (sums in double of float32 values).

    Each panel's own statistics come from its Simulation; they are combined
    with the pixel counts (the rmsd from the panels' sums of squares about the
    common mean), so no panel is copied.
    """

    n_tot, nr_tot, s_tot, ss_tot = 0, 0, 0.0, 0.0
    best = (-1.0, 0, 0.0, 0.0)
    per = []
    for k, sim in enumerate(psim.simulations):
        st = sim.stats
        n, nr = _counted(sim.setup)
        per.append((n, nr, st))
        n_tot += n
        nr_tot += nr
        s_tot += st.mean * n
        ss_tot += st.rms ** 2 * (max(n, 2) - 1)
        if st.max_I > best[0]:
            best = (st.max_I, k, st.max_I_fast_m, st.max_I_slow_m)
    if len(per) == 1:  # one panel: its own statistics, unchanged
        st = per[0][2]
        return PanelStats(max_I=st.max_I, max_I_panel=0, max_I_fast_m=st.max_I_fast_m,
                          max_I_slow_m=st.max_I_slow_m, mean=st.mean, rms=st.rms, rmsd=st.rmsd, n_pixels=n_tot)
    mean = s_tot / max(n_tot, 1)
    rms = math.sqrt(ss_tot / (max(n_tot, 2) - 1))
    dev2 = 0.0
    for (n, nr, st) in per:
        # over the panel's region (masked pixels count as zero, as in the single-panel rmsd):
        # sum (x - M)^2 = sum (x - m)^2 + 2 (m - M) sum (x - m) + nr (m - M)^2, with sum (x - m) = (n - nr) m
        dm = st.mean - mean
        dev2 += st.rmsd ** 2 * (max(nr, 2) - 1) + 2.0 * dm * (n - nr) * st.mean + nr * dm * dm
    rmsd = math.sqrt(dev2 / (max(nr_tot, 2) - 1))
    return PanelStats(max_I=max(best[0], 0.0), max_I_panel=best[1], max_I_fast_m=best[2], max_I_slow_m=best[3],
                      mean=mean, rms=rms, rmsd=rmsd, n_pixels=n_tot)


def _counted(setup) -> tuple[int, int]:
    """(pixels the mean and rms count, pixels the rmsd counts): unmasked ROI pixels, all ROI pixels."""
    x0, x1, y0, y1 = roi_bounds(setup)
    if x1 < x0 or y1 < y0:
        return 0, 0
    nr = (x1 - x0 + 1) * (y1 - y0 + 1)
    if setup.mask is None:
        return nr, nr

    return int(np.count_nonzero(np.asarray(to_numpy(setup.mask))[y0:y1 + 1, x0:x1 + 1])), nr
