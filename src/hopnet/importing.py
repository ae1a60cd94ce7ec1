"""A user's own NEB calculations as training data: NEB images -> band entries -> data-set file.

Sources (:func:`read_neb`):

* a VASP NEB folder: image folders ``00 .. NN``; the structure of an inner image is its CONTCAR
  (POSCAR when CONTCAR is missing or empty), of an end image its POSCAR (CONTCAR when there is
  none); the energy of an image is the last ``energy(sigma->0) =`` value of its OUTCAR (the
  energy ASE reports; the last ``free  energy   TOTEN  =`` value when that is missing), read with
  a small regular expression. End folders usually have no OUTCAR: give their energies
  (``end_energies``), otherwise the import stops at "missing energy of image 00";
* an ASE-readable file of the images with their energies (``.traj``, ``.extxyz``, ...): either one
  band (N frames) or an optimiser trajectory of a whole NEB run (steps x N frames), of which the
  last band is taken; N is found where the fixed initial image repeats, or given (``images``).
  ``hopnet neb`` writes energies only (JSON lines), no images: nothing to import there.

Each NEB becomes one band entry (:func:`band_record`) in the migration data set's layout: the
mobile ion is the one atom that moves between the first and the last image (minimum image along
the images); every other atom must stay within ``host_tol`` Å of its initial position in every
image, with the same species, order and cell. As in the data set, atoms 0-4 are the ion on the
straight line from its initial to its final site (equally spaced: the layout every model reads),
followed by the host of the initial image. The NEB's own path, resampled at 5 equal fractions of
its length (piecewise linear through the images), is kept as ``path_frac``. ``target`` is the
barrier max E - E(initial); ``reverse_barrier`` is max E - E(final).

:func:`write_dataset` writes the entries atomically as a JSON (or, by suffix, gzipped JSON) list
that ``hopnet.datasets.load(path=...)``, ``hopnet train/finetune/evaluate --data FILE`` read.
Each entry carries its provenance (hopnet version, git commit, sha256 of every file read).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from hopnet.infra.errors import DataError, PathError, StructureError
from hopnet.infra.integrity import sha256_file

log = logging.getLogger(__name__)

__all__ = ["NebImages", "read_neb", "band_record", "import_neb", "write_dataset", "outcar_energy",
           "HOST_TOLERANCE", "N_BAND_IMAGES"]

#: Å: how far a host atom may move from its initial position in any image (relaxed hosts move)
HOST_TOLERANCE = 0.5
#: ion images at the start of a band, as in the data set
N_BAND_IMAGES = 5
_CELL_TOL = 1e-3  # Å: lattice vectors of all images agree to this
_ENERGY_PATTERNS = (re.compile(r"energy\(sigma->0\)\s*=\s*(\S+)"),
                    re.compile(r"free\s+energy\s+TOTEN\s*=\s*(\S+)"))


@dataclass(frozen=True)
class NebImages:
    """The images of one NEB as read: ``symbols`` (N), ``cell`` (3x3, rows in Å), fractional
    positions ``frac`` (K images x N x 3), ``energies`` (K, eV), ``labels`` naming each image in
    messages, and ``files`` (path -> sha256 of every file read)."""

    source: str
    symbols: tuple[str, ...]
    cell: np.ndarray
    frac: np.ndarray
    energies: np.ndarray
    labels: tuple[str, ...]
    files: dict[str, str]


# --------------------------------------------------------------------------- reading
def outcar_energy(path: str | os.PathLike) -> float:
    """The last ``energy(sigma->0)`` of a VASP OUTCAR (the last ``TOTEN`` if there is none);
    NaN for an unparsable number (VASP prints ``*****`` on overflow)."""
    text = Path(path).read_text(errors="replace")
    for pattern in _ENERGY_PATTERNS:
        found = pattern.findall(text)
        if found:
            try:
                return float(found[-1])
            except ValueError:
                return math.nan
    raise DataError(f"{path}: no energy line (energy(sigma->0) = or free  energy   TOTEN =)")


def _read_atoms(path: Path, **kw: Any) -> Any:
    import ase.io

    try:
        return ase.io.read(path, **kw)
    except Exception as exc:  # ASE raises anything from a bad file: one line
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise StructureError(f"{path}: cannot read the images ({text})") from None


def _vasp_structure(folder: Path, end: bool) -> Path:
    names = ("POSCAR", "CONTCAR") if end else ("CONTCAR", "POSCAR")
    for name in names:
        p = folder / name
        if p.is_file() and p.stat().st_size > 0:
            return p
    raise StructureError(f"{folder}: no CONTCAR or POSCAR")


def _read_vasp(folder: Path) -> tuple[list, list, list[str], dict[str, str]]:
    """(ASE images, energies or None, labels, file hashes) of a VASP NEB folder."""
    dirs = sorted((d for d in folder.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
    if not dirs:
        raise DataError(f"{folder}: not a VASP NEB folder (no image folders 00, 01, ...)")
    if [int(d.name) for d in dirs] != list(range(len(dirs))):
        raise DataError(f"{folder}: image folders must run 00, 01, ... without gaps, found "
                        f"{' '.join(d.name for d in dirs)}")
    images, energies, files = [], [], {}
    for k, d in enumerate(dirs):
        p = _vasp_structure(d, end=k in (0, len(dirs) - 1))
        images.append(_read_atoms(p, format="vasp"))
        files[str(p)] = sha256_file(p)
        outcar = d / "OUTCAR"
        energies.append(outcar_energy(outcar) if outcar.is_file() else None)
        if outcar.is_file():
            files[str(outcar)] = sha256_file(outcar)
    return images, energies, [d.name for d in dirs], files


def _frame_energy(atoms: Any) -> float | None:
    results = getattr(atoms.calc, "results", None) or {}
    e = results.get("energy", atoms.info.get("energy"))
    try:
        return None if e is None else float(e)
    except (TypeError, ValueError):
        return math.nan


def _band_length(frames: Sequence[Any]) -> int:
    """Images per band of a file of frames: where the (fixed) initial image first repeats in an
    optimiser trajectory, else all frames (one band)."""
    first = frames[0]
    for k in range(1, len(frames)):
        f = frames[k]
        if len(f) == len(first) and f.get_chemical_symbols() == first.get_chemical_symbols() \
                and np.allclose(f.positions, first.positions, rtol=0, atol=1e-8):
            return k
    return len(frames)


def _read_frames(path: Path, images: int | None) -> tuple[list, list, list[str], dict[str, str]]:
    """(ASE images, energies or None, labels, file hashes) of the last band in an ASE file."""
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        raise DataError(f"{path}: `hopnet neb` results hold energies but no image positions; import "
                        "the images (an ASE .traj/.extxyz of the band, or a VASP NEB folder)")
    frames = _read_atoms(path, index=":")
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise StructureError(f"{path}: no images")
    n = _band_length(frames) if images is None else int(images)
    if n < 1 or len(frames) % n:
        raise DataError(f"{path}: {len(frames)} frames are not whole bands of {n} images")
    band = frames[-n:]
    first = len(frames) - n
    labels = [str(k) if first == 0 else f"{k} (frame {first + k})" for k in range(n)]
    return band, [_frame_energy(a) for a in band], labels, {str(path): sha256_file(path)}


def _fill_ends(energies: list, labels: list[str], end_energies: Sequence[float] | None) -> list:
    if end_energies is None:
        return energies
    if len(end_energies) != 2:
        raise DataError(f"end energies: give two values (initial, final), got {len(end_energies)}")
    out = list(energies)
    for k, given in zip((0, len(out) - 1), end_energies):
        read = out[k]
        if read is not None and math.isfinite(read) and abs(read - float(given)) > 1e-3:
            log.warning("image %s: given energy %.6f eV replaces %.6f eV read from its files",
                        labels[k], float(given), read)
        out[k] = float(given)
    return out


def read_neb(source: str | os.PathLike, *, end_energies: Sequence[float] | None = None,
             images: int | None = None) -> NebImages:
    """Read one NEB (a VASP NEB folder or an ASE file; see the module docstring) and check what
    any band needs: >= 3 images of one atom list and one cell, and a finite energy for each.
    ``end_energies``: (E initial, E final) in eV, used for the end images (over their OUTCARs).
    ``images``: images per band in an ASE file of several bands (default: found)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        atoms, energies, labels, files = _read_vasp(path)
    else:
        atoms, energies, labels, files = _read_frames(path, images)
    where = f"{path}: "
    if len(atoms) < 3:
        raise DataError(f"{where}a NEB needs at least 3 images (both end points and one between), "
                        f"got {len(atoms)}")
    energies = _fill_ends(energies, labels, end_energies)
    for label, e in zip(labels, energies):
        if e is None:
            hint = "; give the end energies (--end-energies)" if label in (labels[0], labels[-1]) else ""
            raise DataError(f"{where}missing energy of image {label}{hint}")
        if not math.isfinite(e):
            raise DataError(f"{where}energy of image {label} is not a finite number ({e})")
    symbols = tuple(atoms[0].get_chemical_symbols())
    cell = np.asarray(atoms[0].cell.array, dtype=float)
    if atoms[0].cell.rank < 3:
        raise StructureError(f"{where}image {labels[0]} has no 3-D cell; a NEB of a crystal is needed")
    for label, a in zip(labels, atoms):
        if tuple(a.get_chemical_symbols()) != symbols:
            what = f"{len(a)} atoms, not {len(symbols)}" if len(a) != len(symbols) else "another species order"
            raise StructureError(f"{where}images do not share a host: image {label} has {what}")
        off = float(np.abs(np.asarray(a.cell.array) - cell).max())
        if off > _CELL_TOL:
            raise StructureError(f"{where}images do not share a host: image {label} has another cell "
                                 f"(lattice vectors differ by {off:.3g} Å)")
    frac = np.stack([np.linalg.solve(cell.T, np.asarray(a.positions, float).T).T for a in atoms])
    return NebImages(str(path), symbols, cell, frac, np.asarray(energies, float), tuple(labels), files)


