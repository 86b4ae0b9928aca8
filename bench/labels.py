"""Benchmark: labelled potential samples per CPU-hour with one source per limb vs K sources per limb.

A label is one written sample file: draw the limb (and its K bipoles), rasterise, assemble, build the AMG hierarchy,
solve, write the ``.npz``. With ``data.sources_per_limb = K`` the rasterisation, assembly and hierarchy are shared by
K samples (:func:`fieldlab.potential.physics.corpus.solve_limb`); K = 1 with the jacobi prolongation is the default
path (:func:`~fieldlab.potential.physics.corpus.solve_sample`), the baseline of every ratio. Each K is run with each
``physics.solver.prolongation`` asked for (jacobi: the default hierarchy; energy: energy-minimising SA).
CPU time (``time.process_time``, all threads of this process) is the measure, so a second job on the machine slows
the wall clock more than the ratio; the cases are interleaved limb by limb so that drifts in machine load hit all of
them alike. Prints one JSON object.

    PYTHONPATH=src flock /tmp/fieldlab-heavy.lock python bench/labels.py [--limbs 2] [--k 1 4 8] \
        [--prolongation jacobi energy]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from fieldlab.config import DataConfig, PhysicsConfig
from fieldlab.core.io import save_npz
from fieldlab.potential.physics.corpus import sample_name, solve_limb, solve_sample


def label_limb(root: Path, seed: int, index: int, grid: tuple[int, int, int], physics: PhysicsConfig, k: int) -> dict:
    """Label limb ``index`` with ``k`` sources into ``root``; return CPU and wall seconds, samples and CG iterations."""
    c0, w0 = time.process_time(), time.perf_counter()
    if k == 1 and physics.solver.prolongation == "jacobi":  # the corpus's dispatch (corpus._run_job)
        solved = [solve_sample(seed, "train", index, grid, 1, physics)]
    else:
        solved = solve_limb(seed, "train", index, grid, 1, physics, k)
    for j, (sample, _info, _limb) in enumerate(solved):
        save_npz(root / sample_name(index, j, k), **sample.to_arrays())
    return {
        "cpu_s": time.process_time() - c0,
        "wall_s": time.perf_counter() - w0,
        "samples": len(solved),
        "iterations": [info.iterations for _s, info, _l in solved],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limbs", type=int, default=2, help="limbs per K (train indices 0..limbs-1)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 8], help="sources per limb to compare")
    parser.add_argument("--prolongation", nargs="+", default=["jacobi", "energy"], choices=["jacobi", "energy"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base, grid = PhysicsConfig(), DataConfig().grid
    cases = [(1, "jacobi")] + [(k, p) for p in args.prolongation for k in args.k if (k, p) != (1, "jacobi")]
    runs: dict[tuple[int, str], list[dict]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.limbs):
            for k, p in cases:
                physics = replace(base, solver=replace(base.solver, prolongation=p))
                runs[k, p].append(label_limb(Path(tmp) / f"k{k}_{p}", args.seed, index, grid, physics, k))
    rows = {}
    for (k, p), rs in runs.items():
        cpu, wall, n = sum(r["cpu_s"] for r in rs), sum(r["wall_s"] for r in rs), sum(r["samples"] for r in rs)
        rows[f"k{k}_{p}"] = {
            "sources_per_limb": k,
            "prolongation": p,
            "samples": n,
            "cpu_s_per_sample": cpu / n,
            "wall_s_per_sample": wall / n,
            "samples_per_cpu_hour": 3600.0 * n / cpu,
            "cg_iterations_mean": sum(sum(r["iterations"]) for r in rs) / n,
        }
    baseline = rows["k1_jacobi"]["samples_per_cpu_hour"]
    for row in rows.values():
        row["ratio_vs_k1_jacobi"] = row["samples_per_cpu_hour"] / baseline
    best = max(rows, key=lambda c: rows[c]["samples_per_cpu_hour"])
    out = {
        "grid": list(grid),
        "limbs": args.limbs,
        "baseline": "k1_jacobi",
        "best": best,
        "best_ratio": rows[best]["ratio_vs_k1_jacobi"],
        "ratios": {c: row["ratio_vs_k1_jacobi"] for c, row in rows.items()},
        "rows": rows,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
