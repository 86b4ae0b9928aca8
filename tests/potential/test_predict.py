"""``fieldlab predict`` end to end: tiny trained FNOs of every prior kind on FEM samples of two resolutions, the
evaluation's default predictor reproduced, the seconds paid, and refused inputs."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from support_slow import slowed
from torch import nn

from fieldlab.cli import main
from fieldlab.config import (
    DataConfig,
    PhantomConfig,
    PhysicsConfig,
    PriorConfig,
    SolverConfig,
    SourceConfig,
    load_config,
)
from fieldlab.core.io import save_npz
from fieldlab.potential import metrics
from fieldlab.potential.data.priors import build_cache
from fieldlab.potential.evaluation import zero_shot as evaluate
from fieldlab.potential.physics.corpus import generate_corpus
from fieldlab.potential.prediction.files import predict_files
from fieldlab.potential.schema import load_sample
from fieldlab.potential.training.operator import train_operator

PHYSICS = PhysicsConfig(
    phantom=PhantomConfig(radius_m=(0.04, 0.042), subsamples=2),
    source=SourceConfig(width_m=0.005, separation_m=(0.03, 0.04), margin_m=0.011),
)
#: The effectivity band of the estimator's own tests (tests/potential/test_estimate.py).
BAND = (0.8, 1.25)


KINDS = ("free_space", "coarse_fem", "none")
COARSE_M = 0.016  # two 8 mm voxels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A FEM corpus at 24x12x12 (and its test limb at 2x), its coarse_fem priors and one one-epoch tiny FNO
    checkpoint per prior kind, each with its params file (the prior the run reads is the run's)."""
    tmp = tmp_path_factory.mktemp("predict")
    root = tmp / "potential"
    data = DataConfig(grid=(24, 12, 12), n_train=2, n_val=1, n_test=1)
    generate_corpus(data, PHYSICS, seed=3, root=root, progress=False)
    build_cache(
        root, PriorConfig(kind="coarse_fem", coarse_spacing_m=COARSE_M, root=str(tmp / "priors")), SolverConfig()
    )
    runs = {}
    for kind in KINDS:
        params = tmp / f"params_{kind}.yaml"
        params.write_text(
            f"""
device: cpu
data: {{root: {root}}}
model:
  prior: {{kind: {kind}, coarse_spacing_m: {COARSE_M}, root: {tmp / "priors"}}}
  encoder: {{channels: 4, hidden: 8}}
  conditioning: {{hidden: 8, reference_spacing: [0.008, 0.008, 0.008]}}
  fno: {{width: 4, modes: [2, 2, 2], layers: 1}}
train: {{epochs: 1, amp: false, lr: 1.0e-2, augment: false}}
loss: {{singularity_radius: 1}}
log: {{root: {tmp / "experiments"}, progress: false}}
eval: {{figures: 0, error_estimate: false}}
"""
        )
        train_operator(load_config(params), "fno", tmp / "experiments" / kind)
        runs[kind] = (params, tmp / "experiments" / kind / "checkpoints" / "best.pt")
    return tmp, root, runs


