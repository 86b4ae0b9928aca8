"""The classical rival stopped early: its curve reaches the solver's own solution, a warm start from that solution
is already there, every point pays for the assembly, the set-up and the prior and every iteration for its
preconditioner, a known jitter shows as its spread, the rivals are deterministic; bad input."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from support_slow import slowed
from test_refine import SPACING, layered_limb, rel

from fieldlab.errors import InputError
from fieldlab.potential.evaluation import front
from fieldlab.potential.evaluation.classical import cg as rivals
from fieldlab.potential.evaluation.classical.curve import Curve
from fieldlab.potential.evaluation.classical.twogrid import twogrid_curve
from fieldlab.potential.physics.fem import multigrid, solver
from fieldlab.potential.schema import PotentialSample


def as_sample(sigma: np.ndarray, f: np.ndarray, u: np.ndarray) -> PotentialSample:
    tissue = np.any(sigma != 0, axis=-1)
    z = np.zeros((2, 3))
    return PotentialSample(sigma, f, tissue, tissue.astype(np.uint8), u, SPACING, z, z.astype(np.int64))


@pytest.mark.parametrize("method", sorted(rivals.RIVAL_METHODS))
def test_the_curve_falls_to_the_solvers_solution(method):
    """Cold CG on the sample's own system: the error against the solver's 1e-12 solution falls (CG minimises the
    energy norm, so the L2 error may stall for an iteration but not grow tenfold) and is below 1e-6 by 20."""
    sigma, f, u = layered_limb()
    tissue = np.any(sigma != 0, axis=-1)
    ks = (1, 2, 4, 8, 20)
    curve = rivals.cg_curve(as_sample(sigma, f, u), ks, *rivals.RIVAL_METHODS[method])
    errors = [rel(v, u, tissue) for v in curve.fields]
    assert errors[0] > 1e-2 and errors[-1] < 1e-6, errors
    assert all(b < 10 * a for a, b in itertools.pairwise(errors)), errors
    assert errors[2] < 0.1 * errors[0]


def test_every_iteration_pays_for_its_preconditioner(monkeypatch):
    """A slow stub in the coarsest-level solve of the geometric hierarchy: every CG iteration applies the V-cycle
    once, and every V-cycle solves the coarsest level once, so ``k'`` iterations cost at least ``(k' - k)`` delays
    more than ``k`` (measured from the stub, not from the curve's own clock)."""
    delay = 0.05
    monkeypatch.setattr(multigrid.CoarseSolve, "__call__", slowed(multigrid.CoarseSolve.__call__, delay))
    sigma, f, u = layered_limb()
    ks = (1, 2, 5)
    curve = rivals.cg_curve(as_sample(sigma, f, u), ks, "gmg")
    assert curve.counts == ks and curve.seconds[0] >= delay
    for (k0, t0), (k1, t1) in itertools.pairwise(zip(ks, curve.seconds, strict=True)):
        assert t1 - t0 >= (k1 - k0) * delay, (ks, curve.seconds)


def test_a_warm_start_at_the_solution_starts_near_it():
    """Started from the solution's voxel-centre values plus a constant (the gauge is no error), one iteration is
    within the centre-to-corner transfer's defect of the solution, over five times nearer than a cold iteration; a few
    more remove the defect."""
    sigma, f, u = layered_limb()
    tissue = np.any(sigma != 0, axis=-1)
    sample = as_sample(sigma, f, u)
    warm = rivals.cg_curve(sample, (1, 8), start=np.where(tissue, u + 3.0, 0.0))
    cold = rivals.cg_curve(sample, (1,))
    assert rel(warm.fields[0], u, tissue) < 0.2 * rel(cold.fields[0], u, tissue)
    assert rel(warm.fields[1], u, tissue) < 1e-6


def test_every_point_pays_for_assembly_setup_and_prior(monkeypatch):
    """Slow stubs in the assembly and the multigrid set-up show in every point's seconds; a warm point also pays
    the prior's seconds it is given, a cold one does not."""
    delay = 0.1

    monkeypatch.setattr(solver, "assemble", slowed(solver.assemble, delay))
    monkeypatch.setattr(solver, "build_hierarchy", slowed(solver.build_hierarchy, delay))
    sigma, f, u = layered_limb()
    sample = as_sample(sigma, f, u)
    curve = rivals.cg_curve(sample, (1, 3))
    assert min(curve.seconds) >= 2 * delay
    tissue = np.any(sigma != 0, axis=-1)
    front = rivals.rival_front([sample], [tissue], (1, 3), ("gmg",), 1, [0.5 * u], [7.0])
    assert sorted(front) == ["cg_gmg_k1", "cg_gmg_k3", "cg_gmg_warm_k1", "cg_gmg_warm_k3"]
    assert all(front[f"cg_gmg_k{k}"]["seconds"] < 7.0 for k in (1, 3))
    assert all(front[f"cg_gmg_warm_k{k}"]["seconds"] >= 7.0 + 2 * delay for k in (1, 3))
    assert front["cg_gmg_warm_k1"]["rel_l2"] < front["cg_gmg_k1"]["rel_l2"]  # half the solution beats zero


def test_bad_input_is_one_error():
    sigma, f, u = layered_limb()
    sample = as_sample(sigma, f, u)
    tissue = np.any(sigma != 0, axis=-1)
    with pytest.raises(InputError, match=r"rival iterations = \[0\]"):
        rivals.cg_curve(sample, (0,))
    with pytest.raises(InputError, match=r"expected methods of mf, fmg, gmg, sa_jacobi, sa_energy"):
        rivals.rival_front([sample], [tissue], (1,), ("amg",), 1)
    with pytest.raises(InputError, match="start has shape"):
        rivals.cg_curve(sample, (1,), start=u[:-1])


def test_the_restricted_rival_reaches_the_coarse_solve():
    """Multigrid-CG on the sample restricted to cells of 4 mm, run to convergence and prolonged back, is the
    coarse_fem prior at 4 mm solved tightly: the same restriction, the same Q1 system, the same prolongation (a path
    through solve_corners instead of the rival's own CG). 32x16x16 voxels: the 4 mm system is too large for one
    V-cycle's direct coarsest solve, so one iteration is not yet the solve."""
    from fieldlab.potential.physics.fem.coarse import coarse_fem_prior

    sigma, f, u = layered_limb((32, 16, 16))
    tissue = np.any(sigma != 0, axis=-1)
    sample = as_sample(sigma, f, u)
    curve = rivals.restricted_cg_curve(sample, 4e-3, (1, 30))
    prior, _ = coarse_fem_prior(sample, 4e-3, tol=1e-12)
    assert rel(curve.fields[1], prior, tissue) < 1e-8
    assert rel(curve.fields[0], prior, tissue) > 1e-3  # one iteration is not the solve
    assert rel(curve.fields[1], u, tissue) > 1e-3  # and the coarse solve is not the fine one


def test_the_restricted_rival_pays_for_the_restriction(monkeypatch):
    delay = 0.1
    monkeypatch.setattr(rivals, "restrict", slowed(rivals.restrict, delay))
    sigma, f, u = layered_limb((16, 8, 8))
    curve = rivals.restricted_cg_curve(as_sample(sigma, f, u), 4e-3, (1, 2))
    assert min(curve.seconds) >= delay


def test_the_front_of_every_rival():
    """On a 2x sample (16x8x8 over the training grid 8x4x4) the front holds multigrid-CG cold and warm, the two-grid
    cycle cold and warm and the restricted CG (cold only); on a sample of the training grid no restricted point.
    One run has no seconds spread."""
    sigma, f, u = layered_limb((16, 8, 8))
    tissue = np.any(sigma != 0, axis=-1)
    sample = as_sample(sigma, f, u)
    spec = rivals.TwoGridSpec((1, 3), 1, 4e-3)
    front = rivals.rival_front(
        [sample], [tissue], (1, 2), ("gmg",), 2, [0.5 * u], [7.0], twogrid=spec, training_grid=(8, 4, 4)
    )
    assert sorted(front) == sorted(
        [f"cg_gmg{w}_k{k}" for w in ("", "_warm") for k in (1, 2)]
        + [f"twogrid_4mm{w}_v{c}" for w in ("", "_warm") for c in (1, 3)]
        + ["cg_gmg_r4mm_k1", "cg_gmg_r4mm_k2"]
    )
    assert front["twogrid_4mm_warm_v1"]["seconds"] >= 7.0 > front["twogrid_4mm_v1"]["seconds"]
    assert front["twogrid_4mm_v3"]["rel_l2"] < front["twogrid_4mm_v1"]["rel_l2"]
    same = rivals.rival_front([sample], [tissue], (1,), ("gmg",), 1, twogrid=spec, training_grid=(16, 8, 8))
    assert sorted(same) == ["cg_gmg_k1", "twogrid_4mm_v1", "twogrid_4mm_v3"]
    assert all(p["seconds_spread"] == 0 for p in same.values())


def test_a_known_jitter_is_the_seconds_spread(monkeypatch):
    """A stub in the assembly sleeps 0.4, 0.8 then 1.2 s in three rounds, and every point of the run pays it: its
    rounds take ``b_i + delay_i`` with ``b_i`` the rival's own time, so the spread ``(max - min) / median`` is
    ``(0.8 + b_3 - b_1) / (0.8 + b_2)``: the injected 1.0 up to ``b_i <= b``, between ``(0.8 - b) / (0.8 + b)`` and
    ``(0.8 + b) / 0.8``, and the median at least 0.8 s. ``b`` is bounded from an unstubbed run (three times its
    seconds, plus 50 ms for a busy machine)."""
    sigma, f, u = layered_limb()
    tissue = np.any(sigma != 0, axis=-1)
    sample = as_sample(sigma, f, u)
    b = 3 * max(rivals.cg_curve(sample, (1, 2)).seconds) + 0.05
    delays = iter([0.4, 0.8, 1.2])
    real = solver.assemble

    def jittered(*args, **kw):
        time.sleep(next(delays))
        return real(*args, **kw)

    monkeypatch.setattr(solver, "assemble", jittered)
    variant = rivals.Variant(("k1", "k2"), lambda: rivals.cg_curve(sample, (1, 2)))
    front = rivals.curve_front([sample], [tissue], [[variant]], 3)
    for p in front.values():
        assert (0.8 - b) / (0.8 + b) <= p["seconds_spread"] <= (0.8 + b) / 0.8, (p, b)
        assert p["seconds"] >= 0.8


def test_the_rivals_are_deterministic():
    """Two runs of every rival give the same fields bit for bit (pyamg's algebraic set-up is seeded): why the front
    reports no spread of their errors."""
    sigma, f, u = layered_limb((16, 8, 8))
    sample = as_sample(sigma, f, u)
    runs = [lambda m=m: rivals.cg_curve(sample, (1, 3), *rivals.RIVAL_METHODS[m]) for m in rivals.RIVAL_METHODS]
    runs += [lambda: twogrid_curve(sample, (1, 2), (2, 2, 2)), lambda: rivals.restricted_cg_curve(sample, 4e-3, (2,))]
    for run in runs:
        first, second = run(), run()
        assert all(np.array_equal(a, b) for a, b in zip(first.fields, second.fields, strict=True))


class Clocked:
    """A fake curve run: one point whose seconds come from ``times`` in turn and whose field is ``field``."""

    def __init__(self, times, field):
        self.times, self.field = iter(times), field

    def __call__(self):
        return Curve((1,), (next(self.times),), (self.field,))


def test_median_and_spread_of_hand_timed_runs():
    """Three rounds of 1.0, 1.5 and 0.5 s on one sample and 2, 2, 2 s on another, plus a prior of 1 s: the seconds
    are the mean of the medians (2 and 3), the spread the median over samples of (max - min) / median (0.5 and 0)."""
    sigma, f, u = layered_limb()
    tissue = np.any(sigma != 0, axis=-1)
    s = as_sample(sigma, f, u)
    runs = [
        [rivals.Variant(("p",), Clocked([1.0, 1.5, 0.5], u), 1.0)],
        [rivals.Variant(("p",), Clocked([2.0, 2.0, 2.0], 0.5 * u), 1.0)],
    ]
    front = rivals.curve_front([s, s], [tissue, tissue], runs, 3)
    assert front["p"]["seconds"] == pytest.approx(2.5)
    assert front["p"]["seconds_spread"] == pytest.approx(0.25)  # median of 1.0 / 2.0 and 0
    assert front["p"]["rel_l2"] == pytest.approx(0.25) and front["p"]["rel_l2_max"] == pytest.approx(0.5)


def pts(**kw):
    """``name=(rel_l2, seconds[, seconds_spread])`` -> points."""
    return {n: {"rel_l2": v[0], "seconds": v[1], "seconds_spread": v[2] if len(v) > 2 else 0.0} for n, v in kw.items()}


def test_front_members_without_spread_is_the_pareto_front_less_exact_ties():
    """From a sketch: a (fast, coarse), d (between) and c (slow, fine) are on the front; b is beaten by d on both
    axes; e ties a in time and is worse. Two identical points match each other: neither is a clear member."""
    points = pts(a=(0.20, 0.1), b=(0.05, 0.6), c=(0.001, 2.0), d=(0.01, 0.5), e=(0.3, 0.1))
    assert front.front_members(points) == ["a", "d", "c"]
    assert front.front_members(pts(x=(0.1, 1.0), y=(0.1, 1.0))) == []
    assert front.front_members(pts(x=(0.1, 1.0), y=(0.1, 1.0), z=(0.01, 3.0))) == ["z"]


def test_front_members_allow_for_the_larger_spread():
    """m is 5 % faster than n and less accurate: without spread both are members; with a 10 % spread on either one n
    is within m's reach in time and at least as accurate, so m is a tie, not a clear member, and n stays (m is not
    as accurate as n). A spread on the error axis works the same way."""
    assert front.front_members(pts(m=(0.02, 1.0), n=(0.01, 1.05))) == ["m", "n"]
    assert front.front_members(pts(m=(0.02, 1.0, 0.1), n=(0.01, 1.05))) == ["n"]
    assert front.front_members(pts(m=(0.02, 1.0), n=(0.01, 1.05, 0.1))) == ["n"]
    assert front.front_members(pts(m=(0.02, 1.0, 0.01), n=(0.01, 1.05, 0.01))) == ["m", "n"]
    close = {"m": {"rel_l2": 0.0100, "seconds": 1.0}, "n": {"rel_l2": 0.0104, "seconds": 0.5, "rel_l2_spread": 0.05}}
    assert front.front_members(close) == ["n"]


def test_every_member_is_on_the_plain_front():
    rng = np.random.default_rng(0)
    for _ in range(50):
        raw = rng.uniform(0.01, 1.0, size=(12, 3))
        points = {str(i): {"rel_l2": e, "seconds": t, "seconds_spread": 0.2 * s} for i, (e, t, s) in enumerate(raw)}
        plain = {
            n
            for n, p in points.items()
            if not any(
                q["rel_l2"] <= p["rel_l2"] and q["seconds"] <= p["seconds"] and q != p for m, q in points.items()
            )
        }
        members = front.front_members(points)
        assert set(members) <= plain
        assert [points[n]["seconds"] for n in members] == sorted(points[n]["seconds"] for n in members)
