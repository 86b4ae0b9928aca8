"""Fit one INR to one MPM field window and score it in physical units.

Scores (:func:`fieldlab.inr.scores.regression_stats`) are computed over all ``T x N x C`` values after
subtracting each component's mean from truth and prediction alike, so that ``R2 = 1 - SS_res / SS_tot`` compares
with the per-component mean and not with the spread between components (for one component, as Jp, this is the
plain R2). ``r2_pooled_raw`` is the R2 of the raw pooled values, for reference.

Training minimises the mean squared error of the per-component standardised field (:mod:`fieldlab.inr.data`)
over ``batch_size`` random frames per step (all particles of those frames) with Adam: the hash table with
``betas = (0.9, 0.99), eps = 1e-15`` (Instant-NGP) at ``lr * ngp.table_lr_factor``, learnable ``omega`` in its
own group at ``omega_lr``. Every rate follows a cosine down to 1/100 of its start over ``total_steps``:
``lr_k = lr * (0.01 + 0.99 * (1 + cos(pi k / total_steps)) / 2)``. Gradient norms are clipped at ``grad_clip``
when it is positive.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fieldlab.config import INRConfig
from fieldlab.core.seeding import seed_everything
from fieldlab.errors import ConfigError, InputError, PhysicsError
from fieldlab.inr.data import FieldWindow, map_resolution, particle_grid
from fieldlab.inr.models.pod import POD
from fieldlab.inr.models.registry import FieldINR, build_inr, compression_ratio, count_parameters, make_inputs
from fieldlab.inr.scores import RegressionStats, regression_stats, ssim


@dataclass
class FitResult:
    """A fitted representation with its prediction ``(T, N, C)`` in physical units, loss history and scores.

    ``model`` is the trained network (``None`` for a pure POD), ``pod`` the truncated SVD of ``pod`` and
    ``pod_residual`` (else ``None``); ``mean`` and ``std`` map the network's output to physical units (for
    ``pod_residual``, to the residual). ``losses`` is the loss per training step (for ``pod``: ``1 - R2`` of the
    fitted frames per rank).
    """

    model: FieldINR | None
    prediction: np.ndarray
    losses: np.ndarray
    stats: RegressionStats
    r2_per_component: list[float]
    r2_pooled: float
    ssim: list[float]
    training_time: float
    total_params: int
    device: str
    mean: np.ndarray
    std: np.ndarray
    pod: POD | None = None


@dataclass(frozen=True)
class Scores:
    """The scores of a prediction against a window (module docstring): centred stats, R2 per component and of the
    raw pooled values, SSIM per component map."""

    stats: RegressionStats
    r2_per_component: list[float]
    r2_pooled: float
    ssim: list[float]


@dataclass
class TrainedINR:
    """A trained network, its loss per step, training seconds and prediction ``(T, N, C)`` in physical units
    (``output * std + mean``)."""

    model: FieldINR
    losses: np.ndarray
    seconds: float
    prediction: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def _optimizer(model: FieldINR, cfg: INRConfig) -> torch.optim.Optimizer:
    omega = [p for n, p in model.named_parameters() if n.endswith("omega")]
    table = [p for n, p in model.named_parameters() if n.endswith("encoding.table")]
    taken = {id(p) for p in omega + table}
    rest = [p for p in model.parameters() if id(p) not in taken]
    groups: list[dict] = [{"params": rest, "lr": cfg.lr}]
    if omega:
        groups.append({"params": omega, "lr": cfg.omega_lr})
    if table:
        lr_table = cfg.lr * cfg.ngp.table_lr_factor
        groups.append({"params": table, "lr": lr_table, "betas": (0.9, 0.99), "eps": 1e-15})
    return torch.optim.Adam(groups)


def predict(model: FieldINR, inputs: torch.Tensor, device: torch.device, frames_per_chunk: int = 8) -> np.ndarray:
    """Model output ``(T, N, C)`` (standardised units) for inputs of every frame, in chunks of frames."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, inputs.shape[0], frames_per_chunk):
            out.append(model(inputs[start : start + frames_per_chunk].to(device)).float().cpu())
    model.train()
    return torch.cat(out).numpy()


