"""Fourier neural operator in 3D: the spectral convolution (real FFTs over D, H, W) and the FNO3d backbone.

References
----------
Li, Kovachki, Azizzadenesheli, Liu, Bhattacharya, Stuart, Anandkumar, "Fourier Neural Operator for Parametric
Partial Differential Equations", ICLR 2021 (eq. 4-5: ``v_{t+1} = gelu(W v_t + F^-1(R . F v_t))``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fieldlab.errors import InputError
from fieldlab.potential.models.pointwise import Pointwise

Modulate = Callable[[torch.Tensor], torch.Tensor]


def _corners(z: torch.Tensor, m: int, dim: int) -> torch.Tensor:
    """Keep the ``m`` lowest non-negative and the ``m`` negative frequencies along ``dim``: ``[0..m-1, -m..-1]``."""
    n = z.shape[dim]
    return torch.cat([z.narrow(dim, 0, m), z.narrow(dim, n - m, m)], dim=dim)


def _uncorners(z: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """Inverse of :func:`_corners`: put ``2m`` kept frequencies back on a length-``n`` axis, zeros elsewhere."""
    m = z.shape[dim] // 2
    shape = list(z.shape)
    shape[dim] = n - 2 * m
    return torch.cat([z.narrow(dim, 0, m), z.new_zeros(shape), z.narrow(dim, m, m)], dim=dim)


class SpectralConv3d(nn.Module):
    r"""Spectral convolution: multiply the lowest Fourier modes of a volume by learned complex weights.

    .. math::

        \hat x_{i}(k) = \frac{1}{DHW} \sum_{n} x_i(n) e^{-2\pi i\, k \cdot n / (D, H, W)}, \qquad
        y_o(n) = \sum_{k \in K} \Big(\sum_i \hat x_i(k) R_{i o}(k)\Big) e^{2\pi i\, k \cdot n / (D, H, W)}

    over the kept set ``K`` = {k_D in [-m_D, m_D), k_H in [-m_H, m_H), k_W in [0, m_W)} and its Hermitian mirror
    (``norm="forward"``: the 1/N sits in the forward transform, so a band-limited function sampled at any
    resolution gets the same coefficients and the same output).

    The transform is the pruned form of ``rfftn -> keep corners -> irfftn``: real FFT along W, keep ``m_W``; FFT
    along H on those only, keep ``2 m_H``; FFT along D, keep ``2 m_D``; and back in reverse order. The only
    full-size complex buffer is the first ``rfft`` along W. ``pruned=False`` runs the plain ``rfftn``/``irfftn``
    (same result, for comparison).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels ``i`` and ``o``.
    modes : tuple of int
        ``(m_D, m_H, m_W)``. Needs ``2 m_D <= D``, ``2 m_H <= H`` and ``m_W <= W // 2 + 1`` at run time.
    pruned : bool
        Use the pruned transform (default) or ``torch.fft.rfftn`` / ``irfftn``.

    Notes
    -----
    Weights ``R`` are one complex tensor ``(i, o, 2 m_D, 2 m_H, m_W)`` (the four corner blocks stacked, one
    einsum), initialised ``N(0, 2 / (i + o))`` as in neuraloperator. The spectral path runs in float32 even under
    autocast (no bf16 FFTs; fp16 FFTs only at power-of-two sizes).

    Examples
    --------
    >>> conv = SpectralConv3d(2, 3, (2, 2, 2))
    >>> conv(torch.rand(1, 2, 8, 6, 5)).shape
    torch.Size([1, 3, 8, 6, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, modes: tuple[int, int, int], pruned: bool = True) -> None:
        super().__init__()
        if len(modes) != 3 or min(modes) < 1:
            raise InputError(f"SpectralConv3d modes = {modes!r}: expected three integers >= 1 (m_D, m_H, m_W)")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.modes = tuple(int(m) for m in modes)
        self.pruned = pruned
        md, mh, mw = self.modes
        std = (2.0 / (in_channels + out_channels)) ** 0.5
        self.weight = nn.Parameter(std * torch.randn(in_channels, out_channels, 2 * md, 2 * mh, mw, dtype=torch.cfloat))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}, pruned={self.pruned}"

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise InputError(
                f"SpectralConv3d input has shape {tuple(x.shape)}: expected (B, {self.in_channels}, D, H, W)"
            )
        d, h, w = x.shape[-3:]
        md, mh, mw = self.modes
        if 2 * md > d or 2 * mh > h or mw > w // 2 + 1:
            raise InputError(
                f"SpectralConv3d grid (D, H, W) = {(d, h, w)} is too small for modes {self.modes}: "
                f"expected D >= {2 * md}, H >= {2 * mh}, W >= {2 * mw - 2}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, i, D, H, W)`` real -> ``(B, o, D, H, W)`` real (float32)."""
        self._check(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            return self._pruned(x) if self.pruned else self._dense(x)

    def _mix(self, xf: torch.Tensor) -> torch.Tensor:
        # b batch, i/o in/out channels, xyz the kept modes along D, H, W
        return torch.einsum("bixyz,ioxyz->boxyz", xf, self.weight)

    def _pruned(self, x: torch.Tensor) -> torch.Tensor:
        d, h, w = x.shape[-3:]
        md, mh, mw = self.modes
        xf = torch.fft.rfft(x, dim=-1, norm="forward")[..., :mw]  # (B, i, D, H, m_W)
        xf = _corners(torch.fft.fft(xf, dim=-2, norm="forward"), mh, dim=-2)  # (B, i, D, 2 m_H, m_W)
        xf = _corners(torch.fft.fft(xf, dim=-3, norm="forward"), md, dim=-3)  # (B, i, 2 m_D, 2 m_H, m_W)
        yf = self._mix(xf)  # (B, o, 2 m_D, 2 m_H, m_W)
        yf = torch.fft.ifft(_uncorners(yf, d, dim=-3), dim=-3, norm="forward")  # (B, o, D, 2 m_H, m_W)
        yf = torch.fft.ifft(_uncorners(yf, h, dim=-2), dim=-2, norm="forward")  # (B, o, D, H, m_W)
        return torch.fft.irfft(yf, n=w, dim=-1, norm="forward")  # zero-pads m_W -> W // 2 + 1

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        d, h, w = x.shape[-3:]
        md, mh, mw = self.modes
        xf = torch.fft.rfftn(x, dim=(-3, -2, -1), norm="forward")  # (B, i, D, H, W // 2 + 1)
        xf = _corners(_corners(xf[..., :mw], mh, dim=-2), md, dim=-3)
        yf = self._mix(xf)
        yf = _uncorners(_uncorners(yf, d, dim=-3), h, dim=-2)  # (B, o, D, H, m_W)
        return torch.fft.irfftn(yf, s=(d, h, w), dim=(-3, -2, -1), norm="forward")


def domain_padding(shape: tuple[int, ...], fraction: float) -> tuple[int, int, int]:
    """Voxels added on EACH side of (D, H, W): ``round(N * fraction)`` (1/6: 96x48x48 -> 128x64x64)."""
    return tuple(round(n * fraction) for n in shape[-3:])  # type: ignore[return-value]


class FNO3d(nn.Module):
    """Fourier neural operator on a non-periodic box: lift, pad, L Fourier layers, crop, project.

    ``h_0 = P_lift(x)``, then for each layer ``h_{l+1} = gelu(K_l h_l + W_l h_l)`` (no activation after the last),
    with ``K_l`` a :class:`SpectralConv3d` and ``W_l`` a pointwise linear skip; ``y = P_proj(h_L)``. ``P_lift`` and
    ``P_proj`` are two-layer pointwise MLPs (hidden ``lifting_ratio * width`` / ``projection_ratio * width``). The
    latent is zero-padded by ``round(N * padding)`` voxels on each side of every axis, so the padding scales with
    the resolution; the optional ``modulate`` (FiLM from the spacing conditioner) acts on ``h_0``.

    Examples
    --------
    >>> net = FNO3d(4, 1, width=4, modes=(2, 2, 2), layers=2, padding=0.25)
    >>> net(torch.rand(1, 4, 8, 6, 6)).shape
    torch.Size([1, 1, 8, 6, 6])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        modes: tuple[int, int, int],
        layers: int,
        padding: float,
        lifting_ratio: int = 2,
        projection_ratio: int = 2,
    ) -> None:
        super().__init__()
        self.padding = padding
        self.latent_channels = width
        self.lifting = nn.Sequential(
            Pointwise(in_channels, lifting_ratio * width), nn.GELU(), Pointwise(lifting_ratio * width, width)
        )
        self.spectral = nn.ModuleList(SpectralConv3d(width, width, modes) for _ in range(layers))
        self.skips = nn.ModuleList(Pointwise(width, width) for _ in range(layers))
        self.projection = nn.Sequential(
            Pointwise(width, projection_ratio * width), nn.GELU(), Pointwise(projection_ratio * width, out_channels)
        )

    def forward(self, x: torch.Tensor, modulate: Modulate | None = None) -> torch.Tensor:
        """``(B, C_in, D, H, W) -> (B, C_out, D, H, W)`` at any grid with at least the kept modes (padded)."""
        h = self.lifting(x)
        if modulate is not None:
            h = modulate(h)
        d, hh, w = x.shape[-3:]
        pd, ph, pw = domain_padding(x.shape, self.padding)
        h = F.pad(h, (pw, pw, ph, ph, pd, pd))  # (B, width, D + 2 pd, H + 2 ph, W + 2 pw)
        last = len(self.spectral) - 1
        for k, (spectral, skip) in enumerate(zip(self.spectral, self.skips, strict=True)):
            h = spectral(h) + skip(h)
            if k < last:
                h = F.gelu(h)
        h = h[..., pd : pd + d, ph : ph + hh, pw : pw + w]
        return self.projection(h)
