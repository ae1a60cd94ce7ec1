"""Data-set layer: registry, source order, download with checksum, validation, Dataset API."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import json
import math
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import hopnet.datasets as hd
from hopnet.datasets import registry
from hopnet.datasets.download import content_sha256
from hopnet.infra.errors import DataError, HopnetError

MIG = "migration-barriers"


# --- helpers -------------------------------------------------------------------------------------

def band(sys_name: str, cls: str, ion: str, host: dict[str, int], target: float, n_extra_ion: int = 0,
         seed: int = 0) -> dict:
    """A hand-made band entry: 5 ion images, ``n_extra_ion`` more ions, then the host atoms."""
    elements = [ion] * (5 + n_extra_ion) + [el for el, n in host.items() for _ in range(n)]
    rng = np.random.default_rng(seed)
    coords = rng.random((len(elements), 3)).round(6).tolist()
    return {
        "sys_name": sys_name, "class": cls, "formula": "x", "target": target, "jid": 0,
        "atoms": {"lattice_mat": [[8.0, 0, 0], [0, 8.0, 0], [0, 0, 8.0]], "coords": coords,
                  "elements": elements, "cartesian": False, "abc": [8.0] * 3, "angles": [90.0] * 3,
                  "props": [""] * len(elements)},
    }


def small_bands() -> list[dict]:
    out = []
    for i in range(12):
        out.append(band(f"LiMnO2_{i}", "LAYERED", "Li", {"Mn": 4, "O": 8}, 0.1 * (i + 1), n_extra_ion=3, seed=i))
    for i in range(8):
        out.append(band(f"MgMn2O4_{i}", "SPINEL", "Mg", {"Mn": 4, "O": 8}, 0.5 + 0.1 * i, n_extra_ion=1, seed=20 + i))
    out.append(band("NaX_1", "RARE", "Na", {"Cl": 2}, 2.0))
    return out


def write_json(path: Path, data, gz: bool | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data).encode()
    if gz if gz is not None else path.suffix == ".gz":
        path.write_bytes(gzip.compress(text))
    else:
        path.write_bytes(text)
    return path


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No data dir, an empty cache, no mirror URL: nothing leaks in from the environment."""
    monkeypatch.delenv("HOPNET_DATA_DIR", raising=False)
    monkeypatch.delenv("HOPNET_DATA_URL", raising=False)
    monkeypatch.delenv("HOPNET_OFFLINE", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("HOPNET_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def pinned(monkeypatch):
    """Re-pin the migration record to the sha256 of the hand-made data (returns that sha)."""
    sha = hashlib.sha256(json.dumps(small_bands()).encode()).hexdigest()
    rec = dataclasses.replace(registry.REGISTRY[MIG], sha256=sha)
    monkeypatch.setitem(registry.REGISTRY, MIG, rec)
    return sha


@pytest.fixture
def shared_data_dir(data_dir: Path) -> Path:
    """The shared data (conftest ``data_dir``, from HOPNET_DATA_DIR); skips when absent."""
    if not (data_dir / "migration" / "band_train.json.gz").is_file():
        pytest.skip(f"{data_dir}/migration/band_train.json.gz not found")
    return data_dir


# --- registry --------------------------------------------------------------------------------------

def test_registry_records_complete():
    names = set(registry.REGISTRY)
    assert names == {MIG, "fe", "bg", "gv", "ph", "dc", "pz", "ebg", "jarvis2d"}
    for info in registry.list_datasets():
        assert len(info.sha256) == 64 and int(info.sha256, 16) >= 0
        assert info.relpath.endswith(".json.gz") and not os.path.isabs(info.relpath)
        assert info.urls and all(u.startswith("https://raw.githubusercontent.com/sai-mat-group/") for u in info.urls)
        assert info.units and info.description and info.n_entries > 0
    assert registry.REGISTRY[MIG].format == "band"
    assert registry.REGISTRY["pz"].relpath == "pretrain/pz.json.gz"
    with pytest.raises(DataError, match="unknown data set 'nope'"):
        hd.load("nope")


# --- reading and validation ----------------------------------------------------------------------

def test_load_json_and_gz_give_same_content(tmp_path, isolated):
    plain = write_json(tmp_path / "b.json", small_bands())
    packed = write_json(tmp_path / "b.json.gz", small_bands())
    a = hd.load(str(plain))
    b = hd.load(MIG, path=packed)
    assert len(a) == len(b) == 21
    assert a.sha256 == b.sha256 == content_sha256(packed) == hashlib.sha256(plain.read_bytes()).hexdigest()
    assert a.name == "b" and b.name == MIG and a.source == b.source == "path"
    e = b[0]
    assert e.id == "LiMnO2_0" and e.target == pytest.approx(0.1)
    assert e.atoms == small_bands()[0]["atoms"]  # raw JARVIS dict kept untouched
    # ion = atom 0; compound = ion + framework (host without the ion's species): Mn4 O8 -> MnO2
    assert e.meta["ion"] == "Li" and e.meta["class"] == "LAYERED"
    assert e.meta["compound"] == "Li:MnO2"
    assert b[12].meta["compound"] == "Mg:MnO2" and b[12].meta["ion"] == "Mg"
    assert b[20].meta["compound"] == "Na:Cl2"  # pymatgen writes elemental Cl as Cl2


def test_metadata_csv_merged(tmp_path, isolated):
    d = tmp_path / "mig"
    write_json(d / "band_train.json.gz", small_bands())
    (d / "metadata_train.csv").write_text(
        "class,composition,xc,sys_name,em_ev,mace_relax_ev\n"
        "LAYERED,LiMnO2,GGA+U,LiMnO2_0,0.1,0.25\n"
        "OXIDES,MgMn2O4,SCAN,MgMn2O4_0,0.5,\n"
    )
    ds = hd.load(MIG, path=d / "band_train.json.gz")
    assert ds[0].meta["xc"] == "GGA+U" and ds[0].meta["mace_relax_ev"] == pytest.approx(0.25)
    assert ds[12].meta["mace_relax_ev"] is None
    assert ds[12].meta["class"] == "SPINEL" and ds[12].meta["metadata_class"] == "OXIDES"  # entry wins
    assert "xc" not in ds[1].meta


@pytest.mark.parametrize("bad_target", [float("nan"), None, "0.3", float("inf")])
def test_bad_target_names_entry(tmp_path, isolated, bad_target):
    data = small_bands()
    data[3]["target"] = bad_target
    f = write_json(tmp_path / "bad.json", data)
    with pytest.raises(DataError, match="LiMnO2_3"):
        hd.load(str(f))


@pytest.mark.parametrize("mutate, msg", [
    (lambda e: e["atoms"].pop("lattice_mat"), "lacks lattice_mat"),
    (lambda e: e["atoms"].update(coords=[[0, 0]] * len(e["atoms"]["elements"])), "coords"),
    (lambda e: e["atoms"]["elements"].pop(), "elements"),
    (lambda e: e.pop("atoms"), "no 'atoms'"),
    (lambda e: e["atoms"]["elements"].__setitem__(2, "Na"), "not a band"),
])
def test_bad_atoms(tmp_path, isolated, mutate, msg):
    data = small_bands()
    mutate(data[5])
    f = write_json(tmp_path / "bad.json.gz", data)
    with pytest.raises(DataError, match=msg):
        hd.load(MIG, path=f)


def test_missing_sys_name_and_duplicates(tmp_path, isolated):
    data = small_bands()
    del data[2]["sys_name"]
    with pytest.raises(DataError, match=r"entry #2 has no sys_name"):
        hd.load(MIG, path=write_json(tmp_path / "a.json", data))
    data = small_bands()
    data[4]["sys_name"] = data[3]["sys_name"]
    with pytest.raises(DataError, match="duplicate entry id LiMnO2_3"):
        hd.load(MIG, path=write_json(tmp_path / "b.json", data))


def test_malformed_files_name_the_file(tmp_path, isolated):
    f = tmp_path / "broken.json"
    f.write_text('[{"jid": 1, "target": ')
    with pytest.raises(DataError, match="broken.json: malformed JSON"):
        hd.load(str(f))
    g = tmp_path / "trunc.json.gz"
    g.write_bytes(gzip.compress(json.dumps(small_bands()).encode())[:200])
    with pytest.raises(DataError, match="trunc.json.gz"):
        hd.load(str(g))
    h = write_json(tmp_path / "obj.json", {"a": 1})
    with pytest.raises(DataError, match="expected a JSON list"):
        hd.load(str(h))
    with pytest.raises(DataError, match="not found"):
        hd.load(str(tmp_path / "missing.json"))


def test_property_format(tmp_path, isolated):
    recs = [{"jid": 10 + i, "target": -1.0 + 0.1 * i,
             "atoms": {"lattice_mat": [[3, 0, 0], [0, 3, 0], [0, 0, 3]], "coords": [[0, 0, 0], [0.5, 0.5, 0.5]],
                       "elements": ["Cs", "Cl"], "cartesian": False}} for i in range(20)]
    ds = hd.load("pz", path=write_json(tmp_path / "pz.json", recs))
    assert ds.ids[:2] == ["10", "11"] and ds.task == "property-regression"
    np.testing.assert_allclose(ds.targets, -1.0 + 0.1 * np.arange(20))
    tr = hd.load("pz", "train", path=tmp_path / "pz.json", seed=3)
    te = hd.load("pz", "test", path=tmp_path / "pz.json", seed=3)
    assert len(te) == 2 and len(tr) == 18 and not set(tr.ids) & set(te.ids)
    assert hd.load("pz", "test", path=tmp_path / "pz.json", seed=3).ids == te.ids
    with pytest.raises(DataError, match="unknown split"):
        hd.load("pz", "val", path=tmp_path / "pz.json")


def test_dataset_api(tmp_path, isolated):
    ds = hd.load(str(write_json(tmp_path / "b.json", small_bands())))
    assert isinstance(ds.targets, np.ndarray) and ds.targets.dtype == np.float64
    assert ds.targets.shape == (21,) and ds.targets[-1] == 2.0
    sub = ds.subset([3, 0, 20])
    assert sub.ids == ["LiMnO2_3", "LiMnO2_0", "NaX_1"] and len(sub) == 3
    assert sub.sha256 != ds.sha256 and sub.sha256 == ds.subset(np.array([3, 0, 20])).sha256
    assert ds.subset([0, 3, 20]).sha256 != sub.sha256
    assert ds[1:3].ids == ["LiMnO2_1", "LiMnO2_2"]
    assert [e.id for e in ds][:2] == ds.ids[:2]
    with pytest.raises(DataError, match="out of range"):
        ds.subset([21])
    assert ds.provenance()["sha256"] == ds.sha256


def test_split_train_test_for_migration(tmp_path, isolated):
    f = write_json(tmp_path / "b.json", small_bands())
    tr, te = hd.load(MIG, "train", path=f), hd.load(MIG, "test", path=f)
    # LAYERED 12 -> 1 test, SPINEL 8 -> 1, RARE (1 path) stays in training
    assert len(te) == 2 and len(tr) == 19 and tr.split == "train" and te.split == "test"
    assert sorted(e.meta["class"] for e in te) == ["LAYERED", "SPINEL"]
    assert hd.load(MIG, "all", path=f).ids == hd.load(MIG, path=f).ids


# --- source order, cache, download ------------------------------------------------------------------

def test_source_order(tmp_path, isolated, pinned, monkeypatch):
    ddir = tmp_path / "data"
    write_json(ddir / "migration" / "band_train.json.gz", small_bands())
    write_json(isolated / "migration" / "band_train.json", small_bands())  # plain JSON in the cache
    other = small_bands()[:5]
    explicit = write_json(tmp_path / "mine.json", other)

    assert hd.load(MIG, path=explicit, data_dir=ddir).source == "path"
    assert len(hd.load(MIG, path=explicit, data_dir=ddir)) == 5
    ds = hd.load(MIG, data_dir=ddir)
    assert ds.source == "HOPNET_DATA_DIR" and ds.sha256 == pinned
    monkeypatch.setenv("HOPNET_DATA_DIR", str(ddir))
    assert hd.load(MIG).source == "HOPNET_DATA_DIR"
    monkeypatch.delenv("HOPNET_DATA_DIR")
    ds = hd.load(MIG, download=False)
    assert ds.source == "cache" and ds.file.endswith("band_train.json") and ds.sha256 == pinned
    assert hd.locate(MIG).source == "cache"


def test_not_available_says_how(isolated, pinned, monkeypatch):
    with pytest.raises(DataError) as err:
        hd.load(MIG, download=False)
    msg = str(err.value)
    assert "\n" not in msg and "HOPNET_DATA_DIR" in msg and "path=" in msg and "download" in msg
    monkeypatch.setenv("HOPNET_OFFLINE", "1")
    with pytest.raises(DataError, match="HOPNET_DATA_DIR"):
        hd.load(MIG)
    assert hd.locate(MIG) is None


def test_corrupt_cache_is_refused(isolated, pinned):
    data = small_bands()
    data[0]["target"] = 9.0
    write_json(isolated / "migration" / "band_train.json.gz", data)
    with pytest.raises(DataError, match="does not match the pinned sha256"):
        hd.load(MIG, download=False)


@pytest.fixture
def http_root(tmp_path):
    """A local HTTP server (127.0.0.1, random port) serving ``tmp_path / 'www'``."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_verified_into_cache(isolated, pinned, http_root):
    root, url = http_root
    write_json(root / "migration" / "band_train.json.gz", small_bands())
    ds = hd.load(MIG, base_url=url)
    assert ds.source == "download" and len(ds) == 21 and ds.sha256 == pinned
    cached = isolated / "migration" / "band_train.json.gz"
    assert cached.is_file() and content_sha256(cached) == pinned
    assert sorted(p.name for p in cached.parent.iterdir()) == ["band_train.json.gz"]  # no temp left
    (root / "migration" / "band_train.json.gz").unlink()  # the server no longer has it
    assert hd.load(MIG, base_url=url).source == "cache"


def test_download_from_env_url_plain_json(isolated, pinned, http_root, monkeypatch):
    root, url = http_root
    write_json(root / "migration" / "band_train.json.gz", small_bands(), gz=False)  # served uncompressed
    monkeypatch.setenv("HOPNET_DATA_URL", url + "/")
    ds = hd.load(MIG, "test")
    assert ds.source == "download" and len(ds) == 2
    assert (isolated / "migration" / "band_train.json").is_file()
    assert not (isolated / "migration" / "band_train.json.gz").exists()


def test_download_checksum_mismatch_leaves_nothing(isolated, pinned, http_root):
    root, url = http_root
    data = small_bands()
    data[1]["target"] = 0.25  # not the pinned content
    write_json(root / "migration" / "band_train.json.gz", data)
    with pytest.raises(DataError, match="checksum mismatch"):
        hd.load(MIG, base_url=url)
    leftovers = list(isolated.rglob("*")) if isolated.exists() else []
    assert [p for p in leftovers if p.is_file()] == []


def test_download_missing_file_reports(isolated, pinned, http_root):
    _, url = http_root
    with pytest.raises(HopnetError) as err:
        hd.load(MIG, base_url=url)
    assert "404" in str(err.value) and "HOPNET_DATA_DIR" in str(err.value)


# --- the shared data (skipped when HOPNET_DATA_DIR is not set) --------------------------------------

def test_shared_migration_barriers(shared_data_dir, isolated):
    ds = hd.load(MIG, data_dir=shared_data_dir)
    assert len(ds) == 559 and ds.sha256 == registry.REGISTRY[MIG].sha256
    assert ds.targets.min() == pytest.approx(0.0035) and ds.targets.max() == pytest.approx(8.77)
    assert math.isclose(ds.targets.mean(), 0.844, abs_tol=1e-3)
    ions = [e.meta["ion"] for e in ds]
    assert ions.count("Li") == 154 and ions.count("Ca") == 141 and ions.count("Sr") == 2
    assert len({e.meta["class"] for e in ds}) == 35
    e = next(e for e in ds if e.id == "Li2NiO2_1")
    assert e.meta["class"] == "ORTHORHOMBIC" and e.meta["metadata_class"] == "OXIDES"
    assert all("xc" in e.meta for e in ds)
    first = ds[0]
    assert first.id == "Li4P2S7" and first.meta["compound"] == "Li:P2S7"


def test_shared_pinned_sums(shared_data_dir):
    for info in registry.list_datasets():
        f = shared_data_dir / info.relpath
        if not f.is_file():
            pytest.skip(f"{f} missing")
        assert content_sha256(f) == info.sha256, info.name


def test_shared_property_set(shared_data_dir, isolated):
    ds = hd.load("jarvis2d", data_dir=shared_data_dir)
    assert len(ds) == 993 and ds.targets.min() == -1.0 and ds.targets.max() == 1.0
    te = hd.load("jarvis2d", "test", data_dir=shared_data_dir)
    assert len(te) == 99


def test_compound_key_ignores_supercell_and_vacancy(shared_data_dir, isolated):
    """One material computed in cells of different sizes (LiCoO2 in 18- and 9-formula-unit cells)
    is one compound, so grouped splits never put it on both sides."""
    import re
    from collections import defaultdict

    ds = hd.load(MIG, data_dir=shared_data_dir)
    by_name: dict[str, set[str]] = defaultdict(set)
    for e in ds:
        by_name[re.sub(r"_\d+$", "", e.id)].add(e.meta["compound"])
    assert by_name["LiCoO2"] == {"Li:CoO2"}
    assert {k: v for k, v in by_name.items() if len(v) > 1} == {}
