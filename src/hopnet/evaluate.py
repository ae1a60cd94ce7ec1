"""Score a barrier model on labelled migration paths (the ``hopnet evaluate`` contract).

``evaluate(model, data)`` returns a JSON-ready dict with exactly these keys::

    n, mae, rmse, r2, spearman                  regression metrics (eV; NaN -> None)
    classifier   {threshold, accuracy, precision_good, precision_poor, recall_good, recall_poor}
                 good conductor: E_m < threshold (eV)
    predictions  [{sys_name, target, prediction, std}, ...] in data order (eV)
    provenance   hopnet version, git commit, data hash and file, model name

Data-set bands are evaluated as they are: their geometry is not validated (the published data
contains bands whose straight-line images come close to host atoms).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np

from hopnet.infra.errors import DataError, HopnetError
from hopnet.metrics import DEFAULT_THRESHOLD_EV, classifier_metrics, regression_metrics

log = logging.getLogger(__name__)

__all__ = ["evaluate", "load_eval_data", "resolve_predictor"]


def resolve_predictor(model: Any) -> Any:
    """A predictor object (anything with ``predict_paths``) as is; a shipped model name or a
    model folder loaded with :func:`hopnet.models.folder.load_model`."""
    if hasattr(model, "predict_paths"):
        return model
    if isinstance(model, (str, os.PathLike)):
        from hopnet.models.folder import load_model

        return load_model(model)
    raise HopnetError(f"model must be a name, a model folder or a predictor, got {type(model).__name__}")


def load_eval_data(data: Any) -> Any:
    """A :class:`~hopnet.datasets.Dataset` of bands from a Dataset, a registered data-set name or a
    path to a JSON / JSON.gz list of band entries (``atoms``, ``target``, ``sys_name``)."""
    from hopnet.datasets import Dataset, load

    if isinstance(data, Dataset):
        ds = data
    elif isinstance(data, (str, os.PathLike)):
        ds = load(os.fspath(data))
    else:
        raise DataError(f"data must be a data-set name, a JSON file or a Dataset, got {type(data).__name__}")
    if len(ds) == 0:
        raise DataError(f"data set {ds.name!r} is empty")
    not_band = [e.id for e in ds if "ion" not in e.meta]
    if not_band:
        raise DataError(
            f"data {ds.name!r} is not in the band format (entries need sys_name, target and a band "
            f"'atoms' whose first 5 atoms are the ion's images); first offender: {not_band[0]}"
        )
    return ds


def _num(x: float) -> float | None:
    """JSON has no NaN: undefined metrics (e.g. R² of one point) become None."""
    x = float(x)
    return x if math.isfinite(x) else None


def training_overlap(meta: dict, ds: Any) -> dict | None:
    """How many paths of ``ds`` were in the training set of the model whose metadata is
    ``meta``: ``{"n", "of", "how"}``, or None when the model does not say what it was trained on.

    The model's ``train_ids`` (written by hopnet since this version) are compared with the entry
    ids; a model without them but with the same data hash saw every path; otherwise the model's
    named training set is looked up (when it can be loaded here) by ids."""
    ids = [str(e.id) for e in ds]
    if meta.get("train_ids"):
        train = set(map(str, meta["train_ids"]))
        return {"n": sum(i in train for i in ids), "of": len(ids), "how": "model train_ids"}
    data = meta.get("data") or {}
    if meta.get("data_hash") and meta.get("data_hash") == ds.sha256 and data.get("split", "all") == "all":
        return {"n": len(ids), "of": len(ids), "how": "same data hash as the model's training data"}
    name = data.get("name")
    if name and data.get("split", "all") == "all" and data.get("sha256"):
        try:
            from hopnet.datasets import load

            train_ds = load(name)
        except HopnetError:
            return None
        if train_ds.sha256 != data.get("sha256"):
            return None
        train = {str(e.id) for e in train_ds}
        return {"n": sum(i in train for i in ids), "of": len(ids), "how": f"entry ids of {name}"}
    return None


def in_sample_note(seen: dict | None) -> str | None:
    """One line saying that (part of) an evaluation is in-sample, or None."""
    if not seen or not seen["n"]:
        return None
    part = "all" if seen["n"] == seen["of"] else f"{seen['n']} of"
    return (f"{part} {seen['of']} evaluated paths were in the model's training set: these figures are "
            f"in-sample, not a measure of quality (grouped cross-validation: hopnet reproduce --cv 5)")


def evaluate(model: Any, data: Any, threshold: float = DEFAULT_THRESHOLD_EV,
             batch_size: int | None = None) -> dict:
    """Predict every path in ``data`` with ``model`` and score the predictions (see module doc).

    ``model``: shipped name, model folder or predictor; ``data``: data-set name, band JSON file or
    Dataset; ``threshold``: good/poor conductor cut in eV."""
    from hopnet.models.classical import band_structures
    from hopnet.infra.provenance import run_record

    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise HopnetError(f"threshold must be a finite number of eV, got {threshold}")
    predictor = resolve_predictor(model)
    ds = load_eval_data(data)
    paths = band_structures(ds)
    log.info("evaluating model %s on %d paths of %s", getattr(predictor, "name", "?"), len(paths), ds.name)
    pred = predictor.predict_paths(paths, batch_size=batch_size)
    mean = np.asarray(pred.mean, dtype=float).ravel()
    std = np.asarray(pred.std, dtype=float).ravel() if pred.std is not None else np.zeros_like(mean)
    if mean.shape != (len(ds),) or std.shape != (len(ds),):
        raise HopnetError(f"model {predictor.name!r} returned {mean.size} predictions for {len(ds)} paths")
    if not np.isfinite(mean).all():
        bad = ds.ids[int(np.argmax(~np.isfinite(mean)))]
        raise HopnetError(f"model {predictor.name!r} predicted a non-finite barrier for {bad}")
    y = ds.targets
    reg = regression_metrics(y, mean)
    cls = classifier_metrics(y, mean, threshold)
    prov = run_record(data_hash=ds.sha256)
    prov["model"] = getattr(predictor, "name", type(predictor).__name__)
    meta = getattr(predictor, "metadata", None) or {}
    prov["model_git_commit"] = meta.get("git_commit")
    prov["model_data_hash"] = meta.get("data_hash")
    prov["data"] = ds.provenance()
    seen = training_overlap(meta, ds)
    return {
        "in_training_set": seen,
        "n": reg["n"],
        "mae": _num(reg["mae"]),
        "rmse": _num(reg["rmse"]),
        "r2": _num(reg["r2"]),
        "spearman": _num(reg["spearman"]),
        "classifier": {k: _num(v) for k, v in cls.items()},
        "predictions": [
            {"sys_name": e.id, "target": float(t), "prediction": float(p), "std": float(s)}
            for e, t, p, s in zip(ds, y, mean, std)
        ],
        "provenance": prov,
    }
