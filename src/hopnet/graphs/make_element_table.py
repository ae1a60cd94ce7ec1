"""Generate ``src/hopnet/data/element_features.json``: the 92-dimensional element embedding.

Run ``python -m hopnet.graphs.make_element_table`` (add ``--check`` to only compare with the
stored file). The table is computed from pymatgen's element data and stores, for every element
Z = 1..118, one bin index per property block (-1 where pymatgen has no data, which becomes an
all-zero block). :mod:`hopnet.graphs.features` expands the indices into one-hot vectors.

Blocks (CGCNN-like in kind, bins are ours), 92 columns in this order:

======================  ====  =================================================================
block                   bins  rule
======================  ====  =================================================================
group                   19    IUPAC group 1..18 (pymatgen ``Element.group``); bin 19 = f-block
                              (pymatgen ``Element.block == "f"``: La-Yb, Ac-No)
period                  7     row 1..7
electronegativity       10    Pauling X, linear bins on [0.7, 4.0]
atomic radius           10    empirical radius (Slater), else calculated radius, Å,
                              linear bins on [0.25, 2.75] (stands in for the covalent radius)
valence electrons       12    outer ns + np electrons, plus (n-1)d for d- and f-block, plus
                              (n-2)f for the f-block unless that shell is full; 1..12 (clipped)
first ionisation energy 10    eV, bins linear in log(E) on [3.5, 25]
electron affinity       10    eV, linear bins on [-1.0, 3.7]
block                   4     s, p, d, f (pymatgen ``Element.block``)
atomic volume           10    molar volume / N_A in Å^3, bins linear in log(V) on [6, 120]
======================  ====  =================================================================

Values outside a bin range go to the first or last bin.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

#: (name, number of bins, low, high, scale) for each block; scale "log" bins log(value).
BLOCKS: list[tuple[str, int, float | None, float | None, str]] = [
    ("group", 19, None, None, "index"),
    ("period", 7, None, None, "index"),
    ("electronegativity", 10, 0.7, 4.0, "linear"),
    ("atomic_radius", 10, 0.25, 2.75, "linear"),
    ("valence_electrons", 12, None, None, "index"),
    ("first_ionisation_energy", 10, 3.5, 25.0, "log"),
    ("electron_affinity", 10, -1.0, 3.7, "linear"),
    ("block", 4, None, None, "index"),
    ("atomic_volume", 10, 6.0, 120.0, "log"),
]
Z_MAX = 118
TABLE_FORMAT = 1
AVOGADRO = 6.02214076e23
OUTPUT = Path(__file__).resolve().parents[1] / "data" / "element_features.json"


def _bin(value: float | None, n: int, lo: float, hi: float, scale: str) -> int:
    if value is None or not math.isfinite(value):
        return -1
    if scale == "log":
        if value <= 0:
            return 0
        value, lo, hi = math.log(value), math.log(lo), math.log(hi)
    idx = math.floor((value - lo) / (hi - lo) * n)
    return min(max(idx, 0), n - 1)


def _attr(element: Any, name: str) -> Any:
    try:
        return getattr(element, name)
    except Exception:  # pymatgen raises assorted errors for missing data
        return None


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _valence(element: Any, row: int, block: str) -> int | None:
    config = _attr(element, "full_electronic_structure")
    if not config:
        return None
    count = 0
    for n, l, occ in config:
        if n == row and l in ("s", "p"):
            count += occ
        elif n == row - 1 and l == "d" and block in ("d", "f"):
            count += occ
        elif n == row - 2 and l == "f" and block == "f" and occ < 14:
            count += occ
    return min(max(int(count), 1), 12)


def element_bins(z: int) -> list[int]:
    """Bin index per block for element ``z`` (-1 = no data)."""
    from pymatgen.core import Element

    el = Element.from_Z(z)
    block = _attr(el, "block")
    group = _attr(el, "group")
    row = _attr(el, "row")
    out: list[int] = []
    # group: 1..18, f-block -> 19th bin
    if block == "f":
        out.append(18)
    elif isinstance(group, int) and 1 <= group <= 18:
        out.append(group - 1)
    else:
        out.append(-1)
    out.append(row - 1 if isinstance(row, int) and 1 <= row <= 7 else -1)
    _, n, lo, hi, sc = BLOCKS[2]
    out.append(_bin(_float(_attr(el, "X")), n, lo, hi, sc))
    radius = _float(_attr(el, "atomic_radius"))
    if radius is None:
        radius = _float(_attr(el, "atomic_radius_calculated"))
    _, n, lo, hi, sc = BLOCKS[3]
    out.append(_bin(radius, n, lo, hi, sc))
    val = _valence(el, row, block) if isinstance(row, int) and block else None
    out.append(val - 1 if val is not None else -1)
    _, n, lo, hi, sc = BLOCKS[5]
    out.append(_bin(_float(_attr(el, "ionization_energy")), n, lo, hi, sc))
    _, n, lo, hi, sc = BLOCKS[6]
    out.append(_bin(_float(_attr(el, "electron_affinity")), n, lo, hi, sc))
    out.append("spdf".index(block) if block in ("s", "p", "d", "f") else -1)
    molar = _float(_attr(el, "molar_volume"))  # cm^3/mol
    volume = molar * 1e24 / AVOGADRO if molar is not None else None
    _, n, lo, hi, sc = BLOCKS[8]
    out.append(_bin(volume, n, lo, hi, sc))
    return out


def build_table() -> dict:
    """The whole table as the JSON-ready dict stored in the package."""
    import pymatgen.core

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        elements = {str(z): element_bins(z) for z in range(1, Z_MAX + 1)}
    return {
        "format": TABLE_FORMAT,
        "generator": "hopnet.graphs.make_element_table",
        "pymatgen_version": getattr(pymatgen.core, "__version__", "unknown"),
        "blocks": [{"name": b[0], "size": b[1], "low": b[2], "high": b[3], "scale": b[4]}
                   for b in BLOCKS],
        "elements": elements,
    }


def dumps(table: dict) -> str:
    """Canonical compact text: one line per element."""
    head = {k: v for k, v in table.items() if k != "elements"}
    lines = [json.dumps(head, sort_keys=True)[:-1] + ', "elements": {']
    items = list(table["elements"].items())
    for i, (z, bins) in enumerate(items):
        sep = "," if i < len(items) - 1 else ""
        lines.append(f'"{z}": {json.dumps(bins, separators=(",", ":"))}{sep}')
    lines.append("}}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored file only")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = dumps(build_table())
    if args.check:
        same = args.output.exists() and args.output.read_text() == text
        sys.stdout.write(("up to date" if same else "DIFFERS") + f": {args.output}\n")
        return 0 if same else 1
    from hopnet.infra.provenance import atomic_write_text

    atomic_write_text(args.output, text)
    sys.stdout.write(f"wrote {args.output}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
