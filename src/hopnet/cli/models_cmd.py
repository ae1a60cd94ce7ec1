"""``hopnet models list``: the models that ship inside the package (no network);
``hopnet models check [NAME|DIR ...]``: verify model folders (format version, payload
checksums, graph-code version) and that they load."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hopnet.infra.errors import HopnetError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("models", help="list the shipped models or check model folders",
                              description="Models inside the package; they load offline by name. "
                                          "'check' verifies model folders (default: every shipped "
                                          "model): format version, sha256 of the weights, graph "
                                          "code, and a full load.")
    p.add_argument("action", nargs="?", default="list", choices=("list", "check"))
    p.add_argument("models", nargs="*", metavar="NAME|DIR", help="models to check")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)


def model_summaries() -> list[dict]:
    from hopnet.models.folder import read_model_files, shipped_models

    rows = []
    for name, folder in shipped_models().items():
        config, meta = read_model_files(folder)
        cv = meta.get("cv", {})
        rows.append({
            "name": name,
            "kind": config.get("kind"),
            "members": len(meta.get("seeds", [])) or meta.get("n_members"),
            "trained_on": meta.get("trained_on", meta.get("data_name")),
            "cv_mae": cv.get("mae"),
            "cv_r2": cv.get("r2"),
            "summary": meta.get("summary", ""),
            "properties": meta.get("properties"),
            "path": str(folder),
        })
    return rows


def _check(names: list[str]) -> int:
    from hopnet.models.folder import load_model, resolve_model_dir, shipped_models

    for name in names or list(shipped_models()):
        folder = resolve_model_dir(name)
        load_model(folder)  # a damaged or incompatible folder raises one ModelFileError line
        print(f"{name}: ok ({folder})")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check(args.models)
    if args.models:
        raise HopnetError("'hopnet models list' takes no model names; did you mean 'hopnet models check'?")
    rows = model_summaries()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no shipped models")
        return 0
    for r in rows:
        if r["cv_mae"] is not None:
            cv = f"CV MAE {r['cv_mae']:.3f} eV, R² {r['cv_r2']:.2f}"
        elif r["properties"]:
            cv = f"heads: {', '.join(r['properties'])}"
        else:
            cv = "no CV record"
        print(f"{r['name']:10s} {r['kind']:9s} {r['members']} member(s); {cv}. {r['summary']}")
    return 0
