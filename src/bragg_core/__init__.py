"""bragg_core: absolute-scale nanocrystal diffraction images on any array backend.

Importing the package loads NumPy only; torch, JAX, CuPy and Dask are imported
when a caller passes their arrays or names them.
"""

from __future__ import annotations

__version__ = "0.1.0"

# The function ``simulate`` shares its name with its module; binding it here,
# after the submodule is imported, keeps ``bragg_core.simulate`` the function.
from .simulate import PanelSimulation, Simulation, simulate, simulate_panels  # noqa: E402

_LAZY = {
    "simulate_args": "bragg_core.cli.api",
    # a render prepared once, then pure array code (torch.compile, vmap, jit)
    "prepare": "bragg_core.engine.prepared",
    "PreparedRender": "bragg_core.engine.prepared",
    "units": "bragg_core.units",
    "get_context": "bragg_core._backend",
    "BackendError": "bragg_core._backend",
    "Context": "bragg_core._backend",
    "Experiment": "bragg_core.experiment",
    "Beam": "bragg_core.experiment",
    "Detector": "bragg_core.experiment",
    "Crystal": "bragg_core.experiment",
    "ExperimentError": "bragg_core.experiment",
    "io": "bragg_core.io",
    # structure factors from reflection files and atomic models (needs gemmi: the 'models' extra)
    "structure_factors_from_mtz": "bragg_core.sfdata",
    "structure_factors_from_sfcif": "bragg_core.sfdata",
    "structure_factors_from_hkl": "bragg_core.sfdata",
    "structure_factors_from_model": "bragg_core.sfdata",
    "fcalc": "bragg_core.sfdata",
    "fcalc_gemmi": "bragg_core.sfdata",
    "fcalc_plan": "bragg_core.sfdata",
    "read_model": "bragg_core.sfdata",
    "detector_dmin_A": "bragg_core.sfdata",
    "BulkSolvent": "bragg_core.sfdata",
}


__all__ = ["PanelSimulation", "Simulation", "simulate", "simulate_panels", *_LAZY]


def __getattr__(name):
    import importlib

    if name in _LAZY:
        mod = importlib.import_module(_LAZY[name])
        return getattr(mod, name, mod)
    raise AttributeError(f"module 'bragg_core' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))  # a lazy name already loaded is in both
