"""Rule agent: every strategy trigger on a hand-built block, classification, observations, budget cap."""

from __future__ import annotations

from collections import Counter

from explore_fakes import BASE_INR, node

from fieldlab.config import ExploreRanges
from fieldlab.explore.agents import (
    Context,
    Proposal,
    RuleAgent,
    branching_rate,
    classify,
    mutated_key,
    observe,
    switch_model,
)
from fieldlab.explore.cost import cost_units
from fieldlab.explore.journal import Node
from fieldlab.explore.mutations import check_value
from fieldlab.explore.ucb import ucb_scores

RANGES = ExploreRanges()


def propose(nodes: list[Node], n_iter_block: int = 8, iteration: int | None = None, budget: float = 1e9):
    agent = RuleAgent(RANGES, budget, seed=0, fill_budget=False)  # the strategies alone: steps only capped
    it = len(nodes) + 1 if iteration is None else iteration
    return agent.propose(Context(1, it, n_iter_block, 1.0, nodes, nodes))


def changed(a: dict, b: dict) -> list[str]:
    return [k for k in a if a[k] != b[k]]


def test_classify_thresholds() -> None:
    assert [classify(r) for r in (0.996, 0.995, 0.99, 0.95, 0.9, 0.5, None)] == [
        "excellent", "good", "good", "moderate", "moderate", "poor", "failed"]  # fmt: skip


def test_robustness_test_repeats_the_best_good_config() -> None:
    nodes = [node(1, None, 0.992), node(2, 1, 0.95, {"lr": 2e-4}), node(3, 2, 0.5, {"lr": 4e-4})]
    p = propose(nodes)
    assert (p.strategy, p.parent, p.params) == ("robustness-test", 1, nodes[0].params)
    rerun = node(4, 1, 0.991, strategy="robustness-test")
    assert propose([*nodes, rerun]).strategy != "robustness-test"  # once per block
    tight = propose(nodes, budget=1e-6)  # far below the measured cost: other proposals would be cut short
    assert (tight.strategy, tight.params) == ("robustness-test", nodes[0].params)


def test_failure_probe_after_three_strong_results() -> None:
    nodes = [node(1, None, 0.96), node(2, 1, 0.97, {"omega": 40.0}), node(3, 2, 0.98, {"omega": 50.0})]
    p = propose(nodes)
    assert p.strategy == "failure-probe"
    parent = next(n for n in nodes if n.id == p.parent)
    keys = changed(parent.params, p.params)
    assert len(keys) == 1
    k = keys[0]
    assert k == "model" or p.params[k] in getattr(RANGES, k)  # moved to an end of its range
    probe = node(4, 3, 0.97, {"omega": 1.0}, strategy="failure-probe")
    assert propose([*nodes, probe]).strategy != "failure-probe"  # not twice within three nodes


def test_recombine_two_non_adjacent_strong_nodes() -> None:
    nodes = [node(1, None, 0.8), node(2, 1, 0.96, {"omega": 40.0}), node(3, 1, 0.97, {"lr": 2e-4}),
             node(4, 3, 0.5, {"lr": 4e-4})]  # fmt: skip
    p = propose(nodes)
    assert (p.strategy, p.parent) == ("recombine", 3)
    keys = changed(nodes[2].params, p.params)
    assert len(keys) == 1 and p.params[keys[0]] == nodes[1].params[keys[0]]


def test_explore_branches_outside_the_recent_chain() -> None:
    nodes = [node(1, None, 0.93), node(2, 1, 0.5, {"lr": 1e-5}), node(3, 1, 0.91, {"omega": 40.0}),
             node(4, 3, 0.92, {"omega": 50.0})]  # fmt: skip
    p = propose(nodes, n_iter_block=8)  # 2 consecutive successes >= 8 // 4
    assert (p.strategy, p.parent) == ("explore", 2)
    assert len(changed(nodes[1].params, p.params)) == 1


def test_forced_branch_when_the_tree_is_a_chain() -> None:
    nodes = [node(1, None, 0.5), node(2, 1, 0.6, {"lr": 2e-4}), node(3, 2, 0.7, {"lr": 4e-4}),
             node(4, 3, 0.8, {"lr": 8e-4})]  # fmt: skip
    assert branching_rate(nodes) == 0.0
    p = propose(nodes)
    assert p.strategy == "forced-branch" and p.parent != 4
    assert p.parent == next(s.node for s in ucb_scores(nodes, 1.0) if s.node != 4)


