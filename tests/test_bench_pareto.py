"""``bench/pareto.py``'s point and front logic on hand-built sets, and its docstring examples."""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench" / "pareto.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_pareto", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstring_examples(bench):
    result = doctest.testmod(bench, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def pt(name: str, err: float, s: float) -> dict:
    return {"name": name, "kind": "fem", "rel_l2": err, "seconds": s}


def test_front_by_hand(bench):
    """Five points whose front is read off a sketch: a (fast, coarse) and c (slow, fine) and d (between them) are
    on it; b is beaten by d in both; e ties a in time and is worse. Two identical points dominate neither other."""
    points = [pt("a", 0.20, 0.1), pt("b", 0.05, 0.6), pt("c", 0.001, 2.0), pt("d", 0.01, 0.5), pt("e", 0.3, 0.1)]
    on = {p["name"] for p in bench.pareto(points) if p["on_front"]}
    assert on == {"a", "c", "d"}
    twins = bench.pareto([pt("x", 0.1, 1.0), pt("y", 0.1, 1.0)])
    assert all(p["on_front"] for p in twins)


def test_evaluation_points_of_one_checkpoint(bench):
    """An eval_sr result with the hybrid, a two-grid twin at base and a multigrid-CG rival at 2x: the operator (2x
    natively and restricted), the hybrid at both grids, each baseline where it was scored and of its own kind, each
    with the seconds of its own summary."""
    summary = {"rel_l2": 0.02, "rel_l2_max": 0.03, "seconds_per_sample": 0.4}
    ev = {
        "refine_sweeps": 32,
        "base": summary,
        "x2": {**summary, "rel_l2": 0.03, "seconds_per_sample": 3.0},
        "x2_restricted": {**summary, "rel_l2": 0.031, "seconds_per_sample": 0.9},
        "base_refined": {**summary, "rel_l2": 0.006, "seconds_per_sample": 0.8},
        "x2_restricted_refined": {**summary, "rel_l2": 0.013, "seconds_per_sample": 1.5},
        "baselines": {
            "coarse_4mm_sgs32": {"base": {"rel_l2": 0.011, "seconds": 0.5}},
            "cg_gmg_k3": {"x2": {"rel_l2": 0.009, "seconds": 2.1}},
        },
    }
    out = bench.evaluation_points("FNO", ev)
    base = {p["name"]: (p["kind"], p["rel_l2"], p["seconds"]) for p in out["base"]}
    assert base == {
        "FNO": ("model", 0.02, 0.4),
        "FNO +32 SGS": ("hybrid", 0.006, 0.8),
        "coarse_4mm_sgs32": ("coarse", 0.011, 0.5),
    }
    x2 = {p["name"]: (p["kind"], p["rel_l2"], p["seconds"]) for p in out["x2"]}
    assert x2 == {
        "FNO": ("model", 0.03, 3.0),
        "FNO (restricted)": ("model", 0.031, 0.9),
        "FNO +32 SGS (restricted)": ("hybrid", 0.013, 1.5),
        "cg_gmg_k3": ("cg", 0.009, 2.1),
    }
