"""POD (truncated SVD) as a representation: exactness at the true rank, the leading singular triple, its stored
floats in closed form, the spline between frames and the hybrid with a zero residual network."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from fieldlab.config import INRConfig, NGPConfig, load_config
from fieldlab.config.inr import PODConfig
from fieldlab.inr.block import INROutputs, run_inr_block
from fieldlab.inr.data import FieldWindow, synthetic_trajectory
from fieldlab.inr.models.pod import fit_pod, rank_for
from fieldlab.inr.models.registry import FieldINR
from fieldlab.inr.represent import fit_pod_residual, fit_representation

CPU = torch.device("cpu")


def rank_k_window(k: int, n_frames: int = 10, n_particles: int = 50, n_c: int = 4, seed: int = 0) -> FieldWindow:
    """``y(t, n, c) = m_c + sum_j a_j(t, c) b_j(n)`` with random ``a``, ``b``: after removing ``m_c`` exactly the
    product of a ``(T C, k)`` and a ``(k, N)`` matrix whose columns/rows are centred, so rank k (generically)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n_frames, n_c, k))
    b = rng.normal(size=(k, n_particles))
    b -= b.mean(1, keepdims=True)  # zero mean over particles: sum_n y(t, n, c) - m_c = 0, so m_c is the mean
    values = np.einsum("tcj,jn->tnc", a, b) + np.array([1.0, -2.0, 0.5, 3.0])[:n_c]
    traj = synthetic_trajectory(n_frames, n_particles)
    field_name = "F" if n_c == 4 else "Jp"
    return FieldWindow(field_name, values.astype(np.float64), traj["x"], np.arange(n_frames), traj["material"])


@pytest.mark.parametrize("k", [1, 3, 6])
def test_pod_of_an_exact_rank_k_field_is_exact_at_rank_k(k):
    """At rank k the truncated SVD reproduces a rank-k field (R2 = 1 to 1e-10); one rank less does not (the k-th
    singular value of a generic product is far from 0). Stored floats: r (T C + N) + C, from the shapes alone."""
    w = rank_k_window(k)
    cfg = INRConfig(model="pod", field_name="F", pod=PODConfig(rank=k))
    result = fit_representation(cfg, w, seed=0, device=CPU)
    assert result.stats.r2 == pytest.approx(1.0, abs=1e-10)
    assert result.total_params == k * (10 * 4 + 50) + 4
    np.testing.assert_allclose(result.prediction, w.values, atol=1e-5)  # float32 prediction
    below = fit_representation(replace(cfg, pod=PODConfig(rank=k - 1)), w, 0, CPU) if k > 1 else None
    if below is not None:
        assert below.stats.r2 < 1 - 1e-3


def test_rank_one_truncation_is_the_leading_singular_triple():
    """For M = U diag(s) V^T built from chosen orthonormal U, V and s = (5, 2, 1), the rank-1 POD of the field
    whose centred (T C, N) matrix is M is s_1 u_1 v_1^T, and its fitted R2 is s_1^2 / sum s^2 = 25 / 30."""
    rng = np.random.default_rng(1)
    n_t, n, s = 6, 40, np.array([5.0, 2.0, 1.0])
    u, _ = np.linalg.qr(rng.normal(size=(n_t, 3)))  # (T, 3) orthonormal columns (one component: T C = T)
    centred = rng.normal(size=(n, 3))
    centred -= centred.mean(0)  # columns orthogonal to ones: the field's mean stays the added constant
    v, _ = np.linalg.qr(centred)  # still orthogonal to ones (a combination of centred columns)
    m = u @ np.diag(s) @ v.T  # (T, N)
    values = (m + 2.0)[:, :, None]
    pod = fit_pod(values, np.arange(n_t), rank=1)
    leading = s[0] * np.outer(u[:, 0], v[:, 0])
    np.testing.assert_allclose(pod.reconstruct()[:, :, 0] - 2.0, leading, atol=1e-12)
    a, b = pod.temporal[:, 0, 0], pod.modes[0]  # A = U_1 s_1 and V_1^T, up to a common sign
    sign = np.sign(a @ u[:, 0])
    np.testing.assert_allclose(sign * a, s[0] * u[:, 0], atol=1e-12)
    np.testing.assert_allclose(sign * b, v[:, 0], atol=1e-12)
    assert pod.unexplained()[0] == pytest.approx(5 / 30, abs=1e-12)  # R2 of rank 1: 25 / 30


def test_target_r2_picks_the_smallest_sufficient_rank():
    """Energies 4, 3, 2, 1: R2 after 1, 2, 3, 4 ranks = 0.4, 0.7, 0.9, 1.0."""
    e = np.array([4.0, 3.0, 2.0, 1.0])
    assert [rank_for(e, 4, t) for t in (0.3, 0.4, 0.71, 0.95)] == [1, 1, 3, 4]
    assert rank_for(e, 2, 0.95) == 2  # capped by rank
    assert rank_for(e, 9) == 4  # at most the matrix's smaller side


