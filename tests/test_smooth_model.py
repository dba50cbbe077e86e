"""The refinement-grade smooth model (``Crystal.smooth``): derivatives that finite steps of practical size see.

For each configuration the derivative of a weighted image sum by torch
autograd is compared with a central difference at the step a refinement
takes (0.01 A on a cell edge, 0.01 mm on the distance).  With the smooth
model they agree to 1%; with the reference's model the same steps straddle
the jumps at half-integer h and miss by far more (checked too, so that the
comparison is known to be able to fail).
"""

from __future__ import annotations

import numpy as np
import pytest

from bragg_core.experiment import Beam, Crystal, Detector, Experiment
from bragg_core.io.grid import StructureFactorGrid
from bragg_core.simulate import simulate

torch = pytest.importorskip("torch")

CELL = (70.0, 80.0, 90.0, 85.0, 95.0, 105.0)


def _grid():
    rng = np.random.default_rng(3)
    F = rng.uniform(5.0, 50.0, size=(31, 31, 31))
    return StructureFactorGrid(F=F, h_min=-15, k_min=-15, l_min=-15)


CONFIGS = {
    "gauss": dict(shape="gauss", N_cells=(6.0, 6.0, 6.0), default_F=10.0),
    "tophat": dict(shape="tophat", N_cells=(3.0, 3.0, 3.0), default_F=10.0),  # spots reach reflections with h != 0
    "round": dict(shape="round", N_cells=(6.0, 6.0, 6.0), default_F=10.0),
    "square_nearest_F": dict(shape="square", N_cells=(4.0, 4.0, 4.0), structure_factors=_grid(), interpolate=False),
}


def _image(config, smooth, a, distance):
    exp = Experiment(
        beam=Beam(wavelength_A=1.0),
        detector=Detector(fpixels=24, spixels=24, pixel_size_mm=0.1, distance_mm=distance, beam_center_mm=(-1.0, -1.5),
                          oversample=2),
        crystal=Crystal(cell_A_deg=(a,) + CELL[1:], misset_deg=(10.0, 5.0, 3.0), smooth=smooth, **CONFIGS[config]))
    return simulate(exp, backend="torch", dtype="float64").image


def _weights():
    return torch.as_tensor(np.random.default_rng(5).uniform(0.5, 1.5, size=(24, 24)))


def _derivatives(config, smooth, name, step):
    nominal = {"a": CELL[0], "distance": 100.0}
    w = _weights()
    x = torch.tensor(nominal[name], dtype=torch.float64, requires_grad=True)
    args = {**nominal, name: x}
    loss = torch.sum(_image(config, smooth, args["a"], args["distance"]) * w)
    loss.backward()

    def at(v):
        with torch.no_grad():
            return float(torch.sum(_image(config, smooth, **{**nominal, name: v}) * w))

    fd = (at(nominal[name] + step) - at(nominal[name] - step)) / (2 * step)
    return float(x.grad), fd


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name,step", [("a", 0.01), ("distance", 0.01)])
def test_smooth_model_derivative_matches_practical_steps(config, name, step):
    grad, fd = _derivatives(config, True, name, step)
    assert np.isfinite(grad)
    assert abs(grad - fd) <= 1e-2 * abs(fd), f"{config}/{name}: autograd {grad}, difference {fd}"


def test_reference_model_misses_practical_steps_where_the_smooth_one_does_not():
    misses = []
    for config in CONFIGS:
        grad, fd = _derivatives(config, False, "a", 0.01)
        misses.append(abs(grad - fd) / max(abs(fd), abs(grad), 1e-300))
    assert max(misses) > 5e-2


def test_smooth_model_keeps_the_square_shape_and_integer_structure_factors():
    """At integer h the blended |F|^2 is the reflection's own; the square shape is untouched."""
    img_ref = _image("gauss", False, CELL[0], 100.0).detach().numpy()
    img_smooth = _image("gauss", True, CELL[0], 100.0).detach().numpy()
    # the nearest lattice point dominates: the images agree closely near spot centres
    top = img_ref > 0.5 * img_ref.max()
    assert np.all(np.abs(img_smooth[top] - img_ref[top]) <= 1e-3 * img_ref.max())
    plain = CONFIGS["square_nearest_F"]
    with_grid = dict(plain, structure_factors=_grid())
    assert with_grid["shape"] == "square"
