"""Spacing conditioning: the physical voxel size (dx, dy, dz) -> FiLM scale and shift of a latent volume.

References
----------
Perez, Strub, de Vries, Dumoulin, Courville, "FiLM: Visual Reasoning with a General Conditioning Layer",
AAAI 2018.
"""

from __future__ import annotations

import torch
from torch import nn

from fieldlab.errors import InputError


class SpacingConditioner(nn.Module):
    r"""FiLM from the grid spacing, so that the model can tell a 2x grid from a 1x grid.

    .. math::

        s = \log(\Delta / \Delta_{ref}) \in \mathbb{R}^3, \qquad
        (\gamma, \beta) = W_2\, \mathrm{gelu}(W_1 s + b_1) + b_2, \qquad
        h \mapsto h \odot (1 + \gamma) + \beta

    with ``gamma, beta`` one value per channel (broadcast over the grid). The log makes halving the spacing the
    same step at any scale; the reference spacing makes ``s = 0`` on the reference grid. ``W_2`` starts small
    (std 0.01) so the conditioner starts close to the identity and still passes gradients to ``W_1``. On the
    reference grid ``s = 0``: there ``W_1`` receives no gradient and the FiLM is a learned constant. ``anchored``
    subtracts the MLP's value at ``s = 0`` from both, so that on the reference grid the FiLM is exactly the identity
    and the conditioned model is its backbone, whatever the conditioner learned: it acts only off the reference.

    Parameters
    ----------
    channels : int
        Channels of the latent ``h``.
    hidden : int
        Hidden width of the MLP.
    reference_spacing : tuple of float
        ``(dx, dy, dz)`` in metres.
    anchored : bool, optional
        ``(gamma, beta)(s) - (gamma, beta)(0)``: the identity at the reference spacing.

    Examples
    --------
    >>> cond = SpacingConditioner(4, 8, (2e-3, 2e-3, 2e-3))
    >>> cond(torch.zeros(2, 4, 3, 3, 3), torch.full((2, 3), 1e-3)).shape
    torch.Size([2, 4, 3, 3, 3])
    """

    def __init__(
        self, channels: int, hidden: int, reference_spacing: tuple[float, float, float], anchored: bool = False
    ) -> None:
        super().__init__()
        self.channels = channels
        self.anchored = anchored
        self.register_buffer("log_reference", torch.log(torch.tensor(reference_spacing, dtype=torch.float32)))
        self.mlp = nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, 2 * channels))
        last = self.mlp[-1]
        nn.init.normal_(last.weight, std=0.01)
        nn.init.zeros_(last.bias)

    def film(self, spacing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3)`` spacing in metres -> ``gamma, beta`` of shape ``(B, channels, 1, 1, 1)``."""
        if spacing.ndim != 2 or spacing.shape[1] != 3:
            raise InputError(f"spacing has shape {tuple(spacing.shape)}: expected (B, 3) = (dx, dy, dz) in metres")
        s = torch.log(spacing.float()) - self.log_reference  # (B, 3)
        out = self.mlp(s)
        if self.anchored:
            out = out - self.mlp(torch.zeros_like(s[:1]))
        gamma, beta = out.chunk(2, dim=1)  # (B, C) each
        return gamma[:, :, None, None, None], beta[:, :, None, None, None]

    def forward(self, h: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
        """``h * (1 + gamma) + beta`` for ``h`` of shape ``(B, channels, D, H, W)``."""
        gamma, beta = self.film(spacing)
        return h * (1 + gamma) + beta
