"""What an operator training run records: TensorBoard scalars and error maps, the history CSV, the hparams table.

Only rank 0 keeps a :class:`RunLog`. Per optimiser step (every ``log.norms_every``): the global gradient and
parameter norms, the step loss and the learning rate; per epoch: train/val loss, validation relative L2 and R2, and
(every ``log.vis_every`` and at the last epoch) the error map of the first validation sample.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from fieldlab.config import Config, to_dict
from fieldlab.core.io import atomic_open

HISTORY_FIELDS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_rel_l2", "val_r2", "epoch_time_s")


def write_history_csv(path: Path, history: list[dict[str, float]]) -> None:
    """The per-epoch history as CSV (a DVC plot), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in HISTORY_FIELDS})
    with atomic_open(path, "w") as fh:
        fh.write(buf.getvalue())


def flat_hparams(cfg: Config, backbone: str) -> dict[str, Any]:
    """The ``train``, ``loss`` and ``model.<backbone>`` settings as one flat dict (TensorBoard's hparams table)."""
    out: dict[str, Any] = {"backbone": backbone, "seed": cfg.seed}
    for section in ("train", "loss"):
        for k, v in to_dict(getattr(cfg, section)).items():
            out[f"{section}.{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    model = to_dict(cfg.model)
    for k, v in model.get(backbone, {}).items() if isinstance(model.get(backbone), dict) else []:
        out[f"model.{backbone}.{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return out


class RunLog:
    """The TensorBoard events of one run under ``out_dir/tensorboard``.

    Parameters
    ----------
    out_dir
        The run folder (``experiments/<backbone>``).
    cfg
        The resolved configuration: ``log`` sets the cadences, ``train.epochs`` the last epoch.
    backbone
        ``"unet"`` or ``"fno"``, named in the text summary and figure titles.
    purge_step
        On resume, the global step of the checkpoint: events written after it by the killed run are dropped.
        ``None`` starts a fresh log and records the configuration and model size as text.
    """

    def __init__(self, out_dir: Path, cfg: Config, backbone: str, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.cfg = cfg
        self.backbone = backbone
        self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"), purge_step=purge_step)

    def describe_run(self, n_params: int, grid: tuple[int, ...]) -> None:
        """The configuration (YAML) and the model's size and grid, as text at step 0."""
        text = yaml.safe_dump(to_dict(self.cfg), sort_keys=False)
        self.writer.add_text("config", "```yaml\n" + text + "```", global_step=0)
        self.writer.add_text("model", f"backbone {self.backbone}, {n_params} parameters, grid {grid}", 0)

    def log_step(self, step: int, model: nn.Module, grad_norm: float, loss: float, lr: float) -> None:
        """Norms, loss and learning rate after global step ``step``, every ``log.norms_every`` steps."""
        if step % self.cfg.log.norms_every != 0:
            return
        norms = torch.stack([torch.linalg.vector_norm(p.detach()) for p in model.parameters()])
        param_norm = float(torch.linalg.vector_norm(norms))
        self.writer.add_scalar("norms/grad", grad_norm, step)
        self.writer.add_scalar("norms/param", param_norm, step)
        self.writer.add_scalar("train/loss_step", loss, step)
        self.writer.add_scalar("train/lr", lr, step)

    def log_epoch(self, row: dict[str, float], first: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """One history ``row`` (1-based ``epoch``) and the error map of ``first`` = (truth, prediction, mask)."""
        epoch = row["epoch"]
        for key in ("train_loss", "val_loss"):
            self.writer.add_scalar(f"loss/{key.split('_')[0]}", row[key], epoch)
        self.writer.add_scalar("val/rel_l2", row["val_rel_l2"], epoch)
        self.writer.add_scalar("val/r2", row["val_r2"], epoch)
        if epoch % self.cfg.log.vis_every == 0 or epoch == self.cfg.train.epochs:
            from fieldlab.potential.figures import error_map_figure

            truth, pred, mask = first
            title = f"{self.backbone}, val sample 0, epoch {epoch}"
            self.writer.add_figure("val/error_map", error_map_figure(truth, pred, mask, title=title), epoch, close=True)
        self.writer.flush()

    def close(self, best_val_rel_l2: float, n_params: int) -> None:
        """The hparams table with the run's best validation relative L2 and size, then close the event file."""
        self.writer.add_hparams(
            flat_hparams(self.cfg, self.backbone),
            {"hparam/best_val_rel_l2": best_val_rel_l2, "hparam/params": float(n_params)},
            run_name="hparams",
        )
        self.writer.close()
