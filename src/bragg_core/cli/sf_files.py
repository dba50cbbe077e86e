"""Structure factors from -mtz, -sfcif and -model on the command line.

``-mtz FILE [-mtz_column LABEL]`` and ``-sfcif FILE`` read measured
amplitudes (``-mtz_column`` names an MTZ column, or two separated by a comma
for an anomalous pair; it applies to -sfcif too, with gemmi's MTZ names of
the mmCIF columns).  ``-model FILE`` computes F from a PDB/mmCIF model with
gemmi on the host, at the beam's mean wavelength, to ``-dmin`` when given and
otherwise to the resolution the detector corners reach;
``-bulk_solvent k_sol B_sol`` adds a flat bulk-solvent term.  The file's
unit cell is used when neither -cell nor -mat is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FLAGS = ("-mtz", "-sfcif", "-model")
SPEC = {"-mtz": (1, "s"), "-mtz_column": (1, "s"), "-sfcif": (1, "s"), "-model": (1, "s"),
        "-bulk_solvent": (2, "f")}


@dataclass
class LoadedSF:
    grid: Any
    cell: tuple | None
    note: str


def load_structure_factors(opts, cwd: str, wavelength_A: float, detector, beam, default_F: float, error):
    """Read the one structure-factor source named on the command line; ``error`` builds the exception to raise."""
    import os

    given = [f for f in FLAGS + ("-hkl",) if opts.has(f)]
    if len(given) > 1:
        raise error(f"{' and '.join(given)} both give structure factors; use one of them")
    flag = given[0]
    if opts.has("-mtz_column") and flag == "-model":
        raise error("-mtz_column applies to -mtz or -sfcif, not -model")
    if opts.has("-bulk_solvent") and flag != "-model":
        raise error("-bulk_solvent applies to -model only")
    name = opts.get(flag)
    path = name if os.path.isabs(name) else os.path.join(cwd, name)
    try:
        from .. import sfdata
    except ImportError as exc:  # gemmi missing
        raise error(f"{flag}: {exc}") from None
    try:
        if flag in ("-mtz", "-sfcif"):
            from ..io.reflections import read_mtz, read_sfcif

            refl = (read_mtz if flag == "-mtz" else read_sfcif)(path, opts.get("-mtz_column"))
            kind = "sqrt(max(I, 0)) of intensities" if refl.from_intensities else "amplitudes"
            note = f"{flag}: {kind} from column {refl.column} of {name}, expanded to P1 from {refl.space_group}"
            loaded = LoadedSF(refl.to_grid(default_F), refl.cell_A_deg, note)
            loaded.note = cell_note(opts, loaded)
            return loaded
        model = sfdata.read_model(path)
        dmin = float(opts.get("-dmin", 0.0) or 0.0)
        if dmin <= 0:
            dmin = sfdata.detector_dmin_for(detector, beam)
        solvent = None
        if opts.has("-bulk_solvent"):
            k, b = opts.get("-bulk_solvent")
            if k < 0 or b < 0:
                raise error(f"-bulk_solvent expects k_sol >= 0 and B_sol >= 0, got {k:g} {b:g}")
            solvent = sfdata.BulkSolvent(k_sol=k, B_sol_A2=b)
        grid = sfdata.fcalc_gemmi(model, wavelength_A, dmin, bulk_solvent=solvent)
        note = (f"-model: F-calc of {model.n_atoms} atoms of {name} ({model.space_group}) at "
                f"{wavelength_A:g} A to {dmin:.3f} A")
        loaded = LoadedSF(grid, model.cell_A_deg, note)
        loaded.note = cell_note(opts, loaded)
        return loaded
    except OSError as exc:
        raise error(f"{flag}: cannot read {name}: {exc.strerror or exc}") from None
    except (ValueError, RuntimeError) as exc:   # RuntimeError: gemmi refusing a model it read
        raise error(f"{flag}: {exc}") from None


def cell_note(opts, loaded: LoadedSF) -> str:
    """The loader's note, with a warning when -cell differs from the file's cell by more than 0.5%."""
    given = opts.get("-cell")
    if given is None or loaded.cell is None:
        return loaded.note
    if any(abs(float(a) - float(b)) > 0.005 * abs(float(b)) for a, b in zip(given, loaded.cell)):
        cell = " ".join(f"{x:g}" for x in loaded.cell)
        return f"{loaded.note}; the file's cell ({cell}) differs from -cell, which is used"
    return loaded.note
