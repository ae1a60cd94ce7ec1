"""hopnet.paths.MigrationPath: geometry on hand-made cells, error cases, and the data set's bands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from hopnet.infra.errors import PathError, StructureError
from hopnet.paths import MigrationPath
from hopnet.structures import to_jarvis

CUBIC = Lattice.cubic(4.0)


def host4() -> Structure:
    """Cubic a = 4 Å host: O at the body centre, Nb on a face centre."""
    return Structure(CUBIC, ["O", "Nb"], [[0.5, 0.5, 0.5], [0.5, 0.5, 0.0]])


def symbols(s: Structure) -> list[str]:
    return [sp.symbol for sp in s.species]


@pytest.fixture
def path() -> MigrationPath:
    # (0,0,0) -> (0.9,0,0) must go the short way: -0.1 a = 0.4 Å
    return MigrationPath(host4(), "Li", np.zeros(3), np.array([0.9, 0.0, 0.0]))


# --------------------------------------------------------------------------- geometry
def test_short_way_round_the_cell(path):
    np.testing.assert_allclose(path.hop_vector_frac, [-0.1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(path.hop_vector, [-0.4, 0, 0], atol=1e-12)
    assert path.hop_length == pytest.approx(0.4)
    expected = [[0, 0, 0], [-0.025, 0, 0], [-0.05, 0, 0], [-0.075, 0, 0], [-0.1, 0, 0]]
    np.testing.assert_allclose(path.image_frac_coords(), expected, atol=1e-12)  # not wrapped to 0.9
    np.testing.assert_allclose(path.image_cart_coords()[:, 0], [0, -0.1, -0.2, -0.3, -0.4], atol=1e-12)


def test_band_initial_final_layout(path):
    band = path.band()
    assert symbols(band) == ["Li"] * 5 + ["O", "Nb"]
    assert band.site_properties["is_mobile"] == [True] * 5 + [False] * 2
    np.testing.assert_allclose(band.frac_coords[:5], path.image_frac_coords(), atol=0)
    np.testing.assert_allclose(band.frac_coords[5:], host4().frac_coords, atol=0)

    ini, fin = path.initial(), path.final()
    assert symbols(ini) == symbols(fin) == ["Li", "O", "Nb"]
    # initial = band without atoms 1..4, final = band without atoms 0..3
    np.testing.assert_allclose(ini.cart_coords, band.cart_coords[[0, 5, 6]], atol=1e-12)
    np.testing.assert_allclose(fin.cart_coords, band.cart_coords[[4, 5, 6]], atol=1e-12)
    np.testing.assert_allclose(fin.cart_coords[0], [-0.4, 0, 0], atol=1e-12)
    assert ini.site_properties["is_mobile"] == [True, False, False]


def test_delta_is_the_hop_on_the_ion(path):
    delta = path.delta()
    disp = np.array(delta.site_properties["displacement"])
    assert disp.shape == (3, 3)
    np.testing.assert_allclose(disp, [[-0.4, 0, 0], [0, 0, 0], [0, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(delta.cart_coords + disp, path.final().cart_coords, atol=1e-12)


def test_n_images_changes_the_spacing():
    p = MigrationPath(host4(), "Na", [0.1, 0.1, 0.1], [0.1, 0.1, 0.6], n_images=3)
    np.testing.assert_allclose(p.image_frac_coords()[:, 2], [0.1, 0.35, 0.6])
    assert p.hop_length == pytest.approx(2.0)
    assert len(p.band()) == 5


def test_image_conventions_in_a_skewed_cell():
    # a = (4,0,0), b = (3.6,2,0): fractional hop (0.4,0.4,0) is 3.14 Å, (-0.6,0.4,0) only 1.25 Å
    lat = Lattice([[4.0, 0, 0], [3.6, 2.0, 0], [0, 0, 5.0]])
    host = Structure(lat, ["O"], [[0.5, 0.0, 0.5]])
    a, b = [0.1, 0.1, 0.0], [0.5, 0.5, 0.0]
    frac = MigrationPath(host, "Li", a, b, image_convention="fractional")
    cart = MigrationPath(host, "Li", a, b, image_convention="cartesian")
    np.testing.assert_allclose(frac.hop_vector, [3.04, 0.8, 0], atol=1e-12)
    np.testing.assert_allclose(cart.hop_vector_frac, [-0.6, 0.4, 0], atol=1e-12)
    np.testing.assert_allclose(cart.hop_vector, [-0.96, 0.8, 0], atol=1e-12)
    assert cart.hop_length == pytest.approx(np.hypot(0.96, 0.8))
    given = MigrationPath(host, "Li", a, [1.5, 0.5, 0.0], image_convention="as_given")
    np.testing.assert_allclose(given.hop_vector_frac, [1.4, 0.4, 0], atol=1e-12)
    # ties (half a lattice vector) keep the fractional choice under "cartesian" too
    tie = MigrationPath(host4(), "Li", [0, 0, 0], [0.5, 0, 0], image_convention="cartesian")
    np.testing.assert_allclose(tie.hop_vector_frac, [0.5, 0, 0])


def test_closest_approach():
    # Li passes the O at the body centre; the middle image (0.5,0.5,0.25) is 1.0 Å from it
    host = Structure(CUBIC, ["O"], [[0.5, 0.5, 0.5]])
    p = MigrationPath(host, "Li", [0.5, 0.5, 0.0], [0.5, 0.5, 0.25], n_images=3)
    assert p.closest_approach() == pytest.approx(1.0)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ion": "Xx"}, "ion 'Xx' is not an element symbol"),
        ({"ion": "Li+"}, "not an element symbol"),
        ({"final_frac": [0.0, 0.0, 0.0]}, "coincide"),
        ({"final_frac": [1.0, -1.0, 2.0]}, "coincide"),  # the same site one cell over
        ({"final_frac": [0.9, 0.0, 0.0], "image_convention": "as_given", "initial_frac": [-0.1, 0, 0]},
         "coincide"),
        ({"n_images": 1}, "at least 2"),
        ({"n_images": 2.5}, "integer"),
        ({"final_frac": [0.5, 0.5]}, "3 fractional coordinates"),
        ({"final_frac": [np.nan, 0, 0]}, "NaN"),
        ({"image_convention": "shortest"}, "image_convention 'shortest'"),
        ({"host": Structure(CUBIC, [], [])}, "host has no atoms"),
    ],
)
def test_constructor_errors(kwargs, message):
    args = {"host": host4(), "ion": "Li", "initial_frac": [0.0, 0.0, 0.0], "final_frac": [0.25, 0.0, 0.0]}
    args.update(kwargs)
    with pytest.raises(PathError, match=message):
        MigrationPath(**args)


def test_validate_names_the_bad_end():
    # the final site sits 0.2 Å from the Nb at (0.5, 0.5, 0)
    p = MigrationPath(host4(), "Li", [0.0, 0.0, 0.0], [0.5, 0.45, 0.0])
    with pytest.raises(StructureError, match=r"final structure of the Li hop: overlapping atoms: sites 0 \(Li\) and 2 \(Nb\) are 0.20 Å"):
        p.validate()
    p.validate(min_distance=0.1)
    with pytest.raises(StructureError, match="final structure"):
        MigrationPath.from_fractional(host4(), "Li", [0, 0, 0], [0.5, 0.45, 0.0])


# --------------------------------------------------------------------------- from_band
def make_band(images, host: Structure, ion: str = "Li") -> Structure:
    return Structure(host.lattice, [ion] * len(images) + symbols(host),
                     np.vstack([images, host.frac_coords]))


def test_from_band_round_trip_exact(path):
    band = path.band()
    back = MigrationPath.from_band(band)
    assert back.ion == "Li" and back.n_images == 5 and back.image_convention == "as_given"
    assert symbols(back.host) == ["O", "Nb"]
    np.testing.assert_array_equal(back.band().frac_coords, band.frac_coords)
    assert back.hop_length == pytest.approx(0.4)
    # any to_structure input works, e.g. a JARVIS dict
    again = MigrationPath.from_band(to_jarvis(band))
    np.testing.assert_allclose(again.band().cart_coords, band.cart_coords, atol=1e-12)


def test_from_band_with_wrapped_images():
    images = np.array([[0.9, 0.0, 0.0], [0.95, 0.0, 0.0], [0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.1, 0.0, 0.0]])
    band = make_band(images, host4())
    p = MigrationPath.from_band(band)
    assert p.hop_length == pytest.approx(0.8)
    np.testing.assert_allclose(p.hop_vector, [0.8, 0, 0], atol=1e-12)
    d = p.band().frac_coords - band.frac_coords  # equal modulo lattice vectors
    np.testing.assert_allclose(d - np.round(d), 0, atol=1e-12)


def test_from_band_errors():
    host = host4()
    straight = np.outer(np.linspace(0, 1, 5), [0.25, 0, 0])
    mixed = Structure(CUBIC, ["Li", "Li", "Na", "Li", "Li", "O"], np.vstack([straight, [[0.5] * 3]]))
    with pytest.raises(PathError, match="band layout: atoms 0-4 are not one element"):
        MigrationPath.from_band(mixed)
    bent = straight.copy()
    bent[2, 1] = 0.01  # 0.04 Å off the line
    with pytest.raises(PathError, match=r"not equally spaced on a straight line \(image 2 is 0.04 Å off"):
        MigrationPath.from_band(make_band(bent, host))
    uneven = straight.copy()
    uneven[1, 0] = 0.08
    with pytest.raises(PathError, match="image 1"):
        MigrationPath.from_band(make_band(uneven, host))
    with pytest.raises(PathError, match="need the 5 ion images plus a host"):
        MigrationPath.from_band(Structure(CUBIC, ["Li"] * 5, straight))
    # 3 images are fine when asked for
    p = MigrationPath.from_band(make_band(straight[::2], host), n_images=3)
    assert p.hop_length == pytest.approx(1.0)


# --------------------------------------------------------------------------- from_sites / from_fractional
def full_structure() -> Structure:
    """Li at the corner and the edge centre (2 Å apart), O at the body centre, Li on a face."""
    return Structure(CUBIC, ["Li", "O", "Li", "Li"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0.0, 0.5, 0.5]])


def test_from_sites_vacancy_hop():
    p = MigrationPath.from_sites(full_structure(), "Li", 0, 2)
    assert symbols(p.host) == ["O", "Li"]  # both end sites removed, order of the rest kept
    np.testing.assert_allclose(p.host.frac_coords, [[0.5, 0.5, 0.5], [0.0, 0.5, 0.5]])
    assert p.hop_length == pytest.approx(2.0)
    band = p.band()
    assert len(band) == 7 and symbols(band)[:5] == ["Li"] * 5
    assert len(p.initial()) == len(p.final()) == 3  # full structure minus the vacancy
    back = MigrationPath.from_sites(full_structure(), "Li", 2, 0)
    np.testing.assert_allclose(back.hop_vector, -p.hop_vector)


@pytest.mark.parametrize(
    "args, message",
    [
        (("Li", 0, 4), "end_index 4 is out of range .structure has 4 atoms"),
        (("Li", -1, 2), "start_index -1 is out of range"),
        (("Li", 0, 0), "same .site 0"),
        (("Li", 0, 1), "site 1 is O, not the migrating ion Li"),
        (("Na", 0, 2), "site 0 is Li, not the migrating ion Na"),
        (("Li", 0.0, 2), "must be an integer"),
    ],
)
def test_from_sites_errors(args, message):
    with pytest.raises(PathError, match=message):
        MigrationPath.from_sites(full_structure(), *args)


def test_from_fractional_removes_the_ion_at_its_end_sites():
    p = MigrationPath.from_fractional(full_structure(), "Li", [0, 0, 0], [0.5, 0, 0])
    assert symbols(p.host) == ["O", "Li"]
    q = MigrationPath.from_fractional(p.host, "Li", [1.0, 0, 0], [0.5, 0, 0])  # a host: nothing removed
    assert len(q.host) == 2
    np.testing.assert_allclose(q.hop_vector, [-2.0, 0, 0])


# --------------------------------------------------------------------------- JSON
def test_dict_round_trip_through_json():
    lat = Lattice([[4.0, 0, 0], [3.6, 2.0, 0], [0, 0, 5.0]])
    host = Structure(lat, ["O", "Mg"], [[0.5, 0.0, 0.5], [0.0, 0.0, 0.5]])
    p = MigrationPath(host, "Li", [0.1, 0.1, 0.0], [0.5, 0.5, 0.0], n_images=7, image_convention="cartesian")
    d = json.loads(json.dumps(p.to_dict()))
    assert d["format"] == "hopnet.MigrationPath" and d["version"] == 1
    q = MigrationPath.from_dict(d)
    assert (q.ion, q.n_images, q.image_convention) == ("Li", 7, "cartesian")
    np.testing.assert_array_equal(q.band().frac_coords, p.band().frac_coords)
    assert "hop=1.250 Å" in repr(q)
    with pytest.raises(PathError, match="missing key 'ion'"):
        MigrationPath.from_dict({k: v for k, v in d.items() if k != "ion"})
    with pytest.raises(PathError, match="version 2"):
        MigrationPath.from_dict({**d, "version": 2})


# --------------------------------------------------------------------------- the data set
@pytest.fixture(scope="module")
def data_paths(band_entries):
    """(entry, MigrationPath) for every training band, built once (unvalidated)."""
    return [(e, MigrationPath.from_band(e["atoms"], validate=False)) for e in band_entries]


@pytest.mark.slow
def test_every_band_round_trips(data_paths):
    """band -> from_band -> band() reproduces every atom's Cartesian position to 1e-6 Å. The data
    set stores the images unwrapped, so no lattice translation is needed."""
    assert len(data_paths) == 559
    worst = 0.0
    for entry, p in data_paths:
        atoms = entry["atoms"]
        assert not atoms["cartesian"]
        n = len(atoms["elements"])
        band = p.band()
        assert symbols(band) == atoms["elements"], entry["sys_name"]
        want = np.asarray(atoms["coords"]) @ np.asarray(atoms["lattice_mat"])
        worst = max(worst, float(np.abs(band.cart_coords - want).max()))
        assert len(p.initial()) == len(p.final()) == n - 4
        np.testing.assert_allclose(p.final().cart_coords[0], want[4], atol=1e-6)
    assert worst < 1e-6


@pytest.mark.slow
def test_data_set_uses_the_fractional_convention(data_paths):
    """Rebuilding each band from its end sites with the default ("fractional") minimum image gives
    the data set's images: that is the convention the data set was made with."""
    for entry, p in data_paths:
        q = MigrationPath(p.host, p.ion, p.initial_frac, p.final_frac)
        np.testing.assert_allclose(q.image_frac_coords(), p.image_frac_coords(), atol=1e-9,
                                   err_msg=entry["sys_name"])


