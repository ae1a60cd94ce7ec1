"""hopnet.inference: one hop and many hops with the shipped default model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

import hopnet.inference as hp
from hopnet.infra.errors import HopnetError, ModelFileError, PathError, StructureError
from hopnet.paths import MigrationPath
from hopnet.structures import to_ase

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LFP = EXAMPLES / "LiFePO4_olivine.cif"


@pytest.fixture(scope="module")
def lfp() -> Structure:
    return Structure.from_file(str(LFP))


def _index() -> list[dict]:
    return json.loads((EXAMPLES / "index.json").read_text())


def test_predict_one_hop_by_site_index(lfp: Structure) -> None:
    r = hp.predict(lfp, ion="Li", start=0, end=4)
    assert isinstance(r, hp.BarrierResult)
    assert 0.0 < r.barrier < 2.0 and r.std >= 0.0
    assert r.model == "default" and r.warnings == () and r.error is None
    assert r.hop_length == pytest.approx(3.005, abs=1e-3)  # b/2 of olivine: the 1-D Li channel
    assert r.conductor_class == ("good" if r.barrier < 0.65 else "poor")
    assert isinstance(r.path, MigrationPath) and len(r.path.host) == len(lfp) - 2
    # the class follows the threshold
    assert hp.predict(lfp, "Li", 0, 4, threshold=r.barrier - 1e-6).conductor_class == "poor"
    d = r.to_dict()
    assert d["barrier_ev"] == r.barrier and d["ion"] == "Li" and d["host_atoms"] == 110


def test_module_is_callable_like_the_function(lfp: Structure) -> None:
    import hopnet

    assert hopnet.predict(lfp, ion="Li", start=0, end=4).barrier == hp.predict(lfp, "Li", 0, 4).barrier


def test_fractional_and_ase_inputs_give_the_same_hop(lfp: Structure) -> None:
    ref = hp.predict(lfp, "Li", 0, 4)
    frac = hp.predict(lfp, "Li", lfp.frac_coords[0].tolist(), lfp.frac_coords[4].tolist())
    assert frac.barrier == ref.barrier and frac.std == ref.std
    mixed = hp.predict(lfp, "Li", 0, lfp.frac_coords[4])
    assert mixed.barrier == ref.barrier
    ase = hp.predict(to_ase(lfp), "Li", 0, 4)
    assert ase.barrier == pytest.approx(ref.barrier, abs=1e-9)
    from_file = hp.predict(str(LFP), "Li", 0, 4)
    assert from_file.barrier == ref.barrier


def test_band_in_the_data_set_layout(lfp: Structure) -> None:
    ref = hp.predict(lfp, "Li", 0, 4)
    band = ref.path.band()
    from hopnet.structures import to_jarvis

    for item in (band, to_jarvis(band), {"atoms": to_jarvis(band), "target": 0.3, "sys_name": "x"}):
        r = hp.predict(item)
        assert r.barrier == pytest.approx(ref.barrier, abs=1e-9)
    with pytest.raises(PathError, match="migrating ion is Li, not Na"):
        hp.predict(band, ion="Na")
    with pytest.raises(PathError, match="not a band"):
        hp.predict(lfp)


def test_predict_many_order_batches_and_one_model_load(lfp: Structure, monkeypatch: pytest.MonkeyPatch) -> None:
    hp.clear_model_cache()
    from hopnet.models import folder

    calls = []
    real = folder.load_model
    monkeypatch.setattr(folder, "load_model", lambda name: calls.append(name) or real(name))
    specs = [{"structure": lfp, "ion": "Li", "start": 0, "end": j} for j in (4, 1, 2, 3)]
    specs.append((lfp, "Li", 0, [0.5, 0.25, 0.5]))
    out = hp.predict_many(specs)
    assert len(out) == 5 and len(calls) == 1
    singles = [hp.predict(s["structure"], s["ion"], s["start"], s["end"]) for s in specs[:4]]
    assert [r.barrier for r in out[:4]] == [r.barrier for r in singles]
    assert len(calls) == 1  # cached across calls
    # batches capped at one band each give the same numbers
    small = hp.predict_many(specs, batch_atoms=10)
    assert [r.barrier for r in small] == [r.barrier for r in out]
    assert hp.get_model("default") is hp.get_model("default")


def test_batches_capped_by_atoms() -> None:
    assert hp._batches([50, 50, 50, 200, 10], 100) == [[0, 1], [2], [3], [4]]
    assert hp._batches([], 100) == []


def test_predict_many_raise_or_record(lfp: Structure) -> None:
    specs = [(lfp, "Li", 0, 4), (lfp, "Li", 0, 999), (lfp, "Li", 0, 1)]
    with pytest.raises(PathError, match=r"item 1: .*out of range"):
        hp.predict_many(specs)
    out = hp.predict_many(specs, on_error="record")
    assert np.isfinite(out[0].barrier) and np.isfinite(out[2].barrier)
    assert np.isnan(out[1].barrier) and "out of range" in out[1].error and out[1].conductor_class == ""
    assert out[1].to_dict()["barrier_ev"] is None


def test_out_of_domain_warnings(lfp: Structure) -> None:
    long_hop = hp.predict(lfp, "Li", [0, 0, 0], [0.5, 0.5, 0.5])
    assert long_hop.hop_length == pytest.approx(9.21, abs=0.01)
    assert len(long_hop.warnings) == 1 and "longer than the training range 1.5-9.0 Å" in long_hop.warnings[0]
    # an ion never seen migrating in training, and an element no training structure held
    cs = Structure(Lattice.cubic(4.2), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cs.make_supercell([3, 3, 3])
    r = hp.predict(cs, "Cs", 0, 1)
    text = " ".join(r.warnings)
    assert "Cs never migrated in training" in text and "element(s) Cs absent" in text
    u = lfp.copy()
    u.replace(len(u) - 1, "U")
    assert any("element(s) U absent" in w for w in hp.predict(u, "Li", 0, 4).warnings)


def test_domain_from_metadata() -> None:
    d = hp.Domain.from_metadata({"domain": {"hop_length": [2.0, 4.0], "ions": ["Li"], "elements": ["Li", "O"]}})
    assert d.hop_range == (2.0, 4.0) and d.ions == ("Li",)
    assert hp.Domain.from_metadata({}) is hp.TRAINING_DOMAIN
    assert len(hp.TRAINING_DOMAIN.elements) == 58


@pytest.mark.parametrize("args, err, words", [
    (("Li", 0, 0), PathError, "same"),
    (("Li", 0, 999), PathError, "out of range"),
    (("Xx", 0, 4), PathError, "unknown ion 'Xx'"),
    (("Na", 0, 4), PathError, "ion Na is absent"),
    ((None, 0, 4), PathError, "no migrating ion"),
    (("Li", 0, None), PathError, "both a start and an end"),
    (("Li", 0, 1.5), PathError, "site index or 3"),
    (("Li", 0, 40), PathError, "site 40 is"),
])
def test_bad_hops(lfp: Structure, args: tuple, err: type, words: str) -> None:
    with pytest.raises(err, match=words) as info:
        hp.predict(lfp, *args)
    assert "\n" not in str(info.value)


def test_bad_structures_and_models(lfp: Structure, tmp_path: Path) -> None:
    with pytest.raises(StructureError, match="over the limit of 50"):
        hp.predict(lfp, "Li", 0, 4, max_atoms=50)
    bad = lfp.copy()
    bad.append("O", bad[10].coords + np.array([0.2, 0.0, 0.0]), coords_are_cartesian=True)
    with pytest.raises(StructureError, match="overlapping atoms"):
        hp.predict(bad, "Li", 0, 4)
    with pytest.raises(ModelFileError, match="neither a shipped model"):
        hp.predict(lfp, "Li", 0, 4, model=str(tmp_path / "nope"))
    with pytest.raises(HopnetError, match="on_error"):
        hp.predict_many([], on_error="ignore")


def test_examples_predict_without_warnings() -> None:
    specs = [{"structure": str(EXAMPLES / e["file"]), "ion": e["ion"], "start": e["hop"]["from"],
              "end": e["hop"]["to"], "label": e["name"]} for e in _index()]
    out = hp.predict_many(specs)
    assert [r.label for r in out] == [e["name"] for e in _index()]
    for r, e in zip(out, _index()):
        assert np.isfinite(r.barrier) and r.warnings == (), r.label
        assert r.hop_length == pytest.approx(e["hop"]["length_a"], abs=1e-3)


def test_dataset_bands_match_the_model(band_entries: list[dict]) -> None:
    from hopnet.models.folder import load_model
    from hopnet.paths import as_path

    entries = band_entries[:40]
    out = hp.predict_many(entries)
    direct = load_model("default").predict_paths([as_path(e) for e in entries])
    np.testing.assert_array_equal([r.barrier for r in out], direct.mean)
    assert [r.label for r in out] == [e["sys_name"] for e in entries]
    assert [r.reference for r in out] == [e["target"] for e in entries]
    assert all(r.warnings == () for r in out)  # the training data is in its own domain
