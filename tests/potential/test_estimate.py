"""The residual-based error estimate against the true error of perturbed FEM solutions on a small limb."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from fieldlab.config import PhantomConfig, PhysicsConfig
from fieldlab.core.seeding import numpy_rng
from fieldlab.errors import InputError
from fieldlab.potential import masking, metrics
from fieldlab.potential.estimate import centres_to_corners, estimate_error
from fieldlab.potential.physics.phantom import rasterise
from fieldlab.potential.physics.sampling import sample_limb
from fieldlab.potential.physics.solver import assemble, corners_to_centres, solve_potential

PHYSICS = PhysicsConfig(phantom=PhantomConfig(subsamples=2))
GRID = (48, 24, 24)  # 4 mm voxels: the default limb at half the base resolution
#: Effectivity band (estimate / truth) asserted for every perturbation. Two V-cycles leave ``rho^2 ~ 0.1`` of the
#: corner error in the energy norm (module notes of fieldlab.potential.estimate); the L2 norm over the mask weighs
#: modes differently, so the band is wider than 1 +- 0.13 but well inside the [0.5, 2] asked of the estimator.
BAND = (0.8, 1.25)
AMPLITUDES = (0.01, 0.03, 0.1, 0.3)


@pytest.fixture(scope="module")
def case():
    """A test limb, its FEM potential (tight tolerance), the loss mask and a coarse FEM potential interpolated."""
    limb, cond = sample_limb(numpy_rng(0, 2, 0), PHYSICS.phantom, PHYSICS.conductivity, PHYSICS.source)
    r = rasterise(limb, cond, GRID, 2)
    u, _ = solve_potential(r.sigma, r.source, r.spacing, 1e-11)
    muscle = masking.muscle_mask(torch.from_numpy(r.sigma), PHYSICS.conductivity.muscle) & torch.from_numpy(r.mask)
    singular = masking.singularity_mask(GRID, torch.from_numpy(r.source_index), 3.0)
    mask = masking.loss_mask(muscle, singular).numpy()
    rc = rasterise(limb, cond, tuple(n // 2 for n in GRID), 2)
    uc, _ = solve_potential(rc.sigma, rc.source, rc.spacing)
    up = F.interpolate(torch.from_numpy(uc)[None, None], size=GRID, mode="trilinear", align_corners=False)[0, 0]
    return r, u, mask, np.where(r.mask, up.numpy(), 0.0)


def true_rel(u_pred: np.ndarray, u: np.ndarray, mask: np.ndarray) -> float:
    """The evaluation's measure: metrics.relative_l2 over the mask."""
    t = [torch.from_numpy(np.asarray(a, dtype=np.float64))[None, None] for a in (u_pred, u, mask)]
    return float(metrics.relative_l2(t[0], t[1], t[2].bool())[0])


