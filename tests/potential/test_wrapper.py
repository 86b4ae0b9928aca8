"""PotentialModel: shapes for both backbones at two resolutions, gradients, input errors, the restricted
baseline, the registry, and parameter counts of the default configs against closed-form counts."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import pytest
import torch

from fieldlab.commands.models import summary_rows
from fieldlab.config import (
    ConditioningConfig,
    EncoderConfig,
    FNOConfig,
    ModelConfig,
    PriorConfig,
    UNetConfig,
    load_config,
)
from fieldlab.errors import ConfigError, InputError
from fieldlab.potential.models.wrapper import BACKBONES, PotentialModel, build_model, count_parameters

ROOT = Path(__file__).resolve().parents[2]

SMALL = ModelConfig(
    prior=PriorConfig(kind="none"),
    encoder=EncoderConfig(channels=3, hidden=4, layers=2),
    conditioning=ConditioningConfig(hidden=4),
    unet=UNetConfig(base=4, depth=2, groups=2),
    fno=FNOConfig(width=4, modes=(3, 3, 3), layers=2),
)


def inputs(shape: tuple[int, int, int], batch: int = 2, dx: float = 2e-3):
    g = torch.Generator().manual_seed(0)
    sigma = torch.rand(batch, 6, *shape, generator=g)
    sigma[:, 3:] *= 0.1  # small off-diagonal terms
    sigma[:, :, 0] = 0.0  # a slab of air
    f = torch.randn(batch, 1, *shape, generator=g)
    axes = [torch.linspace(-1 + 1 / n, 1 - 1 / n, n) for n in shape]  # cell centres, (z, y, x)
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    coords = torch.stack([x, y, z])[None].expand(batch, -1, -1, -1, -1)  # channels X, Y, Z
    spacing = torch.full((batch, 3), dx)
    return sigma, f, coords, spacing


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize(("shape", "dx"), [((16, 8, 8), 3e-3), ((32, 16, 16), 1.5e-3)], ids=["1x", "2x"])
def test_forward_backward_shapes_and_gradients(backbone, shape, dx):
    """Spacings differ from the reference (2 mm): at exactly the reference, log(dx / ref) = 0 and the first
    conditioner layer's weight gets a zero gradient by construction (only its bias acts)."""
    torch.manual_seed(0)
    model = build_model(SMALL, backbone)
    phi = model(*inputs(shape, dx=dx))
    assert phi.shape == (2, 1, *shape)
    phi.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_backbone_argument_overrides_config():
    assert build_model(dataclasses.replace(SMALL, backbone="fno"), "unet").backbone_name == "unet"
    with pytest.raises(ConfigError, match=r"model\.backbone = 'mlp'"):
        build_model(SMALL, "mlp")


@pytest.mark.parametrize(
    ("which", "bad", "message"),
    [
        ("sigma", (2, 5, 16, 8, 8), r"sigma has shape \(2, 5, 16, 8, 8\): expected \(B, 6, D, H, W\)"),
        ("f", (2, 1, 16, 8, 4), r"f has shape \(2, 1, 16, 8, 4\): expected \(2, 1, 16, 8, 8\)"),
        ("coords", (1, 3, 16, 8, 8), r"coords has shape \(1, 3, 16, 8, 8\): expected \(2, 3, 16, 8, 8\)"),
        ("spacing", (2, 2), r"spacing has shape \(2, 2\): expected \(2, 3\)"),
    ],
)
def test_inconsistent_shapes_raise_one_line_input_error(which, bad, message):
    args = dict(zip(("sigma", "f", "coords", "spacing"), inputs((16, 8, 8)), strict=True))
    args[which] = torch.zeros(bad)
    with pytest.raises(InputError, match=message) as info:
        build_model(SMALL)(**args)
    assert "\n" not in str(info.value)


def test_non_positive_spacing_is_rejected():
    sigma, f, coords, spacing = inputs((16, 8, 8))
    with pytest.raises(InputError, match="expected positive"):
        build_model(SMALL)(sigma, f, coords, -spacing)


