"""The migration path: a host crystal, a mobile ion and the two sites it hops between.

Band layout (as in the data set, see ``$HOPNET_DATA_DIR/README.md``): atoms ``0..n-1`` are the
ion's ``n`` images, linearly interpolated from the initial site (atom 0) to the final site
(atom ``n-1``); the host atoms follow. Hence

* ``initial()`` = band without atoms ``1..n-1``;
* ``final()``   = band without atoms ``0..n-2`` (host held fixed);
* ``delta()``   = ``initial()`` with a per-site ``displacement`` (Å): the hop vector on the ion,
  zero on every host atom (the input of "Model 2").

Which periodic image of the final site the ion goes to is fixed by ``image_convention``:

* ``"fractional"`` (default; the data set's convention): each fractional component of
  ``final - initial`` is wrapped into [-0.5, 0.5].
* ``"cartesian"``: the shortest Cartesian vector among all lattice translations of
  ``final - initial``. In skewed cells this can differ from ``"fractional"``: 30 of the 559
  training bands would change (most are ties at half a lattice vector; in e.g. Na7P3Se11 the
  data-set path is 6.43 Å where a 4.91 Å image exists).
* ``"as_given"``: ``final - initial`` exactly as given (``final`` is the image meant);
  :meth:`MigrationPath.from_band` uses it so that a band round-trips exactly.

Coordinates are fractional unless a name says Cartesian (Å).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from pymatgen.core import Element, Structure

from hopnet.infra.errors import HopnetError, PathError, StructureError
from hopnet.structures import (
    check_cell,
    species_symbol,
    from_jarvis,
    to_jarvis,
    to_structure,
    validate_structure,
)

log = logging.getLogger(__name__)

__all__ = ["MigrationPath", "IMAGE_CONVENTIONS"]

IMAGE_CONVENTIONS = ("fractional", "cartesian", "as_given")
_COINCIDE_TOL = 1e-3  # Å: end points closer than this (after minimum image) are the same site
_DICT_FORMAT = "hopnet.MigrationPath"
_DICT_VERSION = 1


def frac_min_image(d: np.ndarray) -> np.ndarray:
    """Wrap each fractional component into [-0.5, 0.5] (ties keep their sign)."""
    return d - np.round(d)


def cart_min_image(d: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The lattice translation of fractional ``d`` with the shortest Cartesian length.

    Searches the 5x5x5 translations around the fractional minimum image (enough for any cell
    that is not pathologically skewed); ties keep the fractional minimum image.
    """
    base = frac_min_image(d)
    shifts = np.array(list(itertools.product(range(-2, 3), repeat=3)), dtype=float)
    lengths = np.linalg.norm((base + shifts) @ matrix, axis=1)
    best = int(np.argmin(lengths))
    zero = 62  # index of (0, 0, 0) in the product above
    if lengths[zero] <= lengths[best] + 1e-9:
        return base
    return base + shifts[best]