def perturbation(kind: str, u: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A perturbation of RMS ``rms_mask(u)`` over the mask: smooth (two box-scale modes) or rough (white noise)."""
    if kind == "smooth":
        zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in GRID], indexing="ij")
        p = np.cos(np.pi * xx) * np.sin(np.pi * zz) + 0.5 * yy
    else:
        p = np.random.default_rng(1).normal(size=GRID)
    return p * np.sqrt(np.mean(u[mask] ** 2) / np.mean(p[mask] ** 2))


def test_estimate_tracks_the_true_error(case):
    """Smooth and rough perturbations at four amplitudes and a coarse FEM solution: every effectivity in BAND and
    the estimates rank the predictions as the true errors do."""
    r, u, mask, coarse = case
    preds = {f"{k}_{a}": u + a * perturbation(k, u, mask) for k in ("smooth", "rough") for a in AMPLITUDES}
    preds["coarse_fem"] = coarse
    truth, est = [], []
    for name, u_pred in preds.items():
        e = estimate_error(u_pred, r.sigma, r.source, r.spacing, mask)
        t = true_rel(u_pred, u, mask)
        assert BAND[0] <= e.rel_l2 / t <= BAND[1], (name, e.rel_l2, t)
        truth.append(t)
        est.append(e.rel_l2)
    assert spearmanr(truth, est)[0] >= 0.8


def test_many_cycles_recover_the_error_field(case):
    """With 60 V-cycles (rho^60 ~ 1e-26) the estimated field is the true error field: the split into the transfer
    defect, the corrected corner error and the gauge constant is exact, not an approximation."""
    r, u, mask, coarse = case
    e = estimate_error(coarse, r.sigma, r.source, r.spacing, mask, cycles=60)
    tissue = r.mask
    true = coarse - u
    assert np.linalg.norm((e.error - true)[tissue]) < 1e-6 * np.linalg.norm(true[tissue])
    assert np.all(e.error[~tissue] == 0)


def test_more_cycles_do_not_loosen_the_estimate(case):
    r, u, mask, coarse = case
    t = true_rel(coarse, u, mask)
    gaps = [abs(estimate_error(coarse, r.sigma, r.source, r.spacing, mask, cycles=k).rel_l2 / t - 1) for k in (1, 2, 4)]
    assert gaps[2] <= gaps[1] <= gaps[0]


def test_exact_solution_and_offset(case):
    """The FEM solution itself scores far below the smallest amplitude tested; a constant offset (outside the corpus
    gauge) is error, exactly as the truth counts it."""
    r, u, mask, _ = case
    assert estimate_error(u, r.sigma, r.source, r.spacing, mask).rel_l2 < 0.1 * AMPLITUDES[0]
    offset = u + 0.05 * np.sqrt(np.mean(u[mask] ** 2))
    e = estimate_error(offset, r.sigma, r.source, r.spacing, mask).rel_l2
    assert e == pytest.approx(true_rel(offset, u, mask), rel=0.01)


def test_transfer_is_exact_for_linear_fields_at_interior_corners():
    """A linear field's mean over the eight voxels around an interior corner is its value at the corner."""
    shape = (5, 4, 6)
    mask = np.ones(shape, dtype=bool)
    sigma = np.zeros((*shape, 6))
    sigma[..., :3] = 1.0
    _, nodes = assemble(sigma, mask, (1.0, 1.0, 1.0))
    centres = np.indices(shape) + 0.5  # (3, D, H, W)
    corners = np.indices(tuple(n + 1 for n in shape)).reshape(3, -1)[:, nodes]
    a = np.array([0.3, -1.2, 2.0])
    x = centres_to_corners(np.tensordot(a, centres, axes=1), nodes, mask, sweeps=0)
    interior = np.all((corners > 0) & (corners < np.array(shape)[:, None]), axis=0)
    np.testing.assert_allclose(x[interior], (a @ corners)[interior], rtol=0, atol=1e-12)


def test_sweeps_shrink_the_transfer_defect(case):
    r, u, _, _ = case
    _, nodes = assemble(r.sigma, r.mask, r.spacing)
    defects = [
        np.linalg.norm((u - corners_to_centres(centres_to_corners(u, nodes, r.mask, s), nodes, r.mask))[r.mask])
        for s in (0, 1, 2)
    ]
    assert defects[2] < defects[1] < defects[0]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("empty_mask", "non-empty"),
        ("mask_in_air", "in air"),
        ("wrong_shape", "expected the sample's grid"),
        ("zero_cycles", "at least one V-cycle"),
    ],
)
def test_bad_arguments_are_refused(case, edit, message):
    r, u, mask, _ = case
    kw = {"u_pred": u, "mask": mask, "cycles": 2}
    if edit == "empty_mask":
        kw["mask"] = np.zeros_like(mask)
    elif edit == "mask_in_air":
        kw["mask"] = np.ones_like(mask)
    elif edit == "wrong_shape":
        kw["u_pred"] = u[:-1]
    else:
        kw["cycles"] = 0
    with pytest.raises(InputError, match=message):
        estimate_error(kw["u_pred"], r.sigma, r.source, r.spacing, kw["mask"], cycles=kw["cycles"])