@pytest.mark.slow
def test_hop_lengths_and_ions(data_paths):
    lengths = np.array([p.hop_length for _, p in data_paths])
    assert 1.5 <= lengths.min() and lengths.max() <= 9.0  # README: 1.5-9.0 Å
    assert lengths.mean() == pytest.approx(3.9, abs=0.05)  # README: mean 3.9 Å
    ions = {}
    for _, p in data_paths:
        ions[p.ion] = ions.get(p.ion, 0) + 1
    assert ions == {"Li": 154, "Ca": 141, "Na": 104, "Mg": 92, "K": 32, "Zn": 21, "Rb": 7, "Al": 6, "Sr": 2}


@pytest.mark.slow
def test_end_structures_validate_except_known_duplicates(data_paths):
    """The initial/final structures of all bands pass validation except the three
    Na4MnAlP3O12 bands, whose hosts contain duplicated atoms 0.014 Å apart."""
    bad = {}
    for entry, p in data_paths:
        try:
            p.validate()
        except StructureError as exc:
            bad[entry["sys_name"]] = str(exc)
    assert set(bad) == {"Na4MnAlP3O12_1", "Na4MnAlP3O12_2", "Na4MnAlP3O12_3"}
    assert all("overlapping atoms" in msg and "0.01 Å apart" in msg for msg in bad.values())
