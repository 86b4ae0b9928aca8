"""The operator at every resolution, seen and unseen in training: ``eval_sr.json: resolutions``.

For each resolution of :data:`~fieldlab.potential.physics.resolutions.RESOLUTIONS` that the corpus holds (``base``:
``test/``, ``2x``: ``test_2x/``, the others ``test_<name>/``: the same test limbs rasterised and solved by the FEM on
that grid) the first ``data.n_test_resolutions`` limbs are scored, on the loss mask of that grid, by:

==================  ==================================================================================================
``operator``        the model trained across spacings (``train_spacings``), zero shot on the resolution's grid
``operator_seed``   the one-spacing seed model (conditioning off), zero shot: the strict model of the study
``interpolated``    the same model on the training grid (the limb's base sample), its prediction carried to the
                    grid by the tissue-aware trilinear transfer (:func:`~fieldlab.potential.physics.regrid.
                    prolong_centres`): the interpolation baseline (not at ``base``, where it is ``operator``)
``hybrid``          ``operator`` followed by ``eval.refine_sweeps`` symmetric Gauss-Seidel sweeps of the sample's own
                    FEM system on its grid (:func:`~fieldlab.potential.prediction.default.predict_default`)
``prior_sweeps``    its classical twin: the coarse_fem prior followed by the same sweeps
``fem_base``        the FEM at the training spacing (the limb's base sample solved afresh with ``physics.solver``),
                    carried to the grid as ``interpolated``
==================  ==================================================================================================

Every entry holds ``rel_l2``, ``rel_l2_max`` and ``seconds_per_sample`` (median of ``eval.timing_repeats`` runs per
sample, the predictors of a sample interleaved; each pays for its prior, forward passes, sweeps, solve and
transfer). ``seen`` says whether the operator trained on the resolution's spacing (the checkpoint's
``train_spacings``); ``front`` lists the clear members of the accuracy-time front of the resolution's predictors
(:func:`~fieldlab.potential.evaluation.front.front_members`). ``targets`` sets each unseen resolution's operator
against its base error and against the interpolation baseline.
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
from fieldlab.errors import InputError
from fieldlab.potential import metrics
from fieldlab.potential.data.loader import PotentialDataset
from fieldlab.potential.data.spacing_batches import spacing_key
from fieldlab.potential.evaluation.front import front_members, spread
from fieldlab.potential.physics.fem.solver import solve_potential
from fieldlab.potential.physics.regrid import prolong_centres
from fieldlab.potential.physics.resolutions import RESOLUTIONS
from fieldlab.potential.prediction.default import predict_default
from fieldlab.potential.prediction.sweeps import Refiner, refine_prior

#: Zero-shot error at an unseen resolution over the base error, at most (the study's target).
TARGET_RATIO_BASE = 1.2
#: The operator below the interpolation baseline by at least this fraction at an unseen resolution.
TARGET_GAIN_INTERPOLATED = 0.2


def resolution_split(name: str) -> str:
    """The corpus folder of resolution ``name``: ``test``, ``test_2x``, ``test_<name>``."""
    if name not in RESOLUTIONS:
        raise InputError(f"resolution {name!r}: expected one of {', '.join(RESOLUTIONS)}")
    return {"base": "test", "2x": "test_2x"}.get(name, f"test_{name}")


def resolution_names(cfg: Config) -> list[str]:
    """The resolutions a run scores: base, 2x (``data.test_2x``) and ``data.test_resolutions``, by spacing."""
    names = ["base", *(["2x"] if cfg.data.test_2x else []), *cfg.data.test_resolutions]
    return sorted(dict.fromkeys(names), key=lambda n: float(np.prod([float(r) for r in RESOLUTIONS[n]])))


def resolution_files(root: str | Path, name: str, n: int) -> list[Path]:
    """The first ``n`` files of resolution ``name``'s folder; fewer, or none, is an :class:`InputError`."""
    folder = Path(root) / resolution_split(name)
    files = sorted(folder.glob("*.npz"))[:n]
    if len(files) < n:
        raise InputError(
            f"{folder}: {len(files)} samples, expected {n} (data.n_test_resolutions; run the prepare stage with "
            f"data.test_resolutions listing {name!r})"
        )
    return files


def _scores(pred: torch.Tensor, item: dict[str, torch.Tensor]) -> dict[str, float]:
    pred = pred.float()
    return {
        "rel_l2": float(metrics.relative_l2(pred, item["phi"], item["mask"])[0]),
        "max_error": float(metrics.max_error(pred, item["phi"], item["mask"])[0]),
    }


def transfer(volts: np.ndarray, source: Any, target: Any) -> np.ndarray:
    """A base-grid potential (volts) of sample ``source`` at the voxel centres of sample ``target``'s grid."""
    return prolong_centres(volts, np.asarray(source.mask, bool), target.shape, np.asarray(target.mask, bool))


