"""Cost law of one INR training step, and the time-budget cap of ``total_steps`` derived from it.

A step of ``fit_inr`` (``batch_size`` frames, forward, MSE, backward, Adam) costs, in seconds,

    t = 4.6e-11 macs + 3.0e-9 activations + 5.0e-8 corners + 7.0e-9 corner_features + 4.3e-9 params
        + 1.5e-8 table

with the work counted by :func:`step_work` from the ``inr`` config alone (model, widths, depths, levels,
features, table size, resolutions, batch, field components, particle count). The SIREN variants cost their
matmuls and activations (``siren_t``: one input per frame but ``N * C`` outputs and as many output weights);
the hash grid costs mainly its corner reads (``points * levels * 8``) and its table (rows ``sum_l min(prod_i
(N_l,i + 1), 2^log2_table_size)`` times features; its gradient is a scatter into a zeroed table, about 3x the cost
per scalar of a dense weight). ``hidden_features``, ``hidden_layers`` and ``omega`` cost nothing under ngp, and
``ngp.*`` nothing under a SIREN, as the stage ignores them.

Measurement (``python bench/inr_cost.py --particles 9000 --rounds 3 --steps 3``, torch CPU, one thread, CPU
seconds per step (user + system, robust to other jobs on the machine), fastest of 9 steps, 9000 particles of a
synthetic window, 2 frames per step unless noted). Milliseconds measured (law), one setting changed from ngp
16 levels x 2 features, T = 2^15, base 16, growth 1.5, MLP 64 x 2, or from SIREN 256 x 3:

- ngp: 392 (355), repeated at the end of each round 392; levels 8: 133 (155), 24: 686 (556); features 1: 202 (241),
  4: 525 (585), 8: 947 (1045); log2_table_size 12: 153 (162), 17: 224 (213), 19: 334 (355), 21: 790 (867);
  base_resolution 4: 285 (299), 64: 416 (404); growth 1.2: 253 (293), 2.0: 412 (374); mlp_width 32: 347 (349),
  128: 378 (374), 256: 441 (433); mlp_layers 1: 370 (349), 4: 375 (369); batch 1: 262 (276), 4: 689 (515);
  field F: 367 (356); periods 0.25: 431 (404).
- siren_txy: 256 x 3: 139 (151); 64 x 3: 17 (17); 128 x 3: 52 (48); 512 x 3: 567 (521); 256 x 2: 82 (83);
  256 x 5: 259 (288); batch 1: 68 (76), 4: 391 (302). siren_id 256 x 3: 147 (151).
- siren_t: 64 x 3: 3 (3); 256 x 3: 10 (11); 256 x 3 on F: 45 (41).

The coefficients are the non-negative least-squares fit of the relative error over these 36 rows (median error
8%, largest 26%: 4 frames per step run slower per point than 1 or 2). On another machine, thread count or device
the seconds differ but mostly by one factor: :func:`budget_steps` scales the law by the measured time of earlier fits.

``pod`` does not train: its step work is zero, its seconds are the SVD's (:func:`pod_seconds`) and the budget
leaves its ``total_steps`` alone. ``pod_residual`` costs the SVD once plus the steps of its residual network
(``pod.residual_model``), counted as that network's.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import astuple, dataclass
from typing import Any

import numpy as np

from fieldlab.config import ExploreRanges, INRConfig, to_dict
from fieldlab.explore.keys import model_of

#: components per field (F, S, C: 2 x 2 per particle)
COMPONENTS = {"Jp": 1, "F": 4, "S": 4, "C": 4}
#: particles of the study's scene (discs_3types: 9 discs of 1000), when no fit has reported ``n_particles`` yet
DEFAULT_PARTICLES = 9000
CORNERS = 8  # 2^d vertices of a cell of the (t, x, y) grid
SIREN_INPUTS = {"siren_t": 1, "siren_id": 2, "siren_txy": 3}


@dataclass(frozen=True)
class StepWork:
    """Work of one training step (forward + backward + Adam) counted in the units of the cost law.

    ``macs``: multiply-accumulates of the forward matmuls; ``activations``: hidden activations and outputs;
    ``corners``: hash-grid cell corners read, ``points * levels * 2^3``; ``corner_features``: the same times
    ``features``; ``params``: weights and biases (gradient and Adam update); ``table``: hash-table scalars, rows
    times features (gradient scattered into a zeroed table, then Adam).
    """

    macs: float
    activations: float
    corners: float
    corner_features: float
    params: float
    table: float


def _filled(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` over the stage's defaults (``INRConfig``), as the stage reads them."""
    full = to_dict(INRConfig())
    full.update({k: v for k, v in params.items() if k not in ("ngp", "pod")})
    full["ngp"] = {**full["ngp"], **(params.get("ngp") or {})}
    full["pod"] = {**full["pod"], **(params.get("pod") or {})}
    return full


