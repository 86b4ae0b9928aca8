"""The cost law of a training step: what it depends on, monotonicity, hand-counted work, the time-budget cap."""

from __future__ import annotations

import itertools

import pytest
from explore_fakes import BASE_INR

from fieldlab.config import ExploreRanges, INRConfig, to_dict
from fieldlab.explore.cost import COEFFS, budget_steps, cost_units, step_work, table_entries
from fieldlab.explore.keys import MUTABLE, with_value

NGP_INR = {**to_dict(INRConfig()), "model": "ngp"}
SIREN_INR = {**to_dict(INRConfig()), **BASE_INR}
#: (key, increasing values inside the exploration ranges) the per-step cost must not decrease along
GROWING = {
    "ngp": [("ngp.levels", [4, 8, 16, 24]), ("ngp.features", [1, 2, 4, 8]), ("ngp.log2_table_size", [12, 15, 18, 22]),
            ("ngp.base_resolution", [2, 8, 32, 64]), ("ngp.growth", [1.1, 1.3, 1.6, 2.0]),
            ("ngp.mlp_width", [16, 64, 256]), ("ngp.mlp_layers", [1, 2, 4]), ("batch_size", [1, 2, 8, 32])],
    "siren_txy": [("hidden_features", [64, 256, 1024, 2048]), ("hidden_layers", [2, 3, 6]), ("batch_size", [1, 4, 32])],
    "siren_t": [("hidden_features", [64, 256, 2048]), ("hidden_layers", [2, 6]), ("batch_size", [1, 4, 32])],
}  # fmt: skip


def test_coefficients_are_non_negative() -> None:
    assert all(c >= 0 for c in vars(COEFFS).values())


@pytest.mark.parametrize("model", list(GROWING))
def test_cost_is_monotone_in_every_key_it_depends_on(model: str) -> None:
    base = NGP_INR if model == "ngp" else {**SIREN_INR, "model": model}
    for key, values in GROWING[model]:
        costs = [cost_units(with_value(base, key, v)) for v in values]
        assert all(b >= a for a, b in itertools.pairwise(costs)), (key, costs)
        assert costs[-1] > costs[0], key  # the key matters
    coarse = [cost_units({**base, "t_period": p, "xy_period": p}) for p in (0.25, 1.0, 4.0)]
    assert coarse[0] >= coarse[1] >= coarse[2]  # larger periods: coarser grids, never more work


def test_cost_ignores_keys_the_model_does_not_read() -> None:
    """ngp's cost is blind to the SIREN keys (and lr, steps); a SIREN's to the ngp keys (the old law: the reverse)."""
    for key, value in (("hidden_features", 2048), ("hidden_layers", 6), ("omega", 90.0), ("lr", 1e-6),
                       ("total_steps", 10**5)):  # fmt: skip
        assert cost_units(with_value(NGP_INR, key, value)) == cost_units(NGP_INR), key
    for key in (k for k in MUTABLE["ngp"] if k.startswith("ngp.")):
        assert cost_units(with_value(SIREN_INR, key, 3)) == cost_units(SIREN_INR), key


def test_table_entries_hand_case() -> None:
    """levels 2, base 4, growth 2, T = 2^6 = 64, periods 1: level 0 has 5^3 = 125 > 64 vertices -> 64 rows;
    with base 2: level 0 3^3 = 27 (dense), level 1 5^3 = 125 -> 64: 91 rows. Periods 2 halve the resolution."""
    grid = {"levels": 2, "log2_table_size": 6, "base_resolution": 2, "growth": 2.0}
    assert table_entries({**grid, "base_resolution": 4}, 1.0, 1.0) == 64 + 64
    assert table_entries(grid, 1.0, 1.0) == 27 + 64
    assert table_entries(grid, 2.0, 2.0) == 8 + 27  # N = 1, 2 per axis


def test_step_work_hand_case() -> None:
    """siren_txy 3 -> 8 -> 8 -> 1 on 2 frames x 10 particles: 20 points x (24 + 64 + 8) MACs, 20 x (16 + 1)
    activations, (24 + 8) + (64 + 8) + (8 + 1) = 113 parameters; siren_t: 2 points, output 10 x 1."""
    p = {**SIREN_INR, "model": "siren_txy", "hidden_features": 8, "hidden_layers": 2, "batch_size": 2}
    w = step_work(p, n_particles=10)
    assert (w.macs, w.activations, w.params, w.corners) == (20 * 96, 20 * 17, 113, 0)
    t = step_work({**p, "model": "siren_t"}, n_particles=10)
    assert (t.macs, t.params) == (2 * (8 + 64 + 80), (8 + 8) + (64 + 8) + (80 + 10))


def test_budget_steps_hand_case() -> None:
    """Earlier fit: 1000 steps of this config took 10 s. Same config, budget 5 s -> 500 steps; a tiny budget -> the
    range's lower end; no history -> no cap."""
    ranges = ExploreRanges(total_steps=(100, 200_000))
    hist = [({**NGP_INR, "total_steps": 1000}, 10.0)]
    assert budget_steps({**NGP_INR, "total_steps": 5000}, hist, 5.0, ranges) == 500
    assert budget_steps({**NGP_INR, "total_steps": 5000}, hist, 1e-6, ranges) == 100
    assert budget_steps(NGP_INR, [], 30.0, ranges) is None


def test_budget_steps_scales_with_the_predicted_cost() -> None:
    """The cap of a dearer config is the budget over its own predicted time per step (rate from the history)."""
    ranges = ExploreRanges(total_steps=(1, 10**9))
    hist = [({**SIREN_INR, "total_steps": 1000}, 20.0)]
    wide = {**SIREN_INR, "hidden_features": 1024}
    rate = 20.0 / (1000 * cost_units(SIREN_INR))
    cap = budget_steps(wide, hist, 60.0, ranges)
    assert rate * cost_units(wide) * cap <= 60.0 * (1 + 1e-9) < rate * cost_units(wide) * (cap + 1)
    assert cap < 3000  # a wider SIREN costs more per step than the history's config
