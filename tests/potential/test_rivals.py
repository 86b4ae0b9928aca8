"""The classical rival stopped early: its curve reaches the solver's own solution, a warm start from that solution
is already there, and every point pays for the assembly, the set-up and the prior; bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support_slow import slowed
from test_refine import SPACING, layered_limb, rel

from fieldlab.errors import InputError
from fieldlab.potential import rivals
from fieldlab.potential.physics import multisource
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
    assert list(curve.seconds) == sorted(curve.seconds)  # later points cost at least as much


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

    monkeypatch.setattr(multisource, "assemble", slowed(multisource.assemble, delay))
    monkeypatch.setattr(multisource, "build_hierarchy", slowed(multisource.build_hierarchy, delay))
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
    with pytest.raises(InputError, match=r"expected methods of gmg, sa_jacobi, sa_energy"):
        rivals.rival_front([sample], [tissue], (1,), ("amg",), 1)
    with pytest.raises(InputError, match="start has shape"):
        rivals.cg_curve(sample, (1,), start=u[:-1])
