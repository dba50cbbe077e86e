"""A prepared render: equal to simulate, parameterised by orientations and fluence, traceable.

``prepare(experiment).render(orientations, fluence)`` is pure array code of
the backend, so torch.compile(fullgraph=True), torch.func.vmap (a shot axis)
and jax.jit / jax.vmap apply to it.  Every test compares with an image that
``simulate`` renders from an experiment built to hold the same values.
"""

from __future__ import annotations

import numpy as np
import pytest

from bragg_core import prepare, simulate
from bragg_core._backend import enable_float64, to_numpy
from bragg_core.experiment import Beam, Crystal, Detector, Experiment
from bragg_core.shots import misset_deg_to_rotation, rotation_to_misset_deg

MISSET = (10.0, 5.0, 3.0)
BUDGET = 20_000   # bytes per tile: several tiles even for these small images


def _experiment(misset=MISSET, fluence=None, mosaic=True, size=(20, 12), water_um=0.3):
    beam = Beam(wavelength_A=1.0, water_size_um=water_um,
                **({} if fluence is None else {"fluence_photons_per_m2": fluence}))
    crystal = Crystal(cell_A_deg=(70.0, 80.0, 90.0, 85.0, 95.0, 105.0), N_cells=(5, 6, 5), default_F=10.0,
                      misset_deg=misset, **({"mosaic_spread_deg": 0.5, "mosaic_domains": 3} if mosaic else {}))
    return Experiment(beam=beam, detector=Detector(fpixels=size[0], spixels=size[1], distance_mm=100.0,
                                                   oversample=2), crystal=crystal)


def _np(x):
    return np.asarray(to_numpy(x), dtype=np.float64)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_prepared_render_equals_simulate(backend):
    if backend != "numpy":
        pytest.importorskip(backend)
    enable_float64(backend, "float64")
    exp = _experiment()
    ref = simulate(exp, backend=backend, dtype="float64", memory_budget_bytes=BUDGET).image
    p = prepare(exp, backend=backend, dtype="float64", memory_budget_bytes=BUDGET)
    assert len(p._tiles) > 1 or backend == "jax"
    assert np.array_equal(_np(p.render()), _np(ref))


def test_rotated_orientations_equal_a_rotated_crystal():
    """prepared.orientations @ R.T is the crystal turned by R: simulate with the misset of R @ M agrees."""
    exp = _experiment(mosaic=False, water_um=0.0)
    p = prepare(exp, backend="numpy", dtype="float64", memory_budget_bytes=BUDGET)
    R = misset_deg_to_rotation((30.0, -20.0, 70.0))
    turned = rotation_to_misset_deg(R @ misset_deg_to_rotation(MISSET))
    ref = _np(simulate(_experiment(misset=turned, mosaic=False, water_um=0.0), backend="numpy",
                       dtype="float64").image)
    got = _np(p.render(p.orientations @ R.T))
    before = _np(p.render())
    assert np.max(np.abs(got - before)) > 0.1 * np.max(np.abs(before))   # the turn changes the image
    assert np.max(np.abs(got - ref)) <= 1e-9 * np.max(np.abs(ref))


def test_fluence_argument_equals_an_experiment_of_that_fluence():
    """Spots scale with the fluence, the water term with its square: both follow the argument."""
    exp = _experiment()
    p = prepare(exp, backend="numpy", dtype="float64", memory_budget_bytes=BUDGET)
    f2 = 3.0 * float(p.fluence)
    ref = _np(simulate(_experiment(fluence=f2), backend="numpy", dtype="float64").image)
    got = _np(p.render(fluence=f2))
    assert np.max(np.abs(got - ref)) <= 1e-12 * np.max(np.abs(ref))


def test_orientations_of_the_wrong_shape_are_refused():
    p = prepare(_experiment(), backend="numpy", dtype="float64")
    with pytest.raises(ValueError, match="orientations"):
        p.render(np.eye(3)[None, ...])


def test_torch_vmap_over_orientations_is_a_shot_axis():
    torch = pytest.importorskip("torch")
    from torch.func import vmap

    p = prepare(_experiment(), backend="torch", dtype="float64", memory_budget_bytes=BUDGET)
    turns = [torch.as_tensor(misset_deg_to_rotation(m)) for m in ((0, 0, 0), (40, 10, -25), (5, 80, 15))]
    batch = torch.stack([p.orientations @ R.T for R in turns])
    images = vmap(p.render)(batch)
    assert images.shape == (3, 12, 20)
    for i in range(3):
        assert torch.equal(images[i], p.render(batch[i]))
    assert not torch.equal(images[1], images[2])


