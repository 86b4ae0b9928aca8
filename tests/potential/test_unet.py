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
    """Padding the input to a multiple of 2**(depth-1) must not change with what lies beyond the crop: the output
    on a 9x7x5 grid equals the same network applied to that grid embedded in zeros up to 12x8x8, cropped."""
    torch.manual_seed(1)
    net = UNet3d(2, 1, base=4, depth=3, groups=2).eval()
    x = torch.randn(1, 2, 9, 7, 5)
    padded = torch.zeros(1, 2, 12, 8, 8)
    padded[..., :9, :7, :5] = x
    assert torch.allclose(net(x), net(padded)[..., :9, :7, :5], atol=1e-5)


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
