"""Path-geometry descriptors of a migration hop, for the classical baseline and hybrid models.

Everything here is computed from a band (atoms ``0..n_images-1`` are the mobile ion's images,
the host follows), so it works on data-set entries and on paths a user builds alike.

The descriptors are the quantities a materials scientist looks at first when guessing a barrier:

* the mobile ion: charge, Shannon radius, electronegativity, mass;
* the hop: its length; the *bottleneck* -- the smallest distance from the straight path to any
  host atom, to the nearest anion and to the nearest cation, sampled along the whole path (not
  only at its middle), and how much it narrows relative to the end points;
* coordination by anions at the start, middle, end and at the bottleneck;
* a bond-valence-sum profile along the path (a crude BVSE: how far the ion's bond-valence sum
  departs from its nominal charge on the way) and a bare Coulomb profile;
* the host: volume per atom and per anion, density, composition statistics.

Units: Å, Å^3, g/cm^3, eV-free (all geometric or elemental).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pymatgen.core import Element, Structure
from pymatgen.optimization.neighbors import find_points_in_spheres

ANIONS = frozenset({"O", "S", "Se", "Te", "F", "Cl", "Br", "I", "N"})
_PBC = np.array([1, 1, 1], dtype=np.int64)


@dataclass(frozen=True)
class DescriptorConfig:
    """Sampling of the path and the radii used for counting neighbours (Å)."""

    n_samples: int = 25  # points along the straight path, end points included
    search_radius: float = 8.0  # neighbours considered around each path point
    coordination_scale: float = 1.25  # anions within scale * (nearest anion distance at the end site)
    bv_b: float = 0.37  # bond-valence softness (Å)


@lru_cache(maxsize=None)
def element_data(symbol: str) -> tuple[float, float, float, float, float]:
    """(nominal charge, ionic radius Å, Pauling electronegativity, mass amu, Z) of an element.

    The nominal charge is the element's most common oxidation state with the sign of its role
    (anions negative); the radius is pymatgen's average Shannon radius for that charge, falling
    back to the atomic radius."""
    el = Element(symbol)
    states = el.common_oxidation_states or el.oxidation_states or (0,)
    if symbol in ANIONS:
        neg = [s for s in states if s < 0]
        charge = float(min(neg, key=abs)) if neg else -2.0
    else:
        pos = [s for s in states if s > 0]
        charge = float(pos[0]) if pos else 0.0
    radius = None
    try:
        radius = el.ionic_radii.get(int(charge))
    except (AttributeError, TypeError):
        radius = None
    if radius is None:
        radius = el.average_ionic_radius or el.atomic_radius or 1.0
    x = el.X if el.X == el.X else 1.5  # NaN for noble gases
    return float(charge), float(radius), float(x), float(el.atomic_mass), float(el.Z)


def _feature_names() -> list[str]:
    names = ["ion_charge", "ion_radius", "ion_X", "ion_mass", "ion_Z", "hop_length"]
    for what in ("host", "anion", "cation"):
        names += [
            f"bottleneck_{what}",
            f"{what}_dist_start",
            f"{what}_dist_mid",
            f"{what}_dist_end",
            f"{what}_narrowing",  # bottleneck / mean of the end-point distances
        ]
    names += [
        "bottleneck_position",  # 0..1 along the hop, distance from the middle
        "anion_gap",  # bottleneck_anion - (r_ion + mean anion radius)
        "cation_gap",
        "cn_start",
        "cn_mid",
        "cn_end",
        "cn_bottleneck",
        "cn_change",
        "n_host_within_3A_max",
        "bvs_start",
        "bvs_max_dev",
        "bvs_min",
        "bvs_range",
        "coulomb_barrier",
        "volume_per_atom",
        "volume_per_anion",
        "density",
        "n_host_atoms",
        "n_elements",
        "anion_fraction",
        "ion_fraction",
        "mean_X",
        "std_X",
        "mean_anion_X",
        "mean_cation_charge",
        "max_cation_charge",
        "mean_mass",
        "tm_fraction",
    ]
    return names


FEATURE_NAMES: tuple[str, ...] = tuple(_feature_names())


def _profile(values: np.ndarray, center_idx: np.ndarray, n_points: int, fill: float) -> np.ndarray:
    """Minimum of ``values`` grouped by path point (``fill`` where a point has none)."""
    out = np.full(n_points, fill)
    np.minimum.at(out, center_idx, values)
    return out


def band_descriptors(band: Structure, n_images: int = 5, config: DescriptorConfig | None = None) -> np.ndarray:
    """Descriptor vector (ordered as :data:`FEATURE_NAMES`) of the hop in ``band``."""
    cfg = config or DescriptorConfig()
    lattice = band.lattice
    frac = band.frac_coords
    ion = band[0].specie.symbol
    f0, f1 = frac[0], frac[n_images - 1]
    dfrac = f1 - f0
    dfrac = dfrac - np.round(dfrac)
    start = lattice.get_cartesian_coords(f0)
    hop = lattice.get_cartesian_coords(dfrac)
    hop_length = float(np.linalg.norm(hop))

    host_symbols = [s.specie.symbol for s in band.sites[n_images:]]
    host_cart = np.ascontiguousarray(band.cart_coords[n_images:], dtype=float)
    n_host = len(host_symbols)
    hdata = np.array([element_data(s) for s in host_symbols])  # charge, radius, X, mass, Z
    is_anion = np.array([s in ANIONS for s in host_symbols])

    t = np.linspace(0.0, 1.0, cfg.n_samples)
    points = np.ascontiguousarray(start[None, :] + t[:, None] * hop[None, :], dtype=float)
    ci, nj, _, dist = find_points_in_spheres(
        host_cart, points, cfg.search_radius, _PBC, np.ascontiguousarray(lattice.matrix, dtype=float)
    )
    ci = ci.astype(np.int64)
    nj = nj.astype(np.int64)
    keep = dist > 1e-8
    ci, nj, dist = ci[keep], nj[keep], dist[keep]
    P = cfg.n_samples
    big = cfg.search_radius
    d_host = _profile(dist, ci, P, big)
    an = is_anion[nj]
    d_anion = _profile(dist[an], ci[an], P, big)
    d_cation = _profile(dist[~an], ci[~an], P, big)
    mid = P // 2

    q_ion, r_ion, x_ion, m_ion, z_ion = element_data(ion)
    feats: list[float] = [q_ion, r_ion, x_ion, m_ion, z_ion, hop_length]
    for prof in (d_host, d_anion, d_cation):
        ends = 0.5 * (prof[0] + prof[-1])
        feats += [prof.min(), prof[0], prof[mid], prof[-1], prof.min() / max(ends, 1e-6)]

    anion_radius = float(hdata[is_anion, 1].mean()) if is_anion.any() else 1.4
    cation_radius = float(hdata[~is_anion, 1].mean()) if (~is_anion).any() else 0.7
    bottleneck_at = int(np.argmin(d_anion))

    # coordination by anions within a radius set by the end-site anion distance
    r_cn = cfg.coordination_scale * max(0.5 * (d_anion[0] + d_anion[-1]), 1.0)
    cn = np.bincount(ci[an & (dist <= r_cn)], minlength=P).astype(float)
    within3 = np.bincount(ci[dist <= 3.0], minlength=P).astype(float)

    # bond-valence sum of the ion with the anions along the path (R0 ~ sum of radii)
    r0 = r_ion + hdata[nj[an], 1]
    bv = np.exp((r0 - dist[an]) / cfg.bv_b)
    bvs = np.bincount(ci[an], weights=bv, minlength=P)
    bvs = bvs / max(abs(q_ion), 1.0)  # 1.0 = the ion's nominal valence is satisfied
    # bare Coulomb potential of the host charges felt by the ion (arbitrary units, cut at the radius)
    coul = np.bincount(ci, weights=hdata[nj, 0] / np.maximum(dist, 0.5), minlength=P) * q_ion

    host_elements = sorted(set(host_symbols))
    counts = {e: host_symbols.count(e) for e in host_elements}
    volume = band.lattice.volume
    n_anions = int(is_anion.sum())
    cation_charges = hdata[~is_anion, 0]
    tm = np.array([Element(s).is_transition_metal for s in host_symbols])
    mass = float(hdata[:, 3].sum()) * 1.66053906660 / volume  # g/cm^3

    feats += [
        abs(bottleneck_at / (P - 1) - 0.5),
        d_anion.min() - (r_ion + anion_radius),
        d_cation.min() - (r_ion + cation_radius),
        cn[0],
        cn[mid],
        cn[-1],
        cn[bottleneck_at],
        cn[mid] - 0.5 * (cn[0] + cn[-1]),
        within3.max(),
        bvs[0],
        float(np.abs(bvs - 1.0).max()),
        bvs.min(),
        bvs.max() - bvs.min(),
        float(coul.max() - 0.5 * (coul[0] + coul[-1])),
        volume / max(n_host, 1),
        volume / max(n_anions, 1),
        mass,
        float(n_host),
        float(len(host_elements)),
        n_anions / max(n_host, 1),
        (counts.get(ion, 0) + 1) / (n_host + 1),
        float(hdata[:, 2].mean()),
        float(hdata[:, 2].std()),
        float(hdata[is_anion, 2].mean()) if n_anions else 0.0,
        float(cation_charges.mean()) if cation_charges.size else 0.0,
        float(cation_charges.max()) if cation_charges.size else 0.0,
        float(hdata[:, 3].mean()),
        float(tm.mean()),
    ]
    out = np.asarray(feats, dtype=float)
    if out.shape[0] != len(FEATURE_NAMES):  # pragma: no cover - guards the name list
        raise AssertionError("descriptor vector and FEATURE_NAMES disagree")
    return out
