"""Predict migration barriers of hops: the Python face of ``hopnet predict``.

* :func:`predict` -- one hop: a structure (pymatgen, ASE, JARVIS dict or file) + ion + start/end
  (site indices or fractional coordinates), or a band in the data-set layout. Returns a
  :class:`BarrierResult` (barrier and its uncertainty in eV, the path, the model name, the
  conductor class and P(good conductor) at the threshold, out-of-domain warnings).
* :func:`predict_many` -- a list of hops in, a list of results out, in input order. The model is
  loaded once per process and name (:func:`get_model`); paths go to it in batches capped by the
  number of band atoms, so large cells never blow the memory of graph models.

A hop is *out of domain* when it is longer or shorter than the hops the model was trained on,
when the migrating ion never migrated in training, or when the structure holds elements that no
training structure held. The domain is read from the model's ``metadata.json`` (key
``domain``: ``hop_length`` [min, max] Å, ``ions``, ``elements``) and falls back to that of the
migration-barrier training set (:data:`TRAINING_DOMAIN`). Out-of-domain hops are predicted anyway,
with warnings.

Uncertainty: a model whose ``metadata.json`` has a ``calibration`` block
(:class:`hopnet.models.calibration.Calibration`, fitted on grouped-CV residuals by
``experiments/calibrate.py``) reports ``std`` = the calibrated σ of a Gaussian error (eV) and
``p_good`` = P(E_m < threshold) under N(barrier, σ²); the raw ensemble spread stays in
``ensemble_std``. Without the block ``std`` is the ensemble spread and ``p_good`` is NaN.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hopnet.infra.errors import HopnetError, PathError, StructureError
from hopnet.metrics import DEFAULT_THRESHOLD_EV
from hopnet.structures import species_symbol

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BATCH_ATOMS",
    "DEFAULT_MAX_ATOMS",
    "TRAINING_DOMAIN",
    "BarrierResult",
    "Domain",
    "clear_model_cache",
    "get_model",
    "make_path",
    "predict",
    "predict_many",
]

DEFAULT_MAX_ATOMS = 2000  # atoms in the input cell; the training bands had 33-1027
DEFAULT_BATCH_ATOMS = 20000  # band atoms per call of the model's predict_paths


@dataclass(frozen=True)
class Domain:
    """What a model saw in training: hop lengths (Å), migrating ions, elements of the structures."""

    hop_range: tuple[float, float]
    ions: tuple[str, ...]
    elements: frozenset[str]
    source: str = ""

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> Domain:
        """The ``domain`` block of a model's metadata, else :data:`TRAINING_DOMAIN`."""
        d = (metadata or {}).get("domain")
        if not isinstance(d, dict):
            return TRAINING_DOMAIN
        lo, hi = d.get("hop_length", TRAINING_DOMAIN.hop_range)
        return cls(
            hop_range=(float(lo), float(hi)),
            ions=tuple(d.get("ions", TRAINING_DOMAIN.ions)),
            elements=frozenset(d.get("elements", TRAINING_DOMAIN.elements)),
            source="model metadata",
        )

    def check(self, path: Any) -> list[str]:
        """One-line warnings for everything about ``path`` (a MigrationPath) outside this domain."""
        out = []
        lo, hi = self.hop_range
        length = path.hop_length
        if not lo <= length <= hi:
            side = "longer" if length > hi else "shorter"
            out.append(f"out of domain: hop length {length:.2f} Å is {side} than the training range "
                       f"{lo:.1f}-{hi:.1f} Å")
        if path.ion not in self.ions:
            out.append(f"out of domain: {path.ion} never migrated in training (ions seen: {' '.join(self.ions)})")
        present = {species_symbol(sp) for sp in path.host.species} | {path.ion}
        unseen = sorted(present - set(self.elements))
        if unseen:
            out.append(f"out of domain: element(s) {', '.join(unseen)} absent from every training structure")
        return out


