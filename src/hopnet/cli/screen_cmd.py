"""``hopnet screen``: every symmetry-distinct hop of a mobile ion in one or many structures, its
predicted barrier, and the 1-/2-/3-D percolation barriers of the hop network.

    hopnet screen examples/LiFePO4_olivine.cif --ion Li
    hopnet screen "cifs/*.cif" --ion Na --csv hops.csv --json hops.json --plot hops.png
    hopnet screen LiFePO4.cif --ion Li --hop 0 4            # explicit hops instead of the search
    hopnet screen FePO4.cif --ion Li                         # no Li: found interstitial sites
    hopnet screen FePO4.cif --ion Li --insert-frac 0.5 0.25 0.25   # no Li: user-given site(s)

A structure without the ion is a host: the ion is put on user-given fractional sites
(--insert-frac, repeatable) or on the most open symmetry-distinct interstitial sites found in it
(--interstitials, --insert-min-dist), each expanded to its symmetry orbit; the report says which,
and each band holds one ion in the empty host. Bands are built in supercells at least
--min-image-distance Å wide (0: the input cell).

STRUCTURE may be files, folders (every structure file in them) or glob patterns. A structure that
fails is reported and skipped; the summary lists the failures; the exit code is non-zero only when
every structure failed. Output files are streamed: each structure's JSON record, CSV rows and
plots go to temporary files next to the targets as soon as it is screened (and the result is
dropped), so memory stays flat over thousands of structures; at the end the temporaries are
renamed into place. On an error (or when every structure failed) they are removed and no target
is touched.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from hopnet.errors import HopnetError
from hopnet.provenance import remove_stale_temporaries

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
    p.add_argument("--min-image-distance", type=float, default=None, metavar="Å",
                   help="build each band in the smallest diagonal supercell at least this wide "
                        "(default 6.5 Å, about the 10th percentile of the training cells; 0: the input cell)")
    p.add_argument("--insert-frac", dest="insert_frac", type=float, nargs=3, action="append", default=None,
                   metavar=("X", "Y", "Z"),
                   help="for a host without the ion: insert it at this fractional site and its symmetry "
                        "images (repeatable) instead of the found interstitial sites")
    p.add_argument("--interstitials", default=None, metavar="K|all",
                   help="for a host without the ion: use the K most open distinct interstitial sites "
                        "(default 2) or all of them")
    p.add_argument("--insert-min-dist", type=float, default=None, metavar="Å",
                   help="closest approach of an interstitial site to any host atom (default "
                        "0.75 x (ion radius + 1.40 Å): 1.62 Å for Li)")
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
    p.add_argument("--network", default=None, metavar="FILE.png",
                   help="the hop network drawn over the structure, edges coloured by E_m (one file per "
                        "structure, named like --plot)")
    p.add_argument("--axis", choices=("a", "b", "c"), default=None,
                   help="--network: project along this lattice vector (default: the one that shows the "
                        "lowest-barrier hops best)")
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
    for flag in ("plot", "network"):
        f = getattr(args, flag)
        if f is not None and not str(f).lower().endswith(".png"):
            raise HopnetError(f"--{flag} must name a .png file, got {f}")
    for flag in ("csv", "json", "plot", "network"):
        f = getattr(args, flag)
        if f is not None and Path(f).is_dir():
            raise HopnetError(f"--{flag} {f} is a folder, not a file")


def _interstitials(value: str | None) -> int | None:
    """--interstitials: None for all, else a positive count (default :data:`DEFAULT_INTERSTITIALS`)."""
    from hopnet.screen import DEFAULT_INTERSTITIALS

    if value is None:
        return DEFAULT_INTERSTITIALS
    if str(value).strip().lower() == "all":
        return None
    try:
        k = int(value)
    except ValueError:
        raise HopnetError(f"--interstitials must be a positive number or 'all', got {value!r}") from None
    if k < 1:
        raise HopnetError(f"--interstitials must be a positive number or 'all', got {value!r}")
    return k


def _insertion_options(args: argparse.Namespace) -> dict[str, Any]:
    """screen() keyword arguments of --min-image-distance, --insert-frac, --interstitials, --insert-min-dist."""
    from hopnet.screen import DEFAULT_MIN_IMAGE_DISTANCE

    mid = DEFAULT_MIN_IMAGE_DISTANCE if args.min_image_distance is None else float(args.min_image_distance)
    if not (math.isfinite(mid) and mid >= 0):
        raise HopnetError(f"--min-image-distance must be a length >= 0 Å, got {args.min_image_distance}")
    if args.insert_min_dist is not None and not (math.isfinite(args.insert_min_dist) and args.insert_min_dist > 0):
        raise HopnetError(f"--insert-min-dist must be a positive length in Å, got {args.insert_min_dist}")
    sites = [tuple(x) for x in args.insert_frac] if args.insert_frac else None
    if sites is not None and not all(math.isfinite(v) for x in sites for v in x):
        raise HopnetError("--insert-frac needs 3 finite fractional coordinates")
    return {"min_image_distance": mid, "insert_sites": sites, "n_interstitials": _interstitials(args.interstitials),
            "insert_min_dist": args.insert_min_dist}


def _nested_json(value: Any, level: int) -> str:
    """``json.dumps(value, indent=1)`` as it appears ``level`` levels deep in an indent-1 document."""
    return json.dumps(value, indent=1).replace("\n", "\n" + " " * level)


def _append(path: Path, data: str | bytes, sync: bool = False) -> None:
    """Append to a file (opened and closed again: nothing stays open between structures);
    ``sync``: flush it to disk."""
    with open(path, "ab") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())


class _StreamedOutputs:
    """The --json/--csv/--plot/--network files, written while the structures are screened.

    Everything goes to temporary files next to the targets (``.<name>.<pid>.<k>.tmp``):
    :meth:`add` appends one structure's JSON record and CSV rows and writes its plots,
    :meth:`commit` closes the JSON document (byte for byte what ``json.dumps(payload, indent=1)``
    gives), flushes the files to disk and renames every temporary into place, :meth:`discard`
    removes them. Only the list of temporaries is held, never the results.
    """

    def __init__(self, args: argparse.Namespace, single: bool) -> None:
        from hopnet.plots import hop_network_png
        from hopnet.screen import CSV_COLUMNS, hop_bar_chart

        self._single = single
        self._moves: list[tuple[Path, Path]] = []  # (temporary, target)
        self._records = 0
        self._renders = [(Path(getattr(args, flag)), render) for flag, render in
                         (("plot", hop_bar_chart), ("network", lambda r: hop_network_png(r, args.axis)))
                         if getattr(args, flag)]
        try:
            self._json = self._temporary(args.json) if args.json else None
            if self._json is not None:
                _append(self._json, '{\n "results": [')
            self._csv = self._temporary(args.csv) if args.csv else None
            if self._csv is not None:
                _append(self._csv, _csv_text([CSV_COLUMNS]))
        except BaseException:
            self.discard()
            raise

    def _temporary(self, target: str | Path) -> Path:
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{len(self._moves)}.tmp")
        tmp.unlink(missing_ok=True)  # a leftover of a killed run with the same pid
        remove_stale_temporaries(target)  # and those of killed runs
        self._moves.append((tmp, target))
        return tmp

    def add(self, r: Any) -> None:
        """Write one structure's record, rows and plots."""
        if self._json is not None:
            _append(self._json, ("\n  " if self._records == 0 else ",\n  ") + _nested_json(r.to_dict(), 2))
        if self._csv is not None:
            _append(self._csv, _csv_text(r.csv_rows()))
        self._records += 1
        for base, render in self._renders:
            target = base if self._single else base.with_name(f"{base.stem}_{Path(r.source).stem}{base.suffix}")
            _append(self._temporary(target), render(r), sync=True)

    def commit(self, failures: list[dict], provenance: dict) -> None:
        """Finish the JSON document, flush the files to disk and rename them into place."""
        try:
            if self._json is not None:
                _append(self._json, ("\n " if self._records else "") + "],\n \"failures\": "
                        + _nested_json(failures, 1) + ",\n \"provenance\": " + _nested_json(provenance, 1) + "\n}\n",
                        sync=True)
            if self._csv is not None:
                _append(self._csv, "", sync=True)
            for tmp, target in self._moves:
                os.replace(tmp, target)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Remove every temporary (the targets are left as they were)."""
        for tmp, _ in self._moves:
            tmp.unlink(missing_ok=True)


def _csv_text(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    from hopnet.predict import DEFAULT_MAX_ATOMS
    from hopnet.provenance import run_record
    from hopnet.screen import screen

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
    options = _insertion_options(args)

    from tqdm.auto import tqdm

    n_ok, failures = 0, []
    outputs = _StreamedOutputs(args, single=len(files) == 1)
    try:
        bar = tqdm(files, desc="screen", unit="structure", file=sys.stderr, disable=len(files) < 2 or None)
        for f in bar:
            try:
                r = screen(str(f), args.ion, max_hop=args.max_hop, symprec=args.symprec, model=args.model,
                           explicit_hops=explicit, threshold=threshold, source=str(f), max_atoms=max_atoms,
                           **options)
            except HopnetError as exc:
                if len(files) == 1:  # one structure: its error is the one line the CLI prints
                    raise HopnetError(f"{f}: {exc}") from None
                failures.append({"source": str(f), "error": str(exc)})
                tqdm.write(f"hopnet: error: {f}: {exc}", file=sys.stderr)
                continue
            n_ok += 1
            for w in r.warnings:
                tqdm.write(f"hopnet: warning: {f}: {w}", file=sys.stderr)
            tqdm.write(r.table() + "\n", file=sys.stdout)
            outputs.add(r)
        bar.close()

        if len(files) > 1 or failures:
            print(f"screened {len(files)} structure(s): {n_ok} ok, {len(failures)} failed")
            for fail in failures:
                print(f"  failed: {fail['source']}: {fail['error']}")
        if not n_ok:
            if len(failures) == 1:
                raise HopnetError(f"{failures[0]['source']}: {failures[0]['error']}")
            raise HopnetError(f"all {len(failures)} structures failed; no output written")
        provenance = run_record({"ion": args.ion, "max_hop": args.max_hop, "symprec": args.symprec,
                                 "model": args.model, "threshold": threshold, "hops": explicit, **options})
    except BaseException:
        outputs.discard()
        raise
    outputs.commit(failures, provenance)
    return 0
