"""Hypothesis strategies: small valid experiments, the backends of this machine, arrays on them.

Needs Hypothesis (``pip install 'bragg_core[test]'``).  Arrays are drawn as
NumPy with ``hypothesis.extra.numpy`` and moved with
``xp.asarray(..., dtype=, device=)``: the array-API strategies of Hypothesis
cannot place data on a device.
"""

from __future__ import annotations

import numpy as np

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "bragg_core.testing.strategies needs Hypothesis, which is not installed; "
        "install the test extra: pip install 'bragg_core[test]'"
    ) from exc

from .._backend import Context
from ..experiment import SHAPES, Beam, Crystal, Detector, Experiment, ExperimentError
from .backends import FLOAT_DTYPES, Backend, available_backends, backend_dtype_combinations

__all__ = ["arrays", "backend_dtypes", "backends", "experiments"]

_CONVENTIONS = ("mosflm", "xds", "adxv", "denzo", "dials")


def backends(spec: str | None = None) -> st.SearchStrategy[Backend]:
    """A :class:`~bragg_core.testing.Backend` that runs here (selection: ``spec`` or ``BRAGG_BACKENDS``)."""
    found = available_backends(spec)
    if not found:
        raise ValueError("no array backend is available here (check BRAGG_BACKENDS and the installed libraries)")
    return st.sampled_from(found)


def backend_dtypes(dtypes: tuple[str, ...] = FLOAT_DTYPES, spec: str | None = None
                   ) -> st.SearchStrategy[tuple[Backend, str]]:
    """A (backend, dtype name) pair that runs here: every available backend x device x ``dtypes``.

    JAX float64 is offered only when JAX's x64 mode is on.
    """
    found = backend_dtype_combinations(tuple(dtypes), spec)
    if not found:
        raise ValueError(f"no backend runs {', '.join(dtypes)} here (check BRAGG_BACKENDS and the installed libraries)")
    return st.sampled_from(found)


def arrays(backend: Backend | Context, dtype: str = "float64", shape=(), *, elements=None
           ) -> st.SearchStrategy:
    """Arrays of ``backend``'s namespace and device, float ``dtype`` (``"float32"``/``"float64"``).

    ``shape`` is an int, a tuple or a strategy of shapes
    (``hypothesis.extra.numpy.array_shapes``); ``elements`` a strategy of
    floats representable in ``dtype`` (default: finite values in [-1e3, 1e3]).
    """
    ctx = backend if isinstance(backend, Context) else backend.context(dtype)
    np_dtype = np.dtype(dtype if isinstance(dtype, str) else ctx.dtype_name)
    if elements is None:
        elements = st.floats(-1e3, 1e3, allow_nan=False, width=8 * np_dtype.itemsize)
    native = ctx.dtype
    return hnp.arrays(np_dtype, shape, elements=elements).map(
        lambda a: ctx.xp.asarray(a, dtype=native, device=ctx.device)
    )


@st.composite
def experiments(draw, *, min_pixels: int = 4, max_pixels: int = 16, conventions: tuple[str, ...] = _CONVENTIONS,
                shapes: tuple[str, ...] = SHAPES, sampling: bool = True) -> Experiment:
    """A small valid :class:`~bragg_core.experiment.Experiment` that renders in milliseconds.

    Detector sides in [``min_pixels``, ``max_pixels``]; cells with lengths 20-150 A
    and angles 75-105 degrees (always closed); 1-8 unit cells per side; a
    default structure factor in [1, 1000]; wavelength 0.5-3 A at 50-300 mm.
    With ``sampling`` some draws add 2x2 oversampling (else 1), two phi steps, two
    mosaic domains, a two-step spectrum or horizontal divergence (never more
    than 16 sub-paths per pixel).
    """
    fpix = draw(st.integers(min_pixels, max_pixels), label="fpixels")
    spix = draw(st.integers(min_pixels, max_pixels), label="spixels")
    lengths = draw(st.tuples(*[st.floats(20.0, 150.0)] * 3), label="cell lengths (A)")
    angles = draw(st.tuples(*[st.floats(75.0, 105.0)] * 3), label="cell angles (deg)")
    misset = draw(st.none() | st.tuples(*[st.floats(-180.0, 180.0)] * 3), label="misset (deg)")
    beam_kw, det_kw, xtal_kw = {}, {"oversample": 1}, {}  # 1, not the automatic choice, unless drawn
    if sampling:
        budget = 16
        for name, cost in (("oversample", 4), ("phi", 2), ("mosaic", 2), ("dispersion", 2), ("divergence", 2)):
            if cost <= budget and draw(st.booleans(), label=name):
                budget //= cost
                if name == "oversample":
                    det_kw["oversample"] = 2
                elif name == "phi":
                    xtal_kw.update(osc_deg=draw(st.floats(0.01, 1.0), label="osc (deg)"), phi_steps=2)
                elif name == "mosaic":
                    xtal_kw.update(mosaic_spread_deg=draw(st.floats(0.01, 1.0), label="mosaic (deg)"),
                                   mosaic_domains=2)
                elif name == "dispersion":
                    beam_kw.update(dispersion_percent=draw(st.floats(0.01, 2.0), label="dispersion (%)"),
                                   dispersion_steps=2)
                else:
                    beam_kw.update(hdiv_range_mrad=draw(st.floats(0.01, 2.0), label="hdiv (mrad)"), hdiv_steps=2)
    try:
        return Experiment(
            beam=Beam(wavelength_A=draw(st.floats(0.5, 3.0), label="wavelength (A)"), **beam_kw),
            detector=Detector(
                fpixels=fpix, spixels=spix,
                pixel_size_mm=draw(st.floats(0.05, 0.5), label="pixel (mm)"),
                distance_mm=draw(st.floats(50.0, 300.0), label="distance (mm)"),
                convention=draw(st.sampled_from(conventions), label="convention"),
                **det_kw,
            ),
            crystal=Crystal(
                cell_A_deg=lengths + angles,
                misset_deg=misset,
                N_cells=draw(st.tuples(*[st.integers(1, 8)] * 3), label="N cells"),
                default_F=draw(st.floats(1.0, 1000.0), label="default F"),
                shape=draw(st.sampled_from(shapes), label="crystal shape"),
                **xtal_kw,
            ),
        )
    except ExperimentError as exc:  # the ranges above are chosen so that this cannot happen
        raise AssertionError(f"experiments() drew an invalid experiment: {exc}") from exc

