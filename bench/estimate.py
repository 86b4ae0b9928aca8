"""Benchmark: the matrix-free error estimate (``method="residual"``, the default) against the assembled V-cycle
estimate (``method="vcycle"``) and against the classical route's time, at the base grid and at 2x.

Samples: limbs of ``params.yaml``'s corpus drawn as the corpus draws them (``solve_sample``), ``--base`` test limbs
at the base grid and ``--fine`` at 2x, solved to the corpus tolerance; the truth is the solved potential (float32,
as stored) and the norm the evaluation's loss mask (muscle minus balls of ``loss.singularity_radius`` base voxels
around the poles). Every sample gets predictions of realistic error from the ways classical and learned predictors
err (the families):

- ``prior``: the coarse_fem prior at 4 and 8 mm (``physics/coarse.py``);
- ``sweeps``: the 4 mm prior then 2, 8 or 32 symmetric Gauss-Seidel sweeps of the sample's system (``refine.py``);
- ``cg``: multigrid-CG on the sample's system stopped after 1-3 iterations, cold, and after 1-2 from the 8 mm prior
  (``rivals.py``);
- ``smooth``: the truth plus a smooth random field (Gaussian-filtered noise, ~16 mm) at 0.4, 1.2 and 3.5 % of the
  potential's RMS over the mask;
- ``learned``: the truth plus an error proportional to ``|u|``: a ~12 mm random field plus 0.3 of a ~3 mm one, at
  0.5, 1.5 and 4 %;

the last two each scaled by a random factor in ``[0.58, 1.73]`` per sample when read (:func:`load`).

Per grid: Spearman's rank correlation between estimate and true rel L2 per family and pooled over every
prediction, the effectivity (estimate / truth: median, 10th and 90th percentile) and each estimate's seconds
(median over every prediction of the grid of the median of ``--repeats`` runs, ``--vcycle-repeats`` for the
V-cycle estimate, interleaved, in this process), beside the classical route: cold
multigrid-CG (geometric, the corpus's) on the sample's own system from its arrays, stopped at the first iteration
count whose error reaches the median true error of the predictions (``rivals.cg_curve``, median of ``--repeats``).
``ratio_residual`` is the classical time over the estimate's (the target is >= 10). Predictions whose true error is
below ``--floor`` (the estimate's own floor: the transfer defect of the exact solution, ~1e-3) are left out of the
rank correlations and listed. Generated samples are cached in ``--cache`` (npz, about 30 MB at base and 230 MB at
2x each). Prints one JSON object.

    OMP_NUM_THREADS=2 PYTHONPATH=src flock /tmp/fieldlab-cpu.lock python bench/estimate.py [--base 10] [--fine 6]
        [--repeats 3] [--vcycle-repeats 1] [--only prior4,gs32,learned0.015] [--cache /tmp/fieldlab-bench-estimate]
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import spearmanr

from fieldlab.config import load_config
from fieldlab.potential.data import masking
from fieldlab.potential.evaluation.classical.cg import cg_curve
from fieldlab.potential.physics.corpus import solve_sample
from fieldlab.potential.physics.fem.coarse import coarse_fem_prior
from fieldlab.potential.physics.fem.estimate import estimate_error
from fieldlab.potential.prediction.sweeps import smooth_potential
from fieldlab.potential.schema import PotentialSample

FAMILIES = ("prior", "sweeps", "cg", "smooth", "learned")
#: Cold CG iteration counts timed for the classical route.
CG_ITERATIONS = (1, 2, 3, 4, 5, 6)


def family(name: str) -> str:
    """The family of a prediction name: ``prior4`` -> ``prior``, ``gs8`` -> ``sweeps``, ``cgw1`` -> ``cg``."""
    for prefix, fam in (("prior", "prior"), ("gs", "sweeps"), ("cg", "cg"), ("smooth", "smooth")):
        if name.startswith(prefix):
            return fam
    return "learned"


def loss_mask(cfg, sample: PotentialSample, factor: int) -> np.ndarray:
    """The evaluation's loss mask of ``sample`` on a grid ``factor`` times the base grid."""
    sigma = torch.from_numpy(np.ascontiguousarray(sample.sigma, dtype=np.float32))
    tissue = torch.from_numpy(sample.mask.astype(bool))
    region = masking.muscle_mask(sigma, cfg.loss.muscle_sigma, cfg.loss.muscle_rtol) & tissue
    poles = torch.from_numpy(sample.source_index)
    singular = masking.singularity_mask(sample.mask.shape, poles, cfg.loss.singularity_radius, (factor,) * 3)
    return masking.loss_mask(region, singular).numpy()


