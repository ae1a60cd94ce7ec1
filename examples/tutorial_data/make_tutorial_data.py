"""Write the tiny fine-tuning example of ``docs/tutorial.md``: a handful of structures and a CSV of
(structure file, target) rows, the format ``hopnet finetune --data FILE.csv`` reads.

    python examples/tutorial_data/make_tutorial_data.py     # (re)writes examples/tutorial_data/

The structures are the primitive cells of the shipped examples (``examples/*.cif``, built from
published Wyckoff positions), each also isotropically strained by -3 % and +3 % in lattice
constant: 15 small cells (4-28 atoms). Nothing comes from the data sets.

The targets are DEMO NUMBERS, not measurements: the volume per atom (Å³/atom) of each cell,
computed here, rounded to 3 decimals. They stand in for your own property (a computed barrier
per compound, a measured conductivity, ...) so that the tutorial can show the file format and a
fine-tuning run end to end; a model trained on them learns nothing about migration.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent
NAMES = ("LiFePO4_olivine", "LiCoO2_layered", "LiMn2O4_spinel", "Li3N", "Na3PS4_cubic")
SCALES = {"m3": 0.97, "0": 1.00, "p3": 1.03}  # file tag -> lattice-constant factor
CSV_NAME = "demo_targets.csv"


def rows(out: Path) -> list[tuple[str, float]]:
    """Write the strained primitive cells into ``out``; (file name, demo target) per cell."""
    from hopnet.structures import read_structure, write_structure

    table = []
    for name in NAMES:
        prim = read_structure(EXAMPLES / f"{name}.cif").get_primitive_structure(tolerance=0.01)
        for tag, scale in SCALES.items():
            s = prim.copy()
            s.scale_lattice(prim.volume * scale**3)
            fname = f"{name}_{tag}.cif"
            write_structure(s, out / fname)
            table.append((fname, round(s.volume / len(s), 3)))  # DEMO target: Å³ per atom
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE), help="folder to write into (default: examples/tutorial_data/)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = rows(out)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["structure", "demo_volume_per_atom"])
    w.writerows(table)
    from hopnet.infra.provenance import atomic_write_text

    atomic_write_text(out / CSV_NAME, buf.getvalue())
    print(f"wrote {len(table)} structures and {out / CSV_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
