"""Zero-shot evaluation: metrics at base and 2x, the restricted UNet baseline, timing, figures, JSON output."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from support_slow import slowed
from support_train import tiny_config, tiny_factory, write_corpus
from torch import nn

from fieldlab.core.checkpoint import load_checkpoint, save_checkpoint
from fieldlab.errors import InputError
from fieldlab.potential.data.loader import PotentialDataset, split_files
from fieldlab.potential.data.prior import free_space_prior
from fieldlab.potential.evaluation import zero_shot as evaluate
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.training.operator import train_operator


class ZeroOperator(nn.Module):
    """Predicts phi = 0 everywhere: relative L2 is exactly 1 and the MSE is the mean of phi^2 in the mask."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, sigma, f, coords, spacing, prior=None):
        return torch.zeros_like(f) + 0.0 * self.bias

    def predict_restricted(self, sigma, f, coords, spacing, grid, prior=None):
        return self.forward(sigma, f, coords, spacing)

    def predict_coarse(self, sigma, f, coords, spacing, grid, prior=None):
        return torch.zeros((f.shape[0], 1, *grid), dtype=f.dtype)


@pytest.fixture
def root(tmp_path):
    return write_corpus(tmp_path / "potential")


def zero_checkpoint(path: Path, scaler: FieldScaler, ref: list[float]) -> Path:
    """A checkpoint of :class:`ZeroOperator` on the tiny corpus's grid."""
    ckpt = {
        "model": ZeroOperator().state_dict(),
        "model_config": {"backbone": "unet"},
        "backbone": "unet",
        "transforms": scaler.to_dict(),
        "reference_spacing": ref,
        "grid": [8, 6, 6],
        "epoch": 1,
    }
    save_checkpoint(path, ckpt)
    return path


def test_zero_model_has_relative_error_one_at_both_resolutions(root, tmp_path):
    cfg = tiny_config(root, tmp_path)
    scaler = FieldScaler(f_scale=1.0, u_scale=1e-3)
    ref = [0.01, 0.01, 0.01]
    path = zero_checkpoint(tmp_path / "best.pt", scaler, ref)
    out = evaluate.evaluate_sr(cfg, path, tmp_path / "figs", model_factory=lambda c, b: ZeroOperator())
    assert out["backbone"] == "unet"
    for key in ("base", "x2", "x2_restricted"):
        assert out[key]["rel_l2"] == pytest.approx(1.0)
        assert out[key]["rel_l2_max"] == pytest.approx(1.0)
        assert set(out["samples"][key]) == {"0000", "0001"}
        assert all(r["rel_l2_tissue"] == pytest.approx(1.0) for r in out["samples"][key].values())
    assert out["ratio_x2_base"] == pytest.approx(1.0)
    ds = PotentialDataset(split_files(root, "test_2x"), scaler, singularity_radius=1.0, reference_spacing=ref)
    phi, mask = ds[1]["phi"].numpy(), ds[1]["mask"].numpy()
    x2 = out["samples"]["x2"]["0001"]
    assert x2["mse"] == pytest.approx(float(np.mean(phi[mask] ** 2)), rel=1e-5)
    prior = free_space_prior(ds.sample(1), core_m=2e-3) / scaler.u_scale  # the baseline, computed independently
    expected = np.linalg.norm((prior - phi)[mask]) / np.linalg.norm(phi[mask])
    assert x2["prior_rel_l2"] == pytest.approx(expected, rel=1e-4)
    # the tiny corpus has no continuous limbs: no classical front, only the two-grid twin (the prior + sweeps) and the
    # solver stopped early (each preconditioner, cold and warm from the prior, each iteration count)
    twins = ["free_space_sgs128", "free_space_sgs32", "free_space_sgs64"]
    rivals = [
        f"cg_{m}{w}_k{k}" for m in ("mf", "gmg", "sa_energy") for w in ("", "_warm") for k in (1, 2, 3, 4, 5, 6, 8)
    ] + [f"cg_fmg_k{k}" for k in (0, 1, 2, 3, 4, 5, 6, 8)]  # full multigrid: cold only, and alone (k0)
    assert sorted(out["baselines"]) == sorted(twins + rivals)
    assert set(out["baselines"]["free_space_sgs32"]) == {"base", "x2"}
    assert set(out["baselines"]["cg_gmg_warm_k2"]) == {"base", "x2"}
    for key in ("base_refined", "x2_restricted_refined"):
        assert set(out["samples"][key]) == {"0000", "0001"}
    # the default predictor is the hybrid, named, at both resolutions
    assert out["default"]["base"]["name"] == "unet_free_space_sgs32"
    assert out["default"]["x2"]["name"] == "unet_free_space_sgs32_restricted"
    assert out["default"]["x2"]["rel_l2"] == out["x2_restricted_refined"]["rel_l2"]
    figures = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert figures == ["unet_base_0000.png", "unet_x2_0000.png", "unet_x2r_0000.png"]


