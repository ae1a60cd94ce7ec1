"""``hopnet screen --refine``: the hops that decide a screen are predicted again with the shipped
``accurate`` model (trees + a CHGNet NEB of the hop, never below the potential's own barrier
capped at 1.5 eV). Required behaviour (issue #20): olivine's channel-crossing hops and LiCoO2's
slab-crossing hops come out forbidden-high (>= 1.5 eV), so olivine screens 1-D and the layered
oxide 2-D at every hop length searched.

The NEB results of the example hops are read from ``tests/data/neb_examples`` (a NEB cache
written by this code with the model's settings, about a CPU-minute per hop); the test fails if
any NEB would run again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHED = Path(__file__).resolve().parent / "data" / "neb_examples"


@pytest.fixture
def example_nebs(monkeypatch):
    pytest.importorskip("chgnet")
    import hopnet.neb
    import hopnet.neb_cache
    from hopnet.potentials import load_potential

    meta = json.loads((ROOT / "src" / "hopnet" / "weights" / "accurate" / "metadata.json").read_text())
    version = load_potential("chgnet").version
    if version not in meta["neb_potential"]:
        pytest.skip(f"the cached NEB results are for {meta['neb_potential']}, this machine has {version}")
    root = hopnet.neb_cache.default_neb_cache_root()  # the test's private cache (conftest)
    shutil.copytree(CACHED, root, dirs_exist_ok=True)

    def no_new_neb(*args, **kwargs):
        raise AssertionError("a NEB was run again: tests/data/neb_examples is out of date")

    monkeypatch.setattr(hopnet.neb, "_relaxed_ends", no_new_neb)


@pytest.mark.parametrize("max_hop", [5.0, 6.0])
@pytest.mark.parametrize("name, dim, in_plane", [("LiFePO4_olivine", 1, 3.1), ("LiCoO2_layered", 2, 3.0)])
def test_refined_screen_keeps_forbidden_hops_forbidden(example_nebs, name, dim, in_plane, max_hop):
    from hopnet import screen

    plain = screen(ROOT / "examples" / f"{name}.cif", "Li", max_hop=max_hop)
    refined = screen(ROOT / "examples" / f"{name}.cif", "Li", max_hop=max_hop, refine="accurate")
    assert refined.dimensionality_at_threshold == dim
    assert "refined with accurate" in refined.model
    crossing = [h for h in refined.hops if h.length > in_plane]
    assert crossing and all(h.refined and h.barrier >= 1.5 for h in crossing)
    assert any(plain.hops[h.index].barrier < 1.5 for h in crossing)  # geometry alone: "moderate"
    fast = [h for h in refined.hops if h.length <= in_plane]
    assert fast and all(h.barrier < 0.65 for h in fast)
    assert len(refined.hops) == len(plain.hops)
    for h in refined.hops:
        assert h.std > 0 and (h.refined or h.barrier == plain.hops[h.index].barrier)


def test_a_different_potential_version_is_warned_about(example_nebs, caplog):
    """The model records the CHGNet version its features came from; NEB results of another
    version are used, with a warning (here: the cached example results, against a model
    that claims another version)."""
    import logging

    from hopnet import load_model
    from hopnet.screening import find_hops
    from hopnet.structures import to_structure

    _, _, paths = find_hops(to_structure(ROOT / "examples" / "LiCoO2_layered.cif"), "Li", 3.0, min_image_distance=6.5)
    model = load_model("accurate")
    with caplog.at_level(logging.WARNING, logger="hopnet.models.classical"):
        first = model.predict_paths(paths[:1])
        assert not [r for r in caplog.records if "NEB features were computed with" in r.message]
        model.metadata["neb_potential"] = ["chgnet 0.0.0 model 0.0.0"]
        again = model.predict_paths(paths[:1])
    assert [r for r in caplog.records if "computed with chgnet 0.0.0" in r.message]
    assert again.mean[0] == first.mean[0]