#: The migration-barrier training set (559 literature NEB paths; ``$HOPNET_DATA_DIR/migration``):
#: hops 1.5-9.0 Å, nine migrating ions, and the 58 elements its structures contain.
TRAINING_DOMAIN = Domain(
    hop_range=(1.5, 9.0),
    ions=("Li", "Ca", "Na", "Mg", "K", "Zn", "Rb", "Al", "Sr"),
    elements=frozenset(
        "Al As B Br C Ca Cl Co Cr Cu Dy Er F Fe Ga Ge Ho I In Ir K La Li Lu Mg Mn Mo N Na Nb Nd Ni O "
        "P Pd Pm Pr Pt Rb Rh Ru S Sc Se Si Sm Sn Sr Tb Tc Te Ti Tm V W Y Zn Zr".split()
    ),
    source="migration-barriers training set",
)


@dataclass(frozen=True)
class BarrierResult:
    """One predicted hop, in eV; NaN with ``error`` set when the hop failed under
    ``on_error="record"``.

    ``std`` is the calibrated σ when the model carries a calibration (``calibrated`` True), else
    the ensemble spread; ``ensemble_std`` is always the spread of the ensemble members.
    ``p_good`` = P(E_m < threshold) from N(barrier, std²), NaN without a calibration."""

    barrier: float
    std: float
    path: Any  # hopnet.paths.MigrationPath (None when the hop could not be built)
    model: str
    threshold: float = DEFAULT_THRESHOLD_EV
    warnings: tuple[str, ...] = ()
    label: str = ""
    reference: float | None = None  # the target of a data-set entry, eV
    error: str | None = None
    ensemble_std: float = float("nan")  # spread of the ensemble members, eV
    p_good: float = float("nan")  # P(E_m < threshold) under the calibrated Gaussian
    calibrated: bool = False  # std is the calibrated σ (else the ensemble spread)

    @property
    def conductor_class(self) -> str:
        """``"good"`` when ``barrier < threshold`` (eV), ``"poor"`` otherwise, ``""`` on failure."""
        if not math.isfinite(self.barrier):
            return ""
        return "good" if self.barrier < self.threshold else "poor"

    @property
    def hop_length(self) -> float:
        """Straight-line hop length (Å)."""
        return float(self.path.hop_length) if self.path is not None else float("nan")

    def to_dict(self) -> dict:
        """JSON-ready summary (no structure)."""
        p = self.path
        return {
            "label": self.label,
            "barrier_ev": _num(self.barrier),
            "std_ev": _num(self.std),
            "std_kind": "calibrated on grouped CV" if self.calibrated else "ensemble spread",
            "ensemble_std_ev": _num(self.ensemble_std),
            "p_good": _num(self.p_good),
            "conductor_class": self.conductor_class,
            "threshold_ev": self.threshold,
            "model": self.model,
            "ion": p.ion if p is not None else None,
            "hop_length_a": _num(self.hop_length),
            "initial_frac": p.initial_frac.tolist() if p is not None else None,
            "final_frac": p.final_frac.tolist() if p is not None else None,
            "host_formula": p.host.composition.reduced_formula if p is not None else None,
            "host_atoms": len(p.host) if p is not None else None,
            "reference_ev": self.reference,
            "warnings": list(self.warnings),
            "error": self.error,
        }


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# --------------------------------------------------------------------------- models
_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def get_model(model: Any = "default") -> Any:
    """A loaded predictor for a shipped model's name or a model folder, cached per folder for the
    life of the process (:func:`clear_model_cache` forgets them). An object that already has
    ``predict_paths`` is returned as is."""
    if hasattr(model, "predict_paths"):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise HopnetError(f"model must be a name, a folder or a predictor, got {type(model).__name__}")
    from hopnet.models.folder import load_model, resolve_model_dir

    key = str(resolve_model_dir(model).resolve())
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(key)
            log.info("loaded model %s from %s", model, key)
        return _MODELS[key]