def test_out_of_distribution_split_is_scored_per_shift(root, tmp_path):
    """With ``data.n_ood > 0`` the ood split is scored at the base grid, grouped by the manifest's shift names; a
    corpus without it is a one-line input error."""
    manifest = json.loads((root / "manifest.json").read_text())
    for i, shift in enumerate(("thick_fat", "elliptic")):
        (root / "ood").mkdir(exist_ok=True)
        (root / "ood" / f"{i:04d}.npz").write_bytes((root / "test" / f"{i:04d}.npz").read_bytes())
        manifest["samples"].append({"split": "ood", "file": f"ood/{i:04d}.npz", "ood_shift": shift})
    (root / "manifest.json").write_text(json.dumps(manifest))
    base = tiny_config(root, tmp_path)
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, n_ood=2))
    path = zero_checkpoint(tmp_path / "best.pt", FieldScaler(f_scale=1.0, u_scale=1e-3), [0.01, 0.01, 0.01])
    out = evaluate.evaluate_sr(cfg, path, tmp_path / "figs", model_factory=lambda c, b: ZeroOperator())
    assert out["ood"]["rel_l2"] == pytest.approx(1.0) and out["ood"]["n"] == 2
    assert out["ratio_ood_base"] == pytest.approx(1.0)
    assert {k: v["n"] for k, v in out["ood"]["shifts"].items()} == {"elliptic": 1, "thick_fat": 1}
    assert out["samples"]["ood"]["0001"]["ood_shift"] == "elliptic"
    assert (tmp_path / "figs" / "unet_ood_0000.png").is_file()
    assert set(out["estimate_base_ood"]) == {"spearman", "effectivity_median", "effectivity_in_band", "seconds"}
    shutil.rmtree(root / "ood")
    with pytest.raises(InputError, match=r"ood: no \.npz samples"):
        evaluate.evaluate_sr(cfg, path, None, model_factory=lambda c, b: ZeroOperator())


