"""hopnet.structures: conversions, files, validation, hashing."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from pymatgen.core import Lattice, Structure

from hopnet.infra.errors import StructureError
from hopnet.structures import (
    from_ase,
    from_jarvis,
    read_structure,
    structure_hash,
    to_ase,
    to_jarvis,
    to_structure,
    validate_structure,
    write_structure,
)

# a triclinic cell with interleaved species and one coordinate outside [0, 1)
LATTICE = [[5.1, 0.2, -0.1], [0.7, 6.3, 0.4], [-0.3, 0.5, 7.2]]
ELEMENTS = ["Li", "O", "Li", "Fe", "O", "Li"]
FRAC = [
    [0.10, 0.20, 0.30],
    [0.50, 0.55, 0.45],
    [0.90, 0.10, 0.70],
    [0.25, 0.75, 0.10],
    [0.60, 0.95, 0.85],
    [1.05, 0.40, 0.60],
]


def jarvis_dict(cartesian: bool = False) -> dict:
    coords = np.array(FRAC) @ np.array(LATTICE) if cartesian else np.array(FRAC)
    return {"lattice_mat": LATTICE, "coords": coords.tolist(), "elements": ELEMENTS, "cartesian": cartesian}


@pytest.fixture
def struct() -> Structure:
    return from_jarvis(jarvis_dict())


def symbols(s: Structure) -> list[str]:
    return [sp.symbol for sp in s.species]


def cart_mod_lattice(a: Structure, b: Structure) -> float:
    """Largest distance (Å) between corresponding sites modulo lattice translations (a's cell)."""
    d = a.frac_coords - b.frac_coords
    d -= np.round(d)
    return float(np.abs(d @ a.lattice.matrix).max())


# --------------------------------------------------------------------------- conversions
def test_from_jarvis_fractional_and_cartesian_agree(struct):
    cart = from_jarvis(jarvis_dict(cartesian=True))
    assert symbols(struct) == ELEMENTS
    np.testing.assert_allclose(struct.lattice.matrix, LATTICE, atol=0)
    np.testing.assert_allclose(struct.frac_coords, FRAC, atol=0)  # kept exactly, not wrapped
    np.testing.assert_allclose(cart.cart_coords, struct.cart_coords, atol=1e-12)


def test_jarvis_round_trip(struct):
    d = to_jarvis(struct)
    assert set(d) == {"lattice_mat", "coords", "elements", "abc", "angles", "cartesian", "props"}
    assert d["cartesian"] is False and d["elements"] == ELEMENTS and len(d["props"]) == 6
    np.testing.assert_allclose(d["abc"], struct.lattice.abc)
    back = from_jarvis(d)
    np.testing.assert_array_equal(back.frac_coords, struct.frac_coords)
    np.testing.assert_array_equal(back.lattice.matrix, struct.lattice.matrix)
    dc = to_jarvis(struct, cartesian=True)
    assert dc["cartesian"] is True
    np.testing.assert_allclose(dc["coords"], struct.cart_coords)
    np.testing.assert_allclose(from_jarvis(dc).cart_coords, struct.cart_coords, atol=1e-12)


def test_cubic_cartesian_known_numbers():
    s = from_jarvis({"lattice_mat": np.diag([4.0, 4.0, 4.0]).tolist(), "coords": [[1.0, 2.0, 3.0]],
                     "elements": ["Na"], "cartesian": True})
    np.testing.assert_allclose(s.frac_coords, [[0.25, 0.5, 0.75]])
    d = to_jarvis(s)
    assert d["abc"] == pytest.approx([4, 4, 4]) and d["angles"] == pytest.approx([90, 90, 90])


def test_ase_round_trip(struct):
    atoms = to_ase(struct)
    assert atoms.get_chemical_symbols() == ELEMENTS
    assert atoms.pbc.all()
    np.testing.assert_allclose(atoms.positions, struct.cart_coords, atol=1e-12)
    back = from_ase(atoms)
    assert symbols(back) == ELEMENTS
    np.testing.assert_allclose(back.lattice.matrix, struct.lattice.matrix, atol=1e-12)
    np.testing.assert_allclose(back.cart_coords, struct.cart_coords, atol=1e-9)


def test_from_ase_needs_a_cell():
    with pytest.raises(StructureError, match="no 3D cell"):
        from_ase(Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]]))


@pytest.mark.parametrize("name", ["s.cif", "POSCAR", "CONTCAR", "s.vasp", "s.json", "s.extxyz"])
def test_file_round_trip_keeps_order_species_and_positions(struct, tmp_path, name):
    path = write_structure(struct, tmp_path / name)
    assert path.is_file()
    back = read_structure(path)
    assert symbols(back) == ELEMENTS  # order kept, also for CIF (pymatgen would group by species)
    np.testing.assert_allclose(back.lattice.abc, struct.lattice.abc, atol=1e-6)
    np.testing.assert_allclose(back.lattice.angles, struct.lattice.angles, atol=1e-6)
    # CIF stores only cell parameters (the cell comes back rotated) and 8 decimals of fractional
    # coordinates; compare fractional coordinates modulo lattice vectors to 1e-6 Å
    assert cart_mod_lattice(back, struct) < 1e-6
    if name != "s.cif":  # these keep the Cartesian lattice itself
        np.testing.assert_allclose(back.lattice.matrix, struct.lattice.matrix, atol=1e-6)
        np.testing.assert_allclose(back.cart_coords, struct.cart_coords, atol=1e-6)


