"""The Q1 operator of a voxel grid as packed 27-point stencils, built from the tensors and applied by compiled kernels.

Layout
------
The unknowns live on the ``(N0, N1, N2) = (D+1, H+1, W+1)`` corner grid; corner ``(i, j, k)`` has the *padded*
coordinates ``(i+1, j+1, k+1)`` (so every neighbour of a corner has non-negative coordinates). A row ``(i, j)``
(padded) keeps its *active range* ``lo[i, j] <= k < hi[i, j]``: outside it no corner of the row touches tissue. A
vector or a stencil coefficient is stored *packed*: the row's stored range, its active range and that of its eight
neighbouring rows widened by one corner (every neighbour of an active-range corner), one row after the other, so
``v[ptr[i, j] + k]`` is the value at ``(i, j, k)``. A limb fills about half of its box: the packed arrays hold the
tissue and a one-corner shell, and a kernel streams them without gaps (at 2x the operator is applied in 9 ms on one
thread, against 23 ms for the same loops over the padded box). Index arithmetic inside the kernels is unsigned
(wrapping offsets), which lets the compiler vectorise the loops.

The operator is stored as its centre and the 13 positive offsets (the order of :data:`~.assembly.OFFSETS`, positive
half ``q = index - 13``):

    S[q][n] = A[n, n + o_q],   q = 0 .. 13,        A[n, n - o_q] = A[n - o_q, n] = S[q][n - o_q]   (symmetry),

the layout of :func:`~.assembly.stencil_arrays`, packed. Corners that touch no tissue have a zero row and column.

Kernels (``numba``, compiled on first use and cached on disk next to this module; :func:`split` runs them on
contiguous blocks of planes on several threads)
----------------------------------------------------------------------------------------------------------------
- :func:`build`: ``A[n, n + o] = sum_{a : c_a + o in {0,1}^3} sum_c sigma_{n - c_a, c} K[c, a, b(a, o)]``, the
  gather form of the element sum of :mod:`~.assembly` (each corner visits its eight voxels), float64;
- :meth:`Stencil.matvec`: ``y = A x``, 27 products per corner, and :meth:`Stencil.residual`: ``r = b - A x`` with
  ``||r||^2`` in the same pass;
- :func:`load`: ``b_n = sum_{e at n} f_e V_e / 8`` less its mean over the active corners (the consistent load of
  :func:`~.solver.consistent_load`).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from fieldlab.potential.physics.fem.assembly import CENTRE, CORNERS, OFFSETS, offset_index, stencil_to_csr

#: The centre and the 13 positive offsets ``(d, h, w)``: ``HALF[q] = OFFSETS[CENTRE + q]``.
HALF = np.ascontiguousarray(OFFSETS[CENTRE:])
#: Their ``w`` components as wrapping unsigned integers (``-1 -> 2^64 - 1``) for the kernels' index arithmetic.
HALF_W = HALF[:, 2].astype(np.uint64)
#: Bits ``(d, h, w)`` of the eight local corners of a voxel (:data:`~.assembly.CORNERS`).
BITS = np.ascontiguousarray(CORNERS)
#: Kernels on arrays of fewer values run on the caller's thread alone: there a second thread costs more than it saves.
PARALLEL_MIN = 50_000
#: Values per partial sum of a reduction over a packed vector (:func:`split`).
CHUNK = 4096

_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, workers, pool)
_pool_lock = threading.Lock()


def kernel_threads() -> int:
    """Threads the kernels use on large arrays: the cores, capped by ``OMP_NUM_THREADS`` when it is set (Dask's
    worker processes set it to 1, so two workers on two cores run two threads, not four)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cores, int(cap))) if cap.isdigit() and int(cap) > 0 else cores


