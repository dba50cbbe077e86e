"""The ``bragg_core`` command line: nanoBragg's flags, bragg_core's engine."""

from .api import simulate_args
from .main import main

__all__ = ["main", "simulate_args"]
