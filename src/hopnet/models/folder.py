"""Model folders and the predictor interface shared by every barrier model.

A model is a folder, never a pickled module::

    MODEL/
      config.json     {"kind": "gnn" | "classical", ...the full typed config of that kind...}
      metadata.json   format_version, hopnet_version, git_commit, data_hash, target, units,
                      target_scaling, members (seeds / folds), metrics, created,
                      checksums (sha256 of every payload file), graph_code (graph kinds: the
                      graph-format and element-table versions the weights were trained on)
      <weights>       kind-specific files (e.g. weights.pt: one state_dict per ensemble member)

``load_model(name_or_path)`` reads ``config.json``, checks ``metadata.json``'s format version,
the payload checksums and (graph models) that this hopnet builds the same graphs, then hands the
folder to the loader registered for its kind. Every predictor maps migration paths to
barriers (eV) with an ensemble spread.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from hopnet.infra.errors import HopnetError, ModelFileError

FORMAT_VERSION = 2  # 2: checksums + graph_code in metadata.json
READABLE_VERSIONS = (1, 2)  # 1: written before checksums; loads without the integrity check
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "weights.pt"  # graph models: a list of state dicts, one per ensemble member
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"

# kind -> loader(folder, config, metadata) -> BarrierPredictor; filled by the model modules
_LOADERS: dict[str, str] = {
    "gnn": "hopnet.models.barrier:load_predictor",
    "classical": "hopnet.models.classical:load_predictor",
    "property": "hopnet.models.property:load_predictor",
}
# kinds whose weights read crystal graphs: their folders record and check the graph code version
GRAPH_KINDS = ("gnn", "property")


def graph_code() -> dict:
    """The graph-construction versions of the running code (what graph-model weights depend on)."""
    from hopnet.graphs.config import GRAPH_FORMAT_VERSION
    from hopnet.graphs.features import table_version

    return {"graph_format": GRAPH_FORMAT_VERSION, "element_table": table_version()}


@dataclass
class Prediction:
    """Barriers (eV) for a list of paths. ``mean``: the ensemble mean; ``std``: the calibrated σ
    (eV) when the model carries a calibration (:func:`load_model` applies it), else the ensemble
    spread; ``ensemble_std``: always the raw spread of the ensemble members (0 for one member).
    The same names mean the same in :class:`hopnet.inference.BarrierResult`."""

    mean: np.ndarray
    std: np.ndarray
    model: str = ""
    members: np.ndarray | None = field(default=None, repr=False)  # (n_members, n_paths)
    ensemble_std: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.ensemble_std is None:
            self.ensemble_std = self.std


class CalibratedPredictor:
    """A predictor whose ``predict_paths`` reports the calibrated σ as ``std`` (and the raw
    spread as ``ensemble_std``); every other attribute is the wrapped predictor's."""

    def __init__(self, inner: Any, calibration: Any) -> None:
        self.inner, self.calibration = inner, calibration

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def predict_paths(self, paths: Sequence[Any], batch_size: int | None = None) -> Prediction:
        pred = self.inner.predict_paths(paths, batch_size=batch_size)
        spread = np.asarray(pred.ensemble_std, dtype=float)
        mean = np.asarray(pred.mean, dtype=float)
        hop = (np.array([p.hop_length for p in paths], dtype=float)
               if "hop_length" in self.calibration.features else None)
        sigma = self.calibration.sigma(ensemble_std=spread, prediction=mean, hop_length=hop)
        return Prediction(mean, np.asarray(sigma, dtype=float), pred.model, pred.members, spread)


class BarrierPredictor(Protocol):
    name: str
    metadata: dict

    def predict_paths(self, paths: Sequence[Any], batch_size: int | None = None) -> Prediction:
        """Barriers of ``hopnet.paths.MigrationPath`` objects, in input order."""
        ...


def shipped_models() -> dict[str, Path]:
    """Names of the models that ship inside the package (no download needed)."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(SHIPPED_DIR.iterdir()) if (p / CONFIG_FILE).is_file()}


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """A shipped model's name or a model folder -> the folder (ModelFileError if neither)."""
    shipped = shipped_models()
    if isinstance(name_or_path, str) and name_or_path in shipped:
        return shipped[name_or_path]
    p = Path(name_or_path)
    if p.is_dir():
        return p
    names = ", ".join(shipped) or "none"
    raise ModelFileError(
        f"model '{name_or_path}' is neither a shipped model ({names}) nor a model folder"
    )


def read_model_files(folder: str | os.PathLike) -> tuple[dict, dict]:
    """(config, metadata) of a model folder, with the format version checked."""
    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        metadata = json.loads((folder / METADATA_FILE).read_text())
    except FileNotFoundError as exc:
        raise ModelFileError(f"{folder}: not a hopnet model folder (missing {Path(exc.filename).name})")
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{folder}: corrupt model file ({exc.msg} at line {exc.lineno})")
    version = metadata.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ModelFileError(
            f"{folder}: model format version {version!r}, this hopnet reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} (written by hopnet {metadata.get('hopnet_version', '?')})"
        )
    if config.get("kind") not in _LOADERS:
        raise ModelFileError(f"{folder}: unknown model kind {config.get('kind')!r}")
    if version >= 2:
        _check_integrity(folder, config, metadata)
    return config, metadata


def _check_integrity(folder: Path, config: dict, metadata: dict) -> None:
    """Payload checksums, and for graph models the graph code they were trained with."""
    from hopnet.infra.integrity import verify_checksums

    if "checksums" not in metadata:
        raise ModelFileError(f"{folder}: metadata.json has no checksums (required by format version 2)")
    verify_checksums(folder, metadata["checksums"])
    if config["kind"] in GRAPH_KINDS:
        saved, running = metadata.get("graph_code"), graph_code()
        if saved != running:
            raise ModelFileError(
                f"{folder}: trained on graphs {_code_text(saved)}, this hopnet builds {_code_text(running)}; "
                f"use hopnet {metadata.get('hopnet_version', '?')} or retrain the model"
            )


