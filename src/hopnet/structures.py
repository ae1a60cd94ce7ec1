"""Crystal structures in and out: pymatgen ``Structure`` is hopnet's in-memory form.

* :func:`to_structure` is the single entry point: it takes a pymatgen ``Structure``, an ASE
  ``Atoms``, a JARVIS ``Atoms`` dict (or a pymatgen ``Structure.as_dict()``) or a path to a
  structure file, and returns a validated ``Structure``.
* :func:`from_jarvis` / :func:`to_jarvis`, :func:`from_ase` / :func:`to_ase`,
  :func:`read_structure` / :func:`write_structure` convert one way each.
* :func:`validate_structure` rejects what is not physical (NaN, absurd cell, overlapping atoms,
  unknown elements, disorder) with a one-line :class:`~hopnet.infra.errors.StructureError`.
* :func:`structure_hash` is a stable key (graph cache).

Units: lengths in Å, volumes in Å^3. Site order is always preserved (bands depend on it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
from pymatgen.core import Element, Lattice, Structure
from pymatgen.core.periodic_table import DummySpecies

from hopnet.infra.errors import StructureError
from hopnet.infra.provenance import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

log = logging.getLogger(__name__)

__all__ = [
    "from_jarvis",
    "to_jarvis",
    "from_ase",
    "to_ase",
    "read_structure",
    "write_structure",
    "to_structure",
    "validate_structure",
    "structure_hash",
]

_JARVIS_KEYS = ("lattice_mat", "coords", "elements")
#: longest lattice vector (Å) and farthest fractional coordinate (cells from the origin cell) a
#: physical structure is given with; the data sets stay below 170 Å and 1.4. Beyond them the
#: numbers are garbage, and a neighbour search over them would need gigabytes.
MAX_LATTICE_LENGTH = 1.0e4
MAX_FRACTIONAL = 1.0e3
# formats pymatgen reads/writes from a string; everything else goes through ASE
_PMG_FORMATS = {"cif", "poscar", "cssr", "json", "yaml", "xsf", "mcsqs", "res"}
_FMT_ALIASES = {"vasp": "poscar", "contcar": "poscar", "pmg": "json", "pymatgen": "json"}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    return first or type(exc).__name__


def _check_symbols(symbols: Iterable[str], what: str) -> list[str]:
    out = []
    for i, sym in enumerate(symbols):
        sym = str(sym)
        if not Element.is_valid_symbol(sym):
            raise StructureError(f"{what}: unknown element {sym!r} at site {i}")
        out.append(sym)
    return out


# --------------------------------------------------------------------------- JARVIS dicts
def from_jarvis(d: dict) -> Structure:
    """A JARVIS ``Atoms`` dict -> ``Structure`` (no validation; see :func:`to_structure`).

    ``lattice_mat`` rows are the lattice vectors (Å); ``coords`` are Cartesian (Å) when
    ``cartesian`` is true, fractional otherwise (default false). Coordinates are kept exactly as
    given (not wrapped into the cell). ``abc``, ``angles`` and ``props`` are ignored on input.
    """
    if not isinstance(d, dict):
        raise StructureError(f"JARVIS atoms dict expected, got {type(d).__name__}")
    missing = [k for k in _JARVIS_KEYS if k not in d]
    if missing:
        raise StructureError(f"JARVIS atoms dict: missing key {missing[0]!r}")
    try:
        lattice = np.asarray(d["lattice_mat"], dtype=float)
        coords = np.asarray(d["coords"], dtype=float)
    except (TypeError, ValueError) as exc:
        raise StructureError(f"JARVIS atoms dict: non-numeric lattice or coords ({_one_line(exc)})") from None
    if isinstance(d["elements"], (str, bytes, dict)) or not isinstance(d["elements"], Iterable):
        raise StructureError(
            f"JARVIS atoms dict: elements must be a list of element symbols, got {type(d['elements']).__name__}"
        )
    elements = list(d["elements"])
    if lattice.shape != (3, 3):
        raise StructureError(f"JARVIS atoms dict: lattice_mat has shape {lattice.shape}, expected (3, 3)")
    if coords.size == 0:
        coords = coords.reshape(0, 3)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise StructureError(f"JARVIS atoms dict: coords has shape {coords.shape}, expected (N, 3)")
    if len(elements) != len(coords):
        raise StructureError(
            f"JARVIS atoms dict: {len(elements)} elements but {len(coords)} coordinates"
        )
    symbols = _check_symbols(elements, "JARVIS atoms dict")
    try:
        return Structure(
            Lattice(lattice), symbols, coords, coords_are_cartesian=bool(d.get("cartesian", False))
        )
    except np.linalg.LinAlgError:  # Cartesian -> fractional needs the inverse
        raise StructureError(
            "JARVIS atoms dict: Cartesian coordinates in a degenerate cell (lattice vectors are linearly dependent)"
        ) from None


def to_jarvis(s: Structure, cartesian: bool = False) -> dict:
    """``Structure`` -> JARVIS ``Atoms`` dict (plain lists, JSON-ready; same keys as the data sets).

    Coordinates are fractional unless ``cartesian`` (then Å). Site properties are not kept.
    """
    coords = s.cart_coords if cartesian else s.frac_coords
    return {
        "lattice_mat": s.lattice.matrix.tolist(),
        "coords": np.asarray(coords, dtype=float).reshape(-1, 3).tolist(),
        "elements": [species_symbol(sp) for sp in s.species],
        "abc": [float(x) for x in s.lattice.abc],
        "angles": [float(x) for x in s.lattice.angles],
        "cartesian": bool(cartesian),
        "props": [""] * len(s),
    }


def species_symbol(sp: Any) -> str:
    """Element symbol of a pymatgen species, element or plain string (``Li+`` -> ``Li``)."""
    sym = getattr(sp, "symbol", None)
    if sym is None:
        sym = getattr(getattr(sp, "element", None), "symbol", None)
    return str(sym if sym is not None else sp)


# --------------------------------------------------------------------------- ASE
def from_ase(atoms: "Atoms") -> Structure:
    """ASE ``Atoms`` -> ``Structure`` (fractional coordinates kept unwrapped).

    The cell is taken as fully periodic; an ``Atoms`` without a 3D cell is an error.
    """
    cell = np.asarray(atoms.cell.array, dtype=float)
    if atoms.cell.rank < 3:
        raise StructureError(f"ASE Atoms has no 3D cell (cell rank {atoms.cell.rank}); hopnet needs a periodic crystal")
    symbols = _check_symbols(atoms.get_chemical_symbols(), "ASE Atoms")
    try:
        frac = atoms.cell.scaled_positions(atoms.positions)
    except np.linalg.LinAlgError:  # ASE's rank counts non-zero vectors, not independent ones
        raise StructureError("ASE Atoms: degenerate cell (lattice vectors are linearly dependent)") from None
    return Structure(Lattice(cell), symbols, frac)


def to_ase(s: Structure) -> "Atoms":
    """``Structure`` -> ASE ``Atoms`` (periodic in 3D, same cell, order and positions)."""
    from ase import Atoms

    return Atoms(
        symbols=[species_symbol(sp) for sp in s.species],
        cell=s.lattice.matrix.copy(),
        scaled_positions=np.asarray(s.frac_coords, dtype=float).reshape(-1, 3),
        pbc=True,
    )


# --------------------------------------------------------------------------- files
def _guess_format(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(".cif"):
        return "cif"
    if name.endswith(".json"):
        return "json"
    if name.endswith((".vasp", ".poscar")) or "poscar" in name or "contcar" in name:
        return "poscar"
    return None


def _reorder_cif_like_file(s: Structure, path: Path) -> Structure:
    """pymatgen groups CIF sites by species; put them back in file order when that is defined
    (one data block, unique labels, no symmetry expansion)."""
    from pymatgen.io.cif import CifFile

    try:
        blocks = list(CifFile.from_file(str(path)).data.values())
    except Exception:  # the structure was read; ordering is a nicety
        return s
    if len(blocks) != 1:
        return s
    labels = blocks[0].data.get("_atom_site_label")
    if not isinstance(labels, list) or len(labels) != len(s) or len(set(labels)) != len(labels):
        return s
    have = [getattr(site, "label", None) for site in s]
    if sorted(map(str, have)) != sorted(labels):
        return s
    pos = {lab: i for i, lab in enumerate(have)}
    order = [pos[lab] for lab in labels]
    return Structure.from_sites([s[i] for i in order])


def _read_json(path: Path) -> Structure:
    from monty.io import zopen

    with zopen(str(path), "rt") as fh:
        obj = json.load(fh)
    if isinstance(obj, dict) and "lattice_mat" in obj:
        return from_jarvis(obj)
    if isinstance(obj, dict) and "atoms" in obj and isinstance(obj["atoms"], dict):
        return from_jarvis(obj["atoms"])  # a data-set entry
    return Structure.from_dict(obj)


def read_structure(path: str | os.PathLike, fmt: str | None = None) -> Structure:
    """Read a structure file (no validation; see :func:`to_structure`).

    Anything pymatgen's ``Structure.from_file`` reads (CIF, POSCAR/CONTCAR/``*.vasp``,
    pymatgen JSON, ...), a JSON file holding a JARVIS ``Atoms`` dict, or anything ASE reads
    (``fmt`` is then an ASE format name, e.g. ``"extxyz"``). ``fmt`` ``None`` guesses from the
    name. Site order is kept as in the file. Raises :class:`StructureError` naming the file and
    the reason when the file is missing or cannot be parsed.
    """
    p = Path(path)
    if not p.exists():
        raise StructureError(f"cannot read structure from {p}: file not found")
    if p.is_dir():
        raise StructureError(f"cannot read structure from {p}: is a directory")
    key = (fmt or "").lower()
    key = _FMT_ALIASES.get(key, key) or _guess_format(p) or ""
    if key in ("xyz", "extxyz") or p.suffix.lower() in (".xyz", ".extxyz"):
        _check_xyz_count(p)
    errors: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if key in ("json", "jarvis"):
            try:
                return _read_json(p)
            except StructureError as exc:
                raise StructureError(f"cannot read structure from {p}: {exc}") from None
            except Exception as exc:
                raise StructureError(f"cannot read structure from {p}: {_one_line(exc)}") from None
        if key in _PMG_FORMATS or not key:
            try:
                s = _read_with_pymatgen(p, key)
                _log_warnings(caught, p)
                return s
            except Exception as exc:
                errors.append(_one_line(exc))
        # ASE: formats pymatgen does not know, and a second opinion on those it failed on
        ase_fmt = {"poscar": "vasp"}.get(key, key) or None
        try:
            import ase.io

            atoms = ase.io.read(str(p), format=ase_fmt)
            if isinstance(atoms, list):
                atoms = atoms[-1]
            s = from_ase(atoms)
            _log_warnings(caught, p)
            return s
        except StructureError as exc:
            errors.append(str(exc))
        except Exception as exc:
            errors.append(_one_line(exc))
    # an unnamed format pymatgen did not recognise is ASE's to explain
    reason = errors[-1] if not key else errors[0]
    raise StructureError(f"cannot read structure from {p}: {reason}")


def _check_xyz_count(p: Path) -> None:
    """An (ext)xyz file whose first line declares more atoms than the file has lines is refused
    before a reader allocates for them (``10000000`` alone took ASE ~10 s)."""
    try:
        with open(p, "rb") as fh:
            first = fh.readline(64).strip()
            if not first.isdigit():
                return
            declared = int(first)
            lines = 1 + sum(1 for _ in fh)
    except OSError:
        return
    if declared + 1 > lines:
        raise StructureError(f"cannot read structure from {p}: the first line declares {declared} atoms, "
                             f"the file has {max(lines - 2, 0)} atom lines")


def _read_with_pymatgen(p: Path, key: str) -> Structure:
    if key:
        from monty.io import zopen

        with zopen(str(p), "rt") as fh:
            s = Structure.from_str(fh.read(), fmt=key)  # type: ignore[arg-type]
    else:
        s = Structure.from_file(str(p))
    if key == "cif":
        s = _reorder_cif_like_file(s, p)
    return s if type(s) is Structure else Structure.from_sites(s)


def _log_warnings(caught: list, p: Path) -> None:
    for w in caught:
        log.debug("reading %s: %s", p, w.message)


def write_structure(s: Structure, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write ``s`` atomically (readers see the old file or the whole new one, never half).

    Formats: ``"cif"``, ``"poscar"`` (also ``vasp``; 16 significant figures), ``"json"`` (a
    JARVIS ``Atoms`` dict, fractional), or any ASE format name. ``fmt`` ``None`` guesses from
    the name (``*.cif``, ``POSCAR``/``CONTCAR``/``*.vasp``, ``*.json``, else ASE's guess).
    Site order is kept. Returns the path written.
    """
    p = Path(path)
    key = (fmt or "").lower()
    key = _FMT_ALIASES.get(key, key) or _guess_format(p) or ""
    try:
        if key == "cif":
            from pymatgen.io.cif import CifWriter

            atomic_write_text(p, str(CifWriter(s)))
        elif key == "poscar":
            from pymatgen.io.vasp import Poscar

            atomic_write_text(p, Poscar(_plain(s)).get_str(significant_figures=16))
        elif key in ("json", "jarvis"):
            atomic_write_text(p, json.dumps(to_jarvis(s)))
        else:
            _write_with_ase(s, p, fmt)
    except StructureError:
        raise
    except Exception as exc:
        raise StructureError(f"cannot write structure to {p}: {_one_line(exc)}") from None
    return p


