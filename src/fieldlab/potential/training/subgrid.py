"""Training of the sub-grid corrector on the fine labels (``train_2x/``, epoch chosen on ``val_2x/``).

Each fine training sample gives its coarse start (computed once, the same path as prediction), the fine channels,
the loss mask of the evaluation (:class:`~fieldlab.potential.data.loader.PotentialDataset`'s, with the training
grid's singularity radius) and the target ``(u - start) / s``. The loss is the squared relative L2 over the mask,
after the corpus gauge:

    L = sum_m (c - <c>_tissue - t)^2 / sum_m (u / s)^2

so it is the metric eval_sr reports, squared. Items go through a random exact symmetry of the box each step
(:mod:`fieldlab.potential.data.symmetry`: reflections, x <-> y, sign). An epoch is ``subgrid.steps_per_epoch`` steps
drawn from successive shuffled passes (one pass with 0), so the schedule counts the same steps whatever the number of
limbs (a learning curve compares like with like). AdamW and gradient clipping; the learning rate halves after
``subgrid.patience`` epochs without a new best validation error, and training ends after ``subgrid.stop_patience``
such epochs (or at ``subgrid.epochs``): it runs until validation stops improving, and the
checkpoint kept is the epoch with the lowest validation error. The forward pass runs at ``subgrid.precision``
(bfloat16 autocast where native: a step at 2x costs 0.27 s instead of 0.69 s on 2 cores), the loss and the weights
in float32.

No test limb is read: the fine items come from ``train_2x/`` and ``val_2x/`` only (tested by opening every file
the training opens).
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fieldlab.config import Config
from fieldlab.core.device import autocast_dtype
from fieldlab.errors import InputError
from fieldlab.potential.data.loader import PotentialDataset, split_files
from fieldlab.potential.data.subgrid_inputs import channels_of, coarse_start, fold_factor, sample_tensors, start_scale
from fieldlab.potential.data.symmetry import Symmetry, apply_symmetry, can_swap_xy
from fieldlab.potential.metrics import field_relative_l2
from fieldlab.potential.models.fold import space_to_depth
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.models.subgrid import SubgridCorrector
from fieldlab.potential.models.trained import TrainedSubgrid
from fieldlab.potential.schema import load_sample

#: Folders of the fine labels under ``data.root``.
TRAIN_SPLIT, VAL_SPLIT = "train_2x", "val_2x"


@dataclass
class FineItem:
    """One fine sample, ready to train on: its tensors (symmetry layout), loss mask and target."""

    name: str
    tensors: dict[str, torch.Tensor]  # sigma, tissue, f (current share), prior (start / s), phi (target), mask
    start_error: float  # rel L2 of the start over the mask: the coarse grid's own floor


def loss_mask_of(cfg: Config, sample: Any, reference_spacing: list[float], where: str) -> torch.Tensor:
    """The evaluation's loss mask ``(1, D, H, W)`` of a fine sample (muscle minus the poles' balls)."""
    ds = PotentialDataset(
        [],
        FieldScaler(1.0, 1.0),
        cfg.data.coord_range,
        cfg.loss.singularity_radius,
        cfg.loss.region,
        cfg.loss.muscle_sigma,
        cfg.loss.muscle_rtol,
        reference_spacing,
        cache=False,
    )
    return ds.build_item(sample, where=where)["mask"]


def fine_items(cfg: Config, split: str, limit: int = 0) -> list[FineItem]:
    """Every sample of ``data.root/<split>`` (the first ``limit``; 0: all) as a :class:`FineItem`; an empty or
    missing split is an error."""
    files = split_files(cfg.data.root, split)
    files = files[:limit] if limit > 0 else files
    if not files:
        raise InputError(
            f"{Path(cfg.data.root) / split}: no fine samples; expected data.n_train_2x and data.n_val_2x >= 1 "
            "(prepare writes them)"
        )
    items = []
    for f in files:
        s = load_sample(f)
        r = fold_factor(s.shape, cfg.data.grid)
        start = coarse_start(s, r, cfg.subgrid.start_tol, cfg.physics.solver.method)
        tissue = np.asarray(s.mask, dtype=bool)
        scale = start_scale(start, tissue)
        t = sample_tensors(s, start, scale)
        ref = [float(v) * r for v in s.spacing]
        t["mask"] = loss_mask_of(cfg, s, ref, str(f))
        t["phi"] = torch.from_numpy(((s.u - start) / scale).astype(np.float32))[None]  # the target correction
        m = t["mask"][0].numpy()
        err = field_relative_l2(start, s.u, m)
        items.append(FineItem(f"{split}/{f.name}", t, err))
    return items


def corrected(
    model: SubgridCorrector, t: dict[str, torch.Tensor], sigma_ref: float, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The item's correction ``(1, D, H, W)`` in the corpus gauge and, with an error head, its magnitude, both
    float32; the forward pass autocast to ``dtype`` (``None``: float32)."""
    x = space_to_depth(channels_of(t, sigma_ref), model.factor)
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        c, a = model.with_error(x) if model.error_head else (model.folded(x), None)
    c = c.float()[0]
    tissue = t["tissue"].to(c.dtype)
    c = c - (c * tissue).sum() / tissue.sum()  # the corpus gauge of start + s c (the start is gauged already)
    return c, None if a is None else a.float()[0]


