"""Universal interatomic potentials behind one interface, evaluated a batch of structures at a time.

:class:`Potential` maps a list of ASE ``Atoms`` to their total energies (eV) and forces (eV/Å)
in one call. Two backbones ship their weights inside their PyPI wheels and so run offline:

* ``chgnet``  -- CHGNet (``pip install chgnet``), the structures batched into one graph;
* ``sevennet`` -- SevenNet-0 (``pip install sevenn``), through its ASE calculator.

:class:`BatchedImages` gives each structure of a group (the images of a NEB band, the two end
points of a relaxation) its own ASE calculator; the first one asked evaluates every structure
of the group whose positions changed, in one potential call, and the others read the result.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from hopnet.infra.errors import HopnetError

__all__ = ["Potential", "ChgnetPotential", "SevennetPotential", "load_potential", "BatchedImages",
           "PotentialDependencyError", "BACKBONES"]


MISSING_CHGNET = "hopnet neb needs CHGNet: pip install 'hopnet[neb]'"
MISSING_SEVENNET = "the sevennet potential needs SevenNet-0: pip install sevenn"


class PotentialDependencyError(HopnetError, ImportError):
    """The package of a universal potential is not installed."""


class Potential(ABC):
    """A universal potential: ``evaluate(atoms_list) -> (energies [n], [forces (n_i, 3)])``."""

    name: str = ""

    @property
    @abstractmethod
    def version(self) -> str:
        """Backbone package and model version, recorded with every result."""

    @abstractmethod
    def evaluate(self, atoms: Sequence[Any]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Total energies (eV) and forces (eV/Å) of every structure, in one batched call."""


class ChgnetPotential(Potential):
    """CHGNet (energies and forces only; no stress, no magnetic moments)."""

    name = "chgnet"

    def __init__(self, model: str = "0.3.0", device: str = "cpu") -> None:
        try:
            import chgnet
            from chgnet.model import CHGNet
        except ImportError:
            raise PotentialDependencyError(MISSING_CHGNET) from None
        try:
            # CHGNet.load prints a banner on stdout even with verbose=False: keep stdout for results
            with contextlib.redirect_stdout(sys.stderr):
                self.model = CHGNet.load(model_name=model, use_device=device, verbose=False)
        except (ValueError, FileNotFoundError, KeyError) as exc:
            raise HopnetError(f"cannot load CHGNet model {model!r}: {exc}") from None
        self.model.eval()
        self.device = device
        self._version = f"chgnet {getattr(chgnet, '__version__', '?')} model {model}"

    @property
    def version(self) -> str:
        return self._version

    def _chunks(self, sizes: list[int]) -> list[list[int]]:
        """Consecutive structures grouped into forward passes (see :data:`CPU_BATCH_ATOMS`)."""
        if str(self.device) != "cpu":
            return [list(range(len(sizes)))]
        groups: list[list[int]] = []
        total = 0
        for k, n in enumerate(sizes):
            if not groups or total + n > self.CPU_BATCH_ATOMS:
                groups.append([])
                total = 0
            groups[-1].append(k)
            total += n
        return groups

    #: on a CPU, structures are run together only up to this many atoms per forward pass: one
    #: core gains from batching small cells (3 x 13 atoms: 1.4x) and loses on large ones
    #: (3 x 111 atoms: 0.86x, more memory traffic per matrix product); a GPU takes them all at once
    CPU_BATCH_ATOMS = 100

    def evaluate(self, atoms: Sequence[Any]) -> tuple[np.ndarray, list[np.ndarray]]:
        from pymatgen.io.ase import AseAtomsAdaptor

        with warnings.catch_warnings():  # CHGNet's own "tensor to scalar" UserWarning
            warnings.simplefilter("ignore", UserWarning)
            graphs = [self.model.graph_converter(AseAtomsAdaptor.get_structure(a)).to(self.device) for a in atoms]
            out = []
            for chunk in self._chunks([len(a) for a in atoms]):
                res = self.model.predict_graph([graphs[k] for k in chunk], task="ef", batch_size=len(chunk))
                out.extend([res] if isinstance(res, dict) else res)
        energies = np.array([float(np.asarray(o["e"]).reshape(-1)[0]) * (len(a) if self.model.is_intensive else 1)
                             for o, a in zip(out, atoms)])
        forces = [np.asarray(o["f"], dtype=float).reshape(len(a), 3) for o, a in zip(out, atoms)]
        return energies, forces


