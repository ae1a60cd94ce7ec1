"""Deterministic splits of a data set into index arrays, and the A/B/C/D scenario labeller.

All functions take a :class:`~hopnet.datasets.core.Dataset` (or any sequence of ``Entry``) and
return sorted ``np.int64`` index arrays; equal seeds give equal splits on every platform
(``numpy.random.default_rng``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from hopnet.datasets.core import Dataset, Entry
from hopnet.infra.errors import DataError

Split = tuple[np.ndarray, np.ndarray]
GroupBy = str | Callable[[Entry], str]


def _sorted(idx: list[int] | np.ndarray) -> np.ndarray:
    return np.sort(np.asarray(idx, dtype=np.int64))


def random_split(dataset: Sequence[Entry] | int, seed: int = 0, test_fraction: float = 0.1) -> Split:
    """A seeded random split: ``round(test_fraction * n)`` entries (at least 1, at most n-1) to test."""
    n = dataset if isinstance(dataset, int) else len(dataset)
    if n < 2:
        raise DataError(f"cannot split a data set of {n} entries")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    k = min(max(math.floor(test_fraction * n + 0.5), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return _sorted(perm[k:]), _sorted(perm[:k])


def n_test_for_class(n_class: int, n_total: int, test_fraction: float = 0.1,
                     min_class_fraction: float = 0.015) -> int:
    """How many paths of a class of ``n_class`` (out of ``n_total``) the published split tests on.

    Rule: ``k = floor(test_fraction * n_class + 0.5)`` (round half up); a class for which that is 0
    but that still holds at least ``min_class_fraction`` of all entries gets ``k = 1``; every class
    keeps at least one path in training (``k <= n_class - 1``). With the defaults on the 559
    training paths, classes of 5 or more paths give 10 % (rounded) to test and the rarer classes
    stay entirely in training; the 1.5 % clause matters for smaller fractions or data sets.
    """
    k = math.floor(test_fraction * n_class + 0.5)
    if k == 0 and n_class >= 2 and n_class >= min_class_fraction * n_total:
        k = 1
    return max(0, min(k, n_class - 1))


def _meta(e: Entry, key: str, what: str) -> object:
    v = e.meta.get(key)
    if v is None:
        raise DataError(f"{what} needs meta[{key!r}], missing for entry {e.id}")
    return v


def published_split(dataset: Sequence[Entry], seed: int = 0, test_fraction: float = 0.1,
                    min_class_fraction: float = 0.015) -> Split:
    """The class-stratified split of the published migration-barrier work: (train, test) indices.

    Inside each structural class (``meta['class']``) a seeded random sample of
    :func:`n_test_for_class` paths goes to test. Classes are visited in sorted order so that the
    result depends only on the data and the seed.
    """
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(dataset):
        by_class[str(_meta(e, "class", "published_split"))].append(i)
    rng = np.random.default_rng(seed)
    n = len(dataset)
    test: list[int] = []
    for cls in sorted(by_class):
        members = np.asarray(by_class[cls])
        k = n_test_for_class(len(members), n, test_fraction, min_class_fraction)
        test.extend(rng.permutation(members)[:k].tolist())
    test_set = set(test)
    train = [i for i in range(n) if i not in test_set]
    return _sorted(train), _sorted(test)


def default_split(dataset: Dataset, seed: int = 0) -> Split:
    """What ``load(..., split="train"/"test")`` uses: published split for migration barriers,
    a seeded random 90/10 split otherwise."""
    if getattr(dataset, "task", "") == "migration-barrier" or (
        len(dataset) and "class" in dataset[0].meta and "compound" in dataset[0].meta
    ):
        return published_split(dataset, seed=seed)
    return random_split(dataset, seed=seed)


def reduced_formula(atoms: dict) -> str:
    """Reduced formula (pymatgen convention) of a JARVIS Atoms dict."""
    from collections import Counter

    from pymatgen.core import Composition

    return Composition(dict(Counter(atoms["elements"]))).reduced_formula


def group_keys(dataset: Sequence[Entry], group_by: GroupBy = "auto") -> list[str]:
    """The grouping key of every entry.

    ``"auto"``: ``meta['compound']`` when every entry has one (migration paths), else the entry id;
    ``"id"``; ``"formula"``: reduced formula of the structure; any other string: that meta key;
    a callable: ``group_by(entry)``.
    """
    if callable(group_by):
        return [str(group_by(e)) for e in dataset]
    if group_by == "auto":
        group_by = "compound" if all(e.meta.get("compound") for e in dataset) else "id"
    if group_by == "id":
        return [e.id for e in dataset]
    if group_by == "formula":
        return [reduced_formula(e.atoms) for e in dataset]
    return [str(_meta(e, group_by, "grouped_kfold")) for e in dataset]


def grouped_kfold(dataset: Sequence[Entry], n_folds: int = 5, seed: int = 0,
                  group_by: GroupBy = "auto") -> list[Split]:
    """K folds in which every group (by default every compound) lies on one side.

    Groups are shuffled with ``seed``, then (stable) sorted by size, largest first, and each is
    given to the fold with the fewest entries so far (lowest fold index on ties): fold sizes then
    differ by at most the largest group. Returns ``n_folds`` (train, test) index pairs; every
    entry is in exactly one test fold.
    """
    if n_folds < 2:
        raise DataError(f"n_folds must be at least 2, got {n_folds}")
    keys = group_keys(dataset, group_by)
    names, inverse = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    if len(names) < n_folds:
        raise DataError(f"cannot make {n_folds} folds from {len(names)} groups")
    sizes = np.bincount(inverse, minlength=len(names))
    perm = np.random.default_rng(seed).permutation(len(names))
    order = perm[np.argsort(-sizes[perm], kind="stable")]
    fold_of_group = np.empty(len(names), dtype=np.int64)
    load = np.zeros(n_folds, dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    fold = fold_of_group[inverse]
    idx = np.arange(len(keys), dtype=np.int64)
    return [(idx[fold != f], idx[fold == f]) for f in range(n_folds)]


def scenario_labels(test_entries: Sequence[Entry], train_entries: Sequence[Entry]) -> list[str]:
    """How novel each test path is relative to the training paths.

    ``A``: another path of the same compound (``meta['compound']``) is in training;
    ``B``: else, a path of the same structural class with the same mobile ion (another
    composition) is; ``C``: else, the same class is present but only with other mobile ions;
    ``D``: the class is absent from training. An entry never counts as its own neighbour.
    """
    def need(e: Entry, key: str) -> str:
        return str(_meta(e, key, "scenario_labels"))

    by_compound: dict[str, set[str]] = defaultdict(set)
    by_class_ion: dict[tuple[str, str], set[str]] = defaultdict(set)
    by_class: dict[str, set[str]] = defaultdict(set)
    for e in train_entries:
        cls = need(e, "class")
        by_compound[need(e, "compound")].add(e.id)
        by_class_ion[(cls, need(e, "ion"))].add(e.id)
        by_class[cls].add(e.id)
    labels = []
    for e in test_entries:
        cls, ion, comp = need(e, "class"), need(e, "ion"), need(e, "compound")
        if by_compound.get(comp, set()) - {e.id}:
            labels.append("A")
        elif by_class_ion.get((cls, ion), set()) - {e.id}:
            labels.append("B")
        elif by_class.get(cls, set()) - {e.id}:
            labels.append("C")
        else:
            labels.append("D")
    return labels
