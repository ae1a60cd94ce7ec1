"""The throughput benchmark's bookkeeping: ratios, targets, table, structure selection."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("hopnet_bench_throughput", ROOT / "benchmarks" / "throughput.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _load()


def test_ratios_are_ours_over_upstream_on_the_primary_dataset():
    ours = {"graphs_band": 100.0, "graphs_fe": 500.0, "train_paper_band": 1.0, "inference_band": 4.0,
            "peak_rss_mb_band_batch": 3000.0, "params_paper": 4_026_241, "graphs_band_n": 559}
    up = {"graphs_band": 5.0, "graphs_fe": 50.0, "train_paper_band": 0.25, "inference_band": 1.0,
          "peak_rss_mb_band_batch": 12000.0, "params_paper": 4_026_753, "graphs_band_n": 559}
    head, detail = bench.ratios(ours, up, "band")
    assert head["graphs"] == pytest.approx(20.0)
    assert head["train_step"] == pytest.approx(4.0)
    assert head["inference"] == pytest.approx(4.0)
    assert head["peak_memory"] == pytest.approx(0.25)
    assert detail["graphs_fe"] == pytest.approx(10.0)
    assert "params_paper" not in detail and "graphs_band_n" not in detail
    head_fe, _ = bench.ratios(ours, up, "fe")
    assert head_fe["graphs"] == pytest.approx(10.0)
    assert head_fe["train_step"] is None  # no fe training figure given


def test_no_upstream_gives_null_ratios():
    head, detail = bench.ratios({"graphs_band": 1.0}, None, "band")
    assert head == {"graphs": None, "train_step": None, "inference": None}
    assert detail == {}


def test_table_lists_only_measured_figures():
    res = {"ours": {"graphs_band": 118.0, "peak_rss_mb_band_batch": 2500.0},
           "upstream": {"graphs_band": 3.0, "peak_rss_mb_band_batch": 10000.0},
           "ratio_detail": {"graphs_band": 118.0 / 3.0, "peak_rss_mb_band_batch": 0.25}}
    text = bench.table(res)
    assert "| graph construction, bands | structures/s | 118 | 3 | 39.3x |" in text
    assert "0.25x" in text
    assert "inference" not in text


def test_quick_plan_is_small():
    plan = bench.Plan.quick()
    assert plan.graph_bands <= 8 and plan.train_steps == 1 and plan.memory is False
    assert plan.primary == "fe"


def test_peak_rss_reset_is_a_high_water_mark():
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc")
    import numpy as np

    assert bench.reset_peak_rss()
    before = bench.peak_rss_mb()
    block = np.ones(64 * 2**20 // 8)  # touch 64 MiB
    assert bench.peak_rss_mb() >= before + 60
    del block


def test_structure_selection_is_seeded_and_size_capped():
    data = os.environ.get("HOPNET_DATA_DIR")
    if not data or not (Path(data) / "pretrain" / "fe.json.gz").exists():
        pytest.skip("HOPNET_DATA_DIR with pretrain/fe.json.gz not available")
    a = bench.load_structures("fe", 20, max_atoms=12)
    b = bench.load_structures("fe", 20, max_atoms=12)
    assert [x[0] for x in a] == [x[0] for x in b]
    assert len(a) == 20 and all(len(x[0]["elements"]) <= 12 for x in a)
    assert all(x[2] == 0 for x in a)
    bands = bench.load_structures("band", 3)
    assert all(x[2] == 5 for x in bands)


def test_extra_lines_compare_paper_training_only():
    ours = {"train_paper_band": 0.8, "train_paper_fe": 4.0, "peak_rss_mb_band_batch": 6000.0,
            "graphs_band": 300.0}
    up = {"train_paper_band": 0.4, "train_paper_fe": 4.0, "peak_rss_mb_band_batch": 12000.0,
          "graphs_band": 6.0}
    r = bench._line_ratios(ours, up)
    assert r == {"train_paper_band": pytest.approx(2.0), "train_paper_fe": pytest.approx(1.0),
                 "peak_rss_mb_band_batch": pytest.approx(0.5)}
    assert bench._line_ratios({"train_paper_band": 1.0}, {}) == {}
    res = {"ours": ours, "upstream": up, "config": {"ours_runtime_tuned": True},
           "lines": {"same_allocator": {"upstream": {"train_paper_band": 0.5, "train_paper_fe": 5.0}},
                     "bf16_mixed": {"ours": {"train_paper_band": 1.5}}}}
    text = bench.lines_table(res)
    assert "| as shipped (hopnet tuned, upstream default) | 0.8 | 0.4 | 2x | 4 | 4 | 1x | 6000 | 12000 | 0.5x |" in text
    assert "| same allocator (both tuned), fp32 | 0.8 | 0.5 | 1.6x | 4 | 5 | 0.8x | 6000 | – | – |" in text
    assert "| hopnet bf16-mixed vs upstream fp32 (both tuned) | 1.5 | 0.5 | 3x |" in text


def test_small_figures_are_medians_of_alternating_rounds(monkeypatch):
    """repeat_small re-measures the small-size training figures side after side and keeps the
    median of every figure's rounds (and the rounds themselves)."""
    calls = []
    values = {"ours": iter([300.0, 200.0]), "upstream": iter([140.0, 160.0])}

    def fake_worker(side, tasks, threads, log, thp=False, tuned=False):
        calls.append((side, tuple(t["dataset"] for t in tasks), tuned))
        assert all(t["size"] == "small" and t["train_steps"] == plan.small_train_steps for t in tasks)
        return {"train_small_fe": next(values[side])}

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    plan = bench.Plan(train_datasets=("fe",), small_rounds=3)
    results = {"ours": {"train_small_fe": 250.0, "graphs_fe": 9.0}, "upstream": {"train_small_fe": 100.0}}
    bench.repeat_small(results, plan, 1, lambda m: None, tuned={"ours": True, "upstream": False})
    assert calls == [("ours", ("fe",), True), ("upstream", ("fe",), False)] * 2
    assert results["ours"]["train_small_fe"] == 250.0 and results["upstream"]["train_small_fe"] == 140.0
    assert results["ours"]["train_small_fe_rounds"] == [250.0, 300.0, 200.0]
    assert results["ours"]["graphs_fe"] == 9.0
    head, _ = bench.ratios(results["ours"], results["upstream"], "fe")
    assert head["train_step_small"] == pytest.approx(250 / 140)
    assert bench.Plan.quick().small_rounds == 1
