"""``fieldlab predict`` end to end: a tiny trained FNO on FEM samples of two resolutions, and refused inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fieldlab.cli import main
from fieldlab.config import DataConfig, PhantomConfig, PhysicsConfig, SourceConfig, load_config
from fieldlab.core.io import save_npz
from fieldlab.potential import evaluate, metrics
from fieldlab.potential.data.loader import PotentialDataset, dataset_options
from fieldlab.potential.physics.corpus import generate_corpus
from fieldlab.potential.train import train_operator

PHYSICS = PhysicsConfig(
    phantom=PhantomConfig(radius_m=(0.04, 0.042), subsamples=2),
    source=SourceConfig(width_m=0.008, separation_m=(0.03, 0.04), margin_m=0.006),
)
#: The effectivity band of the estimator's own tests (tests/potential/test_estimate.py).
BAND = (0.8, 1.25)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A FEM corpus at 24x12x12 (and its test limb at 2x), a params file and a one-epoch tiny FNO checkpoint."""
    tmp = tmp_path_factory.mktemp("predict")
    root = tmp / "potential"
    data = DataConfig(grid=(24, 12, 12), n_train=2, n_val=1, n_test=1, workers=1)
    generate_corpus(data, PHYSICS, seed=3, root=root, progress=False)
    params = tmp / "params.yaml"
    params.write_text(
        f"""
device: cpu
data: {{root: {root}}}
model:
  encoder: {{channels: 4, hidden: 8}}
  conditioning: {{hidden: 8, reference_spacing: [0.008, 0.008, 0.008]}}
  fno: {{width: 4, modes: [2, 2, 2], layers: 1}}
train: {{epochs: 1, amp: false, lr: 1.0e-2, augment: false}}
loss: {{singularity_radius: 1}}
log: {{root: {tmp / "experiments"}, progress: false}}
"""
    )
    cfg = load_config(params)
    train_operator(cfg, "fno", tmp / "experiments" / "fno")
    return tmp, root, params, tmp / "experiments" / "fno" / "checkpoints" / "best.pt"


def test_round_trip_matches_the_evaluation(trained, capsys):
    """Outputs at two resolutions: phi is the evaluation's forward pass in volts (its rel L2 against the FEM
    potential equals the one evaluate_split reports), and the error estimate tracks that true error."""
    tmp, root, params, ckpt = trained
    files = [root / "test" / "0000.npz", root / "test_2x" / "0000.npz"]
    fine = tmp / "fine.npz"
    fine.write_bytes(files[1].read_bytes())  # a second name for the 2x file: outputs are named by the input stem
    files[1] = fine
    out = tmp / "out"
    assert (
        main(["predict", "--params", str(params), "--checkpoint", str(ckpt), *map(str, files), "--out", str(out)]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("rel_l2_estimate" in line and " s" in line for line in lines)

    cfg = load_config(params)
    model, saved = evaluate.load_trained(ckpt, torch.device("cpu"))
    scaler, ref, _ = evaluate.evaluation_inputs(saved, ckpt)
    prior = evaluate.checkpoint_model_config(saved, ckpt).prior
    ds = PotentialDataset(files, **{**dataset_options(cfg, scaler, ref, prior), "cache": False})
    rows, _ = evaluate.evaluate_split(model, ds, torch.device("cpu"))
    for i, f in enumerate(files):
        with np.load(out / f"{f.stem}.npz") as npz:
            phi, mask, est = npz["phi"], npz["loss_mask"], float(npz["rel_l2_estimate"])
            assert npz["predict_seconds"] > 0 and npz["estimate_seconds"] > 0
        sample = ds.sample(i)
        assert phi.shape == sample.shape and phi.dtype == np.float32
        np.testing.assert_array_equal(mask, ds[i]["mask"][0].numpy())
        u = sample.u.astype(np.float64)
        t = [torch.from_numpy(np.asarray(a, dtype=np.float64))[None, None] for a in (phi, u)]
        true = float(metrics.relative_l2(t[0], t[1], torch.from_numpy(mask)[None, None])[0])
        assert true == pytest.approx(rows[f.stem]["rel_l2"], rel=1e-4)  # volts vs the evaluation's scaled units
        item = {k: v[None] for k, v in ds[i].items()}
        with torch.no_grad():
            pred = model(item["sigma"], item["f"], item["coords"], item["spacing"], prior=item.get("prior"))
        np.testing.assert_allclose(phi, pred[0, 0].numpy() * scaler.u_scale, rtol=1e-6)  # model units -> volts
        assert BAND[0] <= est / true <= BAND[1], (f.name, est, true)
        with np.load(out / f"{f.stem}.npz") as npz:  # the hybrid (eval.refine_sweeps, default 32): nearer the FEM
            refined = torch.from_numpy(npz["phi_refined"].astype(np.float64))[None, None]
            assert npz["refine_seconds"] > 0
        better = float(metrics.relative_l2(refined, t[1], torch.from_numpy(mask)[None, None])[0])
        assert better < 0.8 * true, (f.name, better, true)


def _truncated(src, dst):
    dst.write_bytes(src.read_bytes()[:200])


def _missing_u(src, dst):
    with np.load(src) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "u"}
    save_npz(dst, **arrays)


def _bad_shape(src, dst):
    with np.load(src) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["source"] = arrays["source"][:-1]
    save_npz(dst, **arrays)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [(_truncated, "not a readable .npz"), (_missing_u, "missing"), (_bad_shape, "source has shape")],
)
def test_a_bad_input_stops_everything(trained, capsys, spoil, message):
    """One bad file among good ones: exit 2, one ``error:`` line naming it, and the output folder untouched."""
    tmp, root, params, ckpt = trained
    bad = tmp / f"bad_{spoil.__name__}.npz"
    spoil(root / "val" / "0000.npz", bad)
    out = tmp / f"out_{spoil.__name__}"
    out.mkdir()
    (out / "keep.txt").write_text("untouched")
    good = root / "test" / "0000.npz"
    argv = ["predict", "--params", str(params), "--checkpoint", str(ckpt), str(good), str(bad), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(bad) in err[0] and message in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
