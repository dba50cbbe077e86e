"""F-calc from atoms: gemmi's host path, the array-API path, and gradients to the atoms.

Agreement measures.  gemmi keeps occupancies, B-factors and form-factor
coefficients in single precision and evaluates the Debye-Waller and IT92
exponentials in it, so each atom's term carries a relative error of about
1e-8 (the host path recomputes f0 + f' + i f'' in double precision per
element; see ``sfdata.fcalc_gemmi_complex``).  Summed over atoms, that is an
absolute error of about 1e-7 of a typical |F|, which is a larger fraction of
the weak reflections that cancellation makes.  The check is therefore
``|F_a - F_b| <= 1e-6 max(|F_b|, rms |F|)`` for every reflection: 1e-6
relative for reflections at or above the rms, 1e-6 of the rms below it
(measured: at most 9e-8 of the rms).  The backend path and the analytic sum
below are both double precision throughout and agree to 1e-12.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

gemmi = pytest.importorskip("gemmi")

from bragg_core import sfdata  # noqa: E402
from bragg_core.cli.main import main  # noqa: E402
from bragg_core.experiment import Beam, Crystal, Detector, Experiment  # noqa: E402
from bragg_core.io.models import ModelFileError, model_from_structure, read_model  # noqa: E402
from bragg_core.simulate import simulate  # noqa: E402


def pdb_text(cell, sg, atoms):
    """A PDB file: CRYST1 and one ATOM/HETATM line per (element, x, y, z, occ, B)."""
    lines = [f"CRYST1{cell[0]:9.3f}{cell[1]:9.3f}{cell[2]:9.3f}{cell[3]:7.2f}{cell[4]:7.2f}{cell[5]:7.2f} {sg:<11s}"]
    for i, (el, x, y, z, occ, B) in enumerate(atoms):
        name = f" {el:<3s}" if len(el) == 1 else f"{el:<4s}"
        lines.append("HETATM%5d %-4s LIG A%4d    %8.3f%8.3f%8.3f%6.2f%6.2f          %2s"
                     % (i + 1, name, i // 10 + 1, x, y, z, occ, B, el.upper()))
    return "\n".join(lines) + "\nEND\n"


def protein_like(n_atoms, cell, sg, seed=0, heavy=("FE", "SE")):
    """Random C/N/O/S atoms filling the cell, plus a few anomalous scatterers."""
    rng = np.random.default_rng(seed)
    els = list(rng.choice(["C", "N", "O", "S"], size=n_atoms - len(heavy), p=[0.62, 0.17, 0.19, 0.02])) + list(heavy)
    atoms = []
    for el in els:
        x, y, z = rng.uniform(0.0, 1.0, 3) * np.array(cell[:3])
        atoms.append((el, x, y, z, round(float(rng.uniform(0.5, 1.0)), 2), round(float(rng.uniform(8.0, 40.0)), 2)))
    return pdb_text(cell, sg, atoms)


def model_of(text, name="model.pdb"):
    return model_from_structure(gemmi.read_structure_string(text), name)


def at(grid, hkl):
    """Grid values at (N, 3) indices."""
    F = np.asarray(grid.F)
    i = np.asarray(hkl) - np.array([grid.h_min, grid.k_min, grid.l_min])
    return F[i[:, 0], i[:, 1], i[:, 2]]


def assert_agree(F, ref, rel=1e-6):
    """|F - ref| <= rel * max(|ref|, rms |ref|) for every reflection."""
    F, ref = np.asarray(F, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    rms = math.sqrt(float(np.mean(ref * ref)))
    err = np.abs(F - ref) / np.maximum(ref, rms)
    assert np.all(err <= rel), float(np.max(err))


# ----------------------------------------------------------------------------
# gemmi path == backend path on a protein-like model
# ----------------------------------------------------------------------------

CELL = (31.0, 37.0, 43.0, 90.0, 90.0, 90.0)


@pytest.fixture(scope="module")
def protein():
    return model_of(protein_like(300, CELL, "P 21 21 21"))


def test_gemmi_and_backend_agree_on_a_protein_like_model(protein):
    lam, dmin = 1.74, 2.5   # near the Fe K edge: f'' of Fe is about 3.9 e
    plan = sfdata.fcalc_plan(protein, dmin)
    assert plan.hkl.shape[0] > 1000 and protein.n_atoms == 300
    host = sfdata.fcalc_gemmi(protein, lam, dmin, plan=plan)
    dev = sfdata.fcalc(protein, lam, dmin, plan=plan, memory_budget_bytes=2**20)   # many tiles
    p1 = np.argwhere(np.asarray(host.F) > 0) + np.array(plan.lower)
    assert p1.shape[0] > 6 * plan.hkl.shape[0]   # up to 8 P1 indices per orbit (4 rotations, 2 hands)
    assert_agree(at(dev, p1), at(host, p1))
    # the anomalous signal is there: Friedel mates differ, by about what f'' of the heavy atoms gives
    diff = np.abs(at(host, plan.hkl) - at(host, -plan.hkl))
    assert 0.5 < float(np.max(diff)) < 60.0
    assert_agree(at(dev, plan.hkl) - at(dev, -plan.hkl) + 1000.0, diff * np.sign(
        at(host, plan.hkl) - at(host, -plan.hkl)) + 1000.0)


def test_grid_symmetry_and_absences(protein):
    grid = sfdata.fcalc(protein, 1.0, 3.0)
    ops = gemmi.SpaceGroup("P 21 21 21").operations()
    hkl = np.argwhere(np.ones(np.asarray(grid.F).shape, dtype=bool)) + np.array([grid.h_min, grid.k_min, grid.l_min])
    F = at(grid, hkl)
    G = protein.reciprocal_metric()
    inside = np.einsum("ni,ij,nj->n", hkl, G, hkl) <= 1 / 9.0
    for h, f, ok in zip(hkl[::7], F[::7], inside[::7]):
        h = list(map(int, h))
        if not ok or h == [0, 0, 0] or ops.is_systematically_absent(h):
            assert f == 0.0
            continue
        for op in ops.sym_ops:
            assert at(grid, np.array([op.apply_to_hkl(h)]))[0] == f


def test_tiles_do_not_change_the_result(protein):
    plan = sfdata.fcalc_plan(protein, 4.0)
    a = np.asarray(sfdata.fcalc(protein, 1.0, 4.0, plan=plan).F)
    b = np.asarray(sfdata.fcalc(protein, 1.0, 4.0, plan=plan, memory_budget_bytes=50_000).F)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)


def test_backends_agree(backend, protein):
    ctx = backend.context("float64")
    plan = sfdata.fcalc_plan(protein, 5.0)
    ref = np.asarray(sfdata.fcalc(protein, 1.3, 5.0, plan=plan).F)
    got = sfdata.fcalc(protein, 1.3, 5.0, plan=plan, backend=backend.name, device=ctx.device, dtype="float64").F
    from bragg_core._backend import to_numpy

    assert type(got).__module__.split(".")[0] in {"numpy", "torch", "jax", "jaxlib", "array_api_strict", "cupy", "dask"}
    np.testing.assert_allclose(np.asarray(to_numpy(got)), ref, rtol=1e-12, atol=1e-9)


# ----------------------------------------------------------------------------
# both paths against an analytic sum for three atoms
# ----------------------------------------------------------------------------

# IT92 four-Gaussian coefficients (International Tables Vol. C, Table 6.1.1.4): a1..a4, b1..b4, c
IT92 = {
    "C": (2.31, 1.02, 1.5886, 0.865, 20.8439, 10.2075, 0.5687, 51.6512, 0.2156),
    "O": (3.0485, 2.2868, 1.5463, 0.867, 13.2771, 5.7011, 0.3239, 32.9089, 0.2508),
    "Fe": (11.7695, 7.3573, 3.5222, 2.3045, 4.7611, 0.3072, 15.3535, 76.8805, 1.0369),
}
A, B_, C_, BETA = 23.0, 27.0, 31.0, 104.0
THREE = [("C", 3.0, 4.0, 5.0, 1.0, 12.0), ("O", 6.5, 2.0, 9.0, 0.7, 20.0), ("Fe", 11.0, 13.0, 7.0, 1.0, 25.0)]
Z = {"C": 6, "O": 8, "Fe": 26}


def analytic(hkl, lam):
    """F(h) for THREE in P 1 21 1 (x,y,z and -x,y+1/2,-z), written out from the definitions."""
    cb, sb = math.cos(math.radians(BETA)), math.sin(math.radians(BETA))
    out = []
    for h, k, l in hkl:
        inv_d2 = (h * h / A**2 + l * l / C_**2 - 2 * h * l * cb / (A * C_)) / sb**2 + k * k / B_**2
        s2 = inv_d2 / 4.0
        F = 0j
        for el, x, y, z, occ, B in THREE:
            # PDB orthogonal -> fractional for alpha = gamma = 90
            fx, fy, fz = x / A - z * cb / (A * sb), y / B_, z / (C_ * sb)
            coef = np.float32(IT92[el]).astype(np.float64)   # the table as stored, in single precision
            f0 = coef[8] + sum(coef[i] * math.exp(-coef[4 + i] * s2) for i in range(4))
            fp, fpp = gemmi.cromer_liberman(z=Z[el], energy=12398.419843320026 / lam)
            occ, B = float(np.float32(occ)), float(np.float32(B))   # a model file's values, as gemmi stores them
            f = (f0 + fp + 1j * fpp) * occ * math.exp(-B * s2)
            for (rx, ry, rz), (tx, ty, tz) in (((fx, fy, fz), (0, 0, 0)), ((-fx, fy, -fz), (0, 0.5, 0))):
                F += f * complex(math.cos(2 * math.pi * (h * (rx + tx) + k * (ry + ty) + l * (rz + tz))),
                                 math.sin(2 * math.pi * (h * (rx + tx) + k * (ry + ty) + l * (rz + tz))))
        out.append(abs(F))
    return np.array(out)


def test_three_atoms_against_the_analytic_sum():
    for el, coef in IT92.items():   # the typed table is gemmi's
        np.testing.assert_array_equal(np.float32(coef), np.float32(gemmi.Element(el).it92.get_coefs()))
    model = model_of(pdb_text((A, B_, C_, 90.0, BETA, 90.0), "P 1 21 1", THREE), "three.pdb")
    lam, dmin = 1.7, 2.0
    plan = sfdata.fcalc_plan(model, dmin)
    hkl = np.concatenate([plan.hkl, -plan.hkl])
    ref = analytic(hkl, lam)
    dev = at(sfdata.fcalc(model, lam, dmin, plan=plan), hkl)
    host = at(sfdata.fcalc_gemmi(model, lam, dmin, plan=plan), hkl)
    np.testing.assert_allclose(dev, ref, rtol=1e-12, atol=1e-12 * float(ref.max()))
    assert_agree(host, ref)
    assert float(np.max(np.abs(ref[: len(plan.hkl)] - ref[len(plan.hkl):]))) > 1.0   # Friedel pairs differ


# ----------------------------------------------------------------------------
# gradients from image pixels to atoms
# ----------------------------------------------------------------------------

FEW = [("C", 10.0, 20.0, 30.0, 1.0, 15.0), ("O", 40.0, 15.0, 70.0, 0.8, 22.0), ("Fe", 62.0, 55.0, 12.0, 0.9, 30.0)]
GEOM = dict(detector=Detector(fpixels=10, spixels=10, pixel_size_mm=0.1, distance_mm=100.0,
                              beam_center_mm=(-1.5, -2.0), oversample=1),
            beam=Beam(wavelength_A=1.0))
XCELL = (100.0, 102.0, 98.0, 90.0, 90.0, 90.0)


@pytest.fixture(scope="module")
def few():
    return model_of(pdb_text(XCELL, "P 21 21 21", FEW), "few.pdb")


def image_of(model, plan, backend="torch", **params):
    grid = sfdata.fcalc(model, 1.0, plan.dmin_A, plan=plan, backend=backend, dtype="float64", **params)
    cr = Crystal(cell_A_deg=XCELL, misset_deg=(5.0, 3.0, 2.0), N_cells=(5, 5, 5), structure_factors=grid)
    return simulate(Experiment(crystal=cr, **GEOM), backend=backend, dtype="float64").image


def test_gradcheck_image_wrt_atoms(few):
    torch = pytest.importorskip("torch")
    from torch.autograd import gradcheck

    plan = sfdata.fcalc_plan(few, sfdata.detector_dmin_A(Experiment(crystal=Crystal(cell_A_deg=XCELL), **GEOM)))
    t = lambda v: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True)  # noqa: E731
    with torch.no_grad():
        img = image_of(few, plan)
    scale = float(img.max())
    assert scale > 0 and int((img > 0.05 * scale).sum()) > 5

    def fn(xyz, B, occ, fp, fpp):
        return image_of(few, plan, xyz_frac=xyz, B_A2=B, occupancy=occ, fprime=fp, fdoubleprime=fpp) / scale

    fp, fpp = few.anomalous_factors(1.0)
    inputs = (t(few.xyz_frac), t(few.B_A2), t(few.occupancy), t(fp), t(fpp))
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-6, fast_mode=False)
    # every group reaches the image
    out = fn(*inputs).sum()
    grads = torch.autograd.grad(out, inputs)
    for g in grads:
        assert float(g.abs().max()) > 0


def _torch_and_jax_gradients(few, loss):
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    fp, fpp = few.anomalous_factors(1.0)
    ins = [few.xyz_frac, few.B_A2, few.occupancy, fp, fpp]
    tt = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in ins]
    g_t = torch.autograd.grad(loss("torch", *tt), tt)
    g_j = jax.jit(jax.grad(lambda *a: loss("jax", *a), argnums=tuple(range(len(ins)))))(*[jnp.asarray(v) for v in ins])
    for a, b in zip(g_t, g_j):
        a, b = a.numpy(), np.asarray(b)
        assert np.max(np.abs(a)) > 0
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12 * np.max(np.abs(a)))


def test_torch_and_jax_gradients_of_F_agree(few):
    plan = sfdata.fcalc_plan(few, 8.0)
    w = np.random.default_rng(5).uniform(0.0, 1.0, plan.shape)

    def loss(backend, xyz, B, occ, fp, fpp):
        F = sfdata.fcalc(few, 1.0, 8.0, plan=plan, backend=backend, dtype="float64", xyz_frac=xyz, B_A2=B,
                         occupancy=occ, fprime=fp, fdoubleprime=fpp).F
        from bragg_core._backend import get_context

        return (F * get_context(F).asarray(w)).sum()

    _torch_and_jax_gradients(few, loss)


@pytest.mark.slow   # XLA compiles the whole image pipeline under jax.jit (about 7 s on two cores)
def test_torch_and_jax_image_gradients_agree(few):
    plan = sfdata.fcalc_plan(few, 8.0)

    def loss(backend, xyz, B, occ, fp, fpp):
        return image_of(few, plan, backend=backend, xyz_frac=xyz, B_A2=B, occupancy=occ, fprime=fp,
                        fdoubleprime=fpp).sum()

    _torch_and_jax_gradients(few, loss)


def test_bulk_solvent_paths_agree_and_differentiate(protein):
    torch = pytest.importorskip("torch")
    plan = sfdata.fcalc_plan(protein, 4.0)
    bs = sfdata.BulkSolvent(k_sol=0.35, B_sol_A2=46.0)
    host = at(sfdata.fcalc_gemmi(protein, 1.0, 4.0, plan=plan, bulk_solvent=bs), plan.hkl)
    plain = at(sfdata.fcalc_gemmi(protein, 1.0, 4.0, plan=plan), plan.hkl)
    dev = at(sfdata.fcalc(protein, 1.0, 4.0, plan=plan, bulk_solvent=bs), plan.hkl)
    assert_agree(dev, host)
    assert float(np.max(np.abs(host - plain) / plain)) > 0.05   # the solvent term matters at low resolution
    k = torch.tensor(0.35, dtype=torch.float64, requires_grad=True)
    grid = sfdata.fcalc(protein, 1.0, 4.0, plan=plan, bulk_solvent=sfdata.BulkSolvent(k_sol=k, B_sol_A2=46.0),
                        backend="torch")
    (g,) = torch.autograd.grad(grid.F.sum(), [k])
    assert float(g.abs()) > 0


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------


def test_model_without_cell(tmp_path):
    path = tmp_path / "nocell.pdb"
    path.write_text("ATOM      1  C   ALA A   1       3.000   4.000   5.000  1.00 12.00           C\nEND\n")
    with pytest.raises(ModelFileError, match=f"{path}: no unit cell"):
        read_model(path)


def test_model_without_space_group(tmp_path):
    path = tmp_path / "nosg.cif"
    st = gemmi.read_structure_string(pdb_text(XCELL, "P 21 21 21", FEW))
    st.spacegroup_hm = ""
    doc = st.make_mmcif_document()
    for b in doc:
        for tag in ("_symmetry.space_group_name_H-M", "_space_group.name_H-M_alt", "_symmetry.Int_Tables_number",
                    "_space_group.IT_number", "_space_group.name_Hall"):
            b.set_pair(tag, "?")
    doc.write_file(str(path))
    with pytest.raises(ModelFileError, match=f"{path}: no space group"):
        read_model(path)


def test_unknown_element(tmp_path):
    path = tmp_path / "xx.pdb"
    text = pdb_text(XCELL, "P 21 21 21", FEW).replace("          FE", "          XX")
    path.write_text(text)
    with pytest.raises(ModelFileError) as info:
        read_model(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and "unknown element" in str(info.value)


def test_cli_model_errors_exit_2_and_write_nothing(tmp_path, capsys, monkeypatch):
    (tmp_path / "xx.pdb").write_text(pdb_text(XCELL, "P 21 21 21", FEW).replace("          FE", "          XX"))
    atom = "ATOM      1  C   ALA A   1       3.000   4.000   5.000  1.00 12.00           C\n"
    (tmp_path / "nocell.pdb").write_text(atom)
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    for name, what in (("xx.pdb", "unknown element"), ("nocell.pdb", "no unit cell"), ("none.pdb", "cannot read")):
        assert main(["-model", name, "-cell", *map(str, XCELL), "-N", "2", "-detpixels", "8", "-noprogress"]) == 2
        err = capsys.readouterr().err
        assert "-model" in err and name in err and what in err, err
    assert set(tmp_path.iterdir()) == before


def test_cli_model_renders(tmp_path, monkeypatch):
    (tmp_path / "few.pdb").write_text(pdb_text(XCELL, "P 21 21 21", FEW))
    monkeypatch.chdir(tmp_path)
    assert main(["-model", "few.pdb", "-N", "5", "-detpixels", "48", "-distance", "50", "-misset", "5", "3", "2",
                 "-noprogress", "-floatfile", "f.bin", "-nopgm", "-nonoise", "-bulk_solvent", "0.35", "46"]) == 0
    img = np.fromfile(tmp_path / "f.bin", dtype=np.float32)
    assert img.size == 48 * 48 and img.max() > 0


def test_detector_dmin_is_the_finest_pixel_resolution():
    """The corner rule against every pixel of a rotated, off-centre detector (brute force)."""
    from bragg_core._backend import get_context
    from bragg_core.geometry.detector import detector_geometry

    det = Detector(fpixels=40, spixels=30, pixel_size_mm=0.5, distance_mm=70.0, beam_center_mm=(3.0, 12.0),
                   rotation_deg=(4.0, -7.0, 2.0), twotheta_deg=10.0)
    exp = Experiment(beam=Beam(wavelength_A=1.2, dispersion_percent=2.0), detector=det,
                     crystal=Crystal(cell_A_deg=XCELL))
    g = get_context(backend="numpy", dtype="float64")
    geo = detector_geometry(det, g)
    f, s = np.meshgrid(np.arange(41), np.arange(31), indexing="ij")   # pixel corners
    pos = (np.asarray(geo.pix0_m) + f[..., None] * 0.5e-3 * np.asarray(geo.fdet)
           + s[..., None] * 0.5e-3 * np.asarray(geo.sdet))
    out = pos / np.linalg.norm(pos, axis=-1, keepdims=True)
    s0 = np.asarray(geo.beam) / np.linalg.norm(np.asarray(geo.beam))
    d_best = 1.2 * (1 - 0.01) / np.max(np.linalg.norm(out - s0, axis=-1))
    assert sfdata.detector_dmin_A(exp) == pytest.approx(d_best / 1.05, rel=1e-12)
    assert sfdata.detector_dmin_A(exp, margin=0.0) == pytest.approx(d_best, rel=1e-12)


def test_anisou_records_are_ignored_on_both_paths():
    """B_iso only: a model with ANISOU records gives the same F on the gemmi and backend paths."""
    text = pdb_text(XCELL, "P 21 21 21", FEW)
    lines = text.splitlines()
    out = []
    for line in lines:
        out.append(line)
        if line.startswith("HETATM"):
            out.append("ANISOU" + line[6:27] + " 3000   1500   2000    200   -300    100      " + line[76:78])
    st = gemmi.read_structure_string("\n".join(out) + "\n")
    assert any(a.aniso.nonzero() for r in st[0]["A"] for a in r)
    model = model_from_structure(st, "aniso.pdb")
    plan = sfdata.fcalc_plan(model, 6.0)
    host = at(sfdata.fcalc_gemmi(model, 1.0, 6.0, plan=plan), plan.hkl)
    dev = at(sfdata.fcalc(model, 1.0, 6.0, plan=plan), plan.hkl)
    assert_agree(dev, host)


def test_float32_stays_float32_and_close(protein):
    torch = pytest.importorskip("torch")
    plan = sfdata.fcalc_plan(protein, 2.5)
    ref = np.asarray(sfdata.fcalc(protein, 1.0, 2.5, plan=plan).F)
    F = sfdata.fcalc(protein, 1.0, 2.5, plan=plan, backend="torch", dtype="float32").F
    assert F.dtype == torch.float32
    # phases 2 pi h.x of up to ~100 rad formed in float32: errors of ~1e-5 of a typical |F|
    assert float(np.max(np.abs(F.numpy() - ref))) <= 1e-4 * math.sqrt(float(np.mean(ref * ref)))


def test_friedel_mates_equal_without_anomalous_scattering(protein):
    plan = sfdata.fcalc_plan(protein, 3.0)
    plain = sfdata.fcalc(protein, 1.74, 3.0, plan=plan, anomalous=False)
    anom = sfdata.fcalc(protein, 1.74, 3.0, plan=plan)
    d_plain = at(plain, plan.hkl) - at(plain, -plan.hkl)
    d_anom = at(anom, plan.hkl) - at(anom, -plan.hkl)
    assert float(np.max(np.abs(d_plain))) <= 1e-9 * float(np.max(at(plain, plan.hkl)))
    assert float(np.max(np.abs(d_anom))) > 0.5
