"""``hopnet evaluate``: score a model on labelled migration paths; JSON report and parity plot."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hopnet.cli.common import check_output_file, check_threshold
from hopnet.infra.errors import HopnetError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a barrier model on labelled paths (MAE, R², conductor classes)",
        description="Predict the barriers of labelled migration paths with a model and report "
                    "MAE, RMSE, R², Spearman and the good/poor-conductor classification.",
    )
    p.add_argument("--model", required=True, help="shipped model name (default, mpt) or model folder (required)")
    p.add_argument("--data", required=True,
                   help="registered data-set name or a .json/.json.gz list of band entries "
                        "(atoms, target, sys_name); required")
    p.add_argument("--output", default=None, metavar="FILE.json", help="write the full report here (default: none)")
    p.add_argument("--threshold", type=float, default=0.65,
                   help="good conductor: E_m below this (eV, default 0.65)")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="write a parity plot here (default: none)")
    p.add_argument("--batch-size", type=int, default=None, help="paths per model batch (default: the model's own)")
    p.set_defaults(func=run)


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def summary_lines(report: dict) -> list[str]:
    """The short human table printed by the command."""
    c = report["classifier"]
    return [
        f"model {report['provenance'].get('model')}  on  {report['provenance']['data'].get('name')}",
        f"  n          {report['n']}",
        f"  MAE        {_fmt(report['mae'])} eV",
        f"  RMSE       {_fmt(report['rmse'])} eV",
        f"  R²         {_fmt(report['r2'])}",
        f"  Spearman   {_fmt(report['spearman'])}",
        f"  accuracy   {_fmt(c['accuracy'])}  (good conductor: E_m < {c['threshold']:g} eV)",
        f"  precision  good {_fmt(c['precision_good'])}  poor {_fmt(c['precision_poor'])}",
        f"  recall     good {_fmt(c['recall_good'])}  poor {_fmt(c['recall_poor'])}",
    ]


def run(args: argparse.Namespace) -> int:
    from hopnet.evaluate import evaluate
    from hopnet.infra.provenance import atomic_write_bytes, atomic_write_text

    args.threshold = check_threshold(args.threshold)
    check_output_file(args.output, "--output")
    check_output_file(args.plot, "--plot")
    if args.batch_size is not None and args.batch_size < 1:
        raise HopnetError(f"--batch-size must be at least 1, got {args.batch_size}")
    report = evaluate(args.model, args.data, threshold=args.threshold, batch_size=args.batch_size)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    png = None
    if args.plot:
        from hopnet.plots import parity_png

        preds = report["predictions"]
        png = parity_png([r["target"] for r in preds], [r["prediction"] for r in preds],
                         std=[r["std"] for r in preds], threshold=args.threshold,
                         title=f"{report['provenance'].get('model')} on {report['provenance']['data'].get('name')}")
    # everything is computed before the first file is written: an error leaves no output behind
    try:
        if args.output:
            atomic_write_text(args.output, text)
        if png is not None:
            atomic_write_bytes(args.plot, png)
    except OSError as exc:
        raise HopnetError(f"cannot write {exc.filename or 'output'}: {exc.strerror or exc}") from None
    print("\n".join(summary_lines(report)))
    from hopnet.evaluate import in_sample_note

    note = in_sample_note(report.get("in_training_set"))
    if note:
        print(f"hopnet: warning: {note}", file=sys.stderr)
    if args.output:
        print(f"report written to {args.output}")
    if png is not None:
        print(f"parity plot written to {args.plot}")
    return 0
