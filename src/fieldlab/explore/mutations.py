"""Mutations of one ``inr`` parameter, range checks and clipping; keys may be nested (``ngp.levels``).

Magnitudes: lr x2 or /2; hidden_features, batch_size, ngp.features, ngp.base_resolution, ngp.mlp_width and
pod.rank doubled or halved; hidden_layers, ngp.mlp_layers and ngp.log2_table_size +-1 (the last doubles or halves
the table); ngp.levels +-2; ngp.growth +-0.1; omega +-10 or x1.5 or /1.5; total_steps x U(1.5, 2) (halved when
already at the top); t_period and xy_period x2 or /2; model switched to another variant (an INR, ``pod`` or
``pod_residual``). Which keys a config offers depends on its model (:func:`fieldlab.explore.keys.mutable_keys`).
Every result is clipped into :class:`~fieldlab.config.ExploreRanges`; a move that the clipping would cancel goes
the other way.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from fieldlab.config import ExploreRanges
from fieldlab.explore.keys import MODELS, flatten, get_value, with_value

FIELDS = ("Jp", "F", "S", "C")
INT_KEYS = ("hidden_features", "hidden_layers", "total_steps", "batch_size", "n_training_frames", "ngp.levels",
            "ngp.features", "ngp.log2_table_size", "ngp.base_resolution", "ngp.mlp_width",
            "ngp.mlp_layers", "pod.rank")  # fmt: skip
DOUBLING = ("lr", "batch_size", "hidden_features", "t_period", "xy_period", "ngp.features", "ngp.base_resolution",
            "ngp.mlp_width", "pod.rank")  # fmt: skip
RESIDUAL_MODELS = ("ngp", "siren_txy")
STEPS = {"hidden_layers": 1, "ngp.mlp_layers": 1, "ngp.log2_table_size": 1, "ngp.levels": 2, "ngp.growth": 0.1}


def bounds(key: str, ranges: ExploreRanges) -> tuple[float, float] | None:
    """(low, high) of a ranged dotted key (``ngp.levels`` -> ``ranges.ngp.levels``), ``None`` for other keys."""
    node: Any = ranges
    for part in key.split("."):
        node = getattr(node, part, None)
    return node if isinstance(node, tuple) else None


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
    if key == "pod.residual_model":
        return None if value in RESIDUAL_MODELS else f"expected one of {', '.join(RESIDUAL_MODELS)}"
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
    """Copy of ``params`` with every ranged numeric value (nested ones too) clipped into its range."""
    out = copy.deepcopy(params)
    for key, value in flatten(params).items():
        if bounds(key, ranges) is not None and isinstance(value, int | float) and not isinstance(value, bool):
            out = with_value(out, key, _clip(key, value, ranges))
    return out


def mutate(params: dict[str, Any], key: str, rng: np.random.Generator, ranges: ExploreRanges) -> tuple[dict, str]:
    """Change exactly the (dotted) ``key`` of ``params`` by one move of the documented magnitude.

    Returns
    -------
    (new_params, description) with description like ``lr 0.0001 -> 5e-05`` or ``ngp.levels 16 -> 18``.
    """
    old = get_value(params, key)
    new = _move(key, old, rng, ranges)
    if new == old:  # clipped back onto itself: try the opposite moves
        for _ in range(8):
            new = _move(key, old, rng, ranges)
            if new != old:
                break
    return with_value(params, key, new), f"{key} {old!r} -> {new!r}"


def _move(key: str, old: Any, rng: np.random.Generator, ranges: ExploreRanges) -> Any:
    if key == "model":
        return str(rng.choice([m for m in MODELS if m != old]))
    if key in DOUBLING:
        factor = 2.0 if rng.random() < 0.5 else 0.5
        return _clip(key, old * factor, ranges)
    if key in STEPS:
        return _clip(key, round(old + (1 if rng.random() < 0.5 else -1) * STEPS[key], 6), ranges)
    if key == "omega":
        op = int(rng.integers(4))
        return _clip(key, (old + 10, old - 10, old * 1.5, old / 1.5)[op], ranges)
    if key == "total_steps":
        top = ranges.total_steps[1]
        return _clip(key, old / 2 if old >= top else old * rng.uniform(1.5, 2.0), ranges)
    raise KeyError(f"inr.{key} has no mutation rule")


def extreme(params: dict[str, Any], key: str, rng: np.random.Generator, ranges: ExploreRanges) -> tuple[dict, str]:
    """Set the (dotted) ``key`` to the end of its range farther from the current value (the failure probe)."""
    old = get_value(params, key)
    if key == "model":
        return mutate(params, key, rng, ranges)
    low, high = bounds(key, ranges)
    far = _clip(key, low if abs(math.log(old / low)) > abs(math.log(high / old)) else high, ranges)
    return with_value(params, key, far), f"{key} {old!r} -> {far!r} (extreme)"
