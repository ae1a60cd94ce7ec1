"""Atom features, batching, the graph cache and the real migration bands."""

from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch

from hopnet.infra.errors import StructureError
from hopnet.graphs import (FEATURE_DIM, GraphCache, GraphConfig, atom_features, build_graph, build_graphs,
                           default_cache_root, structure_hash)
from hopnet.graphs import make_element_table
from hopnet.graphs.features import feature_blocks

torch.set_num_threads(1)


def small(a: float = 3.0, el: str = "Cu") -> Structure:
    return Structure(Lattice.cubic(a), [el], [[0, 0, 0]])


def rocksalt() -> Structure:
    h = 2.82
    return Structure(Lattice([[0, h, h], [h, 0, h], [h, h, 0]]), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


# ----------------------------------------------------------------------------- features

def _block_argmax(row: np.ndarray) -> dict[str, int]:
    out, start = {}, 0
    for name, width in feature_blocks():
        blk = row[start:start + width]
        out[name] = int(blk.argmax()) if blk.any() else -1
        start += width
    return out


def test_feature_layout_and_known_elements():
    assert sum(w for _, w in feature_blocks()) == FEATURE_DIM == 92
    f = atom_features(np.array([11, 8, 26, 2, 57]))
    assert f.shape == (5, 92) and f.dtype == np.float32
    assert set(np.unique(f)) <= {0.0, 1.0}
    na, o, fe, he, la = (_block_argmax(r) for r in f)
    assert (na["group"], na["period"], na["block"], na["valence_electrons"]) == (0, 2, 0, 0)
    assert (o["group"], o["period"], o["block"], o["valence_electrons"]) == (15, 1, 1, 5)
    assert (fe["group"], fe["period"], fe["block"], fe["valence_electrons"]) == (7, 3, 2, 7)
    assert (la["group"], la["block"]) == (18, 3)  # f-block bin
    assert he["electronegativity"] == -1  # no Pauling value: all-zero block, not an error
    assert f[0].sum() == 9 and f[3].sum() == 8
    # O is more electronegative than Na
    assert o["electronegativity"] > na["electronegativity"]


def test_all_elements_covered_and_bad_z_rejected():
    f = atom_features(np.arange(1, 101))
    assert (f.sum(1) >= 5).all()
    for bad in (0, 500, -1):
        with pytest.raises(StructureError):
            atom_features(np.array([1, bad]))


def test_element_table_script_reproduces_stored_file():
    import pymatgen.core

    stored = make_element_table.OUTPUT.read_text()
    if json.loads(stored)["pymatgen_version"] != getattr(pymatgen.core, "__version__", "unknown"):
        pytest.skip("stored element table came from another pymatgen version")
    assert make_element_table.dumps(make_element_table.build_table()) == stored


# ----------------------------------------------------------------------------- batching

def test_batch_offsets_line_graph_by_edges():
    g1 = build_graph(rocksalt())
    g2 = build_graph(small())
    b = Batch.from_data_list([g1, g2])
    n1, e1, t1 = g1.num_nodes, g1.edge_index.shape[1], g1.lg_edge_index.shape[1]
    assert b.num_graphs == 2 and b.x.shape[0] == n1 + 1
    torch.testing.assert_close(b.edge_index[:, :e1], g1.edge_index)
    torch.testing.assert_close(b.edge_index[:, e1:], g2.edge_index + n1)
    torch.testing.assert_close(b.lg_edge_index[:, :t1], g1.lg_edge_index)
    torch.testing.assert_close(b.lg_edge_index[:, t1:], g2.lg_edge_index + e1)
    # line-graph edges still join consecutive bonds and reproduce the cosines
    src, dst = b.edge_index
    l1, l2 = b.lg_edge_index
    assert (dst[l1] == src[l2]).all()
    v = b.edge_vec.double()
    cos = -(v[l1] * v[l2]).sum(1) / v[l1].norm(dim=1) / v[l2].norm(dim=1)
    torch.testing.assert_close(b.lg_cos.double(), cos, atol=1e-5, rtol=0)
    assert b.is_mobile.shape == (n1 + 1,)
    # round trip
    back = b.get_example(1)
    torch.testing.assert_close(back.lg_edge_index, g2.lg_edge_index)


# ----------------------------------------------------------------------------- cache

def _same(a, b) -> None:
    for f in ("x", "z", "pos", "is_mobile", "edge_index", "edge_vec", "edge_len", "lg_edge_index", "lg_cos"):
        torch.testing.assert_close(getattr(a, f), getattr(b, f))


def test_cache_round_trip_and_keys(tmp_path):
    cache = GraphCache(tmp_path)
    cfg = GraphConfig()
    s = rocksalt()
    g = cache.get_or_build(s, cfg, n_mobile=1)
    files = list(tmp_path.rglob("*.pt"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again = cache.get_or_build(s, cfg, n_mobile=1)
    _same(g, again)
    assert files[0].stat().st_mtime_ns == mtime  # read, not rewritten
    cache.get_or_build(s, cfg, n_mobile=0)
    cache.get_or_build(s, GraphConfig(max_neighbors=6), n_mobile=1)
    assert len(list(tmp_path.rglob("*.pt"))) == 3
    assert not list(tmp_path.rglob("*.tmp"))
    assert GraphConfig().key() != GraphConfig(mobile_flag=True).key() != GraphConfig(tie_tolerance=0).key()


def test_corrupt_cache_file_is_rebuilt(tmp_path, caplog):
    cache = GraphCache(tmp_path)
    s = small()
    g = cache.get_or_build(s)
    (path,) = tmp_path.rglob("*.pt")
    path.write_bytes(b"not a torch file")
    again = cache.get_or_build(s)
    assert "unreadable" in caplog.text
    _same(g, again)
    torch.load(path, weights_only=True)  # repaired on disk


def test_structure_hash():
    s = rocksalt()
    h = structure_hash(s)
    assert h == structure_hash(s.copy())
    t = s.copy()
    t.translate_sites([0], [1e-3, 0, 0])
    assert structure_hash(t) != h
    u = s.copy()
    u.replace(0, "K")
    assert structure_hash(u) != h


def test_concurrent_writers_leave_one_good_file(tmp_path):
    s = rocksalt()
    results, errors = [], []

    def work():
        try:
            results.append(GraphCache(tmp_path).get_or_build(s))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    assert len(list(tmp_path.rglob("*.pt"))) == 1 and not list(tmp_path.rglob("*.tmp"))
    _same(results[0], GraphCache(tmp_path).get_or_build(s))


def test_default_root_and_bulk_builder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOPNET_CACHE_DIR", str(tmp_path))
    assert default_cache_root() == tmp_path / "graphs"
    assert GraphCache().root == tmp_path / "graphs"
    graphs = build_graphs([rocksalt(), small()], cache=tmp_path / "c", n_mobile=[1, 0])
    assert [g.is_mobile.sum().item() for g in graphs] == [1, 0]
    assert len(list((tmp_path / "c").rglob("*.pt"))) == 2
    plain = build_graphs([small(), small(4.0)])
    assert plain[1].edge_len.min() == pytest.approx(4.0)
    with pytest.raises(StructureError):
        build_graphs([small()], n_mobile=[0, 1])


# ----------------------------------------------------------------------------- real data

def _bands(n: int) -> list[dict]:
    root = os.environ.get("HOPNET_DATA_DIR")
    path = Path(root) / "migration" / "band_train.json.gz" if root else None
    if path is None or not path.exists():
        pytest.skip("HOPNET_DATA_DIR/migration/band_train.json.gz not available")
    with gzip.open(path, "rt") as fh:
        return json.load(fh)[:n]


def _to_structure(atoms: dict) -> Structure:
    return Structure(Lattice(atoms["lattice_mat"]), atoms["elements"], atoms["coords"],
                     coords_are_cartesian=bool(atoms.get("cartesian", False)))


@pytest.mark.slow
def test_real_bands():
    for entry in _bands(3):
        s = _to_structure(entry["atoms"])
        g = build_graph(s, GraphConfig(mobile_flag=True), n_mobile=5)
        assert g.num_nodes == len(s) and g.x.shape == (len(s), FEATURE_DIM + 1)
        assert g.is_mobile.sum() == 5 and g.is_mobile[:5].all()
        assert torch.isfinite(g.x).all() and torch.isfinite(g.lg_cos).all()
        assert (np.bincount(g.edge_index[0].numpy(), minlength=len(s)) >= 12).all()
        assert g.edge_len.min() > 0.1


def test_jarvis_dict_input_through_structures_module():
    structures = pytest.importorskip("hopnet.structures")
    atoms = {"lattice_mat": [[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]], "coords": [[0, 0, 0]],
             "elements": ["Cu"], "cartesian": False}
    g = build_graph(atoms)
    ref = build_graph(structures.to_structure(atoms))
    _same(g, ref)
