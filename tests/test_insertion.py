"""hopnet.insertion: interstitial sites of hosts whose answer is known by hand, user sites."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from hopnet.infra.errors import PathError
from hopnet.insertion import default_min_distance, expand_sites, fill_sites, find_interstitials, symmetry_orbit

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def olivine_pair() -> tuple[Structure, Structure]:
    """(LiFePO4 example, FePO4 = the same cell without Li)."""
    lfp = Structure.from_file(EXAMPLES / "LiFePO4_olivine.cif")
    host = lfp.copy()
    host.remove_species(["Li"])
    return lfp, host


def simple_cubic(a: float = 3.5) -> Structure:
    return Structure(Lattice.cubic(a), ["Cl"], [[0, 0, 0]])


def rock_salt(a: float = 4.44) -> Structure:
    """MnO rock salt: every octahedral hole of the O lattice holds Mn; the tetrahedral 8c holes are empty."""
    fcc = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return Structure(Lattice.cubic(a), ["Mn"] * 4 + ["O"] * 4, np.vstack([fcc, (fcc + [0.5, 0, 0]) % 1]))


def _on_orbit(host: Structure, point, orbit) -> float:
    return float(np.min(host.lattice.get_all_distances([point], orbit)))


def test_default_min_distance_is_ion_size_based():
    assert default_min_distance("Li") == pytest.approx(0.75 * (0.76 + 1.40))  # 1.62 Å
    assert default_min_distance("Na") > default_min_distance("Li") > default_min_distance("Al")


def test_simple_cubic_host_body_centre():
    s = simple_cubic(3.5)
    sites = find_interstitials(s, "Li")
    assert len(sites) == 1
    assert np.allclose(sites[0].frac, [0.5, 0.5, 0.5], atol=1e-6)
    assert sites[0].multiplicity == 1 and sites[0].clearance == pytest.approx(3.5 * math.sqrt(3) / 2)
    # in a 2x1x1 supercell the two body centres are one distinct site (an internal translation)
    sc = s.make_supercell([2, 1, 1], in_place=False)
    sites = find_interstitials(sc, "Li")
    assert len(sites) == 1 and sites[0].multiplicity == 2


def test_fcc_anion_lattice_octahedral_then_tetrahedral():
    a = 4.2
    fcc = Structure(Lattice.cubic(a), ["O"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    octa, tetra = find_interstitials(fcc, "Li")
    assert octa.multiplicity == 4 and octa.clearance == pytest.approx(a / 2)
    assert _on_orbit(fcc, [0.5, 0.5, 0.5], octa.orbit) < 1e-6
    assert tetra.multiplicity == 8 and tetra.clearance == pytest.approx(a * math.sqrt(3) / 4)
    assert _on_orbit(fcc, [0.25, 0.25, 0.25], tetra.orbit) < 1e-6


def test_rock_salt_host_only_the_tetrahedral_holes():
    s = rock_salt(4.44)
    (site,) = find_interstitials(s, "Li")
    assert site.multiplicity == 8 and site.clearance == pytest.approx(4.44 * math.sqrt(3) / 4)
    for p in site.orbit:  # every orbit point is a (1/4, 1/4, 1/4)-type position
        assert np.allclose((p * 4) % 2, 1.0, atol=1e-6)


def test_bcc_host_has_no_room_for_li_at_the_default_distance():
    a = 2.87
    bcc = Structure(Lattice.cubic(a), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert find_interstitials(bcc, "Li") == []  # tetrahedral hole a*sqrt(5)/4 = 1.604 Å < 1.62 Å
    (tetra,) = find_interstitials(bcc, "Li", min_dist=1.5)  # octahedral (a/2 = 1.435 Å) still excluded
    assert tetra.multiplicity == 12 and tetra.clearance == pytest.approx(a * math.sqrt(5) / 4)


def test_olivine_host_finds_the_li_site():
    lfp, host = olivine_pair()
    li = np.array([p.frac_coords for p in lfp if p.specie.symbol == "Li"])
    sites = find_interstitials(host, "Li")
    assert len(sites) >= 2
    clear = [s.clearance for s in sites]
    assert clear == sorted(clear, reverse=True) and min(clear) >= default_min_distance("Li")
    # one distinct site is the Li (4a) site: its orbit lands on every Li position within 0.3 Å
    hits = [s for s in sites if max(_on_orbit(host, p, s.orbit) for p in li) < 0.3]
    assert len(hits) == 1 and hits[0].multiplicity == len(li) == 16
    # every orbit point is clear of the host
    for s in sites:
        d = host.lattice.get_all_distances(s.orbit, host.frac_coords)
        assert d.min() >= default_min_distance("Li") - 1e-9


def test_user_sites_expand_to_orbits_and_are_checked():
    lfp, host = olivine_pair()
    (site,) = expand_sites(host, [(0.5, 0.25, 0.25), (0.0, 0.75, 0.5)])  # the second is the same orbit
    assert site.multiplicity == 16
    assert len(symmetry_orbit(host, [0.5, 0.25, 0.25])) == 16
    filled, index = fill_sites(host, "Li", [site])
    assert len(filled) == len(lfp) and list(index[0]) == list(range(len(host), len(lfp)))
    assert filled.composition.reduced_formula == "LiFePO4"
    fe = next(p.frac_coords for p in host if p.specie.symbol == "Fe")
    with pytest.raises(PathError, match="from a host atom"):
        expand_sites(host, [fe])
    with pytest.raises(PathError, match="3 finite fractional"):
        expand_sites(host, [(0.5, 0.25)])
