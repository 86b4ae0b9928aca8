"""Predicting the user's own sample files: the default predictor's potential in volts and an error estimate each.

Every input is validated before anything runs (schema and the solver's physics checks,
:func:`~fieldlab.potential.physics.corpus.validate_raw_file`, then the loss mask the estimate is measured on), and
every prediction and estimate is computed before the first file is written, so a bad input leaves the output
folder as it was. The prediction is the evaluation's default predictor (:mod:`fieldlab.potential.prediction.default`: at
the training grid the operator and ``eval.refine_sweeps`` sweeps of the sample's own FEM system; on a finer grid
the operator on the training grid, swept on the sample restricted to it, prolonged), with the checkpoint's prior
computed for the user's file here (never read from a cache of another corpus). With ``subgrid.enabled`` a finer
sample goes to the run's 2x default of eval_sr: the sub-grid corrector (``<subgrid.root>/checkpoints/best.pt``,
:mod:`fieldlab.potential.prediction.subgrid`, with its error head's estimate), or the classical route that clearly
dominates it when the run's ``eval.metrics_file`` says so (:mod:`fieldlab.potential.prediction.classical`). Each
output ``<out>/<name>.npz`` (written atomically) holds:

================== =========== ===========================================================================
key                shape       meaning
================== =========== ===========================================================================
phi                (D, H, W)   the default predictor's potential in volts (corpus gauge), float32
predictor          ()          its name, as ``eval_sr.json: default.<split>.name``
rel_l2_estimate    ()          estimated ``||phi - u||_mask / ||u||_mask`` against the sample's own FEM
                               potential (:func:`~fieldlab.potential.physics.fem.estimate.estimate_error`)
error_estimate     (D, H, W)   the estimated error field ``phi - u`` in volts (corpus gauge), zero in air; for
                               the sub-grid corrector its error head's estimated magnitude ``|phi - u|``
loss_mask          (D, H, W)   the voxels of the norm (the evaluation's loss mask), bool
seconds            ()          ``prior_seconds + predict_seconds``: what the prediction costs from the arrays on
prior_seconds      ()          the checkpoint's prior for this sample (coarse solve or analytic), s
predict_seconds    ()          forward pass, restriction, assembly, sweeps and prolongation, s
estimate_seconds   ()          error estimate, s
rel_l2             ()          ``||phi - u||_mask / ||u||_mask`` against the file's own ``u``; only when that
                               ``u`` is not zero in the mask (a corpus sample)
================== =========== ===========================================================================

The sample format is the corpus's (:mod:`fieldlab.potential.schema`), at the training grid or a whole multiple
of it; its ``u`` is read by neither the model nor the estimate (a placeholder of zeros will do).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fieldlab.config import Config
from fieldlab.core.device import select_device
from fieldlab.core.io import save_npz
from fieldlab.errors import InputError, PhysicsError
from fieldlab.potential import metrics
from fieldlab.potential.data.loader import PotentialDataset, dataset_options
from fieldlab.potential.data.priors import compute_prior
from fieldlab.potential.models.trained import (
    checkpoint_model_config,
    evaluation_inputs,
    load_subgrid,
    load_trained,
    subgrid_checkpoint,
)
from fieldlab.potential.physics.corpus import validate_raw_file
from fieldlab.potential.physics.fem.estimate import estimate_error
from fieldlab.potential.prediction.classical import classical_route, run_route
from fieldlab.potential.prediction.default import is_finer, predict_default, predictor_name
from fieldlab.potential.prediction.subgrid import NAME as SUBGRID_NAME
from fieldlab.potential.prediction.subgrid import head_estimate, predict_with_error
from fieldlab.potential.schema import PotentialSample


@dataclass(frozen=True)
class Prediction:
    """One sample's output (see the module table) and where it goes."""

    source: Path
    out: Path
    arrays: dict[str, np.ndarray]

    @property
    def line(self) -> str:
        """The one line printed for this sample."""
        a = self.arrays
        truth = f"  rel_l2 {float(a['rel_l2']):.6f}" if "rel_l2" in a else ""
        return (
            f"{self.source}: {a['predictor']}  rel_l2_estimate {float(a['rel_l2_estimate']):.4f}{truth}  "
            f"{float(a['seconds']):.3f} s (prior {float(a['prior_seconds']):.3f} s)  "
            f"estimate {float(a['estimate_seconds']):.3f} s  -> {self.out}"
        )


def validate_inputs(files: list[Path], out_dir: Path) -> list[PotentialSample]:
    """Every file read and checked (one :class:`InputError` naming the first bad file); outputs may not collide."""
    if not files:
        raise InputError("no sample files given; expected one or more .npz samples")
    names: dict[str, Path] = {}
    for f in files:
        if f.stem in names:
            raise InputError(f"{f}: same name as {names[f.stem]}; outputs would collide in {out_dir}/{f.stem}.npz")
        names[f.stem] = f
        if (out_dir / f"{f.stem}.npz").resolve() == f.resolve():
            raise InputError(f"{f}: the output {out_dir / f.name} would overwrite this input; choose another --out")
    return [validate_raw_file(f) for f in files]


