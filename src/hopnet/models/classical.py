"""The classical baseline: tree ensembles on path-geometry descriptors (:mod:`hopnet.descriptors`).

A model is an ensemble of *members*, one per seed; a member is the average of one or more fitted
tree ensembles (*components*: gradient boosting, random forest or extra trees) trained on the
descriptors of the training bands, on ``log1p(E_m)`` by default. Predictions are barriers in eV;
the ensemble mean and the standard deviation over members are returned.

Storage (no pickles)::

    MODEL/
      config.json     {"kind": "classical", ...ClassicalConfig...}
      metadata.json   provenance, members (seeds), feature_names, sklearn version, training metrics
      trees.npz       for member m, component c: the trees' node arrays concatenated
                      (m{m}c{c}_left/right/feature/threshold/value/root) and, in metadata, the
                      component's kind, initial value and scale

Prediction walks these arrays with numpy (the same ``float32(x) <= threshold`` rule and the same
summation order as scikit-learn), so loading needs neither scikit-learn nor a matching version,
and a loaded model predicts bit for bit what the trained one did.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from hopnet.infra.configs import check_keys
from hopnet.descriptors import FEATURE_NAMES, DescriptorConfig, band_descriptors
from hopnet.infra.errors import DataError, HopnetError, ModelFileError, PathError
from hopnet.models.folder import Prediction, new_metadata, write_model_dir

log = logging.getLogger(__name__)

KIND = "classical"
TREES_FILE = "trees.npz"
NEB_TABLE_FILE = "neb_features.json"  # NEB results of the training paths, by NEB-cache key
EstimatorName = Literal["gbr", "rf", "extra-trees"]
_GBR_LOSSES = ("squared_error", "absolute_error", "huber", "quantile")
_FOREST_LOSSES = ("squared_error", "absolute_error", "friedman_mse", "poisson")


@dataclass
class EstimatorConfig:
    """One tree ensemble. ``loss`` is the boosting loss for ``gbr`` and the split criterion for
    the forests; ``subsample`` and ``learning_rate`` only apply to ``gbr``."""

    estimator: EstimatorName = "gbr"
    loss: str = "huber"
    n_estimators: int = 600
    learning_rate: float = 0.03
    max_depth: int | None = 4
    subsample: float = 0.8
    min_samples_leaf: int = 1
    max_features: float | str | None = None

    @classmethod
    def defaults(cls, estimator: EstimatorName) -> "EstimatorConfig":
        """Sensible settings for each estimator on this data (the gbr ones are the baseline)."""
        if estimator == "gbr":
            return cls()
        if estimator in ("rf", "extra-trees"):
            return cls(estimator=estimator, loss="squared_error", n_estimators=500, max_depth=None,
                       subsample=1.0, min_samples_leaf=2, max_features=0.7)
        raise HopnetError(f"unknown estimator {estimator!r}; use gbr, rf or extra-trees")

    def check(self) -> None:
        """Raise :class:`HopnetError` (one line) for settings scikit-learn would reject."""
        if self.estimator not in ("gbr", "rf", "extra-trees"):
            raise HopnetError(f"unknown estimator {self.estimator!r}; use gbr, rf or extra-trees")
        losses = _GBR_LOSSES if self.estimator == "gbr" else _FOREST_LOSSES
        if self.loss not in losses:
            raise HopnetError(f"loss {self.loss!r} is not valid for {self.estimator}; use one of {', '.join(losses)}")
        if int(self.n_estimators) < 1:
            raise HopnetError(f"n_estimators must be at least 1, got {self.n_estimators}")
        if not 0.0 < float(self.subsample) <= 1.0:
            raise HopnetError(f"subsample must lie in (0, 1], got {self.subsample}")
        if self.max_depth is not None and int(self.max_depth) < 1:
            raise HopnetError(f"max_depth must be at least 1 or None, got {self.max_depth}")

    def make(self, seed: int) -> Any:
        """The unfitted scikit-learn estimator (single-threaded)."""
        from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor

        self.check()
        if self.estimator == "gbr":
            return GradientBoostingRegressor(
                loss=self.loss, n_estimators=int(self.n_estimators), learning_rate=float(self.learning_rate),
                max_depth=self.max_depth, subsample=float(self.subsample),
                min_samples_leaf=int(self.min_samples_leaf), max_features=self.max_features, random_state=seed,
            )
        cls = RandomForestRegressor if self.estimator == "rf" else ExtraTreesRegressor
        return cls(
            criterion=self.loss, n_estimators=int(self.n_estimators), max_depth=self.max_depth,
            min_samples_leaf=int(self.min_samples_leaf), max_features=self.max_features,
            random_state=seed, n_jobs=1,
        )


@dataclass
class ClassicalConfig(EstimatorConfig):
    """The classical model: the main estimator's settings (inherited fields), optional blend
    partners averaged with it, the target transform and the descriptor settings (Å).

    Default: extra trees (500 trees, max_features 0.7, min_samples_leaf 2) on log1p(E_m). On the
    559 training paths, 3 repeats x 5 compound-grouped folds (``grouped_kfold(ds, 5, seed)``,
    seeds 0-2), per-fold MAE 0.301 +- 0.077 eV, R² 0.54 +- 0.20; the gradient-boosting reference
    (:meth:`gbr_reference`) gives 0.314 +- 0.071 eV, R² 0.52 +- 0.19, and loses on 13 of the
    same 15 folds.
    """

    estimator: EstimatorName = "extra-trees"
    loss: str = "squared_error"
    n_estimators: int = 500
    max_depth: int | None = None
    subsample: float = 1.0
    min_samples_leaf: int = 2
    max_features: float | str | None = 0.7
    log_target: bool = True  # fit log1p(E_m / eV) and predict expm1 of it
    blend: list[EstimatorConfig] = field(default_factory=list)
    n_images: int = 5
    descriptor: DescriptorConfig = field(default_factory=DescriptorConfig)
    #: settings of a universal-potential NEB (:class:`hopnet.neb.NebConfig` fields) whose results
    #: (:data:`hopnet.neb.NEB_FEATURE_NAMES`) join the descriptors; None: geometry only
    neb: dict | None = None
    #: with ``neb``: the prediction is raised to the potential's own forward barrier, capped at
    #: this many eV, where that is higher (a universal potential's barrier runs low, so it is a
    #: floor; a forbidden hop stays forbidden); None: the trees alone
    neb_floor: float | None = None

    @classmethod
    def gbr_reference(cls) -> "ClassicalConfig":
        """The gradient-boosting reference: GradientBoostingRegressor(loss="huber",
        n_estimators=600, learning_rate=0.03, max_depth=4, subsample=0.8) on log1p(E_m)."""
        return cls(**asdict(EstimatorConfig()))

    def components(self) -> list[EstimatorConfig]:
        main = EstimatorConfig(**{f.name: getattr(self, f.name) for f in fields(EstimatorConfig)})
        return [main, *self.blend]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = KIND
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClassicalConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ModelFileError`."""
        d = check_keys(cls, {k: v for k, v in d.items() if k != "kind"}, "classical config", ModelFileError)
        blend = [EstimatorConfig(**check_keys(EstimatorConfig, b, "classical blend", ModelFileError))
                 for b in d.pop("blend", []) or []]
        desc = check_keys(DescriptorConfig, d.pop("descriptor", None) or {}, "classical descriptor", ModelFileError)
        return cls(**d, blend=blend, descriptor=DescriptorConfig(**desc))