def test_poscar_and_json_are_exact(struct, tmp_path):
    for name in ("POSCAR", "s.json"):
        back = read_structure(write_structure(struct, tmp_path / name))
        np.testing.assert_array_equal(back.frac_coords, struct.frac_coords)


def test_explicit_format_overrides_the_name(struct, tmp_path):
    path = write_structure(struct, tmp_path / "structure.txt", fmt="poscar")
    assert "direct" in path.read_text().lower()
    assert symbols(read_structure(path, fmt="vasp")) == ELEMENTS


def test_read_symmetric_cif_expands_the_cell(tmp_path):
    cif = tmp_path / "nacl.cif"
    cif.write_text(
        "data_NaCl\n_symmetry_space_group_name_H-M 'F m -3 m'\n_cell_length_a 5.64\n_cell_length_b 5.64\n"
        "_cell_length_c 5.64\n_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_Int_Tables_number 225\nloop_\n_atom_site_label\n_atom_site_type_symbol\n"
        "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nNa1 Na 0 0 0\nCl1 Cl 0.5 0.5 0.5\n"
    )
    s = to_structure(cif)
    assert len(s) == 8 and s.composition.reduced_formula == "NaCl"
    assert s.volume == pytest.approx(5.64**3)


def test_read_errors_name_the_file_in_one_line(tmp_path):
    missing = tmp_path / "nope.cif"
    with pytest.raises(StructureError, match="file not found") as exc:
        read_structure(missing)
    assert str(missing) in str(exc.value)
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not\na CIF file\n")
    with pytest.raises(StructureError) as exc:
        read_structure(bad)
    msg = str(exc.value)
    assert "bad.cif" in msg and "\n" not in msg
    junk = tmp_path / "POSCAR"
    junk.write_text("title\nnot a number\n")
    with pytest.raises(StructureError, match="POSCAR"):
        to_structure(str(junk))


def test_write_is_atomic(struct, tmp_path):
    target = tmp_path / "out.cif"
    target.write_text("old content")
    with pytest.raises(StructureError, match="cannot write"):
        write_structure(struct, target, fmt="no-such-format")
    assert target.read_text() == "old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.cif"]  # no temporary left behind
    write_structure(struct, target)
    assert target.read_text().startswith("# generated using pymatgen")


# --------------------------------------------------------------------------- dispatch
def test_to_structure_dispatches_on_type(struct, tmp_path):
    path = write_structure(struct, tmp_path / "POSCAR")
    inputs = [struct, to_ase(struct), to_jarvis(struct), struct.as_dict(), path, str(path)]
    for obj in inputs:
        s = to_structure(obj)
        assert isinstance(s, Structure) and symbols(s) == ELEMENTS, type(obj)
        np.testing.assert_allclose(s.cart_coords, struct.cart_coords, atol=1e-9)
    copy = to_structure(struct)
    assert copy is not struct
    with pytest.raises(StructureError, match="cannot make a structure from a int"):
        to_structure(3)
    with pytest.raises(StructureError, match="neither a JARVIS"):
        to_structure({"foo": 1})


def test_to_structure_validates_by_default():
    d = {"lattice_mat": np.diag([4.0] * 3).tolist(), "coords": [[0, 0, 0], [0.05, 0, 0]],
         "elements": ["Li", "O"], "cartesian": False}
    with pytest.raises(StructureError, match=r"sites 0 \(Li\) and 1 \(O\) are 0.20 Å apart"):
        to_structure(d)
    assert len(to_structure(d, validate=False)) == 2
    assert len(to_structure(d, min_distance=0.1)) == 2


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"coords": [[0, 0, 0]], "elements": ["Li"]}, "neither a JARVIS"),
        ({"lattice_mat": [[1, 0], [0, 1]], "coords": [[0, 0, 0]], "elements": ["Li"]}, "shape"),
        ({"lattice_mat": np.eye(3).tolist(), "coords": [[0, 0, 0]], "elements": ["Li", "O"]}, "2 elements but 1"),
        ({"lattice_mat": np.eye(3).tolist(), "coords": [[0, 0, 0]], "elements": ["Xx"]}, "unknown element 'Xx'"),
        ({"lattice_mat": np.eye(3).tolist(), "coords": [["a", 0, 0]], "elements": ["Li"]}, "non-numeric"),
    ],
)
def test_bad_jarvis_dicts(bad, message):
    with pytest.raises(StructureError, match=message):
        to_structure(bad)


# --------------------------------------------------------------------------- validation
CUBIC = Lattice.cubic(4.0)


