"""Render the transfer-learning experiments' summary files as the Markdown tables of
``docs/results.md`` (written between the ``<!-- transfer:BEGIN/END -->`` markers).

    python experiments/transfer/report.py --jarvis2d results/tl/jarvis2d-cpu \\
        --grid results/tl/grid-cpu --barrier results/tl/barrier-cpu --doc docs/results.md

Any missing summary is skipped (its table says "not run").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hopnet.infra.provenance import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import read_rows  # noqa: E402

BEGIN, END = "<!-- transfer:BEGIN -->", "<!-- transfer:END -->"


def _load(folder: str | None) -> dict | None:
    if not folder:
        return None
    f = Path(folder) / "summary.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _commit(s: dict) -> str:
    return str(s.get("provenance", {}).get("git_commit", "?"))[:12]


def _paired(rows: list[dict], a: str, b: str) -> tuple[float, float, int, int, int] | None:
    """Mean per-fold (a - b) of MAE and R² over the folds both have, folds where a has the lower
    MAE, folds where a has the higher R², and the number of shared folds."""
    by = {(r["model"], r["fold"]): r for r in rows}
    folds = sorted({f for (m, f) in by if m == a} & {f for (m, f) in by if m == b})
    if not folds:
        return None
    dm = [by[(a, f)]["mae"] - by[(b, f)]["mae"] for f in folds]
    dr = [by[(a, f)]["r2"] - by[(b, f)]["r2"] for f in folds]
    return (sum(dm) / len(folds), sum(dr) / len(folds), sum(d < 0 for d in dm), sum(d > 0 for d in dr), len(folds))


def jarvis2d_table(s: dict | None, rows: list[dict]) -> list[str]:
    lines = ["### 1. Out of domain: jarvis2d (993 2-D band gaps), 5-fold CV", ""]
    if s is None:
        return lines + ["not run", ""]
    pub = s.get("published_test", {})
    lines += ["| model | folds | R² (mean ± sd) | MAE (mean ± sd) | paired vs scratch: ΔMAE, ΔR² (folds better) "
              "| published test R² / MAE |", "|---|---|---|---|---|---|"]
    for name in ("scratch", "pt-fe", "pt-bg", "mpt"):
        r = s["summary"].get(name)
        if r is None:
            continue
        p = pub.get(name)
        ref = f"{p['r2']:.3f} / {p['mae']:.3f}" if p else "–"
        d = _paired(rows, name, "scratch") if name != "scratch" else None
        vs = f"{d[0]:+.4f} ({d[2]}/{d[4]}), {d[1]:+.3f} ({d[3]}/{d[4]})" if d else "–"
        lines.append(f"| {name} | {r['n']} | {r['r2_mean']:.3f} ± {r['r2_sd']:.3f} | "
                     f"{r['mae_mean']:.4f} ± {r['mae_sd']:.4f} | {vs} | {ref} |")
    for other in ("pt-fe", "pt-bg"):
        d = _paired(rows, "mpt", other)
        if d:
            lines.append(f"\nMPT vs {other}, paired over {d[4]} folds: ΔMAE {d[0]:+.4f} (MPT lower in {d[2]}), "
                         f"ΔR² {d[1]:+.3f} (MPT higher in {d[3]}).")
    lines += ["", f"Profile `{s.get('profile')}`, fine-tune strategy `{s.get('strategy')}`, "
              f"commit `{_commit(s)}`.", ""]
    return lines


def grid_targets(rows: list[dict]) -> list[str]:
    """Per (target, FT size): scratch vs the mean and the best of the six pre-trained sources."""
    if not rows:
        return []
    out = ["", "| target | FT size | scratch R² / MAE | pre-trained, mean of sources R² / MAE | best source (R²) |",
           "|---|---|---|---|---|"]
    targets = list(dict.fromkeys(r["target"] for r in rows))
    for size in sorted({r["size"] for r in rows}):
        for t in targets:
            sc = [r for r in rows if r["target"] == t and r["size"] == size and r["source"] == "scratch"]
            pt = [r for r in rows if r["target"] == t and r["size"] == size and r["source"] != "scratch"]
            if not sc or not pt:
                continue
            best = max(pt, key=lambda r: r["r2"])
            out.append(f"| {t} | {size} | {sc[0]['r2']:.3f} / {sc[0]['mae']:.4f} | "
                       f"{sum(r['r2'] for r in pt) / len(pt):.3f} / {sum(r['mae'] for r in pt) / len(pt):.4f} | "
                       f"{best['source'][3:]} ({best['r2']:.3f}) |")
    return out


def grid_table(s: dict | None, rows: list[dict] | None = None) -> list[str]:
    lines = ["### 2. Pair-wise grid (PT capped at 941, FT strategy `all`)", ""]
    if s is None:
        return lines + ["not run", ""]
    pairs = s.get("pairs", [])
    sizes = sorted({p["size"] for p in pairs})
    lines += ["| FT size | pairs | mean R² gain | mean MAE change | pairs with R² gain > 0 | pairs with lower MAE |",
              "|---|---|---|---|---|---|"]
    for n in sizes:
        sel = [p for p in pairs if p["size"] == n]
        r2 = [p["r2_gain"] for p in sel if p["r2_gain"] is not None]
        mae = [p["mae_change"] for p in sel]
        lines.append(f"| {n} | {len(sel)} | {sum(r2) / max(len(r2), 1):+.1%} | {sum(mae) / max(len(mae), 1):+.1%} | "
                     f"{sum(g > 0 for g in r2)}/{len(r2)} | {sum(m < 0 for m in mae)}/{len(mae)} |")
    avg = s.get("average", {})
    pub = s.get("published_average", {})
    if avg.get("r2_gain") is not None:
        lines += ["", f"All pairs: R² gain {avg['r2_gain']:+.1%}, MAE change {avg['mae_change']:+.1%} "
                      f"(published average: {pub.get('r2_gain', 0):+.0%} R², {pub.get('mae_change', 0):+.0%} MAE). "
                      f"R² gain is relative to |R²| of scratch, so pairs where scratch R² is near 0 dominate "
                      f"the mean; the counts are the robust figure. Profile `{s.get('profile')}`, commit "
                      f"`{_commit(s)}`."]
    return lines + grid_targets(rows or []) + [""]


def barrier_table(s: dict | None) -> list[str]:
    lines = ["### 3. Barrier models from the MPT encoder vs scratch (grouped 5-fold CV, 559 paths)", ""]
    if s is None:
        return lines + ["not run", ""]
    lines += ["| model / arm | folds | MAE (eV) | R² | accuracy @0.65 | train (min, 5 folds) |", "|---|---|---|---|---|---|"]
    for key, r in s["summary"].items():
        if not r.get("n_folds"):
            continue
        acc = r.get("classifier", {}).get("accuracy")
        lines.append(f"| {key} | {r['n_folds']} | {r['mae']:.3f} ± {r['mae_sd']:.3f} | {r['r2']:.2f} ± {r['r2_sd']:.2f} | "
                     f"{acc:.1%} | {r['train_seconds'] / 60:.0f} |" if acc is not None else
                     f"| {key} | {r['n_folds']} | {r['mae']:.3f} ± {r['mae_sd']:.3f} | {r['r2']:.2f} | – | – |")
    lines += ["", f"Profile `{s.get('profile')}`, MPT model `{s.get('mpt')}`, commit `{_commit(s)}`.", ""]
    return lines


def render(jarvis2d: str | None, grid: str | None, barrier: str | None) -> str:
    rows = read_rows(Path(jarvis2d) / "results.jsonl") if jarvis2d else []
    grid_rows = read_rows(Path(grid) / "results.jsonl") if grid else []
    lines = jarvis2d_table(_load(jarvis2d), rows) + grid_table(_load(grid), grid_rows) + barrier_table(_load(barrier))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jarvis2d")
    ap.add_argument("--grid")
    ap.add_argument("--barrier")
    ap.add_argument("--doc", help="Markdown file with the BEGIN/END markers to update (default: print)")
    args = ap.parse_args(argv)
    text = render(args.jarvis2d, args.grid, args.barrier)
    if not args.doc:
        print(text)
        return 0
    doc = Path(args.doc)
    old = doc.read_text()
    if BEGIN not in old or END not in old:
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} block")
    head, rest = old.split(BEGIN, 1)
    atomic_write_text(doc, head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
