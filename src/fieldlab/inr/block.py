"""One iteration of the INR study: load the field window, fit (an INR, POD or both), write model, metrics, panel, log.

Shared by the ``inr_block`` DVC stage (``stages/inr_block.py``) and ``fieldlab inr-fit``. The analysis log gets one
block per run, ``key: value`` per line under a ``# inr_block <UTC time>`` header; it is a ``persist: true`` output
of the stage, so DVC keeps it between runs and the exploration loop can read its history.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from fieldlab.config import INRConfig, to_dict
from fieldlab.core.device import select_device
from fieldlab.core.io import atomic_open, write_json
from fieldlab.inr.data import FieldWindow, load_field_window
from fieldlab.inr.fit import FitResult, check_window, fit_metrics, json_safe
from fieldlab.inr.heldout import HeldoutSplit, heldout_scores, split_window
from fieldlab.inr.panel import inr_panel
from fieldlab.inr.represent import fit_representation


@dataclass(frozen=True)
class INROutputs:
    """Paths written by one fit (defaults: those declared in ``dvc.yaml``)."""

    model: Path = Path("artifacts/inr/model.pt")
    tensorboard: Path = Path("artifacts/inr/tb")
    analysis_log: Path = Path("artifacts/inr/analysis.log")
    metrics: Path = Path("metrics/inr.json")
    panel: Path = Path("plots/inr_panel.png")
    loss_csv: Path = Path("plots/inr_loss.csv")

    def under(self, root: str | Path) -> INROutputs:
        """The same layout below ``root`` instead of the repository root."""
        root = Path(root)
        return replace(self, **{k: root / v for k, v in self.__dict__.items()})


def append_analysis_log(path: str | Path, metrics: dict, cfg: INRConfig) -> None:
    """Append one block (header, then ``key: value`` per line for the config and metrics) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"# inr_block {stamp}"]
    lines += [f"inr.{k}: {v}" for k, v in to_dict(cfg).items()]
    lines += [f"{k}: {v}" for k, v in metrics.items()]
    with path.open("a") as fh:
        fh.write("\n".join(lines) + "\n\n")


def checkpoint_of(cfg: INRConfig, window: FieldWindow, result: FitResult, split: HeldoutSplit) -> dict:
    """What defines the fitted representation: its config, sizes, the network's state and scaling, the POD's
    arrays and the window positions it was fitted on."""
    checkpoint: dict = {
        "inr": to_dict(cfg),
        "n_particles": window.n_particles,
        "n_components": window.n_components,
        "mean": result.mean,
        "std": result.std,
        "fit_frames": split.fit_frames,
        "fit_particles": split.fit_particles,
    }
    if result.model is not None:
        checkpoint["state_dict"] = result.model.state_dict()
    if result.pod is not None:
        p = result.pod
        checkpoint["pod"] = {"mean": p.mean, "temporal": p.temporal, "modes": p.modes, "frames": p.frames}
    return checkpoint


def write_final_scalars(tb_dir: Path, metrics: dict) -> None:
    """The fit's final scores as TensorBoard scalars at its last step (``pod``, which does not train: step 0)."""
    from torch.utils.tensorboard import SummaryWriter

    step = int(metrics.get("total_steps") or 0)
    with SummaryWriter(str(tb_dir)) as writer:
        for key in ("final_r2", "slope", "compression_ratio", "heldout_frames_r2", "heldout_particles_r2"):
            if isinstance(metrics.get(key), float):
                writer.add_scalar(f"final/{key.removeprefix('final_')}", metrics[key], step)


def run_inr_block(cfg: INRConfig, seed: int, outputs: INROutputs | None = None, progress: bool = True) -> dict:
    """Fit ``cfg`` on ``<data_root>/<scene>/trajectory.npz`` and write every output; return the metrics.

    With ``inr.heldout_every`` or ``inr.heldout_particles`` set, the fit sees only its part of the window
    (:mod:`fieldlab.inr.heldout`) and the metrics add the scores on the held-out frames and particles.
    """
    outputs = outputs or INROutputs()
    full = load_field_window(
        Path(cfg.data_root) / cfg.scene / "trajectory.npz", cfg.field_name, cfg.frame_start, cfg.n_training_frames
    )
    check_window(cfg, full)
    window, split = split_window(cfg, full)
    check_window(cfg, window)
    device = select_device(cfg.device)
    result = fit_representation(cfg, window, seed, device, tb_dir=outputs.tensorboard, progress=progress)
    metrics = fit_metrics(cfg, window, result)
    if split.active:
        metrics |= {k: json_safe(v) if isinstance(v, float | list) else v
                    for k, v in heldout_scores(cfg, result, full, split, device).items()}  # fmt: skip
    with atomic_open(outputs.model, "wb") as fh:
        torch.save(checkpoint_of(cfg, window, result, split), fh)
    head = "rank,unexplained" if cfg.model == "pod" else "step,loss"  # pod: 1 - R2 of the fitted frames per rank
    with atomic_open(outputs.loss_csv, "w") as fh:
        fh.write(head + "\n")
        start = 1 if cfg.model == "pod" else 0
        fh.writelines(f"{k},{v:.6g}\n" for k, v in enumerate(np.asarray(result.losses), start))
    write_final_scalars(outputs.tensorboard, metrics)
    inr_panel(outputs.panel, window, result.prediction, result.losses, metrics)
    write_json(outputs.metrics, metrics)
    append_analysis_log(outputs.analysis_log, metrics, cfg)
    return metrics
