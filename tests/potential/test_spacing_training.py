"""Training across spacings: what one spacing can and cannot teach the spacing conditioner, and the batch sampler
that keeps every batch on one spacing.

Why one spacing cannot train the conditioning: the FiLM ``(gamma, beta) = MLP(log(spacing / reference))`` reads
nothing but the spacing, so on a one-spacing corpus it is one constant vector. At the reference spacing its input is
zero and its first layer receives exactly no gradient; the rest of the MLP does receive gradient, but only to move
that one constant, which is a per-channel scale and shift of the FNO's lifted latent and folds exactly into the
lifting's last pointwise layer: the conditioned model is a reparametrisation of the unconditioned one, spacing-blind
like it. Two spacings make the FiLM two different vectors that no fold reproduces, and the first layer trains.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter

import pytest
import torch

from fieldlab.config import ConditioningConfig, EncoderConfig, FNOConfig, ModelConfig, PriorConfig
from fieldlab.errors import InputError
from fieldlab.potential.data.spacing_batches import SpacingBatchSampler, spacing_key
from fieldlab.potential.models.wrapper import PotentialModel

CFG = ModelConfig(
    backbone="fno",
    prior=PriorConfig(kind="none"),
    encoder=EncoderConfig(channels=3, hidden=4, layers=2),
    conditioning=ConditioningConfig(hidden=4, reference_spacing=(2e-3, 2e-3, 2e-3)),
    fno=FNOConfig(width=4, modes=(2, 2, 2), layers=1),
)
BASE, FINE = 2e-3, 1e-3


def model(seed: int = 0, conditioning: bool = True) -> PotentialModel:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(CFG, conditioning=dataclasses.replace(CFG.conditioning, enabled=conditioning))
    m = PotentialModel(cfg).double()
    if conditioning:  # a FiLM far from the identity, so that its effect is plain in the outputs
        torch.nn.init.normal_(m.conditioner.mlp[-1].weight, std=0.5)
        torch.nn.init.normal_(m.conditioner.mlp[-1].bias, std=0.5)
    return m


def batch(seed: int, dx: float, shape=(8, 4, 4), n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "sigma": torch.rand(n, 6, *shape, generator=g, dtype=torch.float64) + 0.1,
        "f": torch.randn(n, 1, *shape, generator=g, dtype=torch.float64),
        "coords": torch.rand(n, 3, *shape, generator=g, dtype=torch.float64) * 2 - 1,
        "spacing": torch.full((n, 3), dx, dtype=torch.float64),
        "target": torch.randn(n, 1, *shape, generator=g, dtype=torch.float64),
    }


def conditioner_grads(m: PotentialModel, batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Gradients of the summed MSE over ``batches`` (a sequence of steps without an update) on the conditioner."""
    m.zero_grad()
    for b in batches:
        out = m(b["sigma"], b["f"], b["coords"], b["spacing"])
        torch.mean((out - b["target"]) ** 2).backward()
    return {k: p.grad.detach().clone() for k, p in m.conditioner.named_parameters()}


def test_one_spacing_at_the_reference_leaves_the_first_layer_without_gradient():
    grads = conditioner_grads(model(), [batch(1, BASE), batch(2, BASE)])
    assert torch.equal(grads["mlp.0.weight"], torch.zeros_like(grads["mlp.0.weight"]))
    assert all(grads[k].abs().max() > 0 for k in ("mlp.0.bias", "mlp.2.weight", "mlp.2.bias"))


def test_two_spacings_give_the_first_layer_a_gradient():
    grads = conditioner_grads(model(), [batch(1, BASE), batch(2, FINE)])
    assert grads["mlp.0.weight"].abs().max() > 1e-6
    only_fine = conditioner_grads(model(), [batch(2, FINE)])  # the whole of it comes from the off-reference batch
    torch.testing.assert_close(grads["mlp.0.weight"], only_fine["mlp.0.weight"], rtol=1e-12, atol=0)


def test_one_off_reference_spacing_trains_one_direction_only():
    """Away from the reference the input ``s = log(spacing / reference)`` is one fixed vector, so the first layer's
    gradient is ``g s^T``: rank one, blind to every direction of the spacing but that one."""
    grads = conditioner_grads(model(), [batch(1, FINE), batch(2, FINE)])
    w = grads["mlp.0.weight"]
    s = torch.log(torch.tensor([FINE / BASE] * 3, dtype=torch.float64))
    across = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)  # orthogonal to s: anisotropy
    assert w.abs().max() > 1e-6 and torch.linalg.matrix_rank(w, rtol=1e-10) == 1
    assert (w @ across).abs().max() < 1e-12 * w.abs().max()
    torch.testing.assert_close(torch.linalg.norm(w @ s) / torch.linalg.norm(s), torch.linalg.norm(w))


