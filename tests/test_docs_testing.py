"""docs/testing.md runs: its Python blocks, in order, as one module, and every test function they define.

So the page's examples cannot drift from the API.  The page's strategies are
built while the selection is narrowed to the eager backends among those
selected (JAX compiles and Dask builds a graph for every drawn shape, ~1 s
each; test_testing.py draws on them); with none of those selected, the
selection stands.
"""

from __future__ import annotations

import inspect
import os
import re
import types

import pytest

from bragg_core.testing import selected_backend_ids

SLOW_TO_DRAW = {"jax", "dask"}

PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "testing.md")


def _blocks() -> list[str]:
    with open(PAGE) as fh:
        return re.findall(r"^```python\n(.*?)^```", fh.read(), flags=re.S | re.M)


def test_page_has_examples():
    blocks = _blocks()
    assert len(blocks) >= 4
    assert any("@given" in b for b in blocks)  # a property test, as the page promises


@pytest.fixture(scope="module")
def page_module():
    module = types.ModuleType("docs_testing_page")
    module.__file__ = PAGE
    code = "\n\n".join(_blocks())
    eager = [i for i in selected_backend_ids() if i not in SLOW_TO_DRAW]
    with pytest.MonkeyPatch.context() as mp:
        if eager:
            mp.setenv("BRAGG_BACKENDS", ",".join(eager))
        exec(compile(code, PAGE, "exec"), module.__dict__)
    return module


def _tests(module):
    return [(name, f) for name, f in vars(module).items() if name.startswith("test_") and callable(f)]


def test_page_defines_property_tests(page_module):
    names = [n for n, _ in _tests(page_module)]
    assert "test_normalised_keeps_backend_and_agrees_with_numpy" in names
    assert "test_image_is_linear_in_fluence" in names
    assert page_module.result.figures.max_rel < 1e-3  # the golden-case example ran


@pytest.mark.parametrize("name", re.findall(r"^def (test_\w+)\(", "\n".join(_blocks()), flags=re.M))
def test_page_example_passes(page_module, name):
    func = getattr(page_module, name)
    assert not inspect.signature(func).parameters  # Hypothesis supplies every argument
    func()
