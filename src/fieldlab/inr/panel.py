"""The one-page figure of an INR fit: loss, particle traces, info box, prediction-vs-truth scatter, field maps.

Layout (rows): (1) loss curve (raw and a moving average), traces of 10 particles over the frames (truth solid,
prediction dashed; first component), an info box, and a scatter of prediction against truth with the ideal line
``p = y``, the least-squares line ``p = slope * y + intercept``, R2 and slope; (2) truth and (3) prediction at the
middle frame per component, rasterised on the SSIM grid, each prediction titled with its SSIM.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fieldlab.core.io import atomic_open
from fieldlab.inr.data import FIELD_COMPONENTS, FieldWindow, particle_grid
from fieldlab.inr.data import map_resolution as default_resolution


def _num(value: float | None, fmt: str) -> str:
    """Format a score that may be null (undefined, e.g. R2 of a constant field)."""
    return "n/a" if value is None or not np.isfinite(value) else format(value, fmt)


def moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Trailing mean over ``width`` samples (shorter at the start), same length as ``x``."""
    x = np.asarray(x, dtype=np.float64)
    c = np.cumsum(np.insert(x, 0, 0.0))
    k = np.arange(1, x.size + 1)
    lo = np.maximum(k - width, 0)
    return (c[k] - c[lo]) / (k - lo)


def inr_panel(
    path: str | Path,
    window: FieldWindow,
    prediction: np.ndarray,
    losses: np.ndarray,
    metrics: dict,
    map_resolution: int | None = None,
    n_traces: int = 10,
    max_scatter: int = 20000,
) -> None:
    """Write the panel PNG of a fit to ``path`` (atomically).

    Parameters
    ----------
    window, prediction
        The fitted field window and the prediction ``(T, N, C)`` in physical units.
    losses
        Training loss per step (standardised units).
    metrics
        The ``metrics/inr.json`` record (``final_r2``, ``slope``, ``intercept``, ``ssim``, ``final_mse``, ...).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = map_resolution or default_resolution(window.n_particles)
    names = FIELD_COMPONENTS[window.field_name]
    n_c = window.n_components
    n_cols = max(4, n_c)
    fig = plt.figure(figsize=(4 * n_cols, 11), constrained_layout=True)
    grid = fig.add_gridspec(3, n_cols, height_ratios=[1.0, 1.0, 1.0])

    ax = fig.add_subplot(grid[0, 0])
    steps = np.arange(1, losses.size + 1)
    ax.semilogy(steps, losses, lw=0.5, alpha=0.4, label="raw")
    ax.semilogy(steps, moving_average(losses, max(1, losses.size // 50)), lw=1.5, label="smoothed")
    ax.set(xlabel="step", ylabel="MSE (standardised)", title="training loss")
    ax.legend()

    ax = fig.add_subplot(grid[0, 1])
    picks = np.linspace(0, window.n_particles - 1, n_traces).astype(int)
    for i, p in enumerate(picks):
        color = f"C{i % 10}"
        ax.plot(window.frames, window.values[:, p, 0], color=color, lw=1.2)
        ax.plot(window.frames, prediction[:, p, 0], color=color, lw=1.2, ls="--")
    ax.set(xlabel="frame", ylabel=names[0], title=f"{n_traces} particles: truth (solid), INR (dashed)")

    ax = fig.add_subplot(grid[0, 2])
    ax.axis("off")
    info = (
        f"field      {window.field_name}\n"
        f"model      {metrics.get('inr_type', '?')}\n"
        f"steps      {metrics.get('total_steps', losses.size)}\n"
        f"components {n_c}\n"
        f"particles  {window.n_particles}\n"
        f"frames     {window.n_frames}\n"
        f"params     {metrics.get('total_params', '?')}\n"
        f"compress.  {metrics.get('compression_ratio', float('nan')):.2f}\n"
        f"MSE        {_num(metrics['final_mse'], '.4g')}\n"
        f"R2         {_num(metrics['final_r2'], '.5f')}\n"
        f"time       {metrics.get('training_time', float('nan')):.1f} s"
    )
    ax.text(0.02, 0.98, info, va="top", family="monospace", fontsize=11, transform=ax.transAxes)

    ax = fig.add_subplot(grid[0, 3])
    mean = window.values.reshape(-1, n_c).mean(0)  # scores are on component-centred values (fieldlab.inr.fit)
    truth_flat, pred_flat = (window.values - mean).ravel(), (prediction - mean).ravel()
    sel = np.random.default_rng(0).choice(truth_flat.size, min(max_scatter, truth_flat.size), replace=False)
    ax.scatter(truth_flat[sel], pred_flat[sel], s=1, alpha=0.3)
    lo, hi = float(truth_flat.min()), float(truth_flat.max())
    line = np.array([lo, hi])
    ax.plot(line, line, "k--", lw=1, label="ideal")
    if metrics["slope"] is not None and metrics["intercept"] is not None:
        ax.plot(line, metrics["slope"] * line + metrics["intercept"], "r-", lw=1, label="regression")
    ax.set(
        xlabel="truth - component mean",
        ylabel="prediction - component mean",
        title=f"R2 = {_num(metrics['final_r2'], '.5f')}, slope = {_num(metrics['slope'], '.4f')}",
    )
    ax.legend()

    k = window.n_frames // 2
    pos = window.positions[k]
    bounds = (pos[:, 0].min(), pos[:, 0].max(), pos[:, 1].min(), pos[:, 1].max())
    ssims = metrics.get("ssim") or [None] * n_c
    for c in range(n_c):
        truth, mask = particle_grid(pos, window.values[k, :, c], res, bounds)
        pred, _ = particle_grid(pos, prediction[k, :, c], res, bounds)
        vmin, vmax = float(truth[mask].min()), float(truth[mask].max())
        for row, (img, title) in enumerate(
            (
                (truth, f"{names[c]} truth, frame {window.frames[k]}"),
                (pred, f"{names[c]} INR, SSIM {_num(ssims[c], '.4f')}"),
            )
        ):
            ax = fig.add_subplot(grid[1 + row, c])
            shown = np.ma.masked_where(~mask, img)
            im = ax.imshow(shown, origin="lower", extent=bounds, vmin=vmin, vmax=vmax, cmap="viridis")
            ax.set(title=title, xlabel="x", ylabel="y")
            fig.colorbar(im, ax=ax, shrink=0.8)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=80)
    plt.close(fig)
