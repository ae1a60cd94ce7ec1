"""``hopnet screen``: every symmetry-distinct hop of a mobile ion in one or many structures, its
predicted barrier, and the 1-/2-/3-D percolation barriers of the hop network.

    hopnet screen examples/LiFePO4_olivine.cif --ion Li
    hopnet screen "cifs/*.cif" --ion Na --csv hops.csv --json hops.json --plot hops.png
    hopnet screen LiFePO4.cif --ion Li --hop 0 4            # explicit hops instead of the search

STRUCTURE may be files, folders (every structure file in them) or glob patterns. A structure that
fails is reported and skipped; the summary lists the failures; the exit code is non-zero only when
every structure failed. Output files are written atomically at the end, and not at all on error.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

from hopnet.errors import HopnetError

_STRUCTURE_SUFFIXES = {".cif", ".mcif", ".vasp", ".poscar", ".xyz", ".extxyz", ".cssr", ".res", ".xsf", ".cell"}
_STRUCTURE_PREFIXES = ("POSCAR", "CONTCAR")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "screen", help="find and predict every distinct hop of an ion, with percolation barriers",
        description="Find the symmetry-distinct hops of the mobile ion (pymatgen-analysis-diffusion's "
                    "migration graph), predict each barrier E_m (eV), and report the percolation "
                    "barriers: the lowest E_m at which the hops connect into an infinite 1-, 2- and "
                    "3-D network.",
    )
    p.add_argument("structures", nargs="+", metavar="STRUCTURE",
                   help="structure file(s) (CIF, POSCAR, ...), folder(s) or glob pattern(s)")
    p.add_argument("--ion", required=True, help="migrating ion, e.g. Li")
    p.add_argument("--max-hop", type=float, default=5.0, metavar="Å",
                   help="longest ion-ion hop considered (default 5.0 Å)")
    p.add_argument("--symprec", type=float, default=0.1,
                   help="symmetry tolerance for grouping equivalent hops (default 0.1)")
    p.add_argument("--hop", dest="hops", type=int, nargs=2, action="append", default=None, metavar=("I", "J"),
                   help="explicit hop between ion sites I and J (0-based; repeatable) instead of the search")
    p.add_argument("--model", default="default", metavar="NAME|DIR",
                   help="shipped model name or model folder (default: default)")
    p.add_argument("--threshold", type=float, default=None, metavar="EV",
                   help="good-conductor cut (default 0.65 eV, or the threshold barrier of "
                        "--particle-size/--c-rate/--temperature when one of them is given)")
    p.add_argument("--particle-size", default=None, metavar="L",
                   help="classify with the threshold barrier for this particle size (e.g. 100nm, 1um)")
    p.add_argument("--c-rate", type=float, default=None, metavar="C", help="C-rate for the threshold barrier")
    p.add_argument("--temperature", type=float, default=None, metavar="K",
                   help="temperature for the threshold barrier (K)")
    p.add_argument("--max-atoms", type=int, default=None, metavar="N",
                   help="refuse cells with more atoms (default 2000)")
    p.add_argument("--csv", default=None, metavar="FILE", help="write one row per hop to this CSV file")
    p.add_argument("--json", default=None, metavar="FILE", help="write the full results to this JSON file")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="per-hop bar chart (one file per structure, named FILE_<structure>.png when several)")
    p.set_defaults(func=run)


def expand_inputs(items: list[str]) -> list[Path]:
    """Files named, structure files inside folders, and glob matches, in order, without repeats.
    A name that matches nothing is kept (it fails later, as one bad structure)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and _looks_like_structure(f))
            if not found:
                raise HopnetError(f"no structure files (CIF, POSCAR, ...) in folder {p}")
            out.extend(found)
        elif not p.exists() and glob.has_magic(item):
            found = sorted(Path(f) for f in glob.glob(item) if Path(f).is_file())
            if not found:
                raise HopnetError(f"no file matches {item!r}")
            out.extend(found)
        else:
            out.append(p)
    seen: set[str] = set()
    return [p for p in out if not (str(p) in seen or seen.add(str(p)))]  # type: ignore[func-returns-value]


def _looks_like_structure(f: Path) -> bool:
    hidden = f.name.startswith(".")
    return not hidden and (f.suffix.lower() in _STRUCTURE_SUFFIXES or f.name.startswith(_STRUCTURE_PREFIXES))


