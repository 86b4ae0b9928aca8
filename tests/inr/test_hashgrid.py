"""Hash-grid encoding: dense levels are trilinear interpolation, the hash is Instant-NGP's, continuity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.interpolate import RegularGridInterpolator

from fieldlab.inr.models.hashgrid import HashGridEncoding, HashGridMLP


def randomised(enc: HashGridEncoding, seed: int = 0) -> HashGridEncoding:
    """Table entries O(1) instead of 1e-4, so that interpolation errors and jumps would be visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        enc.table.copy_(torch.rand(enc.table.shape, generator=g, dtype=enc.table.dtype) * 2 - 1)
    return enc


def test_dense_levels_equal_trilinear_interpolation_of_the_vertex_grid():
    """Every level here fits in the table, so level l is the (N_l+1)^3 vertex grid stored x-fastest; SciPy's
    RegularGridInterpolator (linear) on that grid over [0, 1]^3 is the independent reference."""
    enc = randomised(
        HashGridEncoding(3, levels=3, features=2, log2_table_size=14, base_resolution=3, growth=1.7, scale=(1, 2, 1))
    ).double()
    assert bool(enc.dense.all())
    u = torch.rand(500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = enc(u).reshape(500, enc.levels, enc.features).detach().numpy()
    table = enc.table.detach().numpy()
    for lvl in range(enc.levels):
        nx, ny, nz = (int(r) for r in enc.resolution[lvl])
        start = int(enc.offsets[lvl])
        grid = table[start : start + (nx + 1) * (ny + 1) * (nz + 1)].reshape(nz + 1, ny + 1, nx + 1, enc.features)
        axes = (np.linspace(0, 1, nz + 1), np.linspace(0, 1, ny + 1), np.linspace(0, 1, nx + 1))
        ref = RegularGridInterpolator(axes, grid, method="linear")(u.numpy()[:, ::-1])  # points as (z, y, x)
        np.testing.assert_allclose(out[:, lvl], ref, rtol=0, atol=1e-12)


def test_hashed_index_is_xor_of_prime_products_mod_table_size():
    """Mueller et al. 2022 eq. 4 by hand for one vertex: (v0 * 1) ^ (v1 * 2654435761) ^ (v2 * 805459861) mod 2^T."""
    enc = HashGridEncoding(3, levels=2, features=1, log2_table_size=6, base_resolution=8, growth=2.0)
    assert not bool(enc.dense.any())  # 9^3 and 17^3 vertices exceed 2^6 entries
    v = torch.tensor([[[3, 5, 7], [3, 5, 7]]])  # (1, L, 3)
    expected = ((3 * 1) ^ (5 * 2654435761) ^ (7 * 805459861)) % 2**6
    idx = enc.vertex_index(v)[0]
    assert int(idx[0]) == expected
    assert int(idx[1]) == expected + 64  # second level's table follows the first


def test_encoding_is_continuous_across_cell_borders():
    """Approach points on a cell border of the finest level from both sides: d-linear interpolation is continuous,
    so the difference is at most Lipschitz * 2 eps with Lipschitz <= resolution * 2 max|table| * d per level."""
    enc = randomised(HashGridEncoding(3, levels=4, features=2, log2_table_size=8, base_resolution=4, growth=2.0))
    enc = enc.double()
    n_finest = int(enc.resolution[-1, 0])
    g = torch.Generator().manual_seed(2)
    u = torch.rand(200, 3, dtype=torch.float64, generator=g)
    u[:, 0] = torch.randint(1, n_finest, (200,), generator=g).double() / n_finest  # x exactly on a border
    eps = 1e-9
    lo, hi = u.clone(), u.clone()
    lo[:, 0] -= eps
    hi[:, 0] += eps
    jump = (enc(hi) - enc(lo)).abs().max().item()
    assert jump < n_finest * 2 * 3 * 2 * eps
    # while the table itself jumps by O(1) between neighbouring vertices
    assert (enc(u + 0.5 / n_finest) - enc(u)).abs().max().item() > 0.1


def test_vertex_points_return_their_table_entry():
    """At a vertex every weight but one is zero: the encoding of the finest (hashed) level is that vertex's row."""
    enc = randomised(HashGridEncoding(3, levels=2, features=3, log2_table_size=7, base_resolution=6, growth=2.0))
    v = torch.tensor([[2, 7, 11]])  # a vertex of the 12^3 level
    u = v.double() / 12
    enc = enc.double()
    row = enc.vertex_index(torch.stack([v // 2, v], dim=1))[0, 1]  # (1, L, 3): level 0 at half resolution
    out = enc(u).reshape(1, 2, 3)[0, 1]
    torch.testing.assert_close(out, enc.table[row])


@pytest.mark.parametrize("batch", [1, 64])
def test_mlp_shapes_and_every_parameter_gets_a_gradient(batch):
    net = HashGridMLP(3, 4, mlp_width=16, mlp_layers=2, levels=4, features=2, log2_table_size=10, base_resolution=4)
    out = net(torch.rand(batch, 3))
    assert out.shape == (batch, 4)
    out.sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.any(p.grad != 0), name


def test_parameter_count_is_dense_vertices_or_table_size_per_level():
    """Level l stores min((N_l + 1)^3, T) rows of F features: N = 4, 8, 16 with T = 2^10 -> 125 + 729 + 1024 rows."""
    enc = HashGridEncoding(3, levels=3, features=2, log2_table_size=10, base_resolution=4, growth=2.0)
    assert enc.table.numel() == (125 + 729 + 1024) * 2
    assert enc.dense.tolist() == [True, True, False]


def test_fine_levels_whose_vertex_count_overflows_int64_are_hashed():
    """N up to 9 * 1.98^20 / 0.03 cells per axis: (N + 1)^3 ~ 1e25 > 2^63. Such a level holds T rows and hashes.

    Reached by the exploration ranges (t_period 0.03, base 9, growth 1.98, 21 levels); the vertex count used to wrap
    around in int64 and the table asked for 3.8e18 bytes.
    """
    scale = (1 / 0.03, 1 / 0.15, 1 / 0.15)
    enc = HashGridEncoding(3, levels=21, features=1, log2_table_size=12, base_resolution=9, growth=1.98, scale=scale)
    cells = [[max(1, int(9 * 1.98**lvl * s)) for s in scale] for lvl in range(21)]
    rows = [min((a + 1) * (b + 1) * (c + 1), 2**12) for a, b, c in cells]  # Python integers: exact
    assert enc.table.shape == (sum(rows), 1) and not enc.dense.any()
    out = enc(torch.rand(64, 3) * 2 - 1)
    assert out.shape == (64, 21) and torch.isfinite(out).all()


def test_initial_table_is_small_and_inputs_are_checked():
    enc = HashGridEncoding(2, levels=2, features=2, log2_table_size=8, base_resolution=4)
    assert enc.table.abs().max() <= 1e-4
    with pytest.raises(ValueError, match="expected \\(B, 2\\)"):
        enc(torch.rand(5, 3))


@pytest.mark.parametrize("n_dims", [1, 2, 3, 4])
def test_forward_equals_corner_by_corner_sum_of_vertex_rows(n_dims):
    """enc(u) per level = sum over the 2^d corners c of prod_i (c_i f_i + (1 - c_i)(1 - f_i)) * table[index(v + c)],
    evaluated corner by corner with :meth:`vertex_index` (dense and hashed levels mixed)."""
    log2_table_size = 4 if n_dims == 1 else 9  # resolutions 3, 6, 12, 24: the last level(s) hashed
    enc = HashGridEncoding(n_dims, levels=4, features=2, log2_table_size=log2_table_size, base_resolution=3, growth=2.0)
    enc = randomised(enc).double()
    assert bool(enc.dense.any()) and not bool(enc.dense.all())
    u = torch.rand(40, n_dims, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    u[0] = 1.0  # the upper border stays in the last cell
    pos = u[:, None, :] * enc.resolution.double()  # (B, L, d)
    cell = torch.minimum(pos.floor().long(), enc.resolution - 1)
    frac = pos - cell.double()
    expected = torch.zeros(40, enc.levels, enc.features, dtype=torch.float64)
    for corner in itertools.product((0, 1), repeat=n_dims):
        c = torch.tensor(corner)
        weight = torch.prod(torch.where(c.bool(), frac, 1 - frac), dim=-1)  # (B, L)
        expected += weight[..., None] * enc.table[enc.vertex_index(cell + c)]
    torch.testing.assert_close(enc(u).reshape(40, enc.levels, enc.features), expected, rtol=0, atol=1e-12)
