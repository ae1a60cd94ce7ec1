"""Issue 5, experiment 3: barrier Models 1-4 fine-tuned from the MPT encoder vs from scratch,
5-fold grouped CV (whole compounds per fold) on the 559 training paths.

The MPT encoder comes from ``hopnet pretrain --properties all`` (``--mpt DIR``: its OUT/model;
without it the script pre-trains one into OUT/mpt). The barrier graphs carry no mobile-ion flag
here, so that the 92-feature MPT encoder fits (``graph.mobile_flag = False`` for both arms).

    python experiments/transfer/barrier_from_mpt.py --mpt runs/mpt/model --out runs/tl/barrier   # GPU
    python experiments/transfer/barrier_from_mpt.py --quick --out /tmp/tl-barrier                # CPU smoke
    python experiments/transfer/barrier_from_mpt.py --profile cpu --mpt results/tl/jarvis2d-cpu/mpt/model \
        --scratch results/cv5-seed0 --out results/tl/barrier-cpu                                # CPU

The ``cpu`` profile runs the CPU recipes of ``hopnet reproduce --cv 5`` (``hopnet.reproduce.MODELS``:
small encoder, 5 Å crop, and for Models 3/4 path pooling and the mobile-ion flag) through
``hopnet.crossval`` with the MPT encoder loaded (its 92-feature input widened by a zero-weight
flag column); the scratch arm is the same recipe without it: read from ``--scratch`` (a
``hopnet reproduce --cv 5`` output folder, spec checked) or trained here.

Resumable (OUT/results.jsonl); writes OUT/summary.json (mean ± sd of MAE / R² per arm).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hopnet.infra.provenance import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_profile_flags, append, read_rows, done_keys, profile_of, full_training, quick_training, record, replace, setup, summarise  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--mpt", default=None, help="MPT property model folder (OUT/model of hopnet pretrain)")
    add_profile_flags(ap, "Model 3 only, 16 small paths, 2 folds, small encoder")
    ap.add_argument("--variants", default="initial-final,initial-delta,band,band-attention")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--models", default="model3", help="cpu profile: hopnet.reproduce model names")
    ap.add_argument("--scratch", default=None, help="cpu profile: hopnet reproduce --cv output folder")
    args = ap.parse_args(argv)
    setup()
    profile = profile_of(args)
    if profile == "cpu":
        return cpu_profile(args)
    import numpy as np

    from hopnet.datasets import load
    from hopnet.datasets.multiprop import load_multiprop
    from hopnet.datasets.splits import grouped_kfold
    from hopnet.metrics import regression_metrics
    from hopnet.models.barrier import BarrierModelConfig
    from hopnet.models.folder import load_model
    from hopnet.nn.config import EncoderConfig
    from hopnet.models.property import load_property_model
    from hopnet.training.pretrain import pretrain
    from hopnet.training.train import train

    out = Path(args.out)
    ds = load("migration-barriers")
    if profile == "quick":
        n_atoms = np.array([len(e.atoms["elements"]) for e in ds])
        ds = ds.subset(np.sort(np.argsort(n_atoms, kind="stable")[:16]))
        variants, folds, training = ["band"], 2, quick_training(1)
        enc, pt_train, cap = EncoderConfig.small(), quick_training(1), 16
    else:
        variants, folds = args.variants.split(","), args.folds
        training = full_training(accelerator=args.accelerator)
        enc, pt_train, cap = EncoderConfig.paper(), full_training(accelerator=args.accelerator), None
    mpt = Path(args.mpt) if args.mpt else out / "mpt" / "model"
    if not (mpt / "config.json").is_file():
        pretrain(load_multiprop("all", max_size=cap), enc, pt_train, mpt.parent, resume=True)
    _, mpt_cfg, _ = load_property_model(mpt)
    enc_file = mpt.resolve()  # a model folder: its first member's encoder is the start point
    results = out / "results.jsonl"
    done = done_keys(results)
    for variant in variants:
        for arm in ("scratch", "mpt"):
            cfg = BarrierModelConfig(variant=variant, encoder=mpt_cfg.encoder, graph={"mobile_flag": False},
                                     pretrained_encoder=str(enc_file) if arm == "mpt" else None)
            for f, (tr, te) in enumerate(grouped_kfold(ds, folds, seed=0)):
                key = f"{variant}/{arm}/fold{f}"
                if key in done:
                    continue
                t0 = time.time()
                folder = train(ds.subset(tr), cfg, replace(training, seed=f), out / variant / arm / f"fold{f}",
                               resume=True)
                test = ds.subset(te)
                m = regression_metrics(test.targets, load_model(folder).predict_paths(list(test)).mean)
                append(results, {"key": key, "variant": variant, "arm": arm, "fold": f,
                                 "seconds": round(time.time() - t0, 1), "mae": m["mae"], "r2": m["r2"]})
    rows = read_rows(results)
    for r in rows:
        r["model"] = f"{r['variant']}/{r['arm']}"
    summary = {"summary": summarise(rows, "model"), "quick": profile == "quick",
               "provenance": record({"training": training.to_dict(), "mpt": str(mpt)}, 0)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    print(json.dumps(summary["summary"], indent=2))
    return 0


def cpu_profile(args: argparse.Namespace) -> int:
    """Reproduce's CPU recipes, scratch vs from the MPT encoder, same grouped folds (seed 0)."""
    from hopnet.crossval import cross_validate, load_records, summarize
    from hopnet.datasets import load
    from hopnet.reproduce import model_spec

    if not args.mpt:
        raise SystemExit("--profile cpu needs --mpt (a hopnet pretrain --properties all model folder)")
    out = Path(args.out)
    ds = load("migration-barriers")
    enc_file = Path(args.mpt).resolve()  # a model folder: its first member's encoder is the start point
    summary: dict = {}
    for name in args.models.split(","):
        spec = model_spec(name)
        scratch_dir = Path(args.scratch) / name if args.scratch else out / f"{name}-scratch"
        if args.scratch:
            stored = json.loads((scratch_dir / "spec.json").read_text())
            if stored != json.loads(json.dumps(spec)):
                raise SystemExit(f"{scratch_dir}/spec.json differs from today's {name} recipe")
        else:
            cross_validate(spec, ds, scratch_dir, n_folds=args.folds)
        mpt_spec = json.loads(json.dumps(spec))
        mpt_spec["gnn"]["pretrained_encoder"] = str(enc_file)
        cross_validate(mpt_spec, ds, out / f"{name}-mpt", n_folds=args.folds)
        for arm, folder in (("scratch", scratch_dir), ("mpt", out / f"{name}-mpt")):
            recs = [r for r in load_records(folder) if r["meta"].get("fold_seed", 0) == 0]
            summary[f"{name}/{arm}"] = summarize(recs)
    brief = {k: {m: v.get(m) for m in ("n_folds", "mae", "mae_sd", "r2", "r2_sd")}
             for k, v in summary.items()}
    atomic_write_text(out / "summary.json", json.dumps({"summary": summary, "profile": "cpu", "mpt": str(args.mpt),
                                                  "provenance": record({"models": args.models}, 0)}, indent=1))
    print(json.dumps(brief, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
