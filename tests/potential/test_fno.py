"""SpectralConv3d and FNO3d against a dense FFT reference, symmetry properties and discretisation consistency."""

from __future__ import annotations

import math

import pytest
import torch

from fieldlab.errors import InputError
from fieldlab.potential.models.fno import FNO3d, SpectralConv3d, domain_padding
from fieldlab.potential.models.pointwise import Pointwise


def dense_reference(x: torch.Tensor, weight: torch.Tensor, modes: tuple[int, int, int]) -> torch.Tensor:
    """The spectral convolution written out mode by mode with a full complex FFT, in complex128.

    ``X = fftn(x) / N``; for every kept frequency ``k = (kd, kh, kw)`` with ``kd in [-md, md)``,
    ``kh in [-mh, mh)``, ``kw in [0, mw)``: ``Y(k) = sum_i X_i(k) R_io(k)``, and the real output is
    ``y = Re(sum_k c_k Y(k) e^{2 pi i k.n/N})`` with ``c_k = 1`` on the ``kw = 0`` plane and ``c_k = 2`` for
    ``0 < kw < W/2`` (the Hermitian mirror ``-k`` contributes the complex conjugate, doubling the real part);
    ``c_k = 1`` again at the Nyquist plane ``kw = W/2``, which is its own mirror.
    Weight index ``j`` along D or H stores frequency ``j`` for ``j < m`` and ``j - 2m`` otherwise.
    """
    md, mh, mw = modes
    b, _, d, h, w = x.shape
    xf = torch.fft.fftn(x.double(), dim=(-3, -2, -1)) / (d * h * w)
    r = weight.to(torch.complex128)
    z = torch.zeros(b, r.shape[1], d, h, w, dtype=torch.complex128)
    for jd in range(2 * md):
        kd = jd if jd < md else jd - 2 * md
        for jh in range(2 * mh):
            kh = jh if jh < mh else jh - 2 * mh
            for kw in range(mw):
                y = torch.einsum("bi,io->bo", xf[:, :, kd % d, kh % h, kw], r[:, :, jd, jh, kw])
                z[:, :, kd % d, kh % h, kw] = y * (1 if kw in (0, w / 2) else 2)
    return torch.fft.ifftn(z, dim=(-3, -2, -1), norm="forward").real


@pytest.mark.parametrize("pruned", [True, False], ids=["pruned", "rfftn"])
@pytest.mark.parametrize(
    ("shape", "modes"),
    [((8, 6, 10), (2, 3, 3)), ((7, 9, 5), (3, 2, 3)), ((6, 6, 6), (3, 3, 4))],
    ids=["even", "odd", "all-modes"],
)
def test_spectral_conv_matches_dense_reference(shape, modes, pruned):
    torch.manual_seed(0)
    conv = SpectralConv3d(3, 2, modes, pruned=pruned)
    x = torch.randn(2, 3, *shape)
    y = conv(x)
    ref = dense_reference(x, conv.weight.detach(), modes)
    assert y.shape == (2, 2, *shape)
    assert y.dtype == torch.float32 and not y.is_complex()  # real output
    assert torch.allclose(y.double(), ref, atol=1e-5, rtol=0)


def test_pruned_equals_rfftn_path():
    torch.manual_seed(1)
    conv = SpectralConv3d(4, 4, (3, 2, 3))
    x = torch.randn(1, 4, 10, 8, 9)
    y_pruned = conv(x)
    conv.pruned = False
    assert torch.allclose(y_pruned, conv(x), atol=1e-6)


@pytest.mark.parametrize("shift", [(1, 0, 0), (0, 3, 0), (0, 0, 5), (2, -1, 4)])
def test_spectral_conv_is_equivariant_to_circular_shifts(shift):
    """A Fourier multiplier commutes with translations on the torus: ``K(roll(x)) = roll(K(x))``."""
    torch.manual_seed(2)
    conv = SpectralConv3d(2, 3, (3, 3, 3))
    x = torch.randn(1, 2, 8, 8, 8)
    dims = (-3, -2, -1)
    assert torch.allclose(conv(torch.roll(x, shift, dims)), torch.roll(conv(x), shift, dims), atol=1e-5)


