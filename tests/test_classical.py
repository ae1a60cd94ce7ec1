"""The classical baseline: training, the tree-array model folder, exact reload, ensembles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hopnet.descriptors import FEATURE_NAMES
from hopnet.infra.errors import ModelFileError
from hopnet.models.folder import load_model
from hopnet.models.classical import (
    ClassicalConfig,
    EstimatorConfig,
    TreeArrays,
    band_structures,
    path_descriptors,
    train_classical,
)

SMALL = dict(n_estimators=30, max_depth=3)


@pytest.fixture(scope="module")
def small_ds(data_dir):
    from hopnet.datasets import load

    ds = load("migration-barriers", data_dir=data_dir)
    return ds.subset(np.arange(0, 560, 14)[:40])  # 40 bands spread over the file


def test_tree_arrays_match_sklearn_bit_for_bit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5))
    y = X[:, 0] ** 2 + 0.3 * X[:, 1]
    for est in ("gbr", "rf", "extra-trees"):
        cfg = EstimatorConfig.defaults(est)
        cfg.n_estimators = 20
        model = cfg.make(1).fit(X[:60], y[:60])
        arr = TreeArrays.from_sklearn(model)
        assert len(arr.root) == 20
        np.testing.assert_array_equal(arr.predict(X[60:]), model.predict(X[60:]))


@pytest.mark.parametrize("reference", [False, True])
def test_train_save_load_identical(tmp_path, small_ds, reference):
    cfg = ClassicalConfig.gbr_reference() if reference else ClassicalConfig()
    cfg.n_estimators, cfg.max_depth = SMALL["n_estimators"], SMALL["max_depth"]
    folder = train_classical(small_ds, tmp_path / "cl", cfg, seeds=(0,))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "metadata.json", "trees.npz"]
    config = json.loads((folder / "config.json").read_text())
    meta = json.loads((folder / "metadata.json").read_text())
    assert config["kind"] == "classical" and config["n_estimators"] == 30
    assert config["estimator"] == ("gbr" if reference else "extra-trees") and config["max_depth"] == 3
    assert meta["feature_names"] == list(FEATURE_NAMES) and meta["seeds"] == [0] and meta["members"] == [{"seed": 0}]
    assert meta["target_scaling"] == "log1p" and meta["sklearn_version"]
    assert meta["data_hash"] == small_ds.sha256

    # the fitted sklearn model, refitted the same way, predicts what the loaded folder predicts
    paths = band_structures(small_ds)
    X = path_descriptors(paths)
    ref = np.expm1(cfg.components()[0].make(0).fit(X, np.log1p(small_ds.targets)).predict(X))
    model = load_model(folder)
    pred = model.predict_paths(paths)
    np.testing.assert_array_equal(pred.mean, ref)
    np.testing.assert_array_equal(pred.std, np.zeros(len(paths)))
    assert model.name == "cl" and pred.members.shape == (1, len(paths))
    # training fit is far from a constant predictor
    assert np.corrcoef(pred.mean, small_ds.targets)[0, 1] > 0.8
    np.testing.assert_array_equal(load_model(folder).predict_paths(paths[:5]).mean, pred.mean[:5])


def test_two_seed_ensemble_and_blend(tmp_path, small_ds):
    cfg = ClassicalConfig(**SMALL, blend=[EstimatorConfig(n_estimators=10, max_depth=2)])  # + boosting
    folder = train_classical(small_ds, tmp_path / "ens", cfg, seeds=(0, 1))
    model = load_model(folder)
    assert len(model.members) == 2 and all(len(m) == 2 for m in model.members)
    paths = band_structures(small_ds)[:8]
    pred = model.predict_paths(paths)
    assert (pred.std > 0).all()
    np.testing.assert_allclose(pred.mean, pred.members.mean(axis=0))
    np.testing.assert_allclose(pred.std, pred.members.std(axis=0))
    assert ClassicalConfig.from_dict(json.loads((folder / "config.json").read_text())) == cfg


def test_load_rejects_other_descriptors_and_versions(tmp_path, small_ds):
    folder = train_classical(small_ds, tmp_path / "m", ClassicalConfig(n_estimators=5, max_depth=2))
    meta_file = folder / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "feature_names": meta["feature_names"][:-1]}))
    with pytest.raises(ModelFileError, match="other descriptors"):
        load_model(folder)
    meta_file.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelFileError, match="format version 99"):
        load_model(folder)
    meta_file.write_text(json.dumps(meta))
    (folder / "trees.npz").unlink()
    with pytest.raises(ModelFileError, match="trees.npz"):
        load_model(folder)


def test_config_checks():
    with pytest.raises(Exception, match="not valid for extra-trees"):
        EstimatorConfig(estimator="extra-trees", loss="huber").check()
    with pytest.raises(ModelFileError, match="unknown classical config key"):
        ClassicalConfig.from_dict({"kind": "classical", "n_trees": 3})
    ref = ClassicalConfig.gbr_reference()
    assert (ref.estimator, ref.loss, ref.n_estimators, ref.learning_rate, ref.max_depth, ref.subsample) == (
        "gbr", "huber", 600, 0.03, 4, 0.8)
    ref.check()
    d = ClassicalConfig().to_dict()
    assert d["kind"] == "classical" and ClassicalConfig.from_dict(d) == ClassicalConfig()
