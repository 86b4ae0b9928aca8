"""A training run's state: built from the configuration, saved as a checkpoint, restored from one on resume.

:func:`build_run` makes, in this order (which fixes the draws of the seeded generators): the datasets (and the
field scaler, fitted on the training split unless the checkpoint has one), the model (its initialisation draws
from torch's generator), the loaders, the AdamW optimiser and the per-step schedule. On resume,
:meth:`TrainingRun.restore` then loads optimiser, schedule and progress and sets every generator to its saved
state, so the resumed run continues the uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from fieldlab.config import Config, ModelConfig, to_dict
from fieldlab.core import ddp
from fieldlab.core.checkpoint import rng_state, set_rng_state
from fieldlab.core.seeding import worker_init_fn
from fieldlab.potential.data.loader import PotentialDataset, dataset_options, split_files
from fieldlab.potential.data.spacing_batches import SpacingBatchSampler, spacing_key
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.training.schedule import build_scheduler


def count_parameters(model: nn.Module) -> int:
    """Real trainable numbers (a complex weight counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad)


def inner(model: nn.Module) -> nn.Module:
    """The model inside its DDP and ``torch.compile`` wrappers."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


@dataclass
class Progress:
    """How far a run is: epochs done, optimiser steps, best validation rel. L2, history rows, training seconds."""

    epoch: int = 0
    step: int = 0
    best: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)
    elapsed: float = 0.0


@dataclass
class TrainingRun:
    """What one call of ``fit`` trains with: the (wrapped) model, data, optimiser and schedule."""

    cfg: Config
    backbone: str
    device: torch.device
    info: ddp.DistInfo
    model: nn.Module
    n_params: int
    sampler: DistributedSampler
    loader: DataLoader
    val_loader: DataLoader
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: FieldScaler
    ref: list[float]  # the reference spacing (first training sample), metres
    grid: tuple[int, ...]  # (D, H, W) of a training sample
    use_amp: bool
    spacings: list[list[float]] = field(default_factory=list)  # every (dx, dy, dz) trained on, first = ref
    seed: dict[str, Any] | None = None  # the checkpoint a warm start began from (SeedStart.describe)

    def autocast(self) -> torch.autocast:
        """bf16 autocast where ``train.amp`` asks for it and the device supports it; a no-op otherwise."""
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_amp)

    def restore(self, ckpt: dict[str, Any]) -> Progress:
        """Optimiser, schedule and every generator from ``ckpt``; returns the progress it recorded."""
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        progress = Progress(
            int(ckpt["epoch"]),
            int(ckpt["step"]),
            float(ckpt["best_val_rel_l2"]),
            list(ckpt["history"]),
            float(ckpt["train_time_s"]),
        )
        set_rng_state(ckpt["rng"])
        return progress

    def checkpoint(self, progress: Progress, epoch: int) -> dict[str, Any]:
        """The checkpoint after ``epoch`` completed epochs (the layout of :mod:`fieldlab.core.checkpoint`)."""
        return {
            "model": {k: v.detach().cpu() for k, v in inner(self.model).state_dict().items()},
            "model_config": to_dict(self.cfg.model),
            "backbone": self.backbone,
            "transforms": self.scaler.to_dict(),
            "reference_spacing": list(self.ref),
            "grid": list(self.grid),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "epoch": epoch,
            "step": progress.step,
            "best_val_rel_l2": progress.best,
            "history": progress.history,
            "train_time_s": progress.elapsed,
            "rng": rng_state(),
            "config": to_dict(self.cfg),
            "train_spacings": [list(v) for v in self.spacings],
            **({"seed_checkpoint": self.seed} if self.seed else {}),
        }


@dataclass(frozen=True)
class DataPlan:
    """Which files a run trains and validates on. The reference spacing is the first training file's; with
    ``scaler`` (a warm start) the field scaling is that one, else it is fitted on the training files of the
    reference spacing."""

    train: list[Any]
    val: list[Any]
    scaler: FieldScaler | None = None


def base_plan(cfg: Config) -> DataPlan:
    """``train/`` (its first ``train.max_train_samples``) and ``val/``: the seed model's one-spacing corpus."""
    train_files = split_files(cfg.data.root, "train")
    if cfg.train.max_train_samples:
        train_files = train_files[: cfg.train.max_train_samples]
    return DataPlan(train_files, split_files(cfg.data.root, "val"))


def load_datasets(
    cfg: Config, scaler: FieldScaler | None, plan: DataPlan | None = None
) -> tuple[PotentialDataset, PotentialDataset, FieldScaler, list[float]]:
    """Train (augmented) and val datasets of ``plan`` (default :func:`base_plan`), the scaler, the reference spacing."""
    from fieldlab.potential.schema import load_sample

    plan = base_plan(cfg) if plan is None else plan
    first = load_sample(plan.train[0])
    ref = [float(s) for s in first.spacing]
    scaler = scaler or plan.scaler
    if scaler is None:
        same = [f for f in plan.train if spacing_key(load_sample(f).spacing) == spacing_key(ref)]
        scaler = FieldScaler.fit(load_sample(f) for f in same)
    kw = dataset_options(cfg, scaler, ref)
    train_ds = PotentialDataset(plan.train, **kw, augment=cfg.train.augment)
    return train_ds, PotentialDataset(plan.val, **kw), scaler, ref