def _executor(workers: int) -> ThreadPoolExecutor:
    """The process's worker threads (a new pool after a fork: a forked child inherits no threads)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < workers:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fieldlab-stencil")
            _pool = (os.getpid(), workers, pool)
        return _pool[2]


def split(kernel, size: int, start: int, stop: int, *args) -> None:
    """``kernel(*args, i0, i1)`` over ``start <= i < stop`` cut into :func:`kernel_threads` contiguous parts (one
    when ``size < PARALLEL_MIN``): the first part on the caller's thread, the others on worker threads.

    A kernel that reduces writes one partial sum per fixed block of its range (a plane, :data:`CHUNK` values) and
    the caller sums the partials in order: the same bytes on any number of threads (a label must not depend on the
    machine that made it; tested).

    The kernels are compiled without the GIL (``nogil``). A caller that waits for a part blocks rather than spins, so
    on cores that other processes also use a descheduled worker costs the wait, not a spinning core (OpenMP's
    parallel loops were 1.5-10x slower than one thread there, measured; these stay faster).
    """
    parts = max(1, min(kernel_threads() if size >= PARALLEL_MIN else 1, stop - start))
    if parts == 1:
        kernel(*args, start, stop)
        return
    bounds = [start + (stop - start) * p // parts for p in range(parts + 1)]
    futures = [_executor(parts - 1).submit(kernel, *args, bounds[p], bounds[p + 1]) for p in range(1, parts)]
    kernel(*args, bounds[0], bounds[1])
    for future in futures:
        future.result()


def padded_rows(corners: tuple[int, ...]) -> tuple[int, int]:
    """Rows ``(2 (N0 // 2) + 3, 2 (N1 // 2) + 3)`` of the table of a grid: one below, and above enough for row
    ``2 (N // 2) + 1``, read when restricting to ``N // 2 + 1`` coarse corners (:mod:`~.stencil_mg`)."""
    return 2 * (int(corners[0]) // 2) + 3, 2 * (int(corners[1]) // 2) + 3


@numba.njit(cache=True)
def _mask_ranges(mask, lo, hi):  # pragma: no cover - compiled
    """Active ranges (padded ``k``, half-open) of the corners of the tissue voxels of ``mask`` (D, H, W)."""
    D, H, W = mask.shape
    for vz in range(D):
        for vy in range(H):
            first = -1
            last = -1
            for vx in range(W):
                if mask[vz, vy, vx]:
                    if first < 0:
                        first = vx
                    last = vx
            if first >= 0:
                for dz in range(2):
                    for dy in range(2):
                        lo[vz + dz + 1, vy + dy + 1] = min(lo[vz + dz + 1, vy + dy + 1], first + 1)
                        hi[vz + dz + 1, vy + dy + 1] = max(hi[vz + dz + 1, vy + dy + 1], last + 3)


@numba.njit(cache=True)
def _envelope(lo, hi, slo, shi):  # pragma: no cover - compiled
    """Stored ranges: the union of the active ranges of the row and its eight neighbours, widened by one."""
    for i in range(1, lo.shape[0] - 1):
        for j in range(1, lo.shape[1] - 1):
            if lo[i, j] < hi[i, j]:
                for dz in range(-1, 2):
                    for dy in range(-1, 2):
                        slo[i + dz, j + dy] = min(slo[i + dz, j + dy], lo[i, j] - 1)
                        shi[i + dz, j + dy] = max(shi[i + dz, j + dy], hi[i, j] + 1)


@dataclass(frozen=True)
class Layout:
    """The packed storage of a corner grid (module notes).

    Attributes
    ----------
    corners
        ``(N0, N1, N2)`` corners per axis (unpadded).
    lo, hi
        ``(P0, P1)`` uint64 active range ``lo <= k < hi`` (padded ``k``) of every padded row (:func:`padded_rows`).
    ptr
        ``(P0, P1)`` uint64: the packed index of padded ``(i, j, k)`` is ``ptr[i, j] + k`` (wrapping) within the
        row's stored range.
    size
        Length of a packed vector.
    """

    corners: tuple[int, int, int]
    lo: np.ndarray
    hi: np.ndarray
    ptr: np.ndarray
    size: int

    @classmethod
    def from_ranges(cls, corners: tuple[int, int, int], lo: np.ndarray, hi: np.ndarray) -> Layout:
        """The layout of active ranges ``lo``, ``hi`` (int64, ``lo >= hi`` for an empty row)."""
        empty = lo >= hi
        lo, hi = np.where(empty, 1, lo), np.where(empty, 1, hi)
        slo = np.full(lo.shape, 1 << 40, dtype=np.int64)
        shi = np.zeros(lo.shape, dtype=np.int64)
        _envelope(lo, hi, slo, shi)
        length = np.maximum(shi - slo, 0)
        start = np.concatenate([[0], np.cumsum(length.ravel())])
        ptr = (start[:-1].reshape(lo.shape) - np.where(length > 0, slo, 0)).astype(np.uint64)  # wraps below zero
        u64 = np.uint64
        return cls(tuple(int(n) for n in corners), lo.astype(u64), hi.astype(u64), ptr, int(start[-1]))  # type: ignore[arg-type]

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> Layout:
        """The layout of the corners of the tissue voxels of ``mask`` (D, H, W)."""
        corners = tuple(n + 1 for n in mask.shape)
        lo = np.full(padded_rows(corners), 1 << 40, dtype=np.int64)
        hi = np.zeros(padded_rows(corners), dtype=np.int64)
        _mask_ranges(np.ascontiguousarray(mask, dtype=np.bool_), lo, hi)
        return cls.from_ranges(corners, lo, hi)  # type: ignore[arg-type]

    @classmethod
    def from_nodes(cls, nodes: np.ndarray, corners: tuple[int, int, int]) -> Layout:
        """The layout whose active ranges cover the corners of flat indices ``nodes``."""
        i, j, k = np.unravel_index(np.asarray(nodes), corners)
        lo = np.full(padded_rows(corners), 1 << 40, dtype=np.int64)
        hi = np.zeros(padded_rows(corners), dtype=np.int64)
        np.minimum.at(lo, (i + 1, j + 1), k + 1)
        np.maximum.at(hi, (i + 1, j + 1), k + 2)
        return cls.from_ranges(corners, lo, hi)

    @property
    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lo, hi, ptr)``: what a kernel reads of the layout."""
        return self.lo, self.hi, self.ptr

    def index(self, nodes: np.ndarray) -> np.ndarray:
        """Packed indices of the corners of flat (unpadded) indices ``nodes``; each must lie in an active range."""
        i, j, k = np.unravel_index(np.asarray(nodes), self.corners)
        return (self.ptr[i + 1, j + 1] + (k + 1).astype(np.uint64)).astype(np.int64)

    def grid_index(self) -> tuple[np.ndarray, np.ndarray]:
        """``(flat, packed)``: every corner of the active ranges as a flat (unpadded) index and its packed index."""
        rows = np.flatnonzero(self.lo < self.hi)
        i, j = np.unravel_index(rows, self.lo.shape)
        lo, hi = self.lo.ravel()[rows].astype(np.int64), self.hi.ravel()[rows].astype(np.int64)
        count = hi - lo
        row = np.repeat(np.arange(rows.size), count)
        k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + lo[row]  # padded k
        flat = np.ravel_multi_index((i[row] - 1, j[row] - 1, k - 1), self.corners)
        packed = (self.ptr.ravel()[rows][row] + k.astype(np.uint64)).astype(np.int64)
        return flat, packed

    def to_grid(self, v: np.ndarray) -> np.ndarray:
        """A packed vector (or ``(m, size)`` stack) as ``(..., N0, N1, N2)`` arrays, zero outside the active ranges."""
        flat, packed = self.grid_index()
        out = np.zeros((*v.shape[:-1], int(np.prod(self.corners))), dtype=v.dtype)
        out[..., flat] = v[..., packed]
        return out.reshape(*v.shape[:-1], *self.corners)

    def zeros(self, dtype: type = np.float64) -> np.ndarray:
        """A packed vector of zeros."""
        return np.zeros(self.size, dtype=dtype)


def pair_table(K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The element matrices ``K`` (6, 8, 8) as :func:`_build` reads them: for local corner ``a`` its pairs ``t``
    with ``b = a + o`` (``o`` the centre or a positive offset), ``q[a, t]`` the half-stencil index of ``o``,
    ``k[a, t]`` the six channel entries ``K[:, a, b]``, ``count[a]`` the pairs of ``a`` (36 in all)."""
    q = np.zeros((8, 8), dtype=np.int64)
    k = np.zeros((8, 8, 6))
    count = np.zeros(8, dtype=np.int64)
    for a in range(8):
        for b in range(8):
            idx = offset_index(CORNERS[b] - CORNERS[a])
            if idx >= CENTRE:
                q[a, count[a]], k[a, count[a]] = idx - CENTRE, K[:, a, b]
                count[a] += 1
    return q, k, count


@numba.njit(nogil=True, cache=True)
def _channels(sigma, out, v0, v1):  # pragma: no cover - compiled
    """``out[c, vz, vy, vx + 1] = sigma[vz, vy, vx, c]`` for planes ``v0 <= vz < v1`` (channel-major, a zero column
    at both ends of a row)."""
    H, W = sigma.shape[1], sigma.shape[2]
    for vz in range(v0, v1):
        for vy in range(H):
            for vx in range(W):
                for c in range(6):
                    out[c, vz, vy, vx + 1] = sigma[vz, vy, vx, c]
    return 0.0


@numba.njit(nogil=True, cache=True, fastmath=True)
def _build(sig, channels, pq, pk, count, lo, hi, ptr, S, i0, i1):  # pragma: no cover - compiled
    """``S[q][n] += sum_c K[c, a, b] sigma[n - c_a, c]`` over the ``(a, b)`` pairs of each offset, planes
    ``i0 <= i < i1``; ``sig`` is channel-major with a zero column at both ends of a row (:func:`_channels`)."""
    D, H = sig.shape[1], sig.shape[2]
    for i in range(i0, i1):
        for j in range(1, lo.shape[1] - 1):
            p0 = ptr[i, j]
            start, stop = p0 + lo[i, j], p0 + hi[i, j]
            for a in range(8):
                vz, vy = i - 1 - BITS[a, 0], j - 1 - BITS[a, 1]
                if vz < 0 or vz >= D or vy < 0 or vy >= H or start >= stop:
                    continue
                shift = np.uint64(BITS[a, 2]) + p0  # corner k reads voxel column k - a_w of the padded row
                for t in range(count[a]):
                    out = S[pq[a, t]]
                    for c in range(channels):
                        coef = pk[a, t, c]
                        row = sig[c, vz, vy]
                        for m in range(start, stop):
                            out[m] += coef * row[m - shift]
    return 0.0


@numba.njit(nogil=True, cache=True, fastmath=True)
def _apply(S, b, x, y, lo, hi, ptr, residual, partial, i0, i1):  # pragma: no cover - compiled
    """``y = b - A x`` (``residual``; ``partial[i]`` = plane ``i``'s part of ``y . y``) or ``y = A x`` (of
    ``x . y``) over the active ranges of planes ``i0 <= i < i1``."""
    sign = -1.0 if residual else 1.0
    for i in range(i0, i1):
        part = 0.0
        for j in range(1, lo.shape[1] - 1):
            p0 = ptr[i, j]
            start, stop = p0 + lo[i, j], p0 + hi[i, j]
            s0 = S[0]
            if residual:
                for m in range(start, stop):
                    y[m] = b[m] - s0[m] * x[m]
            else:
                for m in range(start, stop):
                    y[m] = s0[m] * x[m]
            for q in range(1, 14):
                dz, dy = HALF[q, 0], HALF[q, 1]
                up = ptr[i + dz, j + dy] + HALF_W[q] - p0  # (i, j, k) + o_q, relative
                down = ptr[i - dz, j - dy] - HALF_W[q] - p0  # (i, j, k) - o_q, relative
                sq = S[q]
                for m in range(start, stop):
                    y[m] += sign * (sq[m] * x[m + up] + sq[m + down] * x[m + down])
            for m in range(start, stop):
                part += y[m] * (y[m] if residual else x[m])
        partial[i] = part
    return 0.0


@numba.njit(nogil=True, cache=True)
def _load(source, mask, scale, lo, hi, ptr, b, i0, i1):  # pragma: no cover - compiled
    """``b_n = scale * sum_{tissue voxels e at n} f_e`` over the active ranges of planes ``i0 <= i < i1``."""
    D, H, W = mask.shape
    for i in range(i0, i1):
        for j in range(1, lo.shape[1] - 1):
            for k in range(np.int64(lo[i, j]), np.int64(hi[i, j])):
                s = 0.0
                for a in range(8):
                    vz, vy, vx = i - 1 - BITS[a, 0], j - 1 - BITS[a, 1], k - 1 - BITS[a, 2]
                    if 0 <= vz < D and 0 <= vy < H and 0 <= vx < W and mask[vz, vy, vx]:
                        s += source[vz, vy, vx]
                b[np.int64(ptr[i, j]) + k] = scale * s
    return 0.0


@dataclass(frozen=True)
class Stencil:
    """A symmetric 27-point operator stored packed on a :class:`Layout` (module notes): ``S`` is ``(14, size)``,
    the centre and positive-offset coefficients, zero outside the active ranges."""

    S: np.ndarray
    layout: Layout

    def __post_init__(self) -> None:
        if self.S.shape != (14, self.layout.size):
            raise ValueError(f"S has shape {self.S.shape}; expected (14, {self.layout.size}) for its layout")

    def matvec(self, x: np.ndarray, y: np.ndarray) -> float:
        """``y = A x`` on the active ranges (``y`` is left as it is outside them); returns ``x . A x``."""
        L = self.layout
        partial = np.zeros(L.lo.shape[0])
        split(_apply, L.size, 1, L.lo.shape[0] - 1, self.S, y, x, y, L.lo, L.hi, L.ptr, False, partial)
        return float(partial.sum())

    def residual(self, b: np.ndarray, x: np.ndarray, r: np.ndarray) -> float:
        """``r = b - A x`` on the active ranges; returns ``||r||^2``."""
        L = self.layout
        partial = np.zeros(L.lo.shape[0])
        split(_apply, L.size, 1, L.lo.shape[0] - 1, self.S, b, x, r, L.lo, L.hi, L.ptr, True, partial)
        return float(partial.sum())

    def active(self) -> np.ndarray:
        """``(N0, N1, N2)`` bool: the corners with a row (a positive diagonal)."""
        return self.layout.to_grid(self.S[0]) > 0

    def to_csr(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """The assembled matrix over the active corners and their flat indices (:func:`~.assembly.stencil_to_csr`)."""
        return stencil_to_csr(self.layout.to_grid(self.S), self.active())

    def pin(self, node: int) -> np.ndarray:
        """Zero row and column ``node`` (a flat unpadded index) in place; return the row as ``(27,)`` couplings
        ``A[node, node + o]`` in the order of :data:`~.assembly.OFFSETS` (for the pinned corner's residual)."""
        L = self.layout
        i, j, k = (int(v) + 1 for v in np.unravel_index(int(node), L.corners))
        row = np.zeros(27)
        wrap = (1 << 64) - 1
        for q, (dz, dy, dx) in enumerate(HALF):
            m = (int(L.ptr[i, j]) + k) & wrap
            row[CENTRE + q], self.S[q, m] = self.S[q, m], 0.0
            if q:
                m = (int(L.ptr[i - dz, j - dy]) + k - int(dx)) & wrap
                row[CENTRE - q], self.S[q, m] = self.S[q, m], 0.0
        return row


def build(sigma: np.ndarray, mask: np.ndarray, K: np.ndarray) -> Stencil:
    """The Q1 stiffness operator of the tissue voxels (module notes: :func:`_build`).

    Parameters
    ----------
    sigma
        ``(D, H, W, 6)`` conductivity in S/m, channels (xx, yy, zz, xy, xz, yz), zero in air.
    mask
        ``(D, H, W)`` bool tissue voxels (where ``sigma`` is non-zero).
    K
        ``(6, 8, 8)`` element matrices of the voxel's spacing (:func:`~.solver.element_matrices`).

    Examples
    --------
    >>> from fieldlab.potential.physics.fem.solver import element_matrices
    >>> sigma = np.zeros((2, 2, 2, 6)); sigma[..., :3] = 1.0
    >>> op = build(sigma, np.ones((2, 2, 2), dtype=bool), element_matrices((1.0, 1.0, 1.0)))
    >>> x = op.layout.zeros(); x[op.S[0] > 0] = 1.0  # a constant carries no current
    >>> y = op.layout.zeros(); _ = op.matvec(x, y); float(np.abs(y).max()) < 1e-14
    True
    """
    layout = Layout.from_mask(mask)
    D, H, W = mask.shape
    sig = np.zeros((6, D, H, W + 2))
    split(_channels, mask.size, 0, D, np.asarray(sigma), sig)
    channels = 3 if not sig[3:].any() else 6  # axis-aligned tensors: the off-diagonal channels add nothing
    S = np.zeros((14, layout.size))
    pq, pk, count = pair_table(np.asarray(K, dtype=np.float64))
    L = layout
    split(_build, L.size, 1, L.lo.shape[0] - 1, sig, channels, pq, pk, count, L.lo, L.hi, L.ptr, S)
    return Stencil(S, layout)


def load(op: Stencil, source: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """The consistent load, packed on ``op``'s layout: ``b_n = sum_e f_e V_e / 8`` over the tissue voxels at corner
    ``n``, less its mean over the active corners (:func:`~.solver.consistent_load`)."""
    L = op.layout
    b = L.zeros()
    scale = float(np.prod(spacing)) / 8.0
    f, tissue = np.ascontiguousarray(source), np.ascontiguousarray(mask)
    split(_load, L.size, 1, L.lo.shape[0] - 1, f, tissue, scale, *L.rows, b)
    active = op.S[0] > 0
    b[active] -= b[active].sum() / np.count_nonzero(active)
    return b