def as_frac3(x: Any, what: str, expected: str = "3 finite fractional coordinates") -> np.ndarray:
    """``x`` as a float array of 3 finite fractional coordinates; otherwise one
    :class:`PathError` line "``what`` must be ``expected``, got ``x``"."""
    try:
        a = np.array(x, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise PathError(f"{what} must be {expected}, got {x!r}") from None
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise PathError(f"{what} must be {expected}, got {x!r}")
    return a


def _as_frac3(x: Any, name: str) -> np.ndarray:
    return as_frac3(x, f"{name} site", "3 fractional coordinates (no NaN or infinite values)")


def _check_ion(ion: Any) -> None:
    if not isinstance(ion, str) or not Element.is_valid_symbol(ion):
        raise PathError(f"ion {ion!r} is not an element symbol")


def _check_n_images(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise PathError(f"n_images must be an integer, got {n!r}")
    if n < 2:
        raise PathError(f"n_images must be at least 2 (both end points), got {n}")
    return int(n)


@dataclass(eq=False, repr=False)
class MigrationPath:
    """A hop of ``ion`` from ``initial_frac`` to ``final_frac`` (fractional coordinates of
    ``host``'s cell). The end points are fields ``initial_frac``/``final_frac`` because
    :meth:`initial`/:meth:`final` are the end structures.

    ``host`` does not contain the migrating ion at either end site (it is the band minus the
    images). ``n_images`` >= 2 counts both end points. See the module docstring for
    ``image_convention``. Construction checks only what is cheap (ion symbol, shapes, distinct
    end points); :meth:`validate` checks the geometry of the initial and final structures, and
    the ``from_*`` constructors call it by default.
    """

    host: Structure
    ion: str
    initial_frac: np.ndarray
    final_frac: np.ndarray
    n_images: int = 5
    image_convention: str = "fractional"

    def __post_init__(self) -> None:
        if not isinstance(self.host, Structure):
            self.host = to_structure(self.host, validate=False)
        if len(self.host) == 0:
            raise PathError("host has no atoms")
        if not self.host.is_ordered:
            raise PathError("host is disordered (partial occupancies); an ordered host is needed")
        _check_ion(self.ion)
        self.initial_frac = _as_frac3(self.initial_frac, "initial")
        self.final_frac = _as_frac3(self.final_frac, "final")
        self.n_images = _check_n_images(self.n_images)
        check_cell(self.host.lattice.matrix, "host")
        if not isinstance(self.image_convention, str) or self.image_convention not in IMAGE_CONVENTIONS:
            raise PathError(
                f"image_convention {self.image_convention!r} is not one of {', '.join(IMAGE_CONVENTIONS)}"
            )
        with np.errstate(over="ignore", invalid="ignore"):  # huge lattices overflow: caught below
            same = frac_min_image(self.final_frac - self.initial_frac) @ self.host.lattice.matrix
            same_length, length = float(np.linalg.norm(same)), self.hop_length
        if same_length < _COINCIDE_TOL:
            raise PathError(
                f"initial and final sites coincide (after minimum image): "
                f"{np.round(self.initial_frac, 4).tolist()} and {np.round(self.final_frac, 4).tolist()}"
            )
        if not (np.isfinite(same_length) and np.isfinite(length)):
            longest = max(self.host.lattice.abc)
            raise PathError(f"hop length is not finite (host lattice vectors up to {longest:.3g} Å long)")

    # ------------------------------------------------------------------ geometry
    @property
    def lattice_matrix(self) -> np.ndarray:
        """Rows are the lattice vectors (Å)."""
        return np.asarray(self.host.lattice.matrix, dtype=float)

    @property
    def hop_vector_frac(self) -> np.ndarray:
        """Fractional hop vector, from ``initial`` to the final site's image chosen by
        ``image_convention``."""
        d = self.final_frac - self.initial_frac
        if self.image_convention == "fractional":
            return frac_min_image(d)
        if self.image_convention == "cartesian":
            return cart_min_image(d, self.lattice_matrix)
        return d

    @property
    def hop_vector(self) -> np.ndarray:
        """Cartesian hop vector (Å)."""
        return self.hop_vector_frac @ self.lattice_matrix

    @property
    def hop_length(self) -> float:
        """Straight-line hop length (Å)."""
        return float(np.linalg.norm(self.hop_vector))

    def image_frac_coords(self) -> np.ndarray:
        """(n_images, 3) fractional positions ``initial + k/(n-1) * hop_vector_frac``; not wrapped
        into [0, 1), so that band -> path -> band is exact."""
        t = np.arange(self.n_images, dtype=float) / (self.n_images - 1)
        return self.initial_frac[None, :] + t[:, None] * self.hop_vector_frac[None, :]

    def image_cart_coords(self) -> np.ndarray:
        """(n_images, 3) Cartesian positions of the images (Å)."""
        return self.image_frac_coords() @ self.lattice_matrix

    # ------------------------------------------------------------------ structures
    def _with_ion(self, ion_frac: np.ndarray) -> Structure:
        k = len(ion_frac)
        species = [self.ion] * k + list(self.host.species)
        coords = np.vstack([ion_frac, self.host.frac_coords])
        props: dict[str, list] = {"is_mobile": [True] * k + [False] * len(self.host)}
        for key, values in self.host.site_properties.items():
            if key != "is_mobile":
                props[key] = [None] * k + list(values)
        return Structure(self.host.lattice, species, coords, site_properties=props)

    def band(self) -> Structure:
        """The ion at its ``n_images`` positions (atoms ``0..n-1``) followed by the host: the data
        set's layout. Site property ``is_mobile`` is true on the images."""
        return self._with_ion(self.image_frac_coords())

    def initial(self) -> Structure:
        """The band without atoms ``1..n-1``: the ion (index 0) at the initial site, then the host."""
        return self._with_ion(self.image_frac_coords()[:1])

    def final(self) -> Structure:
        """The band without atoms ``0..n-2``: the ion (index 0) at the final site, then the host."""
        return self._with_ion(self.image_frac_coords()[-1:])

    def delta(self) -> Structure:
        """What changes from initial to final ("Model 2"): :meth:`initial` with a site
        property ``displacement``, an (N, 3) array of Cartesian vectors (Å) -- the hop vector on
        the ion (index 0), zeros on every host atom. Adding the displacements to the Cartesian
        positions gives :meth:`final` exactly."""
        s = self.initial()
        disp = np.zeros((len(s), 3))
        disp[0] = self.hop_vector
        s.add_site_property("displacement", list(disp))
        return s

    def closest_approach(self) -> float:
        """Shortest distance (Å) from any image to any host atom, periodic images included. The
        straight-line interpolation can pass close to host atoms (a real NEB path bends)."""
        d = self.host.lattice.get_all_distances(self.image_frac_coords(), self.host.frac_coords)
        return float(d.min())

    def validate(self, min_distance: float = 0.5, max_atoms: int | None = None) -> None:
        """Validate the initial and the final structure (:func:`validate_structure`); the
        intermediate images are not checked. Raises :class:`StructureError` naming which end."""
        for name, s in (("initial", self.initial()), ("final", self.final())):
            try:
                validate_structure(s, min_distance=min_distance, max_atoms=max_atoms)
            except StructureError as exc:
                raise StructureError(f"{name} structure of the {self.ion} hop: {exc}") from None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_band(
        cls, band: Any, n_images: int = 5, validate: bool = True, tol: float = 1e-3
    ) -> "MigrationPath":
        """Split a band (anything :func:`~hopnet.structures.to_structure` accepts, e.g. a data-set
        entry's ``atoms`` dict) into host + ion + end points.

        Atoms ``0..n_images-1`` must be one element, equally spaced on a straight line (within
        ``tol`` Å, periodic images allowed); the rest is the host (its site properties are
        dropped). The end points are kept as given, so ``from_band(b).band()`` reproduces ``b``'s
        coordinates (exactly for unwrapped images, modulo lattice vectors for wrapped ones).
        """
        s = to_structure(band, validate=False)
        n = _check_n_images(n_images)
        if len(s) <= n:
            raise PathError(f"band layout: {len(s)} atoms, need the {n} ion images plus a host")
        if not s.is_ordered:
            raise StructureError("band is disordered (partial occupancies)")
        symbols = [species_symbol(sp) for sp in s.species[:n]]
        if len(set(symbols)) != 1:
            raise PathError(f"band layout: atoms 0-{n - 1} are not one element ({' '.join(symbols)})")
        frac = np.asarray(s.frac_coords, dtype=float)
        images = frac[:n]
        steps = frac_min_image(np.diff(images, axis=0))
        hop = steps.sum(axis=0)
        t = np.arange(n, dtype=float) / (n - 1)
        off = frac_min_image(images - (images[0] + t[:, None] * hop)) @ s.lattice.matrix
        dist = np.linalg.norm(off, axis=1)
        if dist.max() > tol:
            k = int(np.argmax(dist))
            raise PathError(
                f"band layout: atoms 0-{n - 1} are not equally spaced on a straight line "
                f"(image {k} is {dist[k]:.3g} Å off, tolerance {tol:g} Å)"
            )
        raw = images[-1] - images[0]
        final = images[-1].copy() if np.allclose(raw, hop, rtol=0, atol=1e-12) else images[0] + hop
        host = Structure(s.lattice, s.species[n:], frac[n:])
        path = cls(host, symbols[0], images[0].copy(), final, n_images=n, image_convention="as_given")
        if validate:
            path.validate()
        return path

    @classmethod
    def from_sites(
        cls,
        structure: Any,
        ion: str,
        start_index: int,
        end_index: int,
        n_images: int = 5,
        image_convention: str = "fractional",
        validate: bool = True,
    ) -> "MigrationPath":
        """A vacancy-mediated hop in a full structure: the ion at site ``start_index`` moves into
        a vacancy at site ``end_index`` (both must be ``ion`` sites). The host is the structure
        without those two sites."""
        s = to_structure(structure, validate=validate)
        _check_ion(ion)
        n = len(s)
        for name, idx in (("start_index", start_index), ("end_index", end_index)):
            if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
                raise PathError(f"{name} must be an integer site index, got {idx!r}")
            if not 0 <= idx < n:
                raise PathError(f"{name} {idx} is out of range (structure has {n} atoms)")
        i, j = int(start_index), int(end_index)
        if i == j:
            raise PathError(f"start and end site are the same (site {i})")
        for idx in (i, j):
            sym = species_symbol(s.species[idx])
            if sym != ion:
                raise PathError(f"site {idx} is {sym}, not the migrating ion {ion}")
        keep = np.ones(n, dtype=bool)
        keep[[i, j]] = False
        frac = np.asarray(s.frac_coords, dtype=float)
        host = Structure(s.lattice, [sp for sp, k in zip(s.species, keep) if k], frac[keep])
        path = cls(host, ion, frac[i].copy(), frac[j].copy(), n_images, image_convention)
        if validate:
            path.validate()
        return path

    @classmethod
    def from_fractional(
        cls,
        host_or_structure: Any,
        ion: str,
        initial_frac: Sequence[float],
        final_frac: Sequence[float],
        n_images: int = 5,
        image_convention: str = "fractional",
        site_tolerance: float = 0.3,
        validate: bool = True,
    ) -> "MigrationPath":
        """A hop between two fractional points of a host, or of a full structure: ``ion`` atoms
        within ``site_tolerance`` Å of either point (periodic images included) are removed first,
        so the structure may still hold the ion at its end sites."""
        s = to_structure(host_or_structure, validate=False)
        a = _as_frac3(initial_frac, "initial")
        b = _as_frac3(final_frac, "final")
        frac = np.asarray(s.frac_coords, dtype=float)
        if len(s):
            check_cell(s.lattice.matrix, "structure")
            dist = s.lattice.get_all_distances(np.vstack([a, b]), frac)  # (2, N) Å
            is_ion = np.array([species_symbol(sp) == ion for sp in s.species]) if s.is_ordered else np.zeros(len(s), bool)
            keep = ~(is_ion & (dist.min(axis=0) < site_tolerance))
        else:
            keep = np.zeros(0, dtype=bool)
        if not keep.all():
            log.debug("from_fractional: removed %d %s atom(s) at the end sites", int((~keep).sum()), ion)
            s = Structure(s.lattice, [sp for sp, k in zip(s.species, keep) if k], frac[keep])
        path = cls(s, ion, a, b, n_images, image_convention)
        if validate:
            path.validate()
        return path

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """A JSON-ready dict (host as a JARVIS ``Atoms`` dict, fractional; exact floats)."""
        return {
            "format": _DICT_FORMAT,
            "version": _DICT_VERSION,
            "ion": self.ion,
            "initial_frac": self.initial_frac.tolist(),
            "final_frac": self.final_frac.tolist(),
            "n_images": self.n_images,
            "image_convention": self.image_convention,
            "host": to_jarvis(self.host),
        }

    @classmethod
    def from_dict(cls, d: dict, validate: bool = True) -> "MigrationPath":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict):
            raise PathError(f"migration path dict expected, got {type(d).__name__}")
        if d.get("format", _DICT_FORMAT) != _DICT_FORMAT:
            raise PathError(f"not a migration path dict (format {d.get('format')!r})")
        if d.get("version", _DICT_VERSION) != _DICT_VERSION:
            raise PathError(f"migration path dict version {d.get('version')!r} is not supported (expected {_DICT_VERSION})")
        for key in ("host", "ion", "initial_frac", "final_frac"):
            if key not in d:
                raise PathError(f"migration path dict: missing key {key!r}")
        path = cls(
            from_jarvis(d["host"]),
            d["ion"],
            d["initial_frac"],
            d["final_frac"],
            n_images=d.get("n_images", 5),
            image_convention=d.get("image_convention", "fractional"),
        )
        if validate:
            path.validate()
        return path

    def __repr__(self) -> str:
        return (
            f"MigrationPath(ion={self.ion!r}, host={self.host.composition.reduced_formula} "
            f"({len(self.host)} atoms), hop={self.hop_length:.3f} Å, n_images={self.n_images}, "
            f"image_convention={self.image_convention!r})"
        )


def as_path(item: Any, n_images: int = 5) -> MigrationPath:
    """A :class:`MigrationPath` from a path, a data-set ``Entry`` (or a dict with ``atoms``), or a
    band (anything :func:`hopnet.structures.to_structure` reads). Data-set bands are taken as
    published: no overlap validation (a few put an image on a host atom). Errors name the entry."""
    if isinstance(item, MigrationPath):
        return item
    atoms = getattr(item, "atoms", None)
    if atoms is None and isinstance(item, dict) and "atoms" in item:
        atoms = item["atoms"]
    name = getattr(item, "id", None) or (item.get("sys_name") if isinstance(item, dict) else None)
    if name and not str(name).isprintable():  # keep the message on one line
        name = repr(name)
    try:
        return MigrationPath.from_band(item if atoms is None else atoms, n_images=n_images, validate=False)
    except HopnetError as exc:
        raise type(exc)(f"entry {name}: {exc}" if name else str(exc)) from None
