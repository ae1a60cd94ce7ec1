"""Issue 5, experiment 1: out-of-domain check on jarvis2d (993 2-D band gaps, scaled [-1, 1]).

Scratch vs pair-wise (PT on fe, PT on bg) vs MPT (all seven properties), same fine-tune budget,
5-fold CV on the 993 (random folds: the structures are distinct). Published on the held-back
test: scratch R² 0.635 / MAE 0.148, FE-PT 0.670 / 0.127, MPT 0.671 / 0.125.

    python experiments/transfer/jarvis2d_cv.py --out runs/tl/jarvis2d            # GPU, paper size
    python experiments/transfer/jarvis2d_cv.py --profile cpu --out runs/tl/jarvis2d-cpu  # CPU, small encoder
    python experiments/transfer/jarvis2d_cv.py --quick --out /tmp/tl-quick        # CPU smoke run

The ``cpu`` profile uses the small encoder, pre-trains every source on the full data for the same
number of structure passes (``common.CPU_PT_PASSES``) and fine-tunes 40 epochs. ``--pretrain-only``
and ``--models`` let two processes share the work (results are appended line by line).

Resumable: finished (model, fold) rows are read back from OUT/results.jsonl; pre-trained
models are reused from OUT/pt-*/model. Writes OUT/summary.json (mean ± sd of R² and MAE).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hopnet.infra.provenance import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    add_profile_flags, append, model_training, read_rows, cpu_pretraining, profile_of, cpu_training, done_keys, finetune_and_test, full_training, quick_training, record, replace, setup, summarise,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    add_profile_flags(ap, "tiny CPU profile (smoke test)")
    ap.add_argument("--pretrain-only", action="store_true")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--strategy", default="new-head")
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--models", default="scratch,pt-fe,pt-bg,mpt")
    args = ap.parse_args(argv)
    setup()
    from hopnet.datasets import load
    from hopnet.datasets.multiprop import MultiPropertyDataset, load_multiprop
    from hopnet.datasets.splits import grouped_kfold
    from hopnet.nn.config import EncoderConfig
    from hopnet.training.pretrain import pretrain

    out = Path(args.out)
    profile = profile_of(args)
    # pt_for(number of pre-training rows) -> the pre-training config of one source
    if profile == "quick":
        enc, ft_train = EncoderConfig.small(), quick_training(1)
        pt_cap, n_ft, folds, pt_for = 24, 30, 2, lambda n: quick_training(1)
    elif profile == "cpu":
        enc, ft_train = EncoderConfig.small(), cpu_training(40)
        pt_cap, n_ft, folds, pt_for = None, None, args.folds, cpu_pretraining
    else:
        enc, ft_train = EncoderConfig.paper(), full_training(accelerator=args.accelerator)
        pt_cap, n_ft, folds = None, None, args.folds
        pt_for = lambda n: full_training(accelerator=args.accelerator)  # noqa: E731
    ds = load("jarvis2d")
    if n_ft:
        ds = ds.subset(range(n_ft))
    data = MultiPropertyDataset.single(ds, "jarvis2d")
    sources = {"scratch": None}
    for name in args.models.split(","):
        if name == "scratch":
            continue
        props = "all" if name == "mpt" else name.split("-", 1)[1]
        folder = out / name / "model"
        if not (folder / "config.json").is_file():
            pt_data = load_multiprop(props, max_size=pt_cap)
            pretrain(pt_data, enc, pt_for(len(pt_data)), out / name, resume=True)
        sources[name] = str(folder)
    if args.pretrain_only:
        return 0
    results = out / "results.jsonl"
    done = done_keys(results)
    for f, (tr, te) in enumerate(grouped_kfold(ds, folds, seed=0, group_by="id")):
        for name, src in sources.items():
            key = f"{name}/fold{f}"
            if key in done:
                continue
            row = finetune_and_test(src, data.subset(tr), data.subset(te), args.strategy,
                                    replace(ft_train, seed=f), out / "ft" / name / f"fold{f}", encoder=enc)
            append(results, {"key": key, "model": name, "fold": f, **row})
    rows = read_rows(results)
    summary = {"summary": summarise(rows, "model"), "published_test": {
        "scratch": {"r2": 0.635, "mae": 0.148}, "pt-fe": {"r2": 0.670, "mae": 0.127},
        "mpt": {"r2": 0.671, "mae": 0.125}}, "profile": profile, "strategy": args.strategy,
        "provenance": record({"pt": {n: model_training(src) for n, src in sources.items() if src},
                              "ft": ft_train.to_dict(), "encoder": enc.to_dict()}, 0, ds.sha256)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    print(json.dumps(summary["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
