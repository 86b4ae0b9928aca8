"""The learned sub-grid correction: folding, its coarse start, checkpoints, training and its place in eval_sr."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support_slow import slowed

from fieldlab.cli import main
from fieldlab.config import DataConfig, PhantomConfig, PhysicsConfig, SourceConfig, load_config
from fieldlab.core.checkpoint import save_checkpoint
from fieldlab.errors import InputError
from fieldlab.potential.data import subgrid_inputs
from fieldlab.potential.data.loader import PotentialDataset, split_files
from fieldlab.potential.data.subgrid_inputs import (
    channels_of,
    coarse_start,
    fold_factor,
    folded_channels,
    sample_tensors,
)
from fieldlab.potential.evaluation import zero_shot as evaluate
from fieldlab.potential.evaluation.classical.stencil_rivals import mf_cg_curve
from fieldlab.potential.evaluation.subgrid import subgrid_split
from fieldlab.potential.metrics import field_relative_l2
from fieldlab.potential.models.fold import depth_to_space, space_to_depth
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.models.subgrid import SubgridCorrector
from fieldlab.potential.models.trained import TrainedSubgrid, load_subgrid
from fieldlab.potential.physics.corpus import generate_corpus
from fieldlab.potential.physics.fem.solver import solve_potential
from fieldlab.potential.physics.resolution import block_mean
from fieldlab.potential.prediction.classical import classical_route
from fieldlab.potential.prediction.files import predict_files
from fieldlab.potential.prediction.subgrid import head_estimate, predict_subgrid, predict_with_error
from fieldlab.potential.schema import PotentialSample, load_sample
from fieldlab.potential.training.operator import train_operator
from fieldlab.potential.training.subgrid import run_subgrid_training


@pytest.mark.parametrize("r", [1, 2, 3])
def test_space_to_depth_round_trip_is_exact(r):
    x = torch.randn(2, 3, 4 * r, 3 * r, 2 * r, dtype=torch.float64)
    y = space_to_depth(x, r)
    assert y.shape == (2, 3 * r**3, 4, 3, 2)
    assert torch.equal(depth_to_space(y, r), x)
    assert torch.equal(space_to_depth(depth_to_space(y, r), r), y)


def test_space_to_depth_puts_each_fine_voxel_in_its_coarse_voxel():
    """Channel ``c r^3 + (a r + b) r + e`` of coarse voxel (i, j, k) is fine voxel (i r + a, j r + b, k r + e)."""
    r = 2
    x = torch.randn(1, 2, 6, 4, 8)
    y = space_to_depth(x, r)
    for c, a, b, e, i, j, k in [(0, 0, 0, 0, 0, 0, 0), (1, 1, 0, 1, 2, 1, 3), (0, 1, 1, 0, 1, 0, 2)]:
        assert y[0, c * r**3 + (a * r + b) * r + e, i, j, k] == x[0, c, i * r + a, j * r + b, k * r + e]


def box_sample(n: int, length: float = 0.04) -> PotentialSample:
    """A homogeneous anisotropic box of ``n x n/2 x n/2`` voxels with a smooth zero-mean bipole source."""
    shape = (n, n // 2, n // 2)
    h = length / n
    sigma = np.zeros((*shape, 6))
    sigma[..., :3] = (0.2455, 0.2455, 1.2275)
    z, y, x = (((np.arange(m) + 0.5) * h - m * h / 2) for m in shape)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    w = 0.004
    f = np.exp(-((zz - 0.008) ** 2 + yy**2 + xx**2) / w**2) - np.exp(-((zz + 0.008) ** 2 + yy**2 + xx**2) / w**2)
    f = 1e4 * (f - f.mean())
    mask = np.ones(shape, dtype=bool)
    u, _ = solve_potential(sigma, f, (h, h, h), 1e-10)
    idx = np.array([np.unravel_index(np.argmax(f), shape), np.unravel_index(np.argmin(f), shape)])
    return PotentialSample(sigma, f, mask, np.full(shape, 3, np.uint8), u, np.array([h] * 3), np.zeros((2, 3)), idx)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_on_a_smooth_problem_the_output_is_the_coarse_solve_to_interpolation_error():
    """Where the 1x and 2x solutions coincide (a homogeneous box, a smooth source) the corrector's output is the
    coarse start, and that start is the fine solution to the Q1 discretisation error: it falls ~4x (O(h^2)) when
    both grids are refined 2x. An untrained corrector (head at zero) returns the start exactly."""
    errors = []
    for n in (16, 32):
        fine = box_sample(2 * n)
        trained = TrainedSubgrid(SubgridCorrector(2, 4, 2, 2), (n, n // 2, n // 2), 1e-10, 0.1, 0)
        u = predict_subgrid(trained, fine)
        start = coarse_start(fine, 2, 1e-10)
        np.testing.assert_allclose(u, start, rtol=0, atol=1e-12 * np.abs(start).max())
        errors.append(rel(u, fine.u))
    assert errors[1] < errors[0] / 3  # second order: the interpolation and discretisation error, nothing else
    assert errors[1] < 0.02


def test_fold_factor_and_a_grid_of_another_factor_are_refused():
    assert fold_factor((192, 96, 96), (96, 48, 48)) == 2
    with pytest.raises(InputError, match="whole multiple"):
        fold_factor((96, 48, 48), (96, 48, 48))
    with pytest.raises(InputError, match="whole multiple"):
        fold_factor((192, 96, 48), (96, 48, 48))
    trained = TrainedSubgrid(SubgridCorrector(2, 4, 2, 2), (4, 2, 2), 1e-8, 0.1, 0)
    with pytest.raises(InputError, match="trained for 2x"):
        predict_subgrid(trained, box_sample(12))  # 12x6x6 is 3x the training grid


def test_checkpoint_round_trip_and_foreign_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = SubgridCorrector(2, 4, 2, 2)
    torch.nn.init.normal_(model.net.head.weight, std=0.1)  # a non-trivial corrector
    trained = TrainedSubgrid(model, (8, 4, 4), 1e-6, 0.1, 3)
    save_checkpoint(tmp_path / "best.pt", trained.checkpoint())
    back = load_subgrid(tmp_path / "best.pt")
    assert (back.grid, back.start_tol, back.sigma_ref, back.epoch) == ((8, 4, 4), 1e-6, 0.1, 3)
    sample = box_sample(16)
    a, b = (
        predict_subgrid(trained.__class__(model.eval(), (8, 4, 4), 1e-6, 0.1, 3), sample),
        predict_subgrid(back, sample),
    )
    np.testing.assert_array_equal(a, b)
    assert rel(a, coarse_start(sample, 2, 1e-6)) > 1e-3  # the head's weights are used
    other = {**trained.checkpoint(), "backbone": "fno"}
    save_checkpoint(tmp_path / "fno.pt", other)
    with pytest.raises(InputError, match="expected a sub-grid corrector"):
        load_subgrid(tmp_path / "fno.pt")
    with pytest.raises(InputError, match="checkpoint not found"):
        load_subgrid(tmp_path / "missing.pt")


def test_folded_channels_are_the_channels_folded():
    """The compiled path of prediction equals the training path (channels of the sample's tensors, then the
    fold), with air, a tilted (off-diagonal) tensor and a start, to float32 rounding."""
    fine = box_sample(16)
    rng = np.random.default_rng(0)
    sigma = fine.sigma.copy()
    sigma[..., 3:] = 0.05 * rng.standard_normal((*sigma.shape[:3], 3))
    mask = np.asarray(fine.mask, dtype=bool).copy()
    mask[:, 0, :] = False
    sigma[~mask] = 0.0
    sample = PotentialSample(sigma, fine.source, mask, fine.tissue, fine.u, fine.spacing, fine.source_point,
                             fine.source_index)  # fmt: skip
    start = rng.standard_normal(mask.shape)
    want = space_to_depth(channels_of(sample_tensors(sample, start, 2.5), 0.1), 2)
    got = folded_channels(sample, start, 2.5, 0.1, 2)
    assert got.shape == want.shape == (1, 72, 8, 4, 4) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_bfloat16_forward_pass_stays_close_to_float32():
    """``subgrid.precision: bfloat16`` runs the same weights with bfloat16 matmuls: the correction agrees with the
    float32 one to bfloat16's resolution (8 bits of mantissa), relative to its size."""
    torch.manual_seed(0)
    model = SubgridCorrector(2, 4, 2, 2).eval()
    torch.nn.init.normal_(model.net.head.weight, std=0.1)
    x = torch.randn(1, 72, 8, 4, 4)
    a = TrainedSubgrid(model, (8, 4, 4), 1e-6, 0.1, 0, "float32").correction(x)[0]
    b = TrainedSubgrid(model, (8, 4, 4), 1e-6, 0.1, 0, "bfloat16").correction(x)[0]
    assert a.dtype == b.dtype == torch.float32 and not torch.equal(a, b)
    assert float((a - b).norm() / a.norm()) < 3e-2


