"""``hopnet screen``: every symmetry-distinct hop of a mobile ion in one or many structures, its
predicted barrier, and the 1-/2-/3-D percolation barriers of the hop network.

    hopnet screen examples/LiFePO4_olivine.cif --ion Li
    hopnet screen "cifs/*.cif" --ion Na --csv hops.csv --json hops.json --plot hops.png
    hopnet screen examples/LiFePO4_olivine.cif --ion Li --hop 0 4     # explicit hops instead of the search
    hopnet screen examples/FePO4.cif --ion Li                          # no Li: found interstitial sites
    hopnet screen examples/FePO4.cif --ion Li --insert-frac 0 0 0      # no Li: user-given site(s)
    hopnet screen examples/Na3PS4_cubic.cif --ion Li --insert          # a Na host, Li inserted: asked for
    hopnet screen cifs/ --ion Li --csv hops.csv --resume               # continue a stopped run

A structure with no mobile ion at all (FePO4, MnO2) is a host: the ion is put on user-given
fractional sites (--insert-frac, repeatable) or on the most open symmetry-distinct interstitial
sites found in it (--interstitials, --insert-min-dist), each expanded to its symmetry orbit; the
report says which, and each band holds one ion in the empty host. A structure holding another
mobile ion (Mg asked of a Li host) is screened that way only with --insert. Every band is built
in the canonical cell of the primitive cell (at least --min-image-distance Å wide), so any cell,
atom order, origin or orientation of the same crystal gives the same hops and barriers.

STRUCTURE may be files, folders (every structure file in them) or glob patterns. Each finished
structure is committed to the outputs at once (CSV rows appended and flushed; the JSON document
rewritten atomically from a journal; plots written atomically); a structure that fails or takes
longer than --timeout seconds becomes a row with its error, and the exit status is non-zero when
any structure failed. Ctrl-C keeps every finished structure; --resume skips the structures
already in --csv/--json and appends the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import io
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hopnet.cli.common import check_output_file, check_threshold
from hopnet.infra.errors import HopnetError
from hopnet.infra.provenance import append_jsonl, atomic_write_bytes, atomic_write_text

_STRUCTURE_SUFFIXES = {".cif", ".mcif", ".vasp", ".poscar", ".xyz", ".extxyz", ".cssr", ".res", ".xsf", ".cell"}
_STRUCTURE_PREFIXES = ("POSCAR", "CONTCAR")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "screen", help="find and predict every distinct hop of an ion, with percolation barriers",
        description="Find the symmetry-distinct hops of the mobile ion (grouped by the space group "
                    "of the primitive cell), predict each barrier E_m (eV), and report the percolation "
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
    p.add_argument("--refine", nargs="?", const="accurate", default=None, metavar="MODEL",
                   help="predict the hops that decide the answer (barrier within 2 sigma of the threshold, "
                        "or completing a 1/2/3-D network) again with MODEL, a model that runs a universal-"
                        "potential NEB (minutes per hop; bare flag: the shipped 'accurate'); default: off")
    p.add_argument("--insert", action="store_true",
                   help="screen the ion inserted at interstitial sites of a structure that holds other "
                        "mobile ions but not this one (a host with no mobile ion at all is always "
                        "screened that way)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="seconds one structure may take before it is reported as failed (default 120; 0: none)")
    p.add_argument("--resume", action="store_true",
                   help="skip the structures already in --csv/--json (of a run that was stopped) and append")
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
    return check_threshold(DEFAULT_THRESHOLD_EV if args.threshold is None else args.threshold)


def _check_outputs(args: argparse.Namespace) -> None:
    for flag in ("plot", "network"):
        f = getattr(args, flag)
        if f is not None and not str(f).lower().endswith(".png"):
            raise HopnetError(f"--{flag} must name a .png file, got {f}")
    for flag in ("csv", "json", "plot", "network"):
        check_output_file(getattr(args, flag), f"--{flag}")


def _interstitials(value: str | None) -> int | None:
    """--interstitials: None for all, else a positive count (default :data:`DEFAULT_INTERSTITIALS`)."""
    from hopnet.screening import DEFAULT_INTERSTITIALS

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
    from hopnet.screening import DEFAULT_MIN_IMAGE_DISTANCE

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


class _Outputs:
    """The --json/--csv/--plot/--network files, kept up to date as structures finish.

    * CSV: the header once, then each structure's rows (or one failure row with its error)
      appended in one write and flushed to disk as the structure finishes. A row cut short by a
      killed run is cut off before anything is appended.
    * JSON: each finished structure is appended to a journal next to the target
      (``.<name>.journal.jsonl``, one fsynced line per structure); the JSON document is written
      atomically from it (temporary file + rename) every :data:`JSON_EVERY_S` seconds, at the end
      and on Ctrl-C. The journal is removed once the document is complete.
    * plots: one file per structure, written atomically when it finishes.

    ``resume``: the structures already in the CSV / journal / JSON are :attr:`done`; without it
    existing targets are started afresh.
    """

    JSON_EVERY_S = 30.0

    def __init__(self, args: argparse.Namespace, single: bool, resume: bool) -> None:
        from hopnet.plots import hop_bar_chart, hop_network_png
        from hopnet.screening import CSV_COLUMNS

        self._single = single
        self._renders = [(Path(getattr(args, flag)), render) for flag, render in
                         (("plot", hop_bar_chart), ("network", lambda r: hop_network_png(r, args.axis)))
                         if getattr(args, flag)]
        self.done: set[str] = set()
        self.n_new = 0
        self._csv = Path(args.csv) if args.csv else None
        self._json = Path(args.json) if args.json else None
        self._journal = self._json.with_name(f".{self._json.name}.journal.jsonl") if self._json else None
        self._last_json = time.monotonic()
        if self._csv is not None:
            if resume and self._csv.is_file() and self._csv.stat().st_size:
                _cut_partial_line(self._csv)
                with open(self._csv, newline="") as fh:
                    self.done |= {row["source"] for row in csv.DictReader(fh) if row.get("source")}
            else:
                atomic_write_text(self._csv, _csv_text([CSV_COLUMNS]))
        if self._journal is not None:
            if resume and not self._journal.is_file() and self._json.is_file():
                self._journal_from_document()
            elif not resume:
                self._journal.unlink(missing_ok=True)
            self.done |= {str(r.get("source")) for r in _journal_records(self._journal)}

    def _journal_from_document(self) -> None:
        """Resume from a finished JSON document: its records become the journal."""
        try:
            doc = json.loads(self._json.read_text())  # type: ignore[union-attr]
            records = list(doc["results"]) + [{**f, "failed": True} for f in doc.get("failures", [])]
        except (ValueError, KeyError, TypeError) as exc:
            raise HopnetError(f"--resume: {self._json} is not a hopnet screen JSON file ({exc})") from None
        for r in records:
            append_jsonl(self._journal, r)  # type: ignore[arg-type]

    def add(self, r: Any) -> None:
        """Commit one finished structure: plots rendered first (the slow part: a Ctrl-C there
        commits nothing of it), then CSV rows, journal line and plot files."""
        pngs = [(base if self._single else base.with_name(f"{base.stem}_{Path(r.source).stem}{base.suffix}"),
                 render(r)) for base, render in self._renders]
        if self._csv is not None:
            _append(self._csv, _csv_text(r.csv_rows()), sync=True)
        if self._journal is not None:
            append_jsonl(self._journal, r.to_dict())
        for target, png in pngs:
            atomic_write_bytes(target, png)
        self._committed(r.source)

    def fail(self, source: str, error: str) -> None:
        """Commit one failed structure: a CSV row and a journal line with its error."""
        from hopnet.screening import CSV_COLUMNS

        if self._csv is not None:
            row = [""] * len(CSV_COLUMNS)
            row[CSV_COLUMNS.index("source")], row[CSV_COLUMNS.index("error")] = source, error
            _append(self._csv, _csv_text([row]), sync=True)
        if self._journal is not None:
            append_jsonl(self._journal, {"source": source, "error": error, "failed": True})
        self._committed(source)

    def _committed(self, source: str) -> None:
        self.done.add(source)
        self.n_new += 1
        if self._json is not None and time.monotonic() - self._last_json > self.JSON_EVERY_S:
            self.write_json(None, final=False)

    def write_json(self, provenance: dict | None, final: bool) -> None:
        """The JSON document from the journal, written atomically; ``final``: drop the journal."""
        if self._json is None:
            return
        # streamed from the journal, one record in memory at a time; byte for byte what
        # json.dumps(document, indent=1) gives
        tmp = self._json.with_name(f".{self._json.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as out:
            for key, failed in (("results", False), ("failures", True)):
                out.write(("{\n" if not failed else ",\n") + f' "{key}": [')
                n = 0
                for r in _journal_records(self._journal):  # type: ignore[arg-type]
                    if bool(r.get("failed")) != failed:
                        continue
                    rec = {"source": r["source"], "error": r["error"]} if failed else r
                    out.write(("\n  " if n == 0 else ",\n  ") + _nested_json(rec, 2))
                    n += 1
                out.write("\n ]" if n else "]")
            out.write(',\n "provenance": ' + _nested_json(provenance or {}, 1)
                      + ',\n "complete": ' + json.dumps(bool(final)) + "\n}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self._json)
        self._last_json = time.monotonic()
        if final:
            self._journal.unlink(missing_ok=True)  # type: ignore[union-attr]


def _journal_records(path: Path) -> Any:
    """The journal's records, one at a time (a last line cut short by a kill is skipped)."""
    if not path.is_file():
        return
    with open(path) as fh:
        for line in fh:
            if line.endswith("\n"):
                yield json.loads(line)


