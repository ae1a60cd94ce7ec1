"""Lightning training of the barrier models, model folders, and ``hopnet train``."""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from hopnet.datasets import Entry
from hopnet.infra.errors import DataError, ModelFileError
from hopnet.models.barrier import BarrierModelConfig, build_model
from hopnet.models.folder import load_model, seal_metadata
from hopnet.nn import EncoderConfig
from hopnet.training.config import TrainingConfig, TrainingConfigError, load_run_config
from hopnet.models.inputs import BarrierGraphs, make_loader
from hopnet.training.train import carve_validation, train
from test_barrier import synthetic_entries

torch.set_num_threads(1)

MODEL = BarrierModelConfig(variant="band", encoder=EncoderConfig.small(), head_hidden=(16,))
TRAIN = TrainingConfig(epochs=2, batch_size=4, lr=3e-3, val_fraction=0.25, patience=0,
                       progress_bar=False, cache_dir="none")


@pytest.fixture(scope="module")
def entries():
    return synthetic_entries(8)


def _states(folder):
    return torch.load(folder / "weights.pt", weights_only=True)


def test_same_seed_same_weights(tmp_path, entries):
    a = _states(train(entries, MODEL, TRAIN, tmp_path / "a"))
    b = _states(train(entries, MODEL, TRAIN, tmp_path / "b"))
    c = _states(train(entries, MODEL, replace(TRAIN, seed=1), tmp_path / "c"))
    assert a[0].keys() == b[0].keys()
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert not all(torch.equal(a[0][k], c[0][k]) for k in a[0])


def test_tiny_model3_overfits_eight_bands(tmp_path, entries):
    cfg = replace(TRAIN, epochs=150, batch_size=8, lr=1e-2, val_fraction=0.0, schedule="cosine")
    folder = train(entries, MODEL, cfg, tmp_path / "fit")
    y = np.array([e.target for e in entries])
    pred = load_model(folder).predict_paths(entries).mean
    mae = np.abs(pred - y).mean()
    assert mae < 0.25 * np.abs(y - y.mean()).mean(), (mae, pred, y)