@torch.no_grad()
def predict_files(
    cfg: Config,
    checkpoint: str | Path,
    files: list[str | Path],
    out_dir: str | Path,
    device: str | None = None,
    model_factory=None,
) -> list[Prediction]:
    """Predict and estimate every file of ``files``, then write ``out_dir/<stem>.npz`` for each (module notes).

    ``cfg`` supplies what the evaluation takes from ``params.yaml`` (``data.coord_range``, the ``loss`` mask settings,
    ``eval.refine_sweeps``, ``physics.solver`` for a coarse_fem prior); the model, its prior's kind and spacing and
    its scalings come from the checkpoint (:func:`load_trained`).
    """
    paths, out = [Path(f) for f in files], Path(out_dir)
    samples = validate_inputs(paths, out)
    dev = select_device(device or cfg.device)
    model, ckpt = load_trained(checkpoint, dev, model_factory)
    scaler, ref, grid = evaluation_inputs(ckpt, checkpoint)
    prior = checkpoint_model_config(ckpt, checkpoint).prior
    dataset = PotentialDataset(paths, **dataset_options(cfg, scaler, ref, prior), cache=False)
    priors = [_timed_prior(s, p, prior, cfg) for s, p in zip(samples, paths, strict=True)]
    items = [  # the loss mask is checked here, before anything is predicted
        dataset.build_item(s, where=str(p), prior=value)
        for s, p, (value, _) in zip(samples, paths, priors, strict=True)
    ]
    name = ckpt["backbone"]
    corrector = _subgrid_for(cfg, samples, grid, dev)
    route = x2_route(cfg) if corrector is not None else None
    results = []
    for p, item, sample, (_, prior_s) in zip(paths, items, samples, priors, strict=True):
        if route is not None and is_finer(sample, grid):  # the 2x default: a classical route dominates the corrector
            arrays = _predict_route_one(route, item, sample)
            arrays["predictor"] = np.str_(route)
            prior_s = 0.0
        elif corrector is not None and is_finer(sample, grid):  # the 2x default: the sub-grid corrector
            arrays = _predict_subgrid_one(corrector, item, sample, dev)
            arrays["predictor"] = np.str_(SUBGRID_NAME)
            prior_s = 0.0  # it takes no prior of the operator's; its coarse start is in predict_seconds
        else:
            arrays = _predict_one(model, item, sample, scaler, dev, cfg.eval.refine_sweeps, grid)
            finer = is_finer(sample, grid)
            arrays["predictor"] = np.str_(predictor_name(name, prior.kind, cfg.eval.refine_sweeps, finer))
        arrays["prior_seconds"] = np.float64(prior_s)
        arrays["seconds"] = np.float64(prior_s + float(arrays["predict_seconds"]))
        results.append(Prediction(p, out / f"{p.stem}.npz", arrays))
    for r in results:
        save_npz(r.out, **r.arrays)
    return results


