"""The crystal and its structure factors from nanoBragg-style flags: one step of
:func:`bragg_core.cli.args.build_config` (cell, misset or -mat orientation, shape, cell counts or size,
and the structure factors from -hkl, Fdump.bin, -mtz, -sfcif, -model or -default_F)."""

from __future__ import annotations

import os

from ..experiment import Beam, Crystal, Detector, ExperimentError
from .options import Options, _last_of
from .validate import UsageError, flag_for_message, flag_path, read_flag_file

__all__ = ["crystal_from_flags"]


def crystal_from_flags(opts: Options, cwd: str, lam: float, beam: Beam, det_kwargs: dict,
                        warnings: list) -> tuple:
    """(the Crystal, the grid read from ``-hkl`` or None): Fdump.bin is written from the latter."""
    v = opts.get
    shape = _crystal_shape(opts)
    N = _cell_counts(opts)
    size = _crystal_size(opts)
    cell = v("-cell")
    recip = _mat_orientation(opts, cwd, lam, warnings)
    default_F = v("-default_F", 0.0)
    sf_file = _structure_factor_file(opts, cwd, lam, beam, det_kwargs, default_F, warnings)
    cell, recip = _unit_cell(opts, cwd, cell, recip, sf_file)
    grid, hkl_grid = _structure_factors(opts, cwd, sf_file, default_F, warnings)
    misset = v("-misset")
    interp = None
    if opts.has("-interpolate") or opts.has("-nointerpolate"):
        interp = _last_of(opts, ("-interpolate", "-nointerpolate")) == "-interpolate"
    crystal = Crystal(
        cell_A_deg=tuple(cell) if cell is not None and recip is None else None,
        reciprocal_vectors_per_A=recip,
        misset_deg=None if misset in (None, "random") else tuple(misset),
        misset_random=misset == "random", misset_seed=v("-misset_seed", v("-seed", 1)),
        N_cells=tuple(N), size_mm=size, shape=shape, fudge=v("-fudge", 1.0),
        mosaic_spread_deg=v("-mosaic"), mosaic_domains=v("-mosaic_dom"),
        mosaic_seed=v("-mosaic_seed", 12345678),
        phi_start_deg=v("-phi", 0.0), osc_deg=v("-osc"), phi_step_deg=v("-phistep"), phi_steps=v("-phisteps"),
        default_F=default_F, structure_factors=grid, interpolate=interp, dmin_A=v("-dmin", 0.0),
    )
    return crystal, hkl_grid


def _crystal_shape(opts: Options) -> str:
    """The shape transform: the last of -square_xtal, -round_xtal, -gauss_xtal, -tophat_spots (default square)."""
    shape = "square"
    last_shape = _last_of(opts, ("-square_xtal", "-round_xtal", "-gauss_xtal", "-tophat_spots"))
    if last_shape:
        shape = {"-square_xtal": "square", "-round_xtal": "round", "-gauss_xtal": "gauss",
                 "-tophat_spots": "tophat"}[last_shape]
    return shape


def _cell_counts(opts: Options) -> list:
    """Unit cells along a, b, c: -N sets all three, -Na/-Nb/-Nc one, in the order given."""
    v = opts.get
    N = [1.0, 1.0, 1.0]
    for f in opts.order:
        if f == "-N":
            N = [v("-N")] * 3
        elif f in ("-Na", "-Nb", "-Nc"):
            N["abc".index(f[-1])] = v(f)
    return [float(int(n)) for n in N]  # cell counts are whole numbers on the command line


def _crystal_size(opts: Options) -> tuple | None:
    """The crystal's size in mm (x, y, z): -xtalsize sets all three, -xtal_thick/_width/_height one; None if unset."""
    v = opts.get
    sx = sy = sz = 0.0
    for f in opts.order:
        if f == "-xtalsize":
            sx = sy = sz = v(f)
        elif f == "-xtal_thick":
            sx = v(f)
        elif f == "-xtal_width":
            sy = v(f)
        elif f == "-xtal_height":
            sz = v(f)
    if sx > 0 or sy > 0 or sz > 0:
        return (sx, sy, sz)
    return None


def _mat_orientation(opts: Options, cwd: str, lam: float, warnings: list):
    """The reciprocal vectors of the ``-mat`` MOSFLM matrix at wavelength ``lam`` (None without -mat)."""
    if not opts.has("-mat"):
        return None
    from ..io import read_mosflm_matrix, reciprocal_vectors_from_mosflm

    m = read_flag_file("-mat", read_mosflm_matrix, flag_path(cwd, opts.get("-mat")), warnings_out=warnings)
    return reciprocal_vectors_from_mosflm(m, lam)


def _structure_factor_file(opts: Options, cwd: str, lam: float, beam: Beam, det_kwargs: dict, default_F: float,
                           warnings: list):
    """The structure factors of -mtz, -sfcif or -model (cli/sf_files.py), or None when none is given."""
    if not any(opts.has(f) for f in ("-mtz", "-sfcif", "-model")):
        return None
    from .sf_files import load_structure_factors

    try:
        det_for_sf = Detector(**det_kwargs)
    except ExperimentError as exc:
        raise UsageError(flag_for_message(str(exc))) from exc
    sf_file = load_structure_factors(opts, cwd, lam, det_for_sf, beam, default_F, UsageError)
    warnings.append(sf_file.note)
    return sf_file


def _unit_cell(opts: Options, cwd: str, cell, recip, sf_file) -> tuple:
    """(cell, reciprocal vectors): as given, else the structure-factor file's cell, else the -expt crystal."""
    if sf_file is not None and cell is None and recip is None and sf_file.cell is not None:
        cell = sf_file.cell  # the file's cell when none is given
    if cell is None and recip is None and opts.has("-expt"):
        from .panel_flags import expt_reciprocal

        recip = expt_reciprocal(opts, cwd)  # the experiment list's crystal
    if cell is None and recip is None:
        raise UsageError("no unit cell: give -cell a b c alpha beta gamma or -mat FILE")
    return cell, recip


def _structure_factors(opts: Options, cwd: str, sf_file, default_F: float, warnings: list) -> tuple:
    """(the structure-factor grid, the same grid when it came from ``-hkl`` else None).

    The grid comes from a structure-factor file, ``-hkl``, or an Fdump.bin in
    the working directory; None leaves every F at a non-zero ``-default_F``.
    """
    grid = None
    fdump_src = None
    if sf_file is not None:
        grid = sf_file.grid
    elif opts.has("-hkl"):
        from ..estimate import MAX_GRID_CELLS
        from ..io import read_hkl

        limit = {} if opts.has("-force") else {"max_cells": MAX_GRID_CELLS}
        try:
            grid = read_flag_file("-hkl", read_hkl, flag_path(cwd, opts.get("-hkl")), default_F,
                                  warnings_out=warnings, **limit)
        except UsageError as exc:
            if "more than the limit" in str(exc) and not opts.has("-force"):
                raise UsageError(f"{exc}; -force lifts the limit to {2**28} cells") from None
            raise
        fdump_src = grid
    else:
        from ..io import read_fdump

        dump = flag_path(cwd, "Fdump.bin")
        if os.path.exists(dump):
            grid = read_flag_file("Fdump.bin", read_fdump, dump, warnings_out=warnings)
            warnings.append("reading structure factors from Fdump.bin (no -hkl given)")
        elif default_F == 0.0:
            raise UsageError("no structure factors: give -hkl FILE, an Fdump.bin in the working "
                             "directory, or a non-zero -default_F")
    return grid, fdump_src
