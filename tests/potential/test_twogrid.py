"""The two-grid cycle: its prolongation is trilinear interpolation, it converges to the solver's own solution, its
convergence factor per cycle does not grow with the grid, every point pays for the assembly and the set-up, and
each cycle for its coarse correction.

Independent truths:
- Trilinear interpolation reproduces any trilinear function of position exactly, and the factor-4 interpolant is
  the factor-2 one applied twice (the 1D hat functions of a coarse corner are sums of fine ones).
- With an exact coarse correction the cycle's error propagator ``S (I - P A_c^+ P^T A) S`` is an energy-norm
  contraction whose factor is bounded independently of the mesh size for a fixed coarsening ratio (Hackbusch 1985,
  ch. 6). Local Fourier analysis of the 3D Poisson problem with one Gauss-Seidel sweep each way and standard
  coarsening puts the factor near 0.2 (Trottenberg et al. 2001, sec. 2.5 and 4.6), well under the 0.5 required
  here; a conductivity jump on coarse-cell faces keeps Galerkin's coarse operator exact on the jump, so the factor
  stays bounded. Grid independence is checked as a ratio of the factors at 16^3 and 32^3 cells within 1.5.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support_slow import slowed
from test_refine import layered_limb, rel
from test_rivals import as_sample

from fieldlab.errors import InputError
from fieldlab.potential.evaluation.classical import twogrid
from fieldlab.potential.evaluation.classical.twogrid import TwoGrid, convergence_factor, twogrid_curve
from fieldlab.potential.physics.fem import solver
from fieldlab.potential.physics.fem.multigrid import trilinear_prolongator
from fieldlab.potential.physics.fem.solver import assemble


@pytest.mark.parametrize("factor", [(2, 2, 2), (4, 2, 1), (4, 4, 4)])
def test_the_prolongation_is_exact_on_trilinear_functions(factor):
    """Coarse corner values of ``f(z, y, x) = 1 + 2z - y + x/2 + 3zyx`` land on the fine corners as ``f`` itself;
    every row sums to one (constants, the Neumann null space, are prolonged exactly)."""
    shape = (9, 5, 13)
    rng = np.random.default_rng(0)
    nodes = np.sort(rng.choice(int(np.prod(shape)), 300, replace=False))
    P, coarse, cshape = trilinear_prolongator(nodes, shape, factor)
    assert cshape == tuple((n - 1) // r + 1 for n, r in zip(shape, factor, strict=True))

    def f(z, y, x):
        return 1 + 2 * z - y + 0.5 * x + 3 * z * y * x

    cz, cy, cx = np.unravel_index(coarse, cshape)
    fine = np.unravel_index(nodes, shape)
    coarse_values = f(*(c * r for c, r in zip((cz, cy, cx), factor, strict=True)))
    np.testing.assert_allclose(P @ coarse_values, f(*fine), atol=1e-10)
    np.testing.assert_allclose(np.asarray(P.sum(axis=1)).ravel(), 1.0, atol=1e-14)


def test_factor_four_is_two_factor_two_prolongators_composed():
    """The hat function of a coarse corner 4 cells apart is the sum of the factor-2 hats it spans, so prolonging by 4
    equals prolonging by 2 twice, restricted to the active rows and the coarse unknowns they reach."""
    shape = (9, 9, 9)
    rng = np.random.default_rng(1)
    nodes = np.sort(rng.choice(729, 500, replace=False))
    P1, c1, s1 = trilinear_prolongator(np.arange(729), shape)
    Q, cq, _ = trilinear_prolongator(c1, s1)
    composed = (P1 @ Q)[nodes]
    used = np.diff(composed.tocsc().indptr) > 0
    P4, c4, _ = trilinear_prolongator(nodes, shape, (4, 4, 4))
    assert np.array_equal(cq[used], c4)
    assert abs(composed[:, used] - P4).max() < 1e-15


@pytest.mark.parametrize(("shape", "factor"), [((16, 8, 8), (2, 2, 2)), ((32, 16, 16), (4, 4, 4))])
def test_the_cycle_converges_to_the_solvers_solution(shape, factor):
    """Cold cycles on the layered limb (anisotropic muscle, fat, an air margin): the error against the solver's
    1e-12 solution falls every cycle and reaches 1e-8; at the coarsening of the 2x grid (4) as at the base one (2)."""
    sigma, f, u = layered_limb(shape)
    tissue = np.any(sigma != 0, axis=-1)
    cycles = (1, 2, 4, 8, 30)
    curve = twogrid_curve(as_sample(sigma, f, u), cycles, factor, smoothing=1)
    errors = [rel(v, u, tissue) for v in curve.fields]
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-8, errors


def test_every_cycle_pays_for_its_coarse_correction(monkeypatch):
    """A slow stub in the coarse-grid correction (called once per cycle, so each cycle costs at least its delay):
    the seconds of ``c'`` cycles exceed those of ``c`` by at least ``(c' - c)`` delays, and the first point pays for
    its cycle. A curve that read each point's clock at the wrong cycle would fall short."""
    delay = 0.05
    monkeypatch.setattr(TwoGrid, "coarse_correction", slowed(TwoGrid.coarse_correction, delay))
    sigma, f, u = layered_limb()
    cycles = (1, 2, 5)
    curve = twogrid_curve(as_sample(sigma, f, u), cycles, (2, 2, 2))
    assert curve.counts == cycles and curve.seconds[0] >= delay
    for (c0, t0), (c1, t1) in itertools.pairwise(zip(cycles, curve.seconds, strict=True)):
        assert t1 - t0 >= (c1 - c0) * delay, (cycles, curve.seconds)


