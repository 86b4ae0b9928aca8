"""The one-page figure of an INR fit: loss, particle traces, info box, prediction-vs-truth scatter, field maps.

Layout (the study's), one component (Jp)::

    [ loss  | traces     | info    ]
    [ truth | prediction | scatter ]

four components (F, S, C: 2 x 2 per particle, components ``11, 12, 21, 22``)::

    [ loss     | traces   | info    | scatter ]
    [ truth 11 | truth 12 | pred 11 | pred 12 ]
    [ truth 21 | truth 22 | pred 21 | pred 22 ]

The loss curve shows the raw loss and a moving average (for ``pod``, which does not train: ``1 - R2`` of the
fitted frames against the rank). The traces follow a few particles over the frames (truth
solid, prediction dashed) for the component with the largest spread: trace ``k`` is ``v(t) - mean_t v_truth + 4 k
sigma`` for truth and prediction alike (``sigma``: standard deviation of the centred truth traces), so the traces
do not overlap and an offset error stays visible. The scatter plots prediction against truth (component-centred,
as the scores of :mod:`fieldlab.inr.fit`) with the ideal line ``p = y`` and the least-squares line. The maps show
the middle frame rasterised on the SSIM grid (:func:`fieldlab.inr.data.particle_grid`); each prediction is titled
with the SSIM of its map against the truth map (:func:`fieldlab.inr.scores.ssim` over occupied cells, ``L`` = the
truth map's range), both on the truth's colour scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fieldlab.core.io import atomic_open
from fieldlab.inr.data import FIELD_COMPONENTS, FieldWindow, particle_grid
from fieldlab.inr.data import map_resolution as default_resolution
from fieldlab.inr.scores import ssim

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TRACE_OFFSET = 4.0  # trace k is shifted by TRACE_OFFSET * k standard deviations


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


def panel_axes(fig: Figure, n_components: int) -> dict[str, Axes | list[Axes]]:
    """The axes of the layout (module docstring): ``loss``, ``traces``, ``info``, ``scatter``, ``truth``, ``pred``.

    ``truth`` and ``pred`` hold one axes per component, in component order.
    """
    if n_components == 1:
        grid = fig.add_gridspec(2, 3)
        top, scatter = [grid[0, c] for c in range(3)], grid[1, 2]
        truth, pred = [grid[1, 0]], [grid[1, 1]]
    elif n_components == 4:
        grid = fig.add_gridspec(3, 4)
        top, scatter = [grid[0, c] for c in range(3)], grid[0, 3]
        truth = [grid[1 + c // 2, c % 2] for c in range(4)]  # (2, 2) components -> rows 1-2, columns 0-1
        pred = [grid[1 + c // 2, 2 + c % 2] for c in range(4)]  # ... columns 2-3
    else:
        raise ValueError(f"inr_panel: {n_components} components: expected 1 (Jp) or 4 (F, S, C)")
    names = ("loss", "traces", "info")
    axes: dict[str, Axes | list[Axes]] = {name: fig.add_subplot(s) for name, s in zip(names, top, strict=True)}
    axes["scatter"] = fig.add_subplot(scatter)
    axes["truth"] = [fig.add_subplot(s) for s in truth]
    axes["pred"] = [fig.add_subplot(s) for s in pred]
    return axes


def plot_spectrum(ax: Axes, unexplained: np.ndarray, rank: int | None) -> None:
    """POD's loss panel: ``1 - R2`` of the fitted frames against the rank, the kept rank marked."""
    ranks = np.arange(1, unexplained.size + 1)
    shown = unexplained > 0
    ax.semilogy(ranks[shown], unexplained[shown], lw=1.5)
    if rank is not None:
        ax.axvline(rank, color="k", ls="--", lw=1, label=f"rank {rank}")
        ax.legend()
    ax.set(xlabel="rank", ylabel="1 - R2 (fitted frames)", title="POD: energy left out per rank")


