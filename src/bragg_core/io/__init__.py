"""File formats of the nanoBragg reference, host-side (NumPy in, NumPy out).

Readers raise a format-specific :class:`ValueError` subclass naming the file
(and line, for text formats) on malformed input; writers are atomic.
"""

from .atomic import atomic_open, atomic_write
from .fdump import FdumpFormatError, fdump_bytes, parse_fdump, read_fdump, write_fdump
from .floatfile import FloatFileFormatError, read_floatfile, write_floatfile, write_panels_floatfile
from .grid import StructureFactorGrid
from .hkl import HKLFormatError, NonIntegerIndexWarning, parse_hkl, read_hkl
from .matfile import (
    MatFormatError,
    parse_mosflm_matrix,
    read_mosflm_matrix,
    reciprocal_vectors_from_mosflm,
)
from .pgm import ImageStatistics, image_statistics, pgm_auto_scale, pgm_bytes, pgm_header, pgm_pixels, write_pgm
from .smv import (
    SMVFormatError,
    SMVHeader,
    c_format_g,
    int_image,
    int_image_scale,
    parse_smv,
    parse_smv_header,
    read_smv,
    smv_header,
    write_smv,
)
from .sourcefile import SourceFileFormatError, Sources, parse_sourcefile, read_sourcefile

__all__ = [
    "atomic_open", "atomic_write",
    "StructureFactorGrid",
    "HKLFormatError", "NonIntegerIndexWarning", "parse_hkl", "read_hkl",
    "FdumpFormatError", "fdump_bytes", "parse_fdump", "read_fdump", "write_fdump",
    "MatFormatError", "parse_mosflm_matrix", "read_mosflm_matrix",
    "reciprocal_vectors_from_mosflm",
    "SourceFileFormatError", "Sources", "parse_sourcefile", "read_sourcefile",
    "SMVFormatError", "SMVHeader", "c_format_g", "int_image", "int_image_scale",
    "parse_smv", "parse_smv_header", "read_smv", "smv_header", "write_smv",
    "ImageStatistics", "image_statistics", "pgm_auto_scale", "pgm_bytes", "pgm_header", "pgm_pixels",
    "write_pgm",
    "FloatFileFormatError", "read_floatfile", "write_floatfile", "write_panels_floatfile",
]
