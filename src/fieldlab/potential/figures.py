"""Error-map figures: masked truth, masked prediction and log10 absolute error on an axial and a sagittal slice.

Both slices pass through the centre of the source (or the grid centre): the axial slice is ``d = d0`` (an x-y
section across the limb), the sagittal slice is ``w = w0`` (a z-y section along the limb). Voxels outside the mask
are blank (NaN). The error panel shows ``log10(|p - t| + eps)`` on a colour scale shared by both slices.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only; never a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def error_map_figure(
    truth: np.ndarray,
    pred: np.ndarray,
    mask: np.ndarray,
    centre: Sequence[int] | None = None,
    title: str = "",
    eps: float = 1e-6,
) -> Figure:
    """2 x 3 figure: rows (axial, sagittal), columns (masked truth, masked prediction, log10 |error|).

    Parameters
    ----------
    truth, pred, mask
        ``(D, H, W)`` arrays (mask bool).
    centre
        Voxel ``(d, h, w)`` the slices pass through; defaults to the grid centre.
    """
    truth = np.asarray(truth, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if not (truth.shape == pred.shape == mask.shape) or truth.ndim != 3:
        raise ValueError(f"truth {truth.shape}, prediction {pred.shape}, mask {mask.shape}: expected equal (D, H, W)")
    d0, _, w0 = (s // 2 for s in truth.shape) if centre is None else (int(c) for c in centre)
    slices = {"axial (z = const)": (np.s_[d0, :, :]), "sagittal (x = const)": (np.s_[:, :, w0])}
    t_m = np.where(mask, truth, np.nan)
    p_m = np.where(mask, pred, np.nan)
    err = np.where(mask, np.log10(np.abs(pred - truth) + eps), np.nan)
    finite = truth[mask] if mask.any() else truth.ravel()
    vmin, vmax = float(np.min(finite)), float(np.max(finite))
    emin, emax = (float(np.nanmin(err)), float(np.nanmax(err))) if mask.any() else (-6.0, 0.0)

    fig, axes = plt.subplots(2, 3, figsize=(10, 6.5), squeeze=False)
    for row, (name, sl) in enumerate(slices.items()):
        for col, (label, data, lo, hi, cmap) in enumerate(
            (
                ("truth", t_m[sl], vmin, vmax, "RdBu_r"),
                ("prediction", p_m[sl], vmin, vmax, "RdBu_r"),
                ("log10 |error|", err[sl], emin, emax, "magma"),
            )
        ):
            ax = axes[row, col]
            im = ax.imshow(data, origin="lower", cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
            ax.set_title(f"{label}, {name}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str) -> None:
    """Write a PNG and release the figure."""
    from fieldlab.core.io import atomic_open

    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
