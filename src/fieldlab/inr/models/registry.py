"""The four INR variants of an MPM field, built from ``params.yaml: inr``, and their input coordinates.

================  ===============================  =======================  ==============================
``inr.model``     input per query                  network                  output per query
================  ===============================  =======================  ==============================
``siren_t``       ``t / t_period``                 SIREN                    all ``N x C`` values of a frame
``siren_id``      ``(t / t_period, id / xy_period)``  SIREN                 ``C`` values of one particle
``siren_txy``     ``(t / t_period, x / xy_period, y / xy_period)``  SIREN   ``C`` values of one particle
``ngp``           ``(t, x, y)`` in ``[0, 1]^3``    hash grid + ReLU MLP     ``C`` values of one particle
================  ===============================  =======================  ==============================

For ``ngp`` the periods divide the grid resolution along each axis instead of the input. Coordinates are those
of :mod:`fieldlab.inr.data`; ``(x, y)`` is the particle's position at that frame (Lagrangian).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fieldlab.config import INRConfig
from fieldlab.inr.data import FieldWindow
from fieldlab.inr.models.hashgrid import HashGridMLP
from fieldlab.inr.models.siren import Siren

INR_MODELS = ("siren_t", "siren_id", "siren_txy", "ngp")
#: models whose query is a position, so that they answer particles they were not fitted on
COORDINATE_MODELS = ("siren_txy", "ngp")


class FieldINR(nn.Module):
    """Wrap a network so that inputs for ``b`` frames give the field of every particle, ``(b, N, C)``.

    Inputs are ``(b, 1)`` for ``siren_t`` and ``(b, N, d)`` for the per-particle models.
    """

    def __init__(self, kind: str, net: nn.Module, n_particles: int, n_components: int) -> None:
        super().__init__()
        if kind not in INR_MODELS:
            raise ValueError(f"FieldINR: kind = {kind!r}: expected one of {INR_MODELS}")
        self.kind, self.net = kind, net
        self.n_particles, self.n_components = n_particles, n_components

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        b = inputs.shape[0]
        if self.kind == "siren_t":
            return self.net(inputs).reshape(b, self.n_particles, self.n_components)  # (b, N*C) -> (b, N, C)
        out = self.net(inputs.reshape(-1, inputs.shape[-1]))  # (b, n, d) -> (b*n, d) -> (b*n, C)
        return out.reshape(b, inputs.shape[1], self.n_components)  # any n points per frame (unseen particles too)


def build_inr(cfg: INRConfig, n_particles: int, n_components: int) -> FieldINR:
    """The network of ``cfg.model`` for ``n_particles`` particles and ``n_components`` components."""
    if cfg.model == "ngp":
        g = cfg.ngp
        net: nn.Module = HashGridMLP(
            3,
            n_components,
            mlp_width=g.mlp_width,
            mlp_layers=g.mlp_layers,
            levels=g.levels,
            features=g.features,
            log2_table_size=g.log2_table_size,
            base_resolution=g.base_resolution,
            growth=g.growth,
            scale=(1.0 / cfg.t_period, 1.0 / cfg.xy_period, 1.0 / cfg.xy_period),
        )
    else:
        in_features = {"siren_t": 1, "siren_id": 2, "siren_txy": 3}[cfg.model]
        out_features = n_particles * n_components if cfg.model == "siren_t" else n_components
        net = Siren(in_features, out_features, cfg.hidden_features, cfg.hidden_layers, cfg.omega, cfg.learn_omega)
    return FieldINR(cfg.model, net, n_particles, n_components)


def make_inputs(cfg: INRConfig, window: FieldWindow) -> torch.Tensor:
    """Input coordinates of every frame: ``(T, 1)`` for ``siren_t``, else ``(T, N, d)`` (float32)."""
    t = window.time_coordinate()  # (T,) in [-1, 1]
    n_t, n = window.n_frames, window.n_particles
    if cfg.model == "siren_t":
        coords = (t / cfg.t_period)[:, None]
    elif cfg.model == "siren_id":
        ids = np.zeros(1) if n == 1 else np.linspace(-1.0, 1.0, n)
        coords = np.stack(np.broadcast_arrays(t[:, None] / cfg.t_period, ids[None, :] / cfg.xy_period), axis=-1)
    elif cfg.model == "siren_txy":
        xy = (2.0 * window.positions - 1.0) / cfg.xy_period  # (T, N, 2)
        coords = np.concatenate([np.broadcast_to(t[:, None, None] / cfg.t_period, (n_t, n, 1)), xy], axis=-1)
    else:  # ngp: [0, 1]^3; the periods scale the grid resolution instead
        tt = np.broadcast_to(((t + 1.0) / 2.0)[:, None, None], (n_t, n, 1))
        coords = np.concatenate([tt, np.clip(window.positions, 0.0, 1.0)], axis=-1)
    return torch.as_tensor(np.asarray(coords, dtype=np.float32))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def compression_ratio(n_values: int, n_parameters: int) -> float:
    """Values fitted per parameter, ``n_values / n_parameters`` (> 1: the INR is smaller than the data).

    Examples
    --------
    >>> compression_ratio(48 * 9000 * 4, 200_000)
    8.64
    """
    if n_parameters <= 0:
        raise ValueError(f"compression_ratio: n_parameters = {n_parameters}: expected > 0")
    return n_values / n_parameters
