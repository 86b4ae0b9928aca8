"""A posteriori error estimate of a predicted potential against the sample's own finite-element solution.

Two estimators share one split of the error (below): ``"residual"`` (the default), matrix-free on the voxel grid,
at under a tenth of the cost of the classical solve it rates, and ``"vcycle"``, which assembles the sample's
system and runs two geometric multigrid V-cycles (effectivity within ~1 +- 0.1, about the cost of a full solve).

Split of the error
------------------
Let ``A x* = b`` be the sample's own Q1 system (:mod:`fieldlab.potential.physics.fem.solver`: ``A`` over the active
voxel corners, ``b`` the load of its source), ``C`` the corner-to-centre map (mean of a voxel's eight corners,
:func:`~fieldlab.potential.physics.fem.transfer.corners_to_centres`) and ``u = C x* - mean_T(C x*)`` the corpus
potential (zero mean over the tissue voxels ``T``). A prediction ``u_pred`` lives at voxel centres; for any corner field
``x_p`` (here ``x_p = P u_pred`` and two defect sweeps, :func:`centres_to_corners`) the error splits exactly as

    u_pred - u = d + C e + c,       d = u_pred - C x_p,   e = x_p - x*,   A e = -r,   r = b - A x_p,

with ``c`` a constant. ``d`` (the part of ``u_pred`` the corner field does not reproduce) is computed exactly; the
constant is fixed by the corpus gauge, ``mean_T(u_pred - u) = mean_T(u_pred)`` since ``mean_T(u) = 0``; only ``e``
needs the inverse of the singular Neumann matrix, and the two estimators differ only in how they approximate it,
``e_hat = -B r``. The estimate is the error *field* ``e_hat_u = d + C e_hat + c``, measured in the norm of the
reported error, ``||.||_mask`` over the loss mask (:func:`fieldlab.potential.metrics.relative_l2`), so estimate and
truth compare with no conversion constant (an energy-norm estimate would need one, and the ratio of the two norms
moves by ``1/h`` between smooth and rough errors). The relative estimate divides by ``||u_pred - e_hat_u||_mask``,
the corrected prediction standing in for the unknown ``||u||_mask``.

"residual": matrix-free, one cheap V-cycle
------------------------------------------
No sparse matrix is assembled and no multigrid set-up is run. The Q1 operator is applied on the corner grid
element by element in Legendre coordinates: a voxel's eight corner values are, exactly, the coefficients of
``1, X, Y, Z, XY, XZ, YZ, XYZ`` (``X = 2 xi - 1`` on ``[-1, 1]``, ``xi`` the local coordinate along x), found by
sums and differences of neighbouring corners along each axis (shared by neighbouring voxels: 13 whole-grid array
operations); in that basis ``d_x u = (2/h_x)(c_X + c_XY Y + c_XZ Z + c_XYZ YZ)`` and its kin are orthogonal
expansions, so the element energy ``(V/2) mean(grad u . sigma grad u)`` is a small quadratic form (weights 1, 1/3,
1/9 of the squared Legendre polynomials) whose gradient, mapped back by the transposed sums and differences, is
``A x`` to round-off (the same integral the 2-point Gauss rule of the assembly evaluates exactly). With the
corpus's axis-aligned tensors (no off-diagonal channel) the quadratic form is diagonal. ``A x`` then costs about
40 whole-grid array operations, ``diag(A)`` comes in closed form, and coarser operators are rediscretised: the
block mean of ``sigma`` over ``2 x 2 x 2`` voxels (air counted as zero, odd axes padded with air), the same Q1
element at twice the spacing, down to at most :data:`COARSEST_CELLS` cells, whose matrix is pseudo-inverted.

``B`` is one V-cycle from zero on that hierarchy, in float32: damped Jacobi (:data:`OMEGA`) before the coarse
correction (one step on the finest level, three on every coarser one, :data:`SMOOTHING`) and after it (none on the
finest level, one on every coarser one, :data:`POST_SMOOTHING`), restriction of the remaining residual by full
weighting, the coarse correction prolonged trilinearly. It costs two fine operator applications (the residual and
the one after smoothing) and about 0.6 of one on the coarse levels. The fine operator runs in slabs of voxel
planes (:data:`SLAB_VALUES`) so that its temporaries stay in cache: 4x faster at 2x than whole-grid arrays.

A cycle of rediscretised operators is not the solver's Galerkin cycle, and one cycle catches only part of ``e``
(rough errors nearly all of it, smooth errors across the fat layer least). Its correction is therefore scaled by
:data:`CALIBRATION`, fitted on the validation limbs of the default corpus (10 limbs at 96x48x48, 16 predictions
each from five families of classical and learned-like errors, ``bench/estimate.py``; 136 with a true error of at
least 0.2 %) so that the median effectivity is 1: unscaled it was 0.88 (5-95 % range 0.68-1.00), scaled 1.00
(0.77-1.13). What the estimate has to do above all is *rank* predictions, and it does so because every family of
errors passes through the same cycle. Measured on the test limbs (``bench/estimate.py``, 2 shared cores; 10 limbs
at 96x48x48 and 6 at 192x96x96, 16 predictions each, true errors 0.2-15 %): Spearman's rho between estimate and
true rel L2 0.987 at base and 0.989 at 2x pooled over every family (0.96-1.00 within each), effectivity median
1.02 and 1.04 (10-90 %: 0.81-1.13 and 0.84-1.11); 0.019 s at base and 0.13 s at 2x per estimate, against 0.25 s
and 2.4 s for multigrid-CG on the sample's own system to the same median error (13x and 19x) and 0.26 s and
2.1 s for ``"vcycle"`` (rho 0.9998 and 0.9995).

The two transfer sweeps matter: without them the transfer defect ``d`` of the exact solution (near the poles and
the tissue interfaces) is 1.4 % of ``u`` on the mask at 2 mm, which a single cycle cannot cancel; with two the
estimate of the exact solution is about 0.1 %, the estimate's floor. The floor shrinks like ``h^2``: 0.75 % on a
4 mm grid, 0.13 % at 2 mm; errors below it are not ranked (the ``"vcycle"`` estimate's floor is ten times lower).
Only the shapes and the spacing of the sample are checked (the tissue is where a diagonal channel is non-zero);
the tensors' positive definiteness and the balance of the source are the solver's checks, which every corpus
sample passed when it was solved and a user's file passes in
:func:`~fieldlab.potential.physics.corpus.validate_raw_file` (``"vcycle"`` runs them again); non-finite inputs
surface as a non-finite estimate, refused with an :class:`~fieldlab.errors.InputError`.

"vcycle": assembled system, geometric V-cycles
----------------------------------------------
``e`` is replaced by ``k`` V-cycles ``B_k`` of the solver's multigrid hierarchy of ``A`` (corner 0 pinned, as in the
solver), started from zero: ``e_hat = -B_k r`` and

    e - e_hat = E^k e,      E = I - B A (the V-cycle's error propagator),      ||e - e_hat||_A <= rho^k ||e||_A,

so in the energy norm the estimated corner error is within a factor ``1 +- rho^k`` of the true one. The V-cycles
are those of the geometric hierarchy (:mod:`~fieldlab.potential.physics.fem.multigrid`: trilinear prolongation,
Galerkin coarse operators, symmetric Gauss-Seidel), whose measured residual reduction per cycle on a limb of the
default corpus (96x48x48, 1e5 unknowns) is 0.10-0.13 over the first three cycles and ``rho ~ 0.30`` asymptotically;
with ``k = 2`` the energy-norm band is about ``1 +- 0.1``. The L2 band inherits the energy bound only loosely
(``C`` and the mask weigh the modes differently), so it was measured: on smooth (box-scale modes) and rough (white
noise) perturbations of FEM solutions at 1-30 % and on a coarse FEM solution interpolated to the grid, the
effectivity (estimate / truth) was 0.998-1.000 at 96x48x48 and 48x24x24 on the test's limb; smooth errors, the
slowest modes of a V-cycle, are the ones underestimated, rough ones are caught almost entirely by the exact defect
``d``. The exact FEM solution scores below 1e-3. Cost: one assembly, one hierarchy setup and ``k`` V-cycles (0.36 s
at 96x48x48 on 2 shared cores), about the cost of a full solve with the same core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fieldlab.errors import InputError
from fieldlab.potential.physics.fem.multisource import LimbSystem
from fieldlab.potential.physics.fem.solver import CORNERS, check_inputs, load_vector
from fieldlab.potential.physics.fem.transfer import SWEEPS, centres_to_corners, corners_to_centres

#: Estimators: ``"residual"`` (matrix-free, the default) and ``"vcycle"`` (assembled system, geometric V-cycles).
METHODS = ("residual", "vcycle")
#: V-cycles of the ``"vcycle"`` estimate (see the module notes: ``rho^2 ~ 0.1``).
CYCLES = 2
#: Damping of the Jacobi smoother of the matrix-free cycle.
OMEGA = 0.8
#: Jacobi steps before the coarse correction: on the finest level, then on every coarser one (cheap there).
SMOOTHING = (1, 3)
#: Jacobi steps after it, likewise (none on the finest level: each there costs as much as the residual).
POST_SMOOTHING = (0, 1)
#: The matrix-free hierarchy coarsens until at most this many cells remain (or an axis is one cell), then solves
#: the coarsest level exactly (a pseudo-inverse: the Neumann operator is singular).
COARSEST_CELLS = 64
#: Scale of the cycle's correction: one cycle catches a fraction of the corner error ``e`` (module notes); fitted
#: on the validation limbs so that the median effectivity is 1 (``bench/estimate.py``).
CALIBRATION = 1.14
#: Values per temporary array of one slab of the operator (float32: 256 kB, a few dozen of them fit in cache).
SLAB_VALUES = 1 << 16


@dataclass(frozen=True)
class ErrorEstimate:
    """The estimated error of one prediction.

    Attributes
    ----------
    rel_l2
        Estimated ``||u_pred - u||_mask / ||u||_mask``; NaN when the corrected prediction vanishes on the mask.
    error
        ``(D, H, W)`` estimated ``u_pred - u`` in volts (corpus gauge), zero in air.
    seconds
        Wall time of the estimate, from the sample's arrays (checks, operator, transfer, cycles, norms).
    cycles
        V-cycles used (one for ``"residual"``).
    method
        The estimator, one of :data:`METHODS`.
    """

    rel_l2: float
    error: np.ndarray
    seconds: float
    cycles: int
    method: str = "residual"


def _pairs(x: np.ndarray, axis: int, sign: float = 1.0) -> np.ndarray:
    """``x[i + 1] + sign * x[i]`` along ``axis`` (one fewer entry there)."""
    hi = [slice(None)] * x.ndim
    lo = [slice(None)] * x.ndim
    hi[axis], lo[axis] = slice(1, None), slice(None, -1)
    return x[tuple(hi)] + x[tuple(lo)] if sign > 0 else x[tuple(hi)] - x[tuple(lo)]


def _spread(avg: np.ndarray | None, diff: np.ndarray | None, axis: int) -> np.ndarray:
    """The transpose of ``(avg, diff) = (_pairs(x, axis), _pairs(x, axis, -1))``: one more entry along ``axis``.

    ``avg`` is overwritten when both are given (it holds temporaries of :meth:`_Level.matvec`)."""
    ref = avg if avg is not None else diff
    assert ref is not None
    shape = list(ref.shape)
    shape[axis] += 1
    y = np.empty(shape, dtype=ref.dtype)
    hi = [slice(None)] * ref.ndim
    lo = [slice(None)] * ref.ndim
    last = [slice(None)] * ref.ndim
    hi[axis], lo[axis], last[axis] = slice(1, None), slice(None, -1), slice(-1, None)
    y_lo, y_hi = y[tuple(lo)], y[tuple(hi)]
    y[tuple(last)] = 0.0
    if diff is None:
        y_lo[...] = avg
        y_hi += avg
    elif avg is None:
        np.negative(diff, out=y_lo)
        y_hi += diff
    else:
        np.subtract(avg, diff, out=y_lo)
        avg += diff
        y_hi += avg
    return y


def _corner_sum(v: np.ndarray) -> np.ndarray:
    """``(D, H, W) -> (D+1, H+1, W+1)``: every corner's sum over its (up to eight) voxels."""
    return _spread(_spread(_spread(v, None, 0), None, 1), None, 2)


