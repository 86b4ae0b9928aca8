"""UNet3d: shapes at two resolutions and odd grids, gradients everywhere, locality of the voxel kernels."""

from __future__ import annotations

import pytest
import torch

from fieldlab.errors import ConfigError
from fieldlab.potential.models.unet import UNet3d


@pytest.mark.parametrize("shape", [(16, 8, 8), (32, 16, 16), (9, 7, 5)], ids=["1x", "2x", "odd"])
def test_unet_forward_backward_every_parameter_gets_a_gradient(shape):
    torch.manual_seed(0)
    net = UNet3d(5, 1, base=4, depth=3, groups=2)
    y = net(torch.randn(2, 5, *shape))
    assert y.shape == (2, 1, *shape)
    y.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_unet_padding_does_not_leak_into_the_crop():
    """What the network sees beyond a grid that is not a multiple of 2**(depth-1) is zero, at the high end of each
    axis, whatever that grid is a crop of.

    The UNet is not local (GroupNorm takes its statistics over the whole padded volume, and the kernels near the
    high faces reach past the crop), so the output on a 9x6x7 grid does change when non-zero content lies beyond
    it. The property is therefore: the same grid with zero slices appended at the high ends (10x7x8, 11x8x7,
    12x8x8) gives the same output on the original voxels, and non-zero slices do not. The per-axis pads (3, 2, 1)
    differ, so padding the wrong axis, padding the low end or replicating the border content each fail here.
    """
    torch.manual_seed(1)
    net = UNet3d(2, 1, base=4, depth=3, groups=2).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 9, 6, 7, generator=g) + 1.0  # non-zero mean: GroupNorm sees the zeros it is padded with
    with torch.no_grad():
        base = net(x)
        for size in ((10, 7, 8), (11, 8, 7), (12, 8, 8)):
            bigger = torch.zeros(1, 2, *size)
            bigger[..., :9, :6, :7] = x
            assert torch.allclose(net(bigger)[..., :9, :6, :7], base, atol=1e-5), size
            content = torch.randn(1, 2, *size, generator=g) + 1.0  # the same crop, non-zero content beyond it
            content[..., :9, :6, :7] = x
            assert (net(content)[..., :9, :6, :7] - base).abs().max() > 1e-3, size


def test_unet_modulate_acts_on_the_bottleneck():
    torch.manual_seed(2)
    net = UNet3d(2, 1, base=4, depth=2, groups=2)
    seen = []

    def modulate(h):
        seen.append(tuple(h.shape))
        return 2 * h

    x = torch.randn(1, 2, 8, 8, 8)
    assert not torch.allclose(net(x, modulate), net(x))
    assert seen == [(1, net.latent_channels, 4, 4, 4)]


def test_unet_rejects_groups_that_do_not_divide_base():
    with pytest.raises(ConfigError, match=r"model\.unet\.groups = 3"):
        UNet3d(2, 1, base=8, depth=2, groups=3)