def heterogeneous(n: int) -> tuple:
    """``n^3`` cells of 1 m: muscle (1:5 anisotropic) in the lower half along D, fat (0.04 S/m) above, the jump on a
    face of the coarse cells; the system and its two-grid cycle with one sweep each way and coarsening 2."""
    sigma = np.zeros((n, n, n, 6))
    sigma[: n // 2, ..., :3] = (0.2455, 0.2455, 1.2275)
    sigma[n // 2 :, ..., :3] = 0.04
    A, nodes = assemble(sigma, np.ones((n, n, n), dtype=bool), (1.0, 1.0, 1.0))
    return TwoGrid(A, nodes, (n + 1,) * 3, (2, 2, 2), smoothing=1)


def test_the_convergence_factor_is_grid_independent():
    small, large = (convergence_factor(heterogeneous(n), cycles=12) for n in (16, 32))
    assert 0 < small < 0.5 and 0 < large < 0.5, (small, large)
    assert large < 1.5 * small and small < 1.5 * large, (small, large)


def test_more_smoothing_contracts_more():
    tg = heterogeneous(16)
    one = convergence_factor(tg)
    tg.smoothing = 2
    assert convergence_factor(tg) < one


def test_a_warm_start_at_the_solution_starts_near_it_and_every_point_pays_assembly_and_setup(monkeypatch):
    """Slow stubs in the assembly and the coarse set-up show in every point's seconds, cold and warm; started from
    the solution's centre values plus a constant (no error: gauge), one cycle is within the centre-to-corner
    transfer's defect, over five times nearer than a cold cycle (as multigrid-CG's warm start)."""
    delay = 0.1
    monkeypatch.setattr(solver, "assemble", slowed(solver.assemble, delay))
    monkeypatch.setattr(twogrid, "geometric_hierarchy", slowed(twogrid.geometric_hierarchy, delay))
    sigma, f, u = layered_limb()
    tissue = np.any(sigma != 0, axis=-1)
    sample = as_sample(sigma, f, u)
    cold = twogrid_curve(sample, (1, 2), (2, 2, 2))
    warm = twogrid_curve(sample, (1,), (2, 2, 2), start=np.where(tissue, u + 3.0, 0.0))
    assert min(cold.seconds) >= 2 * delay and warm.seconds[0] >= 2 * delay
    assert rel(warm.fields[0], u, tissue) < 0.2 * rel(cold.fields[0], u, tissue)


def test_factor_of_a_sample():
    sigma, f, u = layered_limb((16, 8, 8))  # 2 mm voxels
    sample = as_sample(sigma, f, u)
    assert twogrid.twogrid_factor(sample, 4e-3) == (2, 2, 2)
    assert twogrid.twogrid_factor(sample, 2e-3) is None  # no coarser than the voxels
    assert twogrid.twogrid_factor(sample, 6e-3) is None  # does not tile 16 voxels
    assert twogrid.twogrid_factor(sample, 8e-3) is None  # 2 cells along H, under the 4 a coarse grid needs


def test_bad_input_is_one_error():
    sigma, f, u = layered_limb()
    sample = as_sample(sigma, f, u)
    with pytest.raises(InputError, match=r"eval.twogrid_cycles = \[0\]"):
        twogrid_curve(sample, (0,), (2, 2, 2))
    with pytest.raises(InputError, match="start has shape"):
        twogrid_curve(sample, (1,), (2, 2, 2), start=u[:-1])
    with pytest.raises(InputError, match="whole multiple"):
        twogrid_curve(sample, (1,), (3, 2, 2))
    with pytest.raises(InputError, match="twogrid_smoothing = -1"):
        twogrid_curve(sample, (1,), (2, 2, 2), smoothing=-1)
