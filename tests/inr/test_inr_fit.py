"""INR fits end to end on a smooth synthetic trajectory: accuracy, physical units, seeding, the stage and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from fieldlab.config import INRConfig, NGPConfig, load_config
from fieldlab.inr.block import run_inr_block
from fieldlab.inr.data import FieldWindow, field_components, synthetic_trajectory
from fieldlab.inr.fit import fit_inr
from fieldlab.inr.models.registry import FieldINR, make_inputs

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


def window_of(field_name: str, n_frames: int = 8, n_particles: int = 200) -> FieldWindow:
    traj = synthetic_trajectory(n_frames, n_particles)
    values = field_components(field_name, traj).astype(np.float32)
    return FieldWindow(field_name, values, traj["x"], np.arange(n_frames), traj["material"])


SMALL_SIREN = INRConfig(
    model="siren_txy", hidden_features=64, hidden_layers=2, lr=1e-3, batch_size=4, total_steps=150, omega=30.0
)
SMALL_NGP = INRConfig(
    model="ngp",
    lr=2e-3,
    batch_size=4,
    total_steps=150,
    ngp=NGPConfig(
        levels=6, features=2, log2_table_size=12, base_resolution=4, growth=1.5, mlp_width=32, table_lr_factor=5.0
    ),
)


@pytest.mark.parametrize("cfg", [SMALL_SIREN, SMALL_NGP], ids=["siren_txy", "ngp"])
def test_small_fit_reaches_r2_above_0_99_on_a_smooth_field(cfg):
    """Jp = 1 + 0.2 sin(2 pi x0) cos(pi t) + 0.1 y0 is smooth in (t, x, y): a small network fits it closely."""
    window = window_of("Jp")
    result = fit_inr(replace(cfg, field_name="Jp"), window, seed=0, device=CPU)
    assert result.stats.r2 > 0.99
    assert result.losses[-20:].mean() < 0.1 * result.losses[:5].mean()  # the loss fell by 10x
    assert np.all(np.isfinite(result.ssim)) and len(result.ssim) == 1


class ConstantField(nn.Module):
    """A network set by hand: ``c`` (standardised units) for every input, whatever training does.

    Its only parameter enters as ``0 * p``: the gradient is exactly zero, so Adam leaves it (and the output) as is.
    """

    def __init__(self, c: list[float]) -> None:
        super().__init__()
        self.register_buffer("c", torch.tensor(c))
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c.expand(x.shape[0], -1) + 0.0 * self.p  # (b*N, d) -> (b*N, C)


def test_metrics_are_in_physical_units_per_component(monkeypatch):
    """A model whose standardised output is the constant c_k on component k, fitted to S (scale ~25, four
    components of unequal spread), has a closed-form de-standardised prediction and closed-form scores.

    With m_k, s_k the component's mean and (population) std over the T*N values, the prediction is
    p_k = m_k + c_k s_k. Then SS_res,k = sum (y - m_k - c_k s_k)^2 = n s_k^2 (1 + c_k^2) (the cross term vanishes
    because sum (y - m_k) = 0) and SS_tot,k = n s_k^2, so

        R2_k = 1 - (1 + c_k^2) = -c_k^2,
        R2 (values centred per component) = -sum_k s_k^2 c_k^2 / sum_k s_k^2,
        slope = 0 (the centred prediction is constant on each component, whose centred truth sums to zero),
        R2 (raw pooled values) = 1 - sum_k s_k^2 (1 + c_k^2) / sum_k (s_k^2 + (m_k - M)^2), M = mean_k m_k.

    A prediction left in standardised units, or de-standardised with a pooled mean or std, misses every one."""
    window = window_of("S")
    c = [1.0, -2.0, 0.5, 0.0]
    monkeypatch.setattr(
        "fieldlab.inr.fit.build_inr", lambda cfg, n, n_c: FieldINR("siren_txy", ConstantField(c), n, n_c)
    )
    result = fit_inr(replace(SMALL_SIREN, field_name="S", total_steps=3), window, seed=0, device=CPU)
    flat = window.values.reshape(-1, 4).astype(np.float64)
    m, s = flat.mean(0), flat.std(0)
    np.testing.assert_allclose(result.prediction, np.broadcast_to(m + np.array(c) * s, window.values.shape), rtol=1e-6)
    np.testing.assert_allclose(result.r2_per_component, [-(ck**2) for ck in c], atol=1e-9)
    assert result.stats.r2 == pytest.approx(-np.sum(s**2 * np.square(c)) / np.sum(s**2), rel=1e-9)
    assert result.stats.slope == pytest.approx(0.0, abs=1e-9)
    pooled = 1 - np.sum(s**2 * (1 + np.square(c))) / np.sum(s**2 + (m - m.mean()) ** 2)
    assert result.r2_pooled == pytest.approx(pooled, rel=1e-9)
    assert len(result.ssim) == 4


def test_same_seed_same_losses_and_learnable_omega_moves():
    cfg = replace(SMALL_SIREN, total_steps=10, learn_omega=True, omega_lr=1e-2)
    a = fit_inr(cfg, window_of("Jp"), seed=3, device=CPU)
    b = fit_inr(cfg, window_of("Jp"), seed=3, device=CPU)
    np.testing.assert_array_equal(a.losses, b.losses)
    omegas = [float(p.detach()) for p in a.model.net.omega_parameters()]
    assert len(omegas) == 2 and any(abs(w - 30.0) > 1e-4 for w in omegas)


@pytest.mark.parametrize("model", ["siren_t", "siren_id", "siren_txy", "ngp"])
def test_inputs_of_every_variant(model):
    """Shapes (T, 1) or (T, N, d); SIREN coordinates in [-1, 1] / period, hash-grid coordinates in [0, 1]."""
    window = window_of("F", n_frames=5, n_particles=30)
    x = make_inputs(INRConfig(model=model, t_period=2.0), window)
    shape = {"siren_t": (5, 1), "siren_id": (5, 30, 2), "siren_txy": (5, 30, 3), "ngp": (5, 30, 3)}[model]
    assert x.shape == shape
    if model == "ngp":
        assert x.min() >= 0 and x.max() <= 1
    else:
        assert x[..., 0].max() == pytest.approx(0.5) and x[..., 0].min() == pytest.approx(-0.5)  # t / t_period


# ---- the stage ---------------------------------------------------------------------------------------------------
@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "data/mpm/syn").mkdir(parents=True)
    traj = synthetic_trajectory(6, 60)
    traj["F"][5] = traj["F"][5, 0]  # the last frame of F is uniform (one frame: nothing to fit)
    np.savez(tmp_path / "data/mpm/syn/trajectory.npz", **traj)
    params = {
        "seed": 0,
        "inr": {"model": "siren_txy", "field_name": "F", "scene": "syn", "n_training_frames": 6,
                "hidden_features": 16, "hidden_layers": 2, "total_steps": 5, "device": "cpu"},
    }  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def run_stage(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, str(ROOT / "stages/inr_block.py"), *overrides]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_stage_writes_every_output_and_appends_the_log(workspace, monkeypatch):
    monkeypatch.chdir(workspace)  # a first run in-process (same library call as the stage), then the stage itself
    run_inr_block(load_config("params.yaml").inr, seed=0, progress=False)
    proc = run_stage(workspace, "inr.model=ngp", "inr.ngp.log2_table_size=8", "inr.ngp.levels=4")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((workspace / "metrics/inr.json").read_text())
    for key in ("final_mse", "final_r2", "pearson_r2", "slope", "intercept", "total_params", "compression_ratio",
                "training_time", "field_name", "inr_type", "device", "ssim"):  # fmt: skip
        assert key in metrics, key
    assert metrics["inr_type"] == "ngp" and metrics["field_name"] == "F" and len(metrics["ssim"]) == 4
    assert metrics["compression_ratio"] == pytest.approx(6 * 60 * 4 / metrics["total_params"])
    for path in ("artifacts/inr/model.pt", "plots/inr_panel.png", "plots/inr_loss.csv"):
        assert (workspace / path).stat().st_size > 0, path
    assert (workspace / "plots/inr_panel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (workspace / "artifacts/inr/analysis.log").read_text()
    assert log.count("# inr_block") == 2 and "inr.model: siren_txy" in log and "inr_type: ngp" in log
    checkpoint = torch.load(workspace / "artifacts/inr/model.pt", weights_only=False)
    assert checkpoint["inr"]["model"] == "ngp" and checkpoint["n_particles"] == 60


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("inr.scene=missing", "trajectory not found"),
        ("inr.frame_start=5 inr.n_training_frames=1", "constant over frames 5..5"),
        ("inr.n_training_frames=7", "expected <= 6"),
        ("inr.model=siren_xyz", "inr.model"),
        ("inr.total_steps=0", "inr.total_steps"),
        ("inr.heldout_every=1", "inr.heldout_every = 1: expected 0 (off) or a value >= 2"),
        ("inr.model=pod inr.heldout_particles=0.001", "inr.heldout_particles = 0.001: holds out 0 of 60"),
        ("inr.pod.rank=0", "inr.pod.rank"),
    ],
)
def test_stage_bad_input_is_one_line_and_non_zero(workspace, override, message):
    proc = run_stage(workspace, *override.split())
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert not (workspace / "metrics/inr.json").exists()
