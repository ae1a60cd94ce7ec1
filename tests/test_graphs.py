"""Crystal graph geometry against hand-checked structures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from hopnet.infra.errors import PathError, StructureError
from hopnet.graphs import FEATURE_DIM, GraphConfig, build_graph, knn_edges, line_graph

torch.set_num_threads(1)
A_NACL = 5.64
A_FE = 2.87


def nacl_primitive() -> Structure:
    h = A_NACL / 2
    return Structure(Lattice([[0, h, h], [h, 0, h], [h, h, 0]]), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def simple_cubic(a: float = 3.0) -> Structure:
    return Structure(Lattice.cubic(a), ["Cu"], [[0, 0, 0]])


def random_triclinic(seed: int = 0) -> Structure:
    rng = np.random.default_rng(seed)
    lat = Lattice.from_parameters(4.1, 5.3, 6.2, 77.0, 98.0, 111.0)
    return Structure(lat, ["Li", "O", "Mn", "O"], rng.random((4, 3)))


def per_atom_distances(g) -> list[np.ndarray]:
    src = g.edge_index[0].numpy()
    d = g.edge_len.double().numpy()
    return [np.sort(d[src == a]) for a in range(g.num_nodes)]


def degree(g) -> np.ndarray:
    return np.bincount(g.edge_index[0].numpy(), minlength=g.num_nodes)


def test_rock_salt_keeps_both_tied_shells():
    fcc = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    conventional = Structure(Lattice.cubic(A_NACL), ["Na"] * 4 + ["Cl"] * 4,
                             np.concatenate((fcc, fcc + 0.5)) % 1.0)
    for s in (nacl_primitive(), conventional):
        g = build_graph(s)
        assert g.num_nodes == len(s)
        assert (degree(g) == 18).all()
        for d in per_atom_distances(g):
            np.testing.assert_allclose(d[:6], A_NACL / 2, atol=1e-5)
            np.testing.assert_allclose(d[6:], A_NACL / math.sqrt(2), atol=1e-5)
        # first shell is the other species, second shell the same species
        z = g.z.numpy()
        src, dst = g.edge_index.numpy()
        short = g.edge_len.numpy() < 3.0
        assert (z[src[short]] != z[dst[short]]).all() and (z[src[~short]] == z[dst[~short]]).all()


def test_bcc_iron_8_plus_6():
    s = Structure(Lattice.cubic(A_FE), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    g = build_graph(s)
    assert (degree(g) == 14).all()
    for d in per_atom_distances(g):
        np.testing.assert_allclose(d[:8], A_FE * math.sqrt(3) / 2, atol=1e-5)
        np.testing.assert_allclose(d[8:], A_FE, atol=1e-5)


def test_one_atom_cell_self_image_bonds_and_angles():
    g = build_graph(simple_cubic(3.0))
    assert g.edge_index.shape == (2, 18) and (g.edge_index == 0).all()
    d = per_atom_distances(g)[0]
    np.testing.assert_allclose(d[:6], 3.0, atol=1e-6)
    np.testing.assert_allclose(d[6:], 3.0 * math.sqrt(2), atol=1e-6)
    # every ordered bond pair at the single atom: 18 x 18, cos = -u1.u2 over the 6+12 star
    assert g.lg_edge_index.shape == (2, 324)
    vals, counts = np.unique(np.round(g.lg_cos.double().numpy(), 4) + 0.0, return_counts=True)
    s2 = round(1 / math.sqrt(2), 4)
    assert dict(zip(vals.tolist(), counts.tolist())) == {
        -1.0: 18, -s2: 48, -0.5: 48, 0.0: 96, 0.5: 48, s2: 48, 1.0: 18}


def test_sheared_basis_of_same_lattice_gives_same_neighbours():
    a = 3.0
    unimodular = np.array([[1, 0, 0], [2, 1, 0], [1, -3, 1]])  # det 1: same lattice
    sheared = Structure(Lattice(unimodular @ (a * np.eye(3))), ["Cu"], [[0.3, 0.7, 0.1]])
    ref = build_graph(simple_cubic(a))
    g = build_graph(sheared)
    np.testing.assert_allclose(per_atom_distances(g)[0], per_atom_distances(ref)[0], atol=1e-5)
    # same bond vectors too
    key = lambda v: sorted(map(tuple, np.round(v.numpy(), 4) + 0.0))  # noqa: E731
    assert key(g.edge_vec) == key(ref.edge_vec)


def test_supercell_matches_primitive_cell():
    for prim in (nacl_primitive(), random_triclinic(1)):
        g1 = build_graph(prim)
        g8 = build_graph(prim * (2, 2, 2))
        rows = lambda g: sorted(tuple(np.round(d, 4)) for d in per_atom_distances(g))  # noqa: E731
        assert rows(g8) == sorted(rows(g1) * 8)
        assert g8.edge_index.shape[1] == 8 * g1.edge_index.shape[1]
        assert g8.lg_edge_index.shape[1] == 8 * g1.lg_edge_index.shape[1]


def test_edge_set_is_symmetric_and_vectors_match_positions():
    s = random_triclinic(2)
    # unwrapped coordinates must not change anything but the positions
    shifted = Structure(s.lattice, s.species, s.frac_coords + np.array([[1, -2, 0], [0, 0, 3], [-1, 0, 0], [0, 1, 1]]))
    g, gs = build_graph(s), build_graph(shifted)
    np.testing.assert_allclose(np.sort(g.edge_len.numpy()), np.sort(gs.edge_len.numpy()), atol=1e-5)
    for gr, st in ((g, s), (gs, shifted)):
        src, dst = gr.edge_index.numpy()
        vec = gr.edge_vec.double().numpy()
        fwd = {(u, v, tuple(np.round(x, 3) + 0.0)) for u, v, x in zip(src, dst, vec)}
        rev = {(v, u, tuple(np.round(-x, 3) + 0.0)) for u, v, x in zip(src, dst, vec)}
        assert fwd == rev and len(fwd) == len(src)  # symmetric, no duplicates
        np.testing.assert_allclose(np.linalg.norm(vec, axis=1), gr.edge_len.numpy(), rtol=1e-5)
        image = (vec - (st.cart_coords[dst] - st.cart_coords[src])) @ np.linalg.inv(st.lattice.matrix)
        np.testing.assert_allclose(image, np.rint(image), atol=1e-4)
        assert (degree(gr) >= 12).all()


def test_against_brute_force_neighbour_enumeration():
    s = random_triclinic(3)
    k, tol = 12, 1e-3
    frac, lat = s.frac_coords, s.lattice.matrix
    rng = np.arange(-4, 5)
    images = np.stack(np.meshgrid(rng, rng, rng, indexing="ij"), -1).reshape(-1, 3)
    expected = set()
    for i in range(len(s)):
        vec = (frac[None, :, None, :] + images[None, None] - frac[i]).reshape(-1, 3) @ lat
        j = np.repeat(np.arange(len(s)), len(images))
        img = np.tile(images, (len(s), 1))
        d = np.linalg.norm(vec, axis=1)
        ok = d > 1e-8
        kth = np.sort(d[ok])[k - 1]
        for jj, im in zip(j[ok & (d <= kth + tol)], img[ok & (d <= kth + tol)]):
            expected.add((i, int(jj), tuple(im)))
            expected.add((int(jj), i, tuple(-im)))
    e = knn_edges(lat, frac, k, 8.0, tol)
    got = {(int(u), int(v), tuple(int(x) for x in im)) for u, v, im in zip(e.src, e.dst, e.image)}
    assert got == expected


def test_result_independent_of_cutoff_when_enough_neighbours():
    s = random_triclinic(4)
    a = knn_edges(s.lattice.matrix, s.frac_coords, cutoff=8.0)
    b = knn_edges(s.lattice.matrix, s.frac_coords, cutoff=25.0)
    for f in ("src", "dst", "image"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_cutoff_grows_for_sparse_cell():
    g = build_graph(simple_cubic(10.0), GraphConfig(cutoff=8.0))
    d = per_atom_distances(g)[0]
    assert len(d) == 18
    np.testing.assert_allclose(d[:6], 10.0, atol=1e-5)
    np.testing.assert_allclose(d[6:], 10.0 * math.sqrt(2), atol=1e-5)


def test_tie_tolerance():
    # tetragonal, c slightly short: 6 near-3 Å bonds, then 8 diagonals at 4.24229 Å and 4 at 4.24264 Å
    s = Structure(Lattice.tetragonal(3.0, 3.0 - 5e-4), ["Cu"], [[0, 0, 0]])
    assert build_graph(s, GraphConfig(tie_tolerance=0.0)).edge_index.shape[1] == 14
    assert build_graph(s, GraphConfig(tie_tolerance=1e-3)).edge_index.shape[1] == 18
    assert build_graph(s, GraphConfig(max_neighbors=6, tie_tolerance=1e-3)).edge_index.shape[1] == 6


def test_line_graph_pairs_and_cosines():
    g = build_graph(random_triclinic(5))
    src, dst = g.edge_index.numpy()
    e1, e2 = g.lg_edge_index.numpy()
    assert (dst[e1] == src[e2]).all()
    out_deg = np.bincount(src, minlength=g.num_nodes)
    assert len(e1) == out_deg[dst].sum()
    assert len({(a, b) for a, b in zip(e1, e2)}) == len(e1)  # all pairs distinct
    v = g.edge_vec.double().numpy()
    cos = -(v[e1] * v[e2]).sum(1) / np.linalg.norm(v[e1], axis=1) / np.linalg.norm(v[e2], axis=1)
    np.testing.assert_allclose(g.lg_cos.numpy(), cos, atol=1e-5)
    # backtracking pairs (e2 = reverse of e1) have cos = +1 (angle 0 between -v and -v)
    back = (src[e2] == dst[e1]) & (dst[e2] == src[e1]) & np.isclose(v[e1], -v[e2], atol=1e-5).all(1)
    assert back.sum() == len(src)
    np.testing.assert_allclose(g.lg_cos.numpy()[back], 1.0, atol=1e-6)


def test_line_graph_unsorted_input():
    src = np.array([1, 0, 1, 2])
    dst = np.array([0, 1, 2, 1])
    vec = np.array([[-1.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0]])
    idx, cos = line_graph(src, dst, vec, 3)
    pairs = dict(zip(map(tuple, idx.T.tolist()), cos.tolist()))
    assert set(pairs) == {(0, 1), (1, 0), (1, 2), (2, 3), (3, 0), (3, 2)}
    assert pairs[(1, 2)] == pytest.approx(0.0) and pairs[(1, 0)] == pytest.approx(1.0)
    assert pairs[(3, 0)] == pytest.approx(0.0)


def test_fields_dtypes_and_mobile_flag():
    s = Structure(Lattice.cubic(4.0), ["Li", "Li", "O", "O"], [[0, 0, 0], [0.1, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0.5]])
    g = build_graph(s, GraphConfig(), n_mobile=2)
    assert g.x.shape == (4, FEATURE_DIM) and g.x.dtype == torch.float32
    assert g.z.dtype == torch.long and g.z.tolist() == [3, 3, 8, 8]
    assert g.pos.dtype == torch.float32 and g.edge_vec.dtype == torch.float32
    assert g.edge_len.dtype == torch.float32 and g.lg_cos.dtype == torch.float32
    assert g.edge_index.dtype == torch.long and g.lg_edge_index.dtype == torch.long
    assert g.is_mobile.dtype == torch.bool and g.is_mobile.tolist() == [True, True, False, False]
    gm = build_graph(s, GraphConfig(mobile_flag=True), n_mobile=2)
    assert gm.x.shape == (4, FEATURE_DIM + 1)
    assert gm.x[:, -1].tolist() == [1.0, 1.0, 0.0, 0.0]
    torch.testing.assert_close(gm.x[:, :-1], g.x)
    assert build_graph(s, GraphConfig(mobile_flag=True)).x[:, -1].sum() == 0
    with pytest.raises(PathError):
        build_graph(s, n_mobile=5)
    gl = build_graph(s, GraphConfig(line_graph=False))
    assert gl.lg_edge_index.shape == (2, 0) and gl.lg_cos.shape == (0,)
    torch.testing.assert_close(gl.edge_index, g.edge_index)


def test_coincident_atoms_get_no_bond(caplog):
    s = Structure(Lattice.cubic(4.0), ["Li", "Ru", "O"], [[0.25, 0.25, 0.25], [0.25, 0.25, 0.25], [0, 0, 0]],
                  validate_proximity=False)
    g = build_graph(s, n_mobile=1)
    assert "coincide" in caplog.text
    assert (g.edge_len > 0.1).all() and torch.isfinite(g.lg_cos).all()


def test_bad_structures():
    with pytest.raises(StructureError):
        build_graph(Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]]))
    with pytest.raises(StructureError):
        knn_edges(np.zeros((3, 3)), np.zeros((1, 3)))
    with pytest.raises(StructureError):
        knn_edges(np.eye(3) * 3, np.array([[0.0, np.nan, 0.0]]))