class SevennetPotential(Potential):
    """SevenNet-0 through its ASE calculator (one structure at a time inside the call)."""

    name = "sevennet"

    def __init__(self, model: str = "7net-0", device: str = "cpu") -> None:
        try:
            import sevenn
            from sevenn.calculator import SevenNetCalculator
        except ImportError:
            raise PotentialDependencyError(MISSING_SEVENNET) from None
        with contextlib.redirect_stdout(sys.stderr):
            self.calc = SevenNetCalculator(model, device=device)
        self._version = f"sevenn {getattr(sevenn, '__version__', '?')} model {model}"

    @property
    def version(self) -> str:
        return self._version

    def evaluate(self, atoms: Sequence[Any]) -> tuple[np.ndarray, list[np.ndarray]]:
        energies, forces = [], []
        for a in atoms:
            b = a.copy()
            b.calc = self.calc
            energies.append(float(b.get_potential_energy()))
            forces.append(np.asarray(b.get_forces(), dtype=float))
        return np.array(energies), forces


BACKBONES = {"chgnet": ChgnetPotential, "sevennet": SevennetPotential}
_LOADED: dict[tuple[str, str, str], Potential] = {}


def load_potential(name: str = "chgnet", model: str | None = None, device: str = "cpu") -> Potential:
    """The named potential (cached per process). ``model``: the backbone's model version
    (default: CHGNet 0.3.0, SevenNet ``7net-0``)."""
    if name not in BACKBONES:
        raise HopnetError(f"potential {name!r} is not one of {', '.join(BACKBONES)}")
    cls = BACKBONES[name]
    model = model or {"chgnet": "0.3.0", "sevennet": "7net-0"}[name]
    key = (name, model, device)
    if key not in _LOADED:
        _LOADED[key] = cls(model, device)  # type: ignore[call-arg]
    return _LOADED[key]


class BatchedImages:
    """A group of ASE ``Atoms`` evaluated together: ``attach()`` gives each its calculator."""

    def __init__(self, potential: Potential, images: Sequence[Any]) -> None:
        self.potential = potential
        self.images = list(images)
        self._pos: list[np.ndarray | None] = [None] * len(self.images)
        self._res: list[tuple[float, np.ndarray] | None] = [None] * len(self.images)
        self.n_calls = 0
        self.n_evaluations = 0

    def attach(self) -> "BatchedImages":
        for k, im in enumerate(self.images):
            im.calc = _GroupCalculator(self, k)
        return self

    def result(self, k: int) -> tuple[float, np.ndarray]:
        stale = [i for i, im in enumerate(self.images)
                 if self._pos[i] is None or not np.array_equal(self._pos[i], im.positions)]
        if k in stale:
            energies, forces = self.potential.evaluate([self.images[i] for i in stale])
            if not np.all(np.isfinite(energies)) or not all(np.all(np.isfinite(f)) for f in forces):
                raise HopnetError(f"{self.potential.name} returned non-finite energies or forces")
            for i, e, f in zip(stale, energies, forces):
                self._pos[i] = self.images[i].positions.copy()
                self._res[i] = (float(e), f)
            self.n_calls += 1
            self.n_evaluations += len(stale)
        return self._res[k]  # type: ignore[return-value]


class _GroupCalculator(Calculator):
    """Energy and forces of structure ``k`` of a :class:`BatchedImages` group."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, group: BatchedImages, k: int) -> None:
        super().__init__()
        self.group, self.k = group, k

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.group.result(self.k)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces.copy()}
