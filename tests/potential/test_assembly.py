"""The vectorised Q1 assembly against independent truth: an element-by-element dense sum, the earlier pairwise
assembly (entry by entry), symmetry and the constant null space of the Neumann matrix, and the pinned submatrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fieldlab.potential.physics.fem.assembly import CORNERS, assemble_pairwise, assemble_stencil, pin_first
from fieldlab.potential.physics.fem.solver import assemble, element_matrices

SPACINGS = {"cube": (1e-3, 1e-3, 1e-3), "box": (0.7e-3, 1.3e-3, 2.1e-3)}


def random_tensors(rng: np.random.Generator, shape: tuple[int, ...], air: float) -> np.ndarray:
    """``(*shape, 6)`` random SPD tensors ``R diag(l) R^T`` (l in [0.02, 1.5] S/m, R a random rotation: every
    channel non-zero), zero in a random ``air`` fraction of the voxels."""
    q, r = np.linalg.qr(rng.normal(size=(*shape, 3, 3)))
    rot = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    lam = rng.uniform(0.02, 1.5, size=(*shape, 3))
    s = np.einsum("...ik,...k,...jk->...ij", rot, lam, rot)  # i, j physical axes; k eigen-directions
    sigma = np.stack([s[..., 0, 0], s[..., 1, 1], s[..., 2, 2], s[..., 0, 1], s[..., 0, 2], s[..., 1, 2]], axis=-1)
    sigma[rng.random(shape) < air] = 0.0
    return sigma


def dense_reference(sigma: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``A`` by the definition: a loop over tissue voxels scattering ``K_e = sum_c sigma_e,c K[c]`` into the corner
    grid, then restricted to the corners that received an element; returns ``(A_dense, nodes)``."""
    D, H, W = sigma.shape[:3]
    K = element_matrices(spacing)
    corners = (D + 1) * (H + 1) * (W + 1)
    A = np.zeros((corners, corners))
    touched = np.zeros(corners, dtype=bool)
    for e in np.argwhere(np.any(sigma != 0, axis=-1)):
        Ke = np.tensordot(sigma[tuple(e)], K, axes=1)  # "c,cab->ab"
        idx = [np.ravel_multi_index(tuple(e + c), (D + 1, H + 1, W + 1)) for c in CORNERS]
        A[np.ix_(idx, idx)] += Ke
        touched[idx] = True
    nodes = np.flatnonzero(touched)
    return A[np.ix_(nodes, nodes)], nodes


@pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
@pytest.mark.parametrize("air", [0.0, 0.3])
def test_stencil_assembly_equals_element_by_element_sum(spacing, air):
    """Random rotated anisotropic tensors, with and without air voxels: the same corners and every entry equal to
    the dense element-by-element sum within 1e-12 of the largest entry (the same products, summed in another
    order)."""
    rng = np.random.default_rng(7)
    sigma = random_tensors(rng, (5, 4, 6), air)
    mask = np.any(sigma != 0, axis=-1)
    A, nodes = assemble(sigma, mask, spacing)
    want, want_nodes = dense_reference(sigma, spacing)
    np.testing.assert_array_equal(nodes, want_nodes)
    assert np.abs(A.toarray() - want).max() <= 1e-12 * np.abs(want).max()


@pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
def test_stencil_assembly_equals_pairwise_assembly_entry_by_entry(spacing):
    """On a limb-sized random volume (rotated tensors, a third of the voxels air) the stencil assembly and the
    earlier pairwise assembly agree entry by entry within 1e-12 relative to the larger of the entry's row and
    column diagonal (the scale of each coupling)."""
    rng = np.random.default_rng(11)
    sigma = random_tensors(rng, (18, 11, 13), 0.3)
    mask = np.any(sigma != 0, axis=-1)
    K = element_matrices(spacing)
    A, nodes = assemble_stencil(sigma, mask, K)
    B, nodes_b = assemble_pairwise(sigma, mask, K)
    np.testing.assert_array_equal(nodes, nodes_b)
    diff = (A - B).tocoo()
    d = B.diagonal()
    scale = np.maximum(d[diff.row], d[diff.col])
    assert np.all(np.abs(diff.data) <= 1e-12 * scale)
    assert A.has_canonical_format and A.indices.dtype == np.int32


def test_matrix_is_symmetric_with_constants_in_its_null_space():
    """``A`` is symmetric and every row sums to zero (constants carry no current): properties of the weak form."""
    rng = np.random.default_rng(3)
    sigma = random_tensors(rng, (9, 7, 8), 0.25)
    mask = np.any(sigma != 0, axis=-1)
    A, _ = assemble(sigma, mask, SPACINGS["box"])
    assert abs(A - A.T).max() <= 1e-15 * abs(A).max()
    assert np.abs(A @ np.ones(A.shape[0])).max() <= 1e-12 * abs(A).max()
    assert np.all(A.diagonal() > 0)


def test_pin_first_is_the_submatrix_without_row_and_column_zero():
    rng = np.random.default_rng(5)
    sigma = random_tensors(rng, (6, 5, 7), 0.2)
    A, _ = assemble(sigma, np.any(sigma != 0, axis=-1), SPACINGS["cube"])
    Ar = pin_first(A)
    want = A[1:, 1:].tocsr()
    assert Ar.shape == want.shape
    assert (Ar != want).nnz == 0
    assert sp.isspmatrix_csr(Ar) and Ar.has_canonical_format
