"""Masked metrics and the gradient-consistency loss against NumPy references and analytic fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fieldlab.potential import metrics


@pytest.fixture
def fields():
    rng = np.random.default_rng(3)
    shape = (2, 1, 7, 6, 5)
    pred, target = rng.normal(size=shape), rng.normal(size=shape)
    mask = rng.random(shape) > 0.4
    return pred, target, mask


def as_t(*arrays):
    return [torch.as_tensor(a) for a in arrays]


def test_masked_measures_match_numpy(fields):
    pred, target, mask = fields
    p, t, m = as_t(*fields)
    for b in range(2):
        pb, tb, mb = pred[b][mask[b]], target[b][mask[b]], mask[b]
        assert mb.any()
        np.testing.assert_allclose(metrics.masked_mse(p, t, m)[b], np.mean((pb - tb) ** 2), rtol=1e-12)
        np.testing.assert_allclose(
            metrics.relative_l2(p, t, m)[b], np.linalg.norm(pb - tb) / np.linalg.norm(tb), rtol=1e-12
        )
        r2 = 1 - np.sum((pb - tb) ** 2) / np.sum((tb - tb.mean()) ** 2)
        np.testing.assert_allclose(metrics.r2_score(p, t, m)[b], r2, rtol=1e-12)
        np.testing.assert_allclose(metrics.max_error(p, t, m)[b], np.max(np.abs(pb - tb)), rtol=1e-12)


def test_perfect_prediction_and_mismatched_shapes(fields):
    _, t, m = as_t(*fields)
    assert torch.all(metrics.relative_l2(t, t, m) == 0)
    assert torch.allclose(metrics.r2_score(t, t, m), torch.ones(2, dtype=t.dtype))
    with pytest.raises(ValueError, match="identical shapes"):
        metrics.masked_mse(t[:, :, :3], t, m)


def test_empty_mask_is_nan_not_a_perfect_score(fields):
    """Over an empty set there is no error to report: every measure of that sample is NaN (a 0 error or an R2 of 1
    would pass for a perfect fit), the other sample keeps its value, and a loss over the batch is NaN."""
    pred, target, mask = fields
    mask[1] = False
    p, t, m = as_t(pred, target, mask)
    s = torch.tensor([[0.001, 0.002, 0.004]] * 2)
    for measure in (metrics.masked_mse, metrics.relative_l2, metrics.r2_score, metrics.max_error):
        got = measure(p, t, m)
        assert torch.isfinite(got[0]) and torch.isnan(got[1]), measure.__name__
    pb, tb = pred[0][mask[0]], target[0][mask[0]]
    np.testing.assert_allclose(metrics.masked_mse(p, t, m)[0], np.mean((pb - tb) ** 2), rtol=1e-12)
    assert torch.isnan(metrics.gradient_loss(p, t, m, s))
    assert torch.isnan(metrics.training_loss(p, t, m, s, 1.0, 0.0))
    # a perfect prediction over an empty mask is still NaN, not 0 and 1
    assert torch.isnan(metrics.relative_l2(t, t, m)[1]) and torch.isnan(metrics.r2_score(t, t, m)[1])


def test_electric_field_of_a_linear_potential_is_exact():
    """phi = a x + b y + c z -> E = -(c, b, a) in (z, y, x) order, exactly, for any spacing."""
    dx, dy, dz = 0.002, 0.003, 0.005
    d, h, w = 6, 5, 4
    z, y, x = np.meshgrid(np.arange(d) * dz, np.arange(h) * dy, np.arange(w) * dx, indexing="ij")
    phi = torch.as_tensor(2.0 * x - 3.0 * y + 0.5 * z)[None]
    e = metrics.electric_field(phi, torch.tensor([dx, dy, dz]))
    np.testing.assert_allclose(e[0].numpy(), -0.5, atol=1e-10)
    np.testing.assert_allclose(e[1].numpy(), 3.0, atol=1e-10)
    np.testing.assert_allclose(e[2].numpy(), -2.0, atol=1e-10)


def test_gradient_loss_matches_numpy_gradient_with_true_spacing(fields):
    pred, target, mask = fields
    spacing = np.array([[0.001, 0.002, 0.004], [0.01, 0.01, 0.02]])
    want = []
    for b in range(2):
        dx, dy, dz = spacing[b]
        gp = np.stack(np.gradient(pred[b, 0], dz, dy, dx))
        gt = np.stack(np.gradient(target[b, 0], dz, dy, dx))
        m = mask[b, 0][None]
        want.append(np.sum(((gp - gt) ** 2) * m) / np.sum(gt**2 * m))
    p, t, m, s = as_t(pred, target, mask, spacing)
    np.testing.assert_allclose(metrics.gradient_loss(p, t, m, s), np.mean(want), rtol=1e-10)


def test_training_loss_combines_terms(fields):
    p, t, m = as_t(*fields)
    s = torch.tensor([[0.001, 0.002, 0.004]] * 2)
    want = 2.0 * metrics.masked_mse(p, t, m).mean() + 0.3 * metrics.gradient_loss(p, t, m, s)
    torch.testing.assert_close(metrics.training_loss(p, t, m, s, 2.0, 0.3), want)
    torch.testing.assert_close(metrics.training_loss(p, t, m, s, 1.0, 0.0), metrics.masked_mse(p, t, m).mean())