def test_trained_checkpoint_round_trip_and_stage_error(root, tmp_path):
    """A trained model's checkpoint rebuilds the same predictions; a missing checkpoint is a one-line error."""
    cfg = tiny_config(root, tmp_path, epochs=1)
    out_dir = tmp_path / "experiments" / "fno"
    train_operator(cfg, "fno", out_dir, model_factory=tiny_factory)
    model, ckpt = evaluate.load_trained(out_dir / "checkpoints" / "best.pt", torch.device("cpu"), tiny_factory)
    assert ckpt["backbone"] == "fno" and not model.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, ckpt["model"][key])
    res = evaluate.evaluate_sr(cfg, out_dir / "checkpoints" / "best.pt", None, model_factory=tiny_factory)
    assert res["ratio_x2_restricted_base"] == pytest.approx(res["x2_restricted"]["rel_l2"] / res["base"]["rel_l2"])
    assert res["ratio_x2_base"] == pytest.approx(res["x2"]["rel_l2"] / res["base"]["rel_l2"])
    best = load_checkpoint(out_dir / "checkpoints" / "best.pt")
    assert res["checkpoint_epoch"] == best["epoch"]
    json.dumps(res)  # plain JSON
    headline = {"rel_l2", "rel_l2_max", "r2", "prior_rel_l2", "seconds_per_sample", "seconds_spread", "estimate"}
    assert set(res["base"]) == headline  # headline only; per-sample values are in res["samples"]
    assert set(res["base"]["estimate"]) == {"spearman", "effectivity_median", "effectivity_in_band", "seconds"}

    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  root: {root}\nlog:\n  root: {tmp_path / 'nowhere'}\ndevice: cpu\n")
    src = Path(__file__).parents[2]
    proc = subprocess.run(
        [sys.executable, str(src / "stages" / "eval_sr.py"), "--params", str(params)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(src / "src"), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "checkpoint not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_error_estimate_and_classical_front_on_a_solved_corpus(tmp_path):
    """On a corpus solved by the FEM, a zero prediction has relative error exactly 1: the a-posteriori estimate,
    built from each sample's own FEM system, must say so (effectivity within [0.5, 2], here within 10%), and the
    classical front at the corpus's own spacing must rebuild the corpus (2x: the base-grid solve is one point), the
    out-of-distribution limbs included (their limbs and tensors are redrawn from the manifest and the seed)."""
    from test_front import DATA, PHYSICS

    from fieldlab.config import Config, DataConfig, EvalConfig, LossConfig
    from fieldlab.potential.physics.corpus import generate_corpus

    root = tmp_path / "solved"
    data = DataConfig(**{**DATA.__dict__, "root": str(root), "n_ood": 4})
    tilted = dataclasses.replace(PHYSICS.conductivity, fibre_tilt_deg=(10.0, 30.0))  # a tensor drawn per limb
    physics = dataclasses.replace(PHYSICS, conductivity=tilted)
    generate_corpus(data, physics, seed=5, root=root, progress=False)
    cfg = Config(
        device="cpu",
        data=data,
        physics=physics,
        loss=LossConfig(singularity_radius=1.0),
        eval=EvalConfig(
            figures=0, baseline_spacings_m=(0.016, 0.008), refine_sweeps=3000, twogrid_sweeps=(3000,), rival_repeats=1
        ),
    )
    ckpt = {
        "model": ZeroOperator().state_dict(),
        "model_config": {"backbone": "fno"},
        "backbone": "fno",
        "transforms": FieldScaler(f_scale=1.0, u_scale=1e-3).to_dict(),
        "reference_spacing": [0.008, 0.008, 0.008],
        "grid": list(DATA.grid),
        "epoch": 1,
    }
    save_checkpoint(tmp_path / "zero.pt", ckpt)
    out = evaluate.evaluate_sr(cfg, tmp_path / "zero.pt", None, model_factory=lambda c, b: ZeroOperator())
    for key in ("base", "x2", "ood"):
        for row in out["samples"][key].values():
            assert row["rel_l2"] == pytest.approx(1.0)
            assert row["estimate_rel_l2"] == pytest.approx(1.0, rel=0.1)
        assert out[key]["estimate"]["effectivity_in_band"] == 1.0
    assert out["estimate_base_ood"]["effectivity_in_band"] == 1.0
    assert sorted(out["ood"]["shifts"]) == ["close_bipole", "elliptic", "large_bone", "thick_fat"]
    for key in ("base", "ood"):  # the corpus's own grid and solver
        assert out["baselines"]["fem_8mm"][key]["rel_l2"] < 1e-5
    for key in ("base", "x2"):  # the solver stopped early: its own system, so 8 multigrid-CG iterations are the label
        rival = out["baselines"]
        assert rival["cg_gmg_k8"][key]["rel_l2_max"] < 1e-4 < rival["cg_gmg_k1"][key]["rel_l2"]
    assert out["baselines"]["fem_16mm"]["x2"]["rel_l2"] > out["baselines"]["fem_8mm"]["x2"]["rel_l2"] > 0
    # the hybrid's sweeps from a zero prediction are Gauss-Seidel on each sample's own system: they reach the corpus
    for key in ("base_refined", "ood_refined"):
        assert out[key]["rel_l2_max"] < 1e-4
    # at 2x they run on the sample restricted to the training grid: the base-grid solve's accuracy, not better
    restricted = out["x2_restricted_refined"]["rel_l2"]
    assert (
        0.5 * out["baselines"]["fem_8mm"]["x2"]["rel_l2"] < restricted < 2 * out["baselines"]["fem_8mm"]["x2"]["rel_l2"]
    )
    # the two-grid twin (free-space prior + sweeps) ends within the prior's transfer defect, far below the prior alone
    assert out["baselines"]["free_space_sgs3000"]["base"]["rel_l2"] < 0.1 * out["base"]["prior_rel_l2"]


class PriorOperator(ZeroOperator):
    """Returns its prior: on its own grid (forward) or cell-averaged to the training grid (predict_coarse)."""

    def forward(self, sigma, f, coords, spacing, prior=None):
        return prior.clone() + 0.0 * self.bias

    def predict_coarse(self, sigma, f, coords, spacing, grid, prior=None):
        from fieldlab.potential.models.wrapper import restrict_field

        return restrict_field(prior, grid) + 0.0 * self.bias

    def predict_restricted(self, sigma, f, coords, spacing, grid, prior=None):
        return self.forward(sigma, f, coords, spacing, prior)


def test_hybrid_of_an_operator_that_returns_its_prior_is_the_two_grid_method(root, tmp_path):
    """The hybrid (operator, then k sweeps) and the classical two-grid (prior, then k sweeps) are one computation
    when the operator returns the prior: every per-sample error agrees, at base and through the training grid at 2x."""
    base = tiny_config(root, tmp_path)
    cfg = dataclasses.replace(base, eval=dataclasses.replace(base.eval, refine_sweeps=16, twogrid_sweeps=(16,)))
    path = zero_checkpoint(tmp_path / "best.pt", FieldScaler(f_scale=1.0, u_scale=1e-3), [0.01, 0.01, 0.01])
    out = evaluate.evaluate_sr(cfg, path, None, model_factory=lambda c, b: PriorOperator(), with_front=False)
    assert out["default"]["base"]["rel_l2"] == pytest.approx(out["baselines"]["free_space_sgs16"]["base"]["rel_l2"])
    assert out["default"]["x2"]["rel_l2"] == pytest.approx(out["baselines"]["free_space_sgs16"]["x2"]["rel_l2"])
    for key in ("base", "x2"):
        assert out["default"][key]["rel_l2_max"] == pytest.approx(
            out["baselines"]["free_space_sgs16"][key]["rel_l2_max"]
        )


class SlowZero(ZeroOperator):
    """The zero operator, ``DELAY`` seconds slower in each call."""

    def forward(self, sigma, f, coords, spacing, prior=None):
        time.sleep(DELAY)
        return super().forward(sigma, f, coords, spacing, prior)

    def predict_coarse(self, sigma, f, coords, spacing, grid, prior=None):
        time.sleep(DELAY)
        return super().predict_coarse(sigma, f, coords, spacing, grid, prior)

    def predict_restricted(self, sigma, f, coords, spacing, grid, prior=None):
        time.sleep(DELAY)
        return super().predict_restricted(sigma, f, coords, spacing, grid, prior)


DELAY = 0.05


def test_every_part_of_a_prediction_shows_in_its_seconds(root, tmp_path, monkeypatch):
    """A slow stub in the prior, the operator and the sweeps' assembly: each shows up in the seconds the evaluation
    reports per sample, for the operator alone (prior + forward) and the hybrid (prior + forward + assembly), and
    the prior is timed in this run (not read from a file written by another process)."""
    from fieldlab.potential.evaluation.classical import baselines
    from fieldlab.potential.prediction import sweeps as refine

    monkeypatch.setattr(baselines, "compute_prior", slowed(baselines.compute_prior, DELAY))
    monkeypatch.setattr(refine, "build_system", slowed(refine.build_system, DELAY))  # the sweeps' assembly
    cfg = tiny_config(root, tmp_path)
    path = zero_checkpoint(tmp_path / "best.pt", FieldScaler(f_scale=1.0, u_scale=1e-3), [0.01, 0.01, 0.01])
    out = evaluate.evaluate_sr(cfg, path, None, model_factory=lambda c, b: SlowZero(), with_front=False)
    for key in ("base", "x2", "x2_restricted"):
        for row in out["samples"][key].values():
            assert row["prior_seconds"] >= DELAY and row["forward_seconds"] >= DELAY
    for key in ("base_refined", "x2_restricted_refined"):
        assert all(row["seconds"] >= 3 * DELAY for row in out["samples"][key].values())
    for key in ("base", "x2"):
        assert out["default"][key]["seconds_per_sample"] >= 3 * DELAY
