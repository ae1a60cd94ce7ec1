"""``hopnet neb``: the universal-potential baseline -- climbing-image NEB with CHGNet.

Either one vacancy hop in a structure file (``STRUCTURE --ion Li --from I --to J``) or the band
entries of a data set (``--data FILE.json[.gz]``). Prints the barrier (eV) and the time of each
path; ``--output FILE.jsonl`` appends one JSON line per finished path and resumes a rerun.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

from hopnet.infra.errors import HopnetError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "neb", help="CHGNet climbing-image NEB barrier of a hop (universal-potential baseline)",
        description="Climbing-image NEB with the CHGNet universal potential (needs the 'neb' "
                    "extra). Give a structure file with --ion/--from/--to (a vacancy hop of the ion "
                    "from site I into the vacant site J), or --data with band-format entries.",
    )
    p.add_argument("structure", nargs="?", default=None,
                   help="structure file (CIF, POSCAR, ...) holding the ion at both sites")
    p.add_argument("--ion", default=None, help="migrating ion (element symbol), with STRUCTURE")
    p.add_argument("--from", dest="start", type=int, default=None, metavar="I",
                   help="site index the ion starts on (0-based), with STRUCTURE")
    p.add_argument("--to", dest="end", type=int, default=None, metavar="J",
                   help="site index it hops into (0-based; emptied first), with STRUCTURE")
    p.add_argument("--data", default=None, metavar="FILE",
                   help="data-set name or .json/.json.gz list of band entries (atoms, target, sys_name)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N entries of --data")
    p.add_argument("--output", default=None, metavar="FILE.jsonl",
                   help="append one JSON line per finished path; paths already there are skipped")
    p.add_argument("--fmax", type=float, default=0.05, help="NEB force convergence (eV/Å, default 0.05)")
    p.add_argument("--steps", type=int, default=200, help="maximum NEB optimiser steps (default 200)")
    p.add_argument("--relax-steps", type=int, default=200,
                   help="maximum steps of each end-point relaxation (default 200)")
    p.add_argument("--no-relax", action="store_true", help="keep the end points as given")
    p.add_argument("--images", type=int, default=None,
                   help="images counting both end points (default: 5, as in the data set)")
    p.add_argument("--interpolation", default="idpp", choices=("idpp", "linear"),
                   help="initial band: IDPP (default) or the straight line")
    p.add_argument("--optimizer", default="FIRE", choices=("FIRE", "BFGS", "LBFGS"),
                   help="optimiser of the band (default FIRE)")
    p.add_argument("--relax-optimizer", default="LBFGS", choices=("FIRE", "BFGS", "LBFGS"),
                   help="optimiser of the end points (default LBFGS)")
    p.add_argument("--potential", default="chgnet", choices=("chgnet", "sevennet"),
                   help="universal potential (default chgnet; sevennet needs `pip install sevenn`)")
    p.add_argument("--cell", default="given", choices=("given", "canonical"),
                   help="run in the path's own cell (default) or its canonical cell: primitive, "
                        "Niggli-reduced, the smallest diagonal supercell --min-width wide (as screening)")
    p.add_argument("--min-width", type=float, default=6.5, metavar="Å",
                   help="narrowest width of the canonical cell (default 6.5 Å)")
    p.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="CPU seconds per path; the band stops where it is, flagged (default: none)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="with --data: run only entries k, k+N, k+2N, ... (0-based; for parallel workers)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="sealed cache of finished bands, by band + potential + settings: a repeated hop "
                        "is read, not recomputed (default: $HOPNET_CACHE_DIR/neb or ~/.cache/hopnet/neb)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache (default: use it)")
    p.add_argument("--json", action="store_true", help="one JSON line per path on stdout")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> Any:
    from hopnet.neb import NebConfig

    if not math.isfinite(args.fmax) or args.fmax <= 0:
        raise HopnetError(f"--fmax must be a positive number of eV/Å, got {args.fmax}")
    return NebConfig(
        fmax=args.fmax, steps=args.steps, relax=not args.no_relax, relax_fmax=args.fmax,
        relax_steps=args.relax_steps, n_images=args.images,
        interpolation=args.interpolation, optimizer=args.optimizer, relax_optimizer=args.relax_optimizer,
        potential=args.potential,
        cell=args.cell, min_width=args.min_width, time_budget=args.time_budget,
    )


def _paths(args: argparse.Namespace) -> list[tuple[str, Any, dict]]:
    """Every (id, MigrationPath, meta) to run, built and checked before any NEB starts."""
    from hopnet.paths import MigrationPath

    if (args.structure is None) == (args.data is None):
        raise HopnetError("give either a STRUCTURE file (with --ion, --from, --to) or --data FILE")
    if args.shard is not None and args.structure is not None:
        raise HopnetError("--shard applies to --data only")
    if args.structure is not None:
        missing = [o for o, v in (("--ion", args.ion), ("--from", args.start), ("--to", args.end)) if v is None]
        if missing:
            raise HopnetError(f"a STRUCTURE needs {', '.join(missing)}")
        if args.limit is not None:
            raise HopnetError("--limit applies to --data only")
        path = MigrationPath.from_sites(args.structure, args.ion, args.start, args.end,
                                        n_images=5, validate=True)
        pid = f"{args.structure}:{args.ion}:{args.start}->{args.end}"
        return [(pid, path, {"structure": str(args.structure)})]
    if any(v is not None for v in (args.ion, args.start, args.end)):
        raise HopnetError("--ion/--from/--to apply to a STRUCTURE, not to --data")
    if args.limit is not None and args.limit < 1:
        raise HopnetError(f"--limit must be at least 1, got {args.limit}")
    from hopnet.datasets import load
    from hopnet.neb import paths_from_entries

    entries = list(load(args.data))
    if args.limit is not None:
        entries = entries[: args.limit]
    if args.shard is not None:
        k, n = _shard(args.shard)
        entries = entries[k::n]
    if not entries:
        raise HopnetError(f"{args.data}: no entries")
    return paths_from_entries(entries)


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise HopnetError(f"--shard must be K/N with 0 <= K < N, got {text!r}") from None
    if not 0 <= k < n:
        raise HopnetError(f"--shard must be K/N with 0 <= K < N, got {text!r}")
    return k, n


def run(args: argparse.Namespace) -> int:
    from hopnet.neb import _potential, read_results, run_neb_many

    config = _config(args)
    items = _paths(args)
    from hopnet.neb_cache import NebCache

    cache = None if args.no_cache else NebCache(args.cache_dir)
    _potential(config)  # fails with one line before any output
    done = {str(r.get("id")) for r in read_results(args.output)} if args.output else set()
    todo = sum(pid not in done for pid, _, _ in items)
    t0, n_run = time.monotonic(), 0
    for pid, path, meta in items:
        if pid in done:
            if not args.json:
                print(f"{pid}: already in {args.output}, skipped")
            continue
        for r in run_neb_many([(pid, path, meta)], config, args.output, cache=cache):
            n_run += 1
            if todo > 1:  # progress of a long run, on stderr: done / to do, time left at this pace
                left = (time.monotonic() - t0) / n_run * (todo - n_run)
                print(f"hopnet neb: {n_run}/{todo} paths, about {left / 60:.0f} min left", file=sys.stderr, flush=True)
            if isinstance(r, dict):  # a path that failed: its error row
                print(json.dumps(r, sort_keys=True) if args.json else f"{pid}: failed: {r['error']}")
                continue
            if args.json:
                print(json.dumps(r.to_dict(), sort_keys=True))
            else:
                state = "converged" if r.converged else f"NOT converged (max force {r.max_force:.3f} eV/Å)"
                ref = meta.get("target")
                ref_s = f"  (reference {ref:.3f} eV)" if isinstance(ref, float) else ""
                print(f"{pid}: barrier {r.forward_barrier:.3f} eV, reverse {r.reverse_barrier:.3f} eV"
                      f"{ref_s}; {state} in {r.n_steps} steps; "
                      + ("from the cache" if r.cached else f"{r.wall_s:.1f} s"))
            sys.stdout.flush()
    return 0
