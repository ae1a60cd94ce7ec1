"""Write ``examples/Cu_vacancy_neb.extxyz``: a climbing-image NEB (ASE, EMT potential, seconds) of
a vacancy hop in fcc Cu, the 5 images with their energies -- a stand-in for a user's own NEB run
that ``hopnet import-neb`` turns into training data (README, docs/import-neb.md).

    python examples/make_neb_example.py
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.mep import NEB
from ase.optimize import BFGS, FIRE


def vacancy_neb(metal: str = "Cu", a: float = 3.61, trajectory: str | None = None) -> list:
    """The 5 images (with EMT energies) of a climbing-image NEB of the hop of a neighbour of site
    0 into the vacancy at site 0 of an fcc ``metal`` (lattice constant ``a`` Å), 2x2x2 cubic cells;
    ``trajectory``: also write the optimiser's trajectory of the whole band there."""
    atoms = bulk(metal, "fcc", a=a, cubic=True).repeat((2, 2, 2))
    j = int(np.argmin(atoms.get_distances(0, range(1, len(atoms)), mic=True)))  # a neighbour of site 0
    site = atoms.positions[0].copy()
    del atoms[0]                                     # the vacancy; atom j hops into it
    initial, final = atoms.copy(), atoms.copy()
    final.positions[j] = site
    for end in (initial, final):
        end.calc = EMT()
        BFGS(end, logfile=None).run(fmax=0.05, steps=50)
    images = [initial] + [initial.copy() for _ in range(3)] + [final]
    for image in images[1:-1]:
        image.calc = EMT()
    neb = NEB(images, climb=True, method="improvedtangent")
    neb.interpolate(mic=True)
    FIRE(neb, logfile=None, trajectory=trajectory).run(fmax=0.1, steps=300)
    for image in images:
        image.get_potential_energy()
    return images


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "Cu_vacancy_neb.extxyz"
    ase.io.write(out, vacancy_neb())
    print(f"wrote {out}")
