"""Multiresolution hash-grid encoding (Instant-NGP) and the small MLP that reads it, in pure PyTorch.

Level ``l`` of ``L`` is a grid of resolution ``N_l = floor(N_min * b**l)`` (per axis, times that axis' ``scale``)
whose vertices hold ``F`` trainable features. A point ``u`` in ``[0, 1]^d`` is encoded by d-linear interpolation
of the ``2^d`` vertices of its cell at every level, and the ``L`` feature vectors are concatenated:

    enc(u) = concat_l  sum_{c in {0,1}^d}  w_c(u) * table_l[index_l(floor(u * N_l) + c)],
    w_c(u) = prod_i (c_i * f_i + (1 - c_i) * (1 - f_i)),   f = u * N_l - floor(u * N_l).

A level whose ``prod_i (N_l,i + 1)`` vertices fit in the table of size ``T = 2**log2_table_size`` is dense
(``index = sum_i v_i * prod_{j<i} (N_l,j + 1)``, one entry per vertex); the others use the spatial hash
``index = XOR_i (v_i * pi_i) mod T`` with ``pi = (1, 2654435761, 805459861)`` (Mueller et al. 2022, eq. 4).
Table entries start in ``U(-1e-4, 1e-4)``. Dense levels store only the entries they use.

References
----------
T. Mueller, A. Evans, C. Schied, A. Keller, "Instant Neural Graphics Primitives with a Multiresolution Hash
Encoding", ACM Trans. Graph. 41(4), 2022.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

#: spatial-hash primes of Instant-NGP, one per input dimension (the first is 1 for memory coherence)
PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037)


class HashGridEncoding(nn.Module):
    """Encode ``(B, d)`` points in ``[0, 1]^d`` into ``(B, levels * features)`` interpolated grid features.

    Parameters
    ----------
    n_dims
        Input dimension ``d`` (1..5).
    levels, features
        ``L`` levels with ``F`` features each.
    log2_table_size
        ``T = 2**log2_table_size`` entries per hashed level.
    base_resolution, growth
        ``N_min`` and ``b``: level ``l`` has resolution ``floor(N_min * b**l)``.
    scale
        Per-axis factor on the resolution (``1 / period``); a smaller factor expects slower variation.

    Examples
    --------
    >>> enc = HashGridEncoding(3, levels=4, features=2, log2_table_size=10, base_resolution=4, growth=2.0)
    >>> enc(torch.rand(7, 3)).shape
    torch.Size([7, 8])
    """

    def __init__(
        self,
        n_dims: int = 3,
        levels: int = 16,
        features: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        growth: float = 1.5,
        scale: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= n_dims <= len(PRIMES):
            raise ValueError(f"HashGridEncoding: n_dims = {n_dims}: expected 1..{len(PRIMES)}")
        if levels < 1 or features < 1 or base_resolution < 1 or growth < 1.0 or log2_table_size < 1:
            raise ValueError("HashGridEncoding: expected levels, features, base_resolution >= 1 and growth >= 1")
        scale = tuple(scale) if scale is not None else (1.0,) * n_dims
        if len(scale) != n_dims or any(s <= 0 for s in scale):
            raise ValueError(f"HashGridEncoding: scale = {scale}: expected {n_dims} positive factors")
        self.n_dims, self.levels, self.features = n_dims, levels, features
        self.table_size = 2**log2_table_size
        res = torch.tensor(
            [[max(1, int(base_resolution * growth**lvl * s)) for s in scale] for lvl in range(levels)], dtype=torch.long
        )  # (L, d) cells per axis
        # vertex counts in Python integers: prod(N + 1) of a fine level overflows int64 (a wrapped, garbage size)
        n_vertices = [math.prod(int(r) + 1 for r in row) for row in res.tolist()]
        dense = torch.tensor([n <= self.table_size for n in n_vertices])
        sizes = torch.tensor([min(n, self.table_size) for n in n_vertices], dtype=torch.long)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)[:-1]])
        strides = torch.cumprod(torch.cat([torch.ones(levels, 1, dtype=torch.long), res[:, :-1] + 1], dim=1), dim=1)
        self.register_buffer("resolution", res, persistent=False)
        self.register_buffer("dense", dense, persistent=False)
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("strides", strides, persistent=False)  # (L, d) dense-index strides
        self.register_buffer("primes", torch.tensor(PRIMES[:n_dims], dtype=torch.long), persistent=False)
        corners = torch.tensor(list(itertools.product((0, 1), repeat=n_dims)), dtype=torch.long)
        self.register_buffer("corners", corners, persistent=False)  # (2^d, d)
        self.table = nn.Parameter(torch.empty(int(sizes.sum()), features).uniform_(-1e-4, 1e-4))

    @property
    def out_features(self) -> int:
        return self.levels * self.features

    def vertex_index(self, vertices: torch.Tensor) -> torch.Tensor:
        """Row of ``table`` for integer vertices ``(..., L, d)`` (level along dim -2); dense or hashed per level."""
        dense_idx = (vertices * self.strides).sum(-1)  # (..., L)
        hashed = vertices * self.primes  # (..., L, d): v_i * pi_i fits in int64 for v_i < 2^31
        h = hashed[..., 0]
        for i in range(1, self.n_dims):
            h = torch.bitwise_xor(h, hashed[..., i])
        hash_idx = torch.bitwise_and(h, self.table_size - 1)  # mod T, T a power of two
        return torch.where(self.dense, dense_idx, hash_idx) + self.offsets

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Encode ``u`` ``(B, d)``; the ``2^d`` corners are built axis by axis from per-axis pairs.

        For axis ``i`` the two vertices of the cell are ``v_i`` and ``v_i + 1``: their dense-index terms
        ``v_i s_i`` and ``v_i s_i + s_i``, hash terms ``v_i pi_i`` and ``v_i pi_i + pi_i`` and weights ``1 - f_i``
        and ``f_i`` are combined over the axes by sum, XOR and product (corner order of ``self.corners``, the first
        axis slowest). This gives the same index and weight as :meth:`vertex_index` and the product formula, but
        touches ``(B, L, 2^d)`` arrays instead of ``(B, L, 2^d, d)`` ones.
        """
        if u.ndim != 2 or u.shape[1] != self.n_dims:
            raise ValueError(f"HashGridEncoding: input shape {tuple(u.shape)}: expected (B, {self.n_dims})")
        res = self.resolution.to(u.dtype)  # (L, d)
        pos = u.clamp(0.0, 1.0)[:, None, :] * res  # (B, d) -> (B, L, d) continuous grid coordinates
        cell = torch.minimum(pos.floor().long(), self.resolution - 1)  # keep u = 1 inside the last cell
        frac = pos - cell.to(u.dtype)  # (B, L, d) in [0, 1]
        dense_ax = cell * self.strides  # (B, L, d): v_i s_i
        hash_ax = cell * self.primes  # (B, L, d): v_i pi_i, fits in int64 for v_i < 2^31
        weight = torch.stack([1 - frac, frac], dim=-1)  # (B, L, d, 2): weights of the low and high vertex
        dense_pair = torch.stack([dense_ax, dense_ax + self.strides], dim=-1)  # (B, L, d, 2)
        hash_pair = torch.stack([hash_ax, hash_ax + self.primes], dim=-1)  # (B, L, d, 2)
        w, di, hi = weight[:, :, 0], dense_pair[:, :, 0], hash_pair[:, :, 0]  # (B, L, 2)
        for i in range(1, self.n_dims):  # (B, L, 2^i) x (B, L, 2) -> (B, L, 2^(i+1)), earlier axes slower
            w = (w[..., :, None] * weight[:, :, i, None, :]).flatten(-2)
            di = (di[..., :, None] + dense_pair[:, :, i, None, :]).flatten(-2)
            hi = torch.bitwise_xor(hi[..., :, None], hash_pair[:, :, i, None, :]).flatten(-2)
        hi = torch.bitwise_and(hi, self.table_size - 1)  # mod T, T a power of two
        idx = torch.where(self.dense[:, None], di, hi) + self.offsets[:, None]  # (B, L, 2^d)
        out = (w[..., None] * self.table[idx]).sum(dim=2)  # (B, L, F): sum over corners of w_c * table row
        return out.reshape(u.shape[0], -1)  # (B, L*F)


class HashGridMLP(nn.Module):
    """Instant-NGP field: :class:`HashGridEncoding` followed by a ReLU MLP with a linear output.

    Parameters
    ----------
    n_dims, out_features
        Input ``(B, n_dims)`` in ``[0, 1]^d`` and output ``(B, out_features)``.
    mlp_width, mlp_layers
        Width and number of hidden ReLU layers of the MLP.
    **encoding
        Keyword arguments of :class:`HashGridEncoding`.
    """

    def __init__(self, n_dims: int, out_features: int, mlp_width: int = 64, mlp_layers: int = 2, **encoding) -> None:
        super().__init__()
        self.encoding = HashGridEncoding(n_dims, **encoding)
        layers: list[nn.Module] = []
        width = self.encoding.out_features
        for _ in range(mlp_layers):
            layers += [nn.Linear(width, mlp_width), nn.ReLU()]
            width = mlp_width
        layers.append(nn.Linear(width, out_features))
        self.mlp = nn.Sequential(*layers)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encoding(u))