# ---------------------------------------------------------------- tree arrays and their prediction


@dataclass
class TreeArrays:
    """All trees of one fitted ensemble, nodes concatenated (child indices global, -1 = leaf).

    ``kind`` "boosting": prediction = ``init + scale * tree_1 + scale * tree_2 + ...`` (summed in
    tree order); "forest": the mean of the trees."""

    kind: Literal["boosting", "forest"]
    init: float
    scale: float
    root: np.ndarray  # (n_trees,) int64 index of each tree's root
    left: np.ndarray  # (n_nodes,) int64
    right: np.ndarray
    feature: np.ndarray  # (n_nodes,) int64 (meaningless on leaves)
    threshold: np.ndarray  # (n_nodes,) float64
    value: np.ndarray  # (n_nodes,) float64

    @classmethod
    def from_sklearn(cls, model: Any) -> "TreeArrays":
        from sklearn.ensemble import GradientBoostingRegressor

        if isinstance(model, GradientBoostingRegressor):
            trees = [t.tree_ for t in model.estimators_[:, 0]]
            kind, scale = "boosting", float(model.learning_rate)
            init = float(np.asarray(model.init_.predict(np.zeros((1, model.n_features_in_)))).ravel()[0])
        else:
            trees = [t.tree_ for t in model.estimators_]
            kind, scale, init = "forest", 1.0, 0.0
        parts = {k: [] for k in ("left", "right", "feature", "threshold", "value")}
        roots, offset = [], 0
        for t in trees:
            state = t.__getstate__()
            nodes = state["nodes"]
            left = nodes["left_child"].astype(np.int64)
            right = nodes["right_child"].astype(np.int64)
            leaf = left < 0
            parts["left"].append(np.where(leaf, -1, left + offset))
            parts["right"].append(np.where(leaf, -1, right + offset))
            parts["feature"].append(np.where(leaf, 0, nodes["feature"]).astype(np.int64))
            parts["threshold"].append(nodes["threshold"].astype(np.float64))
            parts["value"].append(np.asarray(state["values"], dtype=np.float64).reshape(len(nodes), -1)[:, 0])
            roots.append(offset)
            offset += len(nodes)
        return cls(kind, init, scale, np.asarray(roots, dtype=np.int64),
                   **{k: np.concatenate(v) for k, v in parts.items()})

    def leaf_values(self, X: np.ndarray) -> np.ndarray:
        """(n_trees, n_samples) value of the leaf each sample reaches in each tree. Features are
        compared as float32, exactly as scikit-learn does."""
        Xf = np.asarray(X, dtype=np.float32).astype(np.float64)
        n = Xf.shape[0]
        node = np.repeat(self.root[:, None], n, axis=1)
        cols = np.broadcast_to(np.arange(n)[None, :], node.shape)
        active = self.left[node] >= 0
        while active.any():
            nd = node[active]
            go_left = Xf[cols[active], self.feature[nd]] <= self.threshold[nd]
            node[active] = np.where(go_left, self.left[nd], self.right[nd])
            active = self.left[node] >= 0
        return self.value[node]

    def predict(self, X: np.ndarray) -> np.ndarray:
        vals = self.leaf_values(X)
        if self.kind == "boosting":
            out = np.full(vals.shape[1], self.init)
            for v in vals:  # tree order, as scikit-learn sums its stages
                out += self.scale * v
            return out
        out = np.zeros(vals.shape[1])
        for v in vals:
            out += v
        return out / len(vals)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Arrays to store; indices narrowed to int32 / features to int16 (widened on load)."""
        small = {"root": np.int32, "left": np.int32, "right": np.int32, "feature": np.int16}
        if len(self.value) >= 2**31 - 1:  # pragma: no cover - absurdly large forests
            small = {}
        return {f"{prefix}_{k}": getattr(self, k).astype(small.get(k, getattr(self, k).dtype))
                for k in ("root", "left", "right", "feature", "threshold", "value")}

    def header(self) -> dict:
        return {"kind": self.kind, "init": self.init, "scale": self.scale, "n_trees": int(len(self.root))}

    @classmethod
    def from_arrays(cls, header: dict, npz: Any, prefix: str) -> "TreeArrays":
        try:
            arrays = {k: np.asarray(npz[f"{prefix}_{k}"], dtype=np.float64 if k in ("threshold", "value") else np.int64)
                      for k in ("root", "left", "right", "feature", "threshold", "value")}
            kind, init, scale = header["kind"], float(header["init"]), float(header["scale"])
        except KeyError as exc:
            raise ModelFileError(f"{TREES_FILE}: missing {exc.args[0]!r} for component {prefix}") from None
        if kind not in ("boosting", "forest"):
            raise ModelFileError(f"{TREES_FILE}: component {prefix} has unknown kind {kind!r}")
        n_nodes = len(arrays["value"])
        for k in ("left", "right", "feature", "threshold"):
            if len(arrays[k]) != n_nodes:
                raise ModelFileError(f"{TREES_FILE}: component {prefix} arrays differ in length")
        inner = arrays["left"] >= 0
        if n_nodes == 0 or len(arrays["root"]) == 0 or np.any(arrays["left"] >= n_nodes) or np.any(arrays["right"][inner] >= n_nodes) \
                or np.any(arrays["right"][inner] < 0) or np.any(arrays["root"] >= n_nodes):
            raise ModelFileError(f"{TREES_FILE}: component {prefix} has corrupt node indices")
        return cls(kind, init, scale, **arrays)


# ---------------------------------------------------------------- descriptors


def model_feature_names(config: "ClassicalConfig") -> list[str]:
    """The input columns of a classical model: the descriptors, then the NEB features when
    ``config.neb`` is set."""
    from hopnet.neb import NEB_FEATURE_NAMES

    return list(FEATURE_NAMES) + (list(NEB_FEATURE_NAMES) if config.neb else [])


def neb_table_key(path: Any, neb: dict, potential_version: str) -> str:
    """The :class:`hopnet.neb_cache.NebCache` key of ``path`` run with ``neb`` settings (the
    band after the canonical cell when the settings ask for it)."""
    from hopnet.neb import NebConfig, band_for
    from hopnet.neb_cache import NebCache

    cfg = NebConfig(**neb)
    return NebCache.key(band_for(path, cfg)[0], cfg, potential_version)


def neb_feature_matrix(paths: Sequence[Any], neb: dict, table: dict | None = None,
                       trained_with: Sequence[str] = ()) -> np.ndarray:
    """(n_paths, len(NEB_FEATURE_NAMES)) NEB features: read from ``table`` (results by cache key,
    shipped with a model) or the user's NEB cache, else computed (minutes per path on a CPU).
    ``trained_with``: the potential versions the model's features came from; a NEB run with
    another version is logged as a warning (its barriers may differ from those the model learned)."""
    from hopnet.neb import NebConfig, neb_features, run_neb
    from hopnet.neb_cache import NebCache, TableCache

    cfg = NebConfig(**neb)
    cache = TableCache(table or {}, NebCache())
    results = [run_neb(p, cfg, cache=cache) for p in paths]
    other = sorted({r.potential for r in results} - set(trained_with)) if trained_with else []
    if other:
        log.warning("the model's NEB features were computed with %s, these with %s: the barriers may differ "
                    "from what the model learned (install that version to match)", ", ".join(trained_with),
                    ", ".join(other))
    return np.array([neb_features(r.to_dict()) for r in results], dtype=float).reshape(len(paths), -1)


def band_structures(entries: Iterable[Any], n_images: int = 5) -> list:
    """Migration paths of data-set entries, rebuilt exactly as a user's path would be."""
    from hopnet.paths import as_path

    return [as_path(e, n_images) for e in entries]


