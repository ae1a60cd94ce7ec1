"""The cumulative multi-property data set: structure key invariances, merging with overlaps,
presence mask, duplicates, --exclude; the real seven sets when HOPNET_DATA_DIR is there."""

from __future__ import annotations

import numpy as np
import pytest

from hopnet.datasets.core import Entry
from hopnet.datasets.multiprop import (
    PROPERTIES, MultiPropertyDataset, merge_properties, select_properties, structure_key,
)
from hopnet.infra.errors import DataError

ROCKSALT = {"lattice_mat": [[0, 2.8, 2.8], [2.8, 0, 2.8], [2.8, 2.8, 0]], "coords": [[0, 0, 0], [0.5, 0.5, 0.5]],
            "elements": ["Na", "Cl"], "cartesian": False}


def shifted(atoms: dict, **kw) -> dict:
    return {**atoms, **kw}


def test_structure_key_invariances():
    k = structure_key(ROCKSALT)
    # site order, a periodic image, sub-rounding noise: same key
    assert structure_key(shifted(ROCKSALT, coords=[[0.5, 0.5, 0.5], [0, 0, 0]], elements=["Cl", "Na"])) == k
    assert structure_key(shifted(ROCKSALT, coords=[[1, 0, -1], [0.5, 0.5, 0.5]])) == k
    assert structure_key(shifted(ROCKSALT, coords=[[1e-7, 0, 0], [0.5, 0.5, 0.5 - 1e-7]])) == k
    # the same crystal written in Cartesian coordinates (Å)
    cart = (np.array(ROCKSALT["coords"]) @ np.array(ROCKSALT["lattice_mat"], float)).tolist()
    assert structure_key(shifted(ROCKSALT, coords=cart, cartesian=True)) == k
    # another species, a moved atom or another cell: another key
    assert structure_key(shifted(ROCKSALT, elements=["K", "Cl"])) != k
    assert structure_key(shifted(ROCKSALT, coords=[[0, 0, 0], [0.5, 0.5, 0.49]])) != k
    assert structure_key(shifted(ROCKSALT, lattice_mat=[[0, 2.9, 2.9], [2.9, 0, 2.9], [2.9, 2.9, 0]])) != k


def cubic(a: float) -> dict:
    return {"lattice_mat": (np.eye(3) * a).tolist(), "coords": [[0, 0, 0]], "elements": ["Po"], "cartesian": False}


def entries(pairs):
    return [Entry(id=str(i), target=t, atoms=cubic(a)) for i, (a, t) in enumerate(pairs)]


def test_merge_overlaps_mask_and_duplicates():
    sources = {
        "fe": entries([(3.0, 0.1), (3.1, 0.2), (3.2, 0.3)]),
        "bg": entries([(3.1, -0.5), (3.3, -0.6)]),
        # 3.2 is listed twice in gv: one row, the mean of both values
        "gv": entries([(3.2, 0.4), (3.1, 0.7), (3.2, 0.8)]),
    }
    d = merge_properties(sources)
    assert d.properties == ("fe", "bg", "gv") and len(d) == 4
    order = [round(e.atoms["lattice_mat"][0][0], 3) for e in d]
    assert order == [3.0, 3.1, 3.2, 3.3]  # first-seen order
    nan = np.nan
    expect = np.array([[0.1, nan, nan], [0.2, -0.5, 0.7], [0.3, nan, 0.6], [nan, -0.6, nan]])
    np.testing.assert_allclose(d.targets, expect, equal_nan=True)
    assert np.array_equal(d.mask, np.isfinite(expect))
    assert d[1].meta["targets"] == pytest.approx({"fe": 0.2, "bg": -0.5, "gv": 0.7})
    assert d[2].meta["sources"]["gv"] == "0,2" and d[1].id == "fe:1"
    s = d.stats
    assert s["entries"] == 8 and s["rows"] == 4 and s["within_file_duplicates"] == 1
    assert s["per_property"] == {"fe": 3, "bg": 2, "gv": 2}
    assert s["rows_by_n_properties"] == {1: 2, 2: 1, 3: 1}
    assert s["pair_overlaps"] == {"fe+bg": 1, "fe+gv": 2, "bg+gv": 1}
    sub = d.subset([3, 1])
    assert sub.ids == ["bg:1", "fe:1"] and np.array_equal(sub.mask, d.mask[[3, 1]])
    assert sub.sha256 != d.sha256


def test_single_and_select():
    one = MultiPropertyDataset.single(entries([(3.0, 1.0), (3.5, 2.0)]), "mine")
    assert one.properties == ("mine",) and one.targets[:, 0].tolist() == [1.0, 2.0] and one.mask.all()
    assert select_properties("all") == list(PROPERTIES)
    assert select_properties("all", exclude=["pz"]) == ["fe", "bg", "gv", "ph", "dc", "ebg"]
    assert select_properties("fe,bg") == ["fe", "bg"]
    with pytest.raises(DataError, match="unknown pre-training property xx"):
        select_properties("fe,xx")
    with pytest.raises(DataError, match="no property left"):
        select_properties("fe", exclude=["fe"])


@pytest.mark.slow
def test_real_seven_sets(data_dir):
    from hopnet.datasets.multiprop import load_multiprop

    d = load_multiprop("all", data_dir=str(data_dir))
    s = d.stats
    assert s["entries"] == 30532
    assert 26500 < s["rows"] < 27500  # about 3,450 structures carry more than one property
    assert s["rows"] == sum(s["rows_by_n_properties"].values())
    assert sum(k * v for k, v in s["rows_by_n_properties"].items()) == s["entries"] - s["within_file_duplicates"]
    assert s["pair_overlaps"]["fe+bg"] > 500 and s["pair_overlaps"]["ph+dc"] > 400
    assert np.array_equal(d.mask, np.isfinite(d.targets))
    assert np.nanmin(d.targets) >= -1.0 - 1e-9 and np.nanmax(d.targets) <= 1.0 + 1e-9
