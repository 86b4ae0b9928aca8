"""The operator trainer: AdamW, a per-step schedule, masked losses, TensorBoard, atomic checkpoints, resume, DDP.

One epoch: every rank sees its shard of the training set (``DistributedSampler``, reshuffled per epoch from
``seed`` and the epoch number, so a resumed run sees the same order), minimises

    L = lambda_mse * MSE_mask(phi_pred, phi) + lambda_grad * G(phi_pred, phi)

(:func:`fieldlab.potential.metrics.training_loss`), then rank 0 validates (mean relative L2 over the loss mask),
logs, and writes ``checkpoints/last.pt`` and, when validation improved, ``checkpoints/best.pt``. A non-finite
loss stops the run before the optimiser touches the weights: the last checkpoint on disk stays the last good one.

The run's set-up and checkpoint are :mod:`fieldlab.potential.training.runstate`, the learning-rate schedule
:mod:`fieldlab.potential.training.schedule`, and what is logged :mod:`fieldlab.potential.training.runlog`.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from fieldlab.config import Config, ModelConfig
from fieldlab.core import ddp
from fieldlab.core.checkpoint import load_checkpoint, save_checkpoint
from fieldlab.core.device import select_device
from fieldlab.core.seeding import seed_everything
from fieldlab.errors import FieldlabError
from fieldlab.potential import metrics
from fieldlab.potential.data.loader import to_device
from fieldlab.potential.training.runlog import RunLog, write_history_csv
from fieldlab.potential.training.runstate import DataPlan, Progress, TrainingRun, build_run, inner

ModelFactory = Callable[[ModelConfig, str], nn.Module]
#: called after every optimiser step as ``hook(epoch, step_in_epoch, global_step)`` (tests use it to crash)
StepHook = Callable[[int, int, int], None]


class NonFiniteLossError(FieldlabError, RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def default_model_factory(model_cfg: ModelConfig, backbone: str) -> nn.Module:
    from fieldlab.potential.models.wrapper import build_model  # heavy import, only when training

    return build_model(model_cfg, backbone)


class OperatorTrainer:
    """Train one backbone on the corpus under ``cfg.data.root``; outputs go to ``out_dir``.

    Parameters
    ----------
    cfg
        The resolved configuration (``seed``, ``device``, ``data``, ``model``, ``train``, ``loss``, ``log``).
    backbone
        ``"unet"`` or ``"fno"`` (independent of ``cfg.model.backbone``, so both train stages share one config).
    out_dir
        ``experiments/<backbone>``: ``checkpoints/{best,last}.pt`` and ``tensorboard/``.
    history_csv
        Where the per-epoch history goes (``plots/train_<backbone>.csv``); ``None`` skips it.
    model_factory
        Builds the model from the ``model`` section; defaults to :func:`fieldlab.potential.models.wrapper.build_model`.
    step_hook
        Called after every optimiser step (:data:`StepHook`).
    plan, start
        The files to train and validate on and the warm start of a fresh run (:func:`~.runstate.build_run`);
        default: ``train/`` and ``val/`` from a fresh initialisation.
    """

    def __init__(
        self,
        cfg: Config,
        backbone: str,
        out_dir: str | Path,
        history_csv: str | Path | None = None,
        model_factory: ModelFactory | None = None,
        step_hook: StepHook | None = None,
        plan: DataPlan | None = None,
        start: Callable[[nn.Module], dict[str, Any]] | None = None,
    ) -> None:
        self.plan, self.start = plan, start
        self.cfg = cfg
        self.backbone = backbone
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.last_path = self.ckpt_dir / "last.pt"
        self.history_csv = None if history_csv is None else Path(history_csv)
        self.model_factory = model_factory or default_model_factory
        self.step_hook = step_hook

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device, autocast) -> dict[str, Any]:
        """Mean loss, relative L2 and R2 over the loss mask of the validation split, and the first sample."""
        model.eval()
        losses, rels, r2s = [], [], []
        first = None
        for batch in loader:
            b = to_device(batch, device)
            with autocast():
                pred = model(b["sigma"], b["f"], b["coords"], b["spacing"], prior=b.get("prior"))
            pred = pred.float()
            losses.append(
                float(
                    metrics.training_loss(
                        pred, b["phi"], b["mask"], b["spacing"], self.cfg.loss.lambda_mse, self.cfg.loss.lambda_grad
                    )
                )
            )
            rels.extend(metrics.relative_l2(pred, b["phi"], b["mask"]).tolist())
            r2s.extend(metrics.r2_score(pred, b["phi"], b["mask"]).tolist())
            if first is None:
                first = (b["phi"][0, 0].cpu().numpy(), pred[0, 0].cpu().numpy(), b["mask"][0, 0].cpu().numpy())
        model.train()
        return {
            "val_loss": sum(losses) / len(losses),
            "val_rel_l2": sum(rels) / len(rels),
            "val_r2": sum(r2s) / len(r2s),
            "first": first,
        }

    # ------------------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train for ``train.epochs`` (continuing from ``checkpoints/last.pt`` with ``resume``); return a summary."""
        cfg = self.cfg
        device = select_device(cfg.device)
        info = ddp.init_distributed(device.type)
        if info.enabled and device.type == "cuda":
            device = torch.device("cuda", info.local_rank)
        try:
            return self._fit(device, info, resume)
        finally:
            ddp.shutdown(info)

    def _fit(self, device: torch.device, info: ddp.DistInfo, resume: bool) -> dict[str, Any]:
        """Set up (or resume), train epoch by epoch, then summarise."""
        generator = seed_everything(self.cfg.seed)
        ckpt = load_checkpoint(self.last_path) if resume and self.last_path.is_file() else None
        run = build_run(
            self.cfg, self.backbone, self.model_factory, device, info, generator, ckpt, self.plan, self.start
        )
        progress = run.restore(ckpt) if ckpt else Progress()
        log = self._open_log(run, progress.step if ckpt else None) if info.is_main else None

        t_start = time.perf_counter() - progress.elapsed
        run.model.train()
        for epoch in range(progress.epoch, self.cfg.train.epochs):
            t_epoch = time.perf_counter()
            train_loss = self._train_epoch(run, progress, epoch, log)
            if log is not None:
                self._end_epoch(run, progress, log, epoch, train_loss, t_epoch, t_start)
            ddp.barrier(info)

        progress.elapsed = time.perf_counter() - t_start
        summary = self._summary(run, progress)
        if log is not None:
            log.close(progress.best, run.n_params)
        return summary

    def _open_log(self, run: TrainingRun, resume_step: int | None) -> RunLog:
        """Rank 0's run log; a fresh run (``resume_step`` None) first empties the run folder of stale files."""
        if resume_step is None:
            for sub in ("tensorboard", "checkpoints"):
                shutil.rmtree(self.out_dir / sub, ignore_errors=True)
        log = RunLog(self.out_dir, self.cfg, self.backbone, purge_step=resume_step)
        if resume_step is None:
            log.describe_run(run.n_params, run.grid)
        return log

    def _train_epoch(self, run: TrainingRun, progress: Progress, epoch: int, log: RunLog | None) -> float:
        """One pass over this rank's shard (0-based ``epoch``); returns the mean all-reduced training loss."""
        run.sampler.set_epoch(epoch)
        loss_sum, n_batches = 0.0, 0
        batches = run.loader
        if run.info.is_main and self.cfg.log.progress:
            from tqdm import tqdm

            desc = f"{self.backbone} epoch {epoch + 1}/{self.cfg.train.epochs}"
            batches = tqdm(run.loader, desc=desc, mininterval=5)
        for i, batch in enumerate(batches):
            loss, grad_norm = self._train_step(run, batch, epoch, progress.step)
            progress.step += 1
            loss_sum += loss
            n_batches += 1
            if log is not None:
                log.log_step(progress.step, run.model, grad_norm, loss, run.opt.param_groups[0]["lr"])
            if self.step_hook is not None:
                self.step_hook(epoch, i, progress.step)
        return loss_sum / max(1, n_batches)

    def _train_step(self, run: TrainingRun, batch: dict[str, Any], epoch: int, step: int) -> tuple[float, float]:
        """Forward, the all-reduced loss (checked finite before the weights change), backward, clip, step.

        Returns the all-reduced loss and the global gradient norm before clipping.
        """
        cfg = self.cfg
        b = to_device(batch, run.device)
        with run.autocast():
            pred = run.model(b["sigma"], b["f"], b["coords"], b["spacing"], prior=b.get("prior"))
        loss = metrics.training_loss(
            pred.float(), b["phi"], b["mask"], b["spacing"], cfg.loss.lambda_mse, cfg.loss.lambda_grad
        )
        check = ddp.all_reduce_mean(loss.detach(), run.info)
        if not torch.isfinite(check):
            raise NonFiniteLossError(
                f"{self.backbone}: training loss is {float(check)} at epoch {epoch + 1}, step {step + 1}; "
                f"stopped, the last good checkpoint is {self.last_path} (try a lower train.lr)"
            )
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_norm))
        run.opt.step()
        run.sched.step()
        return float(check), grad_norm

    def _end_epoch(
        self,
        run: TrainingRun,
        progress: Progress,
        log: RunLog,
        epoch: int,
        train_loss: float,
        t_epoch: float,
        t_start: float,
    ) -> None:
        """Rank 0 after epoch ``epoch`` (0-based): validate, log, write the checkpoints and the history CSV."""
        val = self.validate(inner(run.model), run.val_loader, run.device, run.autocast)
        row = {
            "epoch": epoch + 1,
            "step": progress.step,
            "lr": run.opt.param_groups[0]["lr"],
            "train_loss": train_loss,
            "val_loss": val["val_loss"],
            "val_rel_l2": val["val_rel_l2"],
            "val_r2": val["val_r2"],
            "epoch_time_s": time.perf_counter() - t_epoch,
        }
        progress.history.append(row)
        log.log_epoch(row, val["first"])
        progress.elapsed = time.perf_counter() - t_start
        improved = row["val_rel_l2"] < progress.best
        progress.best = min(progress.best, row["val_rel_l2"])
        state = run.checkpoint(progress, epoch + 1)
        if improved:
            save_checkpoint(self.ckpt_dir / "best.pt", state)
        save_checkpoint(self.last_path, state)
        if self.history_csv is not None:
            write_history_csv(self.history_csv, progress.history)

    def _summary(self, run: TrainingRun, progress: Progress) -> dict[str, Any]:
        """What ``metrics/train_<backbone>.json`` records."""
        history, step, elapsed = progress.history, progress.step, progress.elapsed
        return {
            "backbone": self.backbone,
            "best_val_rel_l2": progress.best,
            "best_epoch": min(history, key=lambda r: r["val_rel_l2"])["epoch"] if history else 0,
            "final_val_rel_l2": history[-1]["val_rel_l2"] if history else math.nan,
            "final_train_loss": history[-1]["train_loss"] if history else math.nan,
            "epochs": self.cfg.train.epochs,
            "steps": step,
            "params": run.n_params,
            "train_time_s": elapsed,
            "s_per_step": elapsed / max(1, step),
            "train_samples": len(run.loader.dataset),
            "train_spacings": run.spacings,
            "world_size": run.info.world_size,
            "device": str(run.device),
            "amp": run.use_amp,
        }


