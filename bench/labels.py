"""Benchmark: labelled potential samples per CPU-hour, the earlier solver with one source per limb against the fast
core with K sources per limb.

A label is one written sample file: draw the limb (and its K bipoles), rasterise, assemble, build the hierarchy,
solve, write the ``.npz``. The baseline (``earlier_k1``) is the corpus's path as it was: one source per limb
(:func:`fieldlab.potential.physics.corpus.solve_sample`), the pairwise assembly
(:func:`~fieldlab.potential.physics.fem.assembly.assemble_pairwise`) with scipy's ``A[1:, 1:]``, pyamg smoothed
aggregation, tolerance 1e-8. The fast cases run the solver of ``params.yaml`` (stencil assembly, geometric multigrid,
the label tolerance ``physics.solver.tol``) with ``K`` sources per limb sharing the rasterisation, the assembly and
the hierarchy (:func:`~fieldlab.potential.physics.corpus.solve_limb`; K = 1 is the single-source path).
CPU time (``time.process_time``, all threads of this process) is the measure, so a second job on the machine slows
the wall clock more than the ratio; the cases are interleaved limb by limb so that drifts in machine load hit all of
them alike. Run it with one BLAS/OpenMP thread: the corpus spreads limbs over ``cluster.workers`` processes, so a
label's cost is its one-core cost (with two threads, idle BLAS threads spinning between calls are billed as CPU time).
Prints one JSON object.

Each row also splits the wall time of its labels into drawing and rasterising, the solve and the compressed write
(``wall_share``): what a label costs besides its solve.

    OMP_NUM_THREADS=1 PYTHONPATH=src flock /tmp/fieldlab-cpu.lock python bench/labels.py [--limbs 2] [--k 1 4 8] \
        [--methods fmg gmg]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from fieldlab.config import PhysicsConfig, load_config
from fieldlab.core.io import save_npz
from fieldlab.potential.physics.corpus import sample_name, solve_limb, solve_sample
from fieldlab.potential.physics.fem import solver
from fieldlab.potential.physics.fem.assembly import assemble_pairwise


@contextlib.contextmanager
def earlier_solver() -> Iterator[None]:
    """The solver module as it was: pairwise assembly and scipy's slicing for the pinned matrix."""
    saved = solver.assemble, solver.pin_first
    solver.assemble = lambda sigma, mask, spacing: assemble_pairwise(sigma, mask, solver.element_matrices(spacing))
    solver.pin_first = lambda A: A[1:, 1:].tocsr()
    try:
        yield
    finally:
        solver.assemble, solver.pin_first = saved


def label_limb(root: Path, seed: int, index: int, grid: tuple[int, int, int], physics: PhysicsConfig, k: int) -> dict:
    """Label limb ``index`` with ``k`` sources into ``root``; return CPU and wall seconds, samples and CG iterations."""
    c0, w0 = time.process_time(), time.perf_counter()
    if k == 1 and physics.solver.prolongation == "jacobi":  # the corpus's dispatch (corpus._run_job)
        solved = [solve_sample(seed, "train", index, grid, 1, physics)]
    else:
        solved = solve_limb(seed, "train", index, grid, 1, physics, k)
    w1 = time.perf_counter()
    for j, (sample, _info, _limb) in enumerate(solved):
        save_npz(root / sample_name(index, j, k), **sample.to_arrays())
    wall = time.perf_counter() - w0
    solve = sum(info.seconds for _s, info, _l in solved)
    return {
        "cpu_s": time.process_time() - c0,
        "wall_s": wall,
        "solve_s": solve,  # the solver's own clock (checks, assembly or stencil, hierarchy, CG, map to centres)
        "write_s": time.perf_counter() - w1,  # the compressed .npz
        "draw_rasterise_s": w1 - w0 - solve,  # drawing the limb and its poles, rasterising (sub-sampled voxels)
        "samples": len(solved),
        "iterations": [info.iterations for _s, info, _l in solved],
        "methods": sorted({info.method for _s, info, _l in solved}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limbs", type=int, default=2, help="limbs per case (train indices 0..limbs-1)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 8], help="sources per limb, fast core")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--methods", nargs="+", default=None, help="fast cases' solver methods (default: params')")
    args = parser.parse_args()
    cfg = load_config(args.params)
    fast, grid = cfg.physics, cfg.data.grid
    earlier = replace(fast, solver=replace(fast.solver, method="sa", tol=1e-8, prolongation="jacobi"))
    methods = args.methods or [fast.solver.method]
    cases = {"earlier_k1": (1, earlier)}
    for m in methods:
        physics = replace(fast, solver=replace(fast.solver, method=m))
        cases |= {f"{m}_k{k}" if args.methods else f"fast_k{k}": (k, physics) for k in args.k}
    runs: dict[str, list[dict]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.limbs):
            for name, (k, physics) in cases.items():
                with earlier_solver() if name.startswith("earlier") else contextlib.nullcontext():
                    runs[name].append(label_limb(Path(tmp) / name, cfg.seed, index, grid, physics, k))
    rows = {}
    for name, rs in runs.items():
        cpu, wall, n = sum(r["cpu_s"] for r in rs), sum(r["wall_s"] for r in rs), sum(r["samples"] for r in rs)
        rows[name] = {
            "sources_per_limb": cases[name][0],
            "method": cases[name][1].solver.method,
            "tol": cases[name][1].solver.tol,
            "methods_used": sorted({m for r in rs for m in r["methods"]}),
            "samples": n,
            "cpu_s_per_sample": cpu / n,
            "wall_s_per_sample": wall / n,
            "samples_per_cpu_hour": 3600.0 * n / cpu,
            "cg_iterations_mean": sum(sum(r["iterations"]) for r in rs) / n,
            "wall_share": {p: sum(r[f"{p}_s"] for r in rs) / wall for p in ("draw_rasterise", "solve", "write")},
        }
    baseline = rows["earlier_k1"]["samples_per_cpu_hour"]
    for row in rows.values():
        row["ratio_vs_earlier_k1"] = row["samples_per_cpu_hour"] / baseline
    best = max(rows, key=lambda c: rows[c]["samples_per_cpu_hour"])
    out = {
        "grid": list(grid),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "limbs": args.limbs,
        "baseline": "earlier_k1",
        "best": best,
        "best_ratio": rows[best]["ratio_vs_earlier_k1"],
        "ratios": {c: row["ratio_vs_earlier_k1"] for c, row in rows.items()},
        "rows": rows,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