def test_spline_reproduces_cubic_temporal_coefficients_between_frames():
    """y(t, n) = m + (t^3 - 2 t) b(n): the temporal coefficient is a cubic in t, which a not-a-knot cubic spline
    through the fitted frames reproduces exactly at every frame between them."""
    frames = np.array([0, 1, 3, 4, 5, 7, 8])
    b = np.linspace(-1.0, 1.0, 30)

    def field(t: np.ndarray) -> np.ndarray:
        tt = t.astype(np.float64)[:, None]
        return (0.5 + (tt**3 - 2 * tt) / 100 * b)[:, :, None]

    pod = fit_pod(field(frames), frames, rank=1)
    np.testing.assert_allclose(pod.at_frames(np.array([2, 6])), field(np.array([2, 6])), atol=1e-12)
    with pytest.raises(ValueError, match="within the fitted"):
        pod.at_frames(np.array([9]))


class ZeroNet(nn.Module):
    """A network that outputs exactly zero (its parameter enters as 0 * p, so training cannot move the output)."""

    def __init__(self, n_c: int) -> None:
        super().__init__()
        self.n_c = n_c
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.n_c) + 0.0 * self.p


def test_hybrid_with_a_zero_residual_network_equals_pod(monkeypatch):
    """pod_residual = POD + rms * net: with net = 0 its prediction and scores are the POD's, its stored floats the
    POD's plus the network's one parameter."""
    traj = synthetic_trajectory(8, 120)
    values = traj["S"].reshape(8, 120, 4).astype(np.float32)
    w = FieldWindow("S", values, traj["x"], np.arange(8), traj["material"])
    monkeypatch.setattr("fieldlab.inr.fit.build_inr", lambda cfg, n, n_c: FieldINR("ngp", ZeroNet(n_c), n, n_c))
    cfg = INRConfig(model="pod_residual", field_name="S", total_steps=3, pod=PODConfig(rank=2))
    hybrid = fit_pod_residual(cfg, w, seed=0, device=CPU)
    pod = fit_representation(replace(cfg, model="pod"), w, seed=0, device=CPU)
    assert pod.stats.r2 < 0.999  # rank 2 leaves something for the network
    np.testing.assert_array_equal(hybrid.prediction, pod.prediction)
    assert hybrid.stats.r2 == pod.stats.r2
    assert hybrid.total_params == pod.total_params + 1


def test_hybrid_network_learns_the_residual():
    """On a smooth field the residual network adds what rank 1 left out (a check that it is trained on it)."""
    traj = synthetic_trajectory(8, 200)
    w = FieldWindow("Jp", traj["Jp"][..., None].astype(np.float32), traj["x"], np.arange(8), traj["material"])
    ngp = NGPConfig(levels=6, features=2, log2_table_size=12, base_resolution=4, growth=1.5, mlp_width=32)
    cfg = INRConfig(model="pod_residual", field_name="Jp", lr=2e-3, batch_size=4, total_steps=150, ngp=ngp,
                    pod=PODConfig(rank=1))  # fmt: skip
    hybrid = fit_representation(cfg, w, seed=0, device=CPU)
    pod = fit_representation(replace(cfg, model="pod"), w, seed=0, device=CPU)
    assert hybrid.stats.r2 > 1 - 0.5 * (1 - pod.stats.r2)  # it removes over half of what POD leaves


def test_stage_writes_pod_metrics(tmp_path: Path, monkeypatch):
    """The inr_block library call with inr.model = pod: every output, compression = values / stored floats."""
    (tmp_path / "data/mpm/syn").mkdir(parents=True)
    np.savez(tmp_path / "data/mpm/syn/trajectory.npz", **synthetic_trajectory(6, 60))
    params = {"seed": 0, "inr": {"model": "pod", "field_name": "F", "scene": "syn", "n_training_frames": 6,
                                 "pod": {"rank": 3}}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    metrics = run_inr_block(load_config("params.yaml").inr, seed=0, outputs=INROutputs(), progress=False)
    assert metrics["inr_type"] == "pod" and metrics["pod_rank"] == 3 and metrics["total_steps"] == 0
    assert metrics["total_params"] == 3 * (6 * 4 + 60) + 4
    assert metrics["compression_ratio"] == pytest.approx(6 * 60 * 4 / metrics["total_params"])
    assert json.loads((tmp_path / "metrics/inr.json").read_text())["final_r2"] == metrics["final_r2"]
    assert (tmp_path / "plots/inr_panel.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "plots/inr_loss.csv").read_text().startswith("rank,unexplained\n1,")
    checkpoint = torch.load(tmp_path / "artifacts/inr/model.pt", weights_only=False)
    assert checkpoint["pod"]["modes"].shape == (3, 60) and "state_dict" not in checkpoint
    assert list((tmp_path / "artifacts/inr/tb").glob("events.out.tfevents.*"))  # the final scores, no training