def clear_model_cache() -> None:
    with _MODELS_LOCK:
        _MODELS.clear()


def _model_name(predictor: Any, model: Any) -> str:
    from pathlib import Path

    if isinstance(model, str) and os.sep not in model and not Path(model).is_dir():
        return model
    return str(getattr(predictor, "name", "") or model)


def _model_images(predictor: Any) -> int:
    return int(getattr(getattr(predictor, "config", None), "n_images", 5) or 5)


# --------------------------------------------------------------------------- paths
def _is_index(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_size(n: int, max_atoms: int | None) -> None:
    if max_atoms is not None and n > max_atoms:
        raise StructureError(
            f"cell has {n} atoms, over the limit of {max_atoms} (training cells had at most 1027); "
            f"raise max_atoms (--max-atoms) to predict anyway"
        )


def _check_ion(ion: Any) -> str:
    from pymatgen.core import Element

    if ion is None or ion == "":
        raise PathError("no migrating ion given (ion=..., --ion)")
    if not isinstance(ion, str) or not Element.is_valid_symbol(ion):
        raise PathError(f"unknown ion {ion!r}: not an element symbol")
    return ion


def _read_band_like(item: Any) -> Any:
    """The band structure of an entry / atoms dict / Structure / file (unvalidated)."""
    from hopnet.structures import to_structure

    atoms = getattr(item, "atoms", None)
    if atoms is None and isinstance(item, dict) and "atoms" in item:
        atoms = item["atoms"]
    return to_structure(item if atoms is None else atoms, validate=False)


def make_path(structure: Any, ion: str | None = None, start: Any = None, end: Any = None, *,
              n_images: int = 5, max_atoms: int | None = DEFAULT_MAX_ATOMS, validate: bool = True) -> Any:
    """Build the :class:`~hopnet.paths.MigrationPath` of one hop, as the training data did.

    * ``start`` and ``end`` site indices: a vacancy hop of the ``ion`` at site ``start`` into the
      emptied site ``end`` (both must hold ``ion``).
    * fractional coordinates (3 numbers) for either end: the ion moves between those points;
      ``ion`` atoms sitting there are removed first (so interstitial and vacant sites both work).
    * neither: ``structure`` is a band in the data-set layout (atoms 0..n_images-1 are the ion's
      images), e.g. a data-set entry or its ``atoms`` dict, or a band file.
    A :class:`~hopnet.paths.MigrationPath` passes through. Structures over ``max_atoms`` atoms and
    overlapping atoms (< 0.5 Å) are rejected with a one-line :class:`StructureError`.
    """
    from pymatgen.core import Structure

    from hopnet.paths import MigrationPath, as_frac3
    from hopnet.structures import to_structure, validate_structure

    if isinstance(structure, MigrationPath):
        if start is not None or end is not None:
            raise PathError("a MigrationPath already has its end points; give no start/end")
        return structure
    if (start is None) != (end is None):
        raise PathError("give both a start and an end site (or neither, for a band)")
    if start is None:
        s = _read_band_like(structure)
        _check_size(len(s), max_atoms)
        try:
            path = MigrationPath.from_band(s, n_images=n_images, validate=False)
        except PathError as exc:
            raise PathError(f"no start/end sites given and the structure is not a band ({exc})") from None
        if ion is not None and path.ion != _check_ion(ion):
            raise PathError(f"the band's migrating ion is {path.ion}, not {ion}")
        if validate:
            path.validate()
        return path

    ion = _check_ion(ion)
    s = to_structure(structure, validate=False)
    _check_size(len(s), max_atoms)
    if validate:
        validate_structure(s)
    symbols = [species_symbol(sp) for sp in s.species]
    for name, x in (("start", start), ("end", end)):
        if _is_index(x) and not 0 <= int(x) < len(s):
            raise PathError(f"{name} site {int(x)} is out of range (structure has {len(s)} atoms)")
    if _is_index(start) and _is_index(end):
        if ion not in symbols:
            raise PathError(f"ion {ion} is absent from the structure ({s.composition.reduced_formula}); "
                            f"give fractional end points to insert it")
        return MigrationPath.from_sites(s, ion, int(start), int(end), n_images=n_images, validate=validate)
    ends = []
    for name, x in (("start", start), ("end", end)):
        if _is_index(x):
            i = int(x)
            if symbols[i] != ion:
                raise PathError(f"{name} site {i} is {symbols[i]}, not the migrating ion {ion}")
            ends.append(np.asarray(s.frac_coords[i], dtype=float))
        else:
            ends.append(as_frac3(x, name, "a site index or 3 finite fractional coordinates"))
    assert isinstance(s, Structure)
    return MigrationPath.from_fractional(s, ion, ends[0], ends[1], n_images=n_images, validate=validate)


def _spec_parts(item: Any) -> tuple[Any, str | None, Any, Any, str, float | None]:
    """(structure, ion, start, end, label, reference) of one predict_many item."""
    if isinstance(item, dict) and "structure" in item:
        unknown = set(item) - {"structure", "ion", "start", "end", "label"}
        if unknown:
            raise PathError(f"unknown key(s) in hop spec: {', '.join(sorted(unknown))}")
        return item["structure"], item.get("ion"), item.get("start"), item.get("end"), str(item.get("label", "")), None
    if isinstance(item, tuple):
        if len(item) != 4:
            raise PathError(f"a hop tuple is (structure, ion, start, end), got {len(item)} items")
        return (*item, "", None)  # type: ignore[return-value]
    label = getattr(item, "id", None) or (item.get("sys_name") if isinstance(item, dict) else None) or ""
    ref = getattr(item, "target", None)
    if ref is None and isinstance(item, dict):
        ref = item.get("target")
    return item, None, None, None, str(label), (float(ref) if isinstance(ref, (int, float)) else None)


# --------------------------------------------------------------------------- prediction
def predict(structure: Any, ion: str | None = None, start: Any = None, end: Any = None, *,
            model: Any = "default", threshold: float = DEFAULT_THRESHOLD_EV,
            max_atoms: int | None = DEFAULT_MAX_ATOMS) -> BarrierResult:
    """The migration barrier (eV) of one hop; see :func:`make_path` for ``structure``/``ion``/
    ``start``/``end``. ``model`` is a shipped model's name, a model folder or a loaded predictor."""
    spec = {"structure": structure, "ion": ion, "start": start, "end": end}
    return predict_many([spec], model=model, threshold=threshold, max_atoms=max_atoms)[0]


def _batches(sizes: Sequence[int], cap: int) -> list[list[int]]:
    """Consecutive index groups whose sizes sum to at most ``cap`` (a lone oversize item is its own group)."""
    out: list[list[int]] = []
    cur: list[int] = []
    total = 0
    for i, n in enumerate(sizes):
        if cur and total + n > cap:
            out.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += n
    if cur:
        out.append(cur)
    return out


def predict_many(items: Iterable[Any], *, model: Any = "default", threshold: float = DEFAULT_THRESHOLD_EV,
                 max_atoms: int | None = DEFAULT_MAX_ATOMS, batch_atoms: int = DEFAULT_BATCH_ATOMS,
                 on_error: Literal["raise", "record"] = "raise") -> list[BarrierResult]:
    """Barriers of many hops, in input order.

    Each item is a :class:`~hopnet.paths.MigrationPath`, a band (data-set ``Entry``, entry dict,
    atoms dict, ``Structure`` or file), a dict ``{"structure", "ion", "start", "end"[, "label"]}``
    or a tuple ``(structure, ion, start, end)``. The model is loaded once (cached per process);
    paths reach it in batches of at most ``batch_atoms`` band atoms. With ``on_error="raise"``
    the first bad item raises (message prefixed ``item K:``); with ``"record"`` it gets a result
    with NaN barrier and ``error`` set, and the others are predicted.
    """
    if on_error not in ("raise", "record"):
        raise HopnetError(f"on_error must be 'raise' or 'record', got {on_error!r}")
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise HopnetError(f"threshold must be a finite number of eV, got {threshold}")
    if int(batch_atoms) < 1:
        raise HopnetError(f"batch_atoms must be positive, got {batch_atoms}")
    items = list(items)
    paths: list[Any] = [None] * len(items)
    labels: list[str] = [""] * len(items)
    refs: list[float | None] = [None] * len(items)
    errors: list[str | None] = [None] * len(items)

    def build(k_images: int) -> None:
        for k, item in enumerate(items):
            if errors[k] is not None:
                continue
            try:
                structure, ion, start, end, labels[k], refs[k] = _spec_parts(item)
                # bands from data sets are taken as published (see hopnet.paths.as_path)
                paths[k] = make_path(structure, ion, start, end, n_images=k_images, max_atoms=max_atoms,
                                     validate=not _is_dataset_item(item))
            except HopnetError as exc:
                if on_error == "raise":
                    msg = f"item {k}{f' ({labels[k]})' if labels[k] else ''}: {exc}" if len(items) > 1 else str(exc)
                    raise type(exc)(msg) from None
                errors[k] = str(exc)

    build(5)  # the data-set layout; bad input fails before the model is loaded
    predictor = get_model(model)
    name = _model_name(predictor, model)
    from hopnet.models.calibration import prob_below
    from hopnet.models.folder import CalibratedPredictor, calibrated

    predictor = calibrated(predictor, name)  # a predictor built by hand gets its calibration too
    cal = isinstance(predictor, CalibratedPredictor)
    domain = Domain.from_metadata(getattr(predictor, "metadata", None))
    if _model_images(predictor) != 5:
        build(_model_images(predictor))

    mean, std, spread = (np.full(len(items), np.nan) for _ in range(3))  # std: calibrated σ when calibrated
    good = [k for k, p in enumerate(paths) if p is not None]
    sizes = [len(paths[k].host) + paths[k].n_images for k in good]
    for group in _batches(sizes, int(batch_atoms)):
        idx = [good[g] for g in group]
        try:
            pred = predictor.predict_paths([paths[k] for k in idx])
            mean[idx], std[idx], spread[idx] = pred.mean, pred.std, pred.ensemble_std
        except HopnetError as exc:
            if on_error == "raise" or len(idx) == 1:
                if on_error == "raise":
                    raise
                errors[idx[0]] = str(exc)
                continue
            for k in idx:  # find the culprit(s); the rest still get predictions
                try:
                    pred = predictor.predict_paths([paths[k]])
                    mean[k], std[k], spread[k] = pred.mean[0], pred.std[0], pred.ensemble_std[0]
                except HopnetError as exc2:
                    errors[k] = str(exc2)

    p_good = prob_below(mean, std, threshold) if cal else np.full(len(items), np.nan)
    results = []
    for k in range(len(items)):
        p = paths[k]
        warns = tuple(domain.check(p)) if p is not None else ()
        for w in warns:
            log.info("%s%s", f"{labels[k]}: " if labels[k] else "", w)
        results.append(BarrierResult(
            barrier=float(mean[k]), std=float(std[k]), path=p, model=name, threshold=threshold,
            warnings=warns, label=labels[k], reference=refs[k], error=errors[k],
            ensemble_std=float(spread[k]), p_good=float(p_good[k]), calibrated=cal,
        ))
    return results


def _is_dataset_item(item: Any) -> bool:
    """A data-set Entry or entry dict (has atoms + target)."""
    if hasattr(item, "atoms") and hasattr(item, "target"):
        return True
    return isinstance(item, dict) and "atoms" in item and "target" in item