def folded(m: PotentialModel, dx: float) -> PotentialModel:
    """The unconditioned twin of ``m`` with the FiLM at spacing ``dx`` folded into the lifting's last layer:
    ``(1 + gamma) (W h + b) + beta = ((1 + gamma) W) h + ((1 + gamma) b + beta)``."""
    twin = model(conditioning=False)
    state = {k: v for k, v in copy.deepcopy(m.state_dict()).items() if not k.startswith("conditioner.")}
    twin.load_state_dict(state)
    with torch.no_grad():
        gamma, beta = m.conditioner.film(torch.full((1, 3), dx, dtype=torch.float64))
        gamma, beta = gamma.reshape(-1).double(), beta.reshape(-1).double()
        last = twin.backbone.lifting[-1]
        last.weight.mul_((1 + gamma)[:, None])
        last.bias.mul_(1 + gamma).add_(beta)
    return twin


@pytest.mark.parametrize("dx", [BASE, FINE])
def test_on_one_spacing_the_conditioning_is_a_reparametrisation_of_the_backbone(dx):
    m = model()
    b = batch(3, dx)
    want = m(b["sigma"], b["f"], b["coords"], b["spacing"])
    got = folded(m, dx)(b["sigma"], b["f"], b["coords"], b["spacing"])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)  # the FiLM runs in float32


def test_two_spacings_need_the_conditioning():
    """The same fields at two spacings: the unconditioned model (any weights, a fold included) gives one output,
    the conditioned model two; so no fold of one spacing's FiLM matches the other spacing."""
    m = model()
    a, b = batch(4, BASE), batch(4, FINE)
    out_a = m(a["sigma"], a["f"], a["coords"], a["spacing"])
    out_b = m(b["sigma"], b["f"], b["coords"], b["spacing"])
    assert (out_a - out_b).abs().max() > 1e-3 * out_a.abs().max()
    twin = folded(m, BASE)
    torch.testing.assert_close(
        twin(a["sigma"], a["f"], a["coords"], a["spacing"]), twin(b["sigma"], b["f"], b["coords"], b["spacing"])
    )


def test_every_batch_is_of_one_spacing_and_every_sample_comes_once():
    spacings = [(BASE,) * 3] * 7 + [(FINE,) * 3] * 5 + [(1e-3, 1e-3, 2e-3)] * 3
    sampler = SpacingBatchSampler(spacings, batch_size=2, seed=5)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 4 + 3 + 2
        assert sorted(i for b in batches for i in b) == list(range(len(spacings)))
        assert all(len({spacing_key(spacings[i]) for i in b}) == 1 for b in batches)
        assert Counter(len(b) for b in batches) == Counter({2: 6, 1: 3})
    dropped = SpacingBatchSampler(spacings, batch_size=2, seed=5, drop_last=True)
    assert len(list(dropped)) == len(dropped) == 6 and all(len(b) == 2 for b in dropped)


def test_the_order_follows_the_seed_and_the_epoch():
    spacings = [(BASE,) * 3] * 10 + [(FINE,) * 3] * 10
    a, b = SpacingBatchSampler(spacings, 3, seed=1), SpacingBatchSampler(spacings, 3, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(SpacingBatchSampler(spacings, 3, seed=2)) != first
    # both spacings are interleaved over the epoch, not one after the other
    kinds = [spacing_key(spacings[bt[0]]) for bt in first]
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)


def test_float_noise_does_not_split_a_grid_and_bad_input_is_refused():
    sampler = SpacingBatchSampler([(2e-3, 2e-3, 2e-3), (2e-3 + 1e-12, 2e-3, 2e-3)], batch_size=2, shuffle=False)
    assert list(sampler) == [[0, 1]]
    with pytest.raises(InputError, match="batch_size"):
        SpacingBatchSampler([(BASE,) * 3], batch_size=0)
    with pytest.raises(InputError, match="positive"):
        SpacingBatchSampler([(BASE, 0.0, BASE)], batch_size=1)


def test_the_anchored_film_is_the_identity_at_the_reference_and_acts_off_it():
    """``model.conditioning.anchored``: whatever the FiLM's weights (far from the identity here), on the reference
    grid the conditioned model is exactly its backbone without the FiLM; off it the FiLM changes the output."""
    anchored_cfg = dataclasses.replace(CFG, conditioning=dataclasses.replace(CFG.conditioning, anchored=True))
    torch.manual_seed(0)
    m = PotentialModel(anchored_cfg).double()
    torch.nn.init.normal_(m.conditioner.mlp[-1].weight, std=0.5)
    torch.nn.init.normal_(m.conditioner.mlp[-1].bias, std=0.5)
    bare = copy.deepcopy(m)
    bare.conditioner = None
    with torch.no_grad():
        for dx, same in ((BASE, True), (FINE, False)):
            b = batch(3, dx)
            args = (b["sigma"], b["f"], b["coords"], b["spacing"])
            assert torch.equal(m(*args), bare(*args)) is same, dx