def component_ssim(window: FieldWindow, prediction: np.ndarray, frame: int | None = None) -> list[float]:
    """SSIM per component of the prediction against the truth, rasterised at ``frame`` (default: the middle).

    Both maps average the particles falling in each of ``R x R`` cells (:func:`map_resolution`) over the particles'
    bounding box; SSIM is averaged over occupied cells with ``L`` = the truth map's range.
    """
    k = window.n_frames // 2 if frame is None else frame
    pos = window.positions[k]
    bounds = (pos[:, 0].min(), pos[:, 0].max(), pos[:, 1].min(), pos[:, 1].max())
    res = map_resolution(window.n_particles)
    scores = []
    for c in range(window.n_components):
        truth, mask = particle_grid(pos, window.values[k, :, c], res, bounds)
        pred, _ = particle_grid(pos, prediction[k, :, c], res, bounds)
        span = float(truth[mask].max() - truth[mask].min())
        scores.append(ssim(truth, pred, data_range=span if span > 0 else 1.0, mask=mask))
    return scores


def score_prediction(window: FieldWindow, prediction: np.ndarray) -> Scores:
    """Scores of ``prediction`` ``(T, N, C)`` against ``window`` (module docstring).

    Both are centred by the truth's per-component mean, so that ``SS_tot`` is the within-component variance: a
    per-component constant prediction scores R2 = 0, not the between-component spread (F11 ~ 1, F12 ~ 0 would give
    any such constant R2 ~ 0.99 if pooled raw).
    """
    mean = window.values.reshape(-1, window.n_components).astype(np.float64).mean(0)
    stats = regression_stats(window.values - mean, prediction - mean)
    pooled = regression_stats(window.values, prediction).r2
    per_comp = [regression_stats(window.values[..., c], prediction[..., c]).r2 for c in range(window.n_components)]
    return Scores(stats, per_comp, pooled, component_ssim(window, prediction))


