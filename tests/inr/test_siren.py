"""SIREN: initialisation bounds, the arcsine law of activations through depth, shapes and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fieldlab.inr.models.siren import SineLayer, Siren


def ks_distance(samples: np.ndarray, cdf) -> float:
    """Kolmogorov-Smirnov distance sup |F_n - F| of ``samples`` against the CDF ``cdf``."""
    x = np.sort(samples.ravel())
    n = x.size
    f = cdf(x)
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


def arcsine_cdf(y: np.ndarray) -> np.ndarray:
    """CDF of the arcsine law on [-1, 1]: F(y) = 1/2 + arcsin(y) / pi (the law of sin(U), U uniform phase)."""
    return 0.5 + np.arcsin(np.clip(y, -1.0, 1.0)) / np.pi


def normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def test_activations_stay_arcsine_through_five_layers():
    """Sitzmann et al. 2020, supplement sec. 1: with W ~ U(-sqrt(6/n)/omega, sqrt(6/n)/omega) and arcsine inputs
    (variance 1/2), omega * W x (bias aside) has variance n * (6/n) / 3 * 1/2 = 1 and is nearly normal (central
    limit), and sin of it (with the omega-scaled bias spreading the phases) follows the arcsine law again.

    Tolerances: KS distance 0.03 against arcsine (sin of N(0, 1) without phase spread is 0.043 away, a pre-activation
    variance far from 1 changes the law) and 0.03 against N(0, 1) for the pre-activations; the pre-activation
    standard deviation within 10% of 1 (an init without the 1/omega factor would give 30).
    """
    torch.manual_seed(0)
    net = Siren(1, 1, hidden_features=512, hidden_layers=5, omega=30.0)
    x = torch.rand(2048, 1) * 2 - 1
    with torch.no_grad():
        h = x
        for i, layer in enumerate(net.layers):
            h_in = h
            h = torch.sin(layer.pre_activation(h))
            assert ks_distance(h.numpy(), arcsine_cdf) < 0.03, f"layer {i}"
            if i > 0:
                zs = (layer.omega * h_in @ layer.linear.weight.T).numpy()  # omega W x, the bias phase left out
                assert 0.9 < zs.std() < 1.1, f"layer {i}: std of omega W x {zs.std()}"
                sample = zs.ravel()[::97]
                assert ks_distance((sample - sample.mean()) / sample.std(), normal_cdf) < 0.03, f"layer {i}"
        assert abs(h.numpy().var() - 0.5) < 0.05  # arcsine law on [-1, 1] has variance 1/2


@pytest.mark.parametrize("omega", [1.0, 30.0])
def test_weight_bounds(omega):
    """First layer U(-1/n, 1/n); hidden and output U(-sqrt(6/n)/omega, +); the draws fill the interval."""
    torch.manual_seed(1)
    net = Siren(3, 2, hidden_features=128, hidden_layers=3, omega=omega)
    first = net.layers[0].linear.weight
    assert first.abs().max() <= 1 / 3 and first.abs().max() > 0.9 / 3
    for w in [layer.linear.weight for layer in net.layers[1:]] + [net.output.weight]:
        bound = math.sqrt(6 / 128) / omega
        assert w.abs().max() <= bound + 1e-7 and w.abs().max() > 0.95 * bound


@pytest.mark.parametrize("batch", [1, 37])
@pytest.mark.parametrize("learn_omega", [False, True])
def test_shapes_and_every_parameter_gets_a_gradient(batch, learn_omega):
    net = Siren(3, 4, hidden_features=16, hidden_layers=2, omega=30.0, learn_omega=learn_omega)
    out = net(torch.rand(batch, 3))
    assert out.shape == (batch, 4)
    out.square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.any(p.grad != 0), name
    assert len(net.omega_parameters()) == (2 if learn_omega else 0)


def test_sine_layer_computes_sin_of_omega_affine():
    layer = SineLayer(2, 3, omega=7.0)
    x = torch.rand(5, 2)
    expected = torch.sin(7.0 * (x @ layer.linear.weight.T + layer.linear.bias))
    torch.testing.assert_close(layer(x), expected)


def test_invalid_sizes_raise():
    with pytest.raises(ValueError, match="hidden_layers"):
        Siren(1, 1, hidden_layers=0)


@pytest.mark.parametrize("learn_omega", [False, True])
def test_sine_layer_gradients_match_omega_times_affine(learn_omega):
    """The layer scales W and b by omega (one pass fewer over the batch); its value and the gradients with respect
    to x, W, b and a learnable omega must equal those of the literal ``sin(omega * (W x + b))`` (autograd of that
    expression), and second derivatives in x (needed for PDE residuals of the field) must exist and agree."""
    torch.manual_seed(3)
    layer = SineLayer(3, 5, omega=13.0, learn_omega=learn_omega)
    w = layer.linear.weight.detach().clone().requires_grad_()
    b = layer.linear.bias.detach().clone().requires_grad_()
    om = torch.tensor(13.0, requires_grad=True)
    x1 = torch.rand(11, 3, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    y_ref = torch.sin(om * (x2 @ w.T + b))
    y = layer(x1)
    torch.testing.assert_close(y, y_ref)
    (gx_ref,) = torch.autograd.grad(y_ref.square().sum(), x2, create_graph=True)
    (gx,) = torch.autograd.grad(y.square().sum(), x1, create_graph=True)
    torch.testing.assert_close(gx, gx_ref)
    gx_ref.sum().backward()
    gx.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(layer.linear.weight.grad, w.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(layer.linear.bias.grad, b.grad, rtol=1e-4, atol=1e-5)
    if learn_omega:
        torch.testing.assert_close(layer.omega.grad, om.grad, rtol=1e-4, atol=1e-5)
