"""Vectorised assembly of the Q1 stiffness matrix of a voxel grid: 27-point stencil arrays straight into CSR.

Every tissue voxel ``e`` is a trilinear hexahedron with constant tensor ``sigma_e``; its element matrix is
``K_e = sum_c sigma_e,c K[c]`` (:func:`~.solver.element_matrices`, channels xx, yy, zz, xy, xz, yz). A corner ``n`` and
its neighbour ``n + o`` (``o`` in ``{-1, 0, 1}^3``) share the voxels ``e = n - c_a`` whose local corners ``a`` and
``b = a + o`` both lie in ``{0, 1}^3``, so

    A[n, n + o] = sum_{a : c_a + o in {0,1}^3}  sum_c  sigma_{n - c_a, c}  K[c, a, b(a, o)].

Each term is a whole-grid array operation: one small matrix product ``K_pairs (m, 6) @ sigma (6, D*H*W)`` per local
corner ``a`` (BLAS, all cores) and one shifted add per pair. Symmetry halves the work: only the centre and the 13
offsets ``o > 0`` (lexicographically) are summed into 14 stencil arrays; ``A[n, n - o] = A[n - o, n]`` is gathered
from the positive stencil at ``n - o``. The rows are gathered at the active corners, already in CSR order (columns
ascend with the offset index), and written as CSR without sorting or summing duplicates. The result equals the
element-by-element sum to round-off: the same products, added in a different order.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Offsets of the 8 corners of a voxel (d, h, w), in the order of the local basis functions.
CORNERS = np.array([(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.int64)
#: The 27 stencil offsets (d, h, w) in ascending order; offset index ``9 (o_d+1) + 3 (o_h+1) + (o_w+1)``.
OFFSETS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=np.int64)
#: Index of the zero offset (the diagonal).
CENTRE = 13
#: Entries below this fraction of the largest diagonal entry are round-off of analytic zeros and are not stored
#: (a real coupling is at least ~1/24 of sigma_min h, so this keeps every coupling up to a contrast of ~1e12).
ZERO_TOL = 1e-14


def offset_index(off: np.ndarray) -> int:
    """Index of the offset ``off`` (d, h, w) in :data:`OFFSETS`."""
    return int(9 * (off[0] + 1) + 3 * (off[1] + 1) + (off[2] + 1))


def node_mask(mask: np.ndarray) -> np.ndarray:
    """``(D+1, H+1, W+1)`` bool: the corners touched by at least one tissue voxel of ``mask`` (D, H, W)."""
    D, H, W = mask.shape
    out = np.zeros((D + 1, H + 1, W + 1), dtype=bool)
    for c in CORNERS:
        out[c[0] : c[0] + D, c[1] : c[1] + H, c[2] : c[2] + W] |= mask
    return out


def stencil_arrays(sigma: np.ndarray, mask: np.ndarray, K: np.ndarray) -> np.ndarray:
    """The centre and positive-offset stencil coefficients at every corner: ``(14, D+1, H+1, W+1)``,
    ``S[j, n] = A[n, n + OFFSETS[CENTRE + j]]``; the negative offsets follow by symmetry (:func:`stencil_to_csr`).

    ``sigma`` is ``(D, H, W, 6)`` (zeroed outside ``mask``), ``K`` the ``(6, 8, 8)`` element matrices per channel.
    """
    D, H, W = mask.shape
    # (D, H, W, 6) -> (6, D*H*W): channel-major, air zeroed, so each product below is one BLAS call
    sig = np.empty((6, D * H * W))
    for c in range(6):
        sig[c] = np.where(mask, sigma[..., c], 0.0).ravel()
    stencil = np.zeros((27 - CENTRE, D + 1, H + 1, W + 1))
    vals = np.empty((8, D * H * W))
    for a in range(8):
        ca = CORNERS[a]
        pairs = [(b, offset_index(CORNERS[b] - ca)) for b in range(8)]
        pairs = [(b, k) for b, k in pairs if k >= CENTRE]  # the centre and the positive offsets
        # "mc,ce->me": m pairs (a, b), c channels, e voxels: the element entry K_e[a, b] of every voxel
        out = vals[: len(pairs)]
        np.matmul(K[:, a, [b for b, _ in pairs]].T, sig, out=out)
        for (_, k), v in zip(pairs, out, strict=True):
            stencil[k - CENTRE, ca[0] : ca[0] + D, ca[1] : ca[1] + H, ca[2] : ca[2] + W] += v.reshape(D, H, W)
    return stencil


def stencil_to_csr(stencil: np.ndarray, active: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """CSR matrix over the ``active`` corners from the positive half-stencil ``(14, D+1, H+1, W+1)``
    (:func:`stencil_arrays`), and the flat indices of the active corners.

    Row ``i`` is corner ``n = nodes[i]``; its entry at offset ``o`` is ``S[o][n]`` for ``o >= 0`` and, by symmetry,
    ``A[n, n + o] = A[n + o, n] = S[-o][n + o]`` for ``o < 0``. Columns ascend with the offset index (flat offsets
    ``OFFSETS @ strides`` increase with it), so the rows come out sorted.
    """
    shape = active.shape
    nodes = np.flatnonzero(active)
    n = nodes.size
    index_dtype = np.int32 if active.size < np.iinfo(np.int32).max else np.int64
    renumber = np.full(active.size, -1, dtype=index_dtype)
    renumber[nodes] = np.arange(n, dtype=index_dtype)
    lin = OFFSETS @ np.array([shape[1] * shape[2], shape[2], 1])
    flat = stencil.reshape(stencil.shape[0], -1)
    data = np.empty((27, n))  # offset-major while gathering (contiguous writes), node-major for CSR below
    cols = np.empty((27, n), dtype=index_dtype)
    for k in range(27):
        neighbour = nodes + lin[k]
        np.take(renumber, neighbour, mode="clip", out=cols[k])  # clipped only where the entry is zero
        if k >= CENTRE:
            np.take(flat[k - CENTRE], nodes, out=data[k])
        else:  # S[-o] at n + o; a neighbour past either end of the flat grid has no coupling
            np.take(flat[26 - k - CENTRE], neighbour, mode="clip", out=data[k])
            data[k, (neighbour < 0) | (neighbour >= active.size)] = 0.0
    data, cols = data.T.copy(), cols.T.copy()  # (27, n) -> (n, 27): rows in node order, columns in offset order
    # drop round-off: entries that vanish analytically (e.g. face neighbours of an isotropic cube) come out as
    # +-1e-18 of the diagonal or as exact zeros depending on the order of the sums
    keep = np.abs(data) > ZERO_TOL * float(np.max(np.abs(flat[0])))
    indptr = np.zeros(n + 1, dtype=index_dtype)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    A = sp.csr_matrix((data[keep], cols[keep], indptr), shape=(n, n))
    A.has_sorted_indices = True
    return A, nodes


def assemble_stencil(sigma: np.ndarray, mask: np.ndarray, K: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Q1 stiffness matrix over the corners of the tissue voxels: ``(A, nodes)`` as :func:`~.solver.assemble`.

    ``A_ab = sum_e int_e grad(phi_a)^T sigma_e grad(phi_b) dV`` assembled from whole-grid stencil arrays
    (module notes); ``K`` are the element matrices of the voxel's spacing.
    """
    stencil = stencil_arrays(sigma, mask, K)
    return stencil_to_csr(stencil, node_mask(mask))


