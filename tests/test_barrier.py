"""Barrier models 1-4 (hopnet.models.barrier) and their input graphs (hopnet.models.inputs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from hopnet.datasets import Entry
from hopnet.graphs import GraphConfig, build_graph
from hopnet.models.barrier import BarrierConfigError, BarrierModelConfig, build_model
from hopnet.nn import EncoderConfig
from hopnet.paths import MigrationPath
from hopnet.structures import to_jarvis
from hopnet.training.transfer import TransferError
from hopnet.models.inputs import (
    BarrierGraphs, collate, induced_subgraph, make_loader, path_graphs, segment_distances,
)

torch.set_num_threads(1)

VARIANTS = ("initial-final", "initial-delta", "band", "band-attention")


def rocksalt_path(a: float = 6.0, direction: int = 0) -> MigrationPath:
    """Li hopping between two tetrahedral-like interstitials of a rock-salt MgO cell (a Å)."""
    o = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    mg = [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]]
    host = Structure(Lattice.cubic(a), ["O"] * 4 + ["Mg"] * 4, o + mg)
    start = np.array([0.25, 0.25, 0.25])
    end = start.copy()
    end[direction] += 0.5
    return MigrationPath(host, "Li", start, end)


def synthetic_entries(n: int = 8) -> list[Entry]:
    """``n`` bands with a smooth, learnable barrier (eV) as a function of the cell size."""
    out = []
    for k in range(n):
        a = 5.6 + 0.12 * k
        p = rocksalt_path(a, direction=k % 3)
        target = 0.3 + 0.8 * (a - 5.6)
        out.append(Entry(id=f"syn_{k}", target=float(target), atoms=to_jarvis(p.band()),
                         meta={"compound": f"Li:syn{k}", "class": "SYN", "ion": "Li"}))
    return out


def hand_path() -> MigrationPath:
    """10 Å cubic cell; Li hops along x from (1, 5, 5) to (3, 5, 5) Å. Host atoms and their
    distances to the segment (periodic images included): (2,5,8) 3.0; (9.5,5,5) 1.5 (its image at
    x = -0.5); (5.5,5,5) 2.5; (2,5,9.5) 4.5; (7,5,5) 4.0."""
    cart = np.array([[2, 5, 8], [9.5, 5, 5], [5.5, 5, 5], [2, 5, 9.5], [7, 5, 5]], dtype=float)
    host = Structure(Lattice.cubic(10.0), ["O", "O", "Mg", "O", "Mg"], cart / 10.0)
    return MigrationPath(host, "Li", [0.1, 0.5, 0.5], [0.3, 0.5, 0.5])


HAND_DIST = np.array([0.0] * 5 + [3.0, 1.5, 2.5, 4.5, 4.0])


def small(**kw) -> BarrierModelConfig:
    return BarrierModelConfig(encoder=EncoderConfig.small(), **kw)


def batch_of(paths, cfg):
    data = BarrierGraphs(paths, cfg, targets=np.arange(len(paths), dtype=float))
    return data, collate([data[i] for i in range(len(data))])


# ----------------------------------------------------------------------------------- configs
def test_config_round_trip_and_derived_fields():
    cfg = small(variant="band-attention", graph=GraphConfig(mobile_flag=True), head_hidden=[32, 16])
    assert cfg.encoder.atom_input_features == 93  # 92 element features + mobile flag
    assert cfg.encoder.pooling == "attention"  # Model 4
    assert cfg.head_hidden == (32, 16)
    again = BarrierModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert BarrierModelConfig(encoder="small").encoder.hidden_features == 32


@pytest.mark.parametrize("bad", [{"variant": "model5"}, {"combine": "mul"}, {"crop_radius": -1.0},
                                 {"pool_scope": "ion"}, {"head_hidden": [0]}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(BarrierConfigError):
        BarrierModelConfig(**bad)


def test_config_rejects_unknown_keys():
    with pytest.raises(BarrierConfigError, match="unknown barrier model key"):
        BarrierModelConfig.from_dict({"variant": "band", "layers": 3})


# ----------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("options", [{}, {"crop_radius": 3.5, "pool_scope": "path", "hybrid": True,
                                          "graph": {"mobile_flag": True}}])
def test_every_variant_forward_backward(variant, options):
    cfg = small(variant=variant, **options)
    paths = [rocksalt_path(5.8 + 0.2 * k, k % 3) for k in range(3)]
    data, batch = batch_of(paths, cfg)
    model = build_model(cfg, data.n_descriptors)
    if cfg.hybrid:
        model.set_scaling(0.0, 1.0, data.descriptors.mean(0), data.descriptors.std(0))
    out = model(batch)
    assert out.shape == (3,) and torch.isfinite(out).all()
    out.square().sum().backward()
    # every parameter but the last bond update's batch norm (nobody reads those bonds) learns
    unused = {n for n, p in model.named_parameters() if p.grad is None}
    assert unused <= {"encoder.gcn_layers.0.bn_edges.weight", "encoder.gcn_layers.0.bn_edges.bias"}
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert sum(float(g.abs().sum()) for g in grads) > 0
    if variant == "initial-delta":
        assert model.delta_embedding[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("combine,width", [("add", 32), ("subtract", 32), ("concat", 64)])
def test_model1_combine_shapes(combine, width):
    cfg = small(variant="initial-final", combine=combine)
    data, batch = batch_of([rocksalt_path(6.0, 0), rocksalt_path(6.2, 1)], cfg)
    assert batch.num_graphs == 4  # 2 initial graphs, then 2 final graphs
    model = build_model(cfg)
    assert model.head[0].in_features == width
    assert model(batch).shape == (2,)


def test_model1_add_is_symmetric_under_swapping_end_points():
    # end sites that are not symmetry-equivalent (in rock salt they are, and every mode agrees)
    h = hand_path()
    paths = [h, MigrationPath(h.host, "Li", [0.1, 0.5, 0.5], [0.1, 0.75, 0.5])]
    swapped = [MigrationPath(p.host, p.ion, p.initial_frac + p.hop_vector_frac, p.initial_frac,
                             image_convention="as_given") for p in paths]
    outs = {}
    for combine in ("add", "subtract"):
        cfg = small(variant="initial-final", combine=combine)
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        with torch.no_grad():
            outs[combine] = (model(batch_of(paths, cfg)[1]), model(batch_of(swapped, cfg)[1]))
    a, b = outs["add"]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    a, b = outs["subtract"]
    assert not torch.allclose(a, b, atol=1e-4)  # subtract does see the direction


# ----------------------------------------------------------------------------------- inputs
def test_segment_distances_by_hand():
    p = hand_path()
    band = p.band()
    d = segment_distances(band.lattice.matrix, band.frac_coords, p.initial_frac, p.hop_vector_frac)
    np.testing.assert_allclose(d, HAND_DIST, atol=1e-9)


def test_crop_keeps_exactly_the_atoms_within_r_and_the_images():
    p = hand_path()
    cfg = small(variant="band", crop_radius=3.2)
    full = build_graph(p.band(), cfg.graph, 5)
    (g,) = path_graphs(p, cfg)
    keep = HAND_DIST <= 3.2
    assert keep.sum() == 8  # 5 images + the hosts at 3.0, 1.5 and 2.5 Å
    assert g.num_nodes == 8
    torch.testing.assert_close(g.pos, full.pos[torch.from_numpy(keep)])
    assert bool(g.is_mobile[:5].all()) and not bool(g.is_mobile[5:].any())
    # bonds: exactly those of the full periodic graph between kept atoms, unchanged
    k = torch.from_numpy(keep)
    ekeep = k[full.edge_index[0]] & k[full.edge_index[1]]
    assert g.edge_index.shape[1] == int(ekeep.sum()) > 0
    torch.testing.assert_close(g.edge_vec, full.edge_vec[ekeep])
    torch.testing.assert_close(g.pos[g.edge_index[0]], full.pos[full.edge_index[0][ekeep]])
    # bond pairs: those whose two bonds survive, with their cosines
    lg = full.lg_edge_index
    lkeep = ekeep[lg[0]] & ekeep[lg[1]]
    assert g.lg_edge_index.shape[1] == int(lkeep.sum())
    torch.testing.assert_close(g.lg_cos, full.lg_cos[lkeep])
    assert int(g.lg_edge_index.max()) < g.edge_index.shape[1]
    # a crop radius smaller than every host distance keeps the images only
    (g0,) = path_graphs(p, small(variant="band", crop_radius=1.0))
    assert g0.num_nodes == 5 and bool(g0.is_mobile.all())


def test_induced_subgraph_relabels_a_small_graph():
    p = hand_path()
    g = build_graph(p.band(), GraphConfig(max_neighbors=4), 5)
    keep = torch.zeros(g.num_nodes, dtype=torch.bool)
    keep[[0, 2, 7]] = True
    sub = induced_subgraph(g, keep)
    old = torch.tensor([0, 2, 7])
    pairs_full = {(int(u), int(v), round(float(l), 5)) for u, v, l in
                  zip(g.edge_index[0], g.edge_index[1], g.edge_len) if int(u) in (0, 2, 7) and int(v) in (0, 2, 7)}
    pairs_sub = {(int(old[u]), int(old[v]), round(float(l), 5)) for u, v, l in
                 zip(sub.edge_index[0], sub.edge_index[1], sub.edge_len)}
    assert pairs_sub == pairs_full


def test_path_pooling_mask_and_value():
    p = hand_path()
    cfg = small(variant="band", pool_scope="path", path_radius=2.6)
    data, batch = batch_of([p], cfg)
    model = build_model(cfg).eval()
    mask = model.path_mask(batch)
    expected = torch.from_numpy((HAND_DIST <= 2.6))
    assert torch.equal(mask, expected)  # images + hosts at 1.5 and 2.5 Å
    with torch.no_grad():
        node = model.encoder(batch).node
        pooled = model._encode(batch)
    torch.testing.assert_close(pooled[0], node[expected].mean(0))
    assert not torch.allclose(pooled[0], node.mean(0))


def test_model2_bond_length_change_by_hand():
    p = hand_path()  # Li moves +2 Å along x
    (g,) = path_graphs(p, small(variant="initial-delta"))
    src, dst = g.edge_index
    host_only = (src != 0) & (dst != 0)
    assert torch.all(g.delta_len[host_only] == 0)
    # Li (atom 0, at x = 1) -> Mg at (5.5, 5, 5): 4.5 Å becomes 2.5 Å
    pick = (src == 0) & (dst == 3) & torch.isclose(g.edge_len, torch.tensor(4.5))
    assert int(pick.sum()) == 1
    assert float(g.delta_len[pick]) == pytest.approx(-2.0, abs=1e-5)
    back = (src == 3) & (dst == 0) & torch.isclose(g.edge_len, torch.tensor(4.5))
    assert float(g.delta_len[back]) == pytest.approx(-2.0, abs=1e-5)


def test_size_capped_batches():
    cfg = small(variant="band")
    entries = synthetic_entries(6)
    data = BarrierGraphs(entries, cfg, targets=[e.target for e in entries])
    per = int(data.n_atoms[0])
    loader = make_loader(data, batch_size=4, max_atoms=2 * per + 1)
    sizes = [b.num_graphs for b in loader]
    assert sizes == [2, 2, 2]
    loader = make_loader(data, batch_size=4, max_line_edges=1)  # every path alone
    assert [b.num_graphs for b in loader] == [1] * 6
    assert sorted(torch.cat([b.y for b in make_loader(data, 4, shuffle=True)]).tolist()) == \
        sorted(data.targets.astype(np.float32).tolist())


def test_real_bands_every_variant(band_entries):
    """Eight of the smallest published bands through every variant (shared data)."""
    small_ones = sorted(band_entries, key=lambda r: len(r["atoms"]["elements"]))[:8]
    entries = [Entry(r["sys_name"], r["target"], r["atoms"]) for r in small_ones]
    for variant in VARIANTS:
        cfg = small(variant=variant, crop_radius=5.0, pool_scope="path")
        data = BarrierGraphs(entries, cfg, targets=[e.target for e in entries])
        batch = next(iter(make_loader(data, 8)))
        out = build_model(cfg)(batch)
        assert out.shape == (8,) and torch.isfinite(out).all()
        out.sum().backward()


# ----------------------------------------------------------------------------------- files
def pretrained(cfg: BarrierModelConfig):
    """A fresh model started from ``cfg.pretrained_encoder``, as the trainer starts it."""
    from hopnet.training.transfer import start_from

    model = build_model(cfg)
    start_from(model, cfg.pretrained_encoder)
    return model


def test_pretrained_encoder_strict(tmp_path):
    cfg = small(variant="band")
    model = build_model(cfg)
    good = tmp_path / "enc.pt"
    torch.save(model.encoder.state_dict(), good)
    other = pretrained(small(variant="band", pretrained_encoder=str(good)))
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(other.encoder.state_dict()[k], v)
    bad = tmp_path / "bad.pt"
    torch.save(build_model(BarrierModelConfig(encoder=EncoderConfig.small(hidden_features=16))).encoder.state_dict(), bad)
    with pytest.raises(TransferError, match="shape mismatch"):
        pretrained(small(variant="band", pretrained_encoder=str(bad)))


def test_pretrained_encoder_without_flag_fits_flagged_model(tmp_path, band_entries):
    """A 92-feature (MPT-style) encoder loads into a model with the mobile-ion flag: the flag's
    weight column is zero, so on a flagged graph it computes exactly what it did unflagged."""
    plain_cfg = small(variant="band", graph={"mobile_flag": False})
    plain = build_model(plain_cfg).eval()
    enc = tmp_path / "enc92.pt"
    torch.save(plain.encoder.state_dict(), enc)
    flagged_cfg = small(variant="band", graph={"mobile_flag": True}, pretrained_encoder=str(enc))
    flagged = pretrained(flagged_cfg).eval()
    w = flagged.encoder.atom_embedding.linear.weight
    assert w.shape[1] == 93 and torch.count_nonzero(w[:, 92]) == 0
    r = min(band_entries, key=lambda r: len(r["atoms"]["elements"]))
    entry = [Entry(r["sys_name"], r["target"], r["atoms"])]
    a = plain.encoder(next(iter(make_loader(BarrierGraphs(entry, plain_cfg), 1)))).pooled
    b = flagged.encoder(next(iter(make_loader(BarrierGraphs(entry, flagged_cfg), 1)))).pooled
    assert torch.allclose(a, b, atol=1e-6)



def test_mean_pooled_encoder_fits_attention_model(tmp_path):
    """Model 4 (attention pooling) starts from a mean-pooled encoder: every shared weight is
    loaded, the pooling gate keeps its fresh initialisation; other missing keys still fail."""
    plain = build_model(small(variant="band"))
    enc = tmp_path / "enc.pt"
    torch.save(plain.encoder.state_dict(), enc)
    torch.manual_seed(3)
    m4 = pretrained(small(variant="band-attention", pretrained_encoder=str(enc)))
    loaded = m4.encoder.state_dict()
    assert any(k.startswith("pooling.") for k in loaded)
    for k, v in plain.encoder.state_dict().items():
        assert torch.equal(loaded[k], v), k
    broken = {k: v for k, v in plain.encoder.state_dict().items() if not k.startswith("atom_embedding")}
    torch.save(broken, enc)
    with pytest.raises(TransferError, match="missing key"):
        pretrained(small(variant="band-attention", pretrained_encoder=str(enc)))