def _plain(s: Structure) -> Structure:
    """A copy without site properties (Poscar interprets some of them)."""
    return Structure(s.lattice, s.species, s.frac_coords)


def _write_with_ase(s: Structure, p: Path, fmt: str | None) -> None:
    import ase.io
    from ase.io.formats import filetype

    ase_fmt = fmt or filetype(str(p), read=False)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        ase.io.write(str(tmp), to_ase(s), format=ase_fmt)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------- dispatch
def to_structure(obj: Any, validate: bool = True, **validate_kwargs: Any) -> Structure:
    """The single entry point: anything structure-like -> a (validated) pymatgen ``Structure``.

    Accepts a pymatgen ``Structure`` (copied), an ASE ``Atoms``, a JARVIS ``Atoms`` dict, a
    pymatgen ``Structure.as_dict()`` dict, or a ``str``/``PathLike`` path to a structure file.
    With ``validate`` (default) the result goes through :func:`validate_structure`, which gets
    ``validate_kwargs`` (``min_distance``, ``max_atoms``, ``ignore_pairs_within``).
    """
    if isinstance(obj, Structure):
        s = obj.copy()
    elif isinstance(obj, dict):
        if "lattice_mat" in obj:
            s = from_jarvis(obj)
        elif obj.get("@class") == "Structure" or ("lattice" in obj and "sites" in obj):
            try:
                s = Structure.from_dict(obj)
            except Exception as exc:
                raise StructureError(f"bad pymatgen structure dict: {_one_line(exc)}") from None
        else:
            keys = ", ".join(sorted(map(str, obj))[:6])
            raise StructureError(f"dict is neither a JARVIS atoms dict nor a pymatgen structure (keys: {keys})")
    elif isinstance(obj, (str, os.PathLike)):
        s = read_structure(obj)
    elif _is_ase_atoms(obj):
        s = from_ase(obj)
    elif _is_istructure(obj):
        s = Structure.from_sites(obj)
    else:
        raise StructureError(f"cannot make a structure from a {type(obj).__name__}")
    if validate:
        validate_structure(s, **validate_kwargs)
    return s


