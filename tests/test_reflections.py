"""Reflection files (MTZ, mmCIF, HKL) expanded to P1.

* Symmetry: for P4_3 2_1 2 and P2_1 2_1 2_1, every filled index of the grid
  holds the amplitude of the unique reflection gemmi's reciprocal ASU maps it
  to, and every equivalent of a listed reflection is filled.
* Friedel: mates are equal without anomalous data, and carry F(+) / F(-) as
  given with it (gemmi's ISYM parity tells the hand).
* An image from an MTZ equals, bit for bit, the image from an HKL file the
  test expands with its own table of the 422 equivalents.
* Column choice, intensities -> amplitudes, mmCIF files, bad input: errors
  name the file and what is missing; the CLI exits 2 and writes nothing.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

gemmi = pytest.importorskip("gemmi")

from bragg_core import sfdata  # noqa: E402
from bragg_core.cli.main import main  # noqa: E402
from bragg_core.experiment import Beam, Crystal, Detector, Experiment  # noqa: E402
from bragg_core.io import read_hkl  # noqa: E402
from bragg_core.io.reflections import ReflectionFileError, read_mtz, read_sfcif  # noqa: E402
from bragg_core.simulate import simulate  # noqa: E402

SENTINEL = -1.0   # default_F that no amplitude equals: marks unfilled cells


def unique_reflections(sg_name, cell, hmax, seed=0):
    """Indices of gemmi's reciprocal ASU (no systematic absences, no 000) with random amplitudes."""
    sg = gemmi.SpaceGroup(sg_name)
    ops, asu = sg.operations(), gemmi.ReciprocalAsu(sg)
    r = np.arange(-hmax, hmax + 1)
    hkl = np.array([(h, k, l) for h in r for k in r for l in r if (h, k, l) != (0, 0, 0)])
    keep = [asu.is_in(list(map(int, h))) and not ops.is_systematically_absent(list(map(int, h))) for h in hkl]
    hkl = hkl[np.array(keep)]
    rng = np.random.default_rng(seed)
    Fp, Fm = rng.uniform(10.0, 1000.0, len(hkl)), rng.uniform(10.0, 1000.0, len(hkl))
    centric = np.array([ops.is_reflection_centric(list(map(int, h))) for h in hkl])
    Fm[centric] = Fp[centric]   # a centric reflection is its own Friedel mate
    return hkl, Fp, Fm


def write_mtz(path, sg_name, cell, hkl, columns):
    """An MTZ with H K L and ``columns``: list of (label, type, values)."""
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(sg_name)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.add_dataset("sim")
    for label, typ, _ in columns:
        mtz.add_column(label, typ)
    data = np.column_stack([hkl.astype(np.float32)] + [np.asarray(v, dtype=np.float32) for _, _, v in columns])
    mtz.set_data(data)
    mtz.write_to_file(str(path))


def grid_value(grid, h):
    i = (h[0] - grid.h_min, h[1] - grid.k_min, h[2] - grid.l_min)
    return float(np.asarray(grid.F)[i])


def filled(grid):
    F = np.asarray(grid.F)
    idx = np.argwhere(F != SENTINEL)
    return idx + np.array([grid.h_min, grid.k_min, grid.l_min]), F[F != SENTINEL]


CASES = [("P 43 21 2", (50.0, 50.0, 70.0, 90.0, 90.0, 90.0)), ("P 21 21 21", (40.0, 50.0, 60.0, 90.0, 90.0, 90.0))]


@pytest.mark.parametrize("sg_name, cell", CASES)
@pytest.mark.parametrize("anomalous", [False, True])
def test_every_equivalent_holds_its_unique_amplitude(tmp_path, sg_name, cell, anomalous):
    hkl, Fp, Fm = unique_reflections(sg_name, cell, 4)
    cols = [("FP", "F", Fp)] if not anomalous else [("F(+)", "G", Fp), ("F(-)", "G", Fm)]
    path = tmp_path / "data.mtz"
    write_mtz(path, sg_name, cell, hkl, cols)
    grid = sfdata.structure_factors_from_mtz(path, default_F=SENTINEL)
    sg = gemmi.SpaceGroup(sg_name)
    ops, asu = sg.operations(), gemmi.ReciprocalAsu(sg)
    lookup = {tuple(h): i for i, h in enumerate(hkl)}
    idx, vals = filled(grid)
    assert len(idx) > 0
    for h, v in zip(idx, vals):
        u, isym = asu.to_asu(list(map(int, h)), ops)
        i = lookup[tuple(u)]
        plus = isym % 2 == 1
        expected = Fp[i] if (plus or not anomalous) else Fm[i]
        assert v == pytest.approx(float(np.float32(expected)), rel=1e-7), (h, u, isym)
    # every equivalent (and Friedel mate) of every listed reflection is filled
    n_expected = 0
    for h in hkl:
        eq = {tuple(op.apply_to_hkl(list(map(int, h)))) for op in ops.sym_ops}
        eq |= {tuple(-x for x in e) for e in eq}
        n_expected += len(eq)
        for e in eq:
            assert grid_value(grid, e) != SENTINEL
    assert len(idx) == n_expected