def _code_text(code: Any) -> str:
    if not isinstance(code, dict):
        return "of an unrecorded version"
    return f"format {code.get('graph_format')} with element table {code.get('element_table')}"


def load_model(name_or_path: str | os.PathLike) -> BarrierPredictor:
    """Load a shipped model by name (e.g. ``"default"``) or a model folder written by hopnet."""
    folder = resolve_model_dir(name_or_path)
    config, metadata = read_model_files(folder)
    module, func = _LOADERS[config["kind"]].split(":")
    import importlib

    loader: Callable = getattr(importlib.import_module(module), func)
    return calibrated(loader(folder, config, metadata), folder.name)


def calibrated(predictor: Any, name: str) -> Any:
    """``predictor`` reporting its calibrated σ (a :class:`CalibratedPredictor`) when its metadata
    carries a ``calibration`` block and it is not wrapped yet; else ``predictor`` itself. A
    malformed block raises :class:`ModelFileError`."""
    block = (getattr(predictor, "metadata", None) or {}).get("calibration")
    if block is None or isinstance(predictor, CalibratedPredictor):
        return predictor
    from hopnet.models.calibration import Calibration

    return CalibratedPredictor(predictor, Calibration.from_dict(block, where=f"model {name}"))


def new_metadata(**fields: Any) -> dict:
    """The metadata block every model folder carries (provenance filled in here)."""
    from hopnet.infra.provenance import git_commit, package_version

    meta = {
        "format_version": FORMAT_VERSION,
        "hopnet_version": package_version(),
        "git_commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": "migration barrier E_m",
        "units": "eV",
    }
    meta.update(fields)
    return meta


def write_model_dir(
    folder: str | os.PathLike,
    config: dict,
    metadata: dict,
    write_payload: Callable[[Path], None],
) -> Path:
    """Write a model folder atomically: everything goes to a temporary sibling folder which then
    replaces ``folder`` in one rename, so a crash never leaves a half-written model."""
    from hopnet.infra.provenance import remove_stale_temporaries

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)  # half-written folders of killed writers
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{os.getpid()}.", dir=folder.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a model folder is for every user
    try:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        write_payload(tmp)
        metadata = seal_metadata(tmp, config, metadata)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
        _fsync_tree(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old.{os.getpid()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def seal_metadata(folder: str | os.PathLike, config: dict, metadata: dict) -> dict:
    """``metadata`` at the current format version, with the sha256 of every payload file in
    ``folder`` (all files but config.json and metadata.json) and, for graph kinds, the graph code."""
    from hopnet.infra.integrity import file_checksums

    folder = Path(folder)
    payload = [p.name for p in folder.iterdir() if p.is_file() and p.name not in (CONFIG_FILE, METADATA_FILE)]
    out = {**metadata, "format_version": FORMAT_VERSION, "checksums": file_checksums(folder, payload)}
    if config.get("kind") in GRAPH_KINDS:
        out["graph_code"] = graph_code()
    return out


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` to disk before the folder is renamed into place."""
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def typed_config(folder: Path, cls: Any, data: Any) -> Any:
    """``cls.from_dict(data)``; a bad block is a :class:`ModelFileError` naming the folder."""
    try:
        return cls.from_dict(data or {})
    except (HopnetError, TypeError) as exc:
        raise ModelFileError(f"{folder}: config.json: {exc}") from None


def load_members(folder: Path, make: Callable[[], Any]) -> list:
    """The ensemble members of a graph model folder: ``weights.pt`` holds one state dict per
    member (or one), each loaded strictly (float32) into ``make()``, in eval mode."""
    states = read_weights(folder / WEIGHTS_FILE)
    states = [states] if isinstance(states, dict) else states
    if not isinstance(states, list) or not states or not all(isinstance(s, dict) for s in states):
        raise ModelFileError(f"{folder}: {WEIGHTS_FILE} must hold a list of state_dicts")
    members = []
    for k, state in enumerate(states):
        model = make()
        state = {key: v.float() if hasattr(v, "is_floating_point") and v.is_floating_point() else v
                 for key, v in state.items()}
        problem = state_dict_mismatch(model, state)
        if problem:
            raise ModelFileError(f"{folder}: {WEIGHTS_FILE} member {k} does not match config.json: {problem}")
        model.load_state_dict(state, strict=True)
        members.append(model.eval())
    return members


def state_dict_mismatch(module: Any, state: dict) -> str:
    """'' when ``state`` fits ``module`` (a torch ``nn.Module``) exactly, else a short description of the first problems."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and hasattr(state[k], "shape")
              and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatch(es) (e.g. {k}: file {tuple(state[k].shape)}, "
                     f"config {tuple(own[k].shape)})")
    return "; ".join(parts)


def read_weights(path: str | os.PathLike, what: str = "weights file", trusted: bool = False) -> Any:
    """``torch.load`` of a weights file on the CPU with one-line :class:`ModelFileError`s.

    Tensors only (``weights_only=True``) unless ``trusted`` — Lightning checkpoints hold more."""
    import torch

    try:
        return torch.load(Path(path), map_location="cpu", weights_only=not trusted)
    except FileNotFoundError:
        raise ModelFileError(f"missing {Path(path).name}: {what} {path} not found") from None
    except Exception as exc:
        raise ModelFileError(f"{what} {path} is unreadable ({type(exc).__name__})") from None