def trains(params: dict[str, Any]) -> bool:
    """Whether the config trains a network (every model but ``pod``), so that ``total_steps`` costs time."""
    return model_of(params) != "pod"


def _mlp(widths: list[int]) -> tuple[float, float, float]:
    """(MACs per point, hidden activations per point, parameters) of a dense stack of ``widths``."""
    macs = sum(a * b for a, b in itertools.pairwise(widths))
    params = sum(a * b + b for a, b in itertools.pairwise(widths))
    return float(macs), float(sum(widths[1:-1])), float(params)


def table_entries(ngp: dict[str, Any], t_period: float, xy_period: float) -> int:
    """Rows of the hash-grid table: ``sum_l min(prod_i (N_l,i + 1), 2^log2_table_size)`` (dense levels smaller).

    ``N_l,i = max(1, floor(base_resolution * growth^l * s_i))`` with ``s = (1/t_period, 1/xy_period, 1/xy_period)``
    (:class:`fieldlab.inr.models.hashgrid.HashGridEncoding`).
    """
    size = 2 ** int(ngp["log2_table_size"])
    scale = (1 / t_period, 1 / xy_period, 1 / xy_period)
    total = 0
    for level in range(int(ngp["levels"])):
        cells = [max(1, int(ngp["base_resolution"] * ngp["growth"] ** level * s)) for s in scale]  # N_l,i
        total += min(math.prod(c + 1 for c in cells), size)
    return total


