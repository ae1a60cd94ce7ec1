"""Transfer learning: parameter groups, freezing strategies (frozen tensors bit-identical after
optimizer steps, trainable ones changed), weight transfer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hopnet.datasets.core import Entry
from hopnet.datasets.multiprop import MultiPropertyDataset
from hopnet.nn.config import EncoderConfig
from hopnet.models.inputs import make_loader
from hopnet.models.property import MultiPropertyModel, PropertyGraphs, PropertyModelConfig
from hopnet.models.property import masked_l1
from hopnet.training.transfer import (
    STRATEGIES, TransferError, apply_strategy, freeze, keep_frozen_eval, parameter_groups,
    plan_strategy, transfer,
)

torch.set_num_threads(1)


def cubic(a: float, elements: list[str], frac: list[list[float]]) -> dict:
    return {"lattice_mat": (np.eye(3) * a).tolist(), "coords": frac, "elements": elements, "cartesian": False}


def tiny_data(n: int = 8, props: tuple[str, ...] = ("p",)) -> MultiPropertyDataset:
    """CsCl-type cells (2 atoms) of growing lattice parameter; target = a - 3.5 (Å)."""
    entries, ys = [], []
    for i in range(n):
        a = 3.0 + 0.12 * i
        el = [["Cs", "Cl"], ["Na", "Cl"], ["K", "Br"]][i % 3]
        entries.append(Entry(id=f"s{i}", target=float("nan"), atoms=cubic(a, el, [[0, 0, 0], [0.5, 0.5, 0.5]])))
        ys.append([a - 3.5 + 0.1 * j for j in range(len(props))])
    y = np.array(ys)
    return MultiPropertyDataset(props, entries, y, np.ones_like(y, bool), "test")


def small_cfg(props=("p",), **enc) -> PropertyModelConfig:
    base = dict(alignn_layers=2, gcn_layers=2, hidden_features=16, embedding_features=8,
                edge_input_features=16, triplet_input_features=8)
    base.update(enc)
    return PropertyModelConfig(properties=props, encoder=EncoderConfig.small(**base), head_hidden=8)


@pytest.fixture(scope="module")
def batch():
    data = tiny_data(8)
    graphs = PropertyGraphs(data, small_cfg().graph)
    return next(iter(make_loader(graphs, 8)))


def test_parameter_groups_cover_every_parameter_once():
    torch.manual_seed(0)
    model = MultiPropertyModel(small_cfg(pooling="attention"))
    groups = parameter_groups(model)
    assert list(groups) == ["embeddings", "alignn.0", "alignn.1", "gcn.0", "gcn.1", "pooling", "head"]
    names = [n for v in groups.values() for n in v]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert len(names) == len(set(names))
    assert all(n.startswith("encoder.alignn_layers.1.") for n in groups["alignn.1"])
    assert all(n.startswith("encoder.gcn_layers.0.") for n in groups["gcn.0"])
    assert groups["pooling"]  # attention pooling has parameters
    assert {n.split(".")[1] for n in groups["embeddings"]} == {"atom_embedding", "edge_embedding", "angle_embedding"}


def test_freeze_by_pattern_and_unknown_group():
    model = MultiPropertyModel(small_cfg())
    frozen = freeze(model, ["alignn.*"])
    assert frozen and all(n.startswith("encoder.alignn_layers.") for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n not in frozen)
    with pytest.raises(TransferError, match="no parameter group"):
        freeze(model, ["transformer.0"])


EXPECTED_FROZEN = {  # strategy -> groups whose parameters must stay bit-identical
    "all": set(),
    "last-layer": {"embeddings", "alignn.0", "alignn.1", "gcn.0", "gcn.1", "pooling", "head-hidden"},
    "freeze-graph": {"gcn.0", "gcn.1"},
    "freeze-line": {"alignn.0", "alignn.1"},
    "new-head": set(),
    "new-head-freeze-0": set(),
    "new-head-freeze-3": {"embeddings", "alignn.0", "alignn.1", "gcn.0"},
}


@pytest.mark.parametrize("strategy", list(EXPECTED_FROZEN))
def test_strategy_freezes_exactly_what_it_says(strategy, batch):
    torch.manual_seed(1)
    model = MultiPropertyModel(small_cfg())
    before_apply = {k: v.clone() for k, v in model.state_dict().items()}
    plan = apply_strategy(model, strategy)
    head_keys = [k for k in before_apply if k.startswith("head.")]
    if plan.new_head:  # a fresh head: re-initialised weights
        assert any(not torch.equal(before_apply[k], model.state_dict()[k]) for k in head_keys)
    else:
        assert all(torch.equal(before_apply[k], model.state_dict()[k]) for k in head_keys)
    groups = parameter_groups(model)
    # the head's hidden layer is net.0, its last linear net.2
    groups["head-hidden"] = [n for n in groups["head"] if ".net.0." in n]
    groups["head-last"] = [n for n in groups["head"] if ".net.2." in n]
    expect_frozen = {n for g in EXPECTED_FROZEN[strategy] for n in groups[g]}
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == expect_frozen

    start = {k: v.clone() for k, v in model.state_dict().items()}
    # every parameter is handed to the optimizer (with weight decay): freezing alone must protect
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(3):
        model.train()
        keep_frozen_eval(model)
        opt.zero_grad()
        loss = masked_l1(model(batch), batch.y, batch.mask)
        loss.backward()
        opt.step()
    end = model.state_dict()
    params = dict(model.named_parameters())
    # parameters without a gradient path (the last GCN layer's bond-update branch, whose output
    # nothing reads) cannot move under any strategy
    dead = {n for n, p in params.items() if p.requires_grad and p.grad is None}
    assert all(n.startswith("encoder.gcn_layers.1.") for n in dead), dead
    for name in params:
        same = torch.equal(start[name], end[name])
        assert same == (name in expect_frozen or name in dead), \
            f"{strategy}: {name} {'unchanged' if same else 'changed'}"
    # batch-norm running statistics of frozen groups are bit-identical too
    frozen_mods = {n.rsplit(".", 1)[0] for n in expect_frozen}
    for key in end:
        if key.endswith(("running_mean", "running_var")) and key.rsplit(".", 1)[0] in frozen_mods:
            assert torch.equal(start[key], end[key]), key


def test_plan_strategy_names():
    model = MultiPropertyModel(small_cfg())
    assert set(STRATEGIES) >= {"all", "last-layer", "freeze-graph", "freeze-line", "new-head", "new-head-freeze-N"}
    assert plan_strategy("new-head-freeze-1", model).frozen_groups == ("embeddings", "alignn.0")
    with pytest.raises(TransferError, match="only 4"):
        plan_strategy("new-head-freeze-5", model)
    with pytest.raises(TransferError, match="unknown strategy"):
        plan_strategy("freeze-everything", model)


def test_transfer_copies_encoder_only_and_checks_shapes():
    torch.manual_seed(2)
    src = MultiPropertyModel(small_cfg(props=("fe", "bg")))
    torch.manual_seed(3)
    dst = MultiPropertyModel(small_cfg(props=("new",)))
    head_before = {k: v.clone() for k, v in dst.state_dict().items() if k.startswith("head.")}
    # a Lightning checkpoint's state dict (keys prefixed "model.")
    ckpt = {"state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}}
    copied = transfer(ckpt, dst, include=["encoder"])
    assert copied and all(k.startswith("encoder.") for k in copied)
    s, d = src.state_dict(), dst.state_dict()
    for k in d:
        if k.startswith("encoder."):
            assert torch.equal(s[k], d[k]), k  # parameters and batch-norm statistics
    assert all(torch.equal(head_before[k], d[k]) for k in head_before)
    # a bare encoder state dict, only the ALIGNN layers
    torch.manual_seed(4)
    dst2 = MultiPropertyModel(small_cfg())
    copied = transfer(src.encoder.state_dict(), dst2, include=["alignn.*"])
    assert copied and all(k.startswith("encoder.alignn_layers.") for k in copied)
    assert not torch.equal(dst2.encoder.atom_embedding.linear.weight, src.encoder.atom_embedding.linear.weight)
    wide = MultiPropertyModel(small_cfg(hidden_features=24))
    with pytest.raises(TransferError, match="shape mismatch"):
        transfer(src.state_dict(), wide, include=["encoder"])
