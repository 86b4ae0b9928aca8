"""Model-dependent mutable keys and nested ``inr.ngp.*`` keys through mutation, clamping, guard, journal and memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from explore_fakes import BASE_INR, make_workspace, node
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldlab.config import ExploreRanges
from fieldlab.explore import guard
from fieldlab.explore import mutations as mut
from fieldlab.explore.agents import Context, RuleAgent
from fieldlab.explore.journal import Journal
from fieldlab.explore.keys import MUTABLE, flatten, ignored_by, mutable_keys
from fieldlab.explore.memory import principles, render_memory

RANGES = ExploreRanges()
NGP = {"levels": 16, "features": 2, "log2_table_size": 15, "base_resolution": 16, "growth": 1.5, "mlp_width": 64,
       "mlp_layers": 2, "table_lr_factor": 5.0}  # fmt: skip
#: an ngp config that still carries the SIREN keys (as params.yaml does): they must never be mutated
NGP_INR = {**BASE_INR, "model": "ngp", "lr": 1e-3, "ngp": NGP}
#: keys the hash grid (registry.build_inr, fit_inr) never reads
NGP_IGNORES = {"hidden_features", "hidden_layers", "omega", "learn_omega", "omega_lr"}


def test_each_model_offers_only_keys_it_reads() -> None:
    """Hand-listed from registry.build_inr / make_inputs: ngp reads ngp.*, not the SIREN width, depth or omega;
    siren_t has no position input (xy_period unused); the SIREN variants never read ngp.*."""
    assert not NGP_IGNORES & set(MUTABLE["ngp"])
    assert {"ngp.levels", "ngp.features", "ngp.log2_table_size", "ngp.growth", "ngp.mlp_width", "ngp.mlp_layers",
            "lr", "total_steps"} <= set(MUTABLE["ngp"])  # fmt: skip
    assert "xy_period" not in MUTABLE["siren_t"] and "xy_period" in MUTABLE["siren_txy"]
    for model in ("siren_t", "siren_id", "siren_txy"):
        assert not [k for k in MUTABLE[model] if k.startswith("ngp.")]
        assert {"hidden_features", "hidden_layers", "omega"} <= set(MUTABLE[model])
    assert all(ignored_by("ngp", k) for k in NGP_IGNORES) and not ignored_by("ngp", "ngp.levels")
    assert ignored_by("siren_txy", "ngp.levels") and ignored_by("siren_t", "xy_period")
    assert mutable_keys(NGP_INR)[-1] == "model" and "hidden_features" not in mutable_keys(NGP_INR)


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from([k for k in MUTABLE["ngp"] if k.startswith("ngp.")]), seed=st.integers(0, 10_000))
def test_nested_mutation_changes_one_leaf_within_range(key: str, seed: int) -> None:
    new, desc = mut.mutate(NGP_INR, key, np.random.default_rng(seed), RANGES)
    before, after = flatten(NGP_INR), flatten(new)
    assert [k for k in before if before[k] != after[k]] == [key], desc
    assert desc.startswith(f"{key} {before[key]!r} -> ")
    assert all(mut.check_value(k, v, RANGES) is None for k, v in after.items())
    assert NGP_INR["ngp"] == NGP  # the parent's nested mapping is not touched


def test_ngp_moves() -> None:
    """levels +-2, features x2 /2, log2_table_size +-1, growth +-0.1 (hand-derived from 16, 2, 15, 1.5)."""

    def seen(key: str) -> set:
        return {flatten(mut.mutate(NGP_INR, key, np.random.default_rng(s), RANGES)[0])[key] for s in range(40)}

    assert seen("ngp.levels") == {14, 18}
    assert seen("ngp.features") == {1, 4}
    assert seen("ngp.log2_table_size") == {14, 16}
    assert seen("ngp.growth") == {1.4, 1.6}
    assert seen("ngp.mlp_layers") == {1, 3}


@pytest.mark.parametrize("seed", range(3))
def test_rule_agent_never_mutates_a_key_ngp_ignores(seed: int) -> None:
    """Over many proposals from ngp nodes (every strategy), the only changed keys are ones the hash grid reads."""
    nodes = [node(1, None, 0.96, NGP_INR), node(2, 1, 0.97, {**NGP_INR, "lr": 5e-4}),
             node(3, 1, 0.98, {**NGP_INR, "ngp": {**NGP, "levels": 18}})]  # fmt: skip
    agent = RuleAgent(RANGES, 1e9, seed=seed)
    changed: set[str] = set()
    for it in range(4, 64):
        prop = agent.propose(Context(1, it, 8, 1.0, nodes, nodes))
        parent = flatten(next(n.params for n in nodes if n.id == prop.parent))
        diff = {k for k, v in flatten(prop.params).items() if parent.get(k) != v}
        assert not diff & NGP_IGNORES, (prop.strategy, prop.mutation)
        changed |= diff
    assert {k for k in changed if k.startswith("ngp.")}  # the nested keys are reached


def test_clamp_and_check_nested() -> None:
    params = {**NGP_INR, "ngp": {**NGP, "levels": 40, "growth": 0.5, "log2_table_size": 20}}
    out = mut.clamp_params(params, RANGES)
    assert out["ngp"] == {**NGP, "levels": 24, "growth": 1.1, "log2_table_size": 20}
    assert params["ngp"]["levels"] == 40
    assert mut.check_value("ngp.levels", 25, RANGES) == "expected a value in [4, 24]"
    assert mut.check_value("ngp.levels", 8.5, RANGES) == "expected an integer"
    assert mut.check_value("ngp.growth", "1.5", RANGES) == "expected a number"
    assert mut.check_value("ngp.table_lr_factor", 7.0, RANGES) is None  # unranged nested key


def test_extreme_on_a_nested_key() -> None:
    """mlp_width 64 in [16, 256]: log distance 2 octaves each way -> the upper end (ties go up); levels 16 -> 4."""
    rng = np.random.default_rng(0)
    assert mut.extreme(NGP_INR, "ngp.mlp_width", rng, RANGES)[0]["ngp"]["mlp_width"] == 256
    assert mut.extreme(NGP_INR, "ngp.levels", rng, RANGES)[0]["ngp"]["levels"] == 4


def test_guard_checks_nested_keys_and_keys_the_model_ignores(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", dvc=False)
    (ws / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "inr": NGP_INR}, sort_keys=False))
    snap = guard.snapshot(ws)
    p = yaml.safe_load((ws / "params.yaml").read_text())
    p["inr"]["ngp"].update(levels=12, features=64, new_leaf=1)
    p["inr"]["hidden_features"] = 512
    (ws / "params.yaml").write_text(yaml.safe_dump(p))
    report = guard.validate(snap, RANGES, ())
    assert report.params == {**NGP_INR, "ngp": {**NGP, "levels": 12}}
    text = "\n".join(report.reverted)
    for reason in ("inr.ngp.features = 64: expected a value in [1, 8]", "inr.ngp.new_leaf = 1 added",
                   "inr.hidden_features = 512: inr.model = ngp does not use it"):  # fmt: skip
        assert reason in text
    assert report.kept == ["inr.ngp.levels 16 -> 12"]


def test_guard_judges_keys_by_the_new_model(tmp_path: Path) -> None:
    """Switching ngp -> siren_txy and widening the SIREN in one edit: both kept (the width is read after the switch)."""
    ws = make_workspace(tmp_path / "ws", dvc=False)
    (ws / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "inr": NGP_INR}, sort_keys=False))
    snap = guard.snapshot(ws)
    p = yaml.safe_load((ws / "params.yaml").read_text())
    p["inr"].update(model="siren_txy", hidden_features=512)
    (ws / "params.yaml").write_text(yaml.safe_dump(p))
    report = guard.validate(snap, RANGES, ())
    assert (report.params["model"], report.params["hidden_features"]) == ("siren_txy", 512) and not report.reverted


def test_journal_and_memory_read_nested_keys(tmp_path: Path) -> None:
    """A child that changed ngp.levels is credited to ngp.levels; a child that changed only the ignored
    hidden_features (and got total_steps capped) is no hidden_features move."""
    root = node(1, None, 0.95, NGP_INR)
    up = node(2, 1, 0.97, {**NGP_INR, "ngp": {**NGP, "levels": 18}}, mutation="ngp.levels 16 -> 18")
    noop = node(3, 1, 0.90, {**NGP_INR, "hidden_features": 512, "total_steps": 1000}, mutation="hidden_features")
    journal = Journal(tmp_path / "journal.jsonl")
    for n in (root, up, noop):
        journal.append(n)
    loaded = journal.load()
    assert loaded[1].params["ngp"]["levels"] == 18 and loaded == [root, up, noop]
    lines = principles(loaded)
    assert "- ngp.levels up: improved R2 in 1/1 tries (helps)" in lines
    assert not [line for line in lines if "hidden_features" in line]
    memory = render_memory(loaded, "inr", 8)
    assert "ngp.levels 16 -> 18" in memory