def _is_ase_atoms(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    if not mod.startswith("ase"):
        return False
    from ase import Atoms

    return isinstance(obj, Atoms)


def _is_istructure(obj: Any) -> bool:
    from pymatgen.core import IStructure

    return isinstance(obj, IStructure)


# --------------------------------------------------------------------------- validation
def validate_structure(
    s: Structure,
    min_distance: float = 0.5,
    max_atoms: int | None = None,
    ignore_pairs_within: Iterable[int] | None = None,
    volume_per_atom: tuple[float, float] = (1.0, 1.0e4),
) -> None:
    """Raise :class:`StructureError` if ``s`` is not a physical, ordered crystal.

    Checks, in order: at least one atom (and at most ``max_atoms``); a finite, non-degenerate
    lattice with vectors up to :data:`MAX_LATTICE_LENGTH` Å (:func:`check_cell`); finite
    coordinates; ordered sites of real elements; volume per atom within ``volume_per_atom``
    (Å^3); coordinates up to :data:`MAX_FRACTIONAL` cells out; no two atoms (periodic images included,
    an atom and its own image too) closer than ``min_distance`` Å. Pairs whose both sites are in
    ``ignore_pairs_within`` are not checked (e.g. ``range(5)`` for the superimposed ion images of
    a band). The message names the closest offending pair (in a cell with a lattice vector
    shorter than ``min_distance``: the first checked atom and its own image).
    """
    n = len(s)
    if n == 0:
        raise StructureError("empty structure: no atoms")
    if max_atoms is not None and n > max_atoms:
        raise StructureError(f"too many atoms: {n} (maximum {max_atoms})")
    matrix = np.asarray(s.lattice.matrix, dtype=float)
    check_cell(matrix)
    frac = np.asarray(s.frac_coords, dtype=float)
    bad = ~np.all(np.isfinite(frac), axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise StructureError(f"coordinates of site {i} ({_site_label(s, i)}) contain NaN or infinite values")
    if not s.is_ordered:
        i = next(k for k, site in enumerate(s) if not site.is_ordered)
        raise StructureError(f"disordered site {i} ({_site_comp(s, i)}): partial occupancies are not supported")
    for i, sp in enumerate(s.species):
        if isinstance(sp, DummySpecies) or not Element.is_valid_symbol(species_symbol(sp)):
            raise StructureError(f"unknown element {species_symbol(sp)!r} at site {i}")
    volume = abs(float(np.linalg.det(matrix)))
    lo, hi = volume_per_atom
    per_atom = volume / n
    if not lo <= per_atom <= hi:
        raise StructureError(
            f"absurd cell volume: {per_atom:.3g} Å^3 per atom (allowed {lo:g} to {hi:g} Å^3 per atom)"
        )
    _check_extent(s, frac)
    if min_distance > 0:
        _check_overlaps(s, float(min_distance), ignore_pairs_within)


def perpendicular_widths(lattice: np.ndarray) -> np.ndarray:
    """Distances (Å) between opposite faces of the cell, across a, b and c: volume / face area."""
    lattice = np.asarray(lattice, dtype=np.float64)
    volume = abs(float(np.linalg.det(lattice)))
    areas = np.linalg.norm(np.cross(lattice[[1, 2, 0]], lattice[[2, 0, 1]]), axis=1)
    return volume / areas


def check_cell(matrix: np.ndarray, name: str = "") -> None:
    """Raise :class:`StructureError` unless the lattice ``matrix`` (rows are vectors) is finite,
    has vectors up to :data:`MAX_LATTICE_LENGTH` Å and a non-zero volume: what every distance in
    the cell needs. ``name`` (e.g. "host") prefixes the messages."""
    label = f"{name} " if name else ""
    matrix = np.asarray(matrix, dtype=float)
    if not np.all(np.isfinite(matrix)):
        raise StructureError(f"{label}lattice contains NaN or infinite values")
    with np.errstate(over="ignore"):
        lengths = np.linalg.norm(matrix, axis=1)
    k = int(np.argmax(lengths))
    if lengths[k] > MAX_LATTICE_LENGTH:
        raise StructureError(f"absurd {label}cell: lattice vector {'abc'[k]} is {lengths[k]:.3g} Å long "
                             f"(maximum {MAX_LATTICE_LENGTH:g} Å)")
    volume = abs(float(np.linalg.det(matrix)))
    if not volume > 1e-8:
        raise StructureError(
            f"degenerate {label}cell: volume {volume:.3g} Å^3 (lattice vectors are linearly dependent)"
        )


def _check_extent(s: Structure, frac: np.ndarray) -> None:
    """Coordinates up to :data:`MAX_FRACTIONAL` cells out (a cell of sane volume can still be
    written absurdly skewed; the lattice vector lengths are :func:`check_cell`'s)."""
    far = np.abs(frac).max(axis=1)
    i = int(np.argmax(far))
    if far[i] > MAX_FRACTIONAL:
        raise StructureError(
            f"site {i} ({_site_label(s, i)}) lies {far[i]:.3g} cells outside the unit cell (maximum {MAX_FRACTIONAL:g})"
        )


def _site_comp(s: Structure, i: int) -> str:
    return s[i].species.formula


def _site_label(s: Structure, i: int) -> str:
    return species_symbol(s.species[i]) if s[i].is_ordered else _site_comp(s, i)


def _check_overlaps(s: Structure, min_distance: float, ignore: Iterable[int] | None) -> None:
    from pymatgen.optimization.neighbors import find_points_in_spheres

    mask = np.zeros(len(s), dtype=bool)
    if ignore is not None:
        idx = np.fromiter((int(i) for i in ignore), dtype=np.int64)
        mask[idx[(idx >= 0) & (idx < len(s))]] = True
    if mask.all():
        return
    # search the LLL-reduced cell with the coordinates wrapped into it: the same distances (and
    # site order), at the cost of the crystal, not of a skewed cell or far-out coordinates
    matrix = np.ascontiguousarray(s.lattice.get_lll_reduced_lattice().matrix, dtype=float)
    shortest = float(np.linalg.norm(matrix, axis=1).min())
    if shortest < min_distance:  # every atom is on its own image; a search would scan ~1/shortest cells
        i = int(np.argmin(mask))  # the first atom that is checked
        raise StructureError(
            f"overlapping atoms: site {i} ({_site_label(s, i)}) is {shortest:.2f} Å from its own periodic image "
            f"(minimum {min_distance:g} Å)"
        )
    cart = np.ascontiguousarray((s.lattice.get_lll_frac_coords(s.frac_coords) % 1.0) @ matrix)
    centre, neighbour, _, dist = find_points_in_spheres(
        cart, cart, r=min_distance, pbc=np.ones(3, dtype=np.int64), lattice=matrix, tol=1e-8
    )
    # the search finds an atom's own periodic images too; drop only the atom itself (offset 0)
    keep = ~((centre == neighbour) & (dist <= 1e-8))
    keep &= dist < min_distance
    keep &= ~(mask[centre] & mask[neighbour])
    if not keep.any():
        return
    centre, neighbour, dist = centre[keep], neighbour[keep], dist[keep]
    k = int(np.argmin(dist))
    i, j = sorted((int(centre[k]), int(neighbour[k])))
    if i == j:
        raise StructureError(
            f"overlapping atoms: site {i} ({_site_label(s, i)}) is {dist[k]:.2f} Å from its own periodic image "
            f"(minimum {min_distance:g} Å)"
        )
    raise StructureError(
        f"overlapping atoms: sites {i} ({_site_label(s, i)}) and {j} ({_site_label(s, j)}) are "
        f"{dist[k]:.2f} Å apart (minimum {min_distance:g} Å)"
    )


# --------------------------------------------------------------------------- hashing
def structure_hash(s: Structure, decimals: int = 6, include_site_properties: bool = True) -> str:
    """A stable sha256 (hex) of lattice (Å), species, fractional coordinates and, by default,
    site properties, all numbers rounded to ``decimals`` decimals. Used as a graph-cache key.

    Coordinates are hashed as given (not wrapped into the cell), so the key is conservative:
    the same key means the same numbers, and the order of sites matters.
    """
    h = hashlib.sha256()
    h.update(b"hopnet.structure/1\n")
    h.update(_rounded_bytes(s.lattice.matrix, decimals))
    h.update(("\n".join(str(sp) for sp in s.species) + "\n").encode())
    h.update(_rounded_bytes(s.frac_coords, decimals))
    if include_site_properties:
        for key in sorted(s.site_properties):
            values = s.site_properties[key]
            h.update(f"\n{key}=".encode())
            try:
                arr = np.asarray(values, dtype=float)
            except (TypeError, ValueError):
                h.update(json.dumps(values, default=str, sort_keys=True).encode())
            else:
                h.update(str(arr.shape).encode())
                h.update(_rounded_bytes(arr, decimals))
    return h.hexdigest()


def _rounded_bytes(a: Any, decimals: int) -> bytes:
    arr = np.round(np.asarray(a, dtype=float), decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return np.ascontiguousarray(arr, dtype="<f8").tobytes()