def pin_first(A: sp.csr_matrix) -> sp.csr_matrix:
    """``A[1:, 1:]`` of a CSR matrix with sorted indices, without scipy's general slicing (one pass over the data).

    Row 0 is dropped by moving the row pointer; column 0 can only be the first entry of a row (sorted columns), so
    it is removed where a row starts with it.
    """
    indptr, indices, data = A.indptr, A.indices, A.data
    start = indptr[1]
    first_col = np.zeros(indices.size, dtype=bool)
    rows_start = indptr[1:-1]
    has0 = rows_start < indptr[2:]
    has0[has0] = indices[rows_start[has0]] == 0
    first_col[rows_start[has0]] = True
    keep = ~first_col[start:]
    new_indptr = np.zeros(A.shape[0], dtype=indptr.dtype)
    np.cumsum(np.diff(indptr[1:]) - has0, out=new_indptr[1:])
    out = sp.csr_matrix(
        (data[start:][keep], indices[start:][keep] - 1, new_indptr), shape=(A.shape[0] - 1, A.shape[1] - 1)
    )
    out.has_sorted_indices = True
    return out


def assemble_pairwise(sigma: np.ndarray, mask: np.ndarray, K: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """The earlier assembly, kept as the reference of :func:`assemble_stencil` (tests, ``bench/solver.py``).

    All 64 local pairs ``(a, b)`` are summed into the stencil (no symmetry), each as a ``(D, H, W, 6) @ (6,)``
    product, and the ``(n, 27)`` table is gathered with fancy indexing; exact zeros are dropped. Same ``(A, nodes)``
    as :func:`assemble_stencil` up to round-off (and round-off entries of analytic zeros).
    """
    D, H, W = mask.shape
    sig = np.where(mask[..., None], sigma, 0.0).astype(np.float64)
    stencil = np.zeros((27, D + 1, H + 1, W + 1))
    for a in range(8):
        ca = CORNERS[a]
        for b in range(8):
            k = offset_index(CORNERS[b] - ca)
            stencil[k, ca[0] : ca[0] + D, ca[1] : ca[1] + H, ca[2] : ca[2] + W] += sig @ K[:, a, b]
    active = node_mask(mask)
    nodes = np.flatnonzero(active)
    renumber = np.full(active.size, -1, dtype=np.int64)
    renumber[nodes] = np.arange(nodes.size)
    lin = OFFSETS @ np.array([(H + 1) * (W + 1), W + 1, 1])
    data = stencil.reshape(27, -1)[:, nodes].T  # (n, 27) rows in node order, columns in offset order
    keep = data != 0
    cols = renumber[np.clip(nodes[:, None] + lin[None, :], 0, active.size - 1)]
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    return sp.csr_matrix((data[keep], cols[keep], indptr), shape=(nodes.size, nodes.size)), nodes