# ---- on a small FEM corpus with fine labels ------------------------------------------------------------------------
PHYSICS = PhysicsConfig(
    phantom=PhantomConfig(radius_m=(0.04, 0.042), subsamples=2),
    source=SourceConfig(width_m=0.005, separation_m=(0.03, 0.04), margin_m=0.011),
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A FEM corpus at 24x12x12 (8 mm) with two training limbs and one validation and one test limb also at 2x, a
    trained corrector and a one-epoch operator (prior none), and their params file."""
    tmp = tmp_path_factory.mktemp("subgrid")
    root = tmp / "potential"
    data = DataConfig(grid=(24, 12, 12), n_train=2, n_val=1, n_test=1, n_train_2x=2, n_val_2x=1)
    generate_corpus(data, PHYSICS, seed=5, root=root, progress=False)
    params = tmp / "params.yaml"
    params.write_text(
        f"""
device: cpu
data: {{root: {root}, grid: [24, 12, 12]}}
model:
  prior: {{kind: none}}
  encoder: {{channels: 4, hidden: 8}}
  conditioning: {{hidden: 8, reference_spacing: [0.008, 0.008, 0.008]}}
  fno: {{width: 4, modes: [2, 2, 2], layers: 1}}
train: {{epochs: 1, amp: false, lr: 1.0e-2, augment: false}}
loss: {{singularity_radius: 1}}
log: {{root: {tmp / "experiments"}, progress: false}}
eval: {{figures: 0, error_estimate: false, rival_iterations: [], refine_sweeps: 4, rival_repeats: 1,
       metrics_file: {tmp / "eval_sr.json"}}}
subgrid: {{enabled: true, root: {tmp / "subgrid"}, base: 4, depth: 2, groups: 2, epochs: 30, lr: 3.0e-3,
           augment: false, start_tol: 1.0e-8, grad_clip: 0.0, precision: float32, stop_patience: 30,
           steps_per_epoch: 0}}
"""
    )
    cfg = load_config(params)
    summary = run_subgrid_training(cfg, cfg.subgrid.root, tmp / "train_subgrid.json", tmp / "train_subgrid.csv")
    train_operator(cfg, "fno", tmp / "experiments" / "fno")
    return tmp, root, params, summary


def base_spacing(root: Path) -> list[float]:
    """The training grid's voxel (as eval_sr takes it from the corpus: float32 values)."""
    return [float(v) for v in load_sample(root / "train" / "0000.npz").spacing]


def test_prepare_writes_the_same_limbs_at_2x(run):
    """train_2x/NNNN is limb NNNN of train solved at 2x: the manifest's limb is the same, and the 2x potential
    averaged over each 2x2x2 block agrees with the base one to the 8 mm grid's discretisation error."""
    _, root, _, _ = run
    records = {r["file"]: r for r in json.loads((root / "manifest.json").read_text())["samples"]}
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            base, fine = records[f"{split}/{i:04d}.npz"], records[f"{split}_2x/{i:04d}.npz"]
            assert base["limb"] == fine["limb"] and fine["grid"] == [48, 24, 24]
            a, b = load_sample(root / base["file"]), load_sample(root / fine["file"])
            both = a.mask & (block_mean(b.mask.astype(float), 2) == 1)
            assert rel(block_mean(b.u, 2)[both], a.u[both]) < 0.2


def test_training_learns_the_fine_correction(run):
    """On two fine limbs the training error of the corrected field falls well below the first epoch's (which starts
    from the coarse start: the head is zero); on the validation limb, never trained on, the kept corrector is closer
    to that limb's own fine FEM solution than its coarse start is (both measured here against the FEM truth); and the
    checkpoint kept reproduces the lowest validation error of the history."""
    tmp, root, params, summary = run
    cfg = load_config(params)
    trained = load_subgrid(Path(cfg.subgrid.root) / "checkpoints" / "best.pt")
    history = list(csv.DictReader((tmp / "train_subgrid.csv").open()))
    assert len(history) == cfg.subgrid.epochs
    train = [float(h["train_rel_l2"]) for h in history]
    assert train[-1] < 0.8 * train[0]
    best = min(history, key=lambda h: float(h["val_rel_l2"]))
    assert trained.epoch == summary["best_epoch"] == int(best["epoch"])
    assert summary["best_val_rel_l2"] == pytest.approx(float(best["val_rel_l2"]), rel=1e-6)
    ds = PotentialDataset(split_files(root, "val_2x"), FieldScaler(1.0, 1.0), singularity_radius=1.0,
                          reference_spacing=base_spacing(root))  # fmt: skip
    s, mask = ds.sample(0), ds[0]["mask"][0].numpy().astype(bool)
    truth = s.u[mask].astype(np.float64)
    got = rel(predict_subgrid(trained, s)[mask], truth)
    assert got == pytest.approx(summary["best_val_rel_l2"], rel=1e-4)  # the checkpoint is the model validated
    start = rel(coarse_start(s, 2, cfg.subgrid.start_tol)[mask], truth)
    assert got < 0.95 * start, f"corrector {got:.4g} vs its start {start:.4g} on the unseen limb"


_OPENED: list[str] | None = None


def _record_opens(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0]))


