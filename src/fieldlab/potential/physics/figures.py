"""Picture of one potential sample: tissues, sigma_zz, source and potential on an axial and a sagittal slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fieldlab.potential.schema import SIGMA_CHANNELS, TISSUES, PotentialSample


def plot_sample(sample: PotentialSample, path: str | Path, dpi: int = 80) -> None:
    """Write a 2 x 4 panel PNG: rows axial (z through the + pole) and sagittal (x through it), columns tissue,
    sigma_zz (S/m), source (A/m^3) and u (V), in physical millimetres."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d, _, w = (int(i) for i in sample.source_index[0])
    dx, dy, dz = (float(s) * 1e3 for s in sample.spacing)
    D, H, W = sample.shape
    zz = sample.sigma[..., SIGMA_CHANNELS.index("zz")]
    fields = [
        ("tissue", sample.tissue.astype(float), "tab10", None),
        ("sigma_zz (S/m)", zz, "viridis", None),
        ("source (A/m^3)", sample.source, "RdBu_r", "sym"),
        ("u (V)", np.where(sample.mask, sample.u, np.nan), "RdBu_r", "sym"),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.2), gridspec_kw={"height_ratios": [1, 1]})
    for col, (title, vol, cmap, norm) in enumerate(fields):
        for row, (sl, extent, xlabel, ylabel, name) in enumerate(
            [
                (vol[d], (-W * dx / 2, W * dx / 2, -H * dy / 2, H * dy / 2), "x (mm)", "y (mm)", f"axial, d={d}"),
                (
                    vol[:, :, w].T,
                    (-D * dz / 2, D * dz / 2, -H * dy / 2, H * dy / 2),
                    "z (mm)",
                    "y (mm)",
                    f"sagittal, w={w}",
                ),
            ]
        ):
            ax = axes[row, col]
            kw = {}
            if norm == "sym":
                m = float(np.nanmax(np.abs(sl))) or 1.0
                kw = {"vmin": -m, "vmax": m}
            if title == "tissue":
                kw = {"vmin": 0, "vmax": 9.99}
            im = ax.imshow(sl, origin="lower", extent=extent, cmap=cmap, interpolation="nearest", aspect="equal", **kw)
            ax.set_title(f"{title} - {name}", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.tick_params(labelsize=7)
            cb = fig.colorbar(im, ax=ax, shrink=0.8)
            cb.ax.tick_params(labelsize=7)
            if title == "tissue":
                cb.set_ticks(list(TISSUES.values()))
                cb.set_ticklabels(list(TISSUES))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
