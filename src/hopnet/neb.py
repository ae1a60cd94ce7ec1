"""Universal-potential NEB baseline: climbing-image NEB with CHGNet through ASE.

A :class:`~hopnet.paths.MigrationPath` gives the two end structures (the ion at index 0, the
host after it). The end points are relaxed (positions only, fixed cell) unless
``NebConfig.relax`` is false, images are interpolated between them (IDPP or linear) and a
climbing-image NEB is converged to ``fmax`` (eV/Å) or stopped after ``steps`` optimiser steps.

Energies are total energies (eV); barriers are

* forward  = max image energy - initial energy,
* reverse  = max image energy - final energy,

and ``barrier`` is the forward one (what the data set's ``target`` holds).

CHGNet ships its weights inside its PyPI wheel, so nothing is downloaded at run time. It is an
optional dependency (``pip install 'hopnet[neb]'``); without it :func:`run_neb` raises
:class:`NebDependencyError`.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from hopnet.errors import HopnetError, PathError
from hopnet.paths import MigrationPath

log = logging.getLogger(__name__)

__all__ = [
    "NebConfig",
    "NebResult",
    "NebDependencyError",
    "run_neb",
    "run_neb_many",
    "read_results",
    "paths_from_entries",
    "MISSING_CHGNET",
]

MISSING_CHGNET = "hopnet neb needs CHGNet: pip install 'hopnet[neb]'"
OPTIMIZERS = ("FIRE", "BFGS")
INTERPOLATIONS = ("linear", "idpp")


class NebDependencyError(HopnetError, ImportError):
    """CHGNet (the optional ``neb`` extra) is not installed."""


@dataclass(frozen=True)
class NebConfig:
    """Settings of one NEB run.

    ``fmax``: force convergence of the band (eV/Å, climbing image included); ``steps``: maximum
    NEB optimiser steps. ``relax``: relax the end points first (positions only, fixed cell) to
    ``relax_fmax`` (eV/Å) within ``relax_steps``. ``n_images``: images of the band counting both
    end points (None: the path's own ``n_images``, 5 for the data set, i.e. 3 moving images).
    ``interpolation``: "idpp" (default; the straight line relaxed in an image-dependent pair
    potential, minimum-image distances) or "linear" (the straight line, which can put an image on
    a host atom: 13.6 eV "barrier" for Ca0.5Fe2P3O12 in the data set). ``spring``: NEB spring
    constant (eV/Å²). ``model``: CHGNet model version shipped in the wheel.
    """

    fmax: float = 0.05
    steps: int = 200
    relax: bool = True
    relax_fmax: float = 0.05
    relax_steps: int = 200
    n_images: int | None = None
    interpolation: str = "idpp"
    optimizer: str = "FIRE"
    climb: bool = True
    spring: float = 0.1
    model: str = "0.3.0"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fmax) and self.fmax > 0):
            raise HopnetError(f"fmax must be a positive number of eV/Å, got {self.fmax!r}")
        if not (math.isfinite(self.relax_fmax) and self.relax_fmax > 0):
            raise HopnetError(f"relax_fmax must be a positive number of eV/Å, got {self.relax_fmax!r}")
        for name in ("steps", "relax_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise HopnetError(f"{name} must be a non-negative integer, got {v!r}")
        if self.n_images is not None and (not isinstance(self.n_images, int) or self.n_images < 3):
            raise HopnetError(f"n_images must be at least 3 (both end points and one moving image), got {self.n_images!r}")
        if self.optimizer.upper() not in OPTIMIZERS:
            raise HopnetError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.interpolation not in INTERPOLATIONS:
            raise HopnetError(f"interpolation {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
        if not (math.isfinite(self.spring) and self.spring > 0):
            raise HopnetError(f"spring must be a positive number of eV/Å², got {self.spring!r}")


@dataclass
class NebResult:
    """Outcome of one NEB run (energies in eV, times in s, forces in eV/Å).

    ``energies`` are the total energies of the images along the final band (both end points
    included); ``barrier`` = ``forward_barrier`` = max(energies) - energies[0];
    ``reverse_barrier`` = max(energies) - energies[-1]. ``converged`` is true when the band
    reached ``fmax`` within ``steps``; ``relax_converged`` likewise for both end points (None
    when not relaxed). ``max_force`` is the largest NEB force at the end (eV/Å).
    """

    id: str
    ion: str
    formula: str
    n_atoms: int
    barrier: float
    forward_barrier: float
    reverse_barrier: float
    energies: list[float]
    converged: bool
    n_steps: int
    max_force: float
    relaxed: bool
    relax_converged: bool | None
    relax_steps: int
    wall_s: float
    hop_length: float
    config: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- CHGNet
_MODELS: dict[tuple[str, str], Any] = {}


def _load_chgnet(version: str, device: str) -> Any:
    """The CHGNet model (cached per process); raises :class:`NebDependencyError` without it."""
    key = (version, device)
    if key in _MODELS:
        return _MODELS[key]
    try:
        from chgnet.model import CHGNet
    except ImportError:
        raise NebDependencyError(MISSING_CHGNET) from None
    try:
        model = CHGNet.load(model_name=version, use_device=device, verbose=False)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise HopnetError(f"cannot load CHGNet model {version!r}: {exc}") from None
    model.eval()
    _MODELS[key] = model
    return model


def _calculator(model: Any, device: str = "cpu") -> Any:
    """An ASE calculator giving CHGNet energy (eV) and forces (eV/Å) only: the stock
    ``CHGNetCalculator`` always computes stresses and magnetic moments too (slower)."""
    from ase.calculators.calculator import Calculator, all_changes
    from pymatgen.io.ase import AseAtomsAdaptor

    class _ChgnetEF(Calculator):
        implemented_properties = ["energy", "free_energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            structure = AseAtomsAdaptor.get_structure(self.atoms)
            with warnings.catch_warnings():  # CHGNet's own "tensor to scalar" UserWarning
                warnings.simplefilter("ignore", UserWarning)
                graph = model.graph_converter(structure)
                out = model.predict_graph(graph.to(device), task="ef")
            scale = len(structure) if model.is_intensive else 1
            energy = float(np.asarray(out["e"]).reshape(-1)[0]) * scale
            self.results = {
                "energy": energy,
                "free_energy": energy,
                "forces": np.asarray(out["f"], dtype=float).reshape(len(structure), 3),
            }

    return _ChgnetEF()


# --------------------------------------------------------------------------- NEB
def _optimizer(name: str) -> Any:
    from ase.optimize import BFGS, FIRE

    return {"FIRE": FIRE, "BFGS": BFGS}[name.upper()]


def _neb_class() -> Any:
    from ase.mep import NEB  # ase >= 3.23 (the pinned minimum)

    return NEB


def _to_atoms(structure: Any) -> Any:
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.info.clear()
    for key in list(atoms.arrays):
        if key not in ("numbers", "positions"):
            del atoms.arrays[key]
    atoms.pbc = True
    return atoms


def _relax(atoms: Any, model: Any, config: NebConfig) -> tuple[bool, int]:
    """Relax positions (fixed cell) in place; (converged, steps)."""
    atoms.calc = _calculator(model, config.device)
    opt = _optimizer(config.optimizer)(atoms, logfile=None)
    converged = bool(opt.run(fmax=config.relax_fmax, steps=config.relax_steps))
    return converged, int(opt.nsteps)


def _band_max_force(neb: Any) -> float:
    f = neb.get_forces()
    return float(np.sqrt((f**2).sum(axis=1)).max()) if len(f) else 0.0


def run_neb(path: MigrationPath, config: NebConfig = NebConfig(), *, id: str = "",
            meta: dict | None = None) -> NebResult:
    """Climbing-image NEB of ``path`` with CHGNet; see the module docstring.

    Raises :class:`NebDependencyError` without CHGNet, :class:`HopnetError` when ``path`` is not
    a :class:`MigrationPath` or the potential returns non-finite energies.
    """
    if not isinstance(path, MigrationPath):
        raise PathError(f"run_neb needs a MigrationPath, got {type(path).__name__}")
    model = _load_chgnet(config.model, config.device)
    t0 = time.perf_counter()
    initial, final = _to_atoms(path.initial()), _to_atoms(path.final())
    relax_conv: bool | None = None
    relax_steps = 0
    if config.relax and config.relax_steps > 0:
        c1, s1 = _relax(initial, model, config)
        c2, s2 = _relax(final, model, config)
        relax_conv, relax_steps = c1 and c2, s1 + s2
        log.debug("end points relaxed in %d steps (converged: %s)", relax_steps, relax_conv)
    n = config.n_images if config.n_images is not None else max(path.n_images, 3)
    images = [initial] + [initial.copy() for _ in range(n - 2)] + [final]
    for im in images:
        im.calc = _calculator(model, config.device)
    neb = _neb_class()(images, k=config.spring, climb=config.climb, method="improvedtangent")
    # positions are unwrapped (the final ion sits at initial + hop vector, the path's image
    # convention), so the straight line needs no minimum image; IDPP's target pair distances do
    neb.interpolate(method="linear", mic=False)
    if config.interpolation == "idpp":
        from ase.mep.neb import idpp_interpolate

        idpp_interpolate(neb, traj=None, log=None, mic=True)
    opt = _optimizer(config.optimizer)(neb, logfile=None)
    converged = bool(opt.run(fmax=config.fmax, steps=config.steps)) if config.steps > 0 else False
    energies = [float(im.get_potential_energy()) for im in images]
    if not all(math.isfinite(e) for e in energies):
        raise HopnetError(f"CHGNet returned non-finite energies for the {path.ion} hop in "
                          f"{path.host.composition.reduced_formula}")
    top = max(energies)
    wall = time.perf_counter() - t0
    result = NebResult(
        id=id,
        ion=path.ion,
        formula=path.initial().composition.reduced_formula,
        n_atoms=len(initial),
        barrier=top - energies[0],
        forward_barrier=top - energies[0],
        reverse_barrier=top - energies[-1],
        energies=energies,
        converged=converged,
        n_steps=int(opt.nsteps),
        max_force=_band_max_force(neb),
        relaxed=relax_conv is not None,
        relax_converged=relax_conv,
        relax_steps=relax_steps,
        wall_s=wall,
        hop_length=path.hop_length,
        config=asdict(config),
        meta=dict(meta or {}),
    )
    log.info("%s: barrier %.3f eV (%s, %d steps) in %.1f s", id or result.formula,
             result.barrier, "converged" if converged else "not converged", result.n_steps, wall)
    return result


# --------------------------------------------------------------------------- many paths
def read_results(out_jsonl: str | os.PathLike) -> list[dict]:
    """The records of a results file written by :func:`run_neb_many` ([] when absent). A last
    line cut short by an interrupted run is ignored."""
    from hopnet.provenance import read_jsonl

    return read_jsonl(out_jsonl)


def run_neb_many(
    paths: Iterable[tuple[str, MigrationPath] | tuple[str, MigrationPath, dict]],
    config: NebConfig = NebConfig(),
    out_jsonl: str | os.PathLike | None = None,
) -> list[NebResult]:
    """Run :func:`run_neb` on ``(id, path[, meta])`` items; append one JSON line per finished
    path to ``out_jsonl`` (flushed and fsynced) and skip ids already there (resume). Returns the
    results computed in this call. Ids must be unique."""
    from hopnet.provenance import append_jsonl

    done: set[str] = set()
    out = Path(out_jsonl) if out_jsonl is not None else None
    if out is not None:
        done = {str(r.get("id")) for r in read_results(out)}
    results: list[NebResult] = []
    seen: set[str] = set()
    for item in paths:
        pid, path = str(item[0]), item[1]
        meta = item[2] if len(item) > 2 else None
        if pid in seen:
            raise HopnetError(f"path id {pid!r} appears twice")
        seen.add(pid)
        if pid in done:
            log.info("%s: already in %s, skipped", pid, out)
            continue
        res = run_neb(path, config, id=pid, meta=meta)
        results.append(res)
        if out is not None:
            append_jsonl(out, res.to_dict())
    return results


def paths_from_entries(entries: Sequence[Any], n_images: int = 5) -> list[tuple[str, MigrationPath, dict]]:
    """``(id, path, meta)`` for data-set entries (``hopnet.datasets.Entry`` or raw band dicts
    with ``atoms``), ready for :func:`run_neb_many`. ``meta`` carries the DFT ``target`` and the
    published MACE-NEB columns when present."""
    out = []
    for k, e in enumerate(entries):
        if isinstance(e, dict):
            atoms, target = e.get("atoms"), e.get("target")
            pid = str(e.get("sys_name") or e.get("jid") or e.get("id") or k)
            extra = {key: e[key] for key in ("class", "formula") if key in e}
        else:
            atoms, target, pid = e.atoms, e.target, str(e.id)
            extra = {key: e.meta.get(key) for key in ("class", "compound", "mace_relax_ev", "mace_norelax_ev")
                     if key in e.meta}
        if atoms is None:
            raise HopnetError(f"entry {pid}: no 'atoms' band structure")
        try:
            path = MigrationPath.from_band(atoms, n_images=n_images, validate=False)
        except HopnetError as exc:
            raise type(exc)(f"entry {pid}: {exc}") from None
        meta = {"target": None if target is None else float(target), **extra}
        out.append((pid, path, meta))
    return out
