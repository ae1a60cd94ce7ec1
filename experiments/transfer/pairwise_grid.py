"""Issue 5, experiment 2: the pair-wise transfer grid over the seven pre-training properties.

For every source property: pre-train (capped at 941 structures, the smallest set, as published);
for every other target property and fine-tune size (100, 800): fine-tune with strategy ``all``
and compare with the same model trained from scratch on the same entries. Each target property's
test set is a fixed seeded 10 % split. Published average gain: +25 % R², -16 % MAE.

    python experiments/transfer/pairwise_grid.py --out runs/tl/grid                # GPU
    python experiments/transfer/pairwise_grid.py --profile cpu --out results/tl/grid-cpu  # CPU, small encoder
    python experiments/transfer/pairwise_grid.py --quick --out /tmp/tl-grid         # CPU smoke run

The ``cpu`` profile: small encoder, all seven properties, PT capped at 941 for 30 epochs, FT sizes
100 and 800 for 30 epochs (lr 1e-3, 10 % validation, patience 10) -- about an hour on one core.

Resumable (OUT/results.jsonl); writes OUT/summary.json with per-pair and average gains.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hopnet.infra.provenance import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_profile_flags, append, read_rows, cpu_pretraining, profile_of, cpu_training, done_keys, finetune_and_test, full_training, quick_training, record, replace, setup  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    add_profile_flags(ap, "2 properties, tiny sizes, small encoder (CPU)")
    ap.add_argument("--properties", default="all")
    ap.add_argument("--sizes", default="100,800")
    ap.add_argument("--strategy", default="all")
    ap.add_argument("--accelerator", default="auto")
    args = ap.parse_args(argv)
    setup()
    from hopnet.datasets import load
    from hopnet.datasets.multiprop import MultiPropertyDataset, cap_entries, load_multiprop, select_properties
    from hopnet.datasets.splits import random_split
    from hopnet.nn.config import EncoderConfig
    from hopnet.training.pretrain import pretrain

    out = Path(args.out)
    profile = profile_of(args)
    if profile == "quick":
        props, sizes, cap, pool = ["fe", "pz"], [10, 20], 24, 40
        enc, pt_train, ft_train = EncoderConfig.small(), quick_training(1), quick_training(1)
    elif profile == "cpu":
        props, sizes, cap, pool = select_properties(args.properties), [int(s) for s in args.sizes.split(",")], 941, None
        enc = EncoderConfig.small()
        pt_train = replace(cpu_pretraining(941), epochs=30)
        ft_train = cpu_training(30)
    else:
        props, sizes, cap, pool = select_properties(args.properties), [int(s) for s in args.sizes.split(",")], 941, None
        enc = EncoderConfig.paper()
        pt_train = full_training(accelerator=args.accelerator)
        ft_train = full_training(accelerator=args.accelerator)
    results = out / "results.jsonl"
    done = done_keys(results)
    for src in props:
        if not (out / f"pt-{src}" / "model" / "config.json").is_file():
            pretrain(load_multiprop(src, max_size=cap), enc, pt_train, out / f"pt-{src}", resume=True)
    for dst in props:
        ds = cap_entries(load(dst), pool, seed=1)
        data = MultiPropertyDataset.single(ds, dst)
        tr, te = random_split(len(ds), seed=0, test_fraction=0.1)
        train, test = data.subset(tr), data.subset(te)
        for size in sizes:
            runs = {"scratch": None, **{f"pt-{s}": str(out / f"pt-{s}" / "model") for s in props if s != dst}}
            for name, source in runs.items():
                key = f"{name}->{dst}/n{size}"
                if key in done:
                    continue
                row = finetune_and_test(source, train, test, args.strategy if source else "new-head",
                                        replace(ft_train, seed=0), out / "ft" / f"{name}-{dst}-n{size}",
                                        encoder=enc, size=size)
                append(results, {"key": key, "source": name, "target": dst, "size": size, **row})
    rows = read_rows(results)
    scratch = {(r["target"], r["size"]): r for r in rows if r["source"] == "scratch"}
    gains = []
    for r in rows:
        base = scratch.get((r["target"], r["size"]))
        if r["source"] == "scratch" or base is None:
            continue
        gains.append({"pair": f"{r['source'][3:]}->{r['target']}", "size": r["size"],
                      "r2_gain": (r["r2"] - base["r2"]) / abs(base["r2"]) if base["r2"] else None,
                      "mae_change": (r["mae"] - base["mae"]) / base["mae"]})
    ok = [g for g in gains if g["r2_gain"] is not None]
    summary = {"pairs": gains, "average": {
        "r2_gain": float(np.mean([g["r2_gain"] for g in ok])) if ok else None,
        "mae_change": float(np.mean([g["mae_change"] for g in gains])) if gains else None},
        "published_average": {"r2_gain": 0.25, "mae_change": -0.16}, "profile": profile,
        "provenance": record({"pt": pt_train.to_dict(), "ft": ft_train.to_dict(), "encoder": enc.to_dict(),
                              "cap": cap, "sizes": sizes}, 0)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    print(json.dumps(summary["average"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
