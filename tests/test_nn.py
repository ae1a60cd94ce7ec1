"""Tests of the ALIGNN encoder (hopnet.nn): configuration, kernels, invariances, training."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch

from hopnet.graphs import build_graph
from hopnet.nn import (
    AlignnEncoder, AttentionPooling, EdgeGatedGraphConv, EncoderConfig, EncoderConfigError,
    GraphInputError, LinearHead, MeanPooling, MLPHead, MultiHead, PoolingError,
    RBFExpansion,
)
from hopnet.nn.fused import (
    BondPairStreamError, batch_norm_silu, edge_gate, gated_aggregate, gaussian_mlp,
)
from hopnet.nn.layers import MLPLayer

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- crystals
def nacl(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cscl(a: float = 4.12) -> Structure:
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def bcc_fe(a: float = 2.87) -> Structure:
    return Structure(Lattice.cubic(a), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def srtio3(a: float = 3.905) -> Structure:
    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def rutile_tio2() -> Structure:
    return Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"],
                                     [[0, 0, 0], [0.3048, 0.3048, 0]])


def eight_crystals() -> list[Structure]:
    return [nacl(), nacl(5.2).get_primitive_structure(), cscl(), bcc_fe(), srtio3(),
            Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
            Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]),
            rutile_tio2()]


def graph(s: Structure):
    return build_graph(s)


def batch_of(structures) -> Batch:
    return Batch.from_data_list([graph(s) for s in structures])


def warmed_model(config: EncoderConfig, seed: int = 0, dtype=torch.float32) -> AlignnEncoder:
    """A model whose batch-norm running statistics are not the initial 0/1."""
    torch.manual_seed(seed)
    model = AlignnEncoder(config).to(dtype)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(batch_of([nacl(), srtio3(), cscl()]))
    return model.eval()


SMALL = EncoderConfig.small()


# ----------------------------------------------------------------------------- config
def test_config_defaults_are_the_paper_model():
    c = EncoderConfig.paper()
    assert (c.atom_input_features, c.alignn_layers, c.gcn_layers, c.hidden_features) == (92, 4, 4, 256)
    assert (c.embedding_features, c.edge_input_features, c.triplet_input_features) == (64, 80, 40)
    assert c.rbf_cutoff == 8.0 and c.pooling == "mean" and c == EncoderConfig()
    assert EncoderConfig.small().hidden_features <= 64


def test_config_round_trip_and_validation():
    c = EncoderConfig.small(pooling="attention", checkpointing=True)
    assert EncoderConfig.from_dict(c.to_dict()) == c
    with pytest.raises(EncoderConfigError, match="unknown encoder key"):
        EncoderConfig.from_dict({**c.to_dict(), "dropout": 0.1})
    for bad in (dict(pooling="max"), dict(hidden_features=0), dict(alignn_layers=-1),
                dict(rbf_cutoff=0.0), dict(implementation="dgl"), dict(edge_input_features=1),
                dict(checkpointing=1)):
        with pytest.raises(EncoderConfigError):
            EncoderConfig(**bad)


def PropertyModel(encoder: EncoderConfig, n_outputs: int = 1) -> torch.nn.Module:
    """Encoder + one linear head per output: the property model of :mod:`hopnet.models.property`."""
    from hopnet.models.property import MultiPropertyModel, PropertyModelConfig

    return MultiPropertyModel(PropertyModelConfig(properties=tuple(f"p{k}" for k in range(n_outputs)),
                                                  encoder=encoder))


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_are_pinned():
    paper = n_params(PropertyModel(EncoderConfig.paper(), n_outputs=1))
    # upstream ALIGNN: 4,026,753; ours lacks only the 512 batch-norm parameters of the last
    # ALIGNN layer's bond-pair update, whose output upstream computes and discards.
    assert paper == 4_026_241
    assert abs(paper - 4_026_753) / 4_026_753 < 0.001
    assert n_params(PropertyModel(EncoderConfig.small(), n_outputs=1)) == 21_505
    assert n_params(AlignnEncoder(EncoderConfig.small(pooling="attention"))) == 21_472 + 32 * 2 + 2 + 64 * 32 + 32


# ----------------------------------------------------------------------------- basic layers
def test_rbf_expansion_values():
    rbf = RBFExpansion(0.0, 8.0, 81)                         # centres every 0.1 Å, gamma = 10 / Å
    out = rbf(torch.tensor([0.0, 2.0, 2.05]))
    assert out.shape == (3, 81)
    assert out[0, 0] == pytest.approx(1.0) and out[1, 20] == pytest.approx(1.0)
    assert out[1, 21] == pytest.approx(np.exp(-10 * 0.01), rel=1e-5)
    assert out[2, 20] == pytest.approx(np.exp(-10 * 0.0025), rel=1e-5)


def test_gated_aggregate_matches_hand_computation():
    # 3 nodes; edges 0->2, 1->2, 2->0 ; node 1 receives nothing
    m = torch.tensor([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]], dtype=torch.float64)
    vh = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=torch.float64)
    src, dst = torch.tensor([0, 1, 2]), torch.tensor([2, 2, 0])
    out = gated_aggregate(m, vh, src, dst, eps=0.0)
    s = torch.sigmoid(m)
    expect2 = (s[0] * vh[0] + s[1] * vh[1]) / (s[0] + s[1])
    torch.testing.assert_close(out[2], expect2)
    torch.testing.assert_close(out[0], vh[2])
    lonely = gated_aggregate(m, vh, src, dst)[1]             # 0 / (0 + eps)
    assert torch.equal(lonely, torch.zeros(2, dtype=torch.float64))


def test_fused_kernels_pass_gradcheck():
    torch.manual_seed(0)
    m = torch.randn(12, 3, dtype=torch.float64, requires_grad=True)
    vh = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    src, dst = torch.randint(0, 5, (12,)), torch.randint(0, 5, (12,))
    assert torch.autograd.gradcheck(lambda a, b: gated_aggregate(a, b, src, dst), (m, vh))
    bn = torch.nn.BatchNorm1d(3).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    r = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: batch_norm_silu(a, b, bn, update_stats=False), (x, r))


def edges(source, target, n, **kw):
    """The :class:`~hopnet.nn.plan.Edges` of ``source`` -> ``target`` over ``n`` nodes."""
    from hopnet.nn.plan import Edges

    return Edges(torch.stack([source, target]), n, **kw)


def test_edge_gate_is_the_gathered_sum_and_passes_gradcheck():
    torch.manual_seed(5)
    n, e, f = 6, 15, 3
    p = torch.randn(n, 4 * f, dtype=torch.float64, requires_grad=True)   # [A h | B h | V h | W h]
    x = torch.randn(e, f, dtype=torch.float64, requires_grad=True)
    lin = torch.nn.Linear(f, f).double()
    src, dst = torch.randint(0, n, (e,)), torch.randint(0, n, (e,))
    m = edge_gate(p, x, lin, edges(src, dst, n))
    expect = p[src, :f] + p[dst, f:2 * f] + x @ lin.weight.T + lin.bias
    torch.testing.assert_close(m, expect, rtol=1e-12, atol=1e-12)
    assert m[0, 0].item() == pytest.approx(float(expect[0, 0]))

    w0, b0 = lin.weight.detach().clone().requires_grad_(), lin.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda pp, xx, w, b: _edge_gate_fn(pp, xx, w, b, src, dst), (p, x, w0, b0))
    with pytest.raises(ValueError, match="contiguous"):
        edge_gate(p[:, :2 * f], x, lin, edges(src, dst, n))


def _edge_gate_fn(p, x, w, b, src, dst):
    """edge_gate with the weight and bias as plain differentiable inputs (for gradcheck)."""
    from types import SimpleNamespace

    return edge_gate(p, x, SimpleNamespace(out_features=w.shape[0], weight=w, bias=b), edges(src, dst, p.shape[0]))


def test_bf16_autocast_training_step_is_close_to_float32():
    """Mixed precision (bf16 autocast, as Lightning's precision="bf16-mixed") runs through the
    fused kernels, gives finite gradients for the same parameters as float32 and a close output."""
    b = batch_of([nacl(), srtio3(), rutile_tio2()])
    outs, grads = [], []
    for autocast in (False, True):
        torch.manual_seed(4)
        model = PropertyModel(EncoderConfig.small()).train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = model(b)
        assert y.dtype == (torch.bfloat16 if autocast else torch.float32)
        y.float().sum().backward()
        outs.append(y.detach().float())
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[1]) > 20
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads[1].values())
    torch.testing.assert_close(outs[1], outs[0], rtol=0.05, atol=0.05)


def test_batch_norm_silu_updates_running_stats_like_torch():
    torch.manual_seed(1)
    x = torch.randn(50, 4) * 3 + 1
    ours, ref = torch.nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4)
    y = batch_norm_silu(x, None, ours)
    torch.testing.assert_close(y, torch.nn.functional.silu(ref(x)))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name))


@pytest.mark.parametrize("edge_output", [True, False])
def test_fused_and_reference_convolutions_agree(edge_output):
    torch.manual_seed(2)
    n, e, f = 7, 30, 8
    conv = EdgeGatedGraphConv(f, edge_output=edge_output).double()
    h = torch.randn(n, f, dtype=torch.float64, requires_grad=True)
    x = torch.randn(e, f, dtype=torch.float64, requires_grad=True)
    ei = torch.randint(0, n, (2, e))
    results = []
    for fused in (True, False):
        conv.fused = fused
        conv.zero_grad()
        h.grad = x.grad = None
        h2, e2 = conv(h, x, ei)
        loss = (h2 * torch.linspace(-1, 1, f, dtype=torch.float64)).square().sum()
        if e2 is not None:
            loss = loss + (e2.sin()).sum()
        loss.backward()
        results.append([h2, e2, h.grad, x.grad] + [p.grad for p in conv.parameters()])
    for a, b in zip(*results):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_fused_and_reference_encoders_agree():
    b = batch_of([nacl(), srtio3()])
    grads, outs, stats = [], [], []
    for impl in ("fused", "reference"):
        torch.manual_seed(3)
        model = AlignnEncoder(EncoderConfig.small(implementation=impl, alignn_layers=2)).double()
        out = model(b)
        ((out.pooled.sin()).sum() + out.edge.cos().sum()).backward()
        outs.append(out.pooled)
        grads.append([p.grad for p in model.parameters()])
        stats.append([buf.clone() for buf in model.buffers()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-9, atol=1e-10)
    for a, c in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, c, rtol=1e-7, atol=1e-9)
    for a, c in zip(stats[0], stats[1]):
        torch.testing.assert_close(a, c)



def _encoder_run(impl: str, b, layers: int = 3, freeze: tuple[str, ...] = (), frozen_eval: bool = False,
                 **kw):
    """Output, parameter gradients (by name) and buffers of one float64 training step;
    ``freeze``: parameter-name prefixes without gradient (their modules in eval mode when
    ``frozen_eval``, as hopnet.training.transfer does)."""
    torch.manual_seed(3)
    model = AlignnEncoder(EncoderConfig.small(implementation=impl, alignn_layers=layers, **kw)).double()
    if frozen_eval:
        with torch.no_grad():
            model(b)                                  # running statistics for the eval-mode blocks
    for name, p in model.named_parameters():
        if name.startswith(freeze):
            p.requires_grad_(False)
    for name, module in model.named_modules():
        if frozen_eval and name and name.startswith(freeze):
            module.eval()
    out = model(b)
    (out.pooled.sin().sum() + out.edge.cos().sum()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return out.pooled.detach(), grads, {n: buf.clone() for n, buf in model.named_buffers()}


def test_bond_pair_stream_and_fused_embedding_match_reference():
    """Three ALIGNN layers: t_1, t_2 are rebuilt in backward from t_3 (the stream), the angle and
    bond embeddings are one node each; outputs, every gradient and the running statistics (updated
    once) equal plain autograd's."""
    b = batch_of([nacl(), srtio3()])
    (out_f, g_f, s_f), (out_r, g_r, s_r) = _encoder_run("fused", b), _encoder_run("reference", b)
    torch.testing.assert_close(out_f, out_r, rtol=1e-9, atol=1e-10)
    assert g_f.keys() == g_r.keys() and len(g_f) > 40
    for name in g_r:
        torch.testing.assert_close(g_f[name], g_r[name], rtol=1e-7, atol=1e-9, msg=name)
    for name in s_r:
        torch.testing.assert_close(s_f[name], s_r[name], msg=name)
    assert int(s_f["angle_embedding.mlp2.bn.num_batches_tracked"]) == 1
    assert int(s_f["alignn_layers.1.line_conv.bn_edges.num_batches_tracked"]) == 1


@pytest.mark.parametrize("freeze", [
    ("atom_embedding", "edge_embedding", "angle_embedding", "alignn_layers.0."),
    ("angle_embedding", "alignn_layers.0."),
    ("alignn_layers.1.line_conv.edge_linear",),
    ("atom_embedding", "edge_embedding", "angle_embedding", "alignn_layers."),
])
def test_bond_pair_stream_with_frozen_parameters(freeze):
    """Frozen early layers (transfer learning) or a frozen edge weight leave the stream with
    fewer readers; the remaining gradients still equal plain autograd's."""
    b = batch_of([srtio3(), cscl()])
    (_, g_f, _), (_, g_r, _) = (_encoder_run(i, b, freeze=freeze) for i in ("fused", "reference"))
    assert g_f.keys() == g_r.keys()
    for name in g_r:
        torch.testing.assert_close(g_f[name], g_r[name], rtol=1e-7, atol=1e-9, msg=name)


@pytest.mark.parametrize("freeze", [("alignn_layers.1.",), ("angle_embedding", "alignn_layers.0.")])
def test_bond_pair_stream_around_frozen_eval_mode_layers(freeze):
    """A frozen block in eval mode (plain batch norm, no fused node) inside or before the stream:
    the stream restarts after it; gradients of the trained layers still equal plain autograd's."""
    b = batch_of([srtio3(), nacl()])
    (out_f, g_f, _), (out_r, g_r, _) = (_encoder_run(i, b, freeze=freeze, frozen_eval=True)
                                        for i in ("fused", "reference"))
    torch.testing.assert_close(out_f, out_r, rtol=1e-9, atol=1e-10)
    assert g_f.keys() == g_r.keys() and "alignn_layers.2.line_conv.edge_linear.weight" in g_f
    for name in g_r:
        torch.testing.assert_close(g_f[name], g_r[name], rtol=1e-7, atol=1e-9, msg=name)


def test_fused_training_step_keeps_no_bond_pair_inputs(monkeypatch):
    """Saved for backward in a fused training step: of the [T, H] bond-pair tensors only the gate
    pre-activations m_l (one per ALIGNN layer); the stream keeps the last t; reference keeps more.
    (Widths up to KEEP_EMBEDDING_WIDTH keep the angle embedding's activations, and gate tensors
    up to WHOLE_ELEMENTS elements keep sigmoid(m), on purpose: both off here.)"""
    import hopnet.nn.fused as fused

    monkeypatch.setattr(fused, "KEEP_EMBEDDING_WIDTH", 0)
    monkeypatch.setattr(fused, "WHOLE_ELEMENTS", 0)
    b = batch_of([srtio3(), nacl()])
    t_rows = b.lg_edge_index.shape[1]
    counts = {}
    for impl in ("fused", "reference"):
        torch.manual_seed(0)
        model = AlignnEncoder(EncoderConfig.small(implementation=impl, alignn_layers=3)).train()
        storages = set()

        def pack(t):
            if t.dim() == 2 and t.shape == (t_rows, 32) and t.is_floating_point():
                storages.add(t.untyped_storage().data_ptr())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(b).pooled.sum().backward()
        counts[impl] = len(storages)
    assert counts["fused"] == 3            # m_0, m_1, m_2
    assert counts["reference"] >= 12


def test_bond_pair_stream_backward_twice_is_a_clear_error():
    b = batch_of([nacl()])
    model = AlignnEncoder(EncoderConfig.small(alignn_layers=2)).train()
    loss = model(b).pooled.sum()
    loss.backward(retain_graph=True)
    with pytest.raises(BondPairStreamError, match="back-propagated only once"):
        loss.backward()


@pytest.mark.parametrize("keep_width", [0, 64], ids=["recompute", "keep"])
def test_gaussian_mlp_matches_modules_and_passes_gradcheck(monkeypatch, keep_width):
    import hopnet.nn.fused as fused

    monkeypatch.setattr(fused, "KEEP_EMBEDDING_WIDTH", keep_width)  # output width 5: kept iff 64
    torch.manual_seed(11)
    rbf = RBFExpansion(-1.0, 1.0, 6)
    mlp1, mlp2 = MLPLayer(6, 4).double(), MLPLayer(4, 5).double()
    for bn in (mlp1.bn, mlp2.bn):
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    d = torch.rand(17, dtype=torch.float64) * 2 - 1
    ref1, ref2 = MLPLayer(6, 4).double(), MLPLayer(4, 5).double()
    ref1.load_state_dict(mlp1.state_dict())
    ref2.load_state_dict(mlp2.state_dict())
    got = gaussian_mlp(d, rbf.centers, rbf.gamma, mlp1, mlp2)
    torch.testing.assert_close(got, ref2(ref1(rbf(d))), rtol=1e-12, atol=1e-12)
    for a, c in ((mlp1, ref1), (mlp2, ref2)):                 # running statistics updated once
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(a.bn, name), getattr(c.bn, name))
    params = [mlp1.linear.weight, mlp1.linear.bias, mlp1.bn.weight, mlp1.bn.bias,
              mlp2.linear.weight, mlp2.linear.bias, mlp2.bn.weight, mlp2.bn.bias]

    def fn(dd, *ps):
        m1, m2 = SimpleMLP(*ps[:4], mlp1.bn.eps), SimpleMLP(*ps[4:], mlp2.bn.eps)
        return gaussian_mlp(dd, rbf.centers, rbf.gamma, m1, m2, update_stats=False)

    inputs = (d.clone().requires_grad_(),) + tuple(p.detach().clone().requires_grad_() for p in params)
    assert torch.autograd.gradcheck(fn, inputs)