def test_unknown_keyword_is_warned_about():
    with pytest.warns(UserWarning, match="ignores \\['mask'\\]"):
        build_model(SMALL)(*inputs((16, 8, 8)), mask=None)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_predict_restricted_on_the_same_grid_is_forward(backbone):
    torch.manual_seed(1)
    model = build_model(SMALL, backbone).eval()
    args = inputs((16, 8, 8))
    assert torch.allclose(model.predict_restricted(*args, grid=(16, 8, 8)), model(*args), atol=1e-6)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_predict_restricted_runs_the_model_on_the_restricted_grid(backbone, monkeypatch):
    """From a 2x grid (32x16x16, dx = 1 mm) the model must see the 1x grid with the 1x spacing (2 mm), cell-mean
    inputs (coords of a linear function average to the coarse cell centres exactly), and return the 2x shape."""
    torch.manual_seed(2)
    model = build_model(SMALL, backbone).eval()
    seen = {}
    forward = PotentialModel.forward

    def spy(self, sigma, f, coords, spacing):
        seen.update(shape=tuple(sigma.shape[-3:]), spacing=spacing.clone(), coords=coords.clone())
        return forward(self, sigma, f, coords, spacing)

    monkeypatch.setattr(PotentialModel, "forward", spy)
    phi = model.predict_restricted(*inputs((32, 16, 16), dx=1e-3), grid=(16, 8, 8))
    assert phi.shape == (2, 1, 32, 16, 16)
    assert seen["shape"] == (16, 8, 8)
    assert torch.allclose(seen["spacing"], torch.full((2, 3), 2e-3))
    assert torch.allclose(seen["coords"], inputs((16, 8, 8))[2], atol=1e-6)


