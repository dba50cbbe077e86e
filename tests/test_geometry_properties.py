"""Properties of the geometry on every backend and float dtype (Hypothesis).

* the detector frame stays orthonormal, with its convention's handedness,
  under any detector rotation and two-theta, for every convention;
* rotations are undone by the opposite rotation and keep lengths;
* results keep the namespace, device and dtype of the context;
* invalid experiment values raise ExperimentError naming the field and value;
* trace_pixel's final value is the rendered image's pixel.

Angles and vectors are drawn as NumPy float64 and moved to the backend; the
tolerances are a small multiple of the dtype's epsilon.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bragg_core._backend import to_numpy
from bragg_core.engine.render import render
from bragg_core.engine.setup import build_setup
from bragg_core.engine.trace import trace_pixel
from bragg_core.experiment import CONVENTIONS, Beam, Crystal, Detector, Experiment, ExperimentError
from bragg_core.geometry.crystal import cell_geometry
from bragg_core.geometry.detector import detector_geometry
from bragg_core.geometry.vectors import dot, norm, rotate_axis, rotate_xyz
from bragg_core.testing import assert_same_backend

angles_deg = st.floats(-360.0, 360.0, allow_nan=False)
angles_rad = st.floats(-2 * math.pi, 2 * math.pi, allow_nan=False)
components = st.floats(-1.0, 1.0, allow_nan=False)
vectors = st.tuples(components, components, components).filter(lambda v: sum(x * x for x in v) > 1e-2)

# o = h * (f x s): the handedness of each convention's frame (ADXV's is left-handed)
HANDED = {"mosflm": 1.0, "denzo": 1.0, "xds": 1.0, "dials": 1.0, "adxv": -1.0, "custom": 1.0}


def _examples(backend, n=None):
    """Hypothesis settings for a backend: lazy/eager-dispatch backends draw fewer examples."""
    cap = {"dask": 4, "jax": 8}.get(backend.name)
    current = settings.default.max_examples if n is None else n
    return settings(max_examples=min(current, cap) if cap else current)


def _tol(ctx, k=16.0):
    return k * ctx.eps


def _np(x):
    return np.asarray(to_numpy(x), dtype=np.float64)


def _random_frame(u, angle):
    """A right-handed orthonormal frame: the MOSFLM frame rotated by ``angle`` about unit ``u``."""
    u = np.asarray(u) / np.linalg.norm(u)
    K = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    R = np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K
    f, s, o = R @ [0, 0, 1.0], R @ [0, -1.0, 0], R @ [1.0, 0, 0]
    return tuple(f), tuple(s), tuple(o)


# ----------------------------------------------------------------------------
# detector frame
# ----------------------------------------------------------------------------


def test_detector_frame_orthonormal(backend, float_dtype):
    @_examples(backend)
    @given(conv=st.sampled_from(CONVENTIONS), rot=st.tuples(angles_deg, angles_deg, angles_deg),
           twotheta=angles_deg, axis=vectors, spin=angles_rad)
    def run(conv, rot, twotheta, axis, spin):
        ctx = backend.context(float_dtype)
        kw = {}
        if conv == "custom":
            f, s, o = _random_frame(axis, spin)
            kw = dict(fdet_vector=f, sdet_vector=s, odet_vector=o, beam_vector=o,
                      twotheta_axis=tuple(np.asarray(axis) / np.linalg.norm(axis)))
        det = Detector(fpixels=64, spixels=48, convention=conv, rotation_deg=rot, twotheta_deg=twotheta, **kw)
        dg = detector_geometry(det, ctx)
        for name in ("fdet", "sdet", "odet", "beam", "pix0_m"):
            assert_same_backend(getattr(dg, name), ctx, shape=(3,))
        f, s, o = _np(dg.fdet), _np(dg.sdet), _np(dg.odet)
        tol = _tol(ctx)
        np.testing.assert_allclose([f @ f, s @ s, o @ o], 1.0, rtol=0, atol=tol)
        np.testing.assert_allclose([f @ s, s @ o, o @ f], 0.0, rtol=0, atol=tol)
        np.testing.assert_allclose(np.cross(f, s), HANDED[conv] * o, rtol=0, atol=tol)
        # the near point is where the normal through the sample meets the detector plane
        pix0 = _np(dg.pix0_m)
        near = pix0 + float(_np(dg.Fclose_m)) * f + float(_np(dg.Sclose_m)) * s
        np.testing.assert_allclose(near, float(_np(dg.close_distance_m)) * o, rtol=0,
                                   atol=tol * max(1.0, float(np.linalg.norm(pix0))))

    run()


# ----------------------------------------------------------------------------
# rotations
# ----------------------------------------------------------------------------


def test_rotate_xyz_round_trip(backend, float_dtype):
    @_examples(backend)
    @given(v=vectors, rx=angles_rad, ry=angles_rad, rz=angles_rad)
    def run(v, rx, ry, rz):
        ctx = backend.context(float_dtype)
        xp, A = ctx.xp, ctx.asarray
        zero = A(0.0)
        x = A(v)
        y = rotate_xyz(xp, x, A(rx), A(ry), A(rz))
        assert_same_backend(y, ctx, shape=(3,))
        # undo: z by -rz, then y by -ry, then x by -rx
        back = rotate_xyz(xp, rotate_xyz(xp, rotate_xyz(xp, y, zero, zero, A(-rz)), zero, A(-ry), zero),
                          A(-rx), zero, zero)
        assert_same_backend(back, ctx, shape=(3,))
        np.testing.assert_allclose(_np(back), _np(x), rtol=0, atol=_tol(ctx))
        np.testing.assert_allclose(float(_np(norm(xp, y))), float(_np(norm(xp, x))), rtol=_tol(ctx))

    run()


def test_rotate_axis_round_trip(backend, float_dtype):
    @_examples(backend)
    @given(v=vectors, axis=vectors, theta=angles_rad)
    def run(v, axis, theta):
        ctx = backend.context(float_dtype)
        xp, A = ctx.xp, ctx.asarray
        u = A(np.asarray(axis) / np.linalg.norm(axis))
        x = A(v)
        y = rotate_axis(xp, x, u, A(theta))
        assert_same_backend(y, ctx, shape=(3,))
        back = rotate_axis(xp, y, u, A(-theta))
        np.testing.assert_allclose(_np(back), _np(x), rtol=0, atol=_tol(ctx))
        # the component along the axis is unchanged, the length too
        np.testing.assert_allclose(float(_np(dot(xp, y, u))), float(_np(dot(xp, x, u))), rtol=0, atol=_tol(ctx))
        np.testing.assert_allclose(float(_np(norm(xp, y))), float(_np(norm(xp, x))), rtol=_tol(ctx))

    run()


def test_rotations_broadcast(backend, float_dtype):
    """A batch of vectors rotated by a batch of angles: each row as if rotated alone."""
    @_examples(backend)
    @given(v=st.lists(vectors, min_size=1, max_size=4), axis=vectors,
           theta=st.lists(angles_rad, min_size=1, max_size=4))
    def run(v, axis, theta):
        ctx = backend.context(float_dtype)
        xp, A = ctx.xp, ctx.asarray
        u = A(np.asarray(axis) / np.linalg.norm(axis))
        n = min(len(v), len(theta))
        X, T = A(np.asarray(v[:n])), A(np.asarray(theta[:n]))
        Y = rotate_axis(xp, X, u, T)
        assert_same_backend(Y, ctx, shape=(n, 3))
        for i in range(n):
            one = rotate_axis(xp, A(v[i]), u, A(theta[i]))
            np.testing.assert_allclose(_np(Y)[i], _np(one), rtol=0, atol=_tol(ctx, 4))

    run()


# ----------------------------------------------------------------------------
# cell
# ----------------------------------------------------------------------------


def test_cell_duality(backend, float_dtype):
    """a_i . a*_j = delta_ij V_real / V, and the lengths asked for, on every backend.

    V is the volume computed from the lengths and angles. The reference's standard
    orientation of the reciprocal cell is inexact for oblique cells (its c*_z uses
    V / (a b c sin gamma*)), so the real-space vectors enclose a slightly different
    volume and their angles drift (85 95 105 -> 84.9923 95.0077 105.001); the
    reciprocal vectors are then regenerated with 1 / V. Exact for right angles.
    """
    @_examples(backend, 10)
    @given(lengths=st.tuples(*[st.floats(5.0, 300.0)] * 3), angles=st.tuples(*[st.floats(60.0, 120.0)] * 3),
           misset=st.tuples(angles_deg, angles_deg, angles_deg))
    @example(lengths=(50.0, 60.0, 70.0), angles=(90.0, 90.0, 90.0), misset=(10.0, 20.0, 30.0))
    def run(lengths, angles, misset):
        ctx = backend.context(float_dtype)
        try:
            cr = Crystal(cell_A_deg=lengths + angles, misset_deg=misset)
        except ExperimentError:
            return  # angles that close no cell
        cg = cell_geometry(cr, 1.0, ctx)
        assert_same_backend(cg.real_m, ctx, shape=(3, 3))
        assert_same_backend(cg.reciprocal_per_A, ctx, shape=(3, 3))
        real, rec = _np(cg.real_m) * 1e10, _np(cg.reciprocal_per_A)
        ratio = np.linalg.det(real) / float(_np(cg.volume_A3))
        np.testing.assert_allclose(real @ rec.T, ratio * np.eye(3), rtol=0, atol=_tol(ctx, 64))
        if angles == (90.0, 90.0, 90.0):
            assert abs(ratio - 1) < _tol(ctx, 64)
        np.testing.assert_allclose(np.linalg.norm(real, axis=1), lengths, rtol=_tol(ctx, 64))

    run()


# ----------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------

BAD = [
    # (constructor, field, bad value, words expected in the message)
    (Detector, "pixel_size_mm", st.floats(-10.0, 0.0), "positive"),
    (Detector, "distance_mm", st.floats(-1e3, 0.0), "positive"),
    (Beam, "wavelength_A", st.just(0.0), "positive"),
    (Beam, "wavelength_A", st.floats(-10.0, 0.0), "positive"),
    (Beam, "wavelength_A", st.just(float("nan")), "finite"),
    (Beam, "fluence_photons_per_m2", st.just(float("nan")), "finite"),
    (Detector, "twotheta_deg", st.just(float("inf")), "finite"),
    (Detector, "fdet_vector", st.just((0.0, 0.0, 0.0)), "zero-length"),
    (Detector, "spindle_axis", st.just((0.0, 0.0, 0.0)), "zero-length"),
    (Detector, "beam_vector", st.tuples(st.just(float("nan")), components, components), "finite"),
    (Detector, "rotation_deg", st.tuples(components, st.just(float("nan")), components), "finite"),
    (Crystal, "cell_A_deg", st.floats(40.0, 80.0).map(lambda a: (50.0, 60.0, 70.0, a, 90.0, 90.0 + a)),
     "zero volume"),
    (Crystal, "cell_A_deg", st.floats(-100.0, 0.0).map(lambda a: (a, 60.0, 70.0, 90.0, 90.0, 90.0)), "positive"),
    (Crystal, "N_cells", st.floats(-10.0, -0.1).map(lambda n: (n, 5, 5)), "negative"),
]


def _make(cls, field, value):
    if cls is Crystal and field != "cell_A_deg":
        return cls(cell_A_deg=(50, 60, 70, 90, 90, 90), **{field: value})
    return cls(**{field: value})


@pytest.mark.parametrize("cls, field, values, words", BAD,
                         ids=[f"{c.__name__}.{f}-{w}" for c, f, _, w in BAD])
@settings(max_examples=10)
@given(data=st.data())
def test_invalid_values_name_field_and_value(cls, field, values, words, data):
    value = data.draw(values)
    with pytest.raises(ExperimentError) as info:
        _make(cls, field, value)
    msg = str(info.value)
    assert f"{cls.__name__}.{field}" in msg
    assert words in msg
    shown = repr(tuple(value)) if isinstance(value, (tuple, list)) else repr(value)
    assert shown in msg, f"{shown} not in {msg!r}"


def test_singular_reciprocal_matrix_rejected():
    with pytest.raises(ExperimentError, match="Crystal.reciprocal_vectors_per_A"):
        Crystal(reciprocal_vectors_per_A=[[0.01, 0, 0], [0.02, 0, 0], [0, 0, 0.01]])


def test_array_of_wrong_shape_named(backend):
    with pytest.raises(ExperimentError, match=r"Detector\.fdet_vector must have shape \(3,\), got \(2,\)"):
        Detector(fdet_vector=backend.asarray([1.0, 0.0]))
    with pytest.raises(ExperimentError, match=r"Detector\.beam_center_mm"):
        Detector(beam_center_mm=backend.asarray([1.0, 2.0, 3.0]))


# ----------------------------------------------------------------------------
# trace_pixel is the kernel
# ----------------------------------------------------------------------------

_SMALL = Experiment(
    beam=Beam(wavelength_A=1.2, hdiv_range_mrad=1.0, hdiv_steps=2, dispersion_percent=1.0, dispersion_steps=2),
    detector=Detector(fpixels=12, spixels=10, pixel_size_mm=0.3, distance_mm=40.0, oversample=2,
                      rotation_deg=(2.0, -3.0, 4.0), twotheta_deg=5.0, thickness_um=100.0, thickness_steps=2),
    crystal=Crystal(cell_A_deg=(40, 50, 60, 85, 95, 100), misset_deg=(5, 10, 15), N_cells=(3, 4, 5),
                    default_F=10.0, phi_start_deg=1.0, osc_deg=2.0, phi_steps=2, mosaic_spread_deg=0.3,
                    mosaic_domains=2),
)


def test_trace_pixel_is_the_rendered_pixel(backend, float_dtype):
    ctx = backend.context(float_dtype)
    setup = build_setup(_SMALL, ctx)
    image = _np(render(setup))
    for slow, fast in ((0, 0), (9, 11)):
        tr = trace_pixel(setup, slow, fast)
        assert_same_backend(tr["I_pixel"], ctx, shape=())
        g = setup.gctx
        assert_same_backend(tr["pixel_pos_m"], g, shape=(setup.thick.count, setup.oversample ** 2, 3))
        assert_same_backend(tr["hkl_all"], g)
        np.testing.assert_allclose(float(_np(tr["I_pixel"])), image[slow, fast], rtol=_tol(ctx, 64))
        # the diffracted directions are the unit positions
        pos = _np(tr["pixel_pos_m"])
        np.testing.assert_allclose(_np(tr["diffracted"]), pos / np.linalg.norm(pos, axis=-1, keepdims=True),
                                   rtol=0, atol=_tol(g))
    with pytest.raises(IndexError):
        trace_pixel(setup, 10, 0)
