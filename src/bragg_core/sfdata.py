"""Structure factors for a Crystal from reflection files and atomic models.

Every function returns a :class:`~bragg_core.io.grid.StructureFactorGrid`
expanded to P1, ready for ``Crystal(structure_factors=...)``:

* :func:`structure_factors_from_mtz`, :func:`structure_factors_from_sfcif`,
  :func:`structure_factors_from_hkl`: measured (or deposited) amplitudes,
  expanded with the space group's operators and Friedel mates
  (see :mod:`bragg_core.io.reflections` for the column rules);
* :func:`structure_factors_from_model`: F-calc from a PDB/mmCIF model at a
  wavelength and resolution, on the host with gemmi (the default) or on an
  array backend (``method="backend"``);
* :func:`fcalc`: the backend path from an :class:`~bragg_core.io.models.AtomicModel`,
  whose atomic parameters may be replaced by arrays that carry gradients
  (a torch tensor that requires grad, a JAX array): the grid's ``F`` is then
  an array of that backend and a simulated image is differentiable in them.

F-calc covers every Miller index with ``d >= dmin`` except (0, 0, 0); cells
of the grid's box outside that sphere, and systematic absences, hold 0.
:func:`detector_dmin_A` gives the resolution a detector reaches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._backend import get_context
from .io.grid import StructureFactorGrid
from .io.hkl import read_hkl
from .io.models import AtomicModel, ModelFileError, read_model
from .io.reflections import ReflectionFileError, read_hkl_reflections, read_mtz, read_sfcif
from .io.symmetry import SpaceGroupOps, friedel_orbits, indices_within, space_group_ops
from .physics.fcalc import amplitudes_on_grid, fcalc_amplitudes

__all__ = ["structure_factors_from_mtz", "structure_factors_from_sfcif", "structure_factors_from_hkl",
           "structure_factors_from_model", "fcalc", "fcalc_gemmi", "fcalc_plan", "FcalcPlan", "detector_dmin_A",
           "detector_dmin_for",
           "BulkSolvent", "ReflectionFileError", "ModelFileError", "read_model"]


# ----------------------------------------------------------------------------
# reflection files
# ----------------------------------------------------------------------------


def structure_factors_from_mtz(path, column: str | None = None, default_F: float = 0.0) -> StructureFactorGrid:
    """|F| from an MTZ file, expanded to P1 (``column``: a label, or two for an anomalous pair)."""
    return read_mtz(path, column).to_grid(default_F)


def structure_factors_from_sfcif(path, column: str | None = None, default_F: float = 0.0) -> StructureFactorGrid:
    """|F| from an mmCIF structure-factor file, expanded to P1."""
    return read_sfcif(path, column).to_grid(default_F)


def structure_factors_from_hkl(path, space_group=None, default_F: float = 0.0) -> StructureFactorGrid:
    """|F| from an ``h k l F`` file: as listed (P1, as nanoBragg reads it) or expanded from ``space_group``."""
    if space_group is None:
        return read_hkl(path, default_F)
    return read_hkl_reflections(path, space_group).to_grid(default_F)


# ----------------------------------------------------------------------------
# resolution a detector needs
# ----------------------------------------------------------------------------


def detector_dmin_A(experiment, margin: float = 0.05) -> float:
    """The finest d spacing (Angstrom) the detector of ``experiment`` records; see :func:`detector_dmin_for`."""
    return detector_dmin_for(experiment.detector, experiment.beam, margin)


def detector_dmin_for(detector, beam, margin: float = 0.05) -> float:
    """The finest d spacing (Angstrom) any detector corner records, less a margin.

    ``1/d = |s - s0| / lambda`` at the corner farthest (in scattering angle)
    from the beam, with the shortest wavelength of the beam's spectrum; the
    returned dmin is ``d / (1 + margin)``, so that reflections whose spots
    straddle the edge are included.  On a flat panel the largest angle is at
    a corner (a cone around the beam meets the plane in a convex region).
    """
    from ._backend import Context
    from .geometry.detector import detector_geometry

    xp = get_context(backend="numpy", dtype="float64").xp
    g = Context(xp=xp, device="cpu", dtype=xp.float64)
    det = detector_geometry(detector, g)
    pix0, f, s = (np.asarray(v, dtype=np.float64) for v in (det.pix0_m, det.fdet, det.sdet))
    px = float(det.pixel_size_m)
    nf, ns = detector.fpixels, detector.spixels
    corners = np.array([pix0 + i * nf * px * f + j * ns * px * s for i in (0, 1) for j in (0, 1)])
    s0 = np.asarray(det.beam, dtype=np.float64)
    s0 = s0 / np.linalg.norm(s0)
    out = corners / np.linalg.norm(corners, axis=1, keepdims=True)
    q = float(np.max(np.linalg.norm(out - s0, axis=1)))
    b = beam
    if b.source_wavelengths_A is not None:
        lam = float(np.min(np.asarray(b.source_wavelengths_A, dtype=np.float64)))
    else:
        lam = float(b.wavelength_A) * (1.0 - float(b.dispersion_percent) / 200.0)
    if q <= 0:
        raise ValueError("the detector records no scattering angle: cannot choose a resolution")
    return lam / q / (1.0 + margin)


# ----------------------------------------------------------------------------
# F-calc: the host plan shared by both paths
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkSolvent:
    """Flat bulk solvent: ``F = F_atoms + k_sol exp(-B_sol s^2) F_mask``.

    ``F_mask`` is the Fourier transform of the solvent region (1 outside the
    atoms' radii, probe 1.0 A, shrink 1.1 A: gemmi's SolventMasker with the
    Refmac radii), computed once on the host; ``k_sol`` (electrons/A^3) and
    ``B_sol`` (A^2) may be arrays that carry gradients on the backend path;
    the mask itself does not follow the atoms.
    """

    k_sol: Any = 0.35
    B_sol_A2: Any = 46.0


@dataclass(frozen=True)
class FcalcPlan:
    """Host-side bookkeeping of one F-calc: which reflections, where they go in the grid.

    ``hkl`` (M, 3): one index per orbit of the space group and Friedel's
    inversion, systematic absences left out; F-calc gives ``F(h)`` and
    ``F(-h)`` for each.  ``index`` (prod(shape),) maps each grid cell to
    ``i`` (``F(hkl[i])``), ``M + i`` (``F(-hkl[i])``) or ``2 M`` (zero).
    """

    hkl: np.ndarray
    stol2: np.ndarray
    index: np.ndarray
    shape: tuple
    lower: tuple
    ops: SpaceGroupOps
    dmin_A: float


def fcalc_plan(model: AtomicModel, dmin_A: float) -> FcalcPlan:
    """The reflections to compute and how they fill a P1 grid, for ``model`` to ``dmin_A``."""
    if not dmin_A > 0:
        raise ValueError(f"dmin_A must be positive, got {dmin_A!r}")
    ops = space_group_ops(model.space_group)
    G = model.reciprocal_metric()
    p1 = indices_within(G, dmin_A)
    if p1.shape[0] == 0:
        raise ValueError(f"{model.source}: no reflection with d >= {dmin_A:g} A in this cell")
    orb = friedel_orbits(p1, ops)
    absent = ops.systematically_absent(orb.unique)
    keep = ~absent
    renum = np.cumsum(keep) - 1
    hkl = orb.unique[keep]
    M = hkl.shape[0]
    lo = p1.min(axis=0)
    shape = tuple(int(n) for n in p1.max(axis=0) - lo + 1)
    rel = p1 - lo
    flat = (rel[:, 0] * shape[1] + rel[:, 1]) * shape[2] + rel[:, 2]
    index = np.full(math.prod(shape), 2 * M, dtype=np.int64)
    cell_keep = keep[orb.orbit]
    index[flat[cell_keep]] = renum[orb.orbit[cell_keep]] + M * orb.minus[cell_keep]
    hf = hkl.astype(np.float64)
    stol2 = np.einsum("ni,ij,nj->n", hf, G, hf) / 4.0
    return FcalcPlan(hkl=hkl, stol2=stol2, index=index, shape=shape, lower=tuple(int(x) for x in lo), ops=ops,
                     dmin_A=float(dmin_A))


def _solvent_mask_F(model: AtomicModel, plan: FcalcPlan):
    """(re, im) of the solvent mask's structure factor at ``plan.hkl`` (host, float64)."""
    import gemmi

    st = model.structure
    grid = gemmi.FloatGrid()
    grid.setup_from(st, spacing=min(0.8, plan.dmin_A / 3.0))
    masker = gemmi.SolventMasker(gemmi.AtomicRadiiSet.Refmac)
    masker.put_mask_on_float_grid(grid, st[0])
    fphi = gemmi.transform_map_to_f_phi(grid, half_l=False)
    arr = np.asarray(fphi.array)
    n = np.array(arr.shape)
    h = plan.hkl % n
    v = arr[h[:, 0], h[:, 1], h[:, 2]].astype(np.complex128)
    return v.real.copy(), v.imag.copy()


