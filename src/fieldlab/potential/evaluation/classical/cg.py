"""The strongest classical rival of a surrogate: the sample's own FEM system solved by multigrid-CG, stopped early.

A learned predictor of the potential competes with the solver that made its labels. Used well, that solver is not
run to 1e-8 but stopped once it is accurate enough, so the rival is a curve: for every iteration count ``k`` the
potential after ``k`` preconditioned CG iterations on the sample's own Q1 system
(:func:`~fieldlab.potential.physics.fem.solver.build_system`) and its seconds, counted from the sample's arrays (input
checks, assembly, multigrid setup, load vector, the start vector, ``k`` iterations and the map to voxel centres in the
corpus gauge). Started from zero ("cold") or from a guess such as the coarse_fem prior ("warm": the guess's own cost
is the caller's to add).

One CG run gives every point of the curve (:mod:`~fieldlab.potential.evaluation.classical.curve`): the iterate
after ``k`` iterations is what a run stopped at ``k`` returns, and its time is the run's clock at that iteration,
less what recording the iterates cost. The map to voxel centres is applied to every recorded iterate after the run;
its cost is added to every point.

Two more rivals share the timing and the scoring (:func:`rival_front`):

- the two-grid cycle (:mod:`~fieldlab.potential.evaluation.classical.twogrid`): symmetric Gauss-Seidel sweeps and an
  exact Galerkin coarse-grid correction on a coarse grid of fixed spacing, ``twogrid_<N>mm[_warm]_v<c>`` after ``c``
  cycles;
- at a grid finer than the training grid (2x), multigrid-CG on the sample restricted to the training grid
  (:func:`restricted_cg_curve`: :func:`~fieldlab.potential.physics.fem.coarse.restrict`, the solve,
  :func:`~fieldlab.potential.physics.fem.transfer.prolong` back, as the coarse_fem prior moves between grids),
  ``cg_<method>_r<N>mm_k<k>``, timed from the fine arrays.

Every point carries the run-to-run spread of its seconds (``seconds_spread``, :func:`spread`) and of its error
(``rel_l2_spread``: 0, the solvers are deterministic), which :func:`front_members` allows for when it decides which
points are clearly on the Pareto front.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fieldlab.errors import InputError
from fieldlab.potential.evaluation.classical.curve import (
    Curve,
    Recorder,
    sample_system,
    start_corners,
    step_counts,
    timed_curve,
)
from fieldlab.potential.evaluation.classical.stencil_rivals import mf_cg_curve, nested_curve, nested_name
from fieldlab.potential.evaluation.classical.twogrid import twogrid_curve, twogrid_factor, twogrid_name
from fieldlab.potential.evaluation.front import spread
from fieldlab.potential.metrics import field_relative_l2
from fieldlab.potential.physics.fem.coarse import restrict
from fieldlab.potential.physics.fem.solver import build_system
from fieldlab.potential.physics.fem.transfer import prolong
from fieldlab.potential.schema import PotentialSample, refinement


def rival_name(method: str, warm: bool, k: int) -> str:
    """``cg_<method>[_warm]_k<k>``: a key of ``eval_sr.json: baselines``.

    Examples
    --------
    >>> rival_name("gmg", False, 4), rival_name("sa", True, 2)
    ('cg_gmg_k4', 'cg_sa_warm_k2')
    """
    return f"cg_{method}{'_warm' if warm else ''}_k{k}"


def cg_curve(
    sample: PotentialSample,
    iterations: tuple[int, ...],
    method: str = "gmg",
    prolongation: str = "jacobi",
    start: np.ndarray | None = None,
) -> Curve:
    """The rival's curve on ``sample``: its potential after each count of ``iterations`` (module notes).

    Parameters
    ----------
    sample
        The sample (its sigma, source, spacing; ``u`` is never read).
    iterations
        CG iteration counts, each >= 1.
    method, prolongation
        The multigrid preconditioner (:func:`~fieldlab.potential.physics.fem.solver.build_hierarchy`: ``"gmg"``,
        ``"sa"``, ``"rs"``; the SA prolongation smoother ``"jacobi"`` or ``"energy"``), built from this sample alone
        (pyamg's set-up seeded), the one a solve of the sample tries first.
    start
        ``(D, H, W)`` potential at voxel centres to start from (moved to the corners by
        :func:`~fieldlab.potential.physics.fem.transfer.centres_to_corners`, timed), or ``None`` for zero.

    Raises
    ------
    InputError
        An iteration count below 1, a start of another shape or not finite in tissue, or a sample that fails the
        solver's checks.

    Examples
    --------
    >>> from fieldlab.potential.physics.fem.solver import solve_potential
    >>> sigma = np.zeros((8, 8, 8, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((8, 8, 8)); f[2, 2, 2], f[5, 5, 5] = 1.0, -1.0
    >>> z = np.zeros((8, 8, 8))
    >>> s = PotentialSample(sigma, f, z == 0, z.astype(np.uint8), z, (1.0, 1.0, 1.0), np.zeros((2, 3)),
    ...                     np.zeros((2, 3), dtype=np.int64))
    >>> u, _ = solve_potential(sigma, f, (1.0, 1.0, 1.0), 1e-10)
    >>> c = cg_curve(s, (1, 8))
    >>> [bool(np.linalg.norm(v - u) < 1e-3 * np.linalg.norm(u)) for v in c.fields]  # 1 iteration is not enough
    [False, True]
    """
    counts = _counts(iterations)
    t0 = time.perf_counter()
    system = sample_system(sample)
    ml = system.hierarchy(method, prolongation=prolongation)
    x0 = np.zeros(system.b.size - 1)
    if start is not None:
        corners = start_corners(start, system.nodes, system.mask)
        x0 = corners[1:] - corners[0]  # corner 0 is pinned at zero; a constant is no error (gauge)
    recorder = _cg_iterates(ml, system.b[1:], x0, max(counts))
    return timed_curve(counts, recorder, lambda x: system.centres(np.concatenate([[0.0], x])), t0)


def _counts(iterations: Sequence[int]) -> tuple[int, ...]:
    return step_counts(iterations, "rival iterations", "CG iteration")


def _cg_iterates(ml, b: np.ndarray, x0: np.ndarray, n: int) -> Recorder:
    """Preconditioned CG on the pinned system for ``n`` iterations, each iterate and the clock at it recorded; a run
    that stops early (an exact solve) repeats its last one."""
    recorder = Recorder()
    ml.solve(b, x0=x0, tol=1e-300, maxiter=n, accel="cg", callback=recorder)
    recorder.complete(n, x0)
    return recorder


def training_spacing(sample: PotentialSample, grid: tuple[int, int, int]) -> float | None:
    """The cell (m, along D) of the training ``grid`` over ``sample``'s box when ``sample`` is a whole, isotropic
    refinement of it by a factor above 1 (2x, :func:`~fieldlab.potential.schema.refinement`), else ``None`` (the
    sample is on the training grid, or no refinement).

    Examples
    --------
    >>> z = np.zeros((8, 4, 4))
    >>> s = PotentialSample(np.zeros((8, 4, 4, 6)), z, z == 0, z.astype(np.uint8), z, (1e-3, 1e-3, 1e-3),
    ...                     np.zeros((2, 3)), np.zeros((2, 3), dtype=np.int64))
    >>> training_spacing(s, (4, 2, 2)), training_spacing(s, (8, 4, 4)), training_spacing(s, (3, 2, 2))
    (0.002, None, None)
    """
    shape = tuple(int(n) for n in sample.shape)
    factor = refinement(shape, grid)
    if factor is None or len(set(factor)) != 1 or factor[0] == 1:
        return None
    return float(sample.spacing[2]) * shape[0] / int(grid[0])


def restricted_name(method: str, h: float, k: int) -> str:
    """``cg_<method>_r<N>mm_k<k>``: multigrid-CG on the sample restricted to cells of ``N`` mm, ``k`` iterations.

    Examples
    --------
    >>> restricted_name("gmg", 0.002, 3)
    'cg_gmg_r2mm_k3'
    """
    return f"cg_{method}_r{h * 1e3:g}mm_k{k}"


def restricted_cg_curve(
    sample: PotentialSample,
    h: float,
    iterations: tuple[int, ...],
    method: str = "gmg",
    prolongation: str = "jacobi",
) -> Curve:
    """Multigrid-CG on ``sample`` restricted to cells of ``h`` metres (the training grid at 2x), stopped after each
    count of ``iterations``, its Q1 field evaluated at ``sample``'s voxel centres.

    The restriction is :func:`~fieldlab.potential.physics.fem.coarse.restrict` (air-aware tensor mean, current summed
    cell by cell, as the hybrid restricts a 2x sample) and the way back
    :func:`~fieldlab.potential.physics.fem.transfer.prolong` (exact trilinear evaluation of
    the coarse corners at the fine centres, corpus gauge, as the coarse_fem prior). Seconds count from the fine
    arrays: restriction, checks, assembly, multigrid set-up, load vector, ``k`` iterations and one prolongation.

    Raises
    ------
    InputError
        An iteration count below 1, or a restricted sample that fails the solver's checks.
    ConfigError
        ``h`` does not tile ``sample``'s grid with whole blocks of voxels.

    Examples
    --------
    >>> sigma = np.zeros((16, 16, 16, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((16, 16, 16)); f[4, 4, 4], f[11, 11, 11] = 1.0, -1.0
    >>> z = np.zeros((16, 16, 16))
    >>> s = PotentialSample(sigma, f, z == 0, z.astype(np.uint8), z, (1.0, 1.0, 1.0), np.zeros((2, 3)),
    ...                     np.zeros((2, 3), dtype=np.int64))
    >>> c = restricted_cg_curve(s, 2.0, (1, 20))
    >>> [v.shape for v in c.fields], c.counts
    ([(16, 16, 16), (16, 16, 16)], (1, 20))
    """
    counts = _counts(iterations)
    t0 = time.perf_counter()
    spacing = tuple(float(v) for v in sample.spacing)
    fine_mask = np.asarray(sample.mask, dtype=bool)
    problem = restrict(sample.sigma, sample.source, fine_mask, spacing, h)  # type: ignore[arg-type]
    system = build_system(problem.sigma, problem.source, problem.grid.spacing)
    ml = system.hierarchy(method, prolongation=prolongation)
    recorder = _cg_iterates(ml, system.b[1:], np.zeros(system.b.size - 1), max(counts))

    def to_field(x: np.ndarray) -> np.ndarray:
        phi, active = system.corners(np.concatenate([[0.0], x]))
        return prolong(phi, active, problem.grid.factor, fine_mask)

    return timed_curve(counts, recorder, to_field, t0)


#: ``eval.rival_methods`` -> (multigrid method, SA prolongation smoother) of :func:`cg_curve` on the assembled system.
RIVAL_METHODS = {"gmg": ("gmg", "jacobi"), "sa_jacobi": ("sa", "jacobi"), "sa_energy": ("sa", "energy")}
#: ``eval.rival_methods`` entry of multigrid-CG on stencils (:func:`~.stencil_rivals.mf_cg_curve`), the corpus's solver.
STENCIL_RIVAL = "mf"
#: ``eval.rival_methods`` entry of the same from full multigrid (cold only: full multigrid is its own start).
FMG_RIVAL = "fmg"


@dataclass(frozen=True)
class Variant:
    """One rival run on one sample: ``run()`` gives a curve whose point ``j`` is ``names[j]``; ``extra`` seconds
    (a warm start's prior) are added to every point."""

    names: tuple[str, ...]
    run: Callable[[], Curve]
    extra: float = 0.0


@dataclass(frozen=True)
class TwoGridSpec:
    """The two-grid rival's settings: ``cycles`` (points), ``smoothing`` (sweeps before and after each coarse
    correction) and the coarse cell ``coarse_spacing_m`` (``eval.twogrid_*``)."""

    cycles: tuple[int, ...]
    smoothing: int
    coarse_spacing_m: float


def curve_front(
    samples: list[PotentialSample],
    masks: list[np.ndarray],
    variants: list[list[Variant]],
    repeats: int,
) -> dict[str, dict[str, float]]:
    """Every point of every rival run ``variants[i]`` on sample ``i``, scored on ``masks[i]`` against its ``u``.

    Each variant of a sample runs once per round, ``repeats`` rounds (interleaved, so a slow spell of the machine
    hits every variant alike). A point's ``seconds`` is its median over the rounds plus the variant's ``extra``,
    then the mean over samples; ``seconds_spread`` the median over samples of :func:`spread` of its rounds (extra
    included); ``rel_l2`` and ``rel_l2_max`` the mean and worst relative L2 over samples (from the first round: the
    solvers are deterministic, so ``rel_l2_spread`` is 0). Returns ``{name: {rel_l2, rel_l2_max, rel_l2_spread,
    seconds, seconds_spread}}``.

    Raises
    ------
    InputError
        ``repeats < 1``, or a sample whose ``u`` is zero over its mask.
    """
    if repeats < 1:
        raise InputError(f"eval.rival_repeats = {repeats}: expected at least 1 timed run")
    errors: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    spreads: dict[str, list[float]] = {}
    for i, (sample, mask, runs_i) in enumerate(zip(samples, masks, variants, strict=True)):
        truth = np.asarray(sample.u, dtype=np.float64)
        if not truth[mask].any():
            raise InputError(f"sample {i}: its potential u is zero over the mask; the rivals have nothing to score")
        first: dict[int, Curve] = {}
        times: dict[int, list[tuple[float, ...]]] = {}
        for _ in range(repeats):
            for v, variant in enumerate(runs_i):
                curve = variant.run()
                first.setdefault(v, curve)  # the fields of one round are kept: the others would be the same
                times.setdefault(v, []).append(tuple(curve.seconds))
        for v, variant in enumerate(runs_i):
            total = np.asarray(times[v], dtype=np.float64) + variant.extra  # (rounds, points)
            for j, name in enumerate(variant.names):
                err = field_relative_l2(first[v].fields[j], truth, mask)
                errors.setdefault(name, []).append(err)
                seconds.setdefault(name, []).append(float(np.median(total[:, j])))
                spreads.setdefault(name, []).append(spread(total[:, j]))
    return {
        name: {
            "rel_l2": float(np.mean(errors[name])),
            "rel_l2_max": float(np.max(errors[name])),
            "rel_l2_spread": 0.0,
            "seconds": float(np.mean(seconds[name])),
            "seconds_spread": float(np.median(spreads[name])),
        }
        for name in errors
    }


def rival_front(
    samples: list[PotentialSample],
    masks: list[np.ndarray],
    iterations: tuple[int, ...],
    methods: tuple[str, ...],
    repeats: int,
    priors: list[np.ndarray | None] | None = None,
    prior_seconds: list[float] | None = None,
    *,
    twogrid: TwoGridSpec | None = None,
    training_grid: tuple[int, int, int] | None = None,
    restricted_methods: tuple[str, ...] = ("gmg",),
    nested_iterations: tuple[int, ...] = (),
) -> dict[str, dict[str, float]]:
    """Every rival's point on ``samples`` (:func:`curve_front`: ``{name: {rel_l2, rel_l2_max, rel_l2_spread, seconds,
    seconds_spread}}``), rel L2 over each sample's ``masks[i]`` against its ``u``, seconds the median over
    ``repeats`` interleaved runs per sample, mean over samples.

    - multigrid-CG with each preconditioner of ``methods`` stopped after each of ``iterations``
      (:func:`rival_name`);
    - with ``twogrid``, the two-grid cycle after each of ``twogrid.cycles`` (:func:`~.twogrid.twogrid_name`) on
      the samples whose grid the coarse spacing tiles with cells of more than one voxel (others get no such point);
    - with ``training_grid``, on a sample that is a whole refinement of it (2x), multigrid-CG with each of
      ``restricted_methods`` on the sample restricted to that grid (:func:`restricted_cg_curve`,
      :func:`restricted_name`; the assembled methods), and nested iteration from that grid after each of
      ``nested_iterations`` fine CG iterations (:func:`~.stencil_rivals.nested_curve`,
      :func:`~.stencil_rivals.nested_name`).

    With ``priors`` the CG and two-grid rivals also run warm, started from the sample's prior, whose
    ``prior_seconds`` they pay.

    Raises
    ------
    InputError
        An unknown method, ``repeats < 1`` or no samples.
    """
    unknown = [m for m in (*methods, *restricted_methods) if m not in (*RIVAL_METHODS, STENCIL_RIVAL, FMG_RIVAL)]
    if unknown or repeats < 1 or not samples:
        raise InputError(
            f"eval.rival_methods = {list(methods)}, repeats {repeats}, {len(samples)} sample(s): expected methods of "
            f"{', '.join((STENCIL_RIVAL, FMG_RIVAL, *RIVAL_METHODS))}, repeats >= 1 and at least one sample"
        )
    counts = _counts(iterations) if iterations else ()  # no iterations: no CG points, cold or restricted
    variants: list[list[Variant]] = []
    for i, sample in enumerate(samples):
        prior = None if priors is None else priors[i]
        extra = float(prior_seconds[i]) if prior is not None and prior_seconds is not None else 0.0
        starts = [(None, 0.0)] + ([(prior, extra)] if prior is not None else [])
        runs: list[Variant] = []
        for start, cost in starts:
            warm = start is not None
            for m in methods if counts else ():
                if m == FMG_RIVAL and warm:
                    continue
                steps = (0, *counts) if m == FMG_RIVAL else counts  # full multigrid alone: cg_fmg_k0
                names = tuple(rival_name(m, warm, k) for k in steps)
                if m in (STENCIL_RIVAL, FMG_RIVAL):
                    run = _bind(mf_cg_curve, sample, steps, start=start, full_multigrid=m == FMG_RIVAL)
                else:
                    run = _bind(cg_curve, sample, counts, *RIVAL_METHODS[m], start=start)
                runs.append(Variant(names, run, cost))
            factor = None if twogrid is None else twogrid_factor(sample, twogrid.coarse_spacing_m)
            if twogrid is not None and factor is not None:
                cycles = tuple(int(c) for c in twogrid.cycles)
                names = tuple(twogrid_name(twogrid.coarse_spacing_m, warm, c) for c in cycles)
                run = _bind(twogrid_curve, sample, cycles, factor, twogrid.smoothing, start=start)
                runs.append(Variant(names, run, cost))
        h = None if training_grid is None else training_spacing(sample, training_grid)
        for m in restricted_methods if h is not None and counts else ():
            if m in (STENCIL_RIVAL, FMG_RIVAL):
                continue  # on stencils, the route through the training grid is nested iteration
            names = tuple(restricted_name(m, h, k) for k in counts)  # type: ignore[arg-type]
            runs.append(Variant(names, _bind(restricted_cg_curve, sample, h, counts, *RIVAL_METHODS[m])))
        if h is not None and nested_iterations:
            names = tuple(nested_name(h, int(k)) for k in nested_iterations)
            runs.append(Variant(names, _bind(nested_curve, sample, h, tuple(nested_iterations))))
        variants.append(runs)
    return curve_front(samples, masks, variants, repeats)


def _bind(fn: Callable[..., Curve], *args, **kw) -> Callable[[], Curve]:
    return lambda: fn(*args, **kw)
