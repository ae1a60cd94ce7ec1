"""``hopnet finetune`` on migration-barrier data: a barrier model whose encoder starts from a
pre-trained property model, with the named strategies, and ``--config FILE.yaml`` flag files."""

from __future__ import annotations

import json

import pytest
import torch

from hopnet.cli import main
from hopnet.models.property import load_property_model
from hopnet.training.transfer import TransferError, check_strategy

pytestmark = pytest.mark.usefixtures("data_dir")  # the shared data (conftest)


def test_finetune_from_mpt_on_barriers_freezes_the_line_graph_layers(tmp_path, capsys):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text("from: mpt\ndata: migration-barriers\nvariant: band\nstrategy: freeze-line\n"
                   "size: 6\nepochs: 3\nbatch-size: 3\ncache-dir: none\nno-progress: true\nlr: 0.5\n")
    # the command line overrides the file (lr 0.5 would blow up; 0.01 moves the free layers)
    assert main(["finetune", "--config", str(cfg), "--lr", "0.01", "--out", str(tmp_path / "ft")]) == 0
    folder = tmp_path / "ft" / "model"
    meta = json.loads((folder / "metadata.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "gnn" and config["model"]["variant"] == "band"
    assert config["training"]["lr"] == 0.01 and config["training"]["epochs"] == 3
    assert meta["transfer"]["strategy"] == "freeze-line" and meta["transfer"]["from"].endswith("mpt")
    assert meta["finetune_data"]["size"] == 6 and len(meta["finetune_data"]["data_hash"]) == 64
    src = load_property_model("mpt")[0][0].encoder.state_dict()
    (state,) = torch.load(folder / "weights.pt", weights_only=True)
    line = [k for k in src if k.startswith("alignn_layers.")]
    gcn = [k for k in src if k.startswith("gcn_layers.") and src[k].is_floating_point() and src[k].dim() == 2]
    assert line and all(torch.equal(state[f"encoder.{k}"].float(), src[k].float()) for k in line)
    assert any(not torch.equal(state[f"encoder.{k}"], src[k]) for k in gcn)
    from hopnet import load_model

    pred = load_model(folder).predict_paths([])
    assert len(pred.mean) == 0


def test_flag_file_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("from: mpt\nlearning_rate: 0.1\n")
    assert main(["finetune", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown key 'learning_rate'" in err[0]
    bad.write_text("epochs: many\n")
    assert main(["pretrain", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "epochs: invalid value 'many'" in capsys.readouterr().err
    bad.write_text("sampling: sideways\n")
    assert main(["finetune", "--config", str(bad)]) == 2
    assert "sampling must be one of random, match" in capsys.readouterr().err
    (tmp_path / "ok.yaml").write_text("data: migration-barriers\n")
    assert main(["finetune", "--config", str(tmp_path / "ok.yaml"), "--out", str(tmp_path / "x")]) == 2
    assert "--from is required" in capsys.readouterr().err
    assert main(["finetune", "--from", "mpt", "--data", "migration-barriers", "--strategy", "freeze-all",
                 "--out", str(tmp_path / "x")]) == 2
    assert "unknown strategy 'freeze-all'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_strategy_names():
    assert check_strategy("new-head-freeze-2") == "new-head-freeze-2"
    for bad in ("new-head-freeze-N", "freeze", ""):
        with pytest.raises(TransferError):
            check_strategy(bad)


def test_a_classical_source_refits_on_barriers_and_has_no_encoder_for_properties(tmp_path, capsys):
    """--from default: barrier data refit the trees (tests/test_import_neb.py runs it end to end);
    property data need a graph encoder, which trees do not have."""
    csv = "examples/tutorial_data/demo_targets.csv"
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert main(["finetune", "--from", "default", "--data", str(root / csv), "--out", str(tmp_path / "x"),
                 "--cache-dir", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a property model" in err[0]
    assert not (tmp_path / "x" / "model").exists()
