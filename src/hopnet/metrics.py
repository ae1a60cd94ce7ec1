"""Regression and conductor-classification metrics (the `hopnet evaluate` contract).

A path is a *good conductor* when its barrier is below the threshold (default 0.65 eV, the
published cut for nano-sized particles cycled at C/2 and 300 K).
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD_EV = 0.65


def _arrays(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_pred, dtype=float).ravel()
    if t.shape != p.shape:
        raise ValueError(f"targets ({t.size}) and predictions ({p.size}) differ in length")
    return t, p


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """n, MAE, RMSE, R² and Spearman's rank correlation."""
    t, p = _arrays(y_true, y_pred)
    err = p - t
    ss_tot = float(((t - t.mean()) ** 2).sum()) if t.size else 0.0
    r2 = 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    from scipy.stats import spearmanr  # lazily: `hopnet --help` reads DEFAULT_THRESHOLD_EV from here

    rho = float(spearmanr(t, p).statistic) if t.size > 2 else float("nan")
    return {
        "n": int(t.size),
        "mae": float(np.abs(err).mean()) if t.size else float("nan"),
        "rmse": float(np.sqrt((err**2).mean())) if t.size else float("nan"),
        "r2": r2,
        "spearman": rho,
    }


def classifier_metrics(y_true, y_pred, threshold: float = DEFAULT_THRESHOLD_EV) -> dict[str, float]:
    """Accuracy, precision and recall for *good* (E_m < threshold) and *poor* conductors."""
    t, p = _arrays(y_true, y_pred)
    good_t, good_p = t < threshold, p < threshold

    def ratio(a: int, b: int) -> float:
        return float(a) / b if b else float("nan")

    tp_good = int((good_t & good_p).sum())
    tp_poor = int((~good_t & ~good_p).sum())
    return {
        "threshold": float(threshold),
        "accuracy": ratio(tp_good + tp_poor, t.size),
        "precision_good": ratio(tp_good, int(good_p.sum())),
        "precision_poor": ratio(tp_poor, int((~good_p).sum())),
        "recall_good": ratio(tp_good, int(good_t.sum())),
        "recall_poor": ratio(tp_poor, int((~good_t).sum())),
    }