def _check_wavelength(wavelength_A):
    if not (isinstance(wavelength_A, (int, float)) and wavelength_A > 0):
        raise ValueError(f"wavelength_A must be a positive number, got {wavelength_A!r}")


# ----------------------------------------------------------------------------
# F-calc on the backend
# ----------------------------------------------------------------------------


def fcalc(model: AtomicModel, wavelength_A: float, dmin_A: float, *, xyz_frac=None, B_A2=None, occupancy=None,
          fprime=None, fdoubleprime=None, anomalous: bool = True, bulk_solvent: BulkSolvent | None = None,
          plan: FcalcPlan | None = None, backend: str | None = None, device: Any = None, dtype: Any = None,
          memory_budget_bytes: int | None = None) -> StructureFactorGrid:
    """|F| of ``model`` on a P1 grid by direct summation on an array backend.

    Atomic parameters default to the model's; any of them (``xyz_frac``
    (A, 3), ``B_A2`` (A,), ``occupancy`` (A,), ``fprime``/``fdoubleprime``
    (E,) per element of ``model.elements``) may be given as backend arrays,
    and the grid's ``F`` is then an array of that backend, differentiable in
    them.  ``f'``/``f''`` default to Cromer-Liberman values at
    ``wavelength_A`` (zero with ``anomalous=False``).  ``plan`` reuses the
    host bookkeeping of an earlier call (same model and dmin).
    """
    _check_wavelength(wavelength_A)
    plan = fcalc_plan(model, dmin_A) if plan is None else plan
    if fprime is None or fdoubleprime is None:
        fp0, fpp0 = model.anomalous_factors(wavelength_A) if anomalous else (np.zeros(len(model.elements)),) * 2
        fprime = fp0 if fprime is None else fprime
        fdoubleprime = fpp0 if fdoubleprime is None else fdoubleprime
    x = model.xyz_frac if xyz_frac is None else xyz_frac
    B = model.B_A2 if B_A2 is None else B_A2
    q = model.occupancy if occupancy is None else occupancy
    solvent_arrays = () if bulk_solvent is None else (bulk_solvent.k_sol, bulk_solvent.B_sol_A2)
    given = [v for v in (x, B, q, fprime, fdoubleprime, *solvent_arrays) if not isinstance(v, np.ndarray)]
    ctx = get_context(*given, backend=backend, device=device, dtype=dtype)   # host tables follow the caller
    A = ctx.asarray
    solvent = None
    if bulk_solvent is not None:
        m_re, m_im = _solvent_mask_F(model, plan)
        solvent = (A(bulk_solvent.k_sol), A(bulk_solvent.B_sol_A2), m_re, m_im)
    Fp, Fm = fcalc_amplitudes(A(x), A(B), A(q), A(fprime), A(fdoubleprime), element_index=model.element_index,
                              it92_a=model.it92_a, it92_b=model.it92_b, it92_c=model.it92_c,
                              rot=plan.ops.rot.astype(np.float64), tran=plan.ops.tran, hkl=plan.hkl.astype(np.float64),
                              stol2=plan.stol2, solvent=solvent, memory_budget_bytes=memory_budget_bytes)
    F = amplitudes_on_grid(Fp, Fm, plan.index, plan.shape)
    return StructureFactorGrid(F, *plan.lower)


