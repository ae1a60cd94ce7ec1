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

STRUCTURE may be files, folders (every structure file in them), glob patterns, JSON/JSONL/JSON.GZ
lists of structures (JARVIS or Materials-Project entries) or ASE databases (.db); each structure
has a stable id (jid, database row or file path; see :mod:`hopnet.database`). --ion auto (or a
comma list) screens each mobile ion present and skips, with the reason, a structure with none.
Each finished structure is committed to the outputs at once (CSV rows appended and flushed; the
JSON document rewritten atomically from a journal; Parquet parts written atomically and
consolidated into --parquet; plots written atomically); a structure that fails or takes longer
than --timeout seconds becomes a row with its error, and the exit status is non-zero when any
structure failed. Ctrl-C (or SIGTERM) keeps every finished structure; --resume skips the
structures already in every output and appends the rest. --workers N screens in N processes,
--ray on a Ray cluster (:mod:`hopnet.screen_runner`); this process alone writes the outputs.

    hopnet screen data/pretrain/fe.json.gz --ion auto --parquet fe.parquet --workers 8 --quiet
    hopnet screen structures.db --ion Li --parquet li.parquet --ray auto --resume
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hopnet.cli.common import check_output_file, check_threshold
from hopnet.infra.errors import HopnetError
from hopnet.infra.provenance import atomic_write_bytes, atomic_write_text, cut_partial_line