def path_descriptors(paths: Sequence[Any], n_images: int | None = None,
                     config: DescriptorConfig | None = None) -> np.ndarray:
    """(n_paths, n_features) descriptors of :class:`~hopnet.paths.MigrationPath` objects."""
    from hopnet.paths import as_path

    rows = []
    for item in paths:
        p = as_path(item, n_images or 5)
        k = p.n_images if n_images is None else n_images
        rows.append(band_descriptors(p.band(), k, config))
    if not rows:
        return np.zeros((0, len(FEATURE_NAMES)))
    X = np.stack(rows)
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise PathError(f"path #{int(np.argmax(bad))}: non-finite descriptors (degenerate geometry)")
    return X


# ---------------------------------------------------------------- the predictor


class ClassicalPredictor:
    """An ensemble of descriptor-based tree models; ``predict_paths`` gives E_m in eV."""

    def __init__(self, name: str, config: ClassicalConfig, metadata: dict,
                 members: list[list[TreeArrays]], neb_table: dict | None = None) -> None:
        if not members or not all(members):
            raise ModelFileError(f"classical model {name!r} has no fitted members")
        self.name = name
        self.config = config
        self.metadata = metadata
        self.members = members
        self.neb_table = neb_table or {}

    def predict_descriptors(self, X: np.ndarray) -> Prediction:
        """Barriers (eV) from an input matrix ordered as :func:`model_feature_names`."""
        X = np.asarray(X, dtype=float)
        width = len(model_feature_names(self.config))
        if X.ndim != 2 or X.shape[1] != width:
            raise DataError(f"descriptor matrix must be (n, {width}), got {X.shape}")
        per_member = []
        for comps in self.members:
            raw = comps[0].predict(X)
            for c in comps[1:]:
                raw = raw + c.predict(X)
            raw = raw / len(comps)
            per_member.append(np.expm1(raw) if self.config.log_target else raw)
        m = np.stack(per_member) if X.shape[0] else np.zeros((len(self.members), 0))
        mean = m.mean(axis=0)
        if self.config.neb and self.config.neb_floor is not None:  # column 0 of the NEB features: E_fwd
            mean = np.maximum(mean, np.clip(X[:, len(FEATURE_NAMES)], 0.0, float(self.config.neb_floor)))
        return Prediction(mean=mean, std=m.std(axis=0), model=self.name, members=m)

    def predict_paths(self, paths: Sequence[Any], batch_size: int | None = None) -> Prediction:
        """Barriers (eV) of ``hopnet.paths.MigrationPath`` objects, in input order
        (``batch_size`` is accepted for interface compatibility; descriptors are cheap)."""
        paths = list(paths)
        X = path_descriptors(paths, self.config.n_images, self.config.descriptor)
        if self.config.neb:
            from hopnet.paths import as_path

            band_paths = [as_path(p, self.config.n_images) for p in paths]
            X = np.hstack([X, neb_feature_matrix(band_paths, self.config.neb, self.neb_table,
                                                 self.metadata.get("neb_potential") or ())])
        return self.predict_descriptors(X)


