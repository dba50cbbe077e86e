"""bragg_core.testing: its strategies drive a property of the renderer, and its assertions fail when they should.

The property: a small experiment drawn by ``experiments()`` renders, on every
backend x device x dtype that ``backend_dtypes()`` finds here, to an image of
that backend, device and dtype which matches NumPy float64.  Bounds measured
over 150 drawn experiments on NumPy, torch and array-api-strict: float32 worst
r = 0.99999, max|a-b|/max|b| = 3.3e-6; float64 worst 1 - 3e-16, 3.6e-14.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bragg_core as bc
from bragg_core._backend import get_context, to_numpy
from bragg_core.testing import (
    assert_images_close,
    assert_same_backend,
    image_figures,
    load_golden_case,
    run_golden_case,
    selected_backend_ids,
    skip_reason,
)
from bragg_core.testing.strategies import arrays, backend_dtypes, experiments

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "golden")
BOUNDS = {"float32": (0.9999, 1e-4), "float64": (1 - 1e-10, 1e-10)}  # (r_min, max_rel)


@settings(max_examples=min(settings.default.max_examples, 12))  # JAX compiles, Dask builds graphs: ~1 s each
@given(exp=experiments(), combo=backend_dtypes())
def test_drawn_experiment_renders_alike_on_every_backend(exp, combo):
    backend, dtype = combo
    ref = bc.simulate(exp).image
    image = bc.simulate(exp, backend=backend.name, device=backend.device, dtype=dtype).image
    assert_same_backend(image, backend.context(dtype), shape=(exp.detector.spixels, exp.detector.fpixels))
    r_min, max_rel = BOUNDS[dtype]
    # Pearson r of a nearly flat image (a few-cell crystal far from any spot) measures only the
    # rounding of the dtype: r is required where the image's contrast is well above float32's eps.
    contrast = float(np.std(ref) / np.max(np.abs(ref)))
    assert_images_close(image, ref, r_min=r_min if contrast > 1e-3 else -1.0, max_rel=max_rel,
                        what=f"{backend.id} {dtype} vs numpy float64 (contrast {contrast:.1e})")


def test_arrays_strategy_keeps_backend(backend, float_dtype):
    @settings(max_examples=5)
    @given(x=arrays(backend, float_dtype, st.tuples(st.integers(0, 3), st.integers(1, 3)),
                    elements=st.floats(-2.0, 2.0, width=32)))
    def run(x):
        assert_same_backend(x, backend.context(float_dtype))
        vals = to_numpy(x)
        assert vals.ndim == 2 and np.all(np.abs(vals) <= 2.0)

    run()


# ----------------------------------------------------------------------------
# assert_same_backend
# ----------------------------------------------------------------------------


def test_same_backend_follows_the_inputs(backend):
    x32, x64 = backend.asarray([1.0, 2.0], "float32"), backend.asarray([3.0, 4.0], "float64")
    assert_same_backend(x32 + x32, x32)
    assert_same_backend(x32 + x64, x32, 2.5, x64)  # promotion: float64; scalars skipped
    with pytest.raises(AssertionError, match="dtype .*float32.* instead of .*float64"):
        assert_same_backend(x32, x32, x64)
    with pytest.raises(AssertionError, match=r"shape \(2,\) instead of \(3,\)"):
        assert_same_backend(x64, x64, shape=(3,))
    with pytest.raises(TypeError, match="at least one input array"):
        assert_same_backend(x64, 1.0)


def test_same_backend_catches_another_library_or_device(backend):
    x = backend.asarray([1.0, 2.0])
    with pytest.raises(AssertionError, match="expected a .* array, got float"):
        assert_same_backend(1.0, x)
    if backend.name != "numpy":
        with pytest.raises(AssertionError, match="namespace .* instead of"):
            assert_same_backend(np.ones(2), x)
    if backend.name == "array_api_strict":
        import array_api_strict as xps

        other = xps.asarray([1.0, 2.0], device=xps.Device("device1" if "device1" not in backend.id else "CPU_DEVICE"))
        with pytest.raises(AssertionError, match="device .* instead of"):
            assert_same_backend(other, x)


# ----------------------------------------------------------------------------
# image comparison
# ----------------------------------------------------------------------------


def test_image_figures_measure_what_they_say():
    ref = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert image_figures(ref, ref) == (1.0, 0.0)
    off = ref.copy()
    off[1, 2] += 0.5  # max |ref| = 11
    fig = image_figures(off, ref)
    assert fig.max_rel == pytest.approx(0.5 / 11, rel=1e-15)
    assert fig.r == pytest.approx(np.corrcoef(off.ravel(), ref.ravel())[0, 1], rel=1e-15)
    assert image_figures(np.zeros(4), np.zeros(4)) == (1.0, 0.0)
    assert image_figures(np.ones(4), np.zeros(4)).r == 0.0


def test_assert_images_close_fails_with_the_figures():
    ref = np.linspace(0.0, 10.0, 64).reshape(8, 8)
    assert assert_images_close(ref * (1 + 1e-7), ref, r_min=0.9999, max_rel=1e-6).max_rel < 1e-6
    with pytest.raises(AssertionError, match=r"r=1\.000000000 \(at least 0\.9999\), max\|a-b\|/max\|b\|=1\.000e-03"):
        assert_images_close(ref + 0.01, ref, r_min=0.9999, max_rel=1e-4)
    bad = ref.copy()
    bad[0, 0] = np.nan
    with pytest.raises(AssertionError, match="differ"):
        assert_images_close(bad, ref)
    with pytest.raises(AssertionError, match=r"shape \(64,\) instead of \(8, 8\)"):
        assert_images_close(ref.ravel(), ref)


# ----------------------------------------------------------------------------
# golden cases
# ----------------------------------------------------------------------------

FLAGS = "-cell 70 80 90 90 95 90 -default_F 50 -lambda 1.5 -N 4 -distance 80 -detpixels 24 -pixel 0.4 -oversample 1"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_golden_runner_on_a_reference_case(dtype):
    """The runner reproduces the reference program's image of a committed case within the parity bounds."""
    res = run_golden_case(os.path.join(GOLDEN, "cubic_default"), dtype=dtype)
    assert res.reference.shape == (256, 256) and res.case.name == "cubic_default"
    r_min, max_rel = {"float64": (0.999999, 1e-5), "float32": (0.9999, 1e-3)}[dtype]
    assert res.figures.r >= r_min and res.figures.max_rel <= max_rel