@pytest.mark.parametrize(
    "structure, kwargs, message",
    [
        (Structure(CUBIC, [], []), {}, "empty structure"),
        (Structure(CUBIC, ["Li", "O"], [[0, 0, 0], [0.5] * 3]), {"max_atoms": 1}, "too many atoms: 2 .maximum 1"),
        (Structure(CUBIC, ["Li", "O"], [[0, 0, 0], [np.nan, 0, 0]]), {}, r"site 1 \(O\) contain NaN"),
        (Structure(Lattice(np.diag([4.0, np.inf, 4.0])), ["Li"], [[0, 0, 0]]), {}, "lattice contains NaN"),
        (Structure(Lattice([[1, 0, 0], [2, 0, 0], [0, 0, 1]]), ["Li"], [[0, 0, 0]]), {}, "degenerate cell"),
        (Structure(Lattice.cubic(0.9), ["Li"], [[0, 0, 0]]), {}, "0.729 Å\\^3 per atom"),
        (Structure(Lattice.cubic(30.0), ["Li"], [[0, 0, 0]]), {}, "2.7e\\+04 Å\\^3 per atom"),
        (Structure(CUBIC, ["X"], [[0, 0, 0]]), {}, "unknown element 'X' at site 0"),
        (Structure(CUBIC, [{"Li": 0.5, "Na": 0.5}], [[0, 0, 0]]), {}, "disordered site 0"),
        # periodic image: 0.98 -> -0.02, so 0.08 Å from the atom at the origin
        (Structure(CUBIC, ["O", "Li", "S"], [[0.5] * 3, [0, 0, 0], [0.98, 0, 0]]), {},
         r"overlapping atoms: sites 1 \(Li\) and 2 \(S\) are 0.08 Å apart \(minimum 0.5 Å\)"),
        (Structure(Lattice.cubic(0.45), ["Li"], [[0, 0, 0]]), {"volume_per_atom": (0.01, 10)},
         r"site 0 \(Li\) is 0.45 Å from its own periodic image"),
        (Structure(CUBIC, ["Li", "O"], [[0, 0, 0], [0.25, 0, 0]]), {"min_distance": 1.5}, "1.00 Å apart"),
    ],
)
def test_validation_errors(structure, kwargs, message):
    with pytest.raises(StructureError, match=message) as exc:
        validate_structure(structure, **kwargs)
    assert "\n" not in str(exc.value)


def test_validation_accepts_sane_crystal_and_closest_pair_is_named():
    ok = Structure(CUBIC, ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    validate_structure(ok)  # nearest distance 3.46 Å
    s = Structure(CUBIC, ["Li", "O", "Na", "Cl"], [[0, 0, 0], [0.1, 0, 0], [0.5] * 3, [0.5, 0.5, 0.53]])
    with pytest.raises(StructureError, match=r"sites 2 \(Na\) and 3 \(Cl\) are 0.12 Å"):
        validate_structure(s)  # 0.12 Å (Na-Cl) is closer than 0.40 Å (Li-O)


def test_ignore_pairs_within():
    # three images of Li 0.2 Å apart plus a host atom far away
    s = Structure(CUBIC, ["Li", "Li", "Li", "O"], [[0, 0, 0], [0.05, 0, 0], [0.1, 0, 0], [0.5] * 3])
    with pytest.raises(StructureError, match="overlapping"):
        validate_structure(s)
    validate_structure(s, ignore_pairs_within=range(3))
    with pytest.raises(StructureError, match=r"sites 1 \(Li\) and 2 \(Li\)"):
        validate_structure(s, ignore_pairs_within=[0, 1])
    # an image on top of a host atom is still caught
    s2 = Structure(CUBIC, ["Li", "Li", "O"], [[0, 0, 0], [0.05, 0, 0], [0.06, 0, 0]])
    with pytest.raises(StructureError, match=r"sites 1 \(Li\) and 2 \(O\)"):
        validate_structure(s2, ignore_pairs_within=range(2))


# --------------------------------------------------------------------------- hashing
def test_structure_hash_is_stable_and_sensitive(struct):
    h = structure_hash(struct)
    assert len(h) == 64 and h == structure_hash(from_jarvis(to_jarvis(struct)))
    # pinned: a cache key must not change silently between versions
    small = Structure(CUBIC, ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structure_hash(small) == PINNED_SMALL_HASH
    noisy = Structure(CUBIC, ["Li", "O"], [[1e-9, -1e-9, 0], [0.5, 0.5, 0.5 + 1e-9]])
    assert structure_hash(noisy) == PINNED_SMALL_HASH  # below the 1e-6 rounding (and -0.0 == 0.0)
    moved = Structure(CUBIC, ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.501]])
    swapped = Structure(CUBIC, ["O", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    bigger = Structure(Lattice.cubic(4.01), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    keys = {structure_hash(x) for x in (small, moved, swapped, bigger)}
    assert len(keys) == 4
    marked = small.copy()
    marked.add_site_property("is_mobile", [True, False])
    assert structure_hash(marked) != PINNED_SMALL_HASH
    assert structure_hash(marked, include_site_properties=False) == PINNED_SMALL_HASH


PINNED_SMALL_HASH = "483daad3769fec4f28d2d85abad2e4540233e1c7b6ebc254c97ee3afaa6aa1ed"