# ----------------------------------------------------------------------------
# F-calc on the host with gemmi
# ----------------------------------------------------------------------------


def fcalc_gemmi_complex(model: AtomicModel, wavelength_A: float, plan: FcalcPlan, *, anomalous: bool = True,
                        bulk_solvent: BulkSolvent | None = None):
    """Complex ``(F(h), F(-h))`` at ``plan.hkl`` from gemmi's direct-summation calculator.

    gemmi sums over the atoms and the cell's symmetry images, one element at
    a time: ``F_e(h) = (f0_e + f'_e) G_e(h)`` with ``G_e`` the sum of
    ``q exp(-B s^2) exp(2 pi i h.x)`` over the atoms of element ``e``.  gemmi
    evaluates ``f0_e + f'_e`` in single precision and has no ``f''``; both
    are put right per element from ``G_e = F_e / (f0_e + f'_e)`` (the
    divisor as gemmi formed it):
    ``F(h) = sum_e (f0_e + f'_e + i f''_e) G_e(h)`` with ``f0_e`` in double
    precision, and ``F(-h) = sum_e (f0_e + f'_e + i f''_e) conj(G_e(h))``.
    """
    import gemmi

    st = model.structure
    n_el = len(model.elements)
    fp, fpp = model.anomalous_factors(wavelength_A) if anomalous else (np.zeros(n_el), np.zeros(n_el))
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    add = gemmi.Addends()
    for name, v in zip(model.elements, fp):
        add.set(gemmi.Element(name), float(v))
    calc.addends = add
    hkl = [list(map(int, h)) for h in plan.hkl]
    stol2 = np.array([st.cell.calculate_1_d2(h) / 4.0 for h in hkl])      # as gemmi computes it
    f0 = model.it92_c[None, :] + np.sum(model.it92_a[None] * np.exp(-model.it92_b[None] * plan.stol2[:, None, None]),
                                        axis=-1)                          # (M, E), double precision
    Fp = np.zeros(len(hkl), dtype=np.complex128)
    Fm = np.zeros(len(hkl), dtype=np.complex128)
    for e, name in enumerate(model.elements):
        sub = gemmi.Selection(f"[{name}]").copy_model_selection(st[0])
        Fe = np.array([calc.calculate_sf_from_model(sub, h) for h in hkl], dtype=np.complex128)
        coef = gemmi.Element(name).it92
        f_single = np.array([np.float32(coef.calculate_sf(float(s))) + np.float32(add.get(gemmi.Element(name)))
                             for s in stol2], dtype=np.float32).astype(np.float64)
        G = Fe / f_single
        f = f0[:, e] + fp[e] + 1j * fpp[e]
        Fp += f * G
        Fm += f * np.conj(G)
    if bulk_solvent is not None:
        m_re, m_im = _solvent_mask_F(model, plan)
        scale = float(bulk_solvent.k_sol) * np.exp(-float(bulk_solvent.B_sol_A2) * plan.stol2)
        Fp += scale * (m_re + 1j * m_im)
        Fm += scale * (m_re - 1j * m_im)
    return Fp, Fm


