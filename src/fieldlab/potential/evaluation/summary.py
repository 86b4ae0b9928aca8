"""Per-split summaries of per-sample scores: means, worst cases, ood shifts, seconds and the estimate's ranking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fieldlab.potential.physics.corpus import manifest_samples

MEASURES = ("rel_l2", "rel_l2_tissue", "mse", "r2", "max_error")


#: Per-split headline metrics (metrics/eval_sr.json); every per-sample value goes to per_sample.json instead.
HEADLINE = ("rel_l2", "r2", "prior_rel_l2")


def ood_shifts(root: str | Path) -> dict[str, str]:
    """Shift name of each out-of-distribution file (by stem) from the manifest; empty for a raw corpus."""
    return {
        Path(str(r.get("file", ""))).stem: str(r["ood_shift"])
        for r in manifest_samples(root)
        if r.get("split") == "ood" and "ood_shift" in r
    }


def solver_seconds(root: str | Path, split: str) -> dict[str, float]:
    """Per-sample solve time (s) of ``split`` from ``root/manifest.json``; empty when the manifest has none.

    The manifest written by the prepare stage lists ``samples`` as records with ``split``, ``file``
    (``<split>/NNNN.npz``) and ``solver_seconds``; a user-supplied (raw) corpus may have no timings.
    """
    return {
        Path(str(r.get("file", ""))).stem: float(r["solver_seconds"])
        for r in manifest_samples(root)
        if r.get("split") == split and "solver_seconds" in r
    }


def summarise(rows: dict[str, dict[str, float]], seconds: dict[str, float]) -> dict[str, Any]:
    """Means of the headline measures, the worst sample's rel L2 and the seconds per sample (prior included)."""
    out: dict[str, Any] = {
        m: float(np.mean([r[m] for r in rows.values()])) for m in HEADLINE if defined_everywhere(rows, m)
    }
    out["rel_l2_max"] = float(np.max([r["rel_l2"] for r in rows.values()]))
    out["seconds_per_sample"] = float(np.mean(list(seconds.values())))
    if defined_everywhere(rows, "seconds_spread"):  # median over samples of each sample's (max - min) / median
        out["seconds_spread"] = float(np.median([r["seconds_spread"] for r in rows.values()]))
    if defined_everywhere(rows, "estimate_rel_l2"):
        out["estimate"] = estimate_quality(rows.values())
    return out


def front_point(rows: dict[str, dict[str, float]], seconds: dict[str, float]) -> dict[str, float]:
    """A baseline's point, as :func:`~.baselines.classical_front` writes one: mean and worst rel L2, mean seconds."""
    errors = [r["rel_l2"] for r in rows.values()]
    out = {
        "rel_l2": float(np.mean(errors)),
        "rel_l2_max": float(np.max(errors)),
        "seconds": float(np.mean(list(seconds.values()))),
    }
    if defined_everywhere(rows, "seconds_spread"):
        out["seconds_spread"] = float(np.median([r["seconds_spread"] for r in rows.values()]))
    return out


def ood_summary(rows: dict[str, dict[str, float]], seconds: dict[str, float], shifts: dict[str, str]) -> dict[str, Any]:
    """:func:`summarise` of the out-of-distribution split, plus the mean and worst rel L2 per shift (when the
    manifest names the shifts)."""
    out = {**summarise(rows, seconds), "n": len(rows)}
    by_shift: dict[str, list[float]] = {}
    for name, row in rows.items():
        if name in shifts:
            row["ood_shift"] = shifts[name]  # type: ignore[assignment]
            by_shift.setdefault(shifts[name], []).append(row["rel_l2"])
    if by_shift:
        out["shifts"] = {
            k: {"rel_l2": float(np.mean(v)), "rel_l2_max": float(np.max(v)), "n": len(v)}
            for k, v in sorted(by_shift.items())
        }
    return out


def estimate_quality(rows: Any) -> dict[str, float]:
    """How well the error estimate ranks and sizes the true errors: Spearman's rho, the median effectivity
    (estimate / true error), the fraction of samples with effectivity in [0.5, 2] and the estimate's cost."""
    from scipy.stats import spearmanr

    rows = list(rows)
    true = np.array([r["rel_l2"] for r in rows])
    est = np.array([r["estimate_rel_l2"] for r in rows])
    eff = est / true
    for r, e in zip(rows, eff, strict=True):
        r["effectivity"] = float(e)
    ranked = len(rows) > 2 and np.ptp(true) > 0 and np.ptp(est) > 0  # a rank correlation needs spread in both
    rho = float(spearmanr(true, est).statistic) if ranked else float("nan")
    return {
        "spearman": rho,
        "effectivity_median": float(np.median(eff)),
        "effectivity_in_band": float(np.mean((eff >= 0.5) & (eff <= 2.0))),
        "seconds": float(np.mean([r["estimate_seconds"] for r in rows])),
    }


def defined_everywhere(rows: dict[str, dict[str, float]], measure: str) -> bool:
    return all(measure in r for r in rows.values())
