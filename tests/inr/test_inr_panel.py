"""The fit panel: the study's layout for one and four components, SSIM in the map titles, offset traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fieldlab.inr.data import FIELD_COMPONENTS, FieldWindow, field_components, synthetic_trajectory
from fieldlab.inr.panel import TRACE_OFFSET, inr_panel, panel_axes, panel_figure

METRICS = {"final_r2": 0.99, "slope": 0.98, "intercept": 0.0, "final_mse": 1e-4, "inr_type": "ngp",
           "total_params": 1000, "compression_ratio": 2.0, "training_time": 3.0}  # fmt: skip


def window_of(field_name: str, n_frames: int = 12, n_particles: int = 600) -> FieldWindow:
    traj = synthetic_trajectory(n_frames, n_particles)
    values = field_components(field_name, traj).astype(np.float32)
    return FieldWindow(field_name, values, traj["x"], np.arange(n_frames), traj["material"])


def grid_axes(fig) -> dict[tuple[int, int], object]:
    """Axes placed on the grid, by (row, column); colorbars (no grid cell) are left out."""
    out = {}
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is not None:
            out[(spec.rowspan.start, spec.colspan.start)] = ax
            assert len(spec.rowspan) == len(spec.colspan) == 1
    return out


def test_one_component_layout() -> None:
    """[loss | traces | info] / [truth | prediction | scatter]; a perfect prediction has SSIM 1."""
    w = window_of("Jp")
    fig = panel_figure(w, w.values.copy(), np.geomspace(1.0, 1e-3, 50), METRICS)
    axes = grid_axes(fig)
    assert sorted(axes) == [(r, c) for r in range(2) for c in range(3)]
    assert axes[(0, 0)].get_subplotspec().get_gridspec().get_geometry() == (2, 3)
    assert axes[(0, 0)].get_title() == "training loss"
    assert "particles" in axes[(0, 1)].get_title()
    assert "R2          0.99000" in axes[(0, 2)].texts[0].get_text()
    assert axes[(1, 0)].get_title().startswith("Jp truth")
    assert axes[(1, 1)].get_title() == "Jp INR, SSIM 1.0000"
    assert axes[(1, 2)].get_title().startswith("R2 ")  # the scatter
    assert len(fig.axes) == 6 + 2  # and one colorbar per map


def test_four_component_layout() -> None:
    """[loss | traces | info | scatter] / [truth 11 | truth 12 | pred 11 | pred 12] / [truth 21 | ... | pred 22]."""
    w = window_of("F")
    noisy = w.values + np.random.default_rng(0).normal(0, 0.05, w.values.shape).astype(np.float32)
    fig = panel_figure(w, noisy, np.geomspace(1.0, 1e-3, 50), METRICS)
    axes = grid_axes(fig)
    assert sorted(axes) == [(r, c) for r in range(3) for c in range(4)]
    assert axes[(0, 0)].get_subplotspec().get_gridspec().get_geometry() == (3, 4)
    assert axes[(0, 3)].get_title().startswith("R2 ")
    for c, name in enumerate(FIELD_COMPONENTS["F"]):  # 11, 12, 21, 22 -> 2 x 2 blocks
        row, col = 1 + c // 2, c % 2
        assert axes[(row, col)].get_title().startswith(f"{name} truth")
        title = axes[(row, 2 + col)].get_title()
        assert title.startswith(f"{name} INR, SSIM ")
        assert 0.0 < float(title.rsplit(" ", 1)[1]) < 1.0  # noise lowers SSIM below the perfect 1


@pytest.mark.parametrize("field_name", ["Jp", "F"])
def test_traces_are_centred_and_offset_by_four_sd(field_name: str) -> None:
    """Trace k of particle p: v(t) - mean_t truth_p + 4 k sd, sd of the centred truth traces of the component with
    the largest spread. A prediction off by a constant d keeps its offset: pred line - truth line = d."""
    w = window_of(field_name)
    d = 0.3
    fig = panel_figure(w, w.values + d, np.ones(10), METRICS, n_traces=5)
    axes = grid_axes(fig)
    lines = {line.get_gid(): line for line in axes[(0, 1)].get_lines()}
    picks = [int(g.split()[1]) for g in lines if g.startswith("truth")]
    assert len(picks) == 5 and len(lines) == 10
    c = int(np.argmax([w.values[..., k].std() for k in range(w.n_components)]))
    centred = w.values[:, picks, c] - w.values[:, picks, c].mean(0)  # (T, 5)
    sd = centred.std()
    for k, p in enumerate(picks):
        truth, pred = lines[f"truth {p}"].get_ydata(), lines[f"pred {p}"].get_ydata()
        np.testing.assert_allclose(truth, centred[:, k] + TRACE_OFFSET * k * sd, atol=1e-5)
        np.testing.assert_allclose(pred - truth, d, atol=1e-5)
    assert FIELD_COMPONENTS[field_name][c] in axes[(0, 1)].get_title()


def test_inr_panel_writes_a_png(tmp_path: Path) -> None:
    w = window_of("Jp")
    inr_panel(tmp_path / "panel.png", w, w.values, np.geomspace(1.0, 1e-3, 50), METRICS)
    assert (tmp_path / "panel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_other_component_counts_are_refused() -> None:
    from matplotlib.figure import Figure

    with pytest.raises(ValueError, match="expected 1"):
        panel_axes(Figure(), 2)