def random_field(shape: tuple[int, ...], length_voxels: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise of unit standard deviation."""
    p = ndimage.gaussian_filter(rng.normal(size=shape), length_voxels, mode="reflect")
    return p / p.std()


def generate(cfg, split: str, index: int, factor: int, path: Path) -> None:
    """Solve limb ``index`` of ``split`` at ``factor`` times the base grid and write it with its predictions."""
    s, _, _ = solve_sample(cfg.seed, split, index, tuple(cfg.data.grid), factor, cfg.physics)
    u = s.u.astype(np.float32).astype(np.float64)  # as the corpus stores it
    tissue = s.mask.astype(bool)
    mask = loss_mask(cfg, s, factor)
    rms = np.sqrt(np.mean(u[mask] ** 2))
    rng = np.random.default_rng(1000 * factor + index + (0 if split == "val" else 500))
    spacing = tuple(float(v) for v in s.spacing)
    preds = {"prior4": coarse_fem_prior(s, 4e-3)[0], "prior8": coarse_fem_prior(s, 8e-3)[0]}
    for k in (2, 8, 32):
        preds[f"gs{k}"] = smooth_potential(preds["prior4"], s.sigma, s.source, spacing, k)  # type: ignore[arg-type]
    for k, f in zip((1, 2, 3), cg_curve(s, (1, 2, 3)).fields, strict=True):
        preds[f"cg{k}"] = f
    for k, f in zip((1, 2), cg_curve(s, (1, 2), start=preds["prior8"]).fields, strict=True):
        preds[f"cgw{k}"] = f
    for a in (0.004, 0.012, 0.035):
        p = random_field(u.shape, 8 * factor, rng)
        preds[f"smooth{a}"] = np.where(tissue, u + a * rms * p / np.sqrt(np.mean(p[mask] ** 2)), 0.0)
    for a in (0.005, 0.015, 0.04):
        p = (random_field(u.shape, 6 * factor, rng) + 0.3 * random_field(u.shape, 1.5 * factor, rng)) * np.abs(u)
        preds[f"learned{a}"] = np.where(tissue, u + a * rms * p / np.sqrt(np.mean(p[mask] ** 2)), 0.0)
    arrays = {f"pred_{k}": v.astype(np.float32) for k, v in preds.items()}
    np.savez(path, sigma=s.sigma, source=s.source, tissue=tissue, spacing=np.array(spacing), u=u, loss=mask, **arrays)


def load(path: Path) -> tuple[PotentialSample, np.ndarray, dict[str, np.ndarray]]:
    """A cached sample, its loss mask and its predictions; the synthetic errors (``smooth``, ``learned``) scaled
    by a factor drawn log-uniformly in ``[1/sqrt(3), sqrt(3)]``, seeded by the sample and prediction names, so that
    the truths of a family do not tie across samples (a tie ranks at random and caps Spearman's rho near 0.89)."""
    d = np.load(path)
    z = np.zeros((2, 3))
    s = PotentialSample(
        d["sigma"], d["source"], d["tissue"], d["tissue"].astype(np.uint8), d["u"], d["spacing"], z, z.astype(int)
    )
    preds = {k[5:]: d[k].astype(np.float64) for k in d.files if k.startswith("pred_")}
    for name, p in preds.items():
        if family(name) in ("smooth", "learned"):
            rng = np.random.default_rng(zlib.crc32(f"{path.stem}/{name}".encode()))
            preds[name] = np.where(s.mask, s.u + (p - s.u) * np.sqrt(3.0) ** rng.uniform(-1, 1), 0.0)
    return s, d["loss"], preds


def rel_l2(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.linalg.norm((a - b)[mask]) / np.linalg.norm(b[mask]))


def measure(paths: list[Path], repeats: int, vcycle_repeats: int, floor: float, only: set[str]) -> dict:
    """Estimates, truths and times over the samples of one grid (the predictions named in ``only``, or all)."""
    rows, classical = [], []
    for path in paths:
        s, mask, preds = load(path)
        preds = {k: v for k, v in preds.items() if not only or k in only}
        spacing = tuple(float(v) for v in s.spacing)
        for name, u_pred in preds.items():
            row = {"sample": path.stem, "prediction": name, "family": family(name), "true": rel_l2(u_pred, s.u, mask)}
            times: dict[str, list[float]] = {"residual": [], "vcycle": []}
            for i in range(repeats):
                for method in ("residual", "vcycle")[: 2 if i < vcycle_repeats else 1]:  # interleaved
                    est = estimate_error(u_pred, s.sigma, s.source, spacing, mask, method=method)  # type: ignore[arg-type]
                    row[method] = est.rel_l2
                    times[method].append(est.seconds)
            row.update({f"{m}_seconds": float(np.median(t)) for m, t in times.items()})
            rows.append(row)
        curves = [cg_curve(s, CG_ITERATIONS) for _ in range(repeats)]
        errors = [rel_l2(f, s.u, mask) for f in curves[0].fields]
        seconds = [float(np.median([c.seconds[i] for c in curves])) for i in range(len(CG_ITERATIONS))]
        classical.append({"sample": path.stem, "errors": errors, "seconds": seconds})
    truths = np.array([r["true"] for r in rows])
    target = float(np.median(truths))
    cls_s = []
    for c in classical:
        k = next((i for i, e in enumerate(c["errors"]) if e <= target), len(CG_ITERATIONS) - 1)
        cls_s.append(c["seconds"][k])
    ranked = [r for r in rows if r["true"] >= floor]
    out: dict = {"samples": len(paths), "predictions": len(rows), "median_true_rel_l2": target}
    out["classical"] = {
        "method": "cold multigrid-CG (gmg) from the arrays, to the median true error",
        "seconds_median": float(np.median(cls_s)),
        "per_iteration": {
            str(k): {
                "rel_l2_median": float(np.median([c["errors"][i] for c in classical])),
                "seconds_median": float(np.median([c["seconds"][i] for c in classical])),
            }
            for i, k in enumerate(CG_ITERATIONS)
        },
    }
    for method in ("residual", "vcycle"):
        est = np.array([r[method] for r in ranked])
        true = np.array([r["true"] for r in ranked])
        eff = est / true
        sec = float(np.median([r[f"{method}_seconds"] for r in rows]))
        out[method] = {
            "spearman_pooled": float(spearmanr(true, est).statistic),
            "spearman_per_family": {
                f: float(spearmanr(true[sel], est[sel]).statistic)
                for f in FAMILIES
                if (sel := np.array([r["family"] == f for r in ranked])).sum() > 2
            },
            "effectivity_median": float(np.median(eff)),
            "effectivity_p10_p90": [float(np.percentile(eff, 10)), float(np.percentile(eff, 90))],
            "effectivity_in_0.5_2": float(np.mean((eff >= 0.5) & (eff <= 2))),
            "seconds_median": sec,
            "classical_over_estimate": out["classical"]["seconds_median"] / sec,
        }
    out["residual_speedup_over_vcycle"] = out["vcycle"]["seconds_median"] / out["residual"]["seconds_median"]
    out["below_floor"] = [
        {k: r[k] for k in ("sample", "prediction", "true", "residual", "vcycle")} for r in rows if r["true"] < floor
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="params.yaml")
    parser.add_argument("--base", type=int, default=10, help="test limbs at the base grid")
    parser.add_argument("--fine", type=int, default=6, help="test limbs at 2x")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vcycle-repeats", type=int, default=1, help="runs of the (slow) V-cycle estimate")
    parser.add_argument("--floor", type=float, default=2e-3, help="true errors below this are not ranked")
    parser.add_argument("--cache", default="/tmp/fieldlab-bench-estimate")
    parser.add_argument("--only", default="", help="comma-separated predictions to measure (e.g. a timing run)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    grids = {"base": (1, "test", args.base), "2x": (2, "test2x", args.fine)}
    out: dict = {"config": args.config, "repeats": args.repeats, "vcycle_repeats": args.vcycle_repeats}
    out["floor"], out["only"] = args.floor, args.only
    t0 = time.perf_counter()
    for grid, (factor, stem, n) in grids.items():
        paths = [cache / f"{stem}_{i:02d}.npz" for i in range(n)]
        for i, p in enumerate(paths):
            if not p.exists():
                generate(cfg, "test", i, factor, p)
        only = {v for v in args.only.split(",") if v}
        out[grid] = measure(paths, args.repeats, args.vcycle_repeats, args.floor, only)
    out["wall_s"] = time.perf_counter() - t0
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