# --------------------------------------------------------------------------- one band
def _unwrapped(frac: np.ndarray) -> np.ndarray:
    """Fractional positions made continuous along the images (minimum image between neighbours)."""
    steps = np.diff(frac, axis=0)
    steps -= np.round(steps)
    return np.concatenate([frac[:1], frac[:1] + np.cumsum(steps, axis=0)])


def _mobile_ion(neb: NebImages, ion: str | None, host_tol: float) -> int:
    """Index of the one atom that moves from the first to the last image; every other atom stays
    within ``host_tol`` Å of its initial position in every image."""
    u = _unwrapped(neb.frac)
    moved = np.linalg.norm((u - u[0]) @ neb.cell, axis=2)  # (K, N) Å from the initial position
    end = moved[-1]
    m = int(np.argmax(end))
    where = f"{neb.source}: "
    if end[m] <= host_tol:
        raise PathError(f"{where}no atom moves more than {host_tol:g} Å between the first and the last image")
    others = [i for i in np.argsort(-end) if i != m and end[i] > host_tol]
    if others:
        listed = ", ".join(f"{neb.symbols[i]} {i} by {end[i]:.2f} Å" for i in [m, *others[:3]])
        raise PathError(f"{where}more than one atom moves between the first and the last image "
                        f"({listed}); a band has one mobile ion")
    if ion is not None and neb.symbols[m] != ion:
        raise PathError(f"{where}the atom that moves is {neb.symbols[m]} (atom {m}, {end[m]:.2f} Å), not {ion}")
    drift = moved.copy()
    drift[:, m] = 0.0
    k, i = np.unravel_index(int(np.argmax(drift)), drift.shape)
    if drift[k, i] > host_tol:
        raise PathError(f"{where}images do not share a host: atom {i} ({neb.symbols[i]}) is "
                        f"{drift[k, i]:.2f} Å from its initial position in image {neb.labels[k]} "
                        f"(tolerance {host_tol:g} Å)")
    return m


