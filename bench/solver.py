"""Benchmark: where the FEM solve's time goes, the earlier path (pairwise assembly + pyamg smoothed aggregation)
against the fast core (stencil assembly + geometric multigrid) and the matrix-free core (compiled stencils, Galerkin
levels, coloured Gauss-Seidel), at the base grid and at 2x.

For each grid (one limb of ``params.yaml``'s corpus, train sample 0 by default: 116k unknowns at base, 897k at 2x;
rasterised as the corpus does) and each path, interleaved, median of
``--repeats``:

- ``assembly_s``: the Q1 matrix and its pinned submatrix ``A[1:, 1:]``;
- ``setup_s``: the multigrid hierarchy (earlier: ``pyamg.smoothed_aggregation_solver``, Jacobi prolongator,
  seed 0; fast: :func:`~fieldlab.potential.physics.fem.multigrid.geometric_hierarchy`);

  the matrix-free contenders (:mod:`~fieldlab.potential.physics.fem.mfsolve`) pay in ``assembly_s`` the compiled
  stencil, its load vector and the pin, and in ``setup_s`` the Galerkin levels: ``mf`` (float32 cycles, CG from
  zero), ``mf_float64`` (the same in float64: what float32 changes), ``fmg`` (CG from full multigrid, whose cost
  ``start_s`` is part of ``setup_s``; ``to_target_iterations`` counts CG iterations after it, 0 if the start is
  enough);
- ``iteration_s``: one preconditioned CG iteration (median over the first ``--iterations``);
- ``to_target``: CG iterations and seconds (assembly + setup + CG) until the potential at the voxel centres, in the
  corpus gauge, is within ``--target`` relative L2 of the converged one over the evaluation's loss mask (muscle
  minus balls of ``loss.singularity_radius`` base voxels around the poles);
- ``full_s``: the whole solve from the sample's arrays (checks, assembly, load vector, hierarchy, CG to the
  tolerance, true residual, voxel centres, gauge); earlier at tol 1e-8 (its default), fast (``gmg``), ``mf`` and
  ``fmg`` at the label tolerance ``physics.solver.tol`` and at 1e-8;
- at 2x, ``nested``: the sample restricted to the base grid, solved (matrix-free, full multigrid + CG to the label
  tolerance), prolonged to the 2x corners, then CG on the 2x system
  (:func:`~fieldlab.potential.physics.fem.stencil_solve.nested`), each piece timed from the 2x arrays.

``label_agreement``: the matrix-free solves at the label tolerance against the ``gmg`` solve at the label tolerance
and against the converged reference.

Then, once per grid, the effect of the CG tolerance on the labels: rel L2 against a 1e-10 solve for tolerances
1e-4 .. 1e-8 (fast path), beside the discretisation error (the limb solved at the base spacing, its Q1 field on the 2x
grid, against the 2x solve). Prints one JSON object.

    OMP_NUM_THREADS=2 PYTHONPATH=src flock /tmp/fieldlab-cpu.lock python bench/solver.py [--repeats 3] [--split train]
        [--sample 0]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from fieldlab.config import load_config
from fieldlab.core.seeding import numpy_rng
from fieldlab.potential.data import masking
from fieldlab.potential.evaluation.classical.coarser import solve_at_spacing
from fieldlab.potential.physics.corpus import SPLIT_STREAM
from fieldlab.potential.physics.fem.assembly import assemble_pairwise, assemble_stencil, pin_first
from fieldlab.potential.physics.fem.mfsolve import Hierarchy, pcg, pinned_system
from fieldlab.potential.physics.fem.multigrid import geometric_hierarchy
from fieldlab.potential.physics.fem.solver import (
    build_hierarchy,
    check_inputs,
    element_matrices,
    load_vector,
    pinned_cg,
    solve_potential,
)
from fieldlab.potential.physics.fem.stencil_solve import nested
from fieldlab.potential.physics.fem.transfer import corners_to_centres
from fieldlab.potential.physics.phantom import rasterise
from fieldlab.potential.physics.sampling import sample_limb

TOLERANCES = (1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
#: The converged reference: 1e-12 is below what the true residual reaches at 2x in double precision (~8e-12).
REFERENCE_TOL = 1e-10


def earlier_solve(sigma: np.ndarray, source: np.ndarray, spacing: tuple[float, float, float], tol: float) -> float:
    """Seconds of the earlier ``solve_potential`` (pairwise assembly, scipy slicing, SA seed 0, CG, checks)."""
    t0 = time.perf_counter()
    mask = check_inputs(sigma, source, spacing)
    A, nodes = assemble_pairwise(sigma, mask, element_matrices(spacing))
    b = load_vector(source, mask, nodes, spacing)
    b -= b.sum() / b.size
    Ar = A[1:, 1:].tocsr()
    x, _ = pinned_cg(build_hierarchy(Ar, "sa", 0), Ar, b, tol, 300)
    if np.linalg.norm(b - A @ x) > tol * np.linalg.norm(b):
        raise RuntimeError("earlier path did not converge")
    u = corners_to_centres(x, nodes, mask)
    u[mask] -= u[mask].mean()
    return time.perf_counter() - t0


def centres(x_pinned: np.ndarray, nodes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pinned corner values -> voxel-centre potential in the corpus gauge (zero mean over tissue)."""
    u = corners_to_centres(np.concatenate([[0.0], x_pinned]), nodes, mask)
    u[mask] -= u[mask].mean()
    return u