def band_limited(n: tuple[int, int, int], channels: int) -> torch.Tensor:
    """``x_c(z, y, x) = sum_j a_cj cos(2 pi k_j . r + p_cj)`` on the periodic unit cube, sampled at ``r = i / n``.

    Frequencies ``|k| <= 2`` per axis, below the kept modes (3) and below Nyquist at both resolutions.
    """
    g = torch.Generator().manual_seed(3)
    freqs = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 2, 1], [2, -1, 1], [-1, 1, 2], [2, 2, 0]], dtype=torch.float64)
    amp = torch.randn(channels, len(freqs), generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(channels, len(freqs), generator=g, dtype=torch.float64)
    axes = [torch.arange(m, dtype=torch.float64) / m for m in n]
    r = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (3, D, H, W) = (z, y, x)
    arg = 2 * math.pi * torch.einsum("jk,kdhw->jdhw", freqs, r)  # (J, D, H, W)
    x = torch.einsum("cj,cjdhw->cdhw", amp, torch.cos(arg[None] + phase[:, :, None, None, None]))
    return x[None].float()  # (1, C, D, H, W)


def test_band_limited_input_gives_the_same_output_at_1x_and_2x():
    """``norm='forward'`` makes the coefficients of a band-limited function resolution-independent, so the 2x
    output restricted to the 1x points (every other sample) equals the 1x output up to float32 round-off."""
    torch.manual_seed(4)
    conv = SpectralConv3d(2, 2, (3, 3, 3))
    y1 = conv(band_limited((8, 8, 8), 2))
    y2 = conv(band_limited((16, 16, 16), 2))
    assert torch.allclose(y2[..., ::2, ::2, ::2], y1, atol=1e-4, rtol=0)
    assert y1.abs().max() > 0.1  # the comparison is not between two near-zero fields


def test_spectral_conv_rejects_too_small_grid():
    conv = SpectralConv3d(1, 1, (4, 4, 4))
    with pytest.raises(InputError, match=r"too small for modes \(4, 4, 4\)"):
        conv(torch.zeros(1, 1, 6, 8, 8))


def test_spectral_path_runs_in_float32_under_autocast():
    conv = SpectralConv3d(2, 2, (2, 2, 2))
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x.bfloat16())
    assert y.dtype == torch.float32
    assert torch.allclose(y, conv(x.bfloat16().float()), atol=1e-6)


def test_domain_padding_scales_with_the_grid():
    assert domain_padding((96, 48, 48), 1 / 6) == (16, 8, 8)  # -> 128 x 64 x 64
    assert domain_padding((192, 96, 96), 1 / 6) == (32, 16, 16)  # -> 256 x 128 x 128


@pytest.mark.parametrize("shape", [(16, 8, 8), (32, 16, 16)], ids=["1x", "2x"])
def test_fno3d_forward_backward_every_parameter_gets_a_gradient(shape):
    torch.manual_seed(5)
    net = FNO3d(5, 1, width=4, modes=(3, 3, 3), layers=2, padding=1 / 6)
    y = net(torch.randn(2, 5, *shape))
    assert y.shape == (2, 1, *shape)
    y.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_pointwise_matches_conv3d_with_a_1x1x1_kernel():
    """Pointwise(W, c) is nn.Conv3d with kernel 1: same values and same weight gradient (summed over the batch)."""
    torch.manual_seed(6)
    pw = Pointwise(3, 4)
    ref = torch.nn.Conv3d(3, 4, 1)
    with torch.no_grad():
        ref.weight.copy_(pw.weight[:, :, None, None, None])
        ref.bias.copy_(pw.bias)
    x = torch.randn(2, 3, 5, 4, 3)
    y, y_ref = pw(x), ref(x)
    assert torch.allclose(y, y_ref, atol=1e-6)
    (y * y_ref.detach()).sum().backward()
    (y_ref * y_ref.detach()).sum().backward()
    assert torch.allclose(pw.weight.grad, ref.weight.grad[:, :, 0, 0, 0], atol=1e-4)