@pytest.mark.parametrize("kind", KINDS)
def test_predict_reproduces_the_evaluated_default_predictor(trained, capsys, kind):
    """Every checkpoint kind the pipeline publishes, on a base and a 2x test file: ``phi`` is the evaluation's default
    predictor (the hybrid; at 2x through the training grid), its error against the file's potential equals the one
    ``eval_sr`` reports for that sample to 1e-6, the printed line names the predictor of ``eval_sr.json: default``,
    and the error estimate tracks the true error."""
    tmp, root, runs = trained
    params, ckpt = runs[kind]
    files = [root / "test" / "0000.npz", tmp / "fine.npz"]
    files[1].write_bytes((root / "test_2x" / "0000.npz").read_bytes())  # outputs are named by the input stem
    out = tmp / f"out_{kind}"
    argv = ["predict", "--params", str(params), "--checkpoint", str(ckpt), *map(str, files), "--out", str(out)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    evaluated = evaluate.evaluate_sr(load_config(params), ckpt, None, with_front=False)
    for line, f, key in zip(lines, files, ("base", "x2"), strict=True):
        default = evaluated["default"][key]
        want = evaluated["samples"][default["from"]]["0000"]["rel_l2"]
        with np.load(out / f"{f.stem}.npz") as npz:
            got, phi, name = float(npz["rel_l2"]), npz["phi"], str(npz["predictor"])
            est = float(npz["rel_l2_estimate"])
        assert got == pytest.approx(want, rel=1e-6, abs=0)
        assert name == default["name"] and line.startswith(f"{f}: {name} ")
        sample = load_sample(f)
        assert phi.shape == sample.shape and phi.dtype == np.float32
        mask = torch.from_numpy(np.load(out / f"{f.stem}.npz")["loss_mask"])[None, None]
        t = [torch.from_numpy(np.asarray(a, dtype=np.float64))[None, None] for a in (phi, sample.u)]
        true = float(metrics.relative_l2(t[0], t[1], mask)[0])  # volts, recomputed here from the written field
        assert true == pytest.approx(got, rel=1e-4)
        assert BAND[0] <= est / true <= BAND[1], (f.name, est, true)


def test_phi_never_reads_the_stored_potential(trained, tmp_path):
    """A file whose ``u`` is zeros (a user's limb) and one whose ``u`` is noise give the same ``phi``, bit for bit,
    as the corpus file; neither has a ``rel_l2`` (nothing to score against) but the noisy one."""
    _, root, runs = trained
    params, ckpt = runs["coarse_fem"]
    f = root / "test" / "0000.npz"
    with np.load(f) as npz:
        arrays = {k: npz[k] for k in npz.files}
    save_npz(tmp_path / "zero.npz", **{**arrays, "u": np.zeros_like(arrays["u"])})
    noise = np.random.default_rng(0).normal(size=arrays["u"].shape).astype(np.float32) * arrays["mask"]  # zero in air
    save_npz(tmp_path / "noise.npz", **{**arrays, "u": noise})
    files = [f, tmp_path / "zero.npz", tmp_path / "noise.npz"]
    predict_files(load_config(params), ckpt, files, tmp_path / "out")
    phis = [np.load(tmp_path / "out" / f"{p.stem}.npz")["phi"] for p in files]
    np.testing.assert_array_equal(phis[1], phis[0])
    np.testing.assert_array_equal(phis[2], phis[0])
    assert "rel_l2" not in np.load(tmp_path / "out" / "zero.npz").files
    assert float(np.load(tmp_path / "out" / "noise.npz")["rel_l2"]) > 0.5


class Slow(nn.Module):
    """A model that sleeps ``delay`` seconds in every call of the predictor's path, then defers to ``inner``."""

    def __init__(self, inner: nn.Module, delay: float) -> None:
        super().__init__()
        self.inner, self.delay = inner, delay

    def forward(self, *args, **kw):
        time.sleep(self.delay)
        return self.inner(*args, **kw)

    def predict_coarse(self, *args, **kw):
        time.sleep(self.delay)
        return self.inner.predict_coarse(*args, **kw)

    def load_state_dict(self, state, strict=True):
        return self.inner.load_state_dict(state, strict)


def test_seconds_include_the_prior_the_forward_pass_and_the_assembly(trained, tmp_path, monkeypatch):
    """A slow stub in each part of the prediction (the prior's coarse solve, the operator, the assembly of the
    sweeps' system) shows up in the seconds written: each part is paid for, at base and at 2x."""
    from fieldlab.potential.prediction import files as predict_module
    from fieldlab.potential.prediction import sweeps as refine
    from fieldlab.potential.training.operator import default_model_factory

    _, root, runs = trained
    params, ckpt = runs["coarse_fem"]
    delay = 0.15

    monkeypatch.setattr(predict_module, "compute_prior", slowed(predict_module.compute_prior, delay))
    monkeypatch.setattr(refine, "build_system", slowed(refine.build_system, delay))  # the sweeps' assembly
    files = [root / "test" / "0000.npz", root / "test_2x" / "0000.npz"]
    out = {}
    for f in files:  # one file per call: both are named 0000
        (r,) = predict_files(
            load_config(params),
            ckpt,
            [f],
            tmp_path / f.parent.name,
            model_factory=lambda c, b: Slow(default_model_factory(c, b), delay),
        )
        out[f.parent.name] = r.arrays
    for arrays in out.values():
        assert float(arrays["prior_seconds"]) >= delay
        assert float(arrays["predict_seconds"]) >= 2 * delay  # the operator's call and the assembly
        assert float(arrays["seconds"]) >= 3 * delay


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
    tmp, root, runs = trained
    params, ckpt = runs["free_space"]
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
