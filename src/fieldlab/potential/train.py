"""The operator trainer: AdamW, a per-step schedule, masked losses, TensorBoard, atomic checkpoints, resume, DDP.

One epoch: every rank sees its shard of the training set (``DistributedSampler``, reshuffled per epoch from
``seed`` and the epoch number, so a resumed run sees the same order), minimises

    L = lambda_mse * MSE_mask(phi_pred, phi) + lambda_grad * G(phi_pred, phi)

(:func:`fieldlab.potential.metrics.training_loss`), then rank 0 validates (mean relative L2 over the loss mask),
logs, and writes ``checkpoints/last.pt`` and, when validation improved, ``checkpoints/best.pt``. A non-finite
loss stops the run before the optimiser touches the weights: the last checkpoint on disk stays the last good one.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from fieldlab.config import Config, ModelConfig, to_dict
from fieldlab.core import ddp
from fieldlab.core.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fieldlab.core.device import select_device
from fieldlab.core.io import atomic_open
from fieldlab.core.seeding import seed_everything, worker_init_fn
from fieldlab.errors import FieldlabError
from fieldlab.potential import metrics
from fieldlab.potential.data.loader import PotentialDataset, dataset_options, split_files, to_device
from fieldlab.potential.data.transforms import FieldScaler

ModelFactory = Callable[[ModelConfig, str], nn.Module]
#: called after every optimiser step as ``hook(epoch, step_in_epoch, global_step)`` (tests use it to crash)
StepHook = Callable[[int, int, int], None]

HISTORY_FIELDS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_rel_l2", "val_r2", "epoch_time_s")


class NonFiniteLossError(FieldlabError, RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def default_model_factory(model_cfg: ModelConfig, backbone: str) -> nn.Module:
    from fieldlab.potential.models.wrapper import build_model  # heavy import, only when training

    return build_model(model_cfg, backbone)


def count_parameters(model: nn.Module) -> int:
    """Real trainable numbers (a complex weight counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad)


def lr_factor(step: int, total: int, cfg_train: Any) -> float:
    """Multiplier of ``train.lr`` after ``step`` optimiser steps of ``total``.

    Linear warm-up over ``warmup_steps``, then ``cosine``: ``r + (1 - r) (1 + cos(pi t)) / 2`` with ``t`` the
    fraction of the remaining steps done and ``r = min_lr_ratio``; ``none``: 1. (``step`` uses ``StepLR``.)
    """
    warm = cfg_train.warmup_steps
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if cfg_train.scheduler == "cosine":
        t = min(1.0, (step - warm) / max(1, total - warm))
        r = cfg_train.min_lr_ratio
        return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * t))
    return 1.0


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    inner = getattr(model, "module", model)  # DDP
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile
    return {k: v.detach().cpu() for k, v in inner.state_dict().items()}


