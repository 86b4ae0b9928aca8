"""Compiled transfers between a voxel grid and a coarser grid of whole blocks: block sums down, Q1 values up.

A coarse cell is a block of ``(rd, rh, rw)`` voxels. Two kernels (``numba``, cached on disk, run on blocks of planes
by :func:`~.stencil.split`) replace the array expressions of :mod:`~.coarse` and :mod:`~.transfer`, which read and
wrote the fine volume several times (float64 copies of the tensors, a masked copy, three einsum passes, a division):

- :func:`block_sums`: per coarse cell the tissue count ``sum_v m_v``, the tissue's tensor sum
  ``sum_v m_v sigma_v`` (6 components) and the source sum ``sum_v f_v``, in one pass over the fine arrays,
  accumulated in float64 in the voxels' order (``d``, then ``h``, then ``w`` within the block);
- :func:`prolong_values`: the coarse Q1 field (corner values, active corners) at every fine voxel centre,
  ``sum_c w_c a_c phi_c / sum_c w_c a_c`` over the 8 corners of its coarse cell with the trilinear weights at
  ``s = (i mod r + 1/2) / r`` per axis (:func:`~.transfer.corner_weights`), and ``NaN`` where no active corner
  contributes (``sum_c w_c a_c <= 1e-9``, the caller fills those).

Each output value is written by one thread from a fixed sequence of additions: the same bytes on any number of
threads. At 2x (192x96x96 -> 96x48x48) on 2 cores the sums take ~12 ms (the array expressions: 0.14 s) and the
prolongation ~8 ms (0.10 s with the gauge; ``bench/subgrid.py`` measures both against the expressions they
replaced).
"""

from __future__ import annotations

import numba
import numpy as np

from fieldlab.potential.physics.fem.stencil import split

#: Least summed trilinear weight of the active corners for a defined value (as :func:`~.transfer.fill_and_gauge`).
WEIGHT_MIN = 1e-9


@numba.njit(cache=True, nogil=True)
def _block_sums(sigma, source, mask, rd, rh, rw, count, sums, current, c0, c1):  # pragma: no cover - compiled
    """Coarse planes ``c0 <= c < c1`` of :func:`block_sums`."""
    _, Hc, Wc = count.shape
    for c in range(c0, c1):
        for b in range(Hc):
            for a in range(Wc):
                n = 0.0
                s0 = s1 = s2 = s3 = s4 = s5 = 0.0
                f = 0.0
                for z in range(c * rd, (c + 1) * rd):
                    for y in range(b * rh, (b + 1) * rh):
                        for x in range(a * rw, (a + 1) * rw):
                            f += source[z, y, x]
                            if mask[z, y, x]:
                                n += 1.0
                                s0 += sigma[z, y, x, 0]
                                s1 += sigma[z, y, x, 1]
                                s2 += sigma[z, y, x, 2]
                                s3 += sigma[z, y, x, 3]
                                s4 += sigma[z, y, x, 4]
                                s5 += sigma[z, y, x, 5]
                count[c, b, a] = n
                current[c, b, a] = f
                sums[c, b, a, 0] = s0
                sums[c, b, a, 1] = s1
                sums[c, b, a, 2] = s2
                sums[c, b, a, 3] = s3
                sums[c, b, a, 4] = s4
                sums[c, b, a, 5] = s5


def block_sums(
    sigma: np.ndarray, source: np.ndarray, mask: np.ndarray, factor: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per coarse cell of ``factor`` voxels: tissue count, tissue tensor sum ``(Dc, Hc, Wc, 6)`` and source sum, all
    float64, from ``sigma`` ``(D, H, W, 6)``, ``source`` and ``mask`` ``(D, H, W)`` (module notes).

    Examples
    --------
    >>> m = np.zeros((4, 2, 2), dtype=bool); m[:2] = True
    >>> n, s, f = block_sums(np.ones((4, 2, 2, 6)), np.ones((4, 2, 2)), m, (2, 2, 2))
    >>> n.ravel().tolist(), s[..., 0].ravel().tolist(), f.ravel().tolist()
    ([8.0, 0.0], [8.0, 0.0], [8.0, 8.0])
    """
    rd, rh, rw = (int(r) for r in factor)
    D, H, W = mask.shape
    shape = (D // rd, H // rh, W // rw)
    count, current = np.empty(shape), np.empty(shape)
    sums = np.empty((*shape, 6))
    args = (np.ascontiguousarray(sigma), np.ascontiguousarray(source), np.ascontiguousarray(mask, dtype=np.bool_))
    split(_block_sums, mask.size, 0, shape[0], *args, rd, rh, rw, count, sums, current)
    return count, sums, current


@numba.njit(cache=True, nogil=True)
def _prolong(phi, active, rd, rh, rw, out, i0, i1):  # pragma: no cover - compiled
    """Fine planes ``i0 <= i < i1`` of :func:`prolong_values`."""
    _, H, W = out.shape
    for i in range(i0, i1):
        c = i // rd
        sz = ((i - c * rd) + 0.5) / rd
        for j in range(H):
            b = j // rh
            sy = ((j - b * rh) + 0.5) / rh
            for k in range(W):
                a = k // rw
                sx = ((k - a * rw) + 0.5) / rw
                value = 0.0
                weight = 0.0
                for dz in range(2):
                    wz = sz if dz else 1.0 - sz
                    for dy in range(2):
                        wy = sy if dy else 1.0 - sy
                        for dx in range(2):
                            if active[c + dz, b + dy, a + dx]:
                                w = wz * wy * (sx if dx else 1.0 - sx)
                                value += w * phi[c + dz, b + dy, a + dx]
                                weight += w
                out[i, j, k] = value / weight if weight > WEIGHT_MIN else np.nan


def prolong_values(phi: np.ndarray, active: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    """The coarse Q1 field of corner values ``phi`` and ``active`` corners ``(Dc+1, Hc+1, Wc+1)`` at the centres of
    the ``(Dc rd, Hc rh, Wc rw)`` fine voxels, renormalised over the active corners; ``NaN`` where none contributes.

    Examples
    --------
    >>> phi = np.zeros((2, 2, 2)); phi[1] = 1.0  # linear along D
    >>> prolong_values(phi, np.ones((2, 2, 2), dtype=bool), (2, 1, 1))[:, 0, 0].tolist()
    [0.25, 0.75]
    """
    rd, rh, rw = (int(r) for r in factor)
    shape = tuple((n - 1) * r for n, r in zip(phi.shape, (rd, rh, rw), strict=True))
    out = np.empty(shape)
    args = (np.ascontiguousarray(phi, dtype=np.float64), np.ascontiguousarray(active, dtype=np.bool_))
    split(_prolong, out.size, 0, shape[0], *args, rd, rh, rw, out)
    return out
