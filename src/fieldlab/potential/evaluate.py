"""Zero-shot super-resolution evaluation: one trained checkpoint on the test split at base and at 2x.

For every test sample the error is measured in the loss mask (muscle minus the source balls, the same physical
region at both resolutions) and over the whole tissue:

    rel_l2 = ||phi_pred - phi||_mask / ||phi||_mask,      mse = mean_mask (phi_pred - phi)^2   (scaled units)

and the headline ratio is ``ratio_x2_base = mean rel_l2 at 2x / mean rel_l2 at base``. A UNet's voxel kernels do
not transfer across resolutions, so for it the 2x split is also evaluated the honest way
(``predict_restricted``: restrict the inputs to the training grid, predict, interpolate back), reported as
``x2_restricted``. The surrogate's wall time per sample is compared with the solver's (from the corpus manifest).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fieldlab.config import Config, ModelConfig, config_from_dict
from fieldlab.core.checkpoint import load_checkpoint
from fieldlab.core.device import select_device
from fieldlab.errors import InputError
from fieldlab.potential import metrics
from fieldlab.potential.data.loader import PotentialDataset, dataset_options, split_files
from fieldlab.potential.data.transforms import FieldScaler

MEASURES = ("rel_l2", "rel_l2_tissue", "mse", "r2", "max_error")


def checkpoint_model_config(ckpt: dict[str, Any], path: str | Path) -> ModelConfig:
    """The ``model`` section a checkpoint was trained with (validated like params.yaml)."""
    return config_from_dict({"model": ckpt["model_config"]}, source=f"{path}: model_config").model


def load_trained(path: str | Path, device: torch.device, model_factory=None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint (its own ``model`` section) and load its weights."""
    ckpt = load_checkpoint(path, map_location="cpu")
    model_cfg = checkpoint_model_config(ckpt, path)
    if model_factory is None:
        from fieldlab.potential.train import default_model_factory as model_factory
    model = model_factory(model_cfg, ckpt["backbone"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def solver_seconds(root: str | Path, split: str) -> dict[str, float]:
    """Per-sample solve time (s) of ``split`` from ``root/manifest.json``; empty when the manifest has none.

    The manifest written by the prepare stage lists ``samples`` as records with ``split``, ``file``
    (``<split>/NNNN.npz``) and ``solver_seconds``; a user-supplied (raw) corpus may have no timings.
    """
    path = Path(root) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise InputError(f"{path}: not valid JSON") from None
    out: dict[str, float] = {}
    for record in manifest.get("samples", []) if isinstance(manifest.get("samples"), list) else []:
        if isinstance(record, dict) and record.get("split") == split and "solver_seconds" in record:
            out[Path(str(record.get("file", ""))).stem] = float(record["solver_seconds"])
    return out


def _summary(rows: dict[str, dict[str, float]], seconds: dict[str, float]) -> dict[str, Any]:
    names = [m for m in (*MEASURES, "prior_rel_l2") if all(m in r for r in rows.values())]
    out: dict[str, Any] = {m: float(np.mean([r[m] for r in rows.values()])) for m in names}
    out["seconds_per_sample"] = float(np.mean(list(seconds.values())))
    keep = [m for m in ("rel_l2", "rel_l2_tissue", "mse", "prior_rel_l2") if m in names]
    out["per_sample"] = {m: {name: r[m] for name, r in rows.items()} for m in keep}
    return out


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    dataset: PotentialDataset,
    device: torch.device,
    restricted_grid: tuple[int, int, int] | None = None,
    figures_dir: Path | None = None,
    n_figures: int = 0,
    tag: str = "",
    repeats: int = 1,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Errors per sample and the surrogate's seconds per sample.

    The time is the median of ``repeats`` forward passes (synchronised on CUDA), after one untimed warm-up pass
    on the first sample (lazy initialisation, allocator growth).
    """
    rows: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    for i in range(len(dataset)):
        item = {k: v[None].to(device) for k, v in dataset[i].items()}  # add the batch axis
        name = dataset.files[i].stem
        args = (item["sigma"], item["f"], item["coords"], item["spacing"])
        prior = item.get("prior")

        def forward(args=args, prior=prior):
            if restricted_grid:
                return model.predict_restricted(*args, grid=restricted_grid, prior=prior)
            return model(*args, prior=prior)

        if i == 0:
            forward()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            pred = forward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        seconds[name] = float(np.median(times))
        pred = pred.float()
        phi, mask, tissue = item["phi"], item["mask"], item["tissue"]
        rows[name] = {
            "rel_l2": float(metrics.relative_l2(pred, phi, mask)[0]),
            "rel_l2_tissue": float(metrics.relative_l2(pred, phi, tissue)[0]),
            "mse": float(metrics.masked_mse(pred, phi, mask)[0]),
            "r2": float(metrics.r2_score(pred, phi, mask)[0]),
            "max_error": float(metrics.max_error(pred, phi, mask)[0]),
        }
        if prior is not None:  # the analytic prior alone: the baseline the operator has to beat
            rows[name]["prior_rel_l2"] = float(metrics.relative_l2(prior.float(), phi, mask)[0])
        if figures_dir is not None and i < n_figures:
            from fieldlab.potential.figures import error_map_figure, save_figure

            centre = dataset.sample(i).source_index[0]
            fig = error_map_figure(
                phi[0, 0].cpu().numpy(),
                pred[0, 0].cpu().numpy(),
                mask[0, 0].cpu().numpy(),
                centre=centre,
                title=f"{tag} {name}: rel L2 {rows[name]['rel_l2']:.3f}",
            )
            save_figure(fig, str(figures_dir / f"{tag}_{name}.png"))
    return rows, seconds


def evaluate_sr(
    cfg: Config,
    checkpoint: str | Path,
    figures_dir: str | Path | None = None,
    model_factory=None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``eval.splits`` (base, 2x) of ``data.root``; return the ``eval_sr.json`` dict."""
    device = select_device(cfg.device)
    model, ckpt = load_trained(checkpoint, device, model_factory)
    scaler = FieldScaler.from_dict(ckpt["transforms"])
    figures = None if figures_dir is None else Path(figures_dir)
    prior = checkpoint_model_config(ckpt, checkpoint).prior  # the inputs the trained model expects
    kw = {**dataset_options(cfg, scaler, ckpt["reference_spacing"], prior), "cache": False}
    backbone = ckpt["backbone"]
    out: dict[str, Any] = {"backbone": backbone, "checkpoint_epoch": int(ckpt["epoch"])}
    timing: dict[str, Any] = {}
    for key, split in zip(("base", "x2"), cfg.eval.splits, strict=True):
        ds = PotentialDataset(split_files(cfg.data.root, split), **kw)
        n_fig, reps = cfg.eval.figures, cfg.eval.timing_repeats
        rows, seconds = evaluate_split(model, ds, device, None, figures, n_fig, f"{backbone}_{key}", reps)
        out[key] = _summary(rows, seconds)
        solver = solver_seconds(cfg.data.root, split)
        shared = [n for n in seconds if n in solver]
        if shared:
            s_model = float(np.mean([seconds[n] for n in shared]))
            s_solver = float(np.mean([solver[n] for n in shared]))
            timing[key] = {"surrogate_s": s_model, "solver_s": s_solver, "speedup": s_solver / s_model}
        if key == "x2" and backbone == "unet":
            grid = tuple(int(g) for g in ckpt["grid"])
            rows_r, seconds_r = evaluate_split(model, ds, device, grid, figures, n_fig, f"{backbone}_x2r", reps)
            out["x2_restricted"] = _summary(rows_r, seconds_r)
    out["ratio_x2_base"] = out["x2"]["rel_l2"] / out["base"]["rel_l2"]
    if "x2_restricted" in out:
        out["ratio_x2_restricted_base"] = out["x2_restricted"]["rel_l2"] / out["base"]["rel_l2"]
    out["timing"] = timing
    out["device"] = str(device)
    return out


def run_eval(cfg: Config, checkpoint: str | Path, metrics_json: str | Path, figures_dir: str | Path) -> dict[str, Any]:
    """:func:`evaluate_sr`, then write ``metrics_json``; figures go to ``figures_dir`` (emptied first)."""
    import shutil

    from fieldlab.core.io import write_json

    figures = Path(figures_dir)
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir(parents=True)
    result = evaluate_sr(cfg, checkpoint, figures)
    write_json(metrics_json, result)
    return result