def _inner(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


def write_history_csv(path: Path, history: list[dict[str, float]]) -> None:
    """The per-epoch history as CSV (a DVC plot), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in HISTORY_FIELDS})
    with atomic_open(path, "w") as fh:
        fh.write(buf.getvalue())


def _flat_hparams(cfg: Config, backbone: str) -> dict[str, Any]:
    out: dict[str, Any] = {"backbone": backbone, "seed": cfg.seed}
    for section in ("train", "loss"):
        for k, v in to_dict(getattr(cfg, section)).items():
            out[f"{section}.{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    model = to_dict(cfg.model)
    for k, v in model.get(backbone, {}).items() if isinstance(model.get(backbone), dict) else []:
        out[f"model.{backbone}.{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return out


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
    """

    def __init__(
        self,
        cfg: Config,
        backbone: str,
        out_dir: str | Path,
        history_csv: str | Path | None = None,
        model_factory: ModelFactory | None = None,
        step_hook: StepHook | None = None,
    ) -> None:
        self.cfg = cfg
        self.backbone = backbone
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.history_csv = None if history_csv is None else Path(history_csv)
        self.model_factory = model_factory or default_model_factory
        self.step_hook = step_hook

    # ------------------------------------------------------------------------------------------------------
    def _datasets(self, scaler: FieldScaler | None) -> tuple[PotentialDataset, PotentialDataset, FieldScaler, list]:
        from fieldlab.potential.schema import load_sample

        cfg = self.cfg
        train_files = split_files(cfg.data.root, "train")
        if cfg.train.max_train_samples:
            train_files = train_files[: cfg.train.max_train_samples]
        val_files = split_files(cfg.data.root, "val")
        first = load_sample(train_files[0])
        if scaler is None:
            scaler = FieldScaler.fit(load_sample(f) for f in train_files)
        ref = [float(s) for s in first.spacing]
        kw = dataset_options(self.cfg, scaler, ref)
        train_ds = PotentialDataset(train_files, **kw, augment=cfg.train.augment)
        return train_ds, PotentialDataset(val_files, **kw), scaler, ref

    def _checkpoint(self, model, opt, sched, epoch, step, best, history, scaler, ref, elapsed) -> dict[str, Any]:
        return {
            "model": _state_dict(model),
            "model_config": to_dict(self.cfg.model),
            "backbone": self.backbone,
            "transforms": scaler.to_dict(),
            "reference_spacing": list(ref),
            "grid": list(self.grid),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "step": step,
            "best_val_rel_l2": best,
            "history": history,
            "train_time_s": elapsed,
            "rng": rng_state(),
            "config": to_dict(self.cfg),
        }

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
        cfg = self.cfg
        generator = seed_everything(cfg.seed)
        last_path = self.ckpt_dir / "last.pt"
        ckpt = load_checkpoint(last_path) if resume and last_path.is_file() else None
        scaler = FieldScaler.from_dict(ckpt["transforms"]) if ckpt else None
        train_ds, val_ds, scaler, ref = self._datasets(scaler)
        self.grid = tuple(train_ds.sample(0).shape)

        model = self.model_factory(cfg.model, self.backbone).to(device)
        n_params = count_parameters(model)
        if ckpt:
            model.load_state_dict(ckpt["model"])
        if cfg.train.compile:
            model = torch.compile(model)
        if info.enabled:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[info.local_rank] if device.type == "cuda" else None
            )

        sampler = DistributedSampler(
            train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=False
        )
        loader = DataLoader(
            train_ds,
            batch_size=cfg.train.batch_size,
            sampler=sampler,
            num_workers=cfg.train.workers,
            worker_init_fn=worker_init_fn,
            generator=generator,
            pin_memory=device.type == "cuda",
            persistent_workers=cfg.train.workers > 0,
        )
        val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=0)
        steps_per_epoch = len(loader)
        total_steps = steps_per_epoch * cfg.train.epochs

        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        if cfg.train.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(
                opt, step_size=cfg.train.step_size * steps_per_epoch, gamma=cfg.train.gamma
            )
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps, cfg.train))

        start_epoch, step, best, history, elapsed = 0, 0, math.inf, [], 0.0
        if ckpt:
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
            best, history, elapsed = float(ckpt["best_val_rel_l2"]), list(ckpt["history"]), float(ckpt["train_time_s"])
            set_rng_state(ckpt["rng"])

        use_amp = cfg.train.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()

        def autocast():
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp)

        writer = None
        if info.is_main:
            if not ckpt:  # a fresh run starts from an empty run folder (no stale events or checkpoints)
                for sub in ("tensorboard", "checkpoints"):
                    shutil.rmtree(self.out_dir / sub, ignore_errors=True)
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"), purge_step=step if ckpt else None)
            if not ckpt:
                text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
                writer.add_text("config", "```yaml\n" + text + "```", global_step=0)
                writer.add_text("model", f"backbone {self.backbone}, {n_params} parameters, grid {self.grid}", 0)

        t_start = time.perf_counter() - elapsed
        model.train()
        for epoch in range(start_epoch, cfg.train.epochs):
            t_epoch = time.perf_counter()
            sampler.set_epoch(epoch)
            loss_sum, n_batches = 0.0, 0
            batches = loader
            if info.is_main and cfg.log.progress:
                from tqdm import tqdm

                batches = tqdm(loader, desc=f"{self.backbone} epoch {epoch + 1}/{cfg.train.epochs}", mininterval=5)
            for i, batch in enumerate(batches):
                b = to_device(batch, device)
                with autocast():
                    pred = model(b["sigma"], b["f"], b["coords"], b["spacing"], prior=b.get("prior"))
                loss = metrics.training_loss(
                    pred.float(), b["phi"], b["mask"], b["spacing"], cfg.loss.lambda_mse, cfg.loss.lambda_grad
                )
                check = ddp.all_reduce_mean(loss.detach(), info)
                if not torch.isfinite(check):
                    raise NonFiniteLossError(
                        f"{self.backbone}: training loss is {float(check)} at epoch {epoch + 1}, step {step + 1}; "
                        f"stopped, the last good checkpoint is {last_path} (try a lower train.lr)"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else math.inf
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
                opt.step()
                sched.step()
                step += 1
                loss_sum += float(check)
                n_batches += 1
                if writer is not None and step % cfg.log.norms_every == 0:
                    norms = torch.stack([torch.linalg.vector_norm(p.detach()) for p in model.parameters()])
                    param_norm = float(torch.linalg.vector_norm(norms))
                    writer.add_scalar("norms/grad", grad_norm, step)
                    writer.add_scalar("norms/param", param_norm, step)
                    writer.add_scalar("train/loss_step", float(check), step)
                    writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
                if self.step_hook is not None:
                    self.step_hook(epoch, i, step)

            if info.is_main:
                val = self.validate(_inner(model), val_loader, device, autocast)
                row = {
                    "epoch": epoch + 1,
                    "step": step,
                    "lr": opt.param_groups[0]["lr"],
                    "train_loss": loss_sum / max(1, n_batches),
                    "val_loss": val["val_loss"],
                    "val_rel_l2": val["val_rel_l2"],
                    "val_r2": val["val_r2"],
                    "epoch_time_s": time.perf_counter() - t_epoch,
                }
                history.append(row)
                for key in ("train_loss", "val_loss"):
                    writer.add_scalar(f"loss/{key.split('_')[0]}", row[key], epoch + 1)
                writer.add_scalar("val/rel_l2", row["val_rel_l2"], epoch + 1)
                writer.add_scalar("val/r2", row["val_r2"], epoch + 1)
                if (epoch + 1) % cfg.log.vis_every == 0 or epoch + 1 == cfg.train.epochs:
                    from fieldlab.potential.figures import error_map_figure

                    truth, pred_np, mask = val["first"]
                    title = f"{self.backbone}, val sample 0, epoch {epoch + 1}"
                    fig = error_map_figure(truth, pred_np, mask, title=title)
                    writer.add_figure("val/error_map", fig, epoch + 1, close=True)
                writer.flush()
                elapsed = time.perf_counter() - t_start
                improved = row["val_rel_l2"] < best
                best = min(best, row["val_rel_l2"])
                state = self._checkpoint(model, opt, sched, epoch + 1, step, best, history, scaler, ref, elapsed)
                if improved:
                    save_checkpoint(self.ckpt_dir / "best.pt", state)
                save_checkpoint(last_path, state)
                if self.history_csv is not None:
                    write_history_csv(self.history_csv, history)
            ddp.barrier(info)

        elapsed = time.perf_counter() - t_start
        summary = {
            "backbone": self.backbone,
            "best_val_rel_l2": best,
            "best_epoch": min(history, key=lambda r: r["val_rel_l2"])["epoch"] if history else 0,
            "final_val_rel_l2": history[-1]["val_rel_l2"] if history else math.nan,
            "final_train_loss": history[-1]["train_loss"] if history else math.nan,
            "epochs": cfg.train.epochs,
            "steps": step,
            "params": n_params,
            "train_time_s": elapsed,
            "s_per_step": elapsed / max(1, step),
            "train_samples": len(train_ds),
            "world_size": info.world_size,
            "device": str(device),
            "amp": use_amp,
        }
        if writer is not None:
            writer.add_hparams(
                _flat_hparams(cfg, self.backbone),
                {"hparam/best_val_rel_l2": best, "hparam/params": float(n_params)},
                run_name="hparams",
            )
            writer.close()
        return summary


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
    """Train, then write the summary to ``metrics_json`` (rank 0 only); the stage and ``fieldlab train`` use this."""
    import os

    from fieldlab.core.io import write_json

    summary = train_operator(cfg, backbone, out_dir, history_csv=history_csv, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(metrics_json, summary)
    return summary