def _threshold(args: argparse.Namespace) -> float:
    from hopnet.metrics import DEFAULT_THRESHOLD_EV

    physical = any(x is not None for x in (args.particle_size, args.c_rate, args.temperature))
    if args.threshold is not None and physical:
        raise HopnetError("give --threshold or --particle-size/--c-rate/--temperature, not both")
    if physical:
        from hopnet import physics as ph

        kw: dict[str, float] = {}
        if args.particle_size is not None:
            kw["particle_size_nm"] = ph.parse_size(args.particle_size)
        if args.c_rate is not None:
            kw["c_rate"] = args.c_rate
        if args.temperature is not None:
            kw["temperature"] = args.temperature
        return float(ph.threshold_barrier(**kw))
    t = DEFAULT_THRESHOLD_EV if args.threshold is None else float(args.threshold)
    if not math.isfinite(t):
        raise HopnetError(f"--threshold must be a finite number of eV, got {t}")
    return t


def _check_outputs(args: argparse.Namespace) -> None:
    if args.plot is not None and not str(args.plot).lower().endswith(".png"):
        raise HopnetError(f"--plot must name a .png file, got {args.plot}")
    for flag in ("csv", "json", "plot"):
        f = getattr(args, flag)
        if f is not None and Path(f).is_dir():
            raise HopnetError(f"--{flag} {f} is a folder, not a file")


def run(args: argparse.Namespace) -> int:
    from hopnet.predict import DEFAULT_MAX_ATOMS
    from hopnet.provenance import atomic_write_bytes, atomic_write_text, run_record
    from hopnet.screen import CSV_COLUMNS, hop_bar_chart, screen

    if not (math.isfinite(args.max_hop) and args.max_hop > 0):
        raise HopnetError(f"--max-hop must be a positive length in Å, got {args.max_hop}")
    if not (math.isfinite(args.symprec) and args.symprec > 0):
        raise HopnetError(f"--symprec must be positive, got {args.symprec}")
    max_atoms = DEFAULT_MAX_ATOMS if args.max_atoms is None else args.max_atoms
    if max_atoms < 1:
        raise HopnetError(f"--max-atoms must be positive, got {max_atoms}")
    threshold = _threshold(args)
    _check_outputs(args)
    files = expand_inputs(args.structures)
    explicit = [tuple(h) for h in args.hops] if args.hops else None

    from tqdm.auto import tqdm

    results, failures = [], []
    bar = tqdm(files, desc="screen", unit="structure", file=sys.stderr, disable=len(files) < 2 or None)
    for f in bar:
        try:
            r = screen(str(f), args.ion, max_hop=args.max_hop, symprec=args.symprec, model=args.model,
                       explicit_hops=explicit, threshold=threshold, source=str(f), max_atoms=max_atoms)
        except HopnetError as exc:
            failures.append({"source": str(f), "error": str(exc)})
            tqdm.write(f"hopnet: error: {f}: {exc}", file=sys.stderr)
            continue
        results.append(r)
        for w in r.warnings:
            tqdm.write(f"hopnet: warning: {f}: {w}", file=sys.stderr)
        tqdm.write(r.table() + "\n", file=sys.stdout)
    bar.close()

    if len(files) > 1 or failures:
        print(f"screened {len(files)} structure(s): {len(results)} ok, {len(failures)} failed")
        for fail in failures:
            print(f"  failed: {fail['source']}: {fail['error']}")
    if not results:
        if len(failures) == 1:
            raise HopnetError(f"{failures[0]['source']}: {failures[0]['error']}")
        raise HopnetError(f"all {len(failures)} structures failed; no output written")

    outputs: list[tuple[str, Any]] = []  # render everything first, then write
    if args.json:
        payload = {"results": [r.to_dict() for r in results], "failures": failures,
                   "provenance": run_record({"ion": args.ion, "max_hop": args.max_hop, "symprec": args.symprec,
                                             "model": args.model, "threshold": threshold, "hops": explicit})}
        outputs.append((args.json, json.dumps(payload, indent=1) + "\n"))
    if args.csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in results:
            w.writerows(r.csv_rows())
        outputs.append((args.csv, buf.getvalue()))
    if args.plot:
        base = Path(args.plot)
        for r in results:
            target = base if len(files) == 1 else base.with_name(f"{base.stem}_{Path(r.source).stem}{base.suffix}")
            outputs.append((str(target), hop_bar_chart(r)))
    for target, content in outputs:
        if isinstance(content, bytes):
            atomic_write_bytes(target, content)
        else:
            atomic_write_text(target, content)
    return 0