def test_random_branch_fires_sometimes_and_never_from_the_last_node() -> None:
    nodes = [node(1, None, 0.5), node(2, 1, 0.6, {"lr": 2e-4}), node(3, 2, 0.7, {"lr": 4e-4})]
    props = [propose(nodes, iteration=i) for i in range(4, 104)]
    counts = Counter(p.strategy for p in props)
    assert set(counts) == {"random-branch", "exploit"}
    assert 5 <= counts["random-branch"] <= 40  # probability 0.2 over 100 independent draws
    assert all(p.parent != 3 for p in props if p.strategy == "random-branch")


def test_switch_param_after_four_mutations_of_one_key() -> None:
    nodes = [node(1, None, 0.5)] + [
        node(k, par, 0.5, {"lr": 1e-4 * 2**k}, strategy="exploit", mutation=f"lr {1e-4} -> {1e-4 * 2**k}")
        for k, par in ((2, 1), (3, 1), (4, 2), (5, 1))
    ]  # fmt: skip
    assert branching_rate(nodes) == 0.75
    for it in range(6, 30):
        p = propose(nodes, iteration=it)
        assert p.strategy == "switch-param"
        keys = changed(next(n for n in nodes if n.id == p.parent).params, p.params)
        assert len(keys) == 1 and keys[0] != "lr"


def test_exploit_mutates_one_key_of_the_best_ucb_node() -> None:
    nodes = [node(1, None, 0.5), node(2, 1, 0.6, {"lr": 2e-4}), node(3, 1, 0.55, {"omega": 40.0})]
    assert branching_rate(nodes) == 0.5
    p = propose(nodes)
    assert p.strategy == "exploit" and p.parent == ucb_scores(nodes, 1.0)[0].node
    parent = next(n for n in nodes if n.id == p.parent)
    assert len(changed(parent.params, p.params)) == 1
    assert all(check_value(k, v, RANGES) is None for k, v in p.params.items())


def test_all_failed_mutates_the_last_config() -> None:
    p = propose([node(1, None, None)])
    assert p.parent == 1 and len(changed(BASE_INR, p.params)) == 1


def test_decisions_are_reproducible() -> None:
    nodes = [node(1, None, 0.5), node(2, 1, 0.6, {"lr": 2e-4}), node(3, 1, 0.55, {"omega": 40.0})]
    assert propose(nodes, iteration=7) == propose(nodes, iteration=7)


def test_time_budget_caps_total_steps() -> None:
    """History: 2000 steps of cost u0 = 4 * 3 * 256^2 units took 1 s each (r = 1 / (2000 u0)).

    Same size, budget 0.5 s -> floor(0.5 / (r u0)) = 1000 steps; any proposal is predicted within the budget.
    """
    nodes = [node(1, None, 0.5), node(2, 1, 0.6, {"lr": 2e-4}), node(3, 1, 0.55, {"omega": 40.0})]
    agent = RuleAgent(ExploreRanges(total_steps=(100, 200_000)), 0.5, seed=0)
    ctx = Context(1, 4, 8, 1.0, nodes, nodes)
    capped = agent.fit_budget(Proposal(None, dict(BASE_INR), "root", "", "root"), ctx)
    assert capped.params["total_steps"] == 1000 and "budget" in capped.rationale
    rate = 1.0 / (2000 * cost_units(BASE_INR))
    for it in range(4, 20):
        p = agent.propose(Context(1, it, 8, 1.0, nodes, nodes))
        assert rate * p.params["total_steps"] * cost_units(p.params) <= 0.5 * (1 + 1e-9)


def test_no_proposal_repeats_a_run_under_a_binding_budget() -> None:
    """Budget 1 s = the 2000 steps every node ran (1 s each): a total_steps increase is capped back to the parent's
    steps, i.e. to a config already run. Such repeats are drawn again; only a robustness test repeats a run."""
    nodes = [node(1, None, 0.5), node(2, 1, 0.6, {"lr": 2e-4}), node(3, 1, 0.55, {"omega": 40.0})]
    agent = RuleAgent(ExploreRanges(total_steps=(100, 200_000)), 1.0, seed=0, fill_budget=False)
    seen = [n.params for n in nodes]
    proposals = [agent.propose(Context(1, it, 8, 1.0, nodes, nodes)) for it in range(4, 64)]
    redrawn = [p for p in proposals if "draw " in p.rationale]
    assert redrawn, "the budget should have capped some total_steps increase back onto a run"
    assert all(p.params not in seen for p in proposals if p.strategy != "robustness-test")


