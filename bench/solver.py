"""Benchmark: FEM potential solve time per phantom sample at base and 2x, and the scaling exponent of time vs unknowns.

Peer: a 7-point finite-volume discretisation (diagonal of sigma, harmonic-mean face conductances, air excluded)
solved with the same pyamg smoothed-aggregation CG, on the same limb and source. Prints one JSON object.

    PYTHONPATH=src flock /tmp/fieldlab-heavy.lock python bench/solver.py [--repeats 3] [--sample 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.sparse as sp

from fieldlab.config import PhysicsConfig
from fieldlab.core.seeding import numpy_rng
from fieldlab.potential.physics.phantom import rasterise
from fieldlab.potential.physics.sampling import sample_limb
from fieldlab.potential.physics.solver import solve_potential

BASE = (96, 48, 48)


def fv7_solve(sigma: np.ndarray, source: np.ndarray, spacing: tuple[float, float, float], tol: float) -> float:
    """Seconds for the 7-point finite-volume peer: assemble, pyamg SA setup, CG to ``tol`` (relative residual)."""
    import pyamg

    t0 = time.perf_counter()
    mask = np.any(sigma != 0, axis=-1)
    idx = np.full(mask.shape, -1, dtype=np.int64)
    idx[mask] = np.arange(mask.sum())
    rows, cols, vals = [], [], []
    h = (spacing[2], spacing[1], spacing[0])  # per array axis (d, h, w)
    for axis, comp in ((0, 2), (1, 1), (2, 0)):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(0, -1), slice(1, None)
        sa, sb = sigma[tuple(a)][..., comp], sigma[tuple(b)][..., comp]
        both = mask[tuple(a)] & mask[tuple(b)]
        g = 2 * sa * sb / np.where(both, sa + sb, 1.0) * (np.prod(h) / h[axis] ** 2)  # harmonic mean * area / h
        i, j, g = idx[tuple(a)][both], idx[tuple(b)][both], g[both]
        rows += [i, j, i, j]
        cols += [j, i, i, j]
        vals += [-g, -g, g, g]
    n = int(mask.sum())
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    b = source[mask] * np.prod(h)
    A, b = A[1:, 1:].tocsr(), b[1:]  # pin one unknown
    np.random.seed(0)  # noqa: NPY002 -- pyamg's setup draws from the legacy global RNG
    ml = pyamg.smoothed_aggregation_solver(A, symmetry="symmetric", max_coarse=500)
    ml.solve(b, tol=tol, maxiter=300, accel="cg")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats at base resolution (median reported)")
    parser.add_argument("--sample", type=int, default=0, help="train sample index of the default params")
    args = parser.parse_args()
    phys = PhysicsConfig()
    limb, cond = sample_limb(numpy_rng(0, 0, args.sample), phys.phantom, phys.conductivity, phys.source)
    rows = []
    for factor in (0.5, 1, 1.5, 2):
        grid = tuple(int(n * factor) for n in BASE)
        r = rasterise(limb, cond, grid, max(2, round(4 / factor)))
        reps = args.repeats if factor <= 1 else 1
        fem, info = [], None
        for _ in range(reps):
            _, info = solve_potential(r.sigma, r.source, r.spacing, phys.solver.tol)
            fem.append(info.seconds)
        fv = [fv7_solve(r.sigma, r.source, r.spacing, phys.solver.tol) for _ in range(reps)]
        rows.append(
            {
                "grid": list(grid),
                "unknowns": info.unknowns,
                "fem_seconds": float(np.median(fem)),
                "fem_iterations": info.iterations,
                "fem_residual": info.residual,
                "fv7_seconds": float(np.median(fv)),
                "fem_over_fv7": float(np.median(fem) / np.median(fv)),
            }
        )
    n = np.log([r["unknowns"] for r in rows])
    t = np.log([r["fem_seconds"] for r in rows])
    exponent = float(np.polyfit(n, t, 1)[0])
    base = next(r for r in rows if r["grid"] == list(BASE))
    fine = rows[-1]
    print(
        json.dumps(
            {
                "sample": args.sample,
                "base_seconds": base["fem_seconds"],
                "base_unknowns": base["unknowns"],
                "x2_seconds": fine["fem_seconds"],
                "x2_unknowns": fine["unknowns"],
                "time_vs_unknowns_exponent": exponent,
                "peer": "7-point finite volume + pyamg SA-CG",
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
