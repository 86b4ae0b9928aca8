"""The rivals on the stencil core: multigrid-CG on stencils falls to the solver's own solution and starts at it from
it; nested iteration's first point is the coarse solve prolonged (the coarse_fem prior of the same restriction), its
fine iterations reach the fine solution, and every point pays for the restriction; both join the front at 2x."""

from __future__ import annotations

import numpy as np
import pytest
from support_slow import slowed
from test_refine import layered_limb, rel
from test_rivals import as_sample

from fieldlab.errors import InputError
from fieldlab.potential.evaluation.classical import cg as rivals
from fieldlab.potential.evaluation.classical.stencil_rivals import mf_cg_curve, nested_curve
from fieldlab.potential.physics.fem import stencil_solve
from fieldlab.potential.physics.fem.coarse import coarse_fem_prior


def test_stencil_cg_falls_to_the_solvers_solution():
    """Cold multigrid-CG on stencils against the assembled solver's 1e-12 solution: the error falls by more than
    ten per two iterations at first and is below 1e-6 by 20 iterations."""
    sigma, f, u = layered_limb((32, 16, 16))
    tissue = np.any(sigma != 0, axis=-1)
    curve = mf_cg_curve(as_sample(sigma, f, u), (1, 3, 20))
    errors = [rel(v, u, tissue) for v in curve.fields]
    assert errors[1] < 0.1 * errors[0] and errors[2] < 1e-6
    assert list(curve.seconds) == sorted(curve.seconds)


def test_a_warm_stencil_start_at_the_solution_starts_near_it():
    """As on the assembled system: from the solution's voxel-centre values plus a constant (the gauge is no error),
    one iteration is over five times nearer than a cold one and a few more remove the centre-to-corner defect."""
    sigma, f, u = layered_limb()
    tissue = np.any(sigma != 0, axis=-1)
    sample = as_sample(sigma, f, u)
    warm = mf_cg_curve(sample, (1, 8), start=np.where(tissue, u + 3.0, 0.0))
    cold = mf_cg_curve(sample, (1,))
    assert rel(warm.fields[0], u, tissue) < 0.2 * rel(cold.fields[0], u, tissue)
    assert rel(warm.fields[1], u, tissue) < 1e-6
    with pytest.raises(InputError, match="start has shape"):
        mf_cg_curve(sample, (1,), start=u[:-1])


def test_full_multigrid_rival_starts_near_the_solution_and_runs_cold_only():
    """``cg_fmg_k0`` is full multigrid alone: on a smooth layered limb it is already within a few percent of the
    1e-12 solution (nested iteration over the Galerkin levels, to the discretisation error of each), under half
    the error of one cold CG iteration, and CG from it falls below 1e-6 in 12 iterations; a prior gives it no warm
    variant (full multigrid is its own start)."""
    sigma, f, u = layered_limb((32, 16, 16))
    tissue = np.any(sigma != 0, axis=-1)
    sample = as_sample(sigma, f, u)
    fmg = mf_cg_curve(sample, (0, 1, 12), full_multigrid=True)
    cold = mf_cg_curve(sample, (1,))
    errors = [rel(v, u, tissue) for v in fmg.fields]
    assert errors[0] < 0.05 and errors[0] < 0.5 * rel(cold.fields[0], u, tissue)
    assert errors[1] < errors[0] and errors[2] < 1e-6
    assert list(fmg.seconds) == sorted(fmg.seconds) and fmg.seconds[0] > 0
    front = rivals.rival_front([sample], [tissue], (1,), ("fmg",), 1, [0.5 * u], [7.0], restricted_methods=())
    assert sorted(front) == ["cg_fmg_k0", "cg_fmg_k1"]


def test_nested_iteration_starts_at_the_coarse_solve_and_reaches_the_fine_one():
    """k = 0 is the 4 mm solve of the restricted sample (the coarse_fem prior's restriction, solved tightly there)
    at the fine voxels: the mean of a trilinear field over a fine cell's corners is its value at the centre, so it
    agrees with the prior's exact evaluation to the coarse solve's tolerance where every corner is defined; fine CG
    iterations then take it to the fine solution."""
    sigma, f, u = layered_limb((32, 16, 16))
    tissue = np.any(sigma != 0, axis=-1)
    curve = nested_curve(as_sample(sigma, f, u), 4e-3, (0, 2, 20))
    prior, _ = coarse_fem_prior(as_sample(sigma, f, u), 4e-3, tol=1e-12)
    inner = tissue.copy()
    inner[:4], inner[-4:], inner[:, :4], inner[:, -4:], inner[:, :, :4], inner[:, :, -4:] = (False,) * 6
    assert rel(curve.fields[0], prior, inner) < 1e-4
    errors = [rel(v, u, tissue) for v in curve.fields]
    assert errors[0] > 1e-3 and errors[1] < 0.1 * errors[0] and errors[2] < 1e-6


def test_nested_iteration_pays_for_the_restriction(monkeypatch):
    delay = 0.1
    monkeypatch.setattr(stencil_solve, "restrict", slowed(stencil_solve.restrict, delay))
    sigma, f, u = layered_limb((16, 8, 8))
    curve = nested_curve(as_sample(sigma, f, u), 4e-3, (0, 1))
    assert min(curve.seconds) >= delay
    with pytest.raises(InputError, match="nested_iterations"):
        nested_curve(as_sample(sigma, f, u), 4e-3, (-1,))


def test_both_join_the_front_at_2x():
    """On a 2x sample (16x8x8 over the training grid 8x4x4) the front holds stencil CG cold and warm and nested
    iteration from the training grid; on a sample of the training grid no nested point."""
    sigma, f, u = layered_limb((16, 8, 8))
    tissue = np.any(sigma != 0, axis=-1)
    sample = as_sample(sigma, f, u)
    front = rivals.rival_front(
        [sample],
        [tissue],
        (1, 2),
        ("mf",),
        1,
        [0.5 * u],
        [7.0],
        training_grid=(8, 4, 4),
        restricted_methods=(),
        nested_iterations=(0, 1),
    )
    assert sorted(front) == sorted(
        [f"cg_mf{w}_k{k}" for w in ("", "_warm") for k in (1, 2)] + ["nested_4mm_k0", "nested_4mm_k1"]
    )
    assert front["cg_mf_warm_k1"]["seconds"] >= 7.0 > front["cg_mf_k1"]["seconds"]
    same = rivals.rival_front([sample], [tissue], (1,), ("mf",), 1, training_grid=(16, 8, 8), nested_iterations=(1,))
    assert sorted(same) == ["cg_mf_k1"]
