"""Mutations: one parameter, documented magnitudes, always inside the ranges; time-budget scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from explore_fakes import BASE_INR
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldlab.config import ExploreRanges
from fieldlab.explore import mutations as mut

RANGES = ExploreRanges()


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(["lr", "hidden_features", "hidden_layers", "omega", "total_steps", "batch_size", "t_period",
                         "xy_period", "model"]),
    seed=st.integers(0, 10_000),
    lr=st.sampled_from([1e-7, 3e-6, 1e-4, 1e-3]),
    width=st.sampled_from([64, 256, 2048]),
    layers=st.integers(2, 6),
    steps=st.sampled_from([1000, 50_000, 200_000]),
)  # fmt: skip
def test_mutation_changes_one_key_within_range(key, seed, lr, width, layers, steps) -> None:
    params = {**BASE_INR, "lr": lr, "hidden_features": width, "hidden_layers": layers, "total_steps": steps}
    new, desc = mut.mutate(params, key, np.random.default_rng(seed), RANGES)
    changed = [k for k in params if new[k] != params[k]]
    assert changed == [key], desc
    for k, v in new.items():
        assert mut.check_value(k, v, RANGES) is None, (k, v)
    old, val = params[key], new[key]
    if key in ("lr", "hidden_features", "batch_size", "t_period", "xy_period"):
        assert val / old in (2.0, 0.5) or val in getattr(RANGES, key)  # x2, /2, or clipped to a bound
    elif key == "hidden_layers":
        assert abs(val - old) == 1
    elif key == "total_steps":
        grown = old * 1.5 - 1 <= val <= old * 2 + 1  # x1.5-2, integer rounding
        assert grown or val == RANGES.total_steps[1] or val == old // 2


def test_omega_moves() -> None:
    """omega 30 -> one of 40, 20, 45, 20 (+-10, x1.5, /1.5)."""
    seen = {mut.mutate({"omega": 30.0}, "omega", np.random.default_rng(s), RANGES)[0]["omega"] for s in range(40)}
    assert seen == {40.0, 20.0, 45.0}


def test_clipping_at_a_bound_goes_the_other_way() -> None:
    for s in range(10):
        new, _ = mut.mutate({"lr": 1e-3}, "lr", np.random.default_rng(s), RANGES)
        assert new["lr"] == 5e-4


def test_extreme_picks_the_far_end_in_log_space() -> None:
    rng = np.random.default_rng(0)
    assert mut.extreme({"lr": 1e-4}, "lr", rng, RANGES)[0]["lr"] == 1e-7  # 3 decades down vs 1 up
    assert mut.extreme({"hidden_features": 1024}, "hidden_features", rng, RANGES)[0]["hidden_features"] == 64
    assert mut.extreme({"omega": 5.0}, "omega", rng, RANGES)[0]["omega"] == 100.0


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [("lr", 1e-3, True), ("lr", 2e-3, False), ("lr", "1e-05", False), ("batch_size", 33, False),
     ("hidden_layers", 2.5, False), ("model", "ngp", True), ("model", "mlp", False), ("field_name", "S", True),
     ("omega", math.nan, False), ("unranged_key", 5, True)],
)  # fmt: skip
def test_check_value(key: str, value: object, ok: bool) -> None:
    assert (mut.check_value(key, value, RANGES) is None) is ok


def test_clamp_params() -> None:
    out = mut.clamp_params({"lr": 1.0, "hidden_features": 10, "model": "ngp"}, RANGES)
    assert out == {"lr": 1e-3, "hidden_features": 64, "model": "ngp"}


def test_dvc_safe_values() -> None:
    """DVC writes 1e-05 back as `1e-05`, which PyYAML reads as a string: such values bypass -S."""
    from fieldlab.explore.runners import dvc_safe

    assert [dvc_safe(v) for v in (1e-4, 1e-5, 2.5e20, 256, "ngp", True, {"levels": 16}, [1, 2])] == [
        True, False, False, True, True, True, False, False]  # fmt: skip
