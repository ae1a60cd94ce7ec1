"""Property models: the masked multi-property loss (hand-computed), sampling, and the pretrain ->
finetune command line on tiny data (single property, MPT, CSV fine-tune data, resume)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hopnet.cli import main
from hopnet.models.folder import load_model
from hopnet.models.property import load_property_model
from hopnet.models.property import masked_l1
from hopnet.training.pretrain import sample_indices

torch.set_num_threads(1)


def cell(a: float, el: list[str]) -> dict:
    return {"lattice_mat": (np.eye(3) * a).tolist(), "coords": [[0, 0, 0], [0.5, 0.5, 0.5]],
            "elements": el, "cartesian": False}


PAIRS = [["Cs", "Cl"], ["Na", "Cl"], ["K", "Br"], ["Li", "F"]]


def write_prop(path: Path, idx: list[int], f) -> None:
    recs = [{"jid": k, "target": f(i), "atoms": cell(3.0 + 0.1 * i, PAIRS[i % 4])} for k, i in enumerate(idx)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps(recs).encode()))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """fe: structures 0-9, bg: structures 5-13 (5 overlap with fe)."""
    d = tmp_path_factory.mktemp("data")
    write_prop(d / "pretrain" / "fe.json.gz", list(range(10)), lambda i: 0.1 * i - 0.5)
    write_prop(d / "pretrain" / "bg.json.gz", list(range(5, 14)), lambda i: 0.3 - 0.05 * i)
    return d


# ----------------------------------------------------------------------------------- loss
def test_masked_l1_hand_computed():
    # errors |pred - y|: row 0: (1, 2, -) ; row 1: (-, 4, -) ; row 2: (3, 0.5, 6)
    pred = torch.tensor([[1.0, 2.0, 9.0], [0.0, 4.0, 0.0], [3.0, 0.5, 6.0]])
    y = torch.tensor([[0.0, 0.0, float("nan")], [float("nan"), 0.0, 5.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 1, 1]], dtype=torch.bool)
    # row: mean over rows of each row's mean over its present properties
    row = ((1 + 2) / 2 + 4 / 1 + (3 + 0.5 + 6) / 3) / 3
    # property: mean over properties of each property's mean over its present rows
    prop = ((1 + 3) / 2 + (2 + 4 + 0.5) / 3 + 6 / 1) / 3
    total = (1 + 2 + 4 + 3 + 0.5 + 6) / 3
    assert masked_l1(pred, y, mask, "row").item() == pytest.approx(row)
    assert masked_l1(pred, y, mask, "property").item() == pytest.approx(prop)
    assert masked_l1(pred, y, mask, "sum").item() == pytest.approx(total)
    # absent entries (NaN targets included) get no gradient, present ones do
    p = pred.clone().requires_grad_(True)
    masked_l1(p, y, mask, "row").backward()
    assert torch.isfinite(p.grad).all()
    assert (p.grad[~mask] == 0).all() and (p.grad[mask] != 0).all()
    # a row with one property weighs as much as a row with three (row normalisation)
    assert masked_l1(pred[1:2], y[1:2], mask[1:2]).item() == pytest.approx(4.0)


def test_sample_indices_random_and_match():
    y = np.concatenate([np.zeros(80), np.linspace(1, 2, 20)])  # 80 % of the targets are 0
    r = sample_indices(y, 10, "random", seed=0)
    assert len(r) == 10 and len(set(r)) == 10 and np.all(np.diff(r) > 0)
    m = sample_indices(y, 10, "match", seed=0)
    assert len(m) == 10 and (y[m] == 0).sum() == 8  # the distribution's 80/20 is kept exactly
    assert np.array_equal(sample_indices(y, None), np.arange(100))
    assert np.array_equal(sample_indices(y, 10, "match", seed=0), m)  # seeded


# ------------------------------------------------------------------------------------- CLI
COMMON = ["--small", "--epochs", "2", "--batch-size", "4", "--cache-dir", "none", "--no-progress",
          "--val-fraction", "0.25"]


def test_pretrain_finetune_cli(data_dir, tmp_path, capsys):
    # multi-property pre-training on fe + bg
    mpt = tmp_path / "mpt"
    assert main(["pretrain", "--properties", "fe,bg", "--data-dir", str(data_dir), "--out", str(mpt), *COMMON]) == 0
    stats = json.loads(capsys.readouterr().out.splitlines()[0])
    assert stats["rows"] == 14 and stats["entries"] == 19 and stats["pair_overlaps"] == {"fe+bg": 5}
    models, cfg, meta = load_property_model(mpt / "model")
    assert cfg.properties == ("fe", "bg") and meta["kind"] == "property" and meta["n_train"] + meta["n_val"] == 14
    assert set(meta["metrics"]["val"]) <= {"fe", "bg"}
    assert (mpt / "runs" / "member-0" / "checkpoints" / "last.ckpt").is_file()
    assert list((mpt / "runs" / "member-0" / "logs").glob("version_*/metrics.csv"))

    # --exclude leaves a property out; single-property pre-training
    fe = tmp_path / "fe"
    assert main(["pretrain", "--properties", "fe,bg", "--exclude", "bg", "--data-dir", str(data_dir),
                 "--out", str(fe), *COMMON]) == 0
    _, cfg_fe, _ = load_property_model(fe / "model")
    assert cfg_fe.properties == ("fe",)

    # user data as a CSV of (structure file, target)
    from pymatgen.core import Lattice, Structure

    rows = ["file,target"]
    for i in range(10):
        s = Structure(Lattice.cubic(3.2 + 0.15 * i), PAIRS[i % 4], [[0, 0, 0], [0.5, 0.5, 0.5]])
        s.to(filename=str(tmp_path / f"s{i}.cif"))
        rows.append(f"s{i}.cif,{1.5 + 0.2 * i}")
    (tmp_path / "mine.csv").write_text("\n".join(rows) + "\n")

    # fine-tune from the MPT model: the encoder comes over, the head is new
    ft = tmp_path / "ft"
    assert main(["finetune", "--from", str(mpt / "model"), "--data", str(tmp_path / "mine.csv"),
                 "--strategy", "all", "--size", "8", "--sampling", "match", "--out", str(ft), *COMMON]) == 0
    ft_models, ft_cfg, ft_meta = load_property_model(ft / "model")
    assert ft_cfg.properties == ("mine",) and ft_meta["head"] == "new" and ft_meta["strategy"] == "all"
    assert ft_meta["finetune_data"]["size"] == 8 and ft_meta["n_train"] + ft_meta["n_val"] == 8
    assert ft_cfg.encoder == cfg.encoder
    # frozen layers are bit-identical to the source after fine-tuning
    fg = tmp_path / "fg"
    assert main(["finetune", "--from", str(fe / "model"), "--data", str(tmp_path / "mine.csv"),
                 "--strategy", "freeze-line", "--out", str(fg), *COMMON]) == 0
    src = load_property_model(fe / "model")[0][0].state_dict()
    dst_models, _, fg_meta = load_property_model(fg / "model")
    dst = dst_models[0].state_dict()
    assert fg_meta["head"] == "kept"
    line = [k for k in dst if k.startswith("encoder.alignn_layers.")]
    assert line and all(torch.equal(src[k], dst[k]) for k in line)
    assert not all(torch.equal(src[k], dst[k]) for k in dst if k.startswith("encoder.gcn_layers."))

    # the model folder loads through hopnet.models.folder; it predicts properties, not barriers
    pred = load_model(ft / "model")
    out = pred.predict_structures([cell(3.3, ["Na", "Cl"]), cell(3.9, ["K", "Br"])])
    assert out.shape == (2, 1) and np.isfinite(out).all()
    with pytest.raises(Exception, match="not migration barriers"):
        pred.predict_paths([])
    # scratch baseline; bad strategy is one clear line
    assert main(["finetune", "--from", "none", "--data", str(tmp_path / "mine.csv"), "--out",
                 str(tmp_path / "scratch"), *COMMON]) == 0
    capsys.readouterr()
    assert main(["finetune", "--from", str(mpt / "model"), "--data", str(tmp_path / "mine.csv"),
                 "--strategy", "freeze-all", "--out", str(tmp_path / "bad"), *COMMON]) == 2
    assert "unknown strategy 'freeze-all'" in capsys.readouterr().err


def test_pretrain_resume_reuses_finished_run(data_dir, tmp_path):
    out = tmp_path / "fe"
    args = ["pretrain", "--properties", "fe", "--data-dir", str(data_dir), "--out", str(out), *COMMON]
    assert main(args) == 0
    w1 = torch.load(out / "model" / "weights.pt", weights_only=True)[0]
    final = out / "runs" / "member-0" / "final.pt"
    stamp = final.stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    w2 = torch.load(out / "model" / "weights.pt", weights_only=True)[0]
    assert final.stat().st_mtime_ns == stamp
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


@pytest.mark.slow
def test_ddp_two_cpu_processes(data_dir, tmp_path):
    """Two DDP processes (gloo) write the same kind of model folder as one process."""
    if os.environ.get("HOPNET_SKIP_SLOW"):
        pytest.skip("HOPNET_SKIP_SLOW is set")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    cmd = [sys.executable, "-m", "hopnet", "pretrain", "--properties", "fe,bg", "--data-dir", str(data_dir),
           "--out", str(out), "--devices", "2", "--accelerator", "cpu", "--strategy-ddp", "ddp", *COMMON]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    models, cfg, meta = load_property_model(out / "model")
    assert cfg.properties == ("fe", "bg") and meta["members"][0]["epochs"] == 2
    ck = torch.load(out / "runs" / "member-0" / "checkpoints" / "last.ckpt", weights_only=False)
    # each process took half of the epoch's batches (padded to an even count)
    n_batches = -(-meta["n_train"] // 4)
    assert "state_dict" in ck and ck["global_step"] == 2 * -(-n_batches // 2) < 2 * n_batches
    training = json.loads((out / "model" / "config.json").read_text())["training"]
    assert training["devices"] == 2 and training["strategy"] == "ddp"


def test_barrier_model_starts_from_property_model_folder(data_dir, tmp_path):
    """``BarrierModelConfig.pretrained_encoder`` may name a ``hopnet pretrain`` folder: member 0's
    encoder is loaded (by the trainer, :func:`~hopnet.training.transfer.start_from`), its 92-feature input widened by a zero column for the mobile-ion flag."""
    from hopnet.models.barrier import BarrierModelConfig, build_model
    from hopnet.training.transfer import start_from

    out = tmp_path / "fe"
    assert main(["pretrain", "--properties", "fe", "--data-dir", str(data_dir), "--out", str(out), *COMMON]) == 0
    models, cfg, _ = load_property_model(out / "model")
    config = BarrierModelConfig(variant="band", encoder=cfg.encoder, graph={"mobile_flag": True},
                                pretrained_encoder=str(out / "model"))
    model = build_model(config)
    start_from(model, config.pretrained_encoder)  # as the trainer starts every member
    src = models[0].encoder.state_dict()
    for k, v in model.encoder.state_dict().items():
        if k == "atom_embedding.linear.weight":
            assert torch.equal(v[:, :92], src[k]) and not v[:, 92].any()
        else:
            assert torch.equal(v, src[k]), k