class SimpleMLP:
    """Stand-in for MLPLayer with plain tensors as parameters (gradcheck inputs)."""

    def __init__(self, w, b, g, beta, eps):
        from types import SimpleNamespace

        self.linear = SimpleNamespace(weight=w, bias=b)
        self.bn = SimpleNamespace(weight=g, bias=beta, eps=eps, track_running_stats=False,
                                  num_batches_tracked=None, momentum=0.1, running_mean=None, running_var=None)

# ----------------------------------------------------------------------------- invariances
def pooled(model, structures) -> torch.Tensor:
    with torch.no_grad():
        return model(batch_of(structures)).pooled


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_invariant_to_atom_order(pooling):
    model = warmed_model(EncoderConfig.small(pooling=pooling))
    s = srtio3()
    perm = [3, 0, 4, 2, 1]
    shuffled = Structure(s.lattice, [s[i].species for i in perm], [s[i].frac_coords for i in perm])
    torch.testing.assert_close(pooled(model, [s]), pooled(model, [shuffled]), rtol=0, atol=1e-5)


def test_invariant_to_translation():
    model = warmed_model(SMALL)
    s = rutile_tio2()
    moved = s.copy()
    moved.translate_sites(list(range(len(moved))), [0.137, -0.29, 0.61], frac_coords=True, to_unit_cell=True)
    torch.testing.assert_close(pooled(model, [s]), pooled(model, [moved]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("make", [nacl, srtio3])
def test_supercell_gives_the_same_mean_pooled_output(make):
    model = warmed_model(SMALL)
    prim = make().get_primitive_structure()
    sup = prim * (2, 2, 2)
    assert len(sup) == 8 * len(prim)
    torch.testing.assert_close(pooled(model, [prim]), pooled(model, [sup]), rtol=0, atol=1e-5)


def test_output_shapes_and_batched_equals_one_by_one():
    model = warmed_model(EncoderConfig.small(pooling="attention"))
    crystals = [nacl(), cscl(), rutile_tio2()]
    b = batch_of(crystals)
    with torch.no_grad():
        out = model(b)
    assert out.node.shape == (b.num_nodes, 32)
    assert out.edge.shape == (b.edge_index.shape[1], 32)
    assert out.pooled.shape == (3, 32)
    singles = torch.cat([pooled(model, [s]) for s in crystals])
    torch.testing.assert_close(out.pooled, singles, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- pooling
def test_pool_over_a_subset_of_atoms():
    model = warmed_model(SMALL)
    b = batch_of([srtio3(), cscl()])
    with torch.no_grad():
        node = model(b).node
    mask = torch.tensor([True, False, True, False, False, False, True])      # Sr, O | Cl
    got = model.pool(node, b.batch, mask)
    torch.testing.assert_close(got[0], node[[0, 2]].mean(0))
    torch.testing.assert_close(got[1], node[6])
    with pytest.raises(PoolingError, match="graph 1 has no atom"):
        model.pool(node, b.batch, torch.tensor([True] * 5 + [False] * 2))


def test_attention_pooling_weights_and_subset():
    torch.manual_seed(4)
    pool = AttentionPooling(6, heads=3)
    node = torch.randn(7, 6)
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    out = pool(node, batch)
    assert out.shape == (3, 6)
    # a graph of one atom: every head's weight is 1, so the pool is project(atom repeated)
    single = pool(node[3:4], torch.tensor([0]))
    torch.testing.assert_close(single[0], pool.project(node[3].repeat(3)))
    # masking = pooling the sub-batch
    mask = torch.tensor([True, False, True, True, True, False, True])
    torch.testing.assert_close(pool(node, batch, mask), pool(node[mask], batch[mask]))
    # permutation within graphs changes nothing
    perm = torch.tensor([2, 0, 1, 4, 3, 6, 5])
    torch.testing.assert_close(pool(node[perm], batch[perm]), out)
    torch.testing.assert_close(MeanPooling()(node, batch)[1], node[3:5].mean(0))


# ----------------------------------------------------------------------------- gradients, training
@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_gradients_reach_every_parameter(pooling):
    torch.manual_seed(5)
    model = AlignnEncoder(EncoderConfig.small(pooling=pooling, alignn_layers=2, gcn_layers=2)).train()
    out = model(batch_of([srtio3(), rutile_tio2()]))
    g = torch.Generator().manual_seed(0)
    loss = (out.pooled * torch.randn(out.pooled.shape, generator=g)).sum() \
        + (out.edge * torch.randn(out.edge.shape, generator=g)).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_checkpointing_gives_the_same_gradients_and_statistics():
    b = batch_of([srtio3(), nacl()])
    runs = []
    for ckpt in (False, True):
        torch.manual_seed(6)
        model = AlignnEncoder(EncoderConfig.small(alignn_layers=2, checkpointing=ckpt)).double().train()
        model(b).pooled.sin().sum().backward()
        runs.append(([p.grad for p in model.parameters()], dict(model.named_buffers())))
    for a, c in zip(runs[0][0], runs[1][0]):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-12)
    for name, buf in runs[0][1].items():
        torch.testing.assert_close(buf, runs[1][1][name], msg=name)
    assert int(runs[1][1]["alignn_layers.0.line_conv.bn_nodes.num_batches_tracked"]) == 1


def test_tiny_model_overfits_eight_structures():
    torch.manual_seed(7)
    b = batch_of(eight_crystals())
    target = torch.tensor([0.3, 1.2, -0.4, 0.9, 2.0, -1.1, 0.0, 0.6]).unsqueeze(1)
    model = PropertyModel(EncoderConfig.small(), n_outputs=1)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(250):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(b), target)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        mae = (model(b) - target).abs().mean().item()
    assert mae < 0.05, mae


def test_save_and_load_give_bit_identical_outputs(tmp_path):
    torch.manual_seed(8)
    model = PropertyModel(EncoderConfig.small(pooling="attention"), n_outputs=2)
    model.train()
    b = batch_of([nacl(), srtio3()])
    with torch.no_grad():
        model(b)                                         # non-trivial running statistics
    model.eval()
    path = tmp_path / "model.pt"
    torch.save({"config": model.config.encoder.to_dict(), "n_outputs": 2, "state": model.state_dict()}, path)
    saved = torch.load(path, weights_only=True)
    again = PropertyModel(EncoderConfig.from_dict(saved["config"]), n_outputs=saved["n_outputs"])
    again.load_state_dict(saved["state"])
    again.eval()
    with torch.no_grad():
        assert torch.equal(model(b), again(b))


# ----------------------------------------------------------------------------- heads, errors
def test_heads():
    torch.manual_seed(9)
    pooled_ = torch.randn(4, 8)
    assert LinearHead(8, 3)(pooled_).shape == (4, 3)
    assert MLPHead(8, 16, 2, n_hidden_layers=2)(pooled_).shape == (4, 2)
    multi = MultiHead(8, ["fe", "bg", "gv"])
    out = multi(pooled_)
    assert list(out) == ["fe", "bg", "gv"] and all(v.shape == (4,) for v in out.values())
    torch.testing.assert_close(out["bg"], multi.heads["bg"].linear(pooled_).squeeze(-1))


def test_wrong_feature_width_is_a_clear_error():
    model = AlignnEncoder(EncoderConfig.small(atom_input_features=93))
    with pytest.raises(GraphInputError, match=r"\[N, 93\]"):
        model(batch_of([nacl()]))


# ----------------------------------------------------------------------------- distinct angles
def test_graph_holds_its_distinct_angles_and_batches_them():
    """lg_angle holds each distinct bond-angle cosine once and lg_angle_index points every bond
    pair at its own; rutile's symmetry leaves few distinct angles; batching offsets the index."""
    g, h = graph(rutile_tio2()), graph(srtio3())
    for x in (g, h):
        assert torch.equal(x.lg_angle[x.lg_angle_index], x.lg_cos)
        assert x.lg_angle.unique().numel() == x.lg_angle.numel()
    assert g.lg_angle.numel() < 0.2 * g.lg_cos.numel()
    b = Batch.from_data_list([g, h])
    assert torch.equal(b.lg_angle[b.lg_angle_index], b.lg_cos)
    assert b.lg_angle.numel() == g.lg_angle.numel() + h.lg_angle.numel()
    assert torch.equal(b.get_example(1).lg_angle_index, h.lg_angle_index)


def test_gaussian_mlp_on_distinct_values_equals_the_expanded_batch():
    """Distinct values with counts give the rows, the running statistics and (summed over the
    repeated rows) the gradients of the expanded batch; gradcheck on the counted form."""
    torch.manual_seed(12)
    rbf = RBFExpansion(-1.0, 1.0, 6)
    values = torch.rand(7, dtype=torch.float64) * 2 - 1
    counts = torch.tensor([3, 1, 5, 2, 0, 4, 1], dtype=torch.float64)   # 0: an angle a crop removed
    index = torch.repeat_interleave(torch.arange(7), counts.long())
    pairs = [(MLPLayer(6, 4).double(), MLPLayer(4, 5).double()) for _ in range(2)]
    pairs[1][0].load_state_dict(pairs[0][0].state_dict())
    pairs[1][1].load_state_dict(pairs[0][1].state_dict())
    weight = torch.randn(int(counts.sum()), 5, dtype=torch.float64)
    outs, grads = [], []
    for (mlp1, mlp2), compact in zip(pairs, (True, False)):
        if compact:
            out = gaussian_mlp(values, rbf.centers, rbf.gamma, mlp1, mlp2, counts=counts)[index]
        else:
            out = gaussian_mlp(values[index], rbf.centers, rbf.gamma, mlp1, mlp2)
        (out * weight).sum().backward()
        outs.append(out.detach())
        grads.append([p.grad for m in (mlp1, mlp2) for p in m.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    for a, c in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
    for a, c in zip(pairs[0], pairs[1]):
        torch.testing.assert_close(a.bn.running_mean, c.bn.running_mean)
        torch.testing.assert_close(a.bn.running_var, c.bn.running_var)
    m1, m2 = pairs[0]
    params = [p.detach().clone().requires_grad_() for m in (m1, m2) for p in m.parameters()]

    def fn(*ps):
        s1, s2 = SimpleMLP(*ps[:4], m1.bn.eps), SimpleMLP(*ps[4:], m2.bn.eps)
        return gaussian_mlp(values, rbf.centers, rbf.gamma, s1, s2, update_stats=False, counts=counts)

    assert torch.autograd.gradcheck(fn, tuple(params))


def test_edge_gate_on_distinct_rows_equals_the_gathered_rows():
    torch.manual_seed(6)
    n, u, e, f = 5, 4, 14, 3
    p = torch.randn(n, 4 * f, dtype=torch.float64, requires_grad=True)
    x = torch.randn(u, f, dtype=torch.float64, requires_grad=True)
    w = torch.randn(f, f, dtype=torch.float64, requires_grad=True)
    b = torch.randn(f, dtype=torch.float64, requires_grad=True)
    src, dst, rows = torch.randint(0, n, (e,)), torch.randint(0, n, (e,)), torch.randint(0, u, (e,))
    from types import SimpleNamespace

    def gate(pp, xx, ww, bb):
        return edge_gate(pp, xx, SimpleNamespace(out_features=f, weight=ww, bias=bb), edges(src, dst, n, rows=rows))

    torch.testing.assert_close(gate(p, x, w, b), _edge_gate_fn(p, x[rows], w, b, src, dst),
                               rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(gate, (p, x, w, b))


@pytest.mark.parametrize("layers", [1, 3])
def test_distinct_angle_encoder_equals_the_per_pair_encoder(layers):
    """The fused encoder with the graphs' distinct angles, with distinct angles found at run time
    (graphs without lg_angle) and plain autograd per bond pair: the same outputs, gradients and
    running statistics in training, the same outputs in eval mode."""
    b = batch_of([rutile_tio2(), srtio3(), nacl()])
    plain = b.clone()
    del plain.lg_angle, plain.lg_angle_index
    runs = [_encoder_run("fused", b, layers), _encoder_run("fused", plain, layers),
            _encoder_run("reference", b, layers)]
    for out, grads, stats in runs[:2]:
        ref_out, ref_grads, ref_stats = runs[2]
        torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-10)
        assert grads.keys() == ref_grads.keys()
        for name in ref_grads:
            torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-7, atol=1e-9, msg=name)
        for name in ref_stats:
            torch.testing.assert_close(stats[name], ref_stats[name], msg=name)
    torch.manual_seed(3)
    model = AlignnEncoder(EncoderConfig.small(alignn_layers=layers)).double()
    with torch.no_grad():
        model(b)
        model.eval()
        eval_outs = [model(x).pooled for x in (b, plain)]
        model.config = EncoderConfig.small(alignn_layers=layers, implementation="reference")
        eval_outs.append(model(b).pooled)
    torch.testing.assert_close(eval_outs[0], eval_outs[2], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(eval_outs[1], eval_outs[2], rtol=1e-12, atol=1e-12)


def test_distinct_bond_embedding_equals_the_per_bond_embedding():
    """The bond embedding worked out once per distinct bond length and gathered per bond gives
    the per-bond embedding's values, parameter gradients and running statistics; bond lengths
    that need a gradient (forces) take the per-bond path."""
    b = batch_of([rutile_tio2(), srtio3(), nacl()])
    lengths = b.edge_len.double()
    assert 2 * torch.unique(lengths).shape[0] <= lengths.shape[0]     # the distinct path is taken
    torch.manual_seed(5)
    model = AlignnEncoder(EncoderConfig.small()).double().train()
    twin = copy.deepcopy(model)
    g = torch.randn(lengths.shape[0], model.config.hidden_features, dtype=torch.float64)
    got = model._distinct_bonds(lengths)
    want = twin.edge_embedding(lengths)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    (got * g).sum().backward()
    (want * g).sum().backward()
    for (name, p), q in zip(model.edge_embedding.named_parameters(), twin.edge_embedding.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-10, msg=name)
    for (name, r), s in zip(model.edge_embedding.named_buffers(), twin.edge_embedding.buffers()):
        torch.testing.assert_close(r, s, msg=name)
    needs_grad = b.clone()
    needs_grad.edge_len = b.edge_len.double().requires_grad_(True)
    model(needs_grad).pooled.sum().backward()
    assert needs_grad.edge_len.grad is not None and needs_grad.edge_len.grad.abs().sum() > 0


def test_inconsistent_angle_index_is_a_clear_error():
    b = batch_of([nacl()])
    b.lg_angle_index = b.lg_angle_index[:-1]
    with pytest.raises(GraphInputError, match="lg_angle_index"):
        AlignnEncoder(SMALL)(b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_basis_is_the_gaussian_with_underflow_floored(dtype):
    """gaussian_basis is exp(-gamma (d - mu)^2) to rounding where that is a normal number, and
    e times the smallest normal number (not 0 or a denormal) where it underflows; with autograd it gives
    the same values and the analytic gradient."""
    from hopnet.nn.fused import gaussian_basis

    d = torch.tensor([0.0, 0.9, 2.5, 7.9], dtype=dtype)
    centers = torch.linspace(0.0, 8.0, 80, dtype=dtype)
    gamma = 79 / 8 if dtype == torch.float32 else 25.0         # float64 underflows below -708
    exact = torch.exp(-gamma * (d.unsqueeze(-1) - centers).square())
    floor = torch.finfo(dtype).tiny * np.e
    got = gaussian_basis(d, centers, gamma)
    kept = exact > floor * 1.001
    assert (exact < torch.finfo(dtype).tiny).sum() > 50      # many bins of a bond-length basis underflow
    torch.testing.assert_close(got[kept], exact[kept], rtol=1e-5, atol=0)
    assert torch.all((got[~kept] >= floor * 0.999) & (got[~kept] <= floor * 1.002))
    dg = d.clone().requires_grad_(True)
    out = gaussian_basis(dg, centers, gamma)
    torch.testing.assert_close(out.detach(), got)
    out.sum().backward()
    grad = (-2 * gamma * (d.unsqueeze(-1) - centers) * exact).sum(1)
    torch.testing.assert_close(dg.grad, grad, rtol=1e-5, atol=1e-5)   # terms of size ~10 cancel


@pytest.mark.parametrize("n", [1, 7, 65536, 70000, 2**31 + 5])
def test_stable_order_is_the_stable_argsort(n):
    """The faster sort behind Segments (16-bit radix / 32-bit keys / 64-bit) is torch's stable
    argsort, ties in row order, for every index range it switches on."""
    from hopnet.nn.fused import stable_order

    g = torch.Generator().manual_seed(n % 1000)
    index = torch.randint(0, min(n, 50), (5000,), generator=g) * (n // min(n, 50))
    index[::7] = n - 1                                     # the largest value, many ties
    assert int(index.max()) == n - 1 and int(index.min()) >= 0
    assert torch.equal(stable_order(index, n), torch.argsort(index, stable=True))
    assert stable_order(index[:0], n).shape == (0,) and stable_order(index[:0], n).dtype == torch.long


@pytest.mark.parametrize("chunk", [None, 40], ids=["one-block", "many-blocks"])
def test_segment_sums_equal_the_scatter_bit_for_bit(monkeypatch, chunk):
    """Segments.sum is index_add_ in the same summation order (empty groups give 0); the gated
    aggregate and the edge gate give the same numbers and gradients with and without them, also
    when the aggregate runs in blocks of whole destinations (chunk: elements per block)."""
    import hopnet.nn.fused as fused
    from hopnet.nn.fused import Segments

    if chunk is not None:
        monkeypatch.setattr(fused, "CHUNK_ELEMENTS", chunk)
        small = Segments(torch.tensor([2, 0, 2, 2, 5, 0, 2]), 7)
        blocks = list(small.blocks(2))    # 20 rows a block
        assert [(b.start, b.stop) for b, _, _ in blocks] == [(0, 7)]
        blocks = list(small.blocks(20))   # 2 rows a block
        assert [(b.start, b.stop) for b, _, _ in blocks] == [(0, 1), (1, 3), (3, 7)]
        assert [r.tolist() for _, r, _ in blocks] == [[1, 5], [0, 2, 3, 6], [4]]
        assert [o.tolist() for _, _, o in blocks] == [[0], [0, 0], [0, 0, 0, 1]]

    torch.manual_seed(8)
    index = torch.randint(0, 40, (3000,))
    index[index == 7] = 8                                  # an empty group
    x = torch.randn(3000, 5)
    seg = Segments(index, 41)
    assert torch.equal(seg.sum(x), torch.zeros(41, 5).index_add_(0, index, x))
    assert torch.equal(Segments(index[:0], 3).sum(x[:0]), torch.zeros(3, 5))
    n, f = 40, 4
    m = torch.randn(3000, f, dtype=torch.float64, requires_grad=True)
    vh = torch.randn(n, f, dtype=torch.float64, requires_grad=True)
    src = torch.sort(torch.randint(0, n, (3000,))).values
    outs = []
    for segments in (None, Segments(index, n)):
        out = gated_aggregate(m, vh, src, index, 1e-6, segments)
        outs.append((out, *torch.autograd.grad(out.sin().sum(), (m, vh))))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    small = slice(0, 30)
    assert torch.autograd.gradcheck(
        lambda a, b: gated_aggregate(a, b, src[small], index[small] % 6, 1e-6, Segments(index[small] % 6, n)),
        (m[small].detach().requires_grad_(), vh.detach().requires_grad_()))


@pytest.mark.parametrize("sorted_src", [True, False])
def test_gated_aggregate_whole_tensors_equal_the_row_blocks(monkeypatch, sorted_src):
    """Up to WHOLE_ELEMENTS the gated aggregate works on whole tensors and keeps sigmoid(m) for
    backward; above it, row blocks that recompute it: the same numbers and gradients (both pass
    gradcheck), with and without a sorted src."""
    import hopnet.nn.fused as fused
    from hopnet.nn.fused import Segments

    torch.manual_seed(11)
    n, f, rows = 25, 3, 700
    src = torch.randint(0, n, (rows,))
    if sorted_src:
        src = torch.sort(src).values
    dst = torch.randint(0, n, (rows,))
    dst[dst == 4] = 5                                      # a destination without edges
    m = torch.randn(rows, f, dtype=torch.float64, requires_grad=True)
    vh = torch.randn(n, f, dtype=torch.float64, requires_grad=True)

    def run(a, b):
        s, d = src[:a.shape[0]], dst[:a.shape[0]]
        return gated_aggregate(a, b, s, d, 1e-6, Segments(d, n), Segments(s, n))

    results = []
    for whole, chunk in ((fused.WHOLE_ELEMENTS, fused.CHUNK_ELEMENTS), (0, 60)):
        monkeypatch.setattr(fused, "WHOLE_ELEMENTS", whole)
        monkeypatch.setattr(fused, "CHUNK_ELEMENTS", chunk)    # many blocks when blocked
        out = run(m, vh)
        results.append((out, *torch.autograd.grad(out.sin().sum(), (m, vh))))
        assert torch.autograd.gradcheck(run, (m[:40].detach().requires_grad_(), vh.detach().requires_grad_()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    assert results[0][0][4].abs().sum() == 0


def test_sorted_source_sums_give_the_scatter_gradients(monkeypatch):
    """With Segments of a sorted src (hopnet's graphs), the backward passes of the gated
    aggregate and the edge gate sum by source block instead of scattering: same numbers and
    gradients, sources without edges included; an unsorted src falls back to the scatter."""
    import hopnet.nn.fused as fused
    from hopnet.nn.fused import Segments

    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 64)       # many source blocks
    torch.manual_seed(3)
    n, f, rows = 30, 4, 900
    src = torch.sort(torch.randint(0, n, (rows,))).values
    src[src == 11] = 12                                    # a source without edges
    dst = torch.randint(0, n, (rows,))
    by_src = Segments(src, n)
    assert by_src.sorted and not Segments(dst, n).sorted
    blocks = list(by_src.blocks(f))
    assert all(isinstance(r, slice) for _, r, _ in blocks) and len(blocks) > 10
    assert [b.start for b, _, _ in blocks][0] == 0 and blocks[-1][0].stop == n
    m = torch.randn(rows, f, dtype=torch.float64, requires_grad=True)
    vh = torch.randn(n, f, dtype=torch.float64, requires_grad=True)
    results = []
    for src_segments in (None, by_src, Segments(src[torch.randperm(rows)], n)):
        s = src if src_segments is None or src_segments.sorted else src_segments.index
        out = gated_aggregate(m, vh, s, dst, 1e-6, Segments(dst, n), src_segments)
        results.append((s, out, *torch.autograd.grad(out.sin().sum(), (m, vh))))
    for a, b in zip(results[0][1:], results[1][1:]):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    reference = gated_aggregate(m, vh, results[2][0], dst, 1e-6, None, None)
    torch.testing.assert_close(results[2][1], reference, rtol=1e-13, atol=1e-13)

    lin = torch.nn.Linear(f, f).double()
    p = torch.randn(n, 4 * f, dtype=torch.float64, requires_grad=True)
    e = torch.randn(rows, f, dtype=torch.float64, requires_grad=True)
    grads = []
    for src_segments in (None, by_src):
        out = edge_gate(p, e, lin, edges(src, dst, n, dst=Segments(dst, n), src=src_segments))
        grads.append(torch.autograd.grad(out.cos().sum(), (p, e, lin.weight)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    assert torch.all(grads[1][0][11, :f] == 0)             # no edges out of 11: no gradient for A h_11
