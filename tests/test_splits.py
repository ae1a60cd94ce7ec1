"""Splits: published class-stratified split, compound-grouped K-fold, A/B/C/D scenario labels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hopnet.datasets import Dataset, Entry
from hopnet.datasets.splits import (
    grouped_kfold,
    n_test_for_class,
    published_split,
    random_split,
    scenario_labels,
)
from hopnet.infra.errors import DataError

CUBE = {"lattice_mat": [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]], "coords": [[0, 0, 0]], "elements": ["Li"]}


def entry(eid: str, cls: str = "X", ion: str = "Li", compound: str = "C", target: float = 0.5,
          elements: list[str] | None = None) -> Entry:
    atoms = dict(CUBE, elements=elements or ["Li"], coords=[[0.1 * i, 0, 0] for i in range(len(elements or [1]))])
    return Entry(id=eid, target=target, atoms=atoms, meta={"class": cls, "ion": ion, "compound": compound})


def synthetic(class_sizes: dict[str, int], per_compound: int = 3) -> Dataset:
    """Entries with the given class sizes; every ``per_compound`` consecutive paths share a compound."""
    out = []
    for cls, n in class_sizes.items():
        for i in range(n):
            out.append(entry(f"{cls}_{i}", cls, "Li" if i % 2 else "Na", f"{cls}-c{i // per_compound}", 0.01 * i))
    return Dataset("synthetic", out, sha256="0" * 64, task="migration-barrier")


SIZES = {"A": 89, "B": 55, "C": 46, "D": 30, "E": 20, "F": 9, "G": 6, "H": 5, "I": 4, "J": 2, "K": 1}


@pytest.fixture(scope="module")
def shared_migration(data_dir: Path) -> Dataset:
    """The 559 shared migration paths (conftest ``data_dir``); skips when absent."""
    if not (data_dir / "migration" / "band_train.json.gz").is_file():
        pytest.skip(f"{data_dir}/migration/band_train.json.gz not found")
    from hopnet.datasets import load

    return load("migration-barriers", data_dir=data_dir)


# --- published split ------------------------------------------------------------------------------

@pytest.mark.parametrize("n_class, n_total, expected", [
    (89, 559, 9), (55, 559, 6), (45, 559, 5), (15, 559, 2), (14, 559, 1), (5, 559, 1),
    (4, 559, 0), (2, 559, 0), (1, 559, 0),
    (4, 100, 1), (2, 100, 1), (1, 100, 0),   # >= 1.5 % of a small data set: one test path
    (3, 1000, 0), (15, 1000, 2),
])
def test_n_test_for_class(n_class, n_total, expected):
    assert n_test_for_class(n_class, n_total) == expected


def test_published_split_synthetic():
    ds = synthetic(SIZES)
    train, test = published_split(ds, seed=0)
    assert train.dtype == np.int64 and np.all(np.diff(test) > 0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(ds)))
    per_class = Counter(ds[int(i)].meta["class"] for i in test)
    # round-half-up 10 %: 89->9, 55->6, 46->5, 30->3, 20->2, 9->1, 6->1, 5->1; 4, 2, 1 stay in training
    assert per_class == {"A": 9, "B": 6, "C": 5, "D": 3, "E": 2, "F": 1, "G": 1, "H": 1}
    train_classes = {ds[int(i)].meta["class"] for i in train}
    assert set(per_class) <= train_classes and {"I", "J", "K"} <= train_classes
    again = published_split(ds, seed=0)
    assert np.array_equal(again[1], test) and np.array_equal(again[0], train)
    assert not np.array_equal(published_split(ds, seed=1)[1], test)


def test_published_split_needs_class():
    ds = [Entry("a", 1.0, CUBE, {}), Entry("b", 2.0, CUBE, {})]
    with pytest.raises(DataError, match="meta\\['class'\\].*entry a"):
        published_split(ds)


def test_published_split_shared(shared_migration):
    ds = shared_migration
    train, test = published_split(ds, seed=0)
    assert len(test) == 58 and len(train) == 501  # 10.4 %
    tr_cls = {ds[int(i)].meta["class"] for i in train}
    assert {ds[int(i)].meta["class"] for i in test} <= tr_cls
    assert np.array_equal(published_split(ds, seed=0)[1], test)
    assert not np.array_equal(published_split(ds, seed=7)[1], test)


def test_random_split():
    tr, te = random_split(50, seed=4)
    assert len(te) == 5 and len(tr) == 45 and not set(tr) & set(te)
    assert np.array_equal(random_split(50, seed=4)[1], te)
    assert not np.array_equal(random_split(50, seed=5)[1], te)
    with pytest.raises(DataError):
        random_split(1)


# --- grouped k-fold ------------------------------------------------------------------------------

def _check_folds(ds, folds, keys):
    seen = np.concatenate([t for _, t in folds])
    assert sorted(seen.tolist()) == list(range(len(ds)))  # every entry in exactly one test fold
    for train, test in folds:
        assert len(train) + len(test) == len(ds)
        assert not {keys[i] for i in train} & {keys[i] for i in test}


def test_grouped_kfold_synthetic():
    ds = synthetic(SIZES)
    keys = [e.meta["compound"] for e in ds]
    folds = grouped_kfold(ds, n_folds=5, seed=0)
    assert len(folds) == 5
    _check_folds(ds, folds, keys)
    sizes = [len(t) for _, t in folds]
    assert max(sizes) - min(sizes) <= 3  # at most the largest group
    again = grouped_kfold(ds, n_folds=5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = grouped_kfold(ds, n_folds=5, seed=1)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(folds, other))


def test_grouped_kfold_greedy_sizes():
    # groups of 5, 4, 3, 3, 2, 1, 1, 1 paths into 3 folds: largest first to the lightest fold
    sizes = [5, 4, 3, 3, 2, 1, 1, 1]
    ds = [entry(f"g{g}_{i}", compound=f"g{g}") for g, n in enumerate(sizes) for i in range(n)]
    for seed in range(4):
        folds = grouped_kfold(ds, n_folds=3, seed=seed)
        assert sorted(len(t) for _, t in folds) == [6, 7, 7]
        _check_folds(ds, folds, [e.meta["compound"] for e in ds])
    with pytest.raises(DataError, match="cannot make 9 folds from 8 groups"):
        grouped_kfold(ds, n_folds=9)


def test_grouped_kfold_property_sets():
    els = [["Na", "Cl"], ["Cl", "Na"], ["Na", "Na", "Cl", "Cl"], ["K", "Br"], ["Mg", "O"], ["Ca", "O"]]
    ds = [Entry(str(i), 0.1, dict(CUBE, elements=e, coords=[[0.2 * k, 0, 0] for k in range(len(e))]), {})
          for i, e in enumerate(els)]
    by_id = grouped_kfold(ds, n_folds=3, seed=0)  # "auto" falls back to the id without compounds
    assert sorted(len(t) for _, t in by_id) == [2, 2, 2]
    by_formula = grouped_kfold(ds, n_folds=3, seed=0, group_by="formula")
    fold_of = {int(i): f for f, (_, t) in enumerate(by_formula) for i in t}
    assert fold_of[0] == fold_of[1] == fold_of[2]  # all NaCl together
    assert sorted(len(t) for _, t in by_formula) == [1, 2, 3]


def test_grouped_kfold_shared(shared_migration):
    ds = shared_migration
    folds = grouped_kfold(ds, n_folds=5, seed=0)
    _check_folds(ds, folds, [e.meta["compound"] for e in ds])
    sizes = [len(t) for _, t in folds]
    assert sum(sizes) == 559 and max(sizes) - min(sizes) <= 2


# --- scenarios --------------------------------------------------------------------------------------

def test_scenario_labels_all_four():
    train = [
        entry("LiCoO2_1", "LAYERED", "Li", "LiCoO2"),
        entry("NaNiO2_1", "LAYERED", "Na", "NaNiO2"),
        entry("MgMn2O4_1", "SPINEL", "Mg", "MgMn2O4"),
    ]
    test = [
        entry("LiCoO2_2", "LAYERED", "Li", "LiCoO2"),    # same compound, another path -> A
        entry("LiNiO2_1", "LAYERED", "Li", "LiNiO2"),    # same class + ion, other composition -> B
        entry("CaCoO2_1", "LAYERED", "Ca", "CaCoO2"),    # same class, only other ions -> C
        entry("NaFePO4_1", "OLIVINE", "Na", "NaFePO4"),  # class unseen -> D
        entry("ZnMn2O4_1", "SPINEL", "Zn", "ZnMn2O4"),   # C again
        entry("MgCr2O4_1", "SPINEL", "Mg", "MgCr2O4"),   # B again
    ]
    assert scenario_labels(test, train) == ["A", "B", "C", "D", "C", "B"]
    # an entry is never its own neighbour
    assert scenario_labels([train[2]], train) == ["D"]
    assert scenario_labels(test[:1], []) == ["D"]
    with pytest.raises(DataError, match="ion"):
        scenario_labels([Entry("x", 0.1, CUBE, {"class": "A", "compound": "B"})], train)


def test_scenario_labels_shared(shared_migration):
    ds = shared_migration
    train, test = published_split(ds, seed=0)
    labels = scenario_labels(ds.subset(test), ds.subset(train))
    assert len(labels) == 58 and set(labels) <= {"A", "B"}  # every test class is in training
    assert "A" in labels
    for tr, te in grouped_kfold(ds, 5, seed=0):
        assert "A" not in scenario_labels(ds.subset(te), ds.subset(tr))
