"""The hybrid's solver sweeps: convergence to the discrete FEM solution, the gauge, the restricted problem at 2x and
the classical two-grid twin; bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fieldlab.errors import InputError
from fieldlab.potential.physics.fem.coarse import coarse_fem_prior
from fieldlab.potential.physics.fem.solver import solve_potential
from fieldlab.potential.prediction.sweeps import Refiner, refine_prior, restricted_problem, smooth_potential
from fieldlab.potential.schema import load_sample

SPACING = (2e-3, 2e-3, 2e-3)


def layered_limb(shape=(16, 8, 8)):
    """An anisotropic muscle block with a fat layer, an air margin and one bipole; its FEM solution (corpus gauge)."""
    D, H, W = shape
    sigma = np.zeros((D, H, W, 6))
    sigma[1:-1, 1:-1, 1:-1, :3] = (0.2455, 0.2455, 1.2275)
    sigma[1:-1, 1:3, 1:-1, :3] = 0.04  # fat along one side
    f = np.zeros((D, H, W))
    f[4, 4, 4], f[11, 5, 4] = 1e6, -1e6  # A/m^3
    u, _ = solve_potential(sigma, f, SPACING, 1e-12)
    return sigma, f, u


def rel(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.linalg.norm((a - b)[mask]) / np.linalg.norm(b[mask]))


def test_sweeps_from_zero_converge_to_the_discrete_solution():
    """Started from zero the sweeps are Gauss-Seidel on the FEM system (the gauge kept at zero mean): the
    error against the solver's own solution falls with every batch of sweeps and vanishes in the limit."""
    sigma, f, u = layered_limb()
    tissue = np.any(sigma != 0, axis=-1)
    errors = [rel(smooth_potential(np.zeros_like(u), sigma, f, SPACING, k), u, tissue) for k in (1, 4, 16, 64)]
    assert errors[0] < 1.0 and all(b < a for a, b in itertools.pairwise(errors))
    assert rel(smooth_potential(np.zeros_like(u), sigma, f, SPACING, 3000), u, tissue) < 1e-6


def test_the_solution_is_the_limit_and_a_perturbed_one_improves():
    """Started from the discrete solution the sweeps return to it (the transfer to corners is not exact, the
    sweeps remove what it adds); a smooth perturbation of it is reduced by the sweeps."""
    sigma, f, u = layered_limb()
    tissue = np.any(sigma != 0, axis=-1)
    assert rel(smooth_potential(u, sigma, f, SPACING, 3000), u, tissue) < 1e-6
    z = np.linspace(-1, 1, u.shape[0])[:, None, None] * np.ones(u.shape)
    noisy = np.where(tissue, u + 0.2 * np.abs(u).max() * np.sin(3 * z), 0.0)
    before = rel(noisy, u, tissue)
    after = rel(smooth_potential(noisy, sigma, f, SPACING, 200), u, tissue)
    assert after < 0.25 * before


def test_gauge_and_air_are_kept():
    """A constant added to the start comes out unchanged (the sweeps move no gauge); air values pass through."""
    sigma, f, u = layered_limb()
    tissue = np.any(sigma != 0, axis=-1)
    start = np.where(tissue, 0.5 * u, 7.0)
    a = smooth_potential(start, sigma, f, SPACING, 8)
    b = smooth_potential(start + 3.0, sigma, f, SPACING, 8)
    np.testing.assert_allclose(b[tissue] - a[tissue], 3.0, rtol=0, atol=1e-9)
    assert np.all(a[~tissue] == 7.0)


def test_bad_input_is_one_error():
    sigma, f, u = layered_limb()
    with pytest.raises(InputError, match=r"eval\.refine_sweeps = -1"):
        smooth_potential(u, sigma, f, SPACING, -1)
    with pytest.raises(InputError, match="expected the sample's grid"):
        smooth_potential(u[:-1], sigma, f, SPACING, 2)
    bad = u.copy()
    bad[5, 4, 4] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        smooth_potential(bad, sigma, f, SPACING, 2)


def test_restricted_problem_at_2x_and_the_two_grid_twin(tmp_path):
    """At 2x the sweeps run on the sample restricted to the training grid (half the cells, twice the spacing, the
    bipole kept); converged, the sweeps there are the coarse_fem prior at the training spacing."""
    from support_train import write_corpus

    root = write_corpus(tmp_path / "potential")
    fine = load_sample(root / "test_2x" / "0000.npz")
    grid = tuple(n // 2 for n in fine.shape)
    p = restricted_problem(fine, grid)
    assert p.sigma.shape[:3] == grid
    np.testing.assert_allclose(p.grid.spacing, 2 * np.asarray(fine.spacing, dtype=np.float64), rtol=1e-6)
    dv, dV = float(np.prod(fine.spacing, dtype=np.float64)), float(np.prod(p.grid.spacing))
    dipole = [  # the bipole's moment sum I r along the limb axis: a cell keeps its current at its centre
        np.sum(src * (np.arange(src.shape[0]) + 0.5)[:, None, None] * h) * vol
        for src, h, vol in ((fine.source.astype(np.float64), dv ** (1 / 3), dv), (p.source, dV ** (1 / 3), dV))
    ]
    assert dipole[1] == pytest.approx(dipole[0], rel=0.05)
    assert abs(p.source.sum()) < 1e-6 * np.abs(p.source).sum()  # no net current (the solver's own tolerance)
    with pytest.raises(InputError, match="one whole multiple"):
        restricted_problem(fine, (grid[0], grid[1] + 1, grid[2]))

    def ident(t):
        return t

    # converged, the sweeps on the restricted sample forget their start and, prolonged as a Q1 field, are the
    # coarse_fem prior at the training spacing: the same restriction solved by the AMG solver (independent path)
    h = float(p.grid.spacing[2])
    truth = torch.from_numpy(coarse_fem_prior(fine, h, tol=1e-12)[0]).float()[None, None]
    refiner = Refiner.for_sample(fine, 3000, ident, ident, grid)
    tissue = torch.from_numpy(np.asarray(fine.mask, dtype=bool))[None, None]
    for start in (torch.zeros(1, 1, *fine.shape), torch.randn(1, 1, *fine.shape)):
        got = refine_prior(start, refiner, grid)
        assert float((got - truth)[tissue].norm() / truth[tissue].norm()) < 1e-5
        assert torch.all(got[~tissue] == 0)
    base = Refiner.for_sample(fine, 0, ident, ident)  # zero sweeps on its own grid: the identity
    prior = torch.randn(1, 1, *fine.shape)
    torch.testing.assert_close(base(prior), prior)