def _resample(points: np.ndarray, cell: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """``n`` points at equal fractions of the length of the polyline through ``points``
    (fractional, unwrapped), and that length (Å)."""
    seg = np.linalg.norm(np.diff(points, axis=0) @ cell, axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, c]) for c in range(3)], axis=1), float(s[-1])


def band_record(neb: NebImages, *, name: str, ion: str | None = None,
                host_tol: float = HOST_TOLERANCE, meta: dict | None = None) -> dict:
    """The data-set record (``sys_name``, ``target``, ``atoms``, ...) of one NEB; ``meta`` keys
    (e.g. xc, source, class) are added as given."""
    from pymatgen.core import Lattice, Structure

    from hopnet.paths import MigrationPath
    from hopnet.structures import to_jarvis

    m = _mobile_ion(neb, ion, host_tol)
    track = _unwrapped(neb.frac)[:, m]
    track = track - np.floor(track[0] + 1e-9)  # initial site in the home cell (-1e-17 stays)
    keep = np.arange(len(neb.symbols)) != m
    host = Structure(Lattice(neb.cell), [s for s, k in zip(neb.symbols, keep) if k], neb.frac[0][keep])
    path = MigrationPath(host, neb.symbols[m], track[0], track[-1], n_images=N_BAND_IMAGES,
                         image_convention="as_given")
    path.validate()
    curve, length = _resample(track, neb.cell, N_BAND_IMAGES)
    e = neb.energies
    top = int(np.argmax(e))
    if top in (0, len(e) - 1):
        log.warning("%s: the highest energy is at an end image (%s): no saddle between", neb.source,
                    neb.labels[top])
    return {
        "sys_name": name,
        "formula": path.initial().composition.formula,
        **(meta or {}),
        "target": float(e[top] - e[0]),
        "reverse_barrier": float(e[top] - e[-1]),
        "energies": [float(x) for x in e],
        "n_source_images": len(e),
        "hop_length": path.hop_length,
        "path_length": length,
        "path_frac": curve.tolist(),
        "source_path": neb.source,
        "atoms": to_jarvis(path.band()),
    }


