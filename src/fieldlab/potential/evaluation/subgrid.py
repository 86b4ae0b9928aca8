"""The sub-grid corrector scored on a fine split, timed as every predictor of eval_sr is timed.

Each sample's seconds are the median of ``repeats`` calls of :func:`~.predict.predict_subgrid` (everything from
the sample's arrays on: restriction, the coarse solve, prolongation, channels, forward pass with the error head),
after one untimed warm-up call on the first sample; errors are measured on the evaluation's loss masks, in volts.
The error estimate is the error head's (:func:`~fieldlab.potential.prediction.subgrid.head_estimate`: its seconds
are the norms; the head's layers are in every prediction's seconds), or, for a corrector without one, the
residual estimate of the sample's own FEM system.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from fieldlab.potential.data.loader import PotentialDataset
from fieldlab.potential.data.subgrid_inputs import coarse_start
from fieldlab.potential.evaluation.front import spread
from fieldlab.potential.metrics import field_r2, field_relative_l2
from fieldlab.potential.models.trained import TrainedSubgrid
from fieldlab.potential.physics.fem.estimate import estimate_error
from fieldlab.potential.prediction.subgrid import head_estimate, predict_subgrid, predict_with_error


def subgrid_split(
    trained: TrainedSubgrid,
    dataset: PotentialDataset,
    repeats: int,
    estimate: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Per-sample rows (``rel_l2``, ``rel_l2_tissue``, ``r2``, ``seconds``; ``start_rel_l2``, ``start_seconds``: the
    coarse start alone, timed interleaved with the corrector; with ``estimate`` the error estimate and its seconds)
    and seconds of the corrector on the fine files of ``dataset``."""
    rows: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for i in range(len(dataset)):
        sample, name = dataset.sample(i), dataset.files[i].stem
        mask = dataset[i]["mask"][0].numpy().astype(bool)
        if i == 0:
            predict_subgrid(trained, sample, device)  # untimed warm-up
        times, start_times = [], []
        for _ in range(max(1, repeats)):  # the start alone (a classical point) and the corrector, interleaved
            t0 = time.perf_counter()
            start = coarse_start(sample, trained.model.factor, trained.start_tol)
            start_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            u, magnitude = predict_with_error(trained, sample, device)  # the head runs in every prediction
            times.append(time.perf_counter() - t0)
        truth = np.asarray(sample.u, dtype=np.float64)
        tissue = np.asarray(sample.mask, dtype=bool)
        rows[name] = {
            "rel_l2": field_relative_l2(u, truth, mask),
            "rel_l2_tissue": field_relative_l2(u, truth, tissue),
            "r2": field_r2(u, truth, mask),
            "start_rel_l2": field_relative_l2(start, truth, mask),
            "start_seconds": float(np.median(start_times)),
            "start_spread": spread(start_times),
            "seconds": float(np.median(times)),
            "seconds_spread": spread(times),
        }
        if estimate and magnitude is not None:  # the error head: its norm, calibrated on the validation limbs
            t0 = time.perf_counter()
            value = head_estimate(trained, u, magnitude, mask)
            rows[name].update(estimate_rel_l2=value, estimate_seconds=time.perf_counter() - t0)
        elif estimate:
            est = estimate_error(u, sample.sigma, sample.source, tuple(sample.spacing), mask)
            rows[name].update(estimate_rel_l2=est.rel_l2, estimate_seconds=est.seconds)
        seconds[name] = rows[name]["seconds"]
    return rows, seconds