@pytest.mark.parametrize("sg_name, cell", CASES)
def test_friedel_mates(tmp_path, sg_name, cell):
    hkl, Fp, Fm = unique_reflections(sg_name, cell, 3, seed=1)
    path = tmp_path / "a.mtz"
    write_mtz(path, sg_name, cell, hkl, [("F", "F", Fp), ("F(+)", "G", Fp), ("F(-)", "G", Fm)])
    plain = sfdata.structure_factors_from_mtz(path, "F", default_F=SENTINEL)
    anom = sfdata.structure_factors_from_mtz(path, "F(+)", default_F=SENTINEL)
    ops = gemmi.SpaceGroup(sg_name).operations()
    centric_or_equal = 0
    for h, fp, fm in zip(hkl, Fp.astype(np.float32), Fm.astype(np.float32)):
        mh = tuple(-h)
        assert grid_value(plain, h) == grid_value(plain, mh) == pytest.approx(float(fp), rel=1e-7)
        a, b = grid_value(anom, h), grid_value(anom, mh)
        assert a == pytest.approx(float(fp), rel=1e-7)
        # -h is F(-) unless h is centric (-h equivalent to h): then one value serves both
        if ops.is_reflection_centric(list(map(int, h))):
            centric_or_equal += 1
            assert b == a
        else:
            assert b == pytest.approx(float(fm), rel=1e-7) and b != a
    assert centric_or_equal < len(hkl)   # the test saw acentric pairs


