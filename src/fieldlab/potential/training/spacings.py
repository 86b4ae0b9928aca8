"""The operator across spacings: the seed model fine-tuned on base and fine limbs, every batch of one spacing.

The seed is the one-spacing model of ``spacings.backbone`` (``<log.root>/<backbone>/checkpoints/best.pt``, the
train stage's output). It is fine-tuned on the first ``spacings.base_limbs`` limbs of ``train/`` (2 mm) and the
first ``spacings.fine_limbs`` of ``train_2x/`` (the same limbs solved at 1 mm), batched one spacing per batch
(:class:`~fieldlab.potential.data.spacing_batches.SpacingBatchSampler`), with the seed's field scaling and
reference spacing, a cosine schedule from ``spacings.lr`` and the operator's loss; ``val/`` and the first
``spacings.val_fine_limbs`` of ``val_2x/`` pick the checkpoint.

``spacings.conditioning`` switches the spacing FiLM (:class:`~fieldlab.potential.models.conditioning.
SpacingConditioner`, ``model.conditioning``) on: a new module, near the identity at the start (its last layer
starts at std 0.01), the only weights the seed does not supply. Off, the same data, steps and seed train the seed
model as it is: the ablation (``bench/spacing_ablation.py``). On one spacing the FiLM cannot learn anything
(``tests/potential/test_spacing_training.py``); on two it is the only input that tells the grids apart.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from fieldlab.config import Config, to_dict
from fieldlab.core.checkpoint import load_checkpoint
from fieldlab.errors import InputError
from fieldlab.potential.data.loader import split_files
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.models.trained import seed_checkpoint
from fieldlab.potential.training.runstate import DataPlan

#: The only weights a warm start may add to the seed's: the spacing FiLM.
NEW_PREFIX = "conditioner."


def run_config(cfg: Config) -> Config:
    """The configuration the fine-tune trains with: the ``model`` section with ``spacings.conditioning`` and
    ``spacings.backbone``, the ``train`` section with the run's epochs, learning rate and a cosine schedule without
    warm-up (the seed is trained already)."""
    sp = cfg.spacings
    model = dataclasses.replace(
        cfg.model,
        backbone=sp.backbone,
        conditioning=dataclasses.replace(cfg.model.conditioning, enabled=sp.conditioning),
    )
    train = dataclasses.replace(
        cfg.train,
        epochs=sp.epochs,
        lr=sp.lr,
        min_lr_ratio=sp.min_lr_ratio,
        scheduler="cosine",
        warmup_steps=0,
        max_train_samples=0,
        conditioning_lr_factor=sp.film_lr_factor,
    )
    return dataclasses.replace(cfg, model=model, train=train)


def _first(files: list[Path], n: int, split: str, key: str) -> list[Path]:
    if n > len(files):
        raise InputError(
            f"spacings.{key} = {n}: {split}/ holds {len(files)} limbs (data.n_{split}); expected at most that"
        )
    return files[:n] if n else files


def spacings_plan(cfg: Config, scaler: FieldScaler) -> DataPlan:
    """The base and fine files of the module notes, with the seed's ``scaler``."""
    sp, root = cfg.spacings, cfg.data.root
    train = _first(split_files(root, "train"), sp.base_limbs, "train", "base_limbs")
    fine = _first(split_files(root, "train_2x"), sp.fine_limbs, "train_2x", "fine_limbs")
    val_fine = _first(split_files(root, "val_2x"), sp.val_fine_limbs, "val_2x", "val_fine_limbs")
    return DataPlan([*train, *fine], [*split_files(root, "val"), *val_fine], scaler)


def seed_start(cfg: Config, path: str | Path) -> tuple[FieldScaler, Any]:
    """The seed checkpoint's field scaling and the warm start loading its weights (:func:`~.runstate.build_run`).

    The seed must be a model of ``spacings.backbone`` whose ``model`` section is the run's in everything but the
    conditioning (the same prior, encoder and backbone settings), trained without the conditioning; otherwise an
    :class:`InputError` names the checkpoint and what differs.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no seed checkpoint; expected the train_{cfg.spacings.backbone} stage's output")
    ckpt = load_checkpoint(path, map_location="cpu")
    want = to_dict(run_config(cfg).model)
    got = dict(ckpt["model_config"])
    if ckpt["backbone"] != cfg.spacings.backbone:
        raise InputError(f"{path}: checkpoint of backbone {ckpt['backbone']!r}; expected spacings.backbone")
    if got.get("conditioning", {}).get("enabled", True):
        raise InputError(f"{path}: seed trained with model.conditioning.enabled = true; expected a seed without it")
    for key in ("prior", "encoder", cfg.spacings.backbone):  # what defines the seed's weights and inputs
        mine, theirs = dict(want.get(key, {})), dict(got.get(key, {}))
        if key == "prior":  # where the cached priors live comes from the run
            mine.pop("root", None), theirs.pop("root", None)
        if mine != theirs:
            raise InputError(f"{path}: model.{key} = {theirs!r}, the run's is {mine!r}; retrain the seed")
    ref = [float(v) for v in ckpt["reference_spacing"]]
    scaler = FieldScaler.from_dict(ckpt["transforms"])

    def start(model: nn.Module) -> dict[str, Any]:
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
        if unexpected or any(not k.startswith(NEW_PREFIX) for k in missing):
            raise InputError(f"{path}: seed weights do not fit the model (missing {missing}, unexpected {unexpected})")
        return {"path": str(path), "epoch": int(ckpt["epoch"]), "reference_spacing": ref}

    return scaler, start


def run_spacings(cfg: Config, out_dir: str | Path, metrics_json: str | Path, history_csv: str | Path) -> dict[str, Any]:
    """Fine-tune the seed across spacings (module notes); write the headline to ``metrics_json`` and the whole
    summary to ``<out_dir>/summary.json``."""
    import os

    from fieldlab.core.io import write_json
    from fieldlab.potential.training.operator import HEADLINE, OperatorTrainer

    run_cfg = run_config(cfg)
    scaler, start = seed_start(cfg, seed_checkpoint(cfg))
    plan = spacings_plan(cfg, scaler)
    trainer = OperatorTrainer(run_cfg, cfg.spacings.backbone, out_dir, history_csv, plan=plan, start=start)
    summary = trainer.fit()
    summary["conditioning"] = cfg.spacings.conditioning
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(Path(out_dir) / "summary.json", summary)
        write_json(metrics_json, {**{k: summary[k] for k in HEADLINE}, "conditioning": cfg.spacings.conditioning})
    return summary
