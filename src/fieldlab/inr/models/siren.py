"""SIREN: a multilayer perceptron with sine activations and the initialisation that keeps them well distributed.

Each hidden layer computes ``y = sin(omega * (W x + b))`` (Sitzmann et al. 2020, eq. 1). With inputs arcsine
distributed on [-1, 1] (variance 1/2) and ``W ~ U(-sqrt(6/n)/omega, sqrt(6/n)/omega)``, the pre-activation
``omega W x`` has variance ``n * (6/n)/3 * 1/2 = 1`` and the activation stays arcsine distributed from layer to
layer (Sitzmann et al. 2020, supplement sec. 1). The first layer draws ``W ~ U(-1/n, 1/n)`` so that ``omega * W x``
spans several periods of the sine; the output layer is linear.

References
----------
V. Sitzmann, J. N. P. Martel, A. W. Bergman, D. B. Lindell, G. Wetzstein, "Implicit Neural Representations with
Periodic Activation Functions", NeurIPS 2020.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


class SineLayer(nn.Module):
    """``y = sin(omega * (W x + b))`` with the SIREN initialisation of ``W``.

    Parameters
    ----------
    in_features, out_features
        Widths of the input ``(B, in_features)`` and output ``(B, out_features)``.
    omega
        Frequency factor (``omega_0`` in the paper, 30 by default there).
    is_first
        First layer: ``W ~ U(-1/n, 1/n)``; otherwise ``W ~ U(-sqrt(6/n)/omega, sqrt(6/n)/omega)``.
    learn_omega
        Make ``omega`` a trainable scalar parameter (named ``omega``), else a buffer.

    Notes
    -----
    The bias keeps PyTorch's default ``U(-1/sqrt(n), 1/sqrt(n))``, as in the reference implementation; multiplied
    by ``omega`` it spreads the phases of the units, which brings the activations close to the arcsine law.

    The layer evaluates ``(omega W) x + omega b``: scaling the ``(out, in)`` weights instead of the ``(B, out)``
    pre-activation removes one elementwise pass over the batch forward and one backward (the same function; it
    differs only by float rounding).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        omega: float = 30.0,
        is_first: bool = False,
        learn_omega: bool = False,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"SineLayer({in_features}, {out_features}): expected widths >= 1")
        self.linear = nn.Linear(in_features, out_features)
        omega_t = torch.tensor(float(omega))
        if learn_omega:
            self.omega = nn.Parameter(omega_t)
        else:
            self.register_buffer("omega", omega_t)
        self.is_first = is_first
        bound = 1.0 / in_features if is_first else math.sqrt(6.0 / in_features) / float(omega)
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """``omega * (W x + b)`` computed as ``(omega W) x + omega b``, shape ``(B, out_features)``."""
        return F.linear(x, self.linear.weight * self.omega, self.linear.bias * self.omega)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.pre_activation(x))


class Siren(nn.Module):
    """SIREN: ``hidden_layers`` sine layers of width ``hidden_features`` and a linear output layer.

    Parameters
    ----------
    in_features, out_features
        Input ``(B, in_features)`` and output ``(B, out_features)`` widths.
    hidden_features, hidden_layers
        Width and number of sine layers ("256 x 3" is ``hidden_features=256, hidden_layers=3``).
    omega
        ``omega_0`` of every sine layer.
    learn_omega
        Give every sine layer a trainable ``omega`` (see :meth:`omega_parameters`).

    Examples
    --------
    >>> net = Siren(3, 4, hidden_features=32, hidden_layers=2)
    >>> net(torch.zeros(5, 3)).shape
    torch.Size([5, 4])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_features: int = 256,
        hidden_layers: int = 3,
        omega: float = 30.0,
        learn_omega: bool = False,
    ) -> None:
        super().__init__()
        if hidden_layers < 1:
            raise ValueError(f"Siren: hidden_layers = {hidden_layers}: expected >= 1")
        widths = [in_features] + [hidden_features] * hidden_layers
        self.layers = nn.ModuleList(
            SineLayer(a, b, omega=omega, is_first=(i == 0), learn_omega=learn_omega)
            for i, (a, b) in enumerate(itertools.pairwise(widths))
        )
        self.output = nn.Linear(hidden_features, out_features)
        bound = math.sqrt(6.0 / hidden_features) / omega
        with torch.no_grad():
            self.output.weight.uniform_(-bound, bound)

    def omega_parameters(self) -> list[nn.Parameter]:
        """The trainable ``omega`` scalars (empty unless ``learn_omega``), for their own optimiser group."""
        return [p for name, p in self.named_parameters() if name.endswith("omega")]

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every sine layer for input ``x``, each ``(B, hidden_features)`` (for diagnostics)."""
        out = []
        for layer in self.layers:
            x = layer(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.output(x)
