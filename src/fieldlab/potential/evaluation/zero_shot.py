"""Zero-shot super-resolution evaluation: one trained checkpoint on the test split at base and at 2x.

For every test sample the error is measured in the loss mask (muscle minus the source balls, the same physical
region at both resolutions) and over the whole tissue:

    rel_l2 = ||phi_pred - phi||_mask / ||phi||_mask,      mse = mean_mask (phi_pred - phi)^2   (scaled units)

and the headline ratio is ``ratio_x2_base = mean rel_l2 at 2x / mean rel_l2 at base``. A UNet's voxel kernels do
not transfer across resolutions, so the 2x split is also evaluated the honest way for every backbone
(``predict_restricted``: restrict the inputs to the training grid, predict, interpolate the correction back and add
the 2x prior), reported as ``x2_restricted``. The surrogate's time per sample includes its prior
(:func:`~.baselines.prior_seconds`) and is set beside the full solve's (from the corpus manifest) and beside the
classical front: the same limbs solved by the FEM on coarser grids (``eval.baseline_spacings_m``; at 2x also the
base grid), scored on the same mask (:func:`~.baselines.classical_front`). With ``data.n_ood > 0`` the
out-of-distribution split (limbs outside the training ranges, ``physics.ood``) is scored at the base grid too:
``ood`` (per shift as well; the classical front on it under ``baselines.<name>.ood``) and ``ratio_ood_base``;
``estimate_base_ood`` rates the error estimate over the in- and out-of-distribution samples together.

The hybrid (``eval.refine_sweeps > 0``): the operator's prediction followed by that many symmetric Gauss-Seidel sweeps
of the sample's own FEM system (:mod:`~fieldlab.potential.prediction.sweeps`), scored as ``base_refined``,
``ood_refined`` and, at 2x, ``x2_restricted_refined`` (the operator on the training grid, swept on the sample restricted
to it, prolonged as a Q1 field); its seconds include the assembly and the sweeps. Its classical twin, the coarse_fem
prior followed by ``k`` sweeps for each ``k`` of ``eval.twogrid_sweeps`` (coarse solve, fine smoothing, no coarse-grid
correction), joins the front as ``baselines.coarse_<N>mm_sgs<k>``. The strongest classical rival, the sample's own
system solved by multigrid-CG and stopped after ``k`` iterations (``eval.rival_iterations``, each preconditioner of
``eval.rival_methods``, at 2x of ``eval.rival_methods_x2``, cold and warm-started from the model's prior), joins it as
``baselines.cg_<method>[_warm]_k<k>`` (:mod:`~fieldlab.potential.evaluation.classical.cg`), at base on the base system
and at 2x on the 2x sample's own system; beside it the true two-grid cycle (smoothing, Galerkin coarse-grid correction
on ``eval.twogrid_coarse_m``, smoothing; ``baselines.twogrid_<N>mm[_warm]_v<c>``,
:mod:`~fieldlab.potential.evaluation.classical.twogrid`) and, at 2x, multigrid-CG on the sample restricted to the
training grid and prolonged (``baselines.cg_gmg_r<N>mm_k<k>``). Every point carries the measured run-to-run spread of
its seconds (``seconds_spread``); ``front`` lists, per split, the points no other point matches within that spread
(:func:`~fieldlab.potential.evaluation.front.front_members`).

With ``subgrid.enabled`` the sub-grid corrector (:mod:`fieldlab.potential.prediction.subgrid`) is scored at 2x
(``x2_subgrid``; on the ood limbs at 2x, ``ood_x2_subgrid``), its coarse start alone joins the baselines
(``restricted_pv_<N>mm``), and it is the default predictor at 2x.

``metrics/eval_sr.json`` holds the headline numbers (``dvc metrics show``); every per-sample value (all measures,
forward and prior seconds) goes to ``per_sample.json`` beside the figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fieldlab.config import Config
from fieldlab.core.device import select_device
from fieldlab.errors import InputError
from fieldlab.potential import metrics
from fieldlab.potential.data.loader import PotentialDataset, dataset_options, split_files
from fieldlab.potential.evaluation.classical.baselines import base_spacing
from fieldlab.potential.evaluation.front import default_points, replaced_default, split_fronts, spread
from fieldlab.potential.evaluation.rivals import (
    prior_cost,
    read_rivals,
    rival_splits,
    split_front,
    split_rivals,
    twogrid_prefix,
    yardstick_check,
)
from fieldlab.potential.evaluation.subgrid import subgrid_split
from fieldlab.potential.evaluation.summary import (
    defined_everywhere,
    estimate_quality,
    front_point,
    ood_shifts,
    ood_summary,
    solver_seconds,
    summarise,
)
from fieldlab.potential.models.trained import (
    checkpoint_model_config,
    evaluation_inputs,
    load_subgrid,
    load_trained,
    run_prior,
    subgrid_checkpoint,
)
from fieldlab.potential.physics.fem.estimate import estimate_error
from fieldlab.potential.prediction.classical import classical_route
from fieldlab.potential.prediction.default import predict_default
from fieldlab.potential.prediction.subgrid import NAME as SUBGRID_NAME
from fieldlab.potential.prediction.sweeps import Refiner, refine_prior, timed


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
    prior_cost: Callable[[int], float] | None = None,
    estimate: bool = False,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Errors per sample and the surrogate's seconds per sample, its prior included.

    The forward time is the median of ``repeats`` forward passes (synchronised on CUDA), after one untimed warm-up
    pass on the first sample (lazy initialisation, allocator growth); ``prior_cost(i)`` adds what the prior of
    sample ``i`` costs (the coarse solve, or the analytic prior). ``estimate`` adds the error estimate of every
    prediction (:func:`~fieldlab.potential.physics.fem.estimate.estimate_error`) and its cost.
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
        forward_s = float(np.median(times))
        prior_s = prior_cost(i) if prior_cost is not None else 0.0
        forward_spread = spread([t + prior_s for t in times])
        seconds[name] = forward_s + prior_s
        pred = pred.float()
        phi, mask, tissue = item["phi"], item["mask"], item["tissue"]
        rows[name] = {
            "rel_l2": float(metrics.relative_l2(pred, phi, mask)[0]),
            "rel_l2_tissue": float(metrics.relative_l2(pred, phi, tissue)[0]),
            "mse": float(metrics.masked_mse(pred, phi, mask)[0]),
            "r2": float(metrics.r2_score(pred, phi, mask)[0]),
            "max_error": float(metrics.max_error(pred, phi, mask)[0]),
            "forward_seconds": forward_s,
            "prior_seconds": prior_s,
            "seconds_spread": forward_spread,
        }
        if estimate:  # the a-posteriori estimate of the prediction's error, from the sample's own FEM system
            s = dataset.sample(i)
            volts = dataset.scaler.unscale_potential(pred)[0, 0].cpu().numpy().astype(np.float64)
            est = estimate_error(volts, s.sigma, s.source, tuple(s.spacing), mask[0, 0].cpu().numpy().astype(bool))
            rows[name].update(estimate_rel_l2=est.rel_l2, estimate_seconds=est.seconds)
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


def refined_split(
    model: nn.Module,
    dataset: PotentialDataset,
    device: torch.device,
    sweeps: int,
    twogrid: tuple[int, ...] = (),
    restricted_grid: tuple[int, int, int] | None = None,
    prior_cost: Callable[[int], float] | None = None,
    repeats: int = 1,
) -> dict[str, tuple[dict[str, dict[str, float]], dict[str, float]]]:
    """The hybrid: the operator followed by ``sweeps`` sweeps of each sample's own FEM system
    (:mod:`fieldlab.potential.prediction.sweeps`), and, for a model with a prior, the classical two-grid baseline: the
    prior followed by ``k`` sweeps for each ``k`` of ``twogrid``.

    With ``restricted_grid`` (2x) the operator predicts on that grid (``predict_coarse``), the sweeps run on the
    sample restricted to it and the result is prolonged as a Q1 field
    (:class:`~fieldlab.potential.prediction.sweeps.Refiner`). Returns ``{"refined": (rows, seconds), "twogrid_<k>":
    (rows, seconds), ...}`` as :func:`evaluate_split`; the
    seconds include the prior, the forward pass, the restriction, the assembly and the sweeps.
    """
    scaler = dataset.scaler
    out: dict[str, tuple[dict[str, dict[str, float]], dict[str, float]]] = {}
    for i in range(len(dataset)):
        item = {k: v[None].to(device) for k, v in dataset[i].items()}  # add the batch axis
        name, sample = dataset.files[i].stem, dataset.sample(i)
        prior = item.get("prior")
        prior_s = prior_cost(i) if prior_cost is not None else 0.0

        def refiner(k: int, sample=sample) -> Refiner:
            return Refiner.for_sample(sample, k, scaler.unscale_potential, scaler.scale_potential, restricted_grid)

        def hybrid(item=item, sample=sample) -> torch.Tensor:  # the default predictor's own path
            return predict_default(model, item, sample, scaler, sweeps, restricted_grid)

        runs: list[tuple[str, Callable[[], torch.Tensor]]] = [("refined", hybrid)]
        preds: dict[str, torch.Tensor] = {}
        if prior is not None:
            g = restricted_grid
            runs += [(f"twogrid_{k}", lambda k=k, p=prior, g=g: refine_prior(p, refiner(k), g)) for k in twogrid]
        if i == 0:
            hybrid()  # untimed warm-up, as evaluate_split
        times: dict[str, list[float]] = {key: [] for key, _ in runs}
        for _ in range(max(1, repeats)):  # every variant once per round, rounds interleaved
            for key, run in runs:
                pred_k, spent = timed(run)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[key].append(spent)
                preds[key] = pred_k
        for key, _ in runs:
            pred, spent = preds[key], float(np.median(times[key]))
            rows, seconds = out.setdefault(key, ({}, {}))
            pred = pred.float()
            phi, mask = item["phi"], item["mask"]
            rows[name] = {
                "rel_l2": float(metrics.relative_l2(pred, phi, mask)[0]),
                "r2": float(metrics.r2_score(pred, phi, mask)[0]),
                "max_error": float(metrics.max_error(pred, phi, mask)[0]),
                "seconds": spent + prior_s,
                "seconds_spread": spread([t + prior_s for t in times[key]]),
            }
            seconds[name] = spent + prior_s
    return out


def evaluate_sr(
    cfg: Config,
    checkpoint: str | Path,
    figures_dir: str | Path | None = None,
    model_factory=None,
    backbone: str | None = None,
    with_front: bool = True,
    rivals_file: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``eval.splits`` (base, 2x) of ``data.root``; return the ``eval_sr.json`` dict.

    ``with_front=False`` skips the classical front (a caller that compares several checkpoints computes it once).
    With ``rivals_file`` (the eval_rivals stage's output) the classical rivals and front are read from it, checked
    against this run (:func:`~.rivals.read_rivals`), and one yardstick is re-timed here (``timing_check``).

    ``backbone``, when given, must be the checkpoint's (see :func:`load_trained`).
    """
    device = select_device(cfg.device)
    model, ckpt = load_trained(checkpoint, device, model_factory, backbone)
    scaler, ref, train_grid = evaluation_inputs(ckpt, checkpoint)
    figures = None if figures_dir is None else Path(figures_dir)
    # the inputs the trained model expects (kind, spacing, core), read from where this run keeps its priors
    prior = run_prior(checkpoint_model_config(ckpt, checkpoint).prior, cfg)
    kw = {**dataset_options(cfg, scaler, ref, prior), "cache": False}
    backbone = ckpt["backbone"]
    out: dict[str, Any] = {"backbone": backbone, "checkpoint_epoch": int(ckpt["epoch"])}
    samples: dict[str, Any] = {}
    solver: dict[str, float] = {}
    front: dict[str, dict[str, Any]] = {}
    n_fig, reps, est = cfg.eval.figures, cfg.eval.timing_repeats, cfg.eval.error_estimate
    sweeps, twogrid = cfg.eval.refine_sweeps, cfg.eval.twogrid_sweeps
    twogrid_name = twogrid_prefix(prior)
    twogrid_front: dict[str, dict[str, Any]] = {}
    subgrid = load_subgrid(subgrid_checkpoint(cfg), device, cfg.subgrid.precision) if cfg.subgrid.enabled else None
    plain = {**kw, "prior_cache": None, "prior_core_m": None}  # the corrector takes no prior: masks only
    rivals = None
    if rivals_file is not None:
        names = {k: [f.name for f in split_files(cfg.data.root, s)] for k, s in rival_splits(cfg).items()}
        rivals = read_rivals(rivals_file, prior, names, cfg, [float(v) for v in ref])
    checks: dict[str, Any] = {}

    def corrected(files: list[Path], tag: str) -> None:
        """``<tag>_subgrid``: the sub-grid corrector on the fine ``files`` (median of ``eval.rival_repeats``)."""
        fine = PotentialDataset(files, **plain)
        rows_s, seconds_s = subgrid_split(subgrid, fine, cfg.eval.rival_repeats, est, device)  # type: ignore[arg-type]
        summary = summarise(rows_s, seconds_s)
        summary["start_rel_l2"] = float(np.mean([r["start_rel_l2"] for r in rows_s.values()]))
        out[f"{tag}_subgrid"], samples[f"{tag}_subgrid"] = summary, rows_s
        if tag == "x2":  # its start alone is a classical point: the restricted system with partial-volume cells
            start_rows = {
                n: {"rel_l2": r["start_rel_l2"], "seconds_spread": r["start_spread"]} for n, r in rows_s.items()
            }
            point = front_point(start_rows, {n: r["start_seconds"] for n, r in rows_s.items()})
            twogrid_front.setdefault(f"restricted_pv_{base_spacing(cfg) * 1e3:g}mm", {})["x2"] = point

    def refined(
        ds: PotentialDataset, key: str, cost: Callable[[int], float], grid: tuple[int, int, int] | None
    ) -> None:
        """``<key>_refined`` (x2: ``x2_restricted_refined``) and the two-grid twins' points of split ``key``."""
        runs = refined_split(model, ds, device, sweeps, twogrid, grid, cost, reps)
        rows, seconds = runs.pop("refined")
        tag = "x2_restricted" if key == "x2" else key
        out[f"{tag}_refined"], samples[f"{tag}_refined"] = summarise(rows, seconds), rows
        for name, (rows_t, seconds_t) in runs.items():
            twogrid_front.setdefault(twogrid_name + name.removeprefix("twogrid_"), {})[key] = front_point(
                rows_t, seconds_t
            )

    for key, split in zip(("base", "x2"), cfg.eval.splits, strict=True):
        ds = PotentialDataset(split_files(cfg.data.root, split), **kw)
        cost = prior_cost(ds, prior, cfg)
        rows, seconds = evaluate_split(model, ds, device, None, figures, n_fig, f"{backbone}_{key}", reps, cost, est)
        out[key], samples[key] = summarise(rows, seconds), rows
        timed = solver_seconds(cfg.data.root, split)
        if timed and all(n in timed for n in rows):
            solver[key] = float(np.mean([timed[n] for n in rows]))
            for n in rows:
                rows[n]["solver_seconds"] = timed[n]
        if key == "x2":  # also the honest way: predict on the training grid, interpolate the correction
            rows_r, seconds_r = evaluate_split(
                model, ds, device, train_grid, figures, n_fig, f"{backbone}_x2r", reps, cost
            )
            out["x2_restricted"], samples["x2_restricted"] = summarise(rows_r, seconds_r), rows_r
        if sweeps:  # the hybrid with the solver's sweeps (at 2x through the training grid) and its classical twin
            refined(ds, key, cost, train_grid if key == "x2" else None)
        if key == "x2" and subgrid is not None:  # fine accuracy from the coarse solve and the fine arrays
            corrected(ds.files, "x2")
        if rivals is not None:  # the cached rivals: one yardstick re-timed in this process
            checks[key] = yardstick_check(cfg, ds, key, rivals["baselines"])
            continue
        if with_front:
            for name, point in split_front(cfg, ds, key).items():
                front.setdefault(name, {})[key] = point
        for name, point in split_rivals(cfg, ds, cost).items():  # the solver used well, model-independent
            twogrid_front.setdefault(name, {})[key] = point
    if cfg.data.n_ood > 0:  # the out-of-distribution split, at the base grid
        ds = PotentialDataset(split_files(cfg.data.root, "ood"), **kw)
        cost = prior_cost(ds, prior, cfg)
        rows, seconds = evaluate_split(model, ds, device, None, figures, n_fig, f"{backbone}_ood", reps, cost, est)
        out["ood"], samples["ood"] = ood_summary(rows, seconds, ood_shifts(cfg.data.root)), rows
        if sweeps:
            refined(ds, "ood", cost, None)
        if with_front and rivals is None:  # the FEM on coarser grids does not care whether a limb is ood
            for name, point in split_front(cfg, ds, "ood").items():
                front.setdefault(name, {})["ood"] = point
        out["ratio_ood_base"] = out["ood"]["rel_l2"] / out["base"]["rel_l2"]
        fine_ood = sorted((Path(cfg.data.root) / "ood_2x").glob("*.npz"))  # data.ood_2x (optional)
        if subgrid is not None and fine_ood and "x2_subgrid" in out:  # the ood limbs at 2x
            corrected(fine_ood, "ood_x2")
            out["ratio_ood_x2_subgrid"] = out["ood_x2_subgrid"]["rel_l2"] / out["x2_subgrid"]["rel_l2"]
        if defined_everywhere(rows, "estimate_rel_l2") and defined_everywhere(samples["base"], "estimate_rel_l2"):
            out["estimate_base_ood"] = estimate_quality([*samples["base"].values(), *rows.values()])
    out["ratio_x2_base"] = out["x2"]["rel_l2"] / out["base"]["rel_l2"]
    if "x2_restricted" in out:
        out["ratio_x2_restricted_base"] = out["x2_restricted"]["rel_l2"] / out["base"]["rel_l2"]
    if solver:
        out["solver_seconds"] = solver
    if sweeps:
        out["refine_sweeps"] = sweeps
    for name, points in (rivals or {}).get("baselines", {}).items():
        front.setdefault(name, {}).update(points)
    if checks:
        out["timing_check"] = checks
    front.update(twogrid_front)  # model-independent given the prior: kept even without the front
    if front:
        out["baselines"] = front
    out["front"] = split_fronts(out)
    out["default"] = default_points(out, backbone, prior.kind, sweeps)
    if "x2_subgrid" in out:  # subgrid.enabled: the corrector, unless a classical route clearly dominates it
        routes = lambda n: classical_route(n) is not None  # noqa: E731
        out["default"]["x2"] = replaced_default(out, "x2", "x2_subgrid", SUBGRID_NAME, routes)
    if cfg.spacings.enabled:  # the operator across spacings at every resolution, seen and unseen
        out["resolutions"] = spacing_resolutions(cfg, device)
    out["samples"] = samples
    return out