def test_training_reads_no_test_limb_and_ends_on_a_plateau(run, tmp_path):
    """Every file the training opens is recorded (an audit hook on ``open``): it reads train_2x/ and val_2x/ and
    not one file of test/, test_2x/ or ood*/, which the same corpus holds. With a learning rate far too high the
    validation error never improves after the first epoch: the rate halves after ``patience`` epochs and training
    ends ``stop_patience`` epochs after the best, long before ``epochs``."""
    global _OPENED
    _, root, params, _ = run
    assert any((root / "test_2x").iterdir())
    cfg = load_config(params, [
        f"subgrid.root={tmp_path / 'sg'}", "subgrid.epochs=40", "subgrid.lr=3.0", "subgrid.patience=1",
        "subgrid.stop_patience=3",
    ])  # fmt: skip
    sys.addaudithook(_record_opens)  # hooks stay for the process; this one records only while _OPENED is a list
    _OPENED = []
    try:
        summary = run_subgrid_training(cfg, tmp_path / "sg", tmp_path / "m.json", tmp_path / "h.csv")
    finally:
        opened, _OPENED = _OPENED, None
    corpus = [Path(p).resolve() for p in opened if Path(p).resolve().is_relative_to(root.resolve())]
    splits = {p.relative_to(root.resolve()).parts[0] for p in corpus if p.suffix == ".npz"}
    assert splits == {"train_2x", "val_2x"}, splits
    history = list(csv.DictReader((tmp_path / "h.csv").open()))
    assert summary["stopped_early"] and len(history) == summary["best_epoch"] + 3 < 40
    lrs = [float(h["lr"]) for h in history]
    assert lrs[0] == 3.0 and min(lrs) < lrs[0]