def step_work(params: dict[str, Any], n_particles: int = DEFAULT_PARTICLES) -> StepWork:
    """The work of one training step of the ``inr`` config ``params`` on ``n_particles`` particles.

    A step takes ``batch_size`` frames; the per-point models (``siren_id``, ``siren_txy``, ``ngp``) see
    ``points = batch_size * n_particles`` inputs, ``siren_t`` one input per frame and ``n_particles * C`` outputs.
    """
    p = _filled(params)
    model, n_c = model_of(p), COMPONENTS.get(str(p["field_name"]), 4)
    if model == "pod":  # no training step
        return StepWork(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    if model == "pod_residual":  # the steps are those of the residual network
        model = p["model"] = str(p["pod"]["residual_model"])
    frames = float(p["batch_size"])
    if model == "ngp":
        g = p["ngp"]
        enc = int(g["levels"]) * int(g["features"])
        macs, acts, mlp_params = _mlp([enc] + [int(g["mlp_width"])] * int(g["mlp_layers"]) + [n_c])
        points = frames * n_particles
        table = table_entries(g, float(p["t_period"]), float(p["xy_period"])) * int(g["features"])
        corners = points * int(g["levels"]) * CORNERS
        return StepWork(points * macs, points * (acts + n_c), corners, corners * int(g["features"]), mlp_params, table)
    n_out = n_particles * n_c if model == "siren_t" else n_c
    widths = [SIREN_INPUTS.get(model, 3)] + [int(p["hidden_features"])] * int(p["hidden_layers"]) + [n_out]
    macs, acts, n_params = _mlp(widths)
    points = frames if model == "siren_t" else frames * n_particles
    return StepWork(points * macs, points * (acts + n_out), 0.0, 0.0, n_params, 0.0)


#: seconds per unit of each :class:`StepWork` term (see the module docstring for the measurement)
COEFFS = StepWork(macs=4.6e-11, activations=3.0e-9, corners=5.0e-8, corner_features=7.0e-9, params=4.3e-9, table=1.5e-8)


def cost_units(params: dict[str, Any], n_particles: int = DEFAULT_PARTICLES) -> float:
    """Predicted seconds of one training step on the measurement machine: ``sum_k COEFFS_k * work_k``."""
    return float(np.dot(astuple(COEFFS), astuple(step_work(params, n_particles))))


#: seconds of the POD per (min side)^2 x (max side) of the (T C, N) matrix, and per value (centring, copies)
SVD_COEFF, POD_VALUE_COEFF = 2.2e-10, 3.6e-8


def pod_seconds(params: dict[str, Any], n_particles: int = DEFAULT_PARTICLES) -> float:
    """Predicted seconds of the truncated SVD of ``pod`` and ``pod_residual`` (0 for the INRs).

    With ``m = T C`` rows and ``n = N`` columns, LAPACK's SVD costs ``O(min(m, n)^2 max(m, n))``; the law is

        t = 2.2e-10 min(m, n)^2 max(m, n) + 3.6e-8 T N C,

    solved from the two measured fits of the study (``discs_3types``, 48 frames, 9000 particles, 2 threads:
    F, ``m = 192``: 0.13-0.22 s; Jp, ``m = 48``: 0.01-0.02 s, whatever the rank).
    """
    p = _filled(params)
    if model_of(p) not in ("pod", "pod_residual"):
        return 0.0
    m, n = int(p["n_training_frames"]) * COMPONENTS.get(str(p["field_name"]), 4), n_particles
    return SVD_COEFF * min(m, n) ** 2 * max(m, n) + POD_VALUE_COEFF * m * n


def machine_rate(history: list[tuple[dict[str, Any], float]], n_particles: int = DEFAULT_PARTICLES) -> float | None:
    """This machine against the measurement machine: the median of (training_time - pod_seconds) / (total_steps *
    cost_units) over earlier fits ``history`` (pairs of params and measured training_time) that trained a
    network; ``None`` without a usable fit."""
    rates = [(t - pod_seconds(p, n_particles)) / (p["total_steps"] * cost_units(p, n_particles)) for p, t in history
             if t > 0 and p.get("total_steps", 0) > 0 and trains(p)]  # fmt: skip
    rates = [r for r in rates if r > 0]
    return float(np.median(rates)) if rates else None


def budget_steps(
    params: dict[str, Any],
    history: list[tuple[dict[str, Any], float]],
    budget_s: float,
    ranges: ExploreRanges,
    n_particles: int = DEFAULT_PARTICLES,
) -> int | None:
    """Largest ``total_steps`` that keeps the predicted fit time within ``budget_s``, or ``None`` without history
    or for ``pod`` (which does not train).

    With the rate r of :func:`machine_rate`, the prediction is t = pod_seconds + r * total_steps * cost_units(params),
    so the cap is floor((budget_s - pod_seconds) / (r * cost_units)), never below the range's lower end.
    """
    rate = machine_rate(history, n_particles)
    if rate is None or "total_steps" not in params or not trains(params):
        return None
    left = budget_s - pod_seconds(params, n_particles)  # pod_residual: the SVD comes first
    cap = int(left / (rate * cost_units(params, n_particles)) * (1 + 1e-12))  # exact quotients stay whole
    return max(int(ranges.total_steps[0]), cap)


def fitted_steps(
    params: dict[str, Any],
    history: list[tuple[dict[str, Any], float]],
    budget_s: float,
    ranges: ExploreRanges,
    fill: bool,
    n_particles: int = DEFAULT_PARTICLES,
) -> int | None:
    """``total_steps`` of ``params`` under the budget, ``None`` without history: the steps of :func:`budget_steps`
    (at most the range's upper end) with ``fill`` (``explore.fill_budget``), else ``params``' own capped by them."""
    cap = budget_steps(params, history, budget_s, ranges, n_particles)
    if cap is None:
        return None
    return min(cap, int(ranges.total_steps[1]) if fill else int(params["total_steps"]))