def predictors(
    model: nn.Module,
    seed_model: nn.Module | None,
    scaler: Any,
    sweeps: int,
    physics: Any,
    same_grid: bool,
) -> Callable[..., dict[str, Callable[[], torch.Tensor]]]:
    """The runs of one sample: ``runs(item, sample, base_item, base_sample) -> {name: () -> prediction}``."""
    solver = physics.solver

    def volts(pred: torch.Tensor) -> np.ndarray:
        return scaler.unscale_potential(pred.float())[0, 0].cpu().numpy().astype(np.float64)

    def model_units(u: np.ndarray) -> torch.Tensor:
        return scaler.scale_potential(torch.from_numpy(u).float())[None, None]

    def runs(item: dict, sample: Any, base_item: dict, base_sample: Any) -> dict[str, Callable[[], torch.Tensor]]:
        args = (item["sigma"], item["f"], item["coords"], item["spacing"])
        base_args = (base_item["sigma"], base_item["f"], base_item["coords"], base_item["spacing"])
        out: dict[str, Callable[[], torch.Tensor]] = {"operator": lambda: model(*args, prior=item.get("prior"))}
        if seed_model is not None:
            out["operator_seed"] = lambda: seed_model(*args, prior=item.get("prior"))
        if not same_grid:
            out["interpolated"] = lambda: model_units(
                transfer(volts(model(*base_args, prior=base_item.get("prior"))), base_sample, sample)
            )
        if sweeps:
            out["hybrid"] = lambda: predict_default(model, item, sample, scaler, sweeps)
            if item.get("prior") is not None:
                refiner = Refiner.for_sample(sample, sweeps, scaler.unscale_potential, scaler.scale_potential)
                out["prior_sweeps"] = lambda: refine_prior(item["prior"], refiner)

        def fem_base() -> torch.Tensor:
            s = base_sample
            u, _ = solve_potential(
                s.sigma, s.source, tuple(s.spacing), solver.tol, maxiter=solver.maxiter, method=solver.method,
                max_attempts=solver.attempts,
            )  # fmt: skip
            return model_units(transfer(u, s, sample) if not same_grid else u)

        out["fem_base"] = fem_base
        return out

    return runs


#: Predictors that read the sample's prior (they pay for it); ``interpolated`` pays for the base sample's prior.
USES_PRIOR = ("operator", "operator_seed", "hybrid", "prior_sweeps")


@torch.no_grad()
def score_resolution(
    runs: Callable[..., dict[str, Callable[[], torch.Tensor]]],
    ds: PotentialDataset,
    base_ds: PotentialDataset,
    repeats: int,
    prior_cost: Callable[[int], float],
    base_prior_cost: Callable[[int], float],
) -> dict[str, dict[str, dict[str, float]]]:
    """``{predictor: {sample: {rel_l2, max_error, seconds, seconds_spread}}}`` over the samples of ``ds`` (limb ``i``
    of ``base_ds`` is the same limb on the training grid); the predictors of a sample are timed in interleaved
    rounds and the median taken."""
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for i in range(len(ds)):
        if ds.files[i].name != base_ds.files[i].name:
            raise InputError(f"{ds.files[i]}: expected the limb of {base_ds.files[i]} (same file names per resolution)")
        item = {k: v[None] for k, v in ds[i].items()}
        base_item = {k: v[None] for k, v in base_ds[i].items()}
        fns = runs(item, ds.sample(i), base_item, base_ds.sample(i))
        extra = {n: prior_cost(i) if n in USES_PRIOR else 0.0 for n in fns}
        if "interpolated" in fns:
            extra["interpolated"] = base_prior_cost(i)
        if i == 0:
            for fn in fns.values():  # untimed warm-up (lazy initialisation, allocator growth)
                fn()
        times: dict[str, list[float]] = {n: [] for n in fns}
        preds: dict[str, torch.Tensor] = {}
        for _ in range(max(1, repeats)):
            for n, fn in fns.items():
                t0 = time.perf_counter()
                preds[n] = fn()
                times[n].append(time.perf_counter() - t0 + extra[n])
        for n in fns:
            rows.setdefault(n, {})[ds.files[i].stem] = {
                **_scores(preds[n], item),
                "seconds": float(np.median(times[n])),
                "seconds_spread": spread(times[n]),
            }
    return rows