def test_missing_hand_and_missing_values(tmp_path):
    cell = (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
    hkl = np.array([[1, 2, 3], [2, 3, 4], [3, 1, 2]])
    Fp = np.array([100.0, np.nan, np.nan])
    Fm = np.array([np.nan, 50.0, np.nan])
    path = tmp_path / "m.mtz"
    write_mtz(path, "P 21 21 21", cell, hkl, [("F(+)", "G", Fp), ("F(-)", "G", Fm)])
    grid = sfdata.structure_factors_from_mtz(path, default_F=SENTINEL)
    assert grid_value(grid, (1, 2, 3)) == grid_value(grid, (-1, -2, -3)) == 100.0
    assert grid_value(grid, (2, 3, 4)) == grid_value(grid, (-2, -3, -4)) == 50.0
    with pytest.raises(IndexError):  # both hands missing: the box does not even reach (3, 1, 2)
        grid_value(grid, (3, 1, 2))


def test_intensities_become_amplitudes(tmp_path):
    cell = (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
    hkl = np.array([[1, 2, 3], [2, 3, 4]])
    path = tmp_path / "i.mtz"
    write_mtz(path, "P 21 21 21", cell, hkl, [("I", "J", [400.0, -25.0]), ("SIGI", "Q", [1.0, 1.0])])
    refl = read_mtz(path)
    assert refl.column == "I" and refl.from_intensities
    np.testing.assert_array_equal(refl.F_plus, [20.0, 0.0])


def test_automatic_column_order(tmp_path):
    cell = (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
    hkl = np.array([[1, 2, 3]])
    path = tmp_path / "c.mtz"
    write_mtz(path, "P 21 21 21", cell, hkl, [("I", "J", [4.0]), ("FP", "F", [3.0]), ("SIGFP", "Q", [1.0])])
    assert read_mtz(path).column == "FP"
    write_mtz(path, "P 21 21 21", cell, hkl, [("FP", "F", [3.0]), ("FA(+)", "G", [5.0]), ("FA(-)", "G", [6.0])])
    assert read_mtz(path).column == "FA(+),FA(-)"
    assert read_mtz(path, "FA(-)").column == "FA(+),FA(-)"
    assert read_mtz(path, "FA(-),FA(+)").F_plus[0] == 6.0   # an explicit pair keeps its order


# ----------------------------------------------------------------------------
# an image from an MTZ = the image from an HKL file expanded by this test
# ----------------------------------------------------------------------------

# the eight equivalents of (h, k, l) in point group 422, written out
_EQ_422 = [lambda h, k, l: (h, k, l), lambda h, k, l: (-h, -k, l), lambda h, k, l: (-k, h, l),
           lambda h, k, l: (k, -h, l), lambda h, k, l: (-h, k, -l), lambda h, k, l: (h, -k, -l),
           lambda h, k, l: (k, h, -l), lambda h, k, l: (-k, -h, -l)]


def expand_422(hkl, F):
    out = {}
    for h, f in zip(hkl, F):
        for op in _EQ_422:
            e = op(*map(int, h))
            out[e] = f
            out[tuple(-x for x in e)] = f
    return out


def test_image_from_mtz_equals_image_from_independently_expanded_hkl(tmp_path):
    cell = (50.0, 50.0, 70.0, 90.0, 90.0, 90.0)
    hkl, Fp, _ = unique_reflections("P 43 21 2", cell, 4, seed=3)
    Fp = Fp.astype(np.float32).astype(np.float64)   # what the MTZ stores
    mtz = tmp_path / "x.mtz"
    write_mtz(mtz, "P 43 21 2", cell, hkl, [("FP", "F", Fp)])
    table = expand_422(hkl, Fp)
    assert len(table) > 8 * len(hkl) // 2
    with open(tmp_path / "x.hkl", "w") as fh:
        for (h, k, l), f in table.items():
            fh.write(f"{h} {k} {l} {float(f)!r}\n")
    exp = dict(beam=Beam(wavelength_A=1.0),
               detector=Detector(fpixels=48, spixels=48, pixel_size_mm=0.2, distance_mm=60.0, oversample=1))
    images = []
    for grid in (sfdata.structure_factors_from_mtz(mtz), read_hkl(tmp_path / "x.hkl")):
        cr = Crystal(cell_A_deg=cell, misset_deg=(10.0, 20.0, 30.0), N_cells=(3, 3, 3), structure_factors=grid)
        images.append(np.asarray(simulate(Experiment(crystal=cr, **exp)).image))
    assert images[0].max() > 0
    np.testing.assert_array_equal(images[0], images[1])


def test_hkl_text_with_a_space_group(tmp_path):
    with open(tmp_path / "u.hkl", "w") as fh:
        fh.write("1 2 3 10.0\n2 0 1 20.0\n")
    grid = sfdata.structure_factors_from_hkl(tmp_path / "u.hkl", "P 43 21 2", default_F=SENTINEL)
    table = expand_422(np.array([[1, 2, 3], [2, 0, 1]]), [10.0, 20.0])
    idx, vals = filled(grid)
    assert {tuple(h) for h in idx} == set(table)
    for h, v in zip(idx, vals):
        assert v == table[tuple(h)]
    plain = sfdata.structure_factors_from_hkl(tmp_path / "u.hkl")   # as listed (P1, nanoBragg)
    assert np.count_nonzero(np.asarray(plain.F)) == 2


# ----------------------------------------------------------------------------
# mmCIF structure factors
# ----------------------------------------------------------------------------

_CIF = """data_r1abcsf
_cell.length_a 40.0
_cell.length_b 50.0
_cell.length_c 60.0
_cell.angle_alpha 90.0
_cell.angle_beta 90.0
_cell.angle_gamma 90.0
{symmetry}
loop_
_refln.index_h
_refln.index_k
_refln.index_l
_refln.F_meas_au
_refln.pdbx_F_plus
_refln.pdbx_F_minus
1 2 3 100.0 110.0 90.0
2 3 4 50.0 55.0 45.0
"""


def test_sfcif_amplitudes_and_anomalous_pairs(tmp_path):
    path = tmp_path / "r.cif"
    path.write_text(_CIF.format(symmetry="_symmetry.space_group_name_H-M 'P 21 21 21'"))
    refl = read_sfcif(path, "FP")
    assert refl.space_group == "P 21 21 21" and refl.cell_A_deg[:3] == (40.0, 50.0, 60.0)
    grid = refl.to_grid(SENTINEL)
    assert grid_value(grid, (-1, 2, 3)) == grid_value(grid, (1, -2, -3)) == 100.0
    anom = sfdata.structure_factors_from_sfcif(path, default_F=SENTINEL)   # the pair is preferred
    assert grid_value(anom, (1, 2, 3)) == 110.0 and grid_value(anom, (-1, -2, -3)) == 90.0


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------


def test_mtz_without_the_named_column(tmp_path):
    path = tmp_path / "n.mtz"
    write_mtz(path, "P 21 21 21", (40, 50, 60, 90, 90, 90), np.array([[1, 2, 3]]), [("FP", "F", [3.0])])
    with pytest.raises(ReflectionFileError) as info:
        sfdata.structure_factors_from_mtz(path, "FOBS")
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(path) in msg and "'FOBS'" in msg and "FP (F)" in msg


def test_mtz_without_amplitudes(tmp_path):
    path = tmp_path / "q.mtz"
    write_mtz(path, "P 21 21 21", (40, 50, 60, 90, 90, 90), np.array([[1, 2, 3]]), [("SIGFP", "Q", [3.0])])
    with pytest.raises(ReflectionFileError, match="no amplitude .* column; columns present: .*SIGFP"):
        read_mtz(path)


def test_unmerged_mtz_is_refused(tmp_path):
    path = tmp_path / "u.mtz"
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 21 21 21")
    mtz.set_cell_for_all(gemmi.UnitCell(40, 50, 60, 90, 90, 90))
    mtz.add_dataset("sim")
    mtz.add_column("M/ISYM", "Y")
    mtz.add_column("BATCH", "B")
    mtz.add_column("I", "J")
    mtz.set_data(np.array([[1, 2, 3, 1, 1, 10.0]], dtype=np.float32))
    batch = gemmi.Mtz.Batch()
    batch.number = 1
    mtz.batches.append(batch)
    mtz.write_to_file(str(path))
    with pytest.raises(ReflectionFileError, match=f"{path}: unmerged data"):
        read_mtz(path)


def test_sfcif_without_space_group(tmp_path):
    path = tmp_path / "nosg.cif"
    path.write_text(_CIF.format(symmetry=""))
    with pytest.raises(ReflectionFileError, match=f"{path}: no space group"):
        read_sfcif(path)


def _cli(tmp_path, *args):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        return main(list(args) + ["-N", "2", "-detpixels", "16", "-noprogress"])
    finally:
        os.chdir(cwd)


def test_cli_mtz_column_missing_exits_2_and_writes_nothing(tmp_path, capsys):
    mtz = tmp_path / "in.mtz"
    write_mtz(mtz, "P 21 21 21", (40, 50, 60, 90, 90, 90), np.array([[1, 2, 3]]), [("FP", "F", [3.0])])
    before = set(os.listdir(tmp_path))
    assert _cli(tmp_path, "-mtz", "in.mtz", "-mtz_column", "FOBS") == 2
    err = capsys.readouterr().err
    assert "-mtz" in err and "in.mtz" in err and "'FOBS'" in err and "FP (F)" in err
    assert set(os.listdir(tmp_path)) == before


def test_cli_mtz_renders_with_the_files_cell(tmp_path):
    mtz = tmp_path / "in.mtz"
    write_mtz(mtz, "P 21 21 21", (40, 50, 60, 90, 90, 90), np.array([[1, 0, 0], [0, 1, 0]]), [("FP", "F", [3.0, 4.0])])
    assert _cli(tmp_path, "-mtz", "in.mtz", "-floatfile", "f.bin", "-nopgm", "-nonoise") == 0
    assert os.path.getsize(tmp_path / "f.bin") == 16 * 16 * 4


def test_cli_two_sources_is_an_error(tmp_path, capsys):
    mtz = tmp_path / "in.mtz"
    write_mtz(mtz, "P 21 21 21", (40, 50, 60, 90, 90, 90), np.array([[1, 2, 3]]), [("FP", "F", [3.0])])
    (tmp_path / "a.hkl").write_text("1 2 3 4\n")
    before = set(os.listdir(tmp_path))
    assert _cli(tmp_path, "-mtz", "in.mtz", "-hkl", "a.hkl") == 2
    assert "use one of them" in capsys.readouterr().err
    assert set(os.listdir(tmp_path)) == before


def test_cli_warns_when_cell_differs_from_the_files(tmp_path, capsys):
    mtz = tmp_path / "in.mtz"
    write_mtz(mtz, "P 21 21 21", (40, 50, 60, 90, 90, 90), np.array([[1, 0, 0], [0, 1, 0]]), [("FP", "F", [3.0, 4.0])])
    assert _cli(tmp_path, "-mtz", "in.mtz", "-cell", "41", "50", "60", "90", "90", "90", "-floatfile", "f.bin",
                "-nopgm", "-nonoise") == 0
    out = capsys.readouterr()
    assert "column FP of in.mtz" in out.out + out.err
    assert "the file's cell (40 50 60 90 90 90) differs from -cell" in out.out + out.err