def spacing_resolutions(cfg: Config, device: torch.device) -> dict[str, Any]:
    """``resolutions``: the model of ``train_spacings`` and its one-spacing seed at every resolution of the corpus
    (:mod:`~fieldlab.potential.evaluation.resolutions`), on the spacings model's scaling, masks and priors."""
    from fieldlab.potential.evaluation.resolutions import evaluate_resolutions
    from fieldlab.potential.models.trained import seed_checkpoint

    path = Path(cfg.spacings.root) / "checkpoints" / "best.pt"
    model, ckpt = load_trained(path, device, backbone=cfg.spacings.backbone)
    seed_model, seed_ckpt = load_trained(seed_checkpoint(cfg), device, backbone=cfg.spacings.backbone)
    if seed_ckpt["transforms"] != ckpt["transforms"]:
        raise InputError(f"{path}: field scaling differs from its seed {seed_checkpoint(cfg)}; rerun train_spacings")
    scaler, ref, _ = evaluation_inputs(ckpt, path)
    prior = run_prior(checkpoint_model_config(ckpt, path).prior, cfg)
    kw = {**dataset_options(cfg, scaler, ref, prior), "cache": False}

    def dataset(files: list[Path]) -> PotentialDataset:
        return PotentialDataset(files, **kw)

    return evaluate_resolutions(cfg, model, seed_model, ckpt, dataset, lambda ds: prior_cost(ds, prior, cfg))


def run_eval(
    cfg: Config,
    checkpoint: str | Path,
    metrics_json: str | Path,
    figures_dir: str | Path,
    backbone: str | None = None,
    rivals_file: str | Path | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_sr`, then write ``metrics_json``; figures, ``per_sample.json`` and the accuracy-time front
    (``front_base.csv``, ``front_x2.csv``, ``front.png``: :func:`~.front_plot.write_front_plots`) go to
    ``figures_dir``, replaced only on success.

    The figures are drawn into a temporary sibling folder that replaces ``figures_dir`` once the evaluation has
    finished, so a failed evaluation leaves the previous figures and metrics as they were.
    """
    from fieldlab.core.io import atomic_dir, write_json
    from fieldlab.potential.evaluation.front_plot import write_front_plots

    with atomic_dir(figures_dir) as staging:
        result = evaluate_sr(cfg, checkpoint, staging, backbone=backbone, rivals_file=rivals_file)
        write_json(Path(staging) / "per_sample.json", result.pop("samples"))
        write_front_plots(result, staging)
        if "resolutions" in result:
            from fieldlab.potential.evaluation.resolutions import write_resolution_plots

            write_resolution_plots(result["resolutions"], staging)
    write_json(metrics_json, result)
    return result