def sample_spacings(ds: PotentialDataset) -> list[tuple[float, float, float]]:
    """``(dx, dy, dz)`` of every sample of ``ds`` (read from its file), in order."""
    import numpy as np

    out = []
    for f in ds.files:
        with np.load(f) as z:
            out.append(spacing_key(z["spacing"]))
    return out


def prepare_model(
    model: nn.Module, cfg: Config, device: torch.device, info: ddp.DistInfo, ckpt: dict[str, Any] | None
) -> tuple[nn.Module, int]:
    """``model`` on ``device`` with its parameter count, its weights from ``ckpt``, compiled and DDP-wrapped."""
    model = model.to(device)
    n_params = count_parameters(model)
    if ckpt:
        model.load_state_dict(ckpt["model"])
    if cfg.train.compile:
        model = torch.compile(model)
    if info.enabled:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if device.type == "cuda" else None
        )
    return model, n_params


def param_groups(model: nn.Module, cfg: Config) -> list[dict[str, Any]]:
    """The optimiser's groups: every weight at ``train.lr``, the spacing FiLM (``conditioner.*``) at
    ``train.conditioning_lr_factor`` times it when that is not 1 (a module new to a warm-started model)."""
    named = list(inner(model).named_parameters())
    film = [p for n, p in named if n.startswith("conditioner.")]
    factor = cfg.train.conditioning_lr_factor
    if not film or factor == 1.0:
        return [{"params": [p for _, p in named]}]
    rest = [p for n, p in named if not n.startswith("conditioner.")]
    return [{"params": rest}, {"params": film, "lr": cfg.train.lr * factor}]


def build_run(
    cfg: Config,
    backbone: str,
    model_factory: Callable[[ModelConfig, str], nn.Module],
    device: torch.device,
    info: ddp.DistInfo,
    generator: torch.Generator,
    ckpt: dict[str, Any] | None,
    plan: DataPlan | None = None,
    start: Callable[[nn.Module], dict[str, Any]] | None = None,
) -> TrainingRun:
    """Datasets, model, loaders, optimiser and schedule, in the order of the module docstring.

    ``generator`` (from :func:`fieldlab.core.seeding.seed_everything`) drives the loader's workers; ``ckpt``, when
    resuming, supplies the scaler and the weights (optimiser, schedule and RNG follow in :meth:`TrainingRun.restore`).
    ``plan`` chooses the files (default :func:`base_plan`); a training set of several spacings is batched one
    spacing per batch (:class:`~fieldlab.potential.data.spacing_batches.SpacingBatchSampler`). ``start``, on a fresh
    run, loads initial weights into the new model and returns what it began from (stored in every checkpoint).
    """
    scaler = FieldScaler.from_dict(ckpt["transforms"]) if ckpt else None
    train_ds, val_ds, scaler, ref = load_datasets(cfg, scaler, plan)
    grid = tuple(train_ds.sample(0).shape)
    fresh = model_factory(cfg.model, backbone)
    seed = start(fresh) if start is not None and not ckpt else (ckpt or {}).get("seed_checkpoint")
    model, n_params = prepare_model(fresh, cfg, device, info, ckpt)
    spacings = sample_spacings(train_ds)
    distinct = list(dict.fromkeys(spacings))
    common = {
        "num_workers": cfg.train.workers,
        "worker_init_fn": worker_init_fn,
        "generator": generator,
        "pin_memory": device.type == "cuda",
        "persistent_workers": cfg.train.workers > 0,
    }
    sampler: Any
    if len(distinct) == 1:
        sampler = DistributedSampler(
            train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=False
        )
        loader = DataLoader(train_ds, batch_size=cfg.train.batch_size, sampler=sampler, **common)
    else:
        sampler = SpacingBatchSampler(
            spacings, cfg.train.batch_size, seed=cfg.seed, rank=info.rank, world_size=info.world_size
        )
        loader = DataLoader(train_ds, batch_sampler=sampler, **common)
    val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=0)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sched = build_scheduler(opt, cfg.train, steps_per_epoch=len(loader))
    use_amp = cfg.train.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()
    return TrainingRun(
        cfg=cfg,
        backbone=backbone,
        device=device,
        info=info,
        model=model,
        n_params=n_params,
        sampler=sampler,
        loader=loader,
        val_loader=val_loader,
        opt=opt,
        sched=sched,
        scaler=scaler,
        ref=ref,
        grid=grid,
        use_amp=use_amp,
        spacings=[list(v) for v in distinct],
        seed=seed,
    )