def fit_members(X: np.ndarray, y: np.ndarray, config: ClassicalConfig,
                seeds: Sequence[int] = (0,), sample_weight: np.ndarray | None = None) -> list[list[TreeArrays]]:
    """Fit one member per seed on descriptors ``X`` and barriers ``y`` (eV), rows weighted by
    ``sample_weight`` (None: equal weights)."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2 or len(X) != len(y) or len(y) < 2:
        raise DataError(f"need at least 2 training rows with matching targets, got X {X.shape}, y {y.shape}")
    if not np.isfinite(X).all() or not np.isfinite(y).all():
        raise DataError("training descriptors or targets contain NaN/inf")
    if config.log_target and (y <= -1).any():
        raise DataError("log_target needs barriers above -1 eV")
    target = np.log1p(y) if config.log_target else y
    if not seeds:
        raise HopnetError("at least one seed is needed")
    members = []
    for seed in seeds:
        comps = []
        for est in config.components():
            model = est.make(int(seed)).fit(X, target, sample_weight=sample_weight)
            comps.append(TreeArrays.from_sklearn(model))
        members.append(comps)
    return members


def _sklearn_version() -> str:
    """The installed scikit-learn's version, read from its package metadata (importing
    scikit-learn costs ~0.8 s of start-up; the stored trees do not need it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        raise ImportError("scikit-learn is not installed") from None