def test_eval_sr_scores_the_corrector_and_predict_runs_it(run, capsys):
    """eval_sr's x2_subgrid rows are the corrector's errors, recomputed here from its checkpoint; it is the 2x
    default predictor unless a classical route clearly dominates it; ``fieldlab predict`` on the 2x test file, with
    no eval_sr metrics to follow, writes the corrector with the same error."""
    tmp, root, params, _ = run
    cfg = load_config(params)
    ckpt = tmp / "experiments" / "fno" / "checkpoints" / "best.pt"
    out = evaluate.evaluate_sr(cfg, ckpt, None, with_front=False)
    d, point = out["default"]["x2"], out["x2_subgrid"]
    if d["from"] == "x2_subgrid":  # on the front against every classical route
        assert d["name"] == "subgrid_unet" and d["rel_l2"] == point["rel_l2"]
        assert all(classical_route(n) is None for n in d["dominated_by"])  # beaten only by points that are no route
    else:  # on this small corpus a route may dominate it: then the default is the fastest such route
        b = out["baselines"][d["name"]]["x2"]
        assert d["replaces"] == "subgrid_unet" and d["name"] in d["dominated_by"]
        assert b["rel_l2"] < point["rel_l2"] and b["seconds"] < point["seconds_per_sample"]
        assert "dominated by the classical route" in d["verdict"]
    trained = load_subgrid(Path(cfg.subgrid.root) / "checkpoints" / "best.pt", precision=cfg.subgrid.precision)
    ds = PotentialDataset(split_files(root, "test_2x"), FieldScaler(1.0, 1.0), singularity_radius=1.0,
                          reference_spacing=base_spacing(root))  # fmt: skip
    s, mask = ds.sample(0), ds[0]["mask"][0].numpy().astype(bool)
    want = rel(predict_subgrid(trained, s)[mask], s.u[mask].astype(np.float64))
    assert out["samples"]["x2_subgrid"]["0000"]["rel_l2"] == pytest.approx(want, rel=1e-9)
    fine = tmp / "fine.npz"
    fine.write_bytes((root / "test_2x" / "0000.npz").read_bytes())
    argv = ["predict", "--params", str(params), "--checkpoint", str(ckpt), str(fine), "--out", str(tmp / "out")]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"{fine}: subgrid_unet ")
    with np.load(tmp / "out" / "fine.npz") as npz:
        assert str(npz["predictor"]) == "subgrid_unet"
        assert float(npz["rel_l2"]) == pytest.approx(want, rel=1e-6)
        assert float(npz["prior_seconds"]) == 0.0 and float(npz["seconds"]) == float(npz["predict_seconds"]) > 0


