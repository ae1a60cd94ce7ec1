"""From a migration barrier to a battery: diffusivity, diffusion time and the threshold barrier.

The model (dilute, uncorrelated hopping in 3-D; a textbook Arrhenius estimate):

* diffusivity ``D = D0 * exp(-E_m / (k_B T))`` with the prefactor ``D0 = a^2 * nu / 6``
  (``a`` the hop length, ``nu`` the attempt frequency, 6 = 2 x 3 dimensions; the correlation
  factor and the number of equivalent hops are taken as 1). Defaults: ``nu = 1e13 Hz`` (a typical
  optical-phonon frequency) and ``a = 3.0 Å`` (a typical hop; the data set's hops are 1.5-9.0 Å,
  mean 3.9 Å), which give ``D0 = 1.5e-3 cm^2/s``.
* time for the ion to diffuse through a particle of size ``L``: ``t = g * L^2 / D`` with the
  geometric factor ``g = 1`` by default (the characteristic time; ``g = 1/6`` would be the 3-D
  mean-square-displacement time ``<r^2> = 6 D t``, ``g = 1/2`` the 1-D one). ``L`` is the
  particle size (the distance the ion must cover).
* a (dis)charge at rate ``C`` takes ``1/C`` hours. The **threshold barrier** is the largest
  ``E_m`` for which ``t <= 1/C h``:  ``E_thr = k_B T * ln(D0 * t_charge / (g * L^2))``.

Units: barriers in eV, lengths in Å (hops) and nm (particles), temperatures in K, frequencies in
Hz, diffusivities in cm^2/s, times in s.

Sanity facts (pinned by the tests): one decade of D costs ``k_B T ln 10`` = 59.5 meV at 300 K;
10x the particle size needs 2 decades of D, i.e. 119 meV lower barrier at a fixed time. With the
defaults (``a = 3 Å``, ``nu = 1e13 Hz``, ``g = 1``) the threshold for **100 nm** particles at
**C/2** and **300 K** is 0.657 eV, within 0.01 eV of the published 0.65 eV cut for nano-sized
particles (Rong et al., Chem. Mater. 27, 6016 (2015), used by the data-set paper); over hop
lengths 2.5-4.0 Å it stays within 0.65 +- 0.025 eV (:data:`THRESHOLD_TOLERANCE_EV`).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import numpy as np

from hopnet.infra.errors import HopnetError

__all__ = [
    "BOLTZMANN_EV_PER_K",
    "DEFAULT_ATTEMPT_FREQUENCY_HZ",
    "DEFAULT_C_RATE",
    "DEFAULT_GEOMETRY_FACTOR",
    "DEFAULT_HOP_LENGTH_A",
    "DEFAULT_PARTICLE_SIZE_NM",
    "DEFAULT_TEMPERATURE_K",
    "THRESHOLD_TOLERANCE_EV",
    "RateReport",
    "barrier_per_decade",
    "charge_time",
    "diffusion_time",
    "diffusivity",
    "parse_size",
    "prefactor",
    "rate_report",
    "threshold_barrier",
]

BOLTZMANN_EV_PER_K = 8.617333262e-5  # k_B in eV/K (CODATA 2018, exact)
DEFAULT_ATTEMPT_FREQUENCY_HZ = 1.0e13
DEFAULT_HOP_LENGTH_A = 3.0
DEFAULT_TEMPERATURE_K = 300.0
DEFAULT_PARTICLE_SIZE_NM = 100.0  # "nano-sized" in the 0.65 eV cut
DEFAULT_C_RATE = 0.5  # C/2: a 2-hour (dis)charge
DEFAULT_GEOMETRY_FACTOR = 1.0
THRESHOLD_TOLERANCE_EV = 0.025  # |E_thr(100 nm, C/2, 300 K) - 0.65| for hops of 2.5-4.0 Å

_A_TO_CM = 1.0e-8
_NM_TO_CM = 1.0e-7
_HOUR_S = 3600.0


def _positive(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise HopnetError(f"{name} must be a positive number, got {value!r}")
    return v


def prefactor(hop_length: float = DEFAULT_HOP_LENGTH_A,
              attempt_frequency: float = DEFAULT_ATTEMPT_FREQUENCY_HZ) -> float:
    """``D0 = a^2 nu / 6`` in cm^2/s from the hop length ``a`` (Å) and attempt frequency (Hz)."""
    a = _positive("hop length", hop_length) * _A_TO_CM
    return a * a * _positive("attempt frequency", attempt_frequency) / 6.0


def diffusivity(barrier: float | np.ndarray, temperature: float = DEFAULT_TEMPERATURE_K,
                hop_length: float = DEFAULT_HOP_LENGTH_A,
                attempt_frequency: float = DEFAULT_ATTEMPT_FREQUENCY_HZ) -> float | np.ndarray:
    """``D = D0 exp(-E_m / k_B T)`` in cm^2/s for barrier(s) ``E_m`` (eV) at ``temperature`` (K)."""
    kt = BOLTZMANN_EV_PER_K * _positive("temperature", temperature)
    e = np.asarray(barrier, dtype=float)
    if not np.all(np.isfinite(e)):
        raise HopnetError("barrier must be finite")
    d = prefactor(hop_length, attempt_frequency) * np.exp(-e / kt)
    return float(d) if d.ndim == 0 else d


def diffusion_time(diffusivity_cm2_s: float | np.ndarray, particle_size_nm: float = DEFAULT_PARTICLE_SIZE_NM,
                   geometry_factor: float = DEFAULT_GEOMETRY_FACTOR) -> float | np.ndarray:
    """Time (s) to diffuse through a particle of size ``L`` (nm): ``t = g L^2 / D``."""
    length = _positive("particle size", particle_size_nm) * _NM_TO_CM
    d = np.asarray(diffusivity_cm2_s, dtype=float)
    if np.any(~(d > 0)):
        raise HopnetError("diffusivity must be positive")
    t = _positive("geometry factor", geometry_factor) * length * length / d
    return float(t) if t.ndim == 0 else t


def charge_time(c_rate: float = DEFAULT_C_RATE) -> float:
    """Duration (s) of a full (dis)charge at rate ``C``: ``1/C`` hours (C/2 -> 7200 s)."""
    return _HOUR_S / _positive("C-rate", c_rate)


def threshold_barrier(particle_size_nm: float = DEFAULT_PARTICLE_SIZE_NM, c_rate: float = DEFAULT_C_RATE,
                      temperature: float = DEFAULT_TEMPERATURE_K, hop_length: float = DEFAULT_HOP_LENGTH_A,
                      attempt_frequency: float = DEFAULT_ATTEMPT_FREQUENCY_HZ,
                      geometry_factor: float = DEFAULT_GEOMETRY_FACTOR) -> float:
    """The largest barrier (eV) that lets the ion cross a particle of ``particle_size_nm`` within
    one (dis)charge at ``c_rate``: ``k_B T ln(D0 t_charge / (g L^2))``. Defaults give 0.657 eV."""
    kt = BOLTZMANN_EV_PER_K * _positive("temperature", temperature)
    length = _positive("particle size", particle_size_nm) * _NM_TO_CM
    d_needed = _positive("geometry factor", geometry_factor) * length * length / charge_time(c_rate)
    return kt * math.log(prefactor(hop_length, attempt_frequency) / d_needed)


def barrier_per_decade(temperature: float = DEFAULT_TEMPERATURE_K) -> float:
    """Barrier change (eV) that changes D by a factor 10: ``k_B T ln 10`` (59.5 meV at 300 K)."""
    return BOLTZMANN_EV_PER_K * _positive("temperature", temperature) * math.log(10.0)


_SIZE_UNITS_NM = {"nm": 1.0, "um": 1.0e3, "µm": 1.0e3, "μm": 1.0e3, "micron": 1.0e3, "microns": 1.0e3,
                  "mm": 1.0e6, "m": 1.0e9, "a": 0.1, "å": 0.1, "angstrom": 0.1}
_SIZE_RE = re.compile(r"^\s*([0-9.eE+-]+)\s*([a-zA-Zµμå]*)\s*$")


def parse_size(text: str | float) -> float:
    """A particle size in nm from ``"100nm"``, ``"1um"``/``"1µm"``, ``"0.5 mm"``, ``"50 Å"`` or a
    bare number (nm)."""
    if isinstance(text, (int, float)):
        return _positive("particle size", text)
    m = _SIZE_RE.match(str(text))
    unit = (m.group(2).lower() if m else "") or "nm"
    if not m or unit not in _SIZE_UNITS_NM:
        raise HopnetError(f"cannot read particle size {text!r}; use e.g. 100nm, 1um, 0.5mm")
    try:
        value = float(m.group(1))
    except ValueError:
        raise HopnetError(f"cannot read particle size {text!r}; use e.g. 100nm, 1um, 0.5mm") from None
    return _positive("particle size", value * _SIZE_UNITS_NM[unit])


@dataclass(frozen=True)
class RateReport:
    """What a barrier means for one particle size, C-rate and temperature (units in the names)."""

    barrier_ev: float | None
    temperature_k: float
    hop_length_a: float
    attempt_frequency_hz: float
    particle_size_nm: float
    c_rate: float
    geometry_factor: float
    prefactor_cm2_s: float
    diffusivity_cm2_s: float | None
    diffusion_time_s: float | None
    charge_time_s: float
    threshold_ev: float

    @property
    def fast_enough(self) -> bool | None:
        """True when the ion crosses the particle within one (dis)charge (None without a barrier)."""
        return None if self.barrier_ev is None else self.barrier_ev <= self.threshold_ev

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fast_enough"] = self.fast_enough
        return d


def rate_report(barrier: float | None = None, *, temperature: float = DEFAULT_TEMPERATURE_K,
                hop_length: float = DEFAULT_HOP_LENGTH_A, particle_size_nm: float = DEFAULT_PARTICLE_SIZE_NM,
                c_rate: float = DEFAULT_C_RATE, attempt_frequency: float = DEFAULT_ATTEMPT_FREQUENCY_HZ,
                geometry_factor: float = DEFAULT_GEOMETRY_FACTOR) -> RateReport:
    """D, crossing time and threshold for ``barrier`` (eV; ``None`` gives the threshold only)."""
    thr = threshold_barrier(particle_size_nm, c_rate, temperature, hop_length, attempt_frequency, geometry_factor)
    d = t = None
    if barrier is not None:
        d = float(diffusivity(barrier, temperature, hop_length, attempt_frequency))
        t = float(diffusion_time(d, particle_size_nm, geometry_factor)) if d > 0 else math.inf
    return RateReport(
        barrier_ev=None if barrier is None else float(barrier), temperature_k=float(temperature),
        hop_length_a=float(hop_length), attempt_frequency_hz=float(attempt_frequency),
        particle_size_nm=float(particle_size_nm), c_rate=float(c_rate), geometry_factor=float(geometry_factor),
        prefactor_cm2_s=prefactor(hop_length, attempt_frequency), diffusivity_cm2_s=d, diffusion_time_s=t,
        charge_time_s=charge_time(c_rate), threshold_ev=thr,
    )
