"""Write the example structures of ``examples/`` from their published space groups and Wyckoff
positions (pymatgen ``Structure.from_spacegroup``). Nothing here comes from the data sets.

    python examples/make_examples.py            # (re)writes examples/*.cif and examples/index.json

Each structure is checked against the nearest-neighbour distances expected of it before it is
written; ``index.json`` lists, per structure, the space group, the source of the crystal data and
the shortest hop of the mobile ion from site 0 (site indices in the CIF's order, the ion first)::

    hopnet predict examples/LiFePO4_olivine.cif --ion Li --from 0 --to 1

Lattice constants in Å, fractional coordinates in the setting named (origin choice 2 for Fd-3m,
hexagonal axes for R-3m).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Example:
    name: str
    kind: str  # cathode / electrolyte
    spacegroup: str
    lattice: tuple[float, float, float, float, float, float]  # a, b, c (Å), alpha, beta, gamma (deg)
    species: tuple[str, ...]  # the mobile ion first
    coords: tuple[tuple[float, float, float], ...]  # one per Wyckoff site
    ion: str
    source: str
    bonds: tuple[tuple[str, str, float, float], ...]  # (A, B, min, max) shortest A-B distance, Å
    supercell: tuple[int, int, int] = (1, 1, 1)  # repeats of the conventional cell


EXAMPLES: tuple[Example, ...] = (
    Example(
        name="LiFePO4_olivine", kind="cathode", spacegroup="Pnma",
        lattice=(10.332, 6.010, 4.692, 90, 90, 90),
        species=("Li", "Fe", "P", "O", "O", "O"),
        coords=((0.0, 0.0, 0.0), (0.28222, 0.25, 0.97472), (0.09486, 0.25, 0.41820),
                (0.09678, 0.25, 0.74279), (0.45710, 0.25, 0.20602), (0.16558, 0.04690, 0.28492)),
        ion="Li",
        source="olivine LiFePO4, Pnma: Li 4a, Fe/P/O1/O2 4c, O3 8d; Streltsov et al., "
               "Acta Cryst. B 49, 147 (1993); Padhi et al., J. Electrochem. Soc. 144, 1188 (1997)",
        bonds=(("P", "O", 1.48, 1.60), ("Fe", "O", 1.98, 2.20), ("Li", "O", 2.05, 2.25)),
        supercell=(1, 2, 2),
    ),
    Example(
        name="LiCoO2_layered", kind="cathode", spacegroup="R-3m",
        lattice=(2.8156, 2.8156, 14.0542, 90, 90, 120),
        species=("Li", "Co", "O"),
        coords=((0.0, 0.0, 0.0), (0.0, 0.0, 0.5), (0.0, 0.0, 0.23951)),
        ion="Li",
        source="layered O3-LiCoO2 (alpha-NaFeO2 type), R-3m hexagonal axes: Li 3a, Co 3b, O 6c (z = 0.2395); "
               "Akimoto et al., J. Solid State Chem. 141, 298 (1998)",
        bonds=(("Co", "O", 1.85, 1.98), ("Li", "O", 2.02, 2.18)),
        supercell=(3, 3, 1),
    ),
    Example(
        name="LiMn2O4_spinel", kind="cathode", spacegroup="Fd-3m:2",
        lattice=(8.245, 8.245, 8.245, 90, 90, 90),
        species=("Li", "Mn", "O"),
        coords=((0.125, 0.125, 0.125), (0.5, 0.5, 0.5), (0.2631, 0.2631, 0.2631)),
        ion="Li",
        source="cubic spinel LiMn2O4, Fd-3m origin choice 2: Li 8a, Mn 16d, O 32e (x = 0.263); "
               "Thackeray, Prog. Solid State Chem. 25, 1 (1997)",
        bonds=(("Mn", "O", 1.90, 2.00), ("Li", "O", 1.90, 2.05)),
    ),
    Example(
        name="Li3N", kind="electrolyte", spacegroup="P6/mmm",
        lattice=(3.648, 3.648, 3.875, 90, 90, 120),
        species=("Li", "Li", "N"),
        coords=((1 / 3, 2 / 3, 0.0), (0.0, 0.0, 0.5), (0.0, 0.0, 0.0)),
        ion="Li",
        source="alpha-Li3N, P6/mmm: Li(2) 2c in the Li2N planes, Li(1) 1b between them, N 1a; "
               "Rabenau & Schulz, J. Less-Common Met. 50, 155 (1976)",
        bonds=(("Li", "N", 1.90, 2.15),),
        supercell=(3, 3, 3),
    ),
    Example(
        name="Na3PS4_cubic", kind="electrolyte", spacegroup="I-43m",
        lattice=(6.9965, 6.9965, 6.9965, 90, 90, 90),
        species=("Na", "P", "S"),
        coords=((0.0, 0.5, 0.5), (0.0, 0.0, 0.0), (0.1704, 0.1704, 0.1704)),
        ion="Na",
        source="cubic Na3PS4 (ordered model), I-43m: Na 6b, P 2a, S 8c; "
               "Jansen & Henseler, J. Solid State Chem. 99, 110 (1992); Hayashi et al., Nat. Commun. 3, 856 (2012)",
        bonds=(("P", "S", 2.00, 2.10), ("Na", "S", 2.80, 3.05)),
        supercell=(2, 2, 2),
    ),
    Example(
        name="LiF", kind="rock salt (NEB demo)", spacegroup="Fm-3m",
        lattice=(4.027, 4.027, 4.027, 90, 90, 90),
        species=("Li", "F"),
        coords=((0.0, 0.0, 0.0), (0.5, 0.5, 0.5)),
        ion="Li",
        source="rock-salt LiF, Fm-3m: Li 4a, F 4b, a = 4.027 Å; Wyckoff, Crystal Structures vol. 1 (1963); "
               "the conventional cell, small enough for a CHGNet NEB in seconds",
        bonds=(("Li", "F", 1.98, 2.04),),
    ),
)

#: ion-free hosts (screened with the ion inserted at interstitial sites); not in index.json,
#: which lists ion hops. Same fields; ``ion`` is the ion the host is meant for.
HOSTS: tuple[Example, ...] = (
    Example(
        name="FePO4", kind="delithiated cathode", spacegroup="Pnma",
        lattice=(10.332, 6.010, 4.692, 90, 90, 90),
        species=("Fe", "P", "O", "O", "O"),
        coords=((0.28222, 0.25, 0.97472), (0.09486, 0.25, 0.41820),
                (0.09678, 0.25, 0.74279), (0.45710, 0.25, 0.20602), (0.16558, 0.04690, 0.28492)),
        ion="Li",
        source="the LiFePO4 olivine above with every Li removed (the delithiated olivine, heterosite "
               "FePO4's frame; the relaxed FePO4 cell is ~6 % smaller: Andersson et al., Solid State "
               "Ionics 130, 41 (2000))",
        bonds=(("P", "O", 1.48, 1.60), ("Fe", "O", 1.98, 2.20)),
    ),
)


def build(ex: Example):
    """The conventional cell of ``ex`` repeated ``ex.supercell`` times (so that the cells have
    about 50-130 atoms, like the training cells, and every short hop joins two distinct sites),
    with the mobile ion's sites first (then the others, in the order of ``species``)."""
    from pymatgen.core import Lattice, Structure

    a, b, c, al, be, ga = ex.lattice
    s = Structure.from_spacegroup(ex.spacegroup, Lattice.from_parameters(a, b, c, al, be, ga),
                                  list(ex.species), [list(x) for x in ex.coords], tol=1e-4)
    s.make_supercell(list(ex.supercell))
    order = sorted(range(len(s)), key=lambda i: (s[i].specie.symbol != ex.ion, i))  # stable for hosts
    return Structure(s.lattice, [s[i].specie for i in order], s.frac_coords[order])


