"""Atomic models (PDB, mmCIF) read with gemmi into host arrays for F-calc.

An :class:`AtomicModel` holds the atoms of the first model of a structure
(the asymmetric unit: the space group's operators generate the rest of the
cell), as NumPy arrays: fractional coordinates, isotropic B-factors
(Angstrom^2; anisotropic ADPs are not used: ``B_iso`` as written in the file,
and ANISOU values are dropped from the gemmi structure too),
occupancies and an element index into per-element tables.  Strict NCS
operators in the file (MTRIX records not marked as given) are applied first,
so the arrays hold every copy.

Form factors are the IT92 four-Gaussian fits (International Tables for
Crystallography, Vol. C, Table 6.1.1.4) as gemmi tabulates them, ignoring
charges: ``f0(s) = c + sum_k a_k exp(-b_k s^2)`` with ``s = sin(theta)/lambda``
in 1/Angstrom.  Anomalous corrections ``f'`` and ``f''`` at a wavelength come
from gemmi's Cromer-Liberman calculation (isolated atoms, no near-edge
features).

Errors raise :class:`ModelFileError` (a ``ValueError``) naming the file and
what is missing: no atoms, no unit cell, no space group, an element with no
form factor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .symmetry import SymmetryError, _gemmi, _gemmi_read, space_group_ops

__all__ = ["ModelFileError", "AtomicModel", "read_model", "model_from_structure", "anomalous_factors"]

HC_EV_A = 12398.419843320026  # h c in eV Angstrom (CODATA 2018)


class ModelFileError(ValueError):
    """A model file that cannot be used for F-calc; the message names the file and what is missing."""


@dataclass(frozen=True)
class AtomicModel:
    """Atoms of an asymmetric unit as host arrays, with the tables F-calc needs.

    ``xyz_frac`` (A, 3), ``B_A2`` (A,), ``occupancy`` (A,), ``element_index``
    (A,) int into ``elements`` (E,); ``it92_a`` and ``it92_b`` (E, 4),
    ``it92_c`` (E,).  ``structure`` is the gemmi.Structure (host F-calc uses it).
    """

    xyz_frac: np.ndarray
    B_A2: np.ndarray
    occupancy: np.ndarray
    element_index: np.ndarray
    elements: tuple
    atomic_numbers: np.ndarray
    it92_a: np.ndarray
    it92_b: np.ndarray
    it92_c: np.ndarray
    cell_A_deg: tuple
    space_group: str
    source: str
    structure: object

    @property
    def n_atoms(self) -> int:
        return int(self.xyz_frac.shape[0])

    def reciprocal_metric(self) -> np.ndarray:
        """G* (3x3, 1/A^2) of the cell: 1/d^2 = h G* h^T."""
        return reciprocal_metric(self.cell_A_deg)

    def anomalous_factors(self, wavelength_A: float):
        """(f', f'') per element (E,) at ``wavelength_A`` (Cromer-Liberman, via gemmi)."""
        return anomalous_factors(self.atomic_numbers, wavelength_A)


def reciprocal_metric(cell_A_deg) -> np.ndarray:
    a, b, c, al, be, ga = (float(x) for x in cell_A_deg)
    ca, cb, cg = (np.cos(np.radians(x)) for x in (al, be, ga))
    G = np.array([[a * a, a * b * cg, a * c * cb], [a * b * cg, b * b, b * c * ca], [a * c * cb, b * c * ca, c * c]])
    return np.linalg.inv(G)


def anomalous_factors(atomic_numbers, wavelength_A: float):
    """(f', f'') arrays for atomic numbers at a wavelength (Cromer-Liberman through gemmi)."""
    gemmi = _gemmi()
    energy = HC_EV_A / float(wavelength_A)
    pairs = [gemmi.cromer_liberman(z=int(z), energy=energy) if z > 2 else (0.0, 0.0) for z in atomic_numbers]
    fp = np.array([p[0] for p in pairs], dtype=np.float64)
    fpp = np.array([p[1] for p in pairs], dtype=np.float64)
    return fp, fpp


def model_from_structure(st, source: str = "<structure>") -> AtomicModel:
    """An :class:`AtomicModel` from a gemmi.Structure (the first model)."""
    gemmi = _gemmi()
    if len(st) == 0:
        raise ModelFileError(f"{source}: no models (no atoms) in the file")
    if not st.cell.is_crystal():
        raise ModelFileError(f"{source}: no unit cell (CRYST1 record or _cell) in the file")
    sg = st.find_spacegroup()
    if sg is None:
        what = f" (unknown name {st.spacegroup_hm!r})" if st.spacegroup_hm else ""
        raise ModelFileError(f"{source}: no space group{what} (CRYST1 record or _symmetry/_space_group)")
    try:
        space_group_ops(sg)
    except SymmetryError as exc:
        raise ModelFileError(f"{source}: {exc}") from None
    if any(not op.given for op in st.ncs):
        st.expand_ncs(gemmi.HowToNameCopiedChain.Dup)
    st.setup_cell_images()   # the images gemmi's calculator sums over: the space group's operators
    model = st[0]
    no_aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
    pos, B, occ, names = [], [], [], []
    for chain in model:
        for res in chain:
            for atom in res:
                el = atom.element
                if el.atomic_number == 0:
                    raise ModelFileError(
                        f"{source}: atom {atom.name!r} of {res.name} {chain.name}{res.seqid.num} has an unknown "
                        f"element ({el.name!r}); no form factor for it")
                if atom.aniso.nonzero():
                    atom.aniso = no_aniso   # B_iso only, on both F-calc paths
                p = atom.pos
                pos.append((p.x, p.y, p.z))
                B.append(atom.b_iso)
                occ.append(atom.occ)
                names.append(el.name)
    if not pos:
        raise ModelFileError(f"{source}: no atoms in the first model")
    values = np.column_stack([np.asarray(pos, dtype=np.float64), B, occ])
    bad = np.flatnonzero(~np.all(np.isfinite(values), axis=1))
    if bad.size:
        raise ModelFileError(f"{source}: atom {int(bad[0]) + 1} (in file order) has a coordinate, B-factor or "
                             "occupancy that is not a finite number")
    elements = tuple(sorted(set(names), key=lambda n: gemmi.Element(n).atomic_number))
    index = {n: i for i, n in enumerate(elements)}
    frac = np.asarray(st.cell.frac.mat.tolist(), dtype=np.float64)
    vec = np.asarray(st.cell.frac.vec.tolist(), dtype=np.float64)
    xyz = np.asarray(pos, dtype=np.float64) @ frac.T + vec
    coefs = np.array([gemmi.Element(n).it92.get_coefs() for n in elements], dtype=np.float64)
    cell = st.cell
    return AtomicModel(
        xyz_frac=xyz, B_A2=np.asarray(B, dtype=np.float64), occupancy=np.asarray(occ, dtype=np.float64),
        element_index=np.array([index[n] for n in names], dtype=np.int64), elements=elements,
        atomic_numbers=np.array([gemmi.Element(n).atomic_number for n in elements], dtype=np.int64),
        it92_a=coefs[:, 0:4], it92_b=coefs[:, 4:8], it92_c=coefs[:, 8],
        cell_A_deg=(cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma),
        space_group=sg.hm, source=source, structure=st,
    )


def read_model(path: str | os.PathLike) -> AtomicModel:
    """Read a PDB or mmCIF model (any format gemmi recognises; gzip allowed)."""
    st = _gemmi_read(path, _gemmi().read_structure, ModelFileError, "PDB or mmCIF model")
    return model_from_structure(st, os.fspath(path))