def test_fill_budget_spends_the_budget_and_leaves_total_steps_to_it() -> None:
    """History: 2000 steps of BASE_INR took 1 s each. With a 0.5 s budget every proposal (robustness re-runs
    aside) is predicted to end within one step of the budget, a cheaper config gets more steps than a dearer one,
    and no move mutates total_steps."""
    nodes = [node(1, None, 0.5), node(2, 1, 0.6, {"lr": 2e-4}), node(3, 1, 0.55, {"omega": 40.0})]
    agent = RuleAgent(ExploreRanges(total_steps=(100, 200_000)), 0.5, seed=0, fill_budget=True)
    rate = 1.0 / (2000 * cost_units(BASE_INR))
    proposals = [agent.propose(Context(1, it, 8, 1.0, nodes, nodes)) for it in range(4, 60)]
    for p in (p for p in proposals if p.strategy != "robustness-test"):
        step = rate * cost_units(p.params)
        assert 0.5 - step < step * p.params["total_steps"] <= 0.5 * (1 + 1e-9), p.mutation
    moved = [p for p in proposals if p.strategy not in ("robustness-test", "recombine")]
    assert moved and all(mutated_key(node(9, 1, 0.5, strategy=p.strategy, mutation=p.mutation)) != "total_steps"
                         for p in moved)  # fmt: skip
    by_cost = sorted(moved, key=lambda p: cost_units(p.params))
    cheap, dear = by_cost[0], by_cost[-1]
    assert cost_units(cheap.params) < cost_units(dear.params)
    assert cheap.params["total_steps"] > dear.params["total_steps"]


def test_fill_budget_off_only_caps() -> None:
    """Without filling, a config cheaper than the budget keeps its steps (1 s budget, fits of 1 s: 2000 steps)."""
    nodes = [node(1, None, 0.5), node(2, 1, 0.6, {"lr": 2e-4})]
    ctx = Context(1, 3, 8, 1.0, nodes, nodes)
    half = {**BASE_INR, "batch_size": 2, "total_steps": 2000}
    off = RuleAgent(ExploreRanges(total_steps=(100, 200_000)), 1.0, seed=0, fill_budget=False)
    on = RuleAgent(ExploreRanges(total_steps=(100, 200_000)), 1.0, seed=0, fill_budget=True)
    assert off.fit_budget(Proposal(1, half, "exploit", "", ""), ctx).params["total_steps"] == 2000
    assert on.fit_budget(Proposal(1, half, "exploit", "", ""), ctx).params["total_steps"] > 2000


def test_switch_model_resumes_from_the_best_fit_of_that_model_on_the_field() -> None:
    ngp = {**BASE_INR, "model": "ngp", "field_name": "F", "lr": 1e-3, "total_steps": 300}
    t_f_good = {**BASE_INR, "model": "siren_t", "field_name": "F", "lr": 3e-4, "omega": 5.0, "hidden_features": 512}
    t_f_poor = {**t_f_good, "lr": 1e-3, "omega": 30.0}
    t_jp = {**t_f_good, "field_name": "Jp", "lr": 1e-5}  # better, but on another field
    history = [node(1, None, 0.7, t_f_good), node(2, 1, 0.2, t_f_poor), node(3, None, 0.99, t_jp)]
    new, desc = switch_model(ngp, "siren_t", history)
    assert new["model"] == "siren_t" and "node 1" in desc
    assert (new["lr"], new["omega"], new["hidden_features"]) == (3e-4, 5.0, 512)
    assert (new["field_name"], new["total_steps"]) == ("F", 300)  # the field and the budget's steps stay
    fresh, desc = switch_model(ngp, "siren_txy", history)  # never fitted: only the model changes
    assert fresh == {**ngp, "model": "siren_txy"} and "node" not in desc


def test_observe_reads_the_panel_numbers() -> None:
    text = observe({"ssim": {"xx": 0.95, "xy": 0.62}, "slope": 0.9, "intercept": 0.01})
    assert text.startswith("Visual: ")
    assert "component xy" in text and "under-predicted" in text
    assert "amplitude right" in observe({"slope": 1.0})