def test_golden_runner_on_a_users_folder(tmp_path, backend):
    (tmp_path / "cmd.txt").write_text(FLAGS + " -floatfile ref.bin\n")
    ref = to_numpy(bc.simulate_args(FLAGS.split()).image).astype("<f4")
    ref.tofile(tmp_path / "ref.bin")
    res = run_golden_case(tmp_path, backend=backend.name, device=backend.device, dtype="float64")
    assert_same_backend(res.image, backend.context("float64"), shape=(24, 24))
    assert res.figures.r > 1 - 1e-12 and res.figures.max_rel < 1e-6  # float32 rounding of the stored file
    bumped = ref.copy()
    bumped[3, 4] += 0.02 * ref.max()
    bumped.tofile(tmp_path / "ref.bin")
    with pytest.raises(AssertionError, match=r"golden case .* differ: r=.*max\|a-b\|/max\|b\|=2\.0\d*e-02"):
        run_golden_case(tmp_path, backend=backend.name, device=backend.device, dtype="float64")
    assert run_golden_case(tmp_path, check=False).figures.max_rel == pytest.approx(0.02, rel=1e-3)


def test_golden_runner_reads_npy_and_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no cmd.txt"):
        load_golden_case(tmp_path)
    (tmp_path / "cmd.txt").write_text(FLAGS)
    with pytest.raises(FileNotFoundError, match="no reference image .*image.npy"):
        load_golden_case(tmp_path)
    np.save(tmp_path / "image.npy", np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match=r"image.npy: shape \(5, 5\), the rendered image is \(24, 24\)"):
        run_golden_case(tmp_path)
    shutil.copy(os.path.join(GOLDEN, "cubic_default", "image.bin.gz"), tmp_path / "image.bin.gz")
    os.remove(tmp_path / "image.npy")
    with pytest.raises(ValueError, match=r"image.bin.gz: 65536 values, the rendered image has 576"):
        run_golden_case(tmp_path)


# ----------------------------------------------------------------------------
# backend selection, optional Hypothesis
# ----------------------------------------------------------------------------


def test_selection_by_library_or_id():
    assert selected_backend_ids("numpy, torch-cuda") == ["numpy", "torch-cuda"]
    assert selected_backend_ids("torch") == ["torch", "torch-cuda"]
    assert len(selected_backend_ids("")) == 8
    with pytest.raises(ValueError, match=r"unknown backends \['tensorflow'\]"):
        selected_backend_ids("numpy,tensorflow")
    assert skip_reason("jax", "numpy") == "jax: not selected by BRAGG_BACKENDS"
    assert skip_reason("numpy", "numpy") is None


def test_hypothesis_stays_optional():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["hypothesis"] = None  # as if not installed
        import numpy as np
        import bragg_core.testing as t
        t.assert_images_close(np.ones(3), np.ones(3))
        try:
            t.experiments
        except ImportError as exc:
            print("ImportError:", exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ImportError: bragg_core.testing.strategies needs Hypothesis" in out.stdout
    assert "pip install 'bragg_core[test]'" in out.stdout


def test_context_is_accepted_as_the_reference():
    ctx = get_context(dtype="float32")
    assert_same_backend(ctx.asarray([1.0]), ctx, shape=(1,))
