"""Held-out frames and particles: the split, its time coordinates, no leak into the fit, unanswerable queries."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fieldlab.config import INRConfig, NGPConfig, load_config
from fieldlab.config.inr import PODConfig
from fieldlab.errors import ConfigError
from fieldlab.inr.block import INROutputs, run_inr_block
from fieldlab.inr.data import FieldWindow, field_components, synthetic_trajectory
from fieldlab.inr.heldout import heldout_split, split_window
from fieldlab.inr.represent import fit_representation, predict_at

CPU = torch.device("cpu")
SMALL_NGP = NGPConfig(levels=6, features=2, log2_table_size=12, base_resolution=4, growth=1.5, mlp_width=32)
SPIKE = 50.0


@pytest.mark.parametrize(("n_frames", "every"), [(48, 4), (13, 3), (9, 2)])
def test_split_holds_out_interior_frames_every_k(n_frames, every):
    s = heldout_split(n_frames, 100, every, 0.1)
    assert np.all(np.diff(s.heldout_frames) == every) and s.heldout_frames.size >= 1
    assert s.heldout_frames.min() > 0 and s.heldout_frames.max() < n_frames - 1  # never extrapolated
    assert sorted([*s.fit_frames, *s.heldout_frames]) == list(range(n_frames))
    assert s.heldout_particles.size == 10 and not set(s.heldout_particles) & set(s.fit_particles)
    again = heldout_split(n_frames, 100, every, 0.1)
    np.testing.assert_array_equal(again.heldout_particles, s.heldout_particles)  # the same whatever the run


@pytest.mark.parametrize(("every", "fraction"), [(1, 0.0), (4, 0.0001), (0, 0.9999)])
def test_split_that_holds_out_nothing_or_everything_is_a_config_error(every, fraction):
    with pytest.raises(ConfigError, match=r"inr\.heldout"):
        heldout_split(48, 100, every, fraction)


def spiked_window(n_frames: int = 13, n_particles: int = 150) -> tuple[FieldWindow, FieldWindow]:
    """Jp of the synthetic trajectory (smooth in t, x, y) and the same with +SPIKE on the frames that
    ``heldout_every = 4`` holds out (positions 2, 6, 10): returns (spiked, smooth)."""
    traj = synthetic_trajectory(n_frames, n_particles)
    smooth = field_components("Jp", traj).astype(np.float32)
    spiked = smooth.copy()
    spiked[[2, 6, 10]] += SPIKE
    make = lambda v: FieldWindow("Jp", v, traj["x"], np.arange(n_frames), traj["material"])  # noqa: E731
    return make(spiked), make(smooth)


@pytest.mark.parametrize(
    "cfg",
    [
        INRConfig(model="pod", field_name="Jp", pod=PODConfig(rank=4)),
        INRConfig(model="ngp", field_name="Jp", lr=2e-3, batch_size=4, total_steps=150, ngp=SMALL_NGP),
    ],
    ids=["pod", "ngp"],
)
def test_a_spike_on_held_out_frames_is_not_learned(cfg):
    """Truth = smooth + 50 on the held-out frames only. A fit that saw them would reproduce the spike (POD at rank
    4 reproduces any frame it is given; a hash grid fits a step in t); one that did not predicts the smooth field
    there. The split must hold the frames out of the fit, its statistics and its standardisation."""
    spiked, smooth = spiked_window()
    cfg = replace(cfg, heldout_every=4)
    fit_window, split = split_window(cfg, spiked)
    assert split.heldout_frames.tolist() == [2, 6, 10] and not set(fit_window.frames) & {2, 6, 10}
    result = fit_representation(cfg, fit_window, seed=0, device=CPU)
    query = spiked.subset(split.heldout_frames, split.fit_particles)
    pred = predict_at(cfg, result, query, CPU)
    err_smooth = np.abs(pred - smooth.subset(split.heldout_frames).values).max()
    assert err_smooth < 0.05 * SPIKE  # the smooth field, not the spike (the field itself spans ~0.6)
    control = fit_representation(cfg, spiked, seed=0, device=CPU)  # no split: the same fit does learn the spike
    assert np.abs(control.prediction[[2, 6, 10]] - smooth.values[[2, 6, 10]]).mean() > 0.5 * SPIKE


def test_subset_keeps_the_parent_time_coordinate():
    spiked, _ = spiked_window()
    t = spiked.time_coordinate()
    np.testing.assert_allclose(t, np.linspace(-1, 1, 13))
    np.testing.assert_allclose(spiked.subset(np.array([2, 6, 10])).time_coordinate(), t[[2, 6, 10]])
    np.testing.assert_allclose(spiked.subset(np.array([0, 1, 3, 12])).time_coordinate(), t[[0, 1, 3, 12]])


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "data/mpm/syn").mkdir(parents=True)
    np.savez(tmp_path / "data/mpm/syn/trajectory.npz", **synthetic_trajectory(9, 80))
    params = {"seed": 0, "inr": {"field_name": "F", "scene": "syn", "n_training_frames": 9, "heldout_every": 4,
                                 "heldout_particles": 0.1, "total_steps": 5, "ngp": {"levels": 4,
                                 "log2_table_size": 10}, "pod": {"rank": 3}}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


@pytest.mark.parametrize(("model", "answerable"), [("ngp", True), ("siren_txy", True), ("pod", False),
                                                   ("pod_residual", False), ("siren_t", False)])  # fmt: skip
def test_held_out_particles_are_answered_only_by_coordinate_models(workspace, monkeypatch, model, answerable):
    """9 frames, 80 particles: frames 2, 6 and 8 particles held out; the fit sees 7 x 72 x 4 values; the
    held-out particles' score is a number for ngp and siren_txy, null (not 0) for the others."""
    monkeypatch.chdir(workspace)
    cfg = replace(load_config("params.yaml").inr, model=model, hidden_features=16, hidden_layers=2)
    m = run_inr_block(cfg, seed=0, outputs=INROutputs(), progress=False)
    assert m["n_values"] == 7 * 72 * 4 and m["heldout_frames"] == 2 and m["heldout_particles"] == 8
    assert isinstance(m["heldout_frames_r2"], float)
    assert m["heldout_particles_answerable"] is answerable
    assert isinstance(m["heldout_particles_r2"], float) if answerable else m["heldout_particles_r2"] is None