def train_operator(
    cfg: Config,
    backbone: str,
    out_dir: str | Path,
    history_csv: str | Path | None = None,
    resume: bool = False,
    model_factory: ModelFactory | None = None,
    step_hook: StepHook | None = None,
) -> dict[str, Any]:
    """Train ``backbone`` and return the summary written to ``metrics/train_<backbone>.json``."""
    trainer = OperatorTrainer(cfg, backbone, out_dir, history_csv, model_factory, step_hook)
    return trainer.fit(resume=resume)


def run_training(
    cfg: Config,
    backbone: str,
    out_dir: str | Path,
    metrics_json: str | Path,
    history_csv: str | Path,
    resume: bool = False,
) -> dict[str, Any]:
    """Train, then write the headline (:data:`HEADLINE`) to ``metrics_json`` and the whole summary to
    ``<out_dir>/summary.json`` (rank 0 only); the stage and ``fieldlab train`` use this."""
    import os

    from fieldlab.core.io import write_json

    summary = train_operator(cfg, backbone, out_dir, history_csv=history_csv, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(Path(out_dir) / "summary.json", summary)
        write_json(metrics_json, {k: summary[k] for k in HEADLINE})
    return summary


#: What ``metrics/train_<backbone>.json`` shows (``dvc metrics show``, ``dvc exp show``).
HEADLINE = ("best_val_rel_l2", "best_epoch", "params", "train_time_s")
