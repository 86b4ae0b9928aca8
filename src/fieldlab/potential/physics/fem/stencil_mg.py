"""Geometric multigrid on packed stencils: Galerkin coarse levels, coloured Gauss-Seidel and trilinear transfers.

Coarse grid and prolongation
----------------------------
As :mod:`~.multigrid`: a grid of ``N`` corners per axis coarsens to ``M = N // 2 + 1`` (a virtual corner past an even
count), coarse corner ``I`` sits on fine corner ``2 I``, and the prolongation is trilinear on the whole corner grid,

    P[n, I] = prod_axes w1(n_a - 2 I_a),     w1(0) = 1,  w1(+-1) = 1/2,  w1 = 0 otherwise.

In padded coordinates (:mod:`~.stencil`) the fine corner of coarse ``I`` is ``2 I - 1``. A coarse corner is in an
active range when one of its 27 fine neighbours ``2 I - 1 + d`` (``d`` in ``{-1, 0, 1}^3``) is. Fine corners with no
tissue have zero rows and columns in ``A``, so ``P`` on the whole grid gives the same ``P^T A P`` as the prolongator
of :func:`~.multigrid.trilinear_prolongator` restricted to the active corners; coarse corners that reach no active fine
corner get a zero row.

Galerkin product on stencils (:func:`galerkin`)
-------------------------------------------------
For a coarse corner ``C`` (fine centre ``F = 2 C - 1``) and a coarse offset ``O``,

    A_c[C, C + O] = sum_{d, o} w(d) A[F + d, F + d + o] P[F + d + o, C + O],    w(d) = prod_a w1(d_a),

collected in two steps: ``v[e] = sum_{d + o = e} w(d) A[F + d, F + d + o]`` for the 125 offsets ``e`` in
``{-2 .. 2}^3``, then ``A_c[C, C + O] = sum_e v[e] prod_a w1(e_a - 2 O_a)``. Trilinear ``P`` keeps 27 points: ``e``
reaches the fine neighbours of at most the 27 coarse corners ``C + O``, ``O`` in ``{-1, 0, 1}^3``. Only the centre
and the positive ``O`` are computed (the product is symmetric). The loops over ``C`` run along a coarse row at once.

Smoother (:func:`smooth`)
-------------------------
Gauss-Seidel, ``x_n <- (b_n - sum_{m != n} A[n, m] x_m) / A[n, n]``, over eight colours (the parities of the three
coordinates; no two corners of one colour are neighbours, so a colour is updated in any order and in parallel).
A forward sweep visits the colours in one order, a backward sweep in the reverse order, so a forward pre-smoothing and
a backward post-smoothing make a symmetric V-cycle. A colour is never swept on its own: planes of one parity in
parallel, in each plane the rows of one parity, in each row first the corners of one parity then the other. That
order gives exactly the colour-by-colour result (a corner's neighbours in other planes, other rows, or the same row
are of other parities), while each plane and row is read once per sweep from cache. Corners with a zero diagonal
(no tissue, or the pinned corner) are set to zero.

Restriction is ``P^T`` (full weighting) and prolongation ``P`` (trilinear, added to the fine vector).
"""

from __future__ import annotations

import numba
import numpy as np

from fieldlab.potential.physics.fem.stencil import HALF, HALF_W, Layout, Stencil, padded_rows, split

#: ``w1(d)`` at ``d + 1`` for ``d`` in ``{-1, 0, 1}``: the 1D trilinear weights.
W1 = np.array([0.5, 1.0, 0.5])


