"""The models that ship inside the package: offline, pinned, and behind `hopnet evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from hopnet.cli import main
from hopnet.models.folder import load_model, read_model_files, shipped_models
from hopnet.paths import MigrationPath


def nacl_vacancy_hop() -> MigrationPath:
    """Na hop to its nearest Na vacancy in a 2x2x2 rock-salt NaCl (a = 4.63 Å), 64 atoms."""
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.63), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    s.make_supercell([2, 2, 2])
    na = [i for i, site in enumerate(s) if site.specie.symbol == "Na"]
    d = s.distance_matrix[na[0]]
    j = min((i for i in na if i != na[0]), key=lambda i: d[i])
    return MigrationPath.from_sites(s, "Na", na[0], j)


def test_default_ships_and_loads_offline():
    assert "default" in shipped_models()
    config, meta = read_model_files(shipped_models()["default"])
    assert len(meta["seeds"]) >= 5  # an ensemble of at least five members
    assert meta["data_hash"] and meta["git_commit"] and meta["hopnet_version"]
    assert 0 < meta["cv"]["mae"] < 0.5


def test_default_pinned_prediction():
    path = nacl_vacancy_hop()
    assert path.hop_length == pytest.approx(4.63 / np.sqrt(2))
    pred = load_model("default").predict_paths([path])
    assert pred.mean[0] == pytest.approx(0.5904036083536323, abs=1e-9)
    assert pred.ensemble_std[0] == pytest.approx(0.01305747050895697, abs=1e-9)
    assert pred.std[0] == pytest.approx(0.16188740976472948, abs=1e-9)  # the calibrated σ


def test_shipped_weights_stay_small():
    total = sum(f.stat().st_size for folder in shipped_models().values() for f in folder.rglob("*") if f.is_file())
    assert total <= 25 * 1024 * 1024


def test_models_list_cli(capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows if r["name"] == "default"] == ["default"]


def test_evaluate_default_on_shared_data(data_dir, tmp_path, band_entries):
    data = tmp_path / "few.json"
    data.write_text(json.dumps(band_entries[:12]))
    out = tmp_path / "report.json"
    assert main(["evaluate", "--model", "default", "--data", str(data), "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 12 and len(report["predictions"]) == 12
    assert {"mae", "rmse", "r2", "spearman", "classifier"} <= set(report)


def test_mpt_ships_and_fine_tunes_offline(tmp_path, capsys):
    """The shipped multi-property encoder: seven heads, predicts a structure, and is a valid
    ``--from`` for hopnet finetune and a ``pretrained_encoder`` for barrier models."""
    import torch

    from hopnet.models.barrier import BarrierModelConfig, build_model
    from hopnet.models.property import load_property_model

    assert "mpt" in shipped_models()
    models, cfg, meta = load_property_model("mpt")
    assert list(cfg.properties) == ["fe", "bg", "gv", "ph", "dc", "pz", "ebg"]
    assert meta["git_commit"] and meta["data_hash"] and meta["metrics"]["val"]["fe"]["r2"] > 0.9
    from hopnet.training.transfer import start_from

    barrier = build_model(BarrierModelConfig(variant="band", encoder=cfg.encoder, graph={"mobile_flag": True}))
    start_from(barrier, "mpt")
    w = barrier.encoder.atom_embedding.linear.weight
    assert torch.equal(w[:, :92], models[0].encoder.atom_embedding.linear.weight) and not w[:, 92].any()
    assert main(["models", "list"]) == 0
    assert "heads: fe, bg" in capsys.readouterr().out
    # fine-tune on a CSV of two structure files
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.63), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rows = ["structure,target"]
    for k, a in enumerate((4.5, 4.6, 4.7, 4.8)):
        f = tmp_path / f"s{k}.cif"
        s.copy().scale_lattice(a ** 3).to(filename=str(f))
        rows.append(f"{f.name},{0.1 * k}")
    (tmp_path / "mine.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "ft"
    assert main(["finetune", "--from", "mpt", "--data", str(tmp_path / "mine.csv"), "--strategy", "new-head",
                 "--epochs", "1", "--batch-size", "2", "--val-fraction", "0.25", "--cache-dir", "none",
                 "--no-progress", "--out", str(out)]) == 0
    assert (out / "model" / "weights.pt").is_file()
