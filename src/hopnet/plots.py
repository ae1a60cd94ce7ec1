"""Figures (matplotlib, Agg backend; no pyplot global state, so safe in any process)."""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np

from hopnet.metrics import DEFAULT_THRESHOLD_EV


def parity_plot(
    targets: Sequence[float],
    predictions: Sequence[float],
    path: str | os.PathLike,
    *,
    std: Sequence[float] | None = None,
    threshold: float | None = DEFAULT_THRESHOLD_EV,
    title: str = "",
) -> None:
    """Write :func:`parity_png` to ``path`` atomically."""
    from hopnet.provenance import atomic_write_bytes

    atomic_write_bytes(path, parity_png(targets, predictions, std=std, threshold=threshold, title=title))


def parity_png(
    targets: Sequence[float],
    predictions: Sequence[float],
    *,
    std: Sequence[float] | None = None,
    threshold: float | None = DEFAULT_THRESHOLD_EV,
    title: str = "",
) -> bytes:
    """PNG bytes of predicted vs. reference barrier (eV): the y = x line, error bars of ``std``
    when given and, when ``threshold`` is given, the good/poor-conductor cut on both axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hopnet.metrics import regression_metrics

    t = np.asarray(targets, dtype=float).ravel()
    p = np.asarray(predictions, dtype=float).ravel()
    fig = Figure(figsize=(4.8, 4.6), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lo = float(min(t.min(initial=0.0), p.min(initial=0.0), 0.0))
    hi = float(max(t.max(initial=1.0), p.max(initial=1.0))) * 1.05
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="-", zorder=1)
    if threshold is not None:
        ax.axvline(threshold, color="tab:red", lw=0.8, ls="--", zorder=1)
        ax.axhline(threshold, color="tab:red", lw=0.8, ls="--", zorder=1,
                   label=f"threshold {threshold:g} eV")
    yerr = np.asarray(std, dtype=float).ravel() if std is not None else None
    if yerr is not None and np.any(yerr > 0):
        ax.errorbar(t, p, yerr=yerr, fmt="none", ecolor="tab:blue", alpha=0.35, lw=0.8, zorder=2)
    ax.scatter(t, p, s=14, color="tab:blue", alpha=0.8, edgecolors="none", zorder=3)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("reference $E_m$ (eV)")
    ax.set_ylabel("predicted $E_m$ (eV)")
    if t.size:
        m = regression_metrics(t, p)
        ax.text(0.04, 0.96, f"n = {m['n']}\nMAE = {m['mae']:.3f} eV\n$R^2$ = {m['r2']:.2f}",
                transform=ax.transAxes, va="top", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    if threshold is not None:
        ax.legend(loc="lower right", fontsize=7, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