def test_model_folder_round_trip_and_ensemble(tmp_path, entries):
    folder = train(entries, MODEL, replace(TRAIN, ensemble=2), tmp_path / "ens")
    meta = json.loads((folder / "metadata.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "gnn" and config["model"]["variant"] == "band"
    assert meta["seeds"] == [0, 1] and len(meta["members"]) == 2
    assert meta["n_val"] == 2 and meta["n_train"] == 6 and "val" in meta["metrics"]
    y = np.array([e.target for e in entries])
    assert meta["target_scaling"]["mean"] == pytest.approx(y[[i for i, e in enumerate(entries)
                                                               if e.id not in meta["val_ids"]]].mean())
    predictor = load_model(folder)
    pred = predictor.predict_paths(entries)
    assert pred.members.shape == (2, 8) and np.all(pred.std > 0)
    # the same numbers straight from the trained members' states
    data = BarrierGraphs(entries, MODEL)
    batch = next(iter(make_loader(data, 8)))
    direct = []
    for state in _states(folder):
        m = build_model(MODEL)
        m.load_state_dict(state)
        with torch.no_grad():
            direct.append(m.eval().predict_ev(batch).double().numpy())
    np.testing.assert_allclose(pred.members, np.array(direct), rtol=0, atol=1e-6)
    np.testing.assert_allclose(pred.mean, np.mean(direct, axis=0), atol=1e-6)
    # float16 weights: half the size, nearly the same predictions
    half = train(entries, MODEL, replace(TRAIN, ensemble=2, float16_weights=True), tmp_path / "half")
    assert _states(half)[0]["head.0.weight"].dtype == torch.float16
    np.testing.assert_allclose(load_model(half).predict_paths(entries).mean, pred.mean, atol=2e-2)


def test_mismatched_or_broken_weights_are_model_file_errors(tmp_path, entries):
    folder = train(entries, MODEL, replace(TRAIN, epochs=1), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["model"]["encoder"]["hidden_features"] = 48
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError) as exc:
        load_model(folder)
    assert "does not match config.json" in str(exc.value) and "\n" not in str(exc.value)
    (folder / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match="weights.pt is corrupt or was changed"):
        load_model(folder)
    # a file matching its recorded checksum that is still no torch file
    meta = json.loads((folder / "metadata.json").read_text())
    meta = seal_metadata(folder, config, meta)
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="unreadable"):
        load_model(folder)
    (folder / "weights.pt").unlink()
    with pytest.raises(ModelFileError, match="missing weights.pt"):
        load_model(folder)


class _Crash:
    """A Lightning callback that fails when the second epoch starts."""

    def __new__(cls):
        import lightning as L

        class Crash(L.Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                if trainer.current_epoch == 1:
                    raise RuntimeError("simulated crash")

        return Crash()


def test_resume_continues_from_the_checkpoint(tmp_path, entries):
    cfg = replace(TRAIN, epochs=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(entries, MODEL, cfg, tmp_path / "r", callbacks=[_Crash()])
    run = tmp_path / "r" / "runs" / "member-0"
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (tmp_path / "r" / "model").exists()
    folder = train(entries, MODEL, cfg, tmp_path / "r", resume=True)
    with open(run / "logs" / "version_1" / "metrics.csv") as fh:
        epochs = sorted({int(r["epoch"]) for r in csv.DictReader(fh) if r.get("epoch")})
    assert epochs == [1, 2]  # the resumed run did only the missing epochs
    straight = train(entries, MODEL, cfg, tmp_path / "s")
    a, b = _states(folder)[0], _states(straight)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_target_is_a_data_error_before_training(tmp_path, entries):
    bad = list(entries)
    bad[3] = Entry(bad[3].id, float("nan"), bad[3].atoms, bad[3].meta)
    with pytest.raises(DataError, match="syn_3"):
        train(bad, MODEL, TRAIN, tmp_path / "nan")
    assert not (tmp_path / "nan").exists()


def test_validation_fold_is_grouped(entries):
    grouped = [Entry(e.id, e.target, e.atoms, {**e.meta, "compound": f"c{i // 2}"})
               for i, e in enumerate(entries)]
    tr, va = carve_validation(grouped, 0.25, seed=3)
    assert len(tr) + len(va) == 8 and len(va) == 2
    assert {grouped[i].meta["compound"] for i in va}.isdisjoint({grouped[i].meta["compound"] for i in tr})


# ----------------------------------------------------------------------------------- CLI
def test_run_file_unknown_keys(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("training:\n  epochs: 3\n  epoch: 4\n")
    with pytest.raises(TrainingConfigError, match="unknown training key.*epoch"):
        load_run_config(f)
    f.write_text("gnn:\n  variant: band\n  encoder: {preset: small, width: 3}\n")
    with pytest.raises(TrainingConfigError, match="width"):
        load_run_config(f)


def test_cli_train_from_yaml_and_flags(tmp_path, entries, capsys):
    from hopnet.cli import main

    records = [{"jid": i, "sys_name": e.id, "class": "SYN", "formula": "x", "target": e.target,
                "atoms": e.atoms} for i, e in enumerate(entries)]
    data = tmp_path / "bands.json.gz"
    with gzip.open(data, "wt") as fh:
        json.dump(records, fh)
    run = tmp_path / "run.yaml"
    run.write_text(
        f"data: {data}\nmodel: gnn\n"
        "gnn:\n  variant: band\n  encoder: small\n  crop_radius: 4.0\n  head_hidden: [8]\n"
        "training:\n  epochs: 5\n  batch_size: 4\n  val_fraction: 0.25\n  cache_dir: none\n"
    )
    out = tmp_path / "out"
    rc = main(["train", "--config", str(run), "--epochs", "1", "--variant", "initial-delta",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    config = json.loads((out / "model" / "config.json").read_text())
    meta = json.loads((out / "model" / "metadata.json").read_text())
    assert config["model"]["variant"] == "initial-delta" and config["model"]["crop_radius"] == 4.0
    assert config["training"]["epochs"] == 1 and config["model"]["head_hidden"] == [8]
    # all synthetic bands are one compound (Li in MgO): no grouped validation fold can be carved
    assert meta["n_train"] == 8 and meta["n_val"] == 0
    run.write_text("training:\n  epoch: 3\n")
    assert main(["train", "--config", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("hopnet: error:") and "epoch" in err[-1]


def test_bf16_mixed_precision_trains_and_predicts(tmp_path, entries):
    from hopnet.models.folder import load_model

    folder = train(entries, MODEL, replace(TRAIN, precision="bf16-mixed"), tmp_path / "bf16")
    pred = load_model(folder).predict_paths(entries)
    assert np.all(np.isfinite(pred.mean)) and pred.mean.shape == (len(entries),)
    with pytest.raises(TrainingConfigError, match="precision"):
        replace(TRAIN, precision="fp8")


def test_only_the_training_commands_tune_the_allocator(tmp_path, entries, monkeypatch):
    """The library leaves process-wide settings alone (``train()`` from Python does not tune the
    allocator); the CLI's training commands do; ``HOPNET_TUNE_ALLOCATOR=0`` turns it off."""
    import hopnet.infra.runtime as runtime
    from hopnet.cli import main

    calls = []
    real = runtime.tune_allocator
    monkeypatch.setattr(runtime, "tune_allocator", lambda: calls.append(1) or real())
    train(entries, MODEL, replace(TRAIN, epochs=1, ensemble=1), tmp_path / "t")
    assert calls == []
    assert main(["models", "list"]) == 0 and calls == []
    assert main(["train", "--lr", "nan", "--out", str(tmp_path / "o")]) != 0
    assert calls == [1]

    monkeypatch.setattr(runtime, "_done", False)
    monkeypatch.setenv("HOPNET_TUNE_ALLOCATOR", "0")
    assert real() is False and runtime._done is False


def test_optimizer_is_fused_adamw_with_the_schedule():
    """The trainers' AdamW is torch's fused kernel on CPU (same update as the per-tensor loop to
    rounding), learning rate per step from the one-cycle schedule."""
    from hopnet.training.module import adamw_with_schedule

    cfg = TrainingConfig(lr=1e-3, weight_decay=1e-5)
    torch.manual_seed(0)
    nets = [torch.nn.Linear(6, 3) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    fused = adamw_with_schedule(nets[0].parameters(), cfg, total_steps=10)
    assert fused["optimizer"].defaults["fused"] is True and fused["lr_scheduler"]["interval"] == "step"
    loop = torch.optim.AdamW(nets[1].parameters(), lr=1e-3, weight_decay=1e-5)
    sched = fused["lr_scheduler"]["scheduler"]
    x = torch.randn(16, 6)
    lrs = []
    for _ in range(3):
        lrs.append(fused["optimizer"].param_groups[0]["lr"])
        for net, opt in ((nets[0], fused["optimizer"]), (nets[1], loop)):
            opt.zero_grad()
            net(x).square().mean().backward()
        loop.param_groups[0]["lr"] = fused["optimizer"].param_groups[0]["lr"]
        fused["optimizer"].step()
        loop.step()
        sched.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert lrs[0] == pytest.approx(1e-3 / 25) and lrs[0] < lrs[1] < lrs[2]   # one-cycle warm-up
    doubles = adamw_with_schedule([torch.zeros(3, dtype=torch.float64, requires_grad=True)], cfg, 5)
    assert doubles["optimizer"].defaults["fused"] is True