def plot_loss(ax: Axes, losses: np.ndarray) -> None:
    steps = np.arange(1, losses.size + 1)
    ax.semilogy(steps, losses, lw=0.5, alpha=0.4, label="raw")
    ax.semilogy(steps, moving_average(losses, max(1, losses.size // 50)), lw=1.5, label="smoothed")
    ax.set(xlabel="step", ylabel="MSE (standardised)", title="training loss")
    ax.legend()


def plot_traces(ax: Axes, window: FieldWindow, prediction: np.ndarray, n_traces: int, label: str = "INR") -> None:
    """Centred, offset traces of ``n_traces`` particles (module docstring); each line's gid names its particle."""
    c = int(np.argmax(window.values.reshape(-1, window.n_components).std(0)))
    picks = np.unique(np.linspace(0, window.n_particles - 1, n_traces).astype(int))
    truth, pred = window.values[:, picks, c], prediction[:, picks, c]  # (T, k)
    mean = truth.mean(0)  # (k,) each particle's truth mean over the frames
    sigma = float((truth - mean).std()) or 1.0
    for k, p in enumerate(picks):
        shift = TRACE_OFFSET * sigma * k - mean[k]
        ax.plot(window.frames, truth[:, k] + shift, color=f"C{k % 10}", lw=1.2, gid=f"truth {p}")
        ax.plot(window.frames, pred[:, k] + shift, color=f"C{k % 10}", lw=1.2, ls="--", gid=f"pred {p}")
    name = FIELD_COMPONENTS[window.field_name][c]
    ax.set(xlabel="frame", ylabel=f"{name} - particle mean + {TRACE_OFFSET:g} k sd", yticks=[])
    ax.set_title(f"{len(picks)} particles, {name} (sd {sigma:.3g}): truth solid, {label} dashed")


def plot_info(ax: Axes, window: FieldWindow, metrics: dict, n_steps: int) -> None:
    ax.axis("off")
    rows = [
        ("field", window.field_name),
        ("model", metrics.get("inr_type", "?")),
        ("steps", metrics.get("total_steps", n_steps)),
        ("particles", window.n_particles),
        ("frames", f"{window.n_frames} ({window.frames[0]}..{window.frames[-1]})"),
        ("params", metrics.get("total_params", "?")),
        ("compression", _num(metrics.get("compression_ratio"), ".2f")),
        ("MSE", _num(metrics.get("final_mse"), ".4g")),
        ("R2", _num(metrics.get("final_r2"), ".5f")),
        ("slope", _num(metrics.get("slope"), ".4f")),
        ("time", f"{_num(metrics.get('training_time'), '.1f')} s"),
    ]
    text = "\n".join(f"{k:<12}{v}" for k, v in rows)
    ax.text(0.02, 0.98, text, va="top", family="monospace", fontsize=12, transform=ax.transAxes)


def plot_scatter(ax: Axes, window: FieldWindow, prediction: np.ndarray, metrics: dict, max_points: int) -> None:
    mean = window.values.reshape(-1, window.n_components).mean(0)  # scores use component-centred values
    truth, pred = (window.values - mean).ravel(), (prediction - mean).ravel()
    sel = np.random.default_rng(0).choice(truth.size, min(max_points, truth.size), replace=False)
    ax.scatter(truth[sel], pred[sel], s=1, alpha=0.3)
    line = np.array([float(truth.min()), float(truth.max())])
    ax.plot(line, line, "k--", lw=1, label="ideal")
    if metrics.get("slope") is not None and metrics.get("intercept") is not None:
        ax.plot(line, metrics["slope"] * line + metrics["intercept"], "r-", lw=1, label="regression")
    r2, slope = _num(metrics.get("final_r2"), ".5f"), _num(metrics.get("slope"), ".4f")
    ax.set(xlabel="truth - component mean", ylabel="prediction - component mean", title=f"R2 {r2}, slope {slope}")
    ax.legend()


def plot_maps(fig: Figure, axes: dict, window: FieldWindow, prediction: np.ndarray, resolution: int,
              label: str = "INR") -> list[float]:  # fmt: skip
    """Truth and prediction maps of every component at the middle frame; returns the SSIM of each map."""
    k = window.n_frames // 2
    pos = window.positions[k]
    bounds = (pos[:, 0].min(), pos[:, 0].max(), pos[:, 1].min(), pos[:, 1].max())
    scores = []
    for c, name in enumerate(FIELD_COMPONENTS[window.field_name]):
        truth, mask = particle_grid(pos, window.values[k, :, c], resolution, bounds)
        pred, _ = particle_grid(pos, prediction[k, :, c], resolution, bounds)
        vmin, vmax = float(truth[mask].min()), float(truth[mask].max())
        scores.append(ssim(truth, pred, data_range=vmax - vmin if vmax > vmin else 1.0, mask=mask))
        titles = (f"{name} truth, frame {window.frames[k]}", f"{name} {label}, SSIM {_num(scores[-1], '.4f')}")
        for ax, img, title in zip((axes["truth"][c], axes["pred"][c]), (truth, pred), titles, strict=True):
            shown = np.ma.masked_where(~mask, img)
            im = ax.imshow(shown, origin="lower", extent=bounds, vmin=vmin, vmax=vmax, cmap="viridis")
            ax.set(title=title, xlabel="x", ylabel="y")
            fig.colorbar(im, ax=ax, shrink=0.85)
    return scores


def panel_figure(
    window: FieldWindow,
    prediction: np.ndarray,
    losses: np.ndarray,
    metrics: dict,
    map_resolution: int | None = None,
    n_traces: int = 6,
    max_scatter: int = 20000,
) -> Figure:
    """The panel of a fit as a matplotlib figure (see :func:`inr_panel`)."""
    from matplotlib.figure import Figure

    n_c = window.n_components
    fig = Figure(figsize=(15.5, 9.5) if n_c == 1 else (19, 13.5), layout="constrained")
    axes = panel_axes(fig, n_c)
    if metrics.get("inr_type") == "pod":
        plot_spectrum(axes["loss"], np.asarray(losses), metrics.get("pod_rank"))
    else:
        plot_loss(axes["loss"], np.asarray(losses))
    label = {"pod": "POD", "pod_residual": "POD + INR"}.get(str(metrics.get("inr_type")), "INR")
    plot_traces(axes["traces"], window, prediction, n_traces, label)
    plot_info(axes["info"], window, metrics, len(losses))
    plot_scatter(axes["scatter"], window, prediction, metrics, max_scatter)
    plot_maps(fig, axes, window, prediction, map_resolution or default_resolution(window.n_particles), label)
    return fig


def inr_panel(path: str | Path, window: FieldWindow, prediction: np.ndarray, losses: np.ndarray, metrics: dict,
              **options: int) -> None:  # fmt: skip
    """Write the panel PNG of a fit to ``path`` (atomically).

    Parameters
    ----------
    window, prediction
        The fitted field window and the prediction ``(T, N, C)`` in physical units.
    losses
        Training loss per step (standardised units).
    metrics
        The ``metrics/inr.json`` record (``final_r2``, ``slope``, ``intercept``, ``final_mse``, ...).
    **options
        ``map_resolution``, ``n_traces``, ``max_scatter`` of :func:`panel_figure`.
    """
    fig = panel_figure(window, prediction, losses, metrics, **options)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=80)