def fcalc_gemmi(model: AtomicModel, wavelength_A: float, dmin_A: float, *, anomalous: bool = True,
                bulk_solvent: BulkSolvent | None = None, plan: FcalcPlan | None = None) -> StructureFactorGrid:
    """|F| of ``model`` on a P1 grid, computed on the host by gemmi (NumPy float64 grid)."""
    _check_wavelength(wavelength_A)
    plan = fcalc_plan(model, dmin_A) if plan is None else plan
    Fp, Fm = fcalc_gemmi_complex(model, wavelength_A, plan, anomalous=anomalous, bulk_solvent=bulk_solvent)
    vals = np.concatenate([np.abs(Fp), np.abs(Fm), [0.0]])
    return StructureFactorGrid(vals[plan.index].reshape(plan.shape), *plan.lower)


def structure_factors_from_model(path_or_model, wavelength_A: float, dmin_A: float, *, method: str = "gemmi",
                                 anomalous: bool = True, bulk_solvent: BulkSolvent | None = None,
                                 **backend_kwargs) -> StructureFactorGrid:
    """F-calc of a PDB/mmCIF model (a path or an AtomicModel) at ``wavelength_A`` to ``dmin_A``.

    ``method="gemmi"`` (default) computes on the host; ``"backend"`` calls
    :func:`fcalc` (``backend_kwargs`` go to it: backend, device, dtype...).
    """
    model = path_or_model if isinstance(path_or_model, AtomicModel) else read_model(path_or_model)
    if method == "gemmi":
        if backend_kwargs:
            raise TypeError(f"method='gemmi' takes no {', '.join(backend_kwargs)}")
        return fcalc_gemmi(model, wavelength_A, dmin_A, anomalous=anomalous, bulk_solvent=bulk_solvent)
    if method == "backend":
        return fcalc(model, wavelength_A, dmin_A, anomalous=anomalous, bulk_solvent=bulk_solvent, **backend_kwargs)
    raise ValueError(f"method must be 'gemmi' or 'backend', got {method!r}")
