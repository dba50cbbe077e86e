"""The ``bragg_core`` command line: nanoBragg's flags, bragg_core's engine."""

from .main import main

__all__ = ["main"]