def train_classical(dataset: Any, out_dir: str | os.PathLike, config: ClassicalConfig | None = None,
                    seeds: Sequence[int] = (0,), extra_metadata: dict | None = None,
                    neb_rows: dict[str, dict] | None = None, sample_weight: np.ndarray | None = None) -> Path:
    """Fit the classical model on ``dataset`` (a :class:`~hopnet.datasets.Dataset`, a registered
    name or a band-format JSON file), one member per seed, and write a model folder of kind
    "classical" at ``out_dir``. Returns the folder.

    With ``config.neb`` the NEB features of the training paths come from ``neb_rows`` (results-file
    rows of ``hopnet neb`` by entry id, run with those settings; every entry needs one); they are
    stored in the folder (``neb_features.json``, keyed like the NEB cache) so that the training
    paths are never run again. ``sample_weight``: one weight per entry (fine-tuning weighs a
    user's own paths above the shipped training data)."""
    from hopnet.datasets import Dataset, load
    from hopnet.metrics import regression_metrics

    config = config or ClassicalConfig()
    for est in config.components():
        est.check()
    ds = dataset if isinstance(dataset, Dataset) else load(dataset)
    if len(ds) < 2:
        raise DataError(f"cannot train on {len(ds)} entries")
    paths = band_structures(ds, config.n_images)
    X = path_descriptors(paths, config.n_images, config.descriptor)
    table: dict[str, dict] = {}
    if config.neb:
        X, table = _with_neb(ds, paths, X, config.neb, neb_rows)
    y = ds.targets
    seeds = [int(s) for s in seeds]
    log.info("training classical model on %d paths, %d member(s)", len(y), len(seeds))
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=float)
        if sample_weight.shape != y.shape or not (np.isfinite(sample_weight).all() and (sample_weight > 0).all()):
            raise DataError(f"sample_weight needs one positive weight per entry ({len(y)})")
    members = fit_members(X, y, config, seeds, sample_weight)
    name = Path(out_dir).name
    pred = ClassicalPredictor(name, config, {}, members).predict_descriptors(X)
    arrays: dict[str, np.ndarray] = {}
    headers = []
    for m, comps in enumerate(members):
        headers.append([c.header() for c in comps])
        for c_i, c in enumerate(comps):
            arrays.update(c.arrays(f"m{m}c{c_i}"))
    metadata = new_metadata(
        data_hash=ds.sha256,
        data=ds.provenance(),
        train_ids=[str(e.id) for e in ds],
        target_scaling="log1p" if config.log_target else "none",
        kind="classical",
        seeds=seeds,
        members=[{"seed": s} for s in seeds],
        components=headers,
        feature_names=model_feature_names(config),
        sklearn_version=_sklearn_version(),
        metrics={"train": regression_metrics(y, pred.mean)},
        **(extra_metadata or {}),
    )

    def payload(tmp: Path) -> None:
        with open(tmp / TREES_FILE, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        if table:
            (tmp / NEB_TABLE_FILE).write_text(json.dumps(table, sort_keys=True))

    return write_model_dir(out_dir, config.to_dict(), metadata, payload)


def _with_neb(ds: Any, paths: list, X: np.ndarray, neb: dict, rows: dict[str, dict] | None
              ) -> tuple[np.ndarray, dict[str, dict]]:
    """The descriptors with the NEB features of every entry appended, and the table of those
    results by NEB-cache key."""
    from hopnet.neb import NebConfig, neb_features

    NebConfig(**neb)  # the settings are valid
    missing = [str(e.id) for e in ds if str(e.id) not in (rows or {})]
    if missing:
        raise DataError(f"no NEB result for {len(missing)} of {len(ds)} training paths (e.g. {missing[0]}); "
                        f"run hopnet neb --data ... --output FILE.jsonl with the model's settings first")
    table, feats = {}, []
    for e, p in zip(ds, paths):
        row = rows[str(e.id)]  # type: ignore[index]
        feats.append(neb_features(row))
        keep = {k: v for k, v in row.items() if k not in ("meta", "provenance", "config", "id")}
        table[neb_table_key(p, neb, str(row.get("potential", "")))] = keep
    return np.hstack([X, np.array(feats, dtype=float)]), table


def load_predictor(folder: str | os.PathLike, config: dict, metadata: dict) -> ClassicalPredictor:
    """The loader :func:`hopnet.models.folder.load_model` calls for kind "classical"."""
    folder = Path(folder)
    cfg = ClassicalConfig.from_dict(config)
    names = metadata.get("feature_names")
    if names != model_feature_names(cfg):
        raise ModelFileError(
            f"{folder}: the model was trained on other descriptors ({len(names or [])} features) than "
            f"this hopnet computes ({len(model_feature_names(cfg))}); retrain it"
        )
    headers = metadata.get("components")
    if not isinstance(headers, list) or not headers:
        raise ModelFileError(f"{folder}: metadata lists no fitted members")
    trained_with = metadata.get("sklearn_version")
    if trained_with and trained_with != _installed_sklearn():
        log.debug("%s was fitted with scikit-learn %s; prediction does not depend on it", folder, trained_with)
    try:
        with np.load(folder / TREES_FILE, allow_pickle=False) as npz:
            members = [[TreeArrays.from_arrays(h, npz, f"m{m}c{c}") for c, h in enumerate(comps)]
                       for m, comps in enumerate(headers)]
    except FileNotFoundError:
        raise ModelFileError(f"{folder}: missing {TREES_FILE}") from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{folder}: unreadable {TREES_FILE} ({exc})") from None
    table = None
    if (folder / NEB_TABLE_FILE).is_file():
        try:
            table = json.loads((folder / NEB_TABLE_FILE).read_text())
        except ValueError as exc:
            raise ModelFileError(f"{folder}: unreadable {NEB_TABLE_FILE} ({exc})") from None
    return ClassicalPredictor(folder.name, cfg, metadata, members, neb_table=table)


def _installed_sklearn() -> str | None:
    try:
        return _sklearn_version()
    except ImportError:
        return None