def test_the_corrector_seconds_include_its_start(run, monkeypatch):
    """A slow stub in the coarse solve shows in the corrector's seconds and in its start's: the timed call pays for
    everything from the sample's arrays on."""
    _, root, params, _ = run
    cfg = load_config(params)
    trained = load_subgrid(Path(cfg.subgrid.root) / "checkpoints" / "best.pt")
    ds = PotentialDataset(split_files(root, "test_2x"), FieldScaler(1.0, 1.0), singularity_radius=1.0,
                          reference_spacing=base_spacing(root))  # fmt: skip
    delay = 0.2
    monkeypatch.setattr(subgrid_inputs, "coarse_fem_prior", slowed(subgrid_inputs.coarse_fem_prior, delay))
    rows, seconds = subgrid_split(trained, ds, repeats=1)
    assert rows["0000"]["seconds"] >= delay and rows["0000"]["start_seconds"] >= delay
    assert seconds["0000"] == rows["0000"]["seconds"]


def test_error_head_is_calibrated_on_the_validation_limbs(run):
    """The head's estimate times the checkpoint's calibration is the true error on the validation limb it was
    calibrated on (the median of one ratio), computed here through the prediction path against the FEM truth; on
    the test limb it is a positive error of the same order as the truth."""
    _, root, params, summary = run
    cfg = load_config(params)
    trained = load_subgrid(Path(cfg.subgrid.root) / "checkpoints" / "best.pt")
    assert trained.estimate_scale == summary["estimate_scale"] > 0
    for split in ("val_2x", "test_2x"):
        ds = PotentialDataset(split_files(root, split), FieldScaler(1.0, 1.0), singularity_radius=1.0,
                              reference_spacing=base_spacing(root))  # fmt: skip
        s, mask = ds.sample(0), ds[0]["mask"][0].numpy().astype(bool)
        u, magnitude = predict_with_error(trained, s)
        truth = field_relative_l2(u, s.u, mask)
        est = head_estimate(trained, u, magnitude, mask)
        if split == "val_2x":
            assert est == pytest.approx(truth, rel=1e-3)
        else:
            assert 0.2 * truth < est < 5 * truth
    bare = TrainedSubgrid(SubgridCorrector(2, 4, 2, 2), (24, 12, 12), 1e-8, 0.1, 0)
    with pytest.raises(InputError, match="no error head"):
        head_estimate(bare, u, magnitude, mask)


def test_a_dominating_classical_route_is_what_predict_runs(run, tmp_path, capsys):
    """When the run's eval_sr metrics say a classical route replaced the corrector at 2x, ``fieldlab predict`` runs
    that route on a fine file: its potential is the rival's own point of the same name (full multigrid and one CG
    iteration on the sample's system, as eval_rivals timed it) and it scores as that point does; a route this
    version cannot run is one error."""
    tmp, root, params, _ = run
    ckpt = tmp / "experiments" / "fno" / "checkpoints" / "best.pt"
    metrics = tmp_path / "eval_sr.json"
    metrics.write_text(json.dumps({"default": {"x2": {"name": "cg_fmg_k1", "from": "baselines"}}}))
    cfg = load_config(params, [f"eval.metrics_file={metrics}"])
    fine = root / "test_2x" / "0000.npz"
    (result,) = predict_files(cfg, ckpt, [fine], tmp_path / "out")
    assert str(result.arrays["predictor"]) == "cg_fmg_k1"
    sample = load_sample(fine)
    want = mf_cg_curve(sample, (0, 1), full_multigrid=True).fields[1]
    np.testing.assert_allclose(result.arrays["phi"], want.astype(np.float32), rtol=0, atol=1e-6 * np.abs(want).max())
    assert float(result.arrays["rel_l2"]) < 0.01
    metrics.write_text(json.dumps({"default": {"x2": {"name": "fem_4mm", "from": "baselines"}}}))
    with pytest.raises(InputError, match="not a classical route"):
        predict_files(cfg, ckpt, [fine], tmp_path / "out2")