def gelu(x: float) -> float:
    """The exact GELU, x Phi(x) with Phi the standard normal CDF."""
    return x * 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_conditioning_distinguishes_spacings_and_can_be_disabled(backbone, monkeypatch):
    """The spacing reaches the backbone's latent as the FiLM h (1 + gamma) + beta, (gamma, beta) =
    W_2 gelu(W_1 s + b_1) + b_2 with s = log(spacing / reference) per sample (conditioning.py).

    1. At the reference spacing s = 0, so with b_1 = b_2 = 0 the FiLM is the identity whatever W_1 and W_2 are: the
       model equals the same weights without a conditioner.
    2. Hand-set weights (W_1 = [I; 0], b_1 = 0; W_2 picks hidden units) give gamma_0 = gelu(s_x),
       beta_0 = gelu(s_y), gamma_1 = gelu(s_z), beta_1 = 1/4 (b_2), every other channel 0. A backbone that records
       what its ``modulate`` does to h = 0 (beta) and h = 1 (1 + gamma + beta) sees exactly that, sample by sample,
       for spacings (2, 2, 2) mm (the reference) and (1, 4, 8) mm: s = (-ln 2, ln 2, 2 ln 2).
    3. Disabled, there is no conditioner and the output does not depend on the spacing.
    """
    torch.manual_seed(3)
    sigma, f, coords, _ = inputs((16, 8, 8))
    reference = torch.full((2, 3), 2e-3)
    model = build_model(SMALL, backbone).eval()
    plain = build_model(dataclasses.replace(SMALL, conditioning=ConditioningConfig(enabled=False)), backbone).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("conditioner.")})
    first, last = model.conditioner.mlp[0], model.conditioner.mlp[-1]
    with torch.no_grad():
        first.bias.zero_()
        last.bias.zero_()
        assert torch.equal(model(sigma, f, coords, reference), plain(sigma, f, coords, reference))

    latent = model.backbone.latent_channels
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:3] = torch.eye(3)
        last.weight.zero_()
        last.weight[0, 0] = last.weight[latent, 1] = last.weight[1, 2] = 1.0
        last.bias[latent + 1] = 0.25
    seen = {}

    def spy(x, modulate=None):
        h = torch.zeros(x.shape[0], latent, 2, 2, 2)
        seen["beta"], seen["one"] = modulate(h), modulate(h + 1)
        return torch.zeros_like(x[:, :1])

    monkeypatch.setattr(model.backbone, "forward", spy)
    spacing = torch.tensor([[2e-3, 2e-3, 2e-3], [1e-3, 4e-3, 8e-3]])
    with torch.no_grad():
        model(sigma, f, coords, spacing)
    ln2 = math.log(2.0)
    gamma, beta = torch.zeros(2, latent), torch.zeros(2, latent)
    gamma[1, 0], beta[1, 0], gamma[1, 1] = gelu(-ln2), gelu(ln2), gelu(2 * ln2)
    beta[:, 1] = 0.25
    want_beta = beta[:, :, None, None, None].expand(-1, -1, 2, 2, 2)
    want_one = (1 + gamma + beta)[:, :, None, None, None].expand(-1, -1, 2, 2, 2)
    torch.testing.assert_close(seen["beta"], want_beta, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(seen["one"], want_one, atol=1e-6, rtol=1e-6)

    assert plain.conditioner is None
    assert torch.equal(
        plain(sigma, f, coords, torch.full((2, 3), 2e-3)), plain(sigma, f, coords, torch.full((2, 3), 1.0))
    )


# ---- parameter counts ------------------------------------------------------------------------------------------
def mlp_count(sizes: list[int]) -> int:
    """Weights and biases of a chain of dense layers with the given widths."""
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def expected_count(cfg: ModelConfig, backbone: str) -> int:
    """Closed-form count of real trainable numbers, from the architecture as documented.

    Encoder: MLP 7 -> hidden x (layers - 1) -> channels. Backbone input: channels + 1 (f) + 3 (coords), + 1 with
    a prior.
    FNO: lifting MLP in -> r w -> w; per layer a complex (w, w, 2 m_D, 2 m_H, m_W) weight (2 reals each) and a
    w -> w skip; projection w -> r w -> 1. UNet: level k has c_k = base 2^k channels; a block c -> c' is two 3x3x3
    convolutions (27 c c' + c', 27 c'^2 + c') and two GroupNorms (2 c' each); an up-convolution 2x2x2
    c_{k+1} -> c_k (8 c_{k+1} c_k + c_k); head 1x1x1 c_0 -> 1. Conditioner: MLP 3 -> hidden -> 2 x latent,
    latent = w (FNO) or c_{depth-1} (UNet).
    """
    e = cfg.encoder
    n = mlp_count([7] + [e.hidden] * (e.layers - 1) + [e.channels])
    c_in = e.channels + 4 + (cfg.prior.kind != "none")
    if backbone == "fno":
        w, (md, mh, mw), fno = cfg.fno.width, cfg.fno.modes, cfg.fno
        n += mlp_count([c_in, fno.lifting_ratio * w, w]) + mlp_count([w, fno.projection_ratio * w, 1])
        n += fno.layers * (2 * w * w * (2 * md) * (2 * mh) * mw + w * w + w)
        latent = w
    else:
        u = cfg.unet
        ch = [u.base * 2**k for k in range(u.depth)]

        def block(a: int, b: int) -> int:
            return 27 * a * b + b + 27 * b * b + b + 2 * (2 * b)

        n += sum(block(a, b) for a, b in zip([c_in, *ch[:-1]], ch, strict=True))
        n += sum(8 * ch[k + 1] * ch[k] + ch[k] + block(2 * ch[k], ch[k]) for k in range(u.depth - 1))
        n += ch[0] + 1
        latent = ch[-1]
    if cfg.conditioning.enabled:
        n += mlp_count([3, cfg.conditioning.hidden, 2 * latent])
    return n


# ---- analytic prior ----------------------------------------------------------------------------------------------
WITH_PRIOR = dataclasses.replace(SMALL, prior=PriorConfig(kind="free_space"))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_prior_is_the_output_base_and_an_input(backbone, monkeypatch):
    """phi = prior + backbone([..., asinh(prior)]): a backbone that outputs zero returns the prior exactly, and the
    backbone sees asinh(prior) as its last input channel."""
    model = build_model(WITH_PRIOR, backbone).eval()
    args = inputs((16, 8, 8))
    prior = torch.randn(2, 1, 16, 8, 8) * 5
    seen = {}

    def zero_backbone(x, modulate=None):
        seen["x"] = x
        return torch.zeros_like(x[:, :1])

    monkeypatch.setattr(model.backbone, "forward", zero_backbone)
    assert torch.equal(model(*args, prior=prior), prior)
    assert torch.allclose(seen["x"][:, -1:], torch.asinh(prior))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_prior_restricted_prediction_adds_the_fine_prior(backbone, monkeypatch):
    """On the same grid the restricted path equals forward; on a coarser grid the correction is interpolated and
    the full-resolution prior added, so a zero correction returns the fine prior unchanged."""
    model = build_model(WITH_PRIOR, backbone).eval()
    args = inputs((16, 8, 8))
    prior = torch.randn(2, 1, 16, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model.predict_restricted(*args, grid=(16, 8, 8), prior=prior), model(*args, prior=prior))
    monkeypatch.setattr(model.backbone, "forward", lambda x, modulate=None: torch.zeros_like(x[:, :1]))
    assert torch.allclose(model.predict_restricted(*args, grid=(8, 4, 4), prior=prior), prior)


def test_missing_or_misshaped_prior_is_a_one_line_error():
    model = build_model(WITH_PRIOR)
    args = inputs((16, 8, 8))
    with pytest.raises(InputError, match=r"prior has shape None: expected \(2, 1, 16, 8, 8\)"):
        model(*args)
    with pytest.raises(InputError, match="prior has shape"):
        model(*args, prior=torch.zeros(2, 1, 8, 8, 8))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("params", ["params.yaml", "small"])
def test_parameter_counts_match_closed_form(backbone, params):
    cfg = load_config(ROOT / params).model if params != "small" else SMALL
    assert count_parameters(build_model(cfg, backbone)) == expected_count(cfg, backbone)


def test_models_summary_reports_default_counts():
    rows = {r["name"]: r for r in summary_rows(str(ROOT / "params.yaml"), [])}
    cfg = load_config(ROOT / "params.yaml").model
    assert set(rows) == set(BACKBONES)
    for name, row in rows.items():
        assert row["total"] == expected_count(cfg, name)
        assert row["encoder"] + row["backbone"] + row["conditioner"] == row["total"]


def test_predict_restricted_keeps_air_out_of_tissue(monkeypatch):
    """Coarse cells of the 2x2x2-block restriction: 5 of 8 fine cells at 0.2 S/m and 3 in air -> tissue at
    exactly 0.2 S/m (mean over its tissue, not 5/8 * 0.2); 3 of 8 in tissue -> air (exactly 0)."""
    sigma, f, coords, spacing = inputs((4, 4, 4), batch=1)
    sigma.zero_()
    block = torch.zeros(2, 2, 2, dtype=torch.bool)
    block.view(-1)[:5] = True
    sigma[0, :3, :2, :2, :2] = 0.2 * block  # coarse cell (0, 0, 0): 5/8 tissue
    sigma[0, :3, 2:, 2:, 2:] = 0.2 * ~block  # coarse cell (1, 1, 1): 3/8 tissue
    seen = {}
    forward = PotentialModel.forward

    def spy(self, sigma, f, coords, spacing):
        seen["sigma"] = sigma.clone()
        return forward(self, sigma, f, coords, spacing)

    monkeypatch.setattr(PotentialModel, "forward", spy)
    build_model(SMALL, "unet").eval().predict_restricted(sigma, f, coords, spacing, grid=(2, 2, 2))
    coarse = seen["sigma"][0, :3]  # (3, 2, 2, 2)
    assert torch.allclose(coarse[:, 0, 0, 0], torch.full((3,), 0.2))
    assert torch.equal(coarse[:, 1, 1, 1], torch.zeros(3))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_predict_coarse_is_what_the_restricted_path_interpolates(backbone):
    """The coarse prediction has the training grid's shape, equals forward on that grid, and interpolated back (its
    correction over the restricted prior, with a prior) it is the restricted prediction: a constant correction of
    0.25 on the coarse grid comes back as exactly 0.25 on the fine one (trilinear interpolation keeps constants)."""
    torch.manual_seed(4)
    for cfg, prior in ((SMALL, None), (WITH_PRIOR, torch.randn(2, 1, 16, 8, 8))):
        model = build_model(cfg, backbone).eval()
        args = inputs((16, 8, 8))
        with torch.no_grad():
            same = model.predict_coarse(*args, grid=(16, 8, 8), prior=prior)
            torch.testing.assert_close(same, model(*args, prior=prior))
            coarse = model.predict_coarse(*args, grid=(8, 4, 4), prior=prior)
            assert coarse.shape == (2, 1, 8, 4, 4)
            model.backbone.forward = lambda x, modulate=None: torch.full_like(x[:, :1], 0.25)
            shifted = model.predict_restricted(*args, grid=(8, 4, 4), prior=prior)
        base = prior if prior is not None else torch.zeros_like(shifted)
        torch.testing.assert_close(shifted, base + 0.25)
