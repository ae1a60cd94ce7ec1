"""``hopnet datasets``: list the registered data sets, describe one (``info NAME``), or download
and verify them (``fetch NAME|all``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

import numpy as np

from hopnet.infra.errors import HopnetError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "datasets", help="list the registered data sets and where they are found",
        description="List the registered data sets (name, entries, source found, description), "
                    "or print counts, target statistics and split sizes of one of them.",
    )
    _common(p, default=False)
    p.set_defaults(func=_run_list)
    sub = p.add_subparsers(dest="datasets_command", metavar="ACTION")
    lp = sub.add_parser("list", help="list the registered data sets (the default)")
    _common(lp, default=argparse.SUPPRESS)
    lp.set_defaults(func=_run_list)
    ip = sub.add_parser("info", help="counts, target statistics and split sizes of one data set")
    ip.add_argument("name", help="registered name, or a path to a .json/.json.gz file")
    ip.add_argument("--path", default=None, help="read the data from this file instead")
    ip.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
    ip.add_argument("--folds", type=int, default=5, help="number of grouped folds (default 5)")
    _common(ip, default=argparse.SUPPRESS)
    ip.set_defaults(func=_run_info)
    fp = sub.add_parser(
        "fetch", help="download data sets from their public sources, rebuild and verify them",
        description="Download each source file of a data set (resumable, every file checked against "
                    "its pinned sha256), rebuild the set as the registry's recipe says and check it "
                    "against the set's pin. A set already present and verified is not fetched again.",
    )
    fp.add_argument("name", help="registered name, or 'all'")
    fp.add_argument("--to", metavar="DIR", default=None,
                    help="folder to write the files into (default: the user cache, $HOPNET_CACHE_DIR "
                         "or ~/.cache/hopnet/datasets, where loading looks)")
    fp.add_argument("--mirror", metavar="URL", default=None,
                    help="base URL of a mirror laid out like raw.githubusercontent.com "
                         "(<URL>/<owner>/<repo>/main/<path>) or like the data dir (<URL>/<relpath>); "
                         "default: $HOPNET_DATA_URL, else the public originals")
    fp.add_argument("--force", action="store_true", help="fetch even when a verified copy is present")
    fp.add_argument("--quiet", action="store_true", help="no per-file progress on stderr")
    _common(fp, default=argparse.SUPPRESS)
    fp.set_defaults(func=_run_fetch)


def _common(p: argparse.ArgumentParser, default: Any) -> None:
    # sub-parsers use SUPPRESS so that an option given before the action is not reset to its default
    p.add_argument("--json", action="store_true", default=default, help="machine-readable output")
    p.add_argument("--data-dir", default=None if default is False else default,
                   help="data folder (default: $HOPNET_DATA_DIR)")


def _run_list(args: argparse.Namespace) -> int:
    from hopnet.datasets import list_datasets, locate

    rows = []
    for info in list_datasets():
        found = locate(info.name, data_dir=args.data_dir)
        rows.append({
            "name": info.name,
            "entries": info.n_entries,
            "source": found.source if found else "not available",
            "file": str(found.path) if found else None,
            "task": info.task,
            "description": info.description,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"{'name':<{w}}  {'entries':>7}  {'source':<15}  description")
    for r in rows:
        print(f"{r['name']:<{w}}  {r['entries']:>7}  {r['source']:<15}  {r['description']}")
    if any(r["file"] is None for r in rows):
        from hopnet.infra.runtime import env_flag

        how = ("HOPNET_OFFLINE is set: unset it to let hopnet download the public originals on first use"
               if env_flag("HOPNET_OFFLINE") else "on first use hopnet downloads the public originals")
        how += " (or run `hopnet datasets fetch NAME|all`)"
        print(f"hopnet: not available: set HOPNET_DATA_DIR (or --data-dir) to a folder of the data sets "
              f"(e.g. ../shared/data), or give a file with --data FILE; {how}", file=sys.stderr)
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    """Fetch one set or all; one line per set on stdout, one error line per failed set."""
    from hopnet.datasets import fetch, get_info, list_datasets

    names = [i.name for i in list_datasets()] if args.name == "all" else [get_info(args.name).name]
    reports, failed = [], 0
    for name in names:
        try:
            report = fetch(name, to=args.to, data_dir=args.data_dir, base_url=args.mirror,
                           force=args.force, progress=not args.quiet)
        except HopnetError as exc:
            if len(names) == 1:
                raise
            print(f"hopnet: error: {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        reports.append(report.as_dict())
        if not args.json:
            print(report.line(), flush=True)
    if args.json:
        print(json.dumps(reports, indent=2))
    if failed:
        print(f"hopnet: {failed} of {len(names)} data sets not fetched (run again to resume)", file=sys.stderr)
    return 2 if failed else 0


def _stats(x: np.ndarray) -> dict[str, float]:
    return {k: float(f(x)) for k, f in
            (("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std), ("median", np.median))}


def dataset_info(name: str, *, path: str | None = None, data_dir: str | None = None,
                 seed: int = 0, folds: int = 5) -> dict[str, Any]:
    """Summary of one data set as a JSON-able dict (what ``hopnet datasets info`` prints)."""
    from hopnet.datasets import load
    from hopnet.datasets.splits import default_split, grouped_kfold

    ds = load(name, path=path, data_dir=data_dir, seed=seed)
    train, test = default_split(ds, seed=seed)
    out: dict[str, Any] = {
        "name": ds.name,
        "task": ds.task,
        "units": ds.units,
        "file": ds.file,
        "source": ds.source,
        "sha256": ds.sha256,
        "entries": len(ds),
        "target": _stats(ds.targets),
        "atoms_per_entry": _stats(np.array([len(e.atoms["elements"]) for e in ds], dtype=float)),
        "split": {"seed": seed, "train": int(len(train)), "test": int(len(test))},
    }
    if ds.task == "migration-barrier":
        out["classes"] = dict(Counter(e.meta.get("class") for e in ds).most_common())
        out["ions"] = dict(Counter(e.meta.get("ion") for e in ds).most_common())
        out["compounds"] = len({e.meta.get("compound") for e in ds})
    try:
        out["grouped_kfold"] = {"n_folds": folds,
                                "test_sizes": [int(len(t)) for _, t in grouped_kfold(ds, folds, seed)]}
    except HopnetError as exc:
        out["grouped_kfold"] = {"n_folds": folds, "error": str(exc)}
    return out


def _run_info(args: argparse.Namespace) -> int:
    info = dataset_info(args.name, path=args.path, data_dir=args.data_dir, seed=args.seed,
                        folds=args.folds)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    t = info["target"]
    print(f"{info['name']}: {info['entries']} entries ({info['task']}), from {info['source']}: {info['file']}")
    print(f"  sha256   {info['sha256']}")
    print(f"  units    {info['units']}")
    print(f"  target   min {t['min']:.4g}  max {t['max']:.4g}  mean {t['mean']:.4g}  "
          f"std {t['std']:.4g}  median {t['median']:.4g}")
    a = info["atoms_per_entry"]
    print(f"  atoms    min {a['min']:.0f}  max {a['max']:.0f}  mean {a['mean']:.1f}")
    s = info["split"]
    print(f"  split    train {s['train']}  test {s['test']}  (seed {s['seed']})")
    g = info["grouped_kfold"]
    print(f"  {g['n_folds']}-fold grouped test sizes: {g.get('test_sizes', g.get('error'))}")
    if "classes" in info:
        print(f"  {len(info['classes'])} classes, {info['compounds']} compounds; ions: "
              + ", ".join(f"{k} {v}" for k, v in info["ions"].items()))
    return 0
