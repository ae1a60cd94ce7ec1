"""``hopnet predict``: the migration barrier of one hop (or of every band in a data-set file).

    hopnet predict STRUCTURE --ion Li --from I --to J            # vacancy hop between two sites
    hopnet predict STRUCTURE --ion Li --from-frac x y z --to-frac x y z   # any two points
    hopnet predict band.json                                     # band(s) in the data-set format

Prints E_m ± σ (eV; σ calibrated on grouped CV when the model has a calibration, else the
ensemble spread), the conductor class and P(E_m < threshold) at ``--threshold``; ``--json``
prints JSON instead, ``--output FILE.json`` writes it (atomically, only when everything worked).
Out-of-domain hops get a warning on stderr, not an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hopnet.cli.common import check_output_file, check_threshold
from hopnet.infra.errors import HopnetError, PathError, StructureError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict", help="predict the migration barrier of a hop",
        description="Predict the migration barrier E_m (eV) of an ion hop with a trained model. Give a "
                    "structure with --ion and the two end points (site indices with --from/--to, or "
                    "fractional coordinates with --from-frac/--to-frac; the two can be mixed), or a band "
                    "file in the data-set format (a JSON entry, atoms dict or list of entries).",
    )
    p.add_argument("structure", metavar="STRUCTURE",
                   help="CIF, POSCAR/CONTCAR, anything pymatgen/ASE reads, or a band JSON file")
    p.add_argument("--ion", default=None, help="migrating ion, e.g. Li (required unless STRUCTURE is a band)")
    p.add_argument("--from", dest="start", type=int, default=None, metavar="I",
                   help="site index (0-based) the ion starts on")
    p.add_argument("--to", dest="end", type=int, default=None, metavar="J",
                   help="site index (0-based) of the vacancy it hops into")
    p.add_argument("--from-frac", dest="start_frac", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="fractional coordinates of the start point (instead of --from)")
    p.add_argument("--to-frac", dest="end_frac", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="fractional coordinates of the end point (instead of --to)")
    p.add_argument("--model", default="default", metavar="NAME|DIR",
                   help="shipped model name or model folder (default: default)")
    # defaults resolved in run(): importing hopnet.metrics here would slow down `hopnet --help`
    p.add_argument("--threshold", type=float, default=None, metavar="EV",
                   help="good-conductor cut: E_m below it is 'good' (default 0.65 eV, "
                        "hopnet.metrics.DEFAULT_THRESHOLD_EV; see `hopnet rate` for other particle sizes)")
    p.add_argument("--max-atoms", type=int, default=None, metavar="N",
                   help="refuse cells with more atoms (default 2000, hopnet.inference.DEFAULT_MAX_ATOMS)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--output", default=None, metavar="FILE.json",
                   help="also write the JSON result to this file (atomically)")
    p.set_defaults(func=run)


def _end(index: int | None, frac: list[float] | None, flag: str) -> Any:
    if index is not None and frac is not None:
        raise HopnetError(f"give --{flag} or --{flag}-frac, not both")
    return index if index is not None else frac


def _read_band_list(path: Path) -> list | None:
    """Entries of a data-set-format JSON file (a list of entries, one entry, or an atoms dict);
    None for any other kind of file."""
    name = path.name.lower()
    if not name.endswith((".json", ".json.gz")):
        return None
    if not path.is_file():
        raise StructureError(f"cannot read structure from {path}: file not found")
    from monty.io import zopen

    try:
        with zopen(str(path), "rt") as fh:
            obj = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StructureError(f"cannot read structure from {path}: not valid JSON ({str(exc).splitlines()[0]})") from None
    if isinstance(obj, list):
        if not obj:
            raise StructureError(f"cannot read structure from {path}: empty list")
        return obj
    if isinstance(obj, dict) and ("atoms" in obj or "lattice_mat" in obj):
        return [obj]
    return None  # e.g. a pymatgen Structure dict: read as a structure


def _items(args: argparse.Namespace) -> list:
    start = _end(args.start, args.start_frac, "from")
    end = _end(args.end, args.end_frac, "to")
    path = Path(args.structure)
    if start is None and end is None:
        entries = _read_band_list(path)
        if entries is None:
            if args.ion is None:
                raise HopnetError("give --ion and the end points (--from/--to or --from-frac/--to-frac), "
                                  "or a band file")
            entries = [{"structure": str(path), "ion": args.ion, "start": None, "end": None}]
        elif args.ion is not None:
            from hopnet.paths import as_path

            for k, e in enumerate(entries):
                ion = as_path(e).ion if isinstance(e, dict) else None
                if ion is not None and ion != args.ion:
                    raise PathError(f"entry {k}: the band's migrating ion is {ion}, not {args.ion}")
        return entries
    if start is None or end is None:
        raise HopnetError("give both ends of the hop: --from/--from-frac and --to/--to-frac")
    if args.ion is None:
        raise HopnetError("--ion is required with --from/--to (e.g. --ion Li)")
    if args.start is not None and args.end is not None and args.start == args.end:
        raise HopnetError(f"--from and --to are the same site ({args.start})")
    return [{"structure": str(path), "ion": args.ion, "start": start, "end": end}]


def run(args: argparse.Namespace) -> int:
    from hopnet.metrics import DEFAULT_THRESHOLD_EV
    from hopnet.inference import DEFAULT_MAX_ATOMS, predict_many
    from hopnet.infra.provenance import atomic_write_text

    if args.threshold is None:
        args.threshold = DEFAULT_THRESHOLD_EV
    if args.max_atoms is None:
        args.max_atoms = DEFAULT_MAX_ATOMS
    args.threshold = check_threshold(args.threshold)
    check_output_file(args.output, "--output")
    if args.max_atoms < 1:
        raise HopnetError(f"--max-atoms must be positive, got {args.max_atoms}")
    items = _items(args)
    try:
        results = predict_many(items, model=args.model, threshold=args.threshold, max_atoms=args.max_atoms)
    except PathError as exc:
        if "not a band" not in str(exc) or len(items) != 1:
            raise
        raise PathError(f"no hop given: add --from I --to J or --from-frac/--to-frac "
                        f"({Path(args.structure).name} is not a band file)") from None
    for r in results:
        for w in r.warnings:
            print(f"hopnet: warning: {(r.label + ': ') if r.label else ''}{w}", file=sys.stderr)
    rows = [r.to_dict() for r in results]
    payload: Any = rows[0] if len(rows) == 1 else rows
    text = json.dumps(payload, indent=1)
    if args.output:
        atomic_write_text(args.output, text + "\n")
    if args.json:
        print(text)
        return 0
    for r in results:
        print(_line(r, args.structure))
    return 0


def _line(r: Any, source: str) -> str:
    p = r.path
    what = r.label or f"{Path(source).name}"
    head = f"{what}: {p.ion} hop {p.hop_length:.2f} Å in {p.host.composition.reduced_formula} ({len(p.host)} host atoms)"
    cls = "good conductor" if r.conductor_class == "good" else "poor conductor"
    rel = "<" if r.conductor_class == "good" else ">="
    ref = f"  [reference {r.reference:.3f} eV]" if r.reference is not None else ""
    line = (f"{head}\n  E_m = {r.barrier:.3f} ± {r.std:.3f} eV  ->  {cls} (E_m {rel} {r.threshold:g} eV)"
            f"  [model {r.model}]{ref}")
    if getattr(r, "calibrated", False):
        line += (f"\n  ± σ (calibrated on grouped CV; ensemble spread {r.ensemble_std:.3f} eV), "
                 f"P(E_m < {r.threshold:g} eV) = {r.p_good:.2f}")
    return line