def _voxel_sum(x: np.ndarray) -> np.ndarray:
    """``(D+1, H+1, W+1) -> (D, H, W)``: every voxel's sum over its eight corners (the transpose of the above)."""
    return _pairs(_pairs(_pairs(x, 2), 1), 0)


class _Level:
    """The Q1 operator of one voxel grid, matrix-free (module notes: the element in Legendre coordinates).

    ``k`` holds the six per-voxel coefficients ``V (2/h_i)(2/h_j) sigma_ij / 64`` (xx, yy, zz, xy, xz, yz), air
    zero; ``diagonal`` says whether the off-diagonal ones all vanish (the default corpus: axis-aligned fibres).
    """

    def __init__(self, k: np.ndarray, diagonal: bool) -> None:
        self.k = k
        self.cells = k.shape[1:]
        self.corners = tuple(n + 1 for n in self.cells)
        self.diagonal = diagonal
        tr = k[0] + k[1]
        tr += k[2]
        tr *= k.dtype.type(16.0 / 9.0)  # e_a^T K_e e_a for the diagonal channels, every local corner a
        if diagonal:
            diag = _corner_sum(tr)
        else:  # off-diagonal channels add (8/3) s_i s_j k_ij, s the corner's sign per axis
            diag = np.zeros(self.corners, dtype=k.dtype)
            D, H, W = self.cells
            for cz, cy, cx in CORNERS:
                sx, sy, sz = 2 * cx - 1, 2 * cy - 1, 2 * cz - 1
                diag[cz : cz + D, cy : cy + H, cx : cx + W] += tr + (8.0 / 3.0) * (
                    sx * sy * k[3] + sx * sz * k[4] + sy * sz * k[5]
                )
        self.inv_diag = np.zeros_like(diag)
        np.divide(1.0, diag, out=self.inv_diag, where=diag > 0)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """``A x`` on the ``(D+1, H+1, W+1)`` corner grid (zero at corners that touch no tissue), in slabs of voxel
        planes along D small enough for the temporaries to stay in cache (:data:`SLAB_VALUES`)."""
        D = self.cells[0]
        step = max(1, SLAB_VALUES // (self.corners[1] * self.corners[2]))
        if step >= D:
            return self._apply(x, slice(None))
        y = np.zeros_like(x)
        for e0 in range(0, D, step):
            e1 = min(D, e0 + step)
            y[e0 : e1 + 1] += self._apply(x[e0 : e1 + 1], slice(e0, e1))
        return y

    def _apply(self, x: np.ndarray, cells: slice) -> np.ndarray:
        """The contribution of the voxel planes ``cells`` to ``A x``, on their corner planes (``x`` holds those)."""
        a0, a1 = _pairs(x, 2), _pairs(x, 2, -1)  # along w (x)
        b00, b10, b01, b11 = _pairs(a0, 1), _pairs(a0, 1, -1), _pairs(a1, 1), _pairs(a1, 1, -1)  # along h (y)
        cx, cy, cxy = _pairs(b01, 0), _pairs(b10, 0), _pairs(b11, 0)  # along d (z)
        cz, cxz, cyz, cxyz = _pairs(b00, 0, -1), _pairs(b01, 0, -1), _pairs(b10, 0, -1), _pairs(b11, 0, -1)
        k = self.k[:, cells]
        third = k.dtype.type(1 / 3)
        txy, txz, tyz = k[0] + k[1], k[0] + k[2], k[1] + k[2]  # the weights of the bilinear modes, times 3
        t9 = txy + k[2]
        t9 *= k.dtype.type(1 / 9)
        for t in (txy, txz, tyz):
            t *= third
        if self.diagonal:  # in place: the Legendre coefficients become the gradients of the energy
            gx, gy, gz = np.multiply(k[0], cx, out=cx), np.multiply(k[1], cy, out=cy), np.multiply(k[2], cz, out=cz)
            gxy, gxz = np.multiply(txy, cxy, out=cxy), np.multiply(txz, cxz, out=cxz)
            gyz = np.multiply(tyz, cyz, out=cyz)
        else:
            gx = k[0] * cx + k[3] * cy + k[4] * cz
            gy = k[3] * cx + k[1] * cy + k[5] * cz
            gz = k[4] * cx + k[5] * cy + k[2] * cz
            gxy = txy * cxy + (k[4] * cyz + k[5] * cxz) / 3
            gxz = txz * cxz + (k[3] * cyz + k[5] * cxy) / 3
            gyz = tyz * cyz + (k[3] * cxz + k[4] * cxy) / 3
        gxyz = np.multiply(t9, cxyz, out=cxyz)
        g00 = _spread(None, gz, 0)
        g01, g10, g11 = _spread(gx, gxz, 0), _spread(gy, gyz, 0), _spread(gxy, gxyz, 0)
        return _spread(_spread(g00, g10, 1), _spread(g01, g11, 1), 2)

    def coarsen(self) -> _Level:
        """The operator of the grid of 2x2x2 blocks (odd axes padded with air): the block mean of ``sigma``
        rediscretised, ``k_c = sum_block(k) / 4`` (volume x8, (2/h)^2 / 4)."""
        k = self.k[:3] if self.diagonal else self.k
        pad = [(0, 0)] + [(0, n % 2) for n in self.cells]
        if any(p[1] for p in pad):
            k = np.pad(k, pad)
        k = k[:, 0::2] + k[:, 1::2]
        k = k[:, :, 0::2] + k[:, :, 1::2]
        k = k[:, :, :, 0::2] + k[:, :, :, 1::2]
        k *= k.dtype.type(0.25)
        if self.diagonal:
            k = np.concatenate([k, np.zeros_like(k)])
        return _Level(k, self.diagonal)

    def dense(self) -> np.ndarray:
        """The assembled matrix over every corner of the grid (the coarsest level: a few hundred corners)."""
        signs = np.array([[1.0 if c else -1.0 for c in corner[::-1]] for corner in CORNERS])  # (8, xyz)
        sx, sy, sz = signs[:, 0], signs[:, 1], signs[:, 2]
        h = np.stack([sx, sy, sz, sx * sy, sx * sz, sy * sz, sx * sy * sz])  # (7 modes, 8 corners)
        k = self.k.astype(np.float64).reshape(6, -1)
        kxx, kyy, kzz, kxy, kxz, kyz = k
        m = np.zeros((k.shape[1], 7, 7))  # the quadratic form in the modes (x, y, z, xy, xz, yz, xyz) per cell
        m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = kxx, kyy, kzz
        m[:, 0, 1] = m[:, 1, 0] = kxy
        m[:, 0, 2] = m[:, 2, 0] = kxz
        m[:, 1, 2] = m[:, 2, 1] = kyz
        m[:, 3, 3], m[:, 4, 4], m[:, 5, 5] = (kxx + kyy) / 3, (kxx + kzz) / 3, (kyy + kzz) / 3
        m[:, 3, 5] = m[:, 5, 3] = kxz / 3
        m[:, 3, 4] = m[:, 4, 3] = kyz / 3
        m[:, 4, 5] = m[:, 5, 4] = kxy / 3
        m[:, 6, 6] = (kxx + kyy + kzz) / 9
        ke = np.einsum("sa,nst,tb->nab", h, m, h)  # (cells, 8, 8)
        cells = np.indices(self.cells).reshape(3, -1).T  # (n, 3) voxel index (d, h, w)
        strides = np.array([self.corners[1] * self.corners[2], self.corners[2], 1])
        nodes = (cells[:, None, :] + CORNERS[None]) @ strides  # (n, 8) flat corner index
        a = np.zeros((int(np.prod(self.corners)),) * 2)
        np.add.at(a, (nodes[:, :, None], nodes[:, None, :]), ke)
        return a


def _restrict(x: np.ndarray, corners: tuple[int, int, int]) -> np.ndarray:
    """Full weighting (the transpose of trilinear prolongation) from a corner grid to the coarse ``corners``."""
    need = tuple(2 * n - 1 for n in corners)
    if x.shape != need:  # a padded axis: the extra fine corners hold nothing
        y = np.zeros(need, dtype=x.dtype)
        y[: x.shape[0], : x.shape[1], : x.shape[2]] = x
        x = y
    for axis in range(3):
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        even[axis], odd[axis] = slice(0, None, 2), slice(1, None, 2)
        y = x[tuple(even)].copy()
        half = 0.5 * x[tuple(odd)]
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        y[tuple(lo)] += half
        y[tuple(hi)] += half
        x = y
    return x


def _prolong(x: np.ndarray, corners: tuple[int, int, int]) -> np.ndarray:
    """Trilinear interpolation from a coarse corner grid to the fine ``corners`` (cropped where padded)."""
    for axis in range(3):
        shape = list(x.shape)
        shape[axis] = 2 * shape[axis] - 1
        y = np.empty(shape, dtype=x.dtype)
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        even[axis], odd[axis] = slice(0, None, 2), slice(1, None, 2)
        y[tuple(even)] = x
        y[tuple(odd)] = 0.5 * _pairs(x, axis)
        x = y
    return x[: corners[0], : corners[1], : corners[2]]


def _hierarchy(k: np.ndarray, diagonal: bool) -> list[_Level]:
    """The levels, finest first, down to at most :data:`COARSEST_CELLS` cells (or an axis of one cell)."""
    levels = [_Level(k, diagonal)]
    while int(np.prod(levels[-1].cells)) > COARSEST_CELLS and min(levels[-1].cells) >= 2:
        levels.append(levels[-1].coarsen())
    return levels


def _solve_coarsest(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The minimum-norm solution of the singular Neumann system ``a x = r`` (a few hundred unknowns, ``r`` summing
    to zero over the active corners) by Gaussian elimination in plain array operations.

    Corners with no tissue (zero rows) get zero. The constant null space is lifted by ``a + mean(diag) 1 1^T / n``,
    which leaves the solution of a zero-sum ``r`` unchanged but for a constant, removed at the end. No LAPACK call:
    on shared cores a threaded BLAS call of this size can wait far longer than it computes.
    """
    x = np.zeros(r.size)
    active = np.flatnonzero(np.diagonal(a) > 0)
    m = a[np.ix_(active, active)]
    n = active.size
    m += np.mean(np.diagonal(m)) / n
    rhs = r[active] - np.mean(r[active])
    for j in range(n - 1):  # forward elimination (symmetric positive definite: no pivoting)
        f = m[j + 1 :, j] / m[j, j]
        m[j + 1 :, j + 1 :] -= np.multiply.outer(f, m[j, j + 1 :])
        rhs[j + 1 :] -= f * rhs[j]
    y = np.zeros(n)
    for j in range(n - 1, -1, -1):
        y[j] = (rhs[j] - np.sum(m[j, j + 1 :] * y[j + 1 :])) / m[j, j]
    x[active] = y - np.mean(y)
    return x


def _cycle(levels: list[_Level], r: np.ndarray, level: int = 0) -> np.ndarray:
    """One V-cycle from zero for ``A c = r`` on ``levels[level]``: Jacobi steps (:data:`SMOOTHING`), the coarse
    correction of the remaining residual, Jacobi steps again (:data:`POST_SMOOTHING`: none on the finest level)."""
    lv = levels[level]
    if level == len(levels) - 1:
        return _solve_coarsest(lv.dense(), r.ravel().astype(np.float64)).astype(r.dtype).reshape(r.shape)
    c = OMEGA * lv.inv_diag * r
    for _ in range(SMOOTHING[min(level, len(SMOOTHING) - 1)] - 1):
        c += OMEGA * lv.inv_diag * (r - lv.matvec(c))
    coarse = levels[level + 1]
    rc = _restrict(r - lv.matvec(c), coarse.corners)
    c += _prolong(_cycle(levels, rc, level + 1), lv.corners)
    for _ in range(POST_SMOOTHING[min(level, len(POST_SMOOTHING) - 1)]):
        c += OMEGA * lv.inv_diag * (r - lv.matvec(c))
    return c


def _coefficients(sigma: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(k, tissue, diagonal)``: the six per-voxel coefficients of :class:`_Level` (float32), the tissue voxels
    (a non-zero diagonal channel) and whether every off-diagonal channel vanishes."""
    dx, dy, dz = (float(s) for s in spacing)
    vol = dx * dy * dz
    h2 = (2.0 / dx, 2.0 / dy, 2.0 / dz)  # (x, y, z)
    pairs = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
    sig = np.asarray(sigma)
    k = np.empty((6, *sig.shape[:3]), dtype=np.float32)
    step = max(1, SLAB_VALUES // (sig.shape[1] * sig.shape[2]))
    for e0 in range(0, sig.shape[0], step):  # a slab of sigma stays in cache while its six channels are read
        for c, (i, j) in enumerate(pairs):
            scale = vol * h2[i] * h2[j] / 64.0
            np.multiply(sig[e0 : e0 + step, ..., c], scale, out=k[c, e0 : e0 + step], casting="unsafe")
    tissue = (k[0] != 0) | (k[1] != 0) | (k[2] != 0)  # a positive-definite tensor has a positive diagonal
    return k, tissue, not k[3:].any()


def _residual_estimate(
    u_pred: np.ndarray,
    source: np.ndarray,
    spacing: tuple[float, float, float],
    k: np.ndarray,
    tissue: np.ndarray,
    diagonal: bool,
    sweeps: int,
) -> np.ndarray:
    """The ``"residual"`` error field (module notes): matrix-free operator, transfer, one cheap V-cycle."""
    dtype = np.float32
    vol = float(np.prod(spacing))
    levels = _hierarchy(k, diagonal)
    fine = levels[0]
    t8 = tissue * dtype(1 / 8)
    weight = _corner_sum(tissue.astype(dtype))
    active = weight > 0
    np.divide(1.0, weight, out=weight, where=active)  # P: the mean over a corner's tissue voxels
    u = np.where(tissue, u_pred, 0.0).astype(dtype)
    x = _corner_sum(u) * weight  # P u
    for _ in range(sweeps):
        x += _corner_sum(u - _voxel_sum(x) * t8) * weight
    b = _corner_sum(np.where(tissue, source, 0.0).astype(dtype) * dtype(vol / 8.0))
    b -= active * dtype(b.sum(dtype=np.float64) / np.count_nonzero(active))  # consistent, as the solver makes it
    c = _cycle(levels, b - fine.matvec(x))  # c ~ x* - x_p = -e, so C (x_p + c) ~ u up to the gauge
    x += c * dtype(CALIBRATION)  # the part of e one cycle misses, on average (module notes)
    err = (u - _voxel_sum(x) * t8).astype(np.float64)  # d + C e_hat, zero in air
    shift = (u.sum(dtype=np.float64) - err.sum()) / np.count_nonzero(tissue)
    err += tissue * shift  # the gauge: mean_T(u_pred - u) = mean_T(u_pred)
    return err


def estimate_error(
    u_pred: np.ndarray,
    sigma: np.ndarray,
    source: np.ndarray,
    spacing: tuple[float, float, float],
    mask: np.ndarray,
    *,
    method: str | bool = "residual",
    cycles: int = CYCLES,
    sweeps: int = SWEEPS,
) -> ErrorEstimate:
    """Estimate the error of ``u_pred`` against the sample's own FEM potential (module notes).

    Parameters
    ----------
    u_pred
        ``(D, H, W)`` predicted potential in volts at voxel centres, any gauge (an offset from the corpus gauge,
        zero mean over tissue, counts as error, as it does in the true error); values in air are ignored.
    sigma, source, spacing
        The sample: ``(D, H, W, 6)`` S/m, ``(D, H, W)`` A/m^3, ``(dx, dy, dz)`` m (checked as the solver checks).
    mask
        ``(D, H, W)`` bool voxels of the norm: the loss mask of the evaluation (tissue voxels only).
    method
        ``"residual"`` (matrix-free, one cheap V-cycle; ``True`` means the same) or ``"vcycle"`` (the assembled
        system and ``cycles`` geometric V-cycles).
    cycles, sweeps
        V-cycles of the ``"vcycle"`` correction (``"residual"`` runs one) and sweeps of the centre-to-corner
        transfer.

    Returns
    -------
    ErrorEstimate

    Raises
    ------
    InputError
        Shapes disagree, ``mask`` is empty or reaches air, ``cycles < 1``, ``sweeps < 0``, an unknown ``method``,
        or the sample fails the solver's checks.

    Examples
    --------
    >>> from fieldlab.potential.physics.fem.solver import solve_potential
    >>> sigma = np.zeros((6, 6, 6, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((6, 6, 6)); f[1, 1, 1], f[4, 4, 4] = 1.0, -1.0
    >>> u, _ = solve_potential(sigma, f, (1.0, 1.0, 1.0), 1e-10)
    >>> est = estimate_error(1.1 * u, sigma, f, (1.0, 1.0, 1.0), np.ones((6, 6, 6), dtype=bool), method="vcycle")
    >>> bool(0.09 < est.rel_l2 < 0.11)  # the truth is 0.1
    True
    >>> est = estimate_error(1.1 * u, sigma, f, (1.0, 1.0, 1.0), np.ones((6, 6, 6), dtype=bool))
    >>> bool(0.05 < est.rel_l2 < 0.15)
    True
    """
    name = "residual" if method is True else method
    if name not in METHODS:
        raise InputError(f"method = {method!r}; expected one of {', '.join(METHODS)} (or true: residual)")
    if name == "vcycle":
        import pyamg  # noqa: F401 -- imported here, before the clock starts: the first call should not time an import

    t0 = time.perf_counter()
    u_pred = np.asarray(u_pred)
    mask = np.asarray(mask, dtype=bool)
    if cycles < 1:
        raise InputError(f"cycles = {cycles}; expected at least one V-cycle")
    if sweeps < 0:
        raise InputError(f"sweeps = {sweeps}; expected a non-negative number of transfer sweeps")
    if name == "residual":  # the sample's own checks (positive-definite tensors, balanced source) are the loader's
        _check_arrays(sigma, source, spacing)
        k, tissue, diagonal = _coefficients(sigma, spacing)
    else:
        tissue = check_inputs(sigma, source, spacing)
    if u_pred.shape != tissue.shape or mask.shape != tissue.shape:
        raise InputError(
            f"u_pred {u_pred.shape} and mask {mask.shape}: expected the sample's grid {tissue.shape} (D, H, W)"
        )
    if not mask.any() or np.any(mask & ~tissue):
        raise InputError(
            f"mask holds {int(mask.sum())} voxel(s), {int((mask & ~tissue).sum())} in air; expected a non-empty "
            "set of tissue voxels (the loss mask)"
        )
    if name == "residual":
        err = _residual_estimate(u_pred, np.asarray(source), spacing, k, tissue, diagonal, sweeps)
    else:
        if not np.all(np.isfinite(u_pred[tissue])):
            raise InputError("u_pred holds non-finite values in tissue")
        err = _vcycle_estimate(u_pred.astype(np.float64), sigma, source, spacing, tissue, cycles, sweeps)
    e = err[mask]
    v = u_pred[mask] - e
    num, den = float(np.sqrt(np.sum(e * e))), float(np.sqrt(np.sum(v * v)))  # no BLAS: see _solve_coarsest
    if not np.isfinite(num):
        where = "u_pred in tissue" if not np.all(np.isfinite(u_pred[tissue])) else "sigma or source"
        raise InputError(f"{where} holds non-finite values; expected finite arrays")
    rel = num / den if den > 0 else float("nan")
    return ErrorEstimate(rel, err, time.perf_counter() - t0, 1 if name == "residual" else cycles, name)


def _check_arrays(sigma: np.ndarray, source: np.ndarray, spacing: tuple[float, float, float]) -> None:
    """The shape and spacing checks of :func:`~fieldlab.potential.physics.fem.solver.check_inputs` (the cheap ones)."""
    shape = np.shape(sigma)
    if len(shape) != 4 or shape[-1] != 6:
        raise InputError(f"sigma has shape {shape}; expected (D, H, W, 6) with channels xx,yy,zz,xy,xz,yz")
    if np.shape(source) != shape[:3]:
        raise InputError(f"source has shape {np.shape(source)}; expected {shape[:3]} to match sigma")
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"spacing = {tuple(spacing)}; expected three positive finite lengths (dx, dy, dz) in m")


def _vcycle_estimate(
    u_pred: np.ndarray,
    sigma: np.ndarray,
    source: np.ndarray,
    spacing: tuple[float, float, float],
    tissue: np.ndarray,
    cycles: int,
    sweeps: int,
) -> np.ndarray:
    """The ``"vcycle"`` error field (module notes): assembly, geometric hierarchy, ``cycles`` V-cycles."""
    system = LimbSystem(sigma, spacing, method="gmg")  # the geometric V-cycles the notes measure
    nodes = system.nodes
    b = load_vector(np.asarray(source), tissue, nodes, system.spacing)  # type: ignore[arg-type]
    b -= b.sum() / b.size  # the consistent right-hand side, as the solver makes it
    x_p = centres_to_corners(u_pred, nodes, tissue, sweeps)
    r = b - system.A @ x_p
    # k V-cycles from zero on the pinned system A[1:, 1:] e = -r[1:] (tol 0: exactly `cycles` cycles)
    e_pinned = system.hierarchy().solve(-r[1:], x0=np.zeros(r.size - 1), tol=0.0, maxiter=cycles, cycle="V")
    e_hat = np.concatenate([[0.0], e_pinned])
    err = np.where(tissue, u_pred - corners_to_centres(x_p, nodes, tissue), 0.0)  # d
    err += corners_to_centres(e_hat, nodes, tissue)  # + C e_hat (zero in air)
    err[tissue] += u_pred[tissue].mean() - err[tissue].mean()  # the gauge: mean_T(u_pred - u) = mean_T(u_pred)
    return err