def train_inr(
    cfg: INRConfig,
    window: FieldWindow,
    seed: int,
    device: torch.device,
    tb_dir: str | Path | None = None,
    progress: bool = False,
    scale: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainedINR:
    """Train ``cfg.model`` on ``window`` for ``cfg.total_steps`` steps on targets ``(y - mean) / std``.

    ``scale`` is ``(mean, std)`` per component, default the window's own (:meth:`FieldWindow.stats`).

    Raises
    ------
    PhysicsError
        The loss became non-finite (diverged); lower ``inr.lr`` or set ``inr.grad_clip``.
    """
    gen = seed_everything(seed)
    n_t, n, n_c = window.values.shape
    model = build_inr(cfg, n, n_c).to(device)
    mean, std = window.stats() if scale is None else scale
    inputs = make_inputs(cfg, window).to(device)
    targets = torch.as_tensor(((window.values - mean) / std).astype(np.float32), device=device)  # (T, N, C)
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(k, cfg.total_steps) / cfg.total_steps))
    )
    batch = min(cfg.batch_size, n_t)
    writer = None
    if tb_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(tb_dir))
    losses = np.empty(cfg.total_steps)
    steps = range(cfg.total_steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=f"inr {cfg.model} {cfg.field_name}", mininterval=2.0)
    loss_fn = nn.MSELoss()
    start = time.perf_counter()
    for k in steps:
        idx = torch.randperm(n_t, generator=gen)[:batch].to(device)
        loss = loss_fn(model(inputs[idx]), targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        losses[k] = loss.item()
        if not math.isfinite(losses[k]):
            raise PhysicsError(f"inr fit diverged at step {k} (loss {losses[k]}): lower inr.lr or set inr.grad_clip")
        if writer is not None and (k % 10 == 0 or k == cfg.total_steps - 1):
            writer.add_scalar("loss/train", losses[k], k)
            writer.add_scalar("lr", opt.param_groups[0]["lr"], k)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if writer is not None:
        writer.close()
    pred = predict(model, inputs, device) * std + mean  # physical units, (T, N, C)
    return TrainedINR(model, losses, seconds, pred, mean, std)


def fit_inr(
    cfg: INRConfig,
    window: FieldWindow,
    seed: int,
    device: torch.device,
    tb_dir: str | Path | None = None,
    progress: bool = False,
) -> FitResult:
    """Train ``cfg.model`` on ``window`` for ``cfg.total_steps`` steps (:func:`train_inr`) and score it on every
    value (:func:`score_prediction`).

    Raises
    ------
    PhysicsError
        The loss became non-finite (diverged); lower ``inr.lr`` or set ``inr.grad_clip``.
    """
    trained = train_inr(cfg, window, seed, device, tb_dir, progress)
    s = score_prediction(window, trained.prediction)
    return FitResult(
        trained.model, trained.prediction.astype(np.float32), trained.losses, s.stats, s.r2_per_component,
        s.r2_pooled, s.ssim, trained.seconds, count_parameters(trained.model), str(device), trained.mean, trained.std,
    )  # fmt: skip


def json_safe(value: float | list[float]) -> float | list[float | None] | None:
    """JSON-safe score: NaN or infinity (e.g. R2 of a constant field) becomes null."""
    if isinstance(value, list):
        return [json_safe(v) for v in value]  # type: ignore[misc]
    return float(value) if math.isfinite(value) else None


def fit_metrics(cfg: INRConfig, window: FieldWindow, result: FitResult) -> dict:
    """The ``metrics/inr.json`` record of a fit (physical units; undefined scores are null).

    ``n_values`` and ``compression_ratio`` count the values the representation was fitted to (``window``);
    ``total_steps`` is 0 for ``pod`` (no training) and its ``final_loss`` is ``1 - R2`` at the kept rank;
    ``pod_rank`` and ``pod_seconds`` are set for the POD kinds.
    """
    s = result.stats
    steps = 0 if cfg.model == "pod" else cfg.total_steps
    record = {
        "final_mse": s.mse,
        "final_r2": s.r2,
        "pearson_r2": s.pearson_r2,
        "slope": s.slope,
        "intercept": s.intercept,
        "r2_per_component": result.r2_per_component,
        "r2_pooled_raw": result.r2_pooled,
        "ssim": result.ssim,
        "final_loss": float(result.losses[result.pod.rank - 1] if cfg.model == "pod" else result.losses[-1]),
        "total_params": result.total_params,
        "n_values": window.n_values,
        "compression_ratio": compression_ratio(window.n_values, result.total_params),
        "training_time": result.training_time,
        "steps_per_second": steps / max(result.training_time, 1e-9) if steps else None,
        "field_name": cfg.field_name,
        "inr_type": cfg.model,
        "scene": cfg.scene,
        "n_frames": window.n_frames,
        "n_particles": window.n_particles,
        "n_components": window.n_components,
        "total_steps": steps,
        "device": result.device,
    }
    if result.pod is not None:
        record["pod_rank"] = result.pod.rank
        record["pod_seconds"] = result.pod.seconds
    return {k: json_safe(v) if isinstance(v, float | list) else v for k, v in record.items()}


def check_window(cfg: INRConfig, window: FieldWindow) -> None:
    """Reject configurations that cannot fit this window (a constant field, ``siren_t`` with a huge output layer)."""
    flat = window.values.reshape(-1, window.n_components)
    if np.all(flat.max(0) == flat.min(0)):
        first, last = int(window.frames[0]), int(window.frames[-1])
        raise InputError(
            f"inr.field_name = {cfg.field_name}: constant over frames {first}..{last} (nothing to fit, R2 undefined); "
            "choose another field or window"
        )
    if cfg.model == "siren_t" and cfg.hidden_features * window.n_particles * window.n_components > 2**31:
        raise ConfigError(
            f"inr.model = siren_t: output layer {cfg.hidden_features} x {window.n_particles * window.n_components} "
            "is too large; lower inr.hidden_features"
        )
