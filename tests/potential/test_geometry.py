"""Geometry encoder features (hand-derived cases, air handling) and the spacing conditioner's FiLM."""

from __future__ import annotations

import math

import pytest
import torch

from fieldlab.config import EncoderConfig
from fieldlab.errors import InputError
from fieldlab.potential.models.conditioning import SpacingConditioner
from fieldlab.potential.models.geometry import GeometryEncoder, conductivity_features


def voxel(xx, yy, zz, xy=0.0, xz=0.0, yz=0.0) -> torch.Tensor:
    """One voxel's tensor as a (1, 6, 1, 1, 1) field."""
    return torch.tensor([xx, yy, zz, xy, xz, yz], dtype=torch.float32).reshape(1, 6, 1, 1, 1)


@pytest.mark.parametrize(
    ("sigma", "expected"),
    [
        # muscle diag(0.2455, 0.2455, 1.2275) against sigma_ref 0.2455: log 1, log 1, log 5
        (voxel(0.2455, 0.2455, 1.2275), [0, 0, 0, math.log(5), 0, 0, 0]),
        # r_xy = 0.5 / sqrt(1 * 4) = 0.25, r_xz = 0.2 / sqrt(1 * 1) = 0.2, r_yz = -0.4 / sqrt(4 * 1) = -0.2
        (
            voxel(0.2455, 4 * 0.2455, 0.2455, 0.5 * 0.2455, 0.2 * 0.2455, -0.4 * 0.2455),
            [0, 0, math.log(4), 0, 0.25, 0.2, -0.2],
        ),
        (voxel(0, 0, 0), [1, 0, 0, 0, 0, 0, 0]),  # air: indicator only
    ],
    ids=["muscle", "off-diagonal", "air"],
)
def test_conductivity_features_hand_derived(sigma, expected):
    got = conductivity_features(sigma, sigma_ref=0.2455).flatten()
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float32), atol=1e-6)


def test_air_gives_finite_values_and_gradients():
    sigma = torch.zeros(1, 6, 2, 2, 2)
    sigma[:, :3, 1] = 0.3  # half tissue, half air
    sigma.requires_grad_(True)
    feats = conductivity_features(sigma, 0.1)
    feats.sum().backward()
    assert torch.isfinite(feats).all() and torch.isfinite(sigma.grad).all()


def test_pointwise_encoder_commutes_with_subsampling_and_conv_encoder_does_not():
    """A pointwise encoder is the same function of sigma at every voxel, so encoding then taking every other
    voxel equals encoding the subsampled field: the 1x and 2x encodings agree at shared points. A 3x3x3 kernel
    sees different neighbours on the two grids."""
    torch.manual_seed(0)
    sigma = torch.rand(1, 6, 8, 8, 8)
    sub = (..., slice(None, None, 2), slice(None, None, 2), slice(None, None, 2))
    point = GeometryEncoder(EncoderConfig(kind="pointwise", channels=4, hidden=8))
    assert torch.allclose(point(sigma)[sub], point(sigma[sub]), atol=1e-6)
    conv = GeometryEncoder(EncoderConfig(kind="conv", channels=4, hidden=8))
    assert not torch.allclose(conv(sigma)[sub], conv(sigma[sub]), atol=1e-3)


def test_encoder_rejects_wrong_channel_count():
    with pytest.raises(InputError, match=r"sigma has shape \(1, 3, 2, 2, 2\): expected \(B, 6, D, H, W\)"):
        GeometryEncoder(EncoderConfig())(torch.zeros(1, 3, 2, 2, 2))


def test_film_applies_scale_and_shift_per_channel():
    """With W_2 = 0 and b_2 = (gamma, beta) the conditioner computes h (1 + gamma) + beta exactly."""
    cond = SpacingConditioner(2, 4, (2e-3, 2e-3, 2e-3))
    with torch.no_grad():
        cond.mlp[-1].weight.zero_()
        cond.mlp[-1].bias.copy_(torch.tensor([0.5, -1.0, 3.0, 0.25]))  # gamma = (0.5, -1), beta = (3, 0.25)
    h = torch.randn(2, 2, 3, 3, 3)
    out = cond(h, torch.full((2, 3), 1e-3))
    assert torch.allclose(out[:, 0], 1.5 * h[:, 0] + 3.0) and torch.allclose(out[:, 1], 0 * h[:, 1] + 0.25)


def test_film_depends_on_log_spacing_relative_to_reference():
    """Inputs are log(spacing / reference): a model with reference 1 mm at 2 mm spacing equals one with
    reference 2 mm at 4 mm spacing (same weights)."""
    torch.manual_seed(1)
    a = SpacingConditioner(3, 4, (1e-3, 1e-3, 1e-3))
    b = SpacingConditioner(3, 4, (2e-3, 2e-3, 2e-3))
    b.mlp.load_state_dict(a.mlp.state_dict())
    h = torch.randn(1, 3, 2, 2, 2)
    assert torch.allclose(a(h, torch.tensor([[2e-3, 1e-3, 3e-3]])), b(h, torch.tensor([[4e-3, 2e-3, 6e-3]])), atol=1e-6)
    assert not torch.allclose(a(h, torch.tensor([[2e-3, 1e-3, 3e-3]])), a(h, torch.tensor([[1e-3, 1e-3, 3e-3]])))


def test_conditioner_rejects_wrong_spacing_shape():
    with pytest.raises(InputError, match=r"spacing has shape \(3,\)"):
        SpacingConditioner(2, 4, (1e-3, 1e-3, 1e-3)).film(torch.ones(3))