def x2_route(cfg: Config) -> str | None:
    """The classical route that is the run's 2x default (``eval_sr.json: default.x2`` at ``eval.metrics_file``, when it
    replaced the corrector: :func:`~fieldlab.potential.evaluation.front.replaced_default`), else ``None``: the
    corrector. No metrics file (eval_sr not run yet) means the corrector; a file that names a route this version cannot
    run is an error."""
    path = Path(cfg.eval.metrics_file)
    if not path.is_file():
        return None
    try:
        default = json.loads(path.read_text())["default"]["x2"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: no default.x2 ({exc.__class__.__name__}); expected eval_sr's metrics") from None
    if default.get("from") != "baselines":
        return None
    if classical_route(str(default.get("name"))) is None:
        raise InputError(f"{path}: default.x2 is {default.get('name')!r}, not a classical route fieldlab predict runs")
    return str(default["name"])


def _subgrid_for(cfg: Config, samples: list[PotentialSample], grid: tuple[int, int, int], device) -> Any:
    """The run's sub-grid corrector (``subgrid.enabled``, ``<subgrid.root>/checkpoints/best.pt``) when some sample is
    finer than the training grid, else ``None``; one trained on another grid than the operator is an error."""
    if not cfg.subgrid.enabled or not any(is_finer(s, grid) for s in samples):
        return None
    path = subgrid_checkpoint(cfg)
    corrector = load_subgrid(path, device, cfg.subgrid.precision)
    if tuple(corrector.grid) != tuple(grid):
        raise InputError(
            f"{path}: the sub-grid corrector folds onto {corrector.grid}, the operator was trained on {tuple(grid)}; "
            "expected the same training grid (retrain one of them, or set subgrid.enabled=false)"
        )
    return corrector


def _predict_subgrid_one(corrector: Any, item: dict[str, torch.Tensor], sample: PotentialSample, device) -> dict:
    """The sub-grid corrector's prediction of a fine sample (timed as eval_sr times it) and its error estimate."""
    t0 = time.perf_counter()
    u, magnitude = predict_with_error(corrector, sample, device)
    predict_s = time.perf_counter() - t0
    mask = item["mask"][0].numpy().astype(bool)
    if magnitude is None:
        return _scored(u, predict_s, sample, mask)
    t0 = time.perf_counter()
    value = head_estimate(corrector, u, magnitude, mask)
    estimate_s = time.perf_counter() - t0
    return _scored(u, predict_s, sample, mask, (value, magnitude, estimate_s))


def _predict_route_one(route: str, item: dict[str, torch.Tensor], sample: PotentialSample) -> dict:
    """A classical route's potential of a fine sample (:mod:`~.classical`, the 2x default when one dominates the
    corrector), timed as eval_sr timed it, and the residual estimate of its error."""
    t0 = time.perf_counter()
    u = run_route(route, sample)
    predict_s = time.perf_counter() - t0
    return _scored(u, predict_s, sample, item["mask"][0].numpy().astype(bool))


def _scored(
    u: np.ndarray,
    predict_s: float,
    sample: PotentialSample,
    mask: np.ndarray,
    head: tuple[float, np.ndarray, float] | None = None,
) -> dict:
    """The output arrays of a fine sample's prediction ``u``: the error head's estimate ``(value, magnitude,
    seconds)`` when given, else the residual estimate of the sample's own FEM system, and the error against the
    file's own ``u`` when it carries one."""
    if head is None:
        spacing = tuple(float(v) for v in sample.spacing)
        est = estimate_error(u, sample.sigma.astype(np.float64), sample.source.astype(np.float64), spacing, mask)  # type: ignore[arg-type]
        head = (est.rel_l2, est.error, est.seconds)
    out = {
        "phi": u.astype(np.float32),
        "rel_l2_estimate": np.float64(head[0]),
        "error_estimate": head[1].astype(np.float32),
        "loss_mask": mask,
        "predict_seconds": np.float64(predict_s),
        "estimate_seconds": np.float64(head[2]),
    }
    truth = np.asarray(sample.u, dtype=np.float64)
    if np.any(truth[mask] != 0):  # the file carries a potential: score against it, as eval_sr does
        out["rel_l2"] = np.float64(metrics.field_relative_l2(u, truth, mask))
    return out


def _timed_prior(sample: PotentialSample, path: Path, prior: Any, cfg: Config) -> tuple[np.ndarray | None, float]:
    """The checkpoint's prior of ``sample`` (volts, or ``None`` for kind none) and its seconds, computed here."""
    t0 = time.perf_counter()
    try:
        value = compute_prior(sample, prior, cfg.physics.solver)
    except (InputError, PhysicsError) as exc:
        raise type(exc)(f"{path}: {exc} (the checkpoint's model.prior.kind = {prior.kind})") from None
    return value, time.perf_counter() - t0


def _predict_one(
    model,
    item: dict[str, torch.Tensor],
    sample: PotentialSample,
    scaler,
    device,
    sweeps: int,
    grid: tuple[int, int, int],
) -> dict[str, Any]:
    """The default prediction (timed as the evaluation times it), de-scaled to volts, and its error estimate."""
    batch = {k: v[None].to(device) for k, v in item.items()}  # add the batch axis
    t0 = time.perf_counter()
    pred = predict_default(model, batch, sample, scaler, sweeps, grid)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    predict_s = time.perf_counter() - t0
    pred = pred.float()
    phi = scaler.unscale_potential(pred)[0, 0].cpu().numpy()  # (1, 1, D, H, W) -> (D, H, W), volts
    mask = item["mask"][0].numpy()
    spacing = tuple(float(s) for s in sample.spacing)
    sigma, source = sample.sigma.astype(np.float64), sample.source.astype(np.float64)
    est = estimate_error(phi.astype(np.float64), sigma, source, spacing, mask)  # type: ignore[arg-type]
    out = {
        "phi": phi.astype(np.float32),
        "rel_l2_estimate": np.float64(est.rel_l2),
        "error_estimate": est.error.astype(np.float32),
        "loss_mask": mask.astype(bool),
        "predict_seconds": np.float64(predict_s),
        "estimate_seconds": np.float64(est.seconds),
    }
    phi_true = item["phi"][None].to(pred.device)
    if bool((phi_true[0, 0][item["mask"][0]] != 0).any()):  # the file carries a potential: score against it
        m = batch["mask"]
        out["rel_l2"] = np.float64(metrics.relative_l2(pred, phi_true, m)[0])  # as the evaluation measures it
    return out
