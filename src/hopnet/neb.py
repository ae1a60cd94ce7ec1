"""Universal-potential NEB: climbing-image NEB with a universal potential (CHGNet by default).

A :class:`~hopnet.paths.MigrationPath` gives the two end structures (the ion at index 0, the
host after it). With ``NebConfig.cell = "canonical"`` the hop is first rebuilt in its canonical
cell (:mod:`hopnet.cells`: primitive, Niggli-reduced, the smallest diagonal supercell at least
``min_width`` Å wide -- the cell screening builds its bands in), so a band given in a 1,000-atom
cell costs what its crystal needs. The end points are relaxed together (positions only, fixed
cell) unless ``relax`` is false; an end point whose ion slides more than
:data:`MAX_ION_SHIFT` of the hop (it fell into another minimum) is relaxed again with the ion held
on its site and flagged. Images are interpolated between them (IDPP or linear) and a climbing-image
NEB runs until ``fmax`` (eV/Å), ``steps`` optimiser steps or ``time_budget`` seconds. Every step
evaluates all images in one batched potential call (:class:`hopnet.potentials.BatchedImages`).

Energies are total energies (eV); barriers are

* forward  = max image energy - initial energy,
* reverse  = max image energy - final energy,

and ``barrier`` is the forward one (what the data set's ``target`` holds). A band that stops
before convergence still gives its barriers, flagged by ``converged``, ``stop`` and ``max_force``.

CHGNet and SevenNet-0 ship their weights inside their PyPI wheels, so nothing is downloaded at
run time. They are optional dependencies (``pip install 'hopnet[neb]'``); without one
:func:`run_neb` raises :class:`NebDependencyError`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from hopnet.infra.errors import HopnetError, PathError
from hopnet.paths import MigrationPath, frac_min_image
from hopnet.potentials import BACKBONES, MISSING_CHGNET, PotentialDependencyError

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
    "MAX_ION_SHIFT",
    "NEB_FEATURE_NAMES",
    "neb_features",
]

OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")
INTERPOLATIONS = ("linear", "idpp")
CELLS = ("given", "canonical")
#: an end point whose ion moves more than this fraction of the hop length (at most 1 Å) while
#: relaxing has left its site: it is relaxed again with the ion held
MAX_ION_SHIFT = 0.35

NebDependencyError = PotentialDependencyError


@dataclass(frozen=True)
class NebConfig:
    """Settings of one NEB run.

    ``fmax``: force convergence of the band (eV/Å, climbing image included); ``steps``: maximum
    NEB optimiser steps; ``time_budget``: CPU seconds of the process for the whole path
    (relaxation included; None: no limit), after which the band stops where it is. ``relax``: relax the end points first
    (positions only, fixed cell) to ``relax_fmax`` (eV/Å) within ``relax_steps``. ``n_images``:
    images of the band counting both end points (None: the path's own ``n_images``, 5 for the data
    set, i.e. 3 moving images). ``interpolation``: "idpp" (default; the straight line relaxed in an
    image-dependent pair potential, minimum-image distances) or "linear" (the straight line, which
    can put an image on a host atom: 13.6 eV "barrier" for Ca0.5Fe2P3O12 in the data set).
    ``optimizer``: of the band (FIRE); ``relax_optimizer``: of the end points (LBFGS: half the
    steps of FIRE on the training paths, to lower energies). ``spring``: NEB spring constant (eV/Å²). ``potential``: the backbone (``chgnet`` or
    ``sevennet``), ``model`` its model version (None: the backbone's default). ``cell``: "given"
    (the path's own cell) or "canonical" (see the module docstring), with ``min_width`` Å.
    ``batch``: evaluate all images of a step in one potential call (False: one call per image,
    the reference the benchmark compares with).
    """

    fmax: float = 0.05
    steps: int = 200
    relax: bool = True
    relax_fmax: float = 0.05
    relax_steps: int = 200
    n_images: int | None = None
    interpolation: str = "idpp"
    optimizer: str = "FIRE"
    relax_optimizer: str = "LBFGS"
    climb: bool = True
    spring: float = 0.1
    potential: str = "chgnet"
    model: str | None = None
    device: str = "cpu"
    cell: str = "given"
    min_width: float = 6.5
    time_budget: float | None = None
    batch: bool = True

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
        for name in ("optimizer", "relax_optimizer"):
            if getattr(self, name).upper() not in OPTIMIZERS:
                raise HopnetError(f"{name} {getattr(self, name)!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.interpolation not in INTERPOLATIONS:
            raise HopnetError(f"interpolation {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
        if not (math.isfinite(self.spring) and self.spring > 0):
            raise HopnetError(f"spring must be a positive number of eV/Å², got {self.spring!r}")
        if self.potential not in BACKBONES:
            raise HopnetError(f"potential {self.potential!r} is not one of {', '.join(BACKBONES)}")
        if self.cell not in CELLS:
            raise HopnetError(f"cell {self.cell!r} is not one of {', '.join(CELLS)}")
        if not (math.isfinite(self.min_width) and self.min_width >= 0):
            raise HopnetError(f"min_width must be a non-negative number of Å, got {self.min_width!r}")
        if self.time_budget is not None and not (math.isfinite(self.time_budget) and self.time_budget > 0):
            raise HopnetError(f"time_budget must be a positive number of seconds, got {self.time_budget!r}")


@dataclass
class NebResult:
    """Outcome of one NEB run (energies in eV, times in s, forces in eV/Å, lengths in Å).

    ``energies`` are the total energies of the images along the final band (both end points
    included); ``barrier`` = ``forward_barrier`` = max(energies) - energies[0];
    ``reverse_barrier`` = max(energies) - energies[-1]; ``delta_e`` = energies[-1] - energies[0].
    ``converged`` is true when the band reached ``fmax``; ``stop`` says why it stopped
    ("converged", "steps", "time"). ``relax_converged`` likewise for both end points (None when
    not relaxed). ``max_force`` is the largest NEB force at the end. ``ion_shift``: how far the ion
    moved while its end points relaxed (the larger of the two); ``ion_held``: an end point had to
    be relaxed again with the ion held on its site. ``cell``/``supercell``: the cell the band ran
    in; ``potential``: the backbone and its version; ``n_calls``: batched potential calls;
    ``relax_s``: wall seconds until the band started; ``cpu_s``: CPU seconds of the process
    (of the run that computed it); ``cached``: read from a :class:`hopnet.neb_cache.NebCache`.
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
    delta_e: float = 0.0
    stop: str = ""
    ion_shift: float = 0.0
    ion_held: bool = False
    cell: str = "given"
    supercell: list[int] = field(default_factory=lambda: [1, 1, 1])
    potential: str = ""
    n_calls: int = 0
    relax_s: float = 0.0
    cpu_s: float = 0.0
    cached: bool = False
    config: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def features(self) -> list[float]:
        """The NEB as model inputs, in the order of :data:`NEB_FEATURE_NAMES`."""
        return neb_features(self.to_dict())


#: what a model reads of a NEB (energies in eV, force in eV/Å): forward and reverse barrier,
#: ΔE of the end points, the highest interior image, the residual force and three flags
NEB_FEATURE_NAMES = ("neb_forward_ev", "neb_reverse_ev", "neb_delta_e_ev", "neb_top_interior_ev",
                     "neb_max_force", "neb_converged", "neb_stopped_on_time", "neb_ion_held")


def neb_features(row: dict) -> list[float]:
    """:data:`NEB_FEATURE_NAMES` of a NEB result (a :class:`NebResult` dict or a results-file
    row). The same for any number of images: the interior enters as its highest energy."""
    e = np.asarray(row["energies"], dtype=float) - float(row["energies"][0])
    top = float(e[1:-1].max()) if len(e) > 2 else float(e.max())
    return [float(row["forward_barrier"]), float(row["reverse_barrier"]), float(row["delta_e"]), top,
            float(row["max_force"]), float(bool(row["converged"])), float(row.get("stop") == "time"),
            float(bool(row.get("ion_held")))]


# --------------------------------------------------------------------------- potential
def _potential(config: NebConfig) -> Any:
    from hopnet.potentials import load_potential

    return load_potential(config.potential, config.model, config.device)


# --------------------------------------------------------------------------- NEB
def _optimizer(name: str) -> Any:
    from ase.optimize import BFGS, FIRE, LBFGS

    return {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS}[name.upper()]


def _to_atoms(structure: Any) -> Any:
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.info.clear()
    for key in list(atoms.arrays):
        if key not in ("numbers", "positions"):
            del atoms.arrays[key]
    atoms.pbc = True
    return atoms


def _stack(atoms_list: Sequence[Any]) -> Any:
    """The structures of ``atoms_list`` as one ASE optimisable (positions concatenated), so
    that one optimiser relaxes them together and each step is one batched potential call."""
    from ase.optimize.optimize import Optimizable

    class Stack(Optimizable):
        def __init__(self) -> None:
            self.atoms = list(atoms_list)
            self.sizes = np.cumsum([0] + [3 * len(a) for a in self.atoms])

        def ndofs(self) -> int:
            return int(self.sizes[-1])

        def get_x(self) -> np.ndarray:
            return np.concatenate([a.get_positions().ravel() for a in self.atoms])

        def set_x(self, x: np.ndarray) -> None:
            for a, lo, hi in zip(self.atoms, self.sizes[:-1], self.sizes[1:]):
                a.set_positions(np.asarray(x[lo:hi]).reshape(-1, 3))

        def get_gradient(self) -> np.ndarray:
            return -np.concatenate([a.get_forces().ravel() for a in self.atoms])

        def get_value(self) -> float:
            return float(sum(a.get_potential_energy() for a in self.atoms))

        def iterimages(self):
            yield from self.atoms

    return Stack()


class _Clock:
    """CPU time left of a path's budget (CPU seconds of this process: the same on a busy machine
    as on an idle one, so that a run's stopping points do not depend on its neighbours)."""

    def __init__(self, budget: float | None) -> None:
        self.t0, self.budget = time.process_time(), budget

    def out(self) -> bool:
        return self.budget is not None and time.process_time() - self.t0 > self.budget


def _run(opt: Any, fmax: float, steps: int, clock: _Clock) -> str:
    """Run ``opt`` to ``fmax`` within ``steps`` and the clock; why it stopped."""
    if steps <= 0:
        return "steps"
    for converged in opt.irun(fmax=fmax, steps=steps):
        if converged:
            return "converged"
        if clock.out():
            return "time"
    return "steps"


def _attach(potential: Any, images: list[Any], batch: bool) -> list[Any]:
    """Calculators for ``images``: one batched group, or one group per image."""
    from hopnet.potentials import BatchedImages

    if batch:
        return [BatchedImages(potential, images).attach()]
    return [BatchedImages(potential, [im]).attach() for im in images]


def _relax(ends: list[Any], potential: Any, config: NebConfig, clock: _Clock) -> tuple[bool, int]:
    """Relax the end points in place, together; (converged, optimiser steps)."""
    _attach(potential, ends, config.batch)
    opt = _optimizer(config.relax_optimizer)(_stack(ends), logfile=None)
    stop = _run(opt, config.relax_fmax, config.relax_steps, clock)
    return stop == "converged", int(opt.nsteps)


def _ion_shift(before: Any, after: Any) -> float:
    """Minimum-image distance (Å) the ion (atom 0) moved."""
    frac = np.linalg.solve(before.cell.array.T, after.positions[0] - before.positions[0])
    return float(np.linalg.norm(frac_min_image(frac) @ before.cell.array))


def _relaxed_ends(path: MigrationPath, potential: Any, config: NebConfig, clock: _Clock
                  ) -> tuple[Any, Any, dict]:
    from ase.constraints import FixAtoms

    start = [_to_atoms(path.initial()), _to_atoms(path.final())]
    info: dict = {"relaxed": False, "relax_converged": None, "relax_steps": 0, "ion_shift": 0.0, "ion_held": False}
    if not (config.relax and config.relax_steps > 0):
        return start[0], start[1], info
    ends = [a.copy() for a in start]
    conv, steps = _relax(ends, potential, config, clock)
    shifts = [_ion_shift(a, b) for a, b in zip(start, ends)]
    limit = min(1.0, MAX_ION_SHIFT * path.hop_length)
    moved = [k for k, s in enumerate(shifts) if s > limit]
    if moved:
        log.info("ion left its site while relaxing (%.2f Å): relaxed again with the ion held", max(shifts))
        again = [start[k].copy() for k in moved]
        for a in again:
            a.set_constraint(FixAtoms(indices=[0]))
        c2, s2 = _relax(again, potential, config, clock)
        for k, a in zip(moved, again):
            a.set_constraint()
            ends[k] = a
        conv, steps = conv and c2, steps + s2
    info.update(relaxed=True, relax_converged=conv, relax_steps=steps, ion_shift=max(shifts), ion_held=bool(moved))
    return ends[0], ends[1], info


def band_for(path: MigrationPath, config: NebConfig) -> tuple[MigrationPath, list[int]]:
    """The path the NEB runs on and its supercell of the path's cell: the canonical cell's band
    when ``config.cell == "canonical"``, else ``path`` itself (cache keys are of this band)."""
    if config.cell != "canonical":
        return path, [1, 1, 1]
    from hopnet.cells import canonical_from_path

    canon = canonical_from_path(path, min_width=config.min_width)
    return canon.path, list(canon.supercell)


def run_neb(path: MigrationPath, config: NebConfig = NebConfig(), *, id: str = "",
            meta: dict | None = None, cache: Any = None) -> NebResult:
    """Climbing-image NEB of ``path`` with a universal potential; see the module docstring.
    ``cache``: a :class:`hopnet.neb_cache.NebCache`; a band already computed with the same
    potential and settings is read from it (``cached=True``) instead of run again.

    Raises :class:`NebDependencyError` without the potential's package, :class:`HopnetError`
    when ``path`` is not a :class:`MigrationPath` or the potential returns non-finite energies.
    """
    from ase.mep import NEB

    if not isinstance(path, MigrationPath):
        raise PathError(f"run_neb needs a MigrationPath, got {type(path).__name__}")
    potential = _potential(config)
    clock = _Clock(config.time_budget)
    t0, c0 = time.perf_counter(), time.process_time()
    path, supercell = band_for(path, config)
    key = cache.key(path, config, potential.version) if cache is not None else None
    if key is not None:
        record = cache.get(key)
        if record is not None:
            names = {f.name for f in fields(NebResult)}
            return NebResult(**{**{k: v for k, v in record.items() if k in names},
                                "id": id, "meta": dict(meta or {}), "cached": True})
    initial, final, info = _relaxed_ends(path, potential, config, clock)
    relax_s = time.perf_counter() - t0
    n = config.n_images if config.n_images is not None else max(path.n_images, 3)
    images = [initial] + [initial.copy() for _ in range(n - 2)] + [final]
    groups = _attach(potential, images, config.batch)
    neb = NEB(images, k=config.spring, climb=config.climb, method="improvedtangent")
    # positions are unwrapped (the final ion sits at initial + hop vector, the path's image
    # convention), so the straight line needs no minimum image; IDPP's target pair distances do
    neb.interpolate(method="linear", mic=False)
    if config.interpolation == "idpp":
        from ase.mep.neb import idpp_interpolate

        idpp_interpolate(neb, traj=None, log=None, mic=True)
    opt = _optimizer(config.optimizer)(neb, logfile=None)
    stop = _run(opt, config.fmax, config.steps, clock)
    energies = [float(im.get_potential_energy()) for im in images]
    if not all(math.isfinite(e) for e in energies):
        raise HopnetError(f"{config.potential} returned non-finite energies for the {path.ion} hop in "
                          f"{path.host.composition.reduced_formula}")
    f = neb.get_forces()
    max_force = float(np.sqrt((f**2).sum(axis=1)).max()) if len(f) else 0.0
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
        converged=stop == "converged",
        n_steps=int(opt.nsteps),
        max_force=max_force,
        relaxed=info["relaxed"],
        relax_converged=info["relax_converged"],
        relax_steps=info["relax_steps"],
        wall_s=wall,
        hop_length=path.hop_length,
        delta_e=energies[-1] - energies[0],
        stop=stop,
        ion_shift=info["ion_shift"],
        ion_held=info["ion_held"],
        cell=config.cell,
        supercell=supercell,
        potential=potential.version,
        n_calls=sum(g.n_calls for g in groups),
        relax_s=relax_s,
        cpu_s=time.process_time() - c0,
        config=asdict(config),
        meta=dict(meta or {}),
    )
    log.info("%s: barrier %.3f eV (%s, %d steps) in %.1f s", id or result.formula,
             result.barrier, stop, result.n_steps, wall)
    if key is not None:
        cache.put(key, {**result.to_dict(), "id": "", "meta": {}})
    return result


# --------------------------------------------------------------------------- many paths
def read_results(out_jsonl: str | os.PathLike) -> list[dict]:
    """The records of a results file written by :func:`run_neb_many` ([] when absent). A last
    line cut short by an interrupted run is ignored."""
    from hopnet.infra.provenance import read_jsonl

    return read_jsonl(out_jsonl)


def run_neb_many(
    paths: Iterable[tuple[str, MigrationPath] | tuple[str, MigrationPath, dict]],
    config: NebConfig = NebConfig(),
    out_jsonl: str | os.PathLike | None = None,
    cache: Any = None,
) -> list[NebResult]:
    """Run :func:`run_neb` on ``(id, path[, meta])`` items; append one JSON line per finished
    path to ``out_jsonl`` (flushed and fsynced, with the hopnet version and git commit) and skip
    ids already there (resume). A path whose NEB fails gives an error row (``{"id", "error",
    ...}``, also returned) instead of stopping the run. Returns the results computed in this
    call. Ids must be unique."""
    from hopnet.infra.provenance import append_jsonl, git_commit, package_version

    provenance = {"hopnet_version": package_version(), "git_commit": git_commit()}
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
        try:
            res = run_neb(path, config, id=pid, meta=meta, cache=cache)
            row = {**res.to_dict(), "provenance": provenance}
        except NebDependencyError:
            raise
        except (HopnetError, ValueError, RuntimeError, IndexError) as exc:  # one path, not the run
            log.warning("%s: failed: %s", pid, exc)
            res = row = {"id": pid, "error": f"{type(exc).__name__}: {exc}", "config": asdict(config),
                         "meta": dict(meta or {}), "provenance": provenance}
        results.append(res)
        if out is not None:
            append_jsonl(out, row)
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