@numba.njit(cache=True)
def _coarse_ranges(flo, fhi, m0, m1, lo, hi):  # pragma: no cover - compiled
    """Coarse active ranges from the fine ones (:func:`coarse_layout`)."""
    for ci in range(1, m0 + 1):
        for cj in range(1, m1 + 1):
            for dz in range(-1, 2):
                for dy in range(-1, 2):
                    fl, fh = flo[2 * ci - 1 + dz, 2 * cj - 1 + dy], fhi[2 * ci - 1 + dz, 2 * cj - 1 + dy]
                    if fl < fh:
                        lo[ci, cj] = min(lo[ci, cj], (fl + 1) // 2)
                        hi[ci, cj] = max(hi[ci, cj], (fh + 1) // 2 + 1)


def coarse_layout(fine: Layout) -> Layout:
    """The layout of the coarse grid of ``fine``: coarse row ``(I, J)`` is active on
    ``ceil(l / 2) <= K < floor((h + 1) / 2) + 1`` united over its nine fine rows ``(2 I - 1 + d, 2 J - 1 + e)`` with
    active ranges ``[l, h)`` (the coarse corners with an active fine neighbour, module notes)."""
    corners = tuple(n // 2 + 1 for n in fine.corners)
    lo = np.full(padded_rows(corners), 1 << 40, dtype=np.int64)
    hi = np.zeros(padded_rows(corners), dtype=np.int64)
    _coarse_ranges(fine.lo.astype(np.int64), fine.hi.astype(np.int64), corners[0], corners[1], lo, hi)
    return Layout.from_ranges(corners, lo, hi)  # type: ignore[arg-type]


@numba.njit(nogil=True, cache=True, fastmath=True)
def _galerkin(Sf, flo, fhi, fptr, clo, chi, cptr, longest, Sc, c0, c1):  # pragma: no cover - compiled
    """``Sc = P^T Sf P`` on the coarse active ranges of planes ``c0 <= I < c1`` (module notes), a row at a time."""
    two = np.uint64(2)
    for ci in range(c0, c1):
        buf = np.empty((125, longest))
        for cj in range(1, clo.shape[1] - 1):
            a, b = clo[ci, cj], chi[ci, cj]
            if a >= b:
                continue
            n = b - a
            buf[:, :n] = 0.0
            for dz in range(-1, 2):
                for dy in range(-1, 2):
                    fi, fj = 2 * ci - 1 + dz, 2 * cj - 1 + dy
                    fl, fh = np.int64(flo[fi, fj]), np.int64(fhi[fi, fj])
                    if fl >= fh:
                        continue
                    for dx in range(-1, 2):
                        w = W1[dz + 1] * W1[dy + 1] * W1[dx + 1]
                        k0 = max(np.int64(a), (fl + 2 - dx) // 2)  # fine 2 K - 1 + dx in [fl, fh)
                        k1 = min(np.int64(b), (fh + 2 - dx) // 2)
                        if k0 >= k1:
                            continue
                        ks, ke = np.uint64(k0), np.uint64(k1)
                        for q in range(14):
                            oz, oy, ox = HALF[q, 0], HALF[q, 1], HALF[q, 2]
                            row = buf[(dz + oz + 2) * 25 + (dy + oy + 2) * 5 + (dx + ox + 2)]
                            src = Sf[q]
                            base = fptr[fi, fj] + np.uint64(dx + 1) - two  # + 2 K: fine corner F + d
                            for k in range(ks, ke):
                                row[k - a] += w * src[base + two * k]
                            if q == 0:
                                continue
                            row = buf[(dz - oz + 2) * 25 + (dy - oy + 2) * 5 + (dx - ox + 2)]
                            base = fptr[fi - oz, fj - oy] - HALF_W[q] + np.uint64(dx + 1) - two  # F + d - o_q
                            for k in range(ks, ke):
                                row[k - a] += w * src[base + two * k]
            for q in range(14):
                out = Sc[q]
                start = cptr[ci, cj] + a
                for m in range(n):
                    out[start + m] = 0.0
                oz, oy, ox = HALF[q, 0], HALF[q, 1], HALF[q, 2]
                for ez in range(max(-2, 2 * oz - 1), min(2, 2 * oz + 1) + 1):
                    for ey in range(max(-2, 2 * oy - 1), min(2, 2 * oy + 1) + 1):
                        for ex in range(max(-2, 2 * ox - 1), min(2, 2 * ox + 1) + 1):
                            w = W1[ez - 2 * oz + 1] * W1[ey - 2 * oy + 1] * W1[ex - 2 * ox + 1]
                            row = buf[(ez + 2) * 25 + (ey + 2) * 5 + (ex + 2)]
                            for m in range(n):
                                out[start + m] += w * row[m]
    return 0.0


def galerkin(fine: Stencil) -> Stencil:
    """The coarse stencil ``P^T A P`` of ``fine`` (module notes), on :func:`coarse_layout`.

    Examples
    --------
    >>> from fieldlab.potential.physics.fem.stencil import build
    >>> from fieldlab.potential.physics.fem.solver import element_matrices
    >>> sigma = np.zeros((4, 4, 4, 6)); sigma[..., :3] = 1.0
    >>> coarse = galerkin(build(sigma, np.ones((4, 4, 4), dtype=bool), element_matrices((1.0, 1.0, 1.0))))
    >>> x = coarse.layout.zeros(); x[coarse.S[0] > 0] = 1.0  # constants stay in the null space
    >>> y = coarse.layout.zeros(); _ = coarse.matvec(x, y)
    >>> coarse.layout.corners, float(np.abs(y).max()) < 1e-14
    ((3, 3, 3), True)
    """
    layout = coarse_layout(fine.layout)
    S = np.zeros((14, layout.size))
    longest = int(np.max(np.where(layout.hi > layout.lo, layout.hi - layout.lo, 0)))
    planes = layout.lo.shape[0] - 1
    split(_galerkin, fine.layout.size, 1, planes, fine.S, *fine.layout.rows, *layout.rows, max(longest, 1), S)
    return Stencil(S, layout)


@numba.njit(nogil=True, cache=True, fastmath=True)
def _sweep(S, inv_diag, b, x, lo, hi, ptr, longest, forward, pz, i0, i1):  # pragma: no cover - compiled
    """The four colours of the planes of parity ``pz`` in ``i0 <= i < i1`` of one Gauss-Seidel sweep, forward or
    backward (module notes)."""
    one = np.uint64(1)
    buf = np.empty(longest, dtype=x.dtype)
    for i in range(i0, i1):
        if i % 2 != pz:
            continue
        for rphase in range(2):
            py = (1 - rphase) if forward else rphase
            for j in range(2 - py, lo.shape[1] - 1, 2):
                first, stop_k = lo[i, j], hi[i, j]
                if first >= stop_k:
                    continue
                p0 = ptr[i, j]
                start, stop = p0 + first, p0 + stop_k
                for m in range(start, stop):
                    buf[m - start] = b[m]
                for q in range(2, 14):  # every neighbour outside the row
                    dz, dy = HALF[q, 0], HALF[q, 1]
                    up = ptr[i + dz, j + dy] + HALF_W[q] - p0
                    down = ptr[i - dz, j - dy] - HALF_W[q] - p0
                    sq = S[q]
                    for m in range(start, stop):
                        buf[m - start] -= sq[m] * x[m + up] + sq[m + down] * x[m + down]
                s1 = S[1]  # the row's own neighbours (0, 0, +-1)
                for kphase in range(2):
                    px = (1 - kphase) if forward else kphase
                    k0 = first + ((np.uint64(px) + first) & one)  # first padded k of the range with parity px
                    for k in range(k0, stop_k, np.uint64(2)):
                        m = p0 + k
                        x[m] = (buf[k - first] - s1[m] * x[m + one] - s1[m - one] * x[m - one]) * inv_diag[m]
    return 0.0


def smooth(op: Stencil, inv_diag: np.ndarray, b: np.ndarray, x: np.ndarray, forward: bool, longest: int) -> None:
    """One Gauss-Seidel sweep of ``A x = b`` in place (module notes); ``inv_diag`` is ``1 / A[n, n]`` (0 where the
    diagonal is 0), ``longest`` the longest active range of ``op``'s rows; every array of one float type."""
    L = op.layout
    for phase in range(2):  # planes of one parity at a time (forward: odd padded planes, the even corners, first)
        pz = (1 - phase) if forward else phase
        split(_sweep, L.size, 1, L.lo.shape[0] - 1, op.S, inv_diag, b, x, *L.rows, longest, forward, pz)


@numba.njit(nogil=True, cache=True, fastmath=True)
def _restrict(rf, flo, fhi, fptr, rc, clo, chi, cptr, longest, c0, c1):  # pragma: no cover - compiled
    """``rc = P^T rf`` on the coarse active ranges: the nine fine rows of a coarse row summed with their weights
    ``w1(dz) w1(dy)`` into a fine-row buffer, then ``rc[K] = t[2 K - 1] + (t[2 K - 2] + t[2 K]) / 2``."""
    two = np.uint64(2)
    t = np.empty(2 * longest + 3, dtype=rc.dtype)
    for ci in range(c0, c1):
        for cj in range(1, clo.shape[1] - 1):
            a, b = clo[ci, cj], chi[ci, cj]
            if a >= b:
                continue
            k0, k1 = two * a - two, two * b - np.uint64(1)  # fine k = 2 K - 2 .. 2 K over the coarse range
            for k in range(k1 - k0):
                t[k] = 0.0
            for dz in range(-1, 2):
                for dy in range(-1, 2):
                    fi, fj = 2 * ci - 1 + dz, 2 * cj - 1 + dy
                    fl, fh = flo[fi, fj], fhi[fi, fj]
                    if fl >= fh:
                        continue
                    w = W1[dz + 1] * W1[dy + 1]
                    src = fptr[fi, fj]
                    for k in range(max(fl, k0), min(fh, k1)):
                        t[k - k0] += w * rf[src + k]
            out = cptr[ci, cj]
            for k in range(a, b):
                m = two * (k - a)  # t index of fine 2 K - 2
                rc[out + k] = t[m + np.uint64(1)] + 0.5 * (t[m] + t[m + two])
    return 0.0


def restrict(fine: Layout, rf: np.ndarray, coarse: Layout, rc: np.ndarray) -> None:
    """``rc = P^T rf`` (full weighting) from the packed ``fine`` vector to the packed ``coarse`` one."""
    longest = int(np.max(np.where(coarse.hi > coarse.lo, coarse.hi - coarse.lo, 0)))
    split(_restrict, fine.size, 1, coarse.lo.shape[0] - 1, rf, *fine.rows, rc, *coarse.rows, max(longest, 1))


@numba.njit(nogil=True, cache=True, fastmath=True)
def _prolong(xc, clo, chi, cptr, xf, flo, fhi, fptr, longest, i0, i1):  # pragma: no cover - compiled
    """``xf += P xc`` on the fine active ranges: the (one, two or four) coarse rows of a fine row interpolated into a
    coarse-row buffer ``t``, then ``xf[2 K - 1] += t[K]`` and ``xf[2 K] += (t[K] + t[K + 1]) / 2``."""
    one, two = np.uint64(1), np.uint64(2)
    t = np.empty(longest + 2, dtype=xf.dtype)
    for i in range(i0, i1):
        ni = 1 if i % 2 == 1 else 2
        for j in range(1, flo.shape[1] - 1):
            fl, fh = flo[i, j], fhi[i, j]
            if fl >= fh:
                continue
            nj = 1 if j % 2 == 1 else 2
            c0, c1 = fl // two, (fh + one) // two + one  # coarse K with a fine neighbour 2 K - 2 .. 2 K in range
            for k in range(c1 - c0):
                t[k] = 0.0
            for si in range(ni):
                ci = (i + 1) // 2 if ni == 1 else i // 2 + si
                for sj in range(nj):
                    cj = (j + 1) // 2 if nj == 1 else j // 2 + sj
                    a, b = max(clo[ci, cj], c0), min(chi[ci, cj], c1)
                    w = (1.0 if ni == 1 else 0.5) * (1.0 if nj == 1 else 0.5)
                    src = cptr[ci, cj]
                    for k in range(a, b):
                        t[k - c0] += w * xc[src + k]
            out = fptr[i, j]
            for k in range((fl + two) // two, (fh + two) // two):  # odd fine 2 K - 1 in range: t[K]
                xf[out + two * k - one] += t[k - c0]
            for k in range((fl + one) // two, (fh + one) // two):  # even fine 2 K in range: (t[K] + t[K + 1]) / 2
                xf[out + two * k] += 0.5 * (t[k - c0] + t[k - c0 + one])
    return 0.0


def prolong_add(coarse: Layout, xc: np.ndarray, fine: Layout, xf: np.ndarray) -> None:
    """``xf += P xc`` (trilinear) from the packed ``coarse`` vector to the packed ``fine`` one."""
    longest = int(np.max(np.where(fine.hi > fine.lo, fine.hi - fine.lo, 0)))
    split(_prolong, fine.size, 1, fine.lo.shape[0] - 1, xc, *coarse.rows, xf, *fine.rows, longest + 3)