# --------------------------------------------------------------------------- many
def _name(source: str | os.PathLike) -> str:
    p = Path(source).expanduser().resolve()
    name = p.name.removesuffix(".gz")
    return name if p.is_dir() else (name.rsplit(".", 1)[0] or name)


def import_neb(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    ion: str | None = None,
    *,
    xc: str | None = None,
    source: str | None = None,
    cls: str | None = None,
    names: Sequence[str] | None = None,
    end_energies: Sequence[float] | None = None,
    images: int | None = None,
    host_tol: float = HOST_TOLERANCE,
) -> list[dict]:
    """One data-set record per NEB in ``sources`` (VASP NEB folders and/or ASE files), all read
    and checked before any is returned; the first problem raises one HopnetError line.

    ``ion``: the species that must be the one moving (default: whichever atom moves).
    ``xc``/``source``/``cls``: functional, where the numbers come from, structural class, stored
    as ``xc``/``source``/``class``. ``names``: the ``sys_name`` of each (default: the folder or
    file name, made unique). ``end_energies``, ``images``: see :func:`read_neb`.
    """
    from hopnet.infra.provenance import git_commit, package_version

    srcs = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not srcs:
        raise DataError("no NEB given")
    if end_energies is not None and len(srcs) != 1:
        raise DataError(f"end energies belong to one NEB, got {len(srcs)} sources")
    if names is not None and len(names) != len(srcs):
        raise DataError(f"{len(names)} names for {len(srcs)} NEBs")
    if not (isinstance(host_tol, (int, float)) and math.isfinite(host_tol) and host_tol > 0):
        raise DataError(f"host tolerance must be a positive number of Å, got {host_tol}")
    given = {k: v for k, v in (("xc", xc), ("source", source), ("class", cls)) if v is not None}
    stamp = {"hopnet_version": package_version(), "git_commit": git_commit(), "command": "import-neb"}
    records, seen = [], set()
    for k, src in enumerate(srcs):
        name = names[k] if names is not None else _name(src)
        base, n = name, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        neb = read_neb(src, end_energies=end_energies, images=images)
        rec = band_record(neb, name=name, ion=ion, host_tol=host_tol, meta=given)
        rec["provenance"] = {**stamp, "files": neb.files}
        records.append(rec)
    return records


def write_dataset(entries: Iterable[Any], out: str | os.PathLike) -> Path:
    """Write band records (or :class:`~hopnet.datasets.Entry` objects) to ``out`` (.json, or
    .json.gz gzipped) atomically, after checking that the data-set loader accepts them."""
    from hopnet.datasets.loader import build_entries
    from hopnet.infra.provenance import atomic_write_bytes

    path = Path(out).expanduser()
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a file")
    if not path.name.endswith((".json", ".json.gz")):
        raise DataError(f"{path}: the data-set file must end in .json or .json.gz")
    records = [e if isinstance(e, dict) else {"sys_name": e.id, "target": e.target, "atoms": e.atoms, **e.meta}
               for e in entries]
    if not records:
        raise DataError("no entries to write")
    build_entries(records, "band", path)  # the loader's own checks: ids, atoms, finite targets
    try:
        data = json.dumps(records, allow_nan=False).encode()
    except ValueError:
        raise DataError(f"{path}: an entry holds a non-finite number") from None
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path