#: failures listed one by one at the end of a run (the rest are counted by cause)
MAX_LISTED_FAILURES = 20


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "screen", help="find and predict every distinct hop of an ion, with percolation barriers",
        description="Find the symmetry-distinct hops of the mobile ion (grouped by the space group "
                    "of the primitive cell), predict each barrier E_m (eV), and report the percolation "
                    "barriers: the lowest E_m at which the hops connect into an infinite 1-, 2- and "
                    "3-D network.",
    )
    p.add_argument("structures", nargs="+", metavar="STRUCTURE",
                   help="structure file(s) (CIF, POSCAR, ...), folder(s), glob pattern(s), JSON/JSONL/"
                        "JSON.GZ list(s) of structures (JARVIS/Materials-Project entries) or ASE database(s) (.db)")
    p.add_argument("--ion", required=True,
                   help="migrating ion, e.g. Li; or a comma list (Li,Na) or 'auto' (every mobile ion: "
                        "Li, Na, K, Rb, Cs, Mg, Ca, Zn): each one present is screened, a structure "
                        "with none is skipped")
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
    p.add_argument("--parquet", default=None, metavar="FILE",
                   help="write one row per structure, ion and hop to this Parquet table (columns in "
                        "docs/screening.md)")
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
                   help="skip the structures already in --csv/--json/--parquet (of a run that was stopped) "
                        "and append")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="screen in N worker processes, the model loaded once in each (default 1: this "
                        "process); with --ray local: the CPUs of the local Ray instance")
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="auto|ADDRESS|local",
                   help="screen as Ray tasks: 'auto' (bare flag) joins the running cluster, ADDRESS a given "
                        "one (ray://host:10001 or host:6379), 'local' starts Ray on this machine; needs "
                        "pip install 'hopnet[ray]'")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="--ray: structures per Ray task (default 1; use more when a structure takes "
                        "milliseconds, so the cluster is not bound by scheduling)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="screen only the first N structures")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no per-structure tables, warnings or error lines (progress and the summary "
                        "only; the outputs hold every row)")
    p.set_defaults(func=run)


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
    for flag in ("csv", "json", "parquet", "plot", "network"):
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
    """The --json/--csv/--parquet/--plot/--network files, kept up to date as structures finish.

    * CSV: the header once, then each batch of finished structures' rows (a failed or skipped
      structure: one row with its error) appended in one write and flushed to disk. A row cut
      short by a killed run is cut off before anything is appended.
    * JSON: finished structures are appended to a journal next to the target
      (``.<name>.journal.jsonl``, fsynced lines); the JSON document is written atomically from it
      (temporary file + rename) every :data:`JSON_EVERY_S` seconds, at the end and on Ctrl-C.
      The journal is removed once the document is complete.
    * Parquet: :class:`hopnet.screen_table.ParquetTable` (parts as structures finish,
      consolidated at the end and on Ctrl-C).
    * plots: one file per structure (and ion), written atomically when it finishes.

    ``resume``: each output knows the structures it already holds and writes only the others, so
    nothing is duplicated; :meth:`has` is true for a structure every output holds. Without it
    existing targets are started afresh.
    """

    JSON_EVERY_S = 30.0

    def __init__(self, args: argparse.Namespace, single: bool, resume: bool, order: list[str]) -> None:
        from hopnet.plots import hop_bar_chart, hop_network_png
        from hopnet.screen_runner import parse_ions
        from hopnet.screening import CSV_COLUMNS

        self._multi_ion = not parse_ions(args.ion)[0]
        self._single = single and not self._multi_ion
        self._renders = [(Path(getattr(args, flag)), render) for flag, render in
                         (("plot", hop_bar_chart), ("network", lambda r: hop_network_png(r, args.axis)))
                         if getattr(args, flag)]
        self.n_new = 0
        self._csv = Path(args.csv) if args.csv else None
        self._json = Path(args.json) if args.json else None
        self._journal = self._json.with_name(f".{self._json.name}.journal.jsonl") if self._json else None
        self._last_json = time.monotonic()
        self._have: dict[str, set[str]] = {}
        if self._csv is not None:
            self._have["csv"] = set()
            if resume and self._csv.is_file() and self._csv.stat().st_size:
                cut_partial_line(self._csv)
                with open(self._csv, newline="") as fh:
                    self._have["csv"] = {row["source"] for row in csv.DictReader(fh) if row.get("source")}
            else:
                atomic_write_text(self._csv, _csv_text([CSV_COLUMNS]))
        if self._journal is not None:
            if resume and not self._journal.is_file() and self._json.is_file():
                self._journal_from_document()
            elif not resume:
                self._journal.unlink(missing_ok=True)
            if self._journal.is_file():
                cut_partial_line(self._journal)
            self._have["json"] = {str(r.get("source")) for r in _journal_records(self._journal)}
        self._table = None
        if args.parquet:
            from hopnet.screen_table import ParquetTable

            self._table = ParquetTable(args.parquet, resume, order)
            self._have["parquet"] = self._table.done
        self._order = order

    def has(self, sid: str) -> bool:
        """Whether every output already holds structure ``sid``."""
        return bool(self._have) and all(sid in ids for ids in self._have.values())

    def _journal_from_document(self) -> None:
        """Resume from a finished JSON document: its records become the journal."""
        try:
            doc = json.loads(self._json.read_text())  # type: ignore[union-attr]
            records = (list(doc["results"]) + [{**f, "failed": True} for f in doc.get("failures", [])]
                       + [{"source": k["source"], "skipped": k.get("reason", "")} for k in doc.get("skipped", [])])
        except (ValueError, KeyError, TypeError) as exc:
            raise HopnetError(f"--resume: {self._json} is not a hopnet screen JSON file ({exc})") from None
        _append(self._journal, "".join(_json_line(r) for r in records), sync=True)  # type: ignore[arg-type]

    def _png_path(self, base: Path, r: Any) -> Path:
        if self._single:
            return base
        src = Path(r.source)
        tag = src.stem if (os.sep in r.source or src.is_file()) else r.source
        tag = re.sub(r"[^\w.-]+", "_", tag) + (f"_{r.ion}" if self._multi_ion else "")
        return base.with_name(f"{base.stem}_{tag}{base.suffix}")

    def commit(self, batch: list[Any]) -> None:
        """Commit finished structures (:class:`hopnet.screen_runner.Outcome`): plots rendered first
        (the slow part: a Ctrl-C there commits nothing of them), then CSV rows, journal lines,
        a Parquet part and plot files; each output skips the structures it already holds."""
        pngs = [(self._png_path(base, r), render(r)) for o in batch for r in o.results for base, render in self._renders]
        if self._csv is not None:
            new = [o for o in batch if o.id not in self._have["csv"]]
            text = _csv_text([row for o in new for row in _csv_rows(o)])
            if new:
                _append(self._csv, text, sync=True)
            self._have["csv"] |= {o.id for o in new}
        if self._journal is not None:
            new = [o for o in batch if o.id not in self._have["json"]]
            if new:
                _append(self._journal, "".join(_json_line(rec) for o in new for rec in _journal_lines(o)), sync=True)
            self._have["json"] |= {o.id for o in new}
        if self._table is not None:
            self._table.add(batch)
        for target, png in pngs:
            atomic_write_bytes(target, png)
        self.n_new += len(batch)
        if self._json is not None and time.monotonic() - self._last_json > self.JSON_EVERY_S:
            self.write_json(None, final=False)

    def finish(self, provenance: dict | None, final: bool) -> None:
        """The JSON document and the consolidated Parquet file (``final``: the run is complete)."""
        self.write_json(provenance, final=final)
        if self._table is not None:
            self._table.consolidate(self._order)

    def write_json(self, provenance: dict | None, final: bool) -> None:
        """The JSON document from the journal, written atomically; ``final``: drop the journal."""
        if self._json is None:
            return
        # streamed from the journal, one record in memory at a time; byte for byte what
        # json.dumps(document, indent=1) gives
        tmp = self._json.with_name(f".{self._json.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as out:
            for key in ("results", "failures", "skipped"):
                out.write(("{\n" if key == "results" else ",\n") + f' "{key}": [')
                n = 0
                for r in _journal_records(self._journal):  # type: ignore[arg-type]
                    if _record_kind(r) != key:
                        continue
                    rec = (r if key == "results" else {"source": r["source"], "reason": r["skipped"]}
                           if key == "skipped" else {k: r[k] for k in ("source", "ion", "cause", "error") if k in r})
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


def _record_kind(r: dict) -> str:
    return "failures" if r.get("failed") else "skipped" if "skipped" in r else "results"


def _csv_rows(o: Any) -> list[list[Any]]:
    """CSV rows of one outcome: each result's hop rows, one row per failure, one if skipped."""
    from hopnet.screening import CSV_COLUMNS

    def row(ion: str, error: str) -> list[Any]:
        out = [""] * len(CSV_COLUMNS)
        out[CSV_COLUMNS.index("source")], out[CSV_COLUMNS.index("ion")] = o.id, ion
        out[CSV_COLUMNS.index("formula")], out[CSV_COLUMNS.index("error")] = o.formula, error
        return out

    rows = [x for r in o.results for x in r.csv_rows()]
    rows += [row(ion, msg) for ion, _, msg in o.failures]
    return rows + ([row("", f"skipped: {o.skipped}")] if o.skipped is not None else [])


def _journal_lines(o: Any) -> list[dict]:
    """Journal records of one outcome (see :meth:`_Outputs.write_json`)."""
    recs = [r.to_dict() for r in o.results]
    recs += [{"source": o.id, "ion": ion, "cause": cause, "error": msg, "failed": True} for ion, cause, msg in o.failures]
    return recs + ([{"source": o.id, "skipped": o.skipped}] if o.skipped is not None else [])


def _json_line(record: dict) -> str:
    return json.dumps(record, sort_keys=True, default=lambda x: x.item() if hasattr(x, "item") else str(x)) + "\n"


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


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Any:
    """SIGTERM (a batch scheduler's stop) ends the run like Ctrl-C: finished structures kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _check_run_flags(args: argparse.Namespace) -> tuple[bool, int]:
    """One error line for a bad value of --max-hop/--symprec/--timeout/--max-atoms/--ion/
    --workers/--ray/--limit; returns (fixed ion, max atoms)."""
    from hopnet.inference import DEFAULT_MAX_ATOMS
    from hopnet.screen_runner import import_ray, parse_ions

    if not (math.isfinite(args.max_hop) and args.max_hop > 0):
        raise HopnetError(f"--max-hop must be a positive length in Å, got {args.max_hop}")
    if not (math.isfinite(args.symprec) and args.symprec > 0):
        raise HopnetError(f"--symprec must be positive, got {args.symprec}")
    if not (math.isfinite(args.timeout) and args.timeout >= 0):
        raise HopnetError(f"--timeout must be a number of seconds >= 0 (0: none), got {args.timeout}")
    max_atoms = DEFAULT_MAX_ATOMS if args.max_atoms is None else args.max_atoms
    if max_atoms < 1:
        raise HopnetError(f"--max-atoms must be positive, got {max_atoms}")
    fixed, _ = parse_ions(args.ion)
    if not fixed and (args.hops or args.insert_frac or args.insert):
        raise HopnetError("--hop, --insert and --insert-frac need one fixed --ion, not a list or 'auto'")
    if args.workers < 1:
        raise HopnetError(f"--workers must be a positive number of processes, got {args.workers}")
    if args.batch < 1:
        raise HopnetError(f"--batch must be a positive number of structures, got {args.batch}")
    if args.limit is not None and args.limit < 1:
        raise HopnetError(f"--limit must be a positive number of structures, got {args.limit}")
    if args.ray is not None:
        if not str(args.ray).strip():
            raise HopnetError("--ray must be 'auto', 'local' or a cluster address")
        if args.ray != "local" and args.workers != 1:
            raise HopnetError("--workers is for this machine (or --ray local); a Ray cluster's CPUs decide its workers")
        import_ray()
    if args.parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise HopnetError("--parquet needs pyarrow: pip install pyarrow") from None
    return fixed, max_atoms


def run(args: argparse.Namespace) -> int:
    from hopnet.database import open_inputs
    from hopnet.infra.provenance import run_record
    from hopnet.screen_runner import Job
    from hopnet.screen_runner import run as run_jobs

    fixed, max_atoms = _check_run_flags(args)
    threshold = _threshold(args)
    _check_outputs(args)
    entries = open_inputs(args.structures, limit=args.limit)
    explicit = [tuple(h) for h in args.hops] if args.hops else None
    options = _insertion_options(args)
    if args.resume and not (args.csv or args.json or args.parquet):
        raise HopnetError("--resume needs --csv, --json or --parquet: the finished structures are read from them")

    from tqdm.auto import tqdm

    outputs = _Outputs(args, single=len(entries) == 1, resume=args.resume, order=[e.id for e in entries])
    todo = [e for e in entries if not outputs.has(e.id)]
    if args.resume and len(todo) < len(entries):
        print(f"resuming: {len(entries) - len(todo)} of {len(entries)} structure(s) already done")
    if args.refine is not None:
        from hopnet.inference import get_model

        from hopnet.models.folder import shipped_models

        if args.refine == "accurate" and "accurate" not in shipped_models():
            raise HopnetError("--refine: this hopnet ships no 'accurate' model yet; give --refine FOLDER, a model "
                              "trained with NEB features (experiments/accurate_model.py --ship FOLDER)")
        get_model(args.refine)  # an unknown or damaged model is one error line before any work
    job = Job(args.ion, {"max_hop": args.max_hop, "symprec": args.symprec, "model": args.model,
                         "explicit_hops": explicit, "threshold": threshold, "max_atoms": max_atoms,
                         "insert": args.insert, "refine": args.refine, **options},
              timeout=float(args.timeout), keep_network=bool(args.plot or args.network))
    provenance = run_record({"ion": args.ion, "max_hop": args.max_hop, "symprec": args.symprec,
                             "model": args.model, "refine": args.refine, "threshold": threshold, "hops": explicit,
                             "timeout_s": args.timeout, "workers": args.workers, "ray": args.ray,
                             "batch": args.batch, **options})
    tally: Counter = Counter()
    failures: list[tuple[str, str, str, str]] = []
    many = len(todo) > 1
    bar = tqdm(total=len(todo), desc="screen", unit="structure", file=sys.stderr, disable=not many or None)
    serial = args.ray is None and args.workers == 1
    try:
        with _sigterm_as_interrupt(), _Heartbeat(todo[0].id) if len(todo) == 1 and serial else contextlib.nullcontext():
            for batch in run_jobs(todo, job, workers=args.workers, ray=args.ray, batch=args.batch):
                for o in batch:
                    _report(o, args.quiet, many, not fixed, failures)
                    tally["failed" if o.failed else "skipped" if o.skipped is not None else "ok"] += 1
                outputs.commit(batch)
                bar.update(len(batch))
    except KeyboardInterrupt:
        bar.close()
        outputs.finish(provenance, final=False)
        kept = [x for x in (args.csv, args.json, args.parquet) if x]
        where = f" in {' and '.join(kept)}" if kept else ""
        print(f"hopnet: interrupted: {outputs.n_new} finished structure(s) kept{where}"
              + ("; rerun with --resume to continue" if kept else ""), file=sys.stderr)
        return 130
    bar.close()
    outputs.finish(provenance, final=True)
    if many:
        _summary(len(todo), tally, failures)
    if tally["failed"]:
        if len(todo) == 1:
            raise HopnetError(f"{failures[0][0]}: {failures[0][3]}")
        raise HopnetError(f"{tally['failed']} of {len(todo)} structure(s) failed"
                          + (" (their rows carry the error)" if (args.csv or args.json or args.parquet) else ""))
    return 0


def _report(o: Any, quiet: bool, many: bool, multi_ion: bool, failures: list) -> None:
    """Say what one structure gave: warnings and errors on stderr, its tables on stdout."""
    from tqdm.auto import tqdm

    for ion, cause, msg in o.failures:
        failures.append((o.id, ion if multi_ion else "", cause, msg))
        if many and not quiet:  # one structure: its error is the one line the CLI prints
            tqdm.write(f"hopnet: error: {o.id}{f' ({ion})' if multi_ion and ion else ''}: {msg}", file=sys.stderr)
    if quiet:
        return
    for r in o.results:
        for w in r.warnings:
            tqdm.write(f"hopnet: warning: {o.id}: {w}", file=sys.stderr)
        tqdm.write(r.table() + "\n", file=sys.stdout)
    if o.skipped is not None and many:
        tqdm.write(f"hopnet: skipped: {o.id}: {o.skipped}", file=sys.stderr)


def _summary(n: int, tally: Counter, failures: list) -> None:
    """The end-of-run lines: counts, the first failures, the failures by cause."""
    print(f"screened {n} structure(s): {tally['ok']} ok, {tally['failed']} failed"
          + (f", {tally['skipped']} skipped" if tally["skipped"] else ""))
    for sid, ion, _, msg in failures[:MAX_LISTED_FAILURES]:
        print(f"  failed: {sid}{f' ({ion})' if ion else ''}: {msg}")
    if len(failures) > MAX_LISTED_FAILURES:
        causes = Counter(cause for _, _, cause, _ in failures)
        print(f"  ... and {len(failures) - MAX_LISTED_FAILURES} more; failures by cause: "
              + ", ".join(f"{c} {k}" for c, k in causes.most_common()))
