"""POD and the POD + INR hybrid in the exploration loop: their keys, mutations, cost law and budget, and a rule
agent that can move between pure INR, pure POD and the hybrid."""

from __future__ import annotations

import numpy as np
import pytest

from fieldlab.config import ExploreRanges, INRConfig, to_dict
from fieldlab.explore import mutations as mut
from fieldlab.explore.cost import budget_steps, cost_units, machine_rate, pod_seconds, step_work
from fieldlab.explore.keys import MODELS, MUTABLE, ignored_by, mutable_keys, with_value

RANGES = ExploreRanges(total_steps=(100, 200_000))
BASE = to_dict(INRConfig())  # every inr key, as params.yaml holds them
POD = {**BASE, "model": "pod"}
HYBRID = {**BASE, "model": "pod_residual"}
NGP = {**BASE, "model": "ngp"}


def test_models_include_pod_and_the_hybrid() -> None:
    assert {"pod", "pod_residual", "ngp", "siren_txy"} <= set(MODELS)
    seen = {mut.mutate(NGP, "model", np.random.default_rng(s), RANGES)[0]["model"] for s in range(60)}
    assert {"pod", "pod_residual"} <= seen  # a model switch can reach both


def test_pod_offers_only_its_rank_and_the_hybrid_adds_its_network() -> None:
    """pod reads pod.rank (and target_r2), never the training keys; pod_residual reads pod.* and its residual
    network's keys (ngp by default, the SIREN keys with residual_model siren_txy)."""
    assert mutable_keys(POD) == ["pod.rank", "model"]
    for key in ("lr", "total_steps", "batch_size", "t_period", "ngp.levels", "hidden_features", "omega"):
        assert ignored_by("pod", key), key
    assert not ignored_by("pod", "pod.rank") and not ignored_by("pod", "pod.target_r2")
    assert set(mutable_keys(HYBRID)) == {"pod.rank", *MUTABLE["ngp"], "model"}
    assert ignored_by("pod_residual", "hidden_features") and not ignored_by("pod_residual", "ngp.levels")
    siren_res = with_value(HYBRID, "pod.residual_model", "siren_txy")
    assert "hidden_features" in mutable_keys(siren_res) and "ngp.levels" not in mutable_keys(siren_res)
    assert ignored_by("pod_residual", "ngp.levels", "siren_txy")
    assert ignored_by("ngp", "pod.rank") and ignored_by("siren_txy", "pod.rank")


@pytest.mark.parametrize("seed", range(20))
def test_rank_doubles_or_halves_within_range(seed: int) -> None:
    params = with_value(POD, "pod.rank", 16)
    new, _ = mut.mutate(params, "pod.rank", np.random.default_rng(seed), RANGES)
    assert new["pod"]["rank"] in (8, 32) and new["pod"]["target_r2"] == POD["pod"]["target_r2"]
    top, _ = mut.mutate(with_value(POD, "pod.rank", 96), "pod.rank", np.random.default_rng(seed), RANGES)
    assert top["pod"]["rank"] == 48  # doubling would leave [1, 96]: the move goes the other way
    assert mut.check_value("pod.rank", 97, RANGES) is not None and mut.check_value("pod.rank", 1, RANGES) is None
    assert mut.check_value("pod.residual_model", "siren_t", RANGES) is not None


def test_pod_costs_no_step_and_gets_no_budget() -> None:
    """pod does not train: zero work per step, no steps to set, and its fits do not enter the machine rate."""
    assert cost_units(POD) == 0.0 and step_work(POD).macs == 0.0
    hist = [({**NGP, "total_steps": 1000}, 10.0)]
    assert budget_steps({**POD, "total_steps": 5000}, hist, 5.0, RANGES) is None
    with_pod = [*hist, ({**POD, "total_steps": 1000}, 0.2)]
    assert machine_rate(with_pod) == machine_rate(hist)
    assert machine_rate([({**POD, "total_steps": 1000}, 0.2)]) is None


def test_hybrid_costs_its_network_steps_plus_the_svd() -> None:
    """pod_residual's step is its residual network's; its budget is what the SVD leaves: with 1000 ngp steps
    measured at 10 s, a 5 s budget gives (5 - t_svd) / 0.01 steps."""
    assert cost_units(HYBRID) == cost_units(NGP)
    t_svd = pod_seconds(HYBRID)
    assert 0 < t_svd < 1 and pod_seconds(NGP) == 0
    hist = [({**NGP, "total_steps": 1000}, 10.0)]
    assert budget_steps({**HYBRID, "total_steps": 5000}, hist, 5.0, RANGES) == int((5.0 - t_svd) / 0.01)


def test_svd_cost_grows_with_components_and_frames() -> None:
    """min(m, n)^2 max(m, n): F (m = 4 T) costs more than Jp (m = T); more frames cost more."""
    jp, f = with_value(POD, "field_name", "Jp"), with_value(POD, "field_name", "F")
    assert pod_seconds(f) > pod_seconds(jp)
    assert pod_seconds(with_value(f, "n_training_frames", 96)) > pod_seconds(f)