def _nested_json(value: Any, level: int) -> str:
    """``json.dumps(value, indent=1)`` as it appears ``level`` levels deep in an indent-1 document."""
    return json.dumps(value, indent=1).replace("\n", "\n" + " " * level)


def _cut_partial_line(path: Path) -> None:
    """Cut a last line left without its newline by a killed run."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def _append(path: Path, data: str, sync: bool = False) -> None:
    """Append to a file in one write (opened and closed again); ``sync``: flush it to disk."""
    with open(path, "ab") as fh:
        fh.write(data.encode())
        if sync:
            fh.flush()
            os.fsync(fh.fileno())


def _csv_text(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


class _Heartbeat:
    """For a screen of one structure (no progress bar): after ``after`` seconds, a line on stderr
    every ``every`` seconds saying it is still running, so a slow structure is never silent."""

    def __init__(self, label: str, after: float = 3.0, every: float = 5.0) -> None:
        self.label, self.after, self.every = label, after, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        if self._stop.wait(self.after):
            return
        while not self._stop.is_set():
            print(f"hopnet: screening {self.label}: {time.monotonic() - t0:.0f} s so far", file=sys.stderr, flush=True)
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


class _Timeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def _screen_one(f: Path, args: argparse.Namespace, heartbeat: bool = False, **kw: Any) -> Any:
    """screen() of one structure within --timeout seconds (a timed-out structure is a
    HopnetError: reported like any failure); ``heartbeat``: say on stderr while it runs long."""
    from hopnet.screening import screen

    timeout = float(args.timeout)
    use_alarm = timeout > 0 and hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if use_alarm:
        old = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with _Heartbeat(str(f)) if heartbeat else contextlib.nullcontext():
            return screen(str(f), args.ion, **kw)
    except _Timeout:
        raise HopnetError(f"timed out after {timeout:g} s (--timeout); skipped") from None
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


def run(args: argparse.Namespace) -> int:
    from hopnet.inference import DEFAULT_MAX_ATOMS
    from hopnet.infra.provenance import run_record

    if not (math.isfinite(args.max_hop) and args.max_hop > 0):
        raise HopnetError(f"--max-hop must be a positive length in Å, got {args.max_hop}")
    if not (math.isfinite(args.symprec) and args.symprec > 0):
        raise HopnetError(f"--symprec must be positive, got {args.symprec}")
    if not (math.isfinite(args.timeout) and args.timeout >= 0):
        raise HopnetError(f"--timeout must be a number of seconds >= 0 (0: none), got {args.timeout}")
    max_atoms = DEFAULT_MAX_ATOMS if args.max_atoms is None else args.max_atoms
    if max_atoms < 1:
        raise HopnetError(f"--max-atoms must be positive, got {max_atoms}")
    threshold = _threshold(args)
    _check_outputs(args)
    files = expand_inputs(args.structures)
    explicit = [tuple(h) for h in args.hops] if args.hops else None
    options = _insertion_options(args)
    if args.resume and not (args.csv or args.json):
        raise HopnetError("--resume needs --csv or --json: the finished structures are read from them")

    from tqdm.auto import tqdm

    outputs = _Outputs(args, single=len(files) == 1, resume=args.resume)
    todo = [f for f in files if str(f) not in outputs.done]
    if args.resume and len(todo) < len(files):
        print(f"resuming: {len(files) - len(todo)} of {len(files)} structure(s) already done")
    if args.refine is not None:
        from hopnet.inference import get_model

        from hopnet.models.folder import shipped_models

        if args.refine == "accurate" and "accurate" not in shipped_models():
            raise HopnetError("--refine: this hopnet ships no 'accurate' model yet; give --refine FOLDER, a model "
                              "trained with NEB features (experiments/accurate_model.py --ship FOLDER)")
        get_model(args.refine)  # an unknown or damaged model is one error line before any work
    provenance = run_record({"ion": args.ion, "max_hop": args.max_hop, "symprec": args.symprec,
                             "model": args.model, "refine": args.refine, "threshold": threshold, "hops": explicit,
                             "timeout_s": args.timeout, **options})
    n_ok, failures = 0, []
    bar = tqdm(todo, desc="screen", unit="structure", file=sys.stderr, disable=len(todo) < 2 or None)
    try:
        for f in bar:
            try:
                r = _screen_one(f, args, heartbeat=len(todo) == 1, max_hop=args.max_hop, symprec=args.symprec, model=args.model,
                                explicit_hops=explicit, threshold=threshold, source=str(f), max_atoms=max_atoms,
                                insert=args.insert, refine=args.refine, **options)
            except HopnetError as exc:
                failures.append({"source": str(f), "error": str(exc)})
                outputs.fail(str(f), str(exc))
                if len(todo) > 1:  # one structure: its error is the one line the CLI prints
                    tqdm.write(f"hopnet: error: {f}: {exc}", file=sys.stderr)
                continue
            n_ok += 1
            for w in r.warnings:
                tqdm.write(f"hopnet: warning: {f}: {w}", file=sys.stderr)
            tqdm.write(r.table() + "\n", file=sys.stdout)
            outputs.add(r)
    except KeyboardInterrupt:
        bar.close()
        outputs.write_json(provenance, final=False)
        kept = [x for x in (args.csv, args.json) if x]
        where = f" in {' and '.join(kept)}" if kept else ""
        print(f"hopnet: interrupted: {outputs.n_new} finished structure(s) kept{where}"
              + ("; rerun with --resume to continue" if kept else ""), file=sys.stderr)
        return 130
    bar.close()
    outputs.write_json(provenance, final=True)
    if len(todo) > 1:
        print(f"screened {len(todo)} structure(s): {n_ok} ok, {len(failures)} failed")
        for fail in failures:
            print(f"  failed: {fail['source']}: {fail['error']}")
    if failures:
        if len(todo) == 1:
            raise HopnetError(f"{failures[0]['source']}: {failures[0]['error']}")
        raise HopnetError(f"{len(failures)} of {len(todo)} structure(s) failed"
                          + (" (their rows carry the error)" if (args.csv or args.json) else ""))
    return 0