def check(ex: Example, s) -> None:
    """Raise if the cell is not what the literature describes (too-short or too-long bonds)."""
    d = s.distance_matrix + np.eye(len(s)) * 1e3
    symbols = np.array([sp.symbol for sp in s.species])
    if d.min() < 1.4:
        raise SystemExit(f"{ex.name}: atoms {d.min():.2f} Å apart")
    for A, B, lo, hi in ex.bonds:
        rows, cols = symbols == A, symbols == B
        nearest = d[rows][:, cols].min(axis=1)  # each A's nearest B (periodic images included)
        if nearest.min() < lo or nearest.max() > hi:
            raise SystemExit(f"{ex.name}: {A}-{B} nearest distances {nearest.min():.3f}-{nearest.max():.3f} Å "
                             f"outside {lo}-{hi} Å")


def shortest_hop(s, ion: str) -> tuple[int, float]:
    """(index, length Å) of the nearest other ``ion`` site to site 0."""
    idx = [i for i, sp in enumerate(s.species) if sp.symbol == ion and i != 0]
    dist = s.lattice.get_all_distances(s.frac_coords[:1], s.frac_coords[idx])[0]
    k = int(np.argmin(dist))
    return idx[k], float(dist[k])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE), help="folder to write into (default: examples/)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent / "src"))
    from hopnet.structures import read_structure, write_structure

    out = Path(args.out)
    index = []
    for ex in EXAMPLES:
        s = build(ex)
        check(ex, s)
        j, length = shortest_hop(s, ex.ion)
        path = write_structure(s, out / f"{ex.name}.cif")
        back = read_structure(path)
        if [sp.symbol for sp in back.species] != [sp.symbol for sp in s.species] or \
                not np.allclose(back.frac_coords % 1.0, s.frac_coords % 1.0, atol=1e-5):
            raise SystemExit(f"{ex.name}: the CIF does not read back in the same site order")
        index.append({
            "name": ex.name, "file": path.name, "kind": ex.kind, "formula": s.composition.reduced_formula,
            "spacegroup": ex.spacegroup.split(":")[0], "n_atoms": len(s), "ion": ex.ion,
            "lattice_abc_deg": list(ex.lattice), "source": ex.source,
            "hop": {"from": 0, "to": j, "length_a": round(length, 4)},
        })
        print(f"{path.name:24s} {s.composition.reduced_formula:9s} {len(s):3d} atoms  "
              f"{ex.ion} hop 0 -> {j}: {length:.3f} Å")
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    for ex in HOSTS:
        s = build(ex)
        check(ex, s)
        path = write_structure(s, out / f"{ex.name}.cif")
        print(f"{path.name:24s} {s.composition.reduced_formula:9s} {len(s):3d} atoms  host for {ex.ion}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