def item_loss(
    model: SubgridCorrector, t: dict[str, torch.Tensor], sigma_ref: float, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Squared relative L2 of the corrected field over the item's mask (module notes), and with an error head its
    loss: ``sum_m (a - |c - t|)^2 / sum_m (u / s)^2`` on the magnitude ``a`` (the target detached)."""
    c, a = corrected(model, t, sigma_ref, dtype)
    m = t["mask"].to(c.dtype)
    u = t["prior"] + t["phi"]  # u / s
    norm = ((u**2) * m).sum()
    loss = ((c - t["phi"]) ** 2 * m).sum() / norm
    if a is None:
        return loss, None
    return loss, ((a - (c - t["phi"]).abs().detach()) ** 2 * m).sum() / norm


def calibrate(model: SubgridCorrector, val: list[FineItem], sigma_ref: float, dtype: torch.dtype | None) -> float:
    """The error head's calibration: the median over ``val`` of the true relative error over the head's estimate
    ``||a||_m / ||start + c||_m`` (as :func:`~fieldlab.potential.prediction.subgrid.head_estimate` computes it)."""
    ratios = []
    model.eval()
    with torch.no_grad():
        for v in val:
            t = v.tensors
            c, a = corrected(model, t, sigma_ref, dtype)
            m = t["mask"].bool()
            true = float((c - t["phi"])[m].norm() / (t["prior"] + t["phi"])[m].norm())  # the metric: over ||u||
            ratios.append(true / float(a[m].norm() / (t["prior"] + c)[m].norm()))  # type: ignore[index]
    return float(np.median(ratios))


def run_subgrid_training(
    cfg: Config, out_dir: str | Path, metrics_json: str | Path, history_csv: str | Path
) -> dict[str, Any]:
    """Train the corrector (module notes); write ``<out_dir>/checkpoints/best.pt``, ``metrics_json`` and
    ``history_csv``; return the summary."""
    from fieldlab.core.checkpoint import save_checkpoint
    from fieldlab.core.io import atomic_open, write_json
    from fieldlab.core.seeding import seed_everything

    sc = cfg.subgrid
    generator = seed_everything(cfg.seed)
    t0 = time.perf_counter()
    train = fine_items(cfg, TRAIN_SPLIT, sc.max_train_samples)
    val = fine_items(cfg, VAL_SPLIT)
    prepare_s = time.perf_counter() - t0
    factor = fold_factor(tuple(train[0].tensors["tissue"].shape[1:]), cfg.data.grid)
    model = SubgridCorrector(factor, sc.base, sc.depth, sc.groups, sc.error_head)
    dtype = autocast_dtype(sc.precision, "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=sc.lr, weight_decay=sc.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=sc.patience - 1, threshold=0.0)

    def validate() -> float:
        model.eval()
        with torch.no_grad():
            err = float(np.mean([math.sqrt(float(item_loss(model, v.tensors, sc.sigma_ref, dtype)[0])) for v in val]))
        model.train()
        return err

    steps = sc.steps_per_epoch or len(train)
    queue: list[int] = []

    def order(n: int) -> list[int]:
        """The next ``n`` items: successive shuffled passes over the training limbs."""
        while len(queue) < n:
            queue.extend(torch.randperm(len(train), generator=generator).tolist())
        taken = queue[:n]
        del queue[:n]
        return taken

    best, best_state, best_epoch, history = math.inf, None, 0, []
    for epoch in range(1, sc.epochs + 1):
        e0, losses = time.perf_counter(), []
        for i in order(steps):
            t = train[i].tensors
            if sc.augment:
                t = apply_symmetry(t, Symmetry.random(allow_swap=can_swap_xy(t), generator=generator))
            loss, head_loss = item_loss(model, t, sc.sigma_ref, dtype)
            opt.zero_grad(set_to_none=True)
            (loss if head_loss is None else loss + head_loss).backward()
            if sc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), sc.grad_clip)
            opt.step()
            losses.append(math.sqrt(float(loss.detach())))
        lr = opt.param_groups[0]["lr"]
        val_err = validate()
        sched.step(val_err)
        history.append(
            {"epoch": epoch, "train_rel_l2": float(np.mean(losses)), "val_rel_l2": val_err, "lr": lr,
             "seconds": time.perf_counter() - e0}
        )  # fmt: skip
        print(f"subgrid epoch {epoch}/{sc.epochs}: train {history[-1]['train_rel_l2']:.5f} val {val_err:.5f}")
        if val_err < best:
            best, best_epoch = val_err, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if epoch - best_epoch >= sc.stop_patience:
            print(f"subgrid: no better validation error for {sc.stop_patience} epochs; training ends")
            break
    model.load_state_dict(best_state)  # type: ignore[arg-type]
    scale = calibrate(model, val, sc.sigma_ref, dtype) if sc.error_head else None
    trained = TrainedSubgrid(model, cfg.data.grid, sc.start_tol, sc.sigma_ref, best_epoch, estimate_scale=scale)
    save_checkpoint(Path(out_dir) / "checkpoints" / "best.pt", trained.checkpoint())
    summary = {
        "best_val_rel_l2": best,
        "best_epoch": best_epoch,
        "val_start_rel_l2": float(np.mean([v.start_error for v in val])),
        "estimate_scale": scale,
        "epochs_run": len(history),
        "stopped_early": len(history) < sc.epochs,
        "precision": "float32" if dtype is None else "bfloat16",
        "train_samples": len(train),
        "val_samples": len(val),
        "factor": factor,
        "parameters": sum(p.numel() for p in model.parameters()),
        "prepare_s": prepare_s,
        "train_time_s": float(sum(h["seconds"] for h in history)),
    }
    write_json(metrics_json, summary)
    with atomic_open(history_csv, "w") as fh:
        w = csv.DictWriter(fh, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    return summary