def entry(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """One predictor's summary at one resolution: mean and worst rel L2, mean seconds and their spread."""
    errors = [r["rel_l2"] for r in rows.values()]
    return {
        "rel_l2": float(np.mean(errors)),
        "rel_l2_max": float(np.max(errors)),
        "seconds_per_sample": float(np.mean([r["seconds"] for r in rows.values()])),
        "seconds_spread": float(np.median([r["seconds_spread"] for r in rows.values()])),
        "samples": len(rows),
    }


def resolution_front(block: dict[str, Any]) -> list[str]:
    """The clear front members among a resolution's predictors (the seed model is a reported row, not a rival)."""
    points = {
        n: {"rel_l2": e["rel_l2"], "seconds": e["seconds_per_sample"], "seconds_spread": e["seconds_spread"]}
        for n, e in block.items()
        if isinstance(e, dict) and "rel_l2" in e and n != "operator_seed"
    }
    return front_members(points)


def targets(out: dict[str, Any]) -> dict[str, Any]:
    """Each unseen resolution's operator against its base error (at most :data:`TARGET_RATIO_BASE` times) and
    against the interpolation baseline (below it by :data:`TARGET_GAIN_INTERPOLATED`); the hybrid on the front."""
    base = out["base"]["operator"]["rel_l2"]
    res: dict[str, Any] = {}
    for name, block in out.items():
        if block["seen"]:
            continue
        op = block["operator"]["rel_l2"]
        t: dict[str, Any] = {"ratio_base": op / base, "ratio_base_met": op / base <= TARGET_RATIO_BASE}
        if "interpolated" in block:
            gain = 1.0 - op / block["interpolated"]["rel_l2"]
            t.update(gain_interpolated=gain, gain_interpolated_met=gain >= TARGET_GAIN_INTERPOLATED)
        if "hybrid" in block:
            t["hybrid_on_front"] = "hybrid" in block["front"]
        res[name] = t
    return res


def plot_rows(out: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per resolution and predictor for ``resolutions.csv``: the voxel's edge (geometric mean, mm), its
    finest edge, the error and the seconds, and whether the operator trained at that spacing."""
    rows = []
    for name, block in out.items():
        dx = np.asarray(block["spacing_m"], dtype=np.float64) * 1e3
        for pred, e in block.items():
            if isinstance(e, dict) and "rel_l2" in e:
                rows.append(
                    {
                        "resolution": name,
                        "voxel_mm": float(np.prod(dx) ** (1 / 3)),
                        "finest_mm": float(dx.min()),
                        "predictor": pred,
                        "rel_l2": e["rel_l2"],
                        "rel_l2_max": e["rel_l2_max"],
                        "seconds_per_sample": e["seconds_per_sample"],
                        "seen": int(block["seen"]),
                    }
                )
    return rows


def evaluate_resolutions(
    cfg: Config,
    model: nn.Module,
    seed_model: nn.Module | None,
    ckpt: dict[str, Any],
    dataset: Callable[[list[Path]], PotentialDataset],
    prior_cost: Callable[[PotentialDataset], Callable[[int], float]],
    root: str | Path | None = None,
) -> dict[str, Any]:
    """``{resolution: {spacing_m, seen, <predictor>: entry, front}}`` and ``targets`` (module notes).

    ``model`` is the operator trained across spacings (``ckpt`` its checkpoint), ``seed_model`` the one-spacing model
    (``None``: left out); ``dataset(files)`` builds the evaluation dataset of a list of files (the model's scaling,
    masks and cached priors) and ``prior_cost(ds)`` the seconds of each sample's prior. ``root`` (default
    ``data.root``) holds the resolution folders.
    """
    root = Path(cfg.data.root if root is None else root)
    n = cfg.data.n_test_resolutions
    seen = {spacing_key(s) for s in ckpt.get("train_spacings", [ckpt["reference_spacing"]])}
    files = {name: resolution_files(root, name, n) for name in resolution_names(cfg)}  # all there before any work
    base_ds = dataset(files["base"])
    base_cost = prior_cost(base_ds)
    out: dict[str, Any] = {}
    for name in files:
        ds = base_ds if name == "base" else dataset(files[name])
        cost = base_cost if name == "base" else prior_cost(ds)
        runs = predictors(model, seed_model, ds.scaler, cfg.eval.refine_sweeps, cfg.physics, name == "base")
        rows = score_resolution(runs, ds, base_ds, cfg.eval.timing_repeats, cost, base_cost)
        spacing = [float(v) for v in ds.sample(0).spacing]
        block: dict[str, Any] = {"spacing_m": spacing, "seen": spacing_key(spacing) in seen}
        block.update({p: entry(r) for p, r in rows.items()})
        block["front"] = resolution_front(block)
        out[name] = block
    return {**out, "targets": targets(out)}


def write_resolution_plots(result: dict[str, Any], folder: str | Path) -> None:
    """``resolutions.csv`` (the DVC plot) and ``resolutions.png``: error against voxel edge per predictor, the
    training spacings marked."""
    import csv

    from fieldlab.potential.figures import save_figure

    rows = plot_rows({k: v for k, v in result.items() if k != "targets"})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "resolutions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for pred in dict.fromkeys(r["predictor"] for r in rows):
        pts = sorted((r["voxel_mm"], r["rel_l2"], r["resolution"]) for r in rows if r["predictor"] == pred)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=pred)
    for r in rows:
        if r["predictor"] == "operator":
            ax.annotate(r["resolution"], (r["voxel_mm"], r["rel_l2"]), textcoords="offset points", xytext=(4, 4))
    for v in sorted({r["voxel_mm"] for r in rows if r["seen"]}):
        ax.axvline(v, color="0.6", ls=":", lw=1)
    ax.set_xlabel("voxel edge (geometric mean, mm); dotted: trained on")
    ax.set_ylabel("rel L2 (muscle)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("error against voxel spacing")
    fig.tight_layout()
    save_figure(fig, str(folder / "resolutions.png"))
