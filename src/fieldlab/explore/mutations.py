"""Mutations of one ``inr`` parameter, range checks and the time-budget scaling of ``total_steps``.

Magnitudes: lr x2 or /2; hidden_features and batch_size doubled or halved; hidden_layers +-1; omega +-10 or x1.5
or /1.5; total_steps x U(1.5, 2) (halved when already at the top); t_period and xy_period x2 or /2; model switched
to another variant. Every result is clipped into :class:`~fieldlab.config.ExploreRanges`; a move that the clipping
would cancel goes the other way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fieldlab.config import ExploreRanges

#: the inr keys mutated inside a block (field_name and n_training_frames change only between blocks)
MUTABLE = ("lr", "hidden_features", "hidden_layers", "omega", "total_steps", "batch_size", "t_period", "xy_period")
MODELS = ("siren_t", "siren_id", "siren_txy", "ngp")
FIELDS = ("Jp", "F", "S", "C")
INT_KEYS = ("hidden_features", "hidden_layers", "total_steps", "batch_size", "n_training_frames")


def bounds(key: str, ranges: ExploreRanges) -> tuple[float, float] | None:
    """(low, high) of a ranged key, ``None`` for keys without a range."""
    return getattr(ranges, key, None)


def _clip(key: str, value: float, ranges: ExploreRanges) -> Any:
    b = bounds(key, ranges)
    if b is not None:
        value = min(max(value, b[0]), b[1])
    return round(value) if key in INT_KEYS else float(value)


def check_value(key: str, value: Any, ranges: ExploreRanges) -> str | None:
    """Why ``inr.<key> = value`` is not allowed, or ``None`` when it is."""
    if key == "model":
        return None if value in MODELS else f"expected one of {', '.join(MODELS)}"
    if key == "field_name":
        return None if value in FIELDS else f"expected one of {', '.join(FIELDS)}"
    b = bounds(key, ranges)
    if b is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "expected a number"
    if key in INT_KEYS and value != int(value):
        return "expected an integer"
    if not b[0] <= value <= b[1]:
        return f"expected a value in [{b[0]:g}, {b[1]:g}]"
    return None


def clamp_params(params: dict[str, Any], ranges: ExploreRanges) -> dict[str, Any]:
    """Copy of ``params`` with every ranged numeric value clipped into its range."""
    out = dict(params)
    for key, value in params.items():
        if bounds(key, ranges) is not None and isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = _clip(key, value, ranges)
    return out


def mutable_keys(params: dict[str, Any]) -> list[str]:
    """The keys of :data:`MUTABLE` (and ``model``) present in ``params``."""
    keys = [k for k in MUTABLE if k in params]
    return [*keys, "model"] if "model" in params else keys


def mutate(params: dict[str, Any], key: str, rng: np.random.Generator, ranges: ExploreRanges) -> tuple[dict, str]:
    """Change exactly ``params[key]`` by one move of the documented magnitude.

    Returns
    -------
    (new_params, description) with description like ``lr 0.0001 -> 5e-05``.
    """
    old = params[key]
    new = _move(key, old, rng, ranges)
    if new == old:  # clipped back onto itself: try the opposite moves
        for _ in range(8):
            new = _move(key, old, rng, ranges)
            if new != old:
                break
    out = dict(params)
    out[key] = new
    return out, f"{key} {old!r} -> {new!r}"


def _move(key: str, old: Any, rng: np.random.Generator, ranges: ExploreRanges) -> Any:
    if key == "model":
        return str(rng.choice([m for m in MODELS if m != old]))
    if key in ("lr", "batch_size", "hidden_features", "t_period", "xy_period"):
        factor = 2.0 if rng.random() < 0.5 else 0.5
        return _clip(key, old * factor, ranges)
    if key == "hidden_layers":
        return _clip(key, old + (1 if rng.random() < 0.5 else -1), ranges)
    if key == "omega":
        op = int(rng.integers(4))
        return _clip(key, (old + 10, old - 10, old * 1.5, old / 1.5)[op], ranges)
    if key == "total_steps":
        top = ranges.total_steps[1]
        return _clip(key, old / 2 if old >= top else old * rng.uniform(1.5, 2.0), ranges)
    raise KeyError(f"inr.{key} has no mutation rule")


def extreme(params: dict[str, Any], key: str, rng: np.random.Generator, ranges: ExploreRanges) -> tuple[dict, str]:
    """Set ``params[key]`` to the end of its range farther from the current value (the failure probe)."""
    old = params[key]
    if key == "model":
        return mutate(params, key, rng, ranges)
    low, high = bounds(key, ranges)
    far = low if abs(math.log(old / low)) > abs(math.log(high / old)) else high
    out = dict(params)
    out[key] = _clip(key, far, ranges)
    return out, f"{key} {old!r} -> {out[key]!r} (extreme)"


def cost_units(params: dict[str, Any]) -> float:
    """Relative work of one training step: batch_size * hidden_layers * hidden_features^2 (1 for missing keys)."""
    return float(params.get("batch_size", 1) * params.get("hidden_layers", 1) * params.get("hidden_features", 1) ** 2)


def budget_steps(
    params: dict[str, Any], history: list[tuple[dict[str, Any], float]], budget_s: float, ranges: ExploreRanges
) -> int | None:
    """Largest ``total_steps`` that keeps the predicted fit time within ``budget_s``, or ``None`` without history.

    The cost rate r = training_time / (total_steps * cost_units) is the median over earlier fits ``history``
    (pairs of params and measured training_time); the prediction is t = r * total_steps * cost_units(params), so
    the cap is floor(budget_s / (r * cost_units)), never below the range's lower end.
    """
    rates = [t / (p["total_steps"] * cost_units(p)) for p, t in history if t > 0 and p.get("total_steps", 0) > 0]
    if not rates or "total_steps" not in params:
        return None
    rate = float(np.median(rates))
    cap = int(budget_s / (rate * cost_units(params)))
    return max(int(ranges.total_steps[0]), cap)