def rel_l2(u: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    return float(np.linalg.norm((u - ref)[mask]) / np.linalg.norm(ref[mask]))


def staged(
    sigma: np.ndarray,
    b: np.ndarray,
    mask: np.ndarray,
    K: np.ndarray,
    assemble_fn: Callable,
    pin_fn: Callable,
    setup_fn: Callable,
    iterations: int,
) -> dict:
    """Time assembly, setup and ``iterations`` CG iterations; return the times and the iterates (pinned)."""
    t0 = time.perf_counter()
    A, nodes = assemble_fn(sigma, mask, K)
    Ar = pin_fn(A)
    t1 = time.perf_counter()
    ml = setup_fn(Ar, nodes, tuple(n + 1 for n in mask.shape))
    t2 = time.perf_counter()
    iterates, stamps = [], [time.perf_counter()]

    def record(x: np.ndarray) -> None:
        stamps.append(time.perf_counter())
        iterates.append(x.copy())

    ml.solve(b[1:], tol=1e-14, maxiter=iterations, accel="cg", callback=record)
    return {
        "assembly_s": t1 - t0,
        "setup_s": t2 - t1,
        "stamps": np.array(stamps) - stamps[0],
        "iterates": iterates,
        "nodes": nodes,
    }


def staged_stencil(
    sigma: np.ndarray, source: np.ndarray, mask: np.ndarray, K: np.ndarray, spacing, dtype, start: bool, iterations: int
) -> dict:
    """The matrix-free core: stencil, load and pin (``assembly_s``), Galerkin levels and, with ``start``, full
    multigrid (``setup_s``), then ``iterations`` CG iterations; the iterates as pinned node vectors."""
    t0 = time.perf_counter()
    op, b, nodes, packed, _, _ = pinned_system(sigma, source, mask, K, spacing)
    t1 = time.perf_counter()
    h = Hierarchy(op, dtype)
    t_levels = time.perf_counter()
    x = h.nested(b) if start else op.layout.zeros()
    x[packed[0]] = 0.0
    t2 = time.perf_counter()
    iterates, stamps = [], [time.perf_counter()]

    def record(v: np.ndarray, _rnorm: float) -> None:
        stamps.append(time.perf_counter())
        iterates.append(v.copy())

    first = x.copy()
    pcg(h, b, x, 1e-14, iterations, record)
    pinned = [v[packed][1:] - v[packed][0] for v in iterates]
    run = {
        "assembly_s": t1 - t0,
        "setup_s": t2 - t1,
        "stamps": np.array(stamps) - stamps[0],
        "iterates": pinned,
        "nodes": nodes,
    }
    if start:
        run["start"] = first[packed][1:] - first[packed][0]
        run["start_s"] = t2 - t_levels
    return run


#: Matrix-free contenders: (float type of the V-cycle, start from full multigrid).
STENCIL_PATHS = {"mf": (np.float32, False), "mf_float64": (np.float64, False), "fmg": (np.float32, True)}


def score(run: dict, ref: np.ndarray, evalmask: np.ndarray, mask: np.ndarray, target: float) -> dict:
    """One timed run: errors of its iterates (a start first, if any) and the time and CG iterations to ``target``."""
    has_start = "start" in run
    iterates = ([run["start"]] if has_start else []) + run["iterates"]
    errors = [rel_l2(centres(x, run["nodes"], mask), ref, evalmask) for x in iterates]
    hit = next((k for k, e in enumerate(errors) if e <= target), None)
    count = None if hit is None else hit + (0 if has_start else 1)  # CG iterations after the start
    return {
        "assembly_s": run["assembly_s"],
        "setup_s": run["setup_s"],
        "iteration_s": float(np.median(np.diff(run["stamps"]))),
        "errors": errors,
        "to_target_iterations": count,
        "to_target_s": None if count is None else run["assembly_s"] + run["setup_s"] + float(run["stamps"][count]),
    } | ({"start_s": run["start_s"]} if has_start else {})


PATHS = {
    "earlier": (
        assemble_pairwise,
        lambda A: A[1:, 1:].tocsr(),
        lambda Ar, nodes, shape: build_hierarchy(Ar, "sa", 0),
    ),
    "fast": (assemble_stencil, pin_first, lambda Ar, nodes, shape: geometric_hierarchy(Ar, nodes, shape)),
}


def loss_mask(r, muscle: tuple[float, ...], radius: float, factor: int) -> np.ndarray:
    """The evaluation's loss mask of a raster: muscle voxels minus balls of ``radius`` base voxels at the poles."""
    region = masking.muscle_mask(torch.from_numpy(r.sigma), muscle) & torch.from_numpy(r.mask)
    singular = masking.singularity_mask(r.mask.shape, torch.from_numpy(r.source_index), radius, (factor,) * 3)
    return masking.loss_mask(region, singular).numpy()


def bench_grid(r, factor: int, cfg, args) -> tuple[dict, np.ndarray]:
    """All timings of one raster; returns the row and the converged reference potential."""
    label_tol = cfg.physics.solver.tol
    spacing = tuple(float(s) for s in r.spacing)
    mask = r.mask
    K = element_matrices(spacing)
    base_h = spacing[2] * factor  # the base grid's cell, where nested iteration starts at 2x
    evalmask = loss_mask(r, cfg.physics.conductivity.muscle, cfg.loss.singularity_radius, factor)
    ref, ref_info = solve_potential(r.sigma, r.source, spacing, REFERENCE_TOL)
    _, nodes = assemble_stencil(r.sigma, mask, K)
    b = load_vector(r.source, mask, nodes, spacing)
    b -= b.sum() / b.size
    runs: dict[str, list[dict]] = {name: [] for name in (*PATHS, *STENCIL_PATHS)}
    full: dict[str, list[float]] = {"earlier_tol1e-8": []}
    full |= {f"{m}_{t}": [] for m in ("fast", "mf", "fmg") for t in ("label_tol", "tol1e-8")}
    nested_runs: list = []
    for _ in range(args.repeats):
        for name, (asm, pin, setup) in PATHS.items():
            run = staged(r.sigma, b, mask, K, asm, pin, setup, args.iterations)
            runs[name].append(score(run, ref, evalmask, mask, args.target))
        for name, (dtype, start) in STENCIL_PATHS.items():
            run = staged_stencil(r.sigma, r.source, mask, K, spacing, dtype, start, args.iterations)
            runs[name].append(score(run, ref, evalmask, mask, args.target))
        full["earlier_tol1e-8"].append(earlier_solve(r.sigma, r.source, spacing, 1e-8))
        for m, method in (("fast", "gmg"), ("mf", "mf"), ("fmg", "fmg")):
            for t, tol in (("label_tol", label_tol), ("tol1e-8", 1e-8)):
                full[f"{m}_{t}"].append(solve_potential(r.sigma, r.source, spacing, tol, method=method)[1].seconds)
        if factor > 1:
            nested_runs.append(nested(r.sigma, r.source, spacing, base_h, steps=tuple(range(5)), coarse_tol=label_tol))
    row: dict = {"grid": list(mask.shape), "unknowns": int(nodes.size), "reference": ref_info.to_dict()}
    for name, rs in runs.items():
        hits = [x["to_target_s"] for x in rs]
        row[name] = {
            "assembly_s": float(np.median([x["assembly_s"] for x in rs])),
            "setup_s": float(np.median([x["setup_s"] for x in rs])),
            "iteration_s": float(np.median([x["iteration_s"] for x in rs])),
            "to_target_iterations": rs[0]["to_target_iterations"],
            "to_target_s": None if None in hits else float(np.median(hits)),
            "rel_l2_per_iteration": [float(f"{e:.3g}") for e in rs[0]["errors"]],
        } | ({"start_s": float(np.median([x["start_s"] for x in rs]))} if "start_s" in rs[0] else {})
    if nested_runs:
        row["nested"] = nested_row(nested_runs, ref, evalmask, args.target)
    row["full_s"] = {k: float(np.median(v)) for k, v in full.items()}
    row["speedup"] = {
        "to_target": row["earlier"]["to_target_s"] / row["fast"]["to_target_s"]
        if row["fast"]["to_target_s"] and row["earlier"]["to_target_s"]
        else None,
        "full_label_tol_vs_earlier": row["full_s"]["earlier_tol1e-8"] / row["full_s"]["fast_label_tol"],
    }
    for name in STENCIL_PATHS:
        if row[name]["to_target_s"] and row["fast"]["to_target_s"]:
            row["speedup"][f"to_target_{name}_vs_fast"] = row["fast"]["to_target_s"] / row[name]["to_target_s"]
    for name in ("mf", "fmg"):
        row["speedup"][f"full_label_tol_{name}_vs_fast"] = (
            row["full_s"]["fast_label_tol"] / row["full_s"][f"{name}_label_tol"]
        )
    row["label_agreement"] = {}
    gmg_label, _ = solve_potential(r.sigma, r.source, spacing, label_tol, method="gmg")
    for method in ("mf", "fmg"):
        u, info = solve_potential(r.sigma, r.source, spacing, label_tol, method=method)
        row["label_agreement"][method] = {
            "iterations": info.iterations,
            "residual": info.residual,
            "rel_l2_vs_gmg_label_tol": rel_l2(u, gmg_label, evalmask),
            "rel_l2_vs_reference": rel_l2(u, ref, evalmask),
        }
    row["tolerance"] = []
    for tol in TOLERANCES:
        u, info = solve_potential(r.sigma, r.source, spacing, tol)
        row["tolerance"].append(
            {"tol": tol, "iterations": info.iterations, "residual": info.residual, "seconds": info.seconds}
            | {"rel_l2_vs_reference": rel_l2(u, ref, evalmask)}
        )
    return row, ref


def nested_row(runs: list, ref: np.ndarray, evalmask: np.ndarray, target: float) -> dict:
    """Nested iteration from the restricted sample: errors per fine CG iteration, time to ``target`` and the pieces
    (medians over the repeats)."""
    errors = [rel_l2(u, ref, evalmask) for u in runs[0].fields]
    hit = next((k for k, e in enumerate(errors) if e <= target), None)
    pieces = {k: float(np.median([run.pieces[k] for run in runs])) for k in runs[0].pieces if k != "step_s"}
    return {
        "to_target_iterations": hit,
        "to_target_s": None if hit is None else float(np.median([run.seconds[hit] for run in runs])),
        "rel_l2_per_iteration": [float(f"{e:.3g}") for e in errors],
        "seconds_per_iteration": [float(np.median([run.seconds[k] for run in runs])) for k in range(len(errors))],
        "pieces": pieces,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per path (median reported)")
    parser.add_argument("--split", default="train", choices=sorted(SPLIT_STREAM), help="corpus split of the limb")
    parser.add_argument("--sample", type=int, default=0, help="limb index in the split")
    parser.add_argument("--iterations", type=int, default=12, help="CG iterations timed per path")
    parser.add_argument("--target", type=float, default=0.004, help="rel L2 against the converged potential")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    cfg = load_config(args.params)
    phys, grid = cfg.physics, cfg.data.grid
    rng = numpy_rng(cfg.seed, SPLIT_STREAM[args.split], args.sample)
    limb, cond = sample_limb(rng, phys.phantom, phys.conductivity, phys.source)
    rows, refs = {}, {}
    for name, factor in (("base", 1), ("x2", 2)):
        shape = tuple(n * factor for n in grid)
        r = rasterise(limb, cond, shape, max(2, -(-phys.phantom.subsamples // factor)))  # as corpus.solve_sample
        rows[name], refs[name] = bench_grid(r, factor, cfg, args)
        if factor == 2:
            evalmask = loss_mask(r, phys.conductivity.muscle, cfg.loss.singularity_radius, factor)
            base_h = float(phys.phantom.box_m[2]) / grid[0]
            tight = replace(phys, solver=replace(phys.solver, tol=1e-10))
            coarse = solve_at_spacing(limb, cond, base_h, r.mask, tight, base_h)
            rows[name]["discretisation_rel_l2_base_vs_x2"] = rel_l2(coarse.phi, refs[name], evalmask)
    print(
        json.dumps(
            {
                "split": args.split,
                "sample": args.sample,
                "label_tol": phys.solver.tol,
                "target_rel_l2": args.target,
                "threads": torch.get_num_threads(),
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
