"""Calibrated uncertainties: from an ensemble's spread to an error bar that means something.

The members of an ensemble agree far more closely with each other than with the reference: the
shipped ``default`` model's spread is 0.001-0.2 eV while its out-of-fold errors are 0.3 eV on
average. A :class:`Calibration` maps what a model knows about a prediction (its ensemble spread,
the predicted barrier, the hop length) to the standard deviation σ (eV) of a Gaussian error::

    σ_cal = sqrt( Σ_f (w_f · x_f)² )        x_const = 1, x_ensemble_std = σ_ens (eV),
                                            x_prediction = max(Ê_m, 0) (eV), x_hop_length (Å)

with non-negative weights ``w_f`` fitted on out-of-fold residuals ``r = E_m - Ê_m`` of grouped
cross-validation (:func:`fit_calibration`), by maximising the Gaussian likelihood of ``r``
(``objective="nll"``) or by minimising the mean continuous ranked probability score of the
Gaussian (``objective="crps"``, less driven by the few very large errors). ``experiments/calibrate.py``
chooses the terms and the objective on held-out folds and stores the result in the model's
``metadata.json`` (key ``calibration``, :meth:`Calibration.to_dict`); :mod:`hopnet.inference` applies it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hopnet.infra.errors import DataError, ModelFileError

__all__ = [
    "FEATURES",
    "METHOD",
    "Calibration",
    "coverage",
    "fit_calibration",
    "gaussian_crps",
    "gaussian_nll",
    "interval_metrics",
    "prob_below",
]

METHOD = "variance-sum"
#: the inputs a calibration may use, and their units
FEATURES: dict[str, str] = {
    "const": "1",
    "ensemble_std": "eV",
    "prediction": "eV",
    "hop_length": "Å",
}
OBJECTIVES = ("nll", "crps")
_MIN_SIGMA = 1e-4  # eV; keeps the fit away from σ = 0


@dataclass(frozen=True)
class Calibration:
    """σ_cal (eV) = sqrt(Σ_f (w_f · x_f)²) over the features in ``weights`` (see module docs).

    ``weights[f]`` is in eV per unit of feature ``f`` (eV for ``const``, dimensionless for
    ``ensemble_std`` and ``prediction``, eV/Å for ``hop_length``)."""

    weights: Mapping[str, float]
    objective: str = "nll"
    method: str = METHOD

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(FEATURES)
        if unknown:
            raise DataError(f"unknown calibration feature(s): {', '.join(sorted(unknown))}")
        if not self.weights:
            raise DataError("a calibration needs at least one feature")
        for f, w in self.weights.items():
            if not (math.isfinite(float(w)) and float(w) >= 0.0):
                raise DataError(f"calibration weight of {f} must be a finite number >= 0, got {w}")
        if self.objective not in OBJECTIVES:
            raise DataError(f"unknown calibration objective {self.objective!r}; use {' or '.join(OBJECTIVES)}")

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def sigma(self, ensemble_std: Any, prediction: Any = None, hop_length: Any = None) -> np.ndarray:
        """Calibrated σ (eV) for arrays of ensemble spread (eV), predicted barrier (eV) and hop
        length (Å); only the inputs the calibration uses must be given. NaN in, NaN out."""
        x = _feature_matrix({"ensemble_std": ensemble_std, "prediction": prediction, "hop_length": hop_length},
                            self.features)
        w = np.array([float(self.weights[f]) for f in self.features])
        return np.sqrt((x**2) @ (w**2))

    def to_dict(self) -> dict:
        return {"method": self.method, "objective": self.objective,
                "weights": {f: float(w) for f, w in self.weights.items()},
                "formula": "sigma = sqrt(sum_f (w_f * x_f)^2); x_const = 1, x_ensemble_std = ensemble std (eV), "
                           "x_prediction = max(barrier, 0) (eV), x_hop_length = hop length (Å)"}

    @classmethod
    def from_dict(cls, d: Any, where: str = "calibration") -> Calibration:
        """Inverse of :meth:`to_dict` (extra keys such as ``data`` or ``heldout`` are ignored);
        a malformed block raises :class:`ModelFileError`."""
        if not isinstance(d, Mapping):
            raise ModelFileError(f"{where}: calibration block must be an object, got {type(d).__name__}")
        if d.get("method", METHOD) != METHOD:
            raise ModelFileError(f"{where}: unknown calibration method {d.get('method')!r} (this hopnet reads {METHOD!r})")
        weights = d.get("weights")
        if not isinstance(weights, Mapping):
            raise ModelFileError(f"{where}: calibration block has no weights")
        try:
            return cls(weights={str(k): float(v) for k, v in weights.items()},
                       objective=str(d.get("objective", "nll")))
        except (DataError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}: bad calibration block ({exc})") from None


def _feature_matrix(values: Mapping[str, Any], features: Sequence[str], n: int | None = None) -> np.ndarray:
    """(n, len(features)) matrix of the named features; ``prediction`` clipped at 0 eV. ``n`` is
    the number of rows when no feature but ``const`` is used (else that of the first input given)."""
    cols: list[np.ndarray | None] = []
    for f in features:
        if f == "const":
            cols.append(None)
            continue
        v = values.get(f)
        if v is None:
            raise DataError(f"the calibration uses {f}, which was not given")
        a = np.asarray(v, dtype=float).reshape(-1)
        if f == "prediction":
            a = np.where(np.isnan(a), a, np.clip(a, 0.0, None))
        if n is not None and len(a) != n:
            raise DataError(f"calibration inputs differ in length ({n} vs {len(a)} for {f})")
        n = len(a)
        cols.append(a)
    if n is None:
        given = [v for v in values.values() if v is not None]
        n = len(np.asarray(given[0], dtype=float).reshape(-1)) if given else 1
    return np.stack([np.ones(n) if c is None else c for c in cols], axis=1)


# ---------------------------------------------------------------- scores of a Gaussian error model
def gaussian_nll(residuals: Any, sigma: Any) -> float:
    """Mean negative log-likelihood (nats) of residuals (eV) under N(0, σ²)."""
    r, s = np.asarray(residuals, float), np.asarray(sigma, float)
    return float(np.mean(np.log(s) + 0.5 * (r / s) ** 2 + 0.5 * math.log(2 * math.pi)))


def gaussian_crps(residuals: Any, sigma: Any) -> float:
    """Mean continuous ranked probability score (eV) of N(0, σ²) forecasts of residuals (eV);
    lower is better, equals the MAE for σ → 0."""
    from scipy.special import ndtr

    r, s = np.asarray(residuals, float), np.asarray(sigma, float)
    z = r / s
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return float(np.mean(s * (z * (2 * ndtr(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))))


def coverage(residuals: Any, sigma: Any, k: float = 1.0) -> float:
    """Fraction of residuals within ±kσ (a Gaussian gives 0.683 for k=1, 0.954 for k=2)."""
    r, s = np.asarray(residuals, float), np.asarray(sigma, float)
    return float(np.mean(np.abs(r) <= k * s))


def interval_metrics(residuals: Any, sigma: Any) -> dict:
    """Coverage of ±1σ / ±2σ, mean NLL (nats), mean CRPS (eV), Spearman of σ vs |r|, mean σ (eV)."""
    from scipy.stats import spearmanr

    r, s = np.asarray(residuals, float), np.asarray(sigma, float)
    rho = float(spearmanr(s, np.abs(r))[0]) if len(r) > 2 and np.ptp(s) > 0 else float("nan")
    return {"n": len(r), "coverage_1sigma": coverage(r, s, 1.0), "coverage_2sigma": coverage(r, s, 2.0),
            "nll": gaussian_nll(r, s), "crps_ev": gaussian_crps(r, s), "spearman_sigma_abs_r": rho,
            "mean_sigma_ev": float(np.mean(s)), "median_sigma_ev": float(np.median(s))}


def prob_below(mean: Any, sigma: Any, threshold: float) -> np.ndarray:
    """P(E_m < threshold) (eV) for Gaussian predictions N(mean, σ²); σ = 0 gives 0 or 1, NaN
    mean or σ gives NaN."""
    from scipy.special import ndtr

    m, s = np.asarray(mean, float), np.asarray(sigma, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = ndtr((float(threshold) - m) / s)
        p = np.where(s == 0, (m < threshold).astype(float), p)
    return np.where(np.isnan(m) | np.isnan(s), np.nan, p)


# ---------------------------------------------------------------- the fit
def fit_calibration(residuals: Any, features: Mapping[str, Any], terms: Sequence[str] = ("const", "ensemble_std"),
                    objective: str = "nll") -> Calibration:
    """Fit the weights of ``terms`` on residuals ``r = E_m - Ê_m`` (eV), given the values of the
    features (``ensemble_std``, ``prediction`` in eV, ``hop_length`` in Å; ``const`` needs none).

    ``objective="nll"`` maximises the Gaussian likelihood of ``r``; ``"crps"`` minimises the mean
    CRPS. Weights are bounded below by 0 (L-BFGS-B on the squared weights from a few starts; the best
    fit is kept)."""
    from scipy.optimize import minimize

    if objective not in OBJECTIVES:
        raise DataError(f"unknown calibration objective {objective!r}; use {' or '.join(OBJECTIVES)}")
    terms = tuple(terms)
    if not terms or len(set(terms)) != len(terms):
        raise DataError(f"calibration terms must be distinct and non-empty, got {terms}")
    Calibration({t: 1.0 for t in terms})  # unknown names fail here
    r = np.asarray(residuals, float).reshape(-1)
    x = _feature_matrix(features, terms, n=len(r))
    if len(x) != len(r):
        raise DataError(f"{len(r)} residuals but {len(x)} feature rows")
    ok = np.isfinite(r) & np.isfinite(x).all(axis=1)
    r, x = r[ok], x[ok]
    if len(r) < 2 * len(terms) + 1:
        raise DataError(f"too few finite residuals ({len(r)}) to fit {len(terms)} calibration weight(s)")
    # fit in scaled units (r / rms r, x / rms x) and on the variance weights u = (w rms_x / rms_r)^2:
    # σ² is linear in u, and the gradient at u_j = 0 does not vanish (it does at w_j = 0)
    rms_r = float(np.sqrt(np.mean(r**2))) or 1.0
    rms_x = np.sqrt(np.mean(x**2, axis=0))
    rms_x[rms_x == 0] = 1.0
    rs, x2 = r / rms_r, (x / rms_x) ** 2
    floor = (_MIN_SIGMA / rms_r) ** 2

    def loss(u: np.ndarray) -> tuple[float, np.ndarray]:
        var = np.maximum(x2 @ u, floor)
        s = np.sqrt(var)
        if objective == "nll":
            z2 = rs**2 / var
            val = np.mean(np.log(s) + 0.5 * z2)
            dl_ds = (1.0 - z2) / s
        else:
            from scipy.special import ndtr

            z = rs / s
            pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
            val = np.mean(s * (z * (2 * ndtr(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi)))
            dl_ds = 2 * pdf - 1 / math.sqrt(math.pi)
        return float(val), ((dl_ds / (2 * s))[:, None] * x2).mean(axis=0)

    n_t = len(terms)
    starts = [np.full(n_t, 1.0 / n_t)]
    if n_t > 1:  # one start dominated by each term
        starts += [np.where(np.arange(n_t) == j, 0.9, 0.1 / (n_t - 1)) for j in range(n_t)]
    best = None
    for u0 in starts:
        res = minimize(loss, u0, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * n_t,
                       options={"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-10})
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    w = rms_r * np.sqrt(np.clip(best.x, 0.0, None)) / rms_x
    return Calibration(weights={t: float(v) for t, v in zip(terms, w)}, objective=objective)