def test_torch_compile_fullgraph_equals_eager():
    """The whole prepared render compiles as one graph (no break), and gives eager's image."""
    torch = pytest.importorskip("torch")
    p = prepare(_experiment(size=(8, 6)), backend="torch", dtype="float64")
    assert len(p._tiles) == 1          # one tile: compile time stays short
    eager = p.render()
    turned = p.orientations @ torch.as_tensor(misset_deg_to_rotation((20, 0, 10))).T
    compiled = torch.compile(p.render, fullgraph=True)
    for orient in (p.orientations, turned):
        want = p.render(orient)
        got = compiled(orient)
        assert float(torch.max(torch.abs(got - want))) <= 1e-12 * float(torch.max(torch.abs(want)))
    assert float(torch.max(torch.abs(eager - want))) > 0    # the two orientations differ


def test_jax_jit_and_vmap_equal_eager():
    jax = pytest.importorskip("jax")
    enable_float64("jax", "float64")
    import jax.numpy as jnp

    p = prepare(_experiment(), backend="jax", dtype="float64", memory_budget_bytes=BUDGET)
    turns = [jnp.asarray(misset_deg_to_rotation(m)) for m in ((0, 0, 0), (40, 10, -25))]
    batch = jnp.stack([p.orientations @ R.T for R in turns])
    images = jax.jit(jax.vmap(p.render))(batch)
    for i in range(2):
        want = _np(p.render(batch[i]))
        assert np.max(np.abs(_np(images[i]) - want)) <= 1e-12 * np.max(np.abs(want))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_region_of_interest_and_mask_as_simulate(backend):
    """Pixels outside the region of interest and masked pixels are zero, as simulate leaves them."""
    if backend != "numpy":
        pytest.importorskip(backend)
    base = _experiment(water_um=0.0)
    mask = np.ones((12, 20), dtype=np.int32)
    mask[5, 7] = 0
    mask[8, 3:6] = 0
    det = base.detector
    import dataclasses

    exp = dataclasses.replace(base, detector=dataclasses.replace(det, roi=(2, 15, 3, 10), mask=mask))
    ref = _np(simulate(exp, backend=backend, dtype="float64", memory_budget_bytes=BUDGET).image)
    p = prepare(exp, backend=backend, dtype="float64", memory_budget_bytes=BUDGET)
    got = _np(p.render())
    assert np.array_equal(got, ref)
    assert got[5, 7] == 0 and got[0, 0] == 0 and got[6, 10] > 0


def test_a_multi_panel_detector_is_refused_with_its_name():
    import dataclasses

    from bragg_core.experiment import ExperimentError
    from bragg_core.panels import MultiPanelDetector, panel_from_detector

    base = _experiment()
    multi = MultiPanelDetector(panels=(panel_from_detector(base.detector, "a"),
                                       panel_from_detector(base.detector, "b")), base=base.detector)
    with pytest.raises(ExperimentError, match="MultiPanelDetector"):
        prepare(dataclasses.replace(base, detector=multi))


def test_a_batch_of_prepared_renders_gives_the_shots_of_a_run():
    """A ShotRun that varies only the orientation: its rotation U replaces the misset, so the base prepared
    with no misset and turned by U renders shot k (numpy: the same float32 image; torch vmap: within 1e-6)."""
    from bragg_core.shots import ShotRun, render_shot, shot_orientations

    base = _experiment(misset=(0.0, 0.0, 0.0), water_um=0.0, mosaic=False)   # (a run draws mosaic seeds)
    run = ShotRun(base, n_shots=3, seed=11)
    U = shot_orientations(run)
    shots = [render_shot(run, k).image for k in range(3)]
    p = prepare(base, backend="numpy", dtype="float64")
    for k in range(3):
        assert np.array_equal(np.asarray(p.render(p.orientations @ U[k].T), dtype=np.float32), shots[k])
    torch = pytest.importorskip("torch")
    from torch.func import vmap

    pt = prepare(base, backend="torch", dtype="float64")
    batch = pt.orientations @ torch.as_tensor(U).mT[:, None]
    images = vmap(pt.render)(batch)
    for k in range(3):
        got = images[k].numpy().astype(np.float32)
        assert np.max(np.abs(got - shots[k])) <= 1e-6 * np.max(shots[k])
