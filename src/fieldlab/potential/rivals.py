"""The strongest classical rival of a surrogate: the sample's own FEM system solved by multigrid-CG, stopped early.

A learned predictor of the potential competes with the solver that made its labels. Used well, that solver is not
run to 1e-8 but stopped once it is accurate enough, so the rival is a curve: for every iteration count ``k`` the
potential after ``k`` preconditioned CG iterations on the sample's own Q1 system (:mod:`.physics.solver`) and its
seconds, counted from the sample's arrays (input checks, assembly, multigrid setup, load vector, the start vector,
``k`` iterations and the map to voxel centres in the corpus gauge). Started from zero ("cold") or from a guess such
as the coarse_fem prior ("warm": the guess's own cost is the caller's to add).

One CG run gives every point of the curve: the iterate after ``k`` iterations is what a run stopped at ``k``
returns, and its time is the run's clock at that iteration, less what recording the iterates cost (a copy each).
The map to voxel centres is applied to every recorded iterate after the run; its cost, timed once, is added to
every point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fieldlab.errors import InputError
from fieldlab.potential.estimate import centres_to_corners
from fieldlab.potential.physics.multisource import LimbSystem
from fieldlab.potential.physics.solver import check_inputs, corners_to_centres, load_vector
from fieldlab.potential.schema import PotentialSample


@dataclass(frozen=True)
class CGCurve:
    """Potentials ``(D, H, W)`` (volts, corpus gauge, zero in air) after ``iterations[i]`` CG iterations, and the
    seconds each cost from the sample's arrays."""

    iterations: tuple[int, ...]
    seconds: tuple[float, ...]
    fields: tuple[np.ndarray, ...]


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
) -> CGCurve:
    """The rival's curve on ``sample``: its potential after each count of ``iterations`` (module notes).

    Parameters
    ----------
    sample
        The sample (its sigma, source, spacing; ``u`` is never read).
    iterations
        CG iteration counts, each >= 1.
    method, prolongation
        The multigrid preconditioner (:class:`~.physics.multisource.LimbSystem`: ``"gmg"``, ``"sa"``, ``"rs"``; the
        SA prolongation smoother ``"jacobi"`` or ``"energy"``), built from this sample alone (pyamg's set-up seeded).
    start
        ``(D, H, W)`` potential at voxel centres to start from (moved to the corners by
        :func:`~.estimate.centres_to_corners`, timed), or ``None`` for zero.

    Raises
    ------
    InputError
        An iteration count below 1, a start of another shape or not finite in tissue, or a sample that fails the
        solver's checks.

    Examples
    --------
    >>> from fieldlab.potential.physics.solver import solve_potential
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
    counts = tuple(int(k) for k in iterations)
    if not counts or min(counts) < 1:
        raise InputError(f"rival iterations = {list(counts)}; expected CG iteration counts >= 1")
    t0 = time.perf_counter()
    sigma = np.asarray(sample.sigma, dtype=np.float64)
    source = np.asarray(sample.source, dtype=np.float64)
    spacing = tuple(float(v) for v in sample.spacing)
    mask = check_inputs(sigma, source, spacing)  # type: ignore[arg-type]
    system = LimbSystem(sigma, spacing, method=method, prolongation=prolongation)  # type: ignore[arg-type]
    ml = system.hierarchy()
    b = load_vector(source, mask, system.nodes, system.spacing)  # type: ignore[arg-type]
    b -= b.sum() / b.size  # the consistent right-hand side, as the solver makes it
    x0 = np.zeros(b.size - 1)
    if start is not None:
        start = np.asarray(start, dtype=np.float64)
        if start.shape != mask.shape or not np.all(np.isfinite(start[mask])):
            raise InputError(f"start has shape {start.shape}: expected finite values on the sample's grid {mask.shape}")
        corners = centres_to_corners(start, system.nodes, mask)
        x0 = corners[1:] - corners[0]  # corner 0 is pinned at zero; a constant is no error (gauge)
    clock: list[float] = []
    iterates: list[np.ndarray] = []
    spent = 0.0  # recording the iterates is no part of the rival

    def record(xk: np.ndarray) -> None:
        nonlocal spent
        t = time.perf_counter()
        clock.append(t - spent)
        iterates.append(np.array(xk, copy=True))
        spent += time.perf_counter() - t

    ml.solve(b[1:], x0=x0, tol=1e-300, maxiter=max(counts), accel="cg", callback=record)
    if len(iterates) < max(counts):  # CG stopped early (an exact solve): later counts return the last iterate
        clock += [clock[-1]] * (max(counts) - len(iterates))
        iterates += [iterates[-1]] * (max(counts) - len(iterates))
    fields, mapping = [], 0.0
    for k in counts:
        t = time.perf_counter()
        u = corners_to_centres(np.concatenate([[0.0], iterates[k - 1]]), system.nodes, mask)
        u[mask] -= u[mask].mean()  # the corpus gauge
        mapping = time.perf_counter() - t
        fields.append(u)
    seconds = tuple(clock[k - 1] - t0 + mapping for k in counts)
    return CGCurve(counts, seconds, tuple(fields))


#: ``eval.rival_methods`` -> (multigrid method, SA prolongation smoother) of :func:`cg_curve`.
RIVAL_METHODS = {"gmg": ("gmg", "jacobi"), "sa_jacobi": ("sa", "jacobi"), "sa_energy": ("sa", "energy")}


def rival_front(
    samples: list[PotentialSample],
    masks: list[np.ndarray],
    iterations: tuple[int, ...],
    methods: tuple[str, ...],
    repeats: int,
    priors: list[np.ndarray | None] | None = None,
    prior_seconds: list[float] | None = None,
) -> dict[str, dict[str, float]]:
    """Every rival's point on ``samples``: ``{rival_name: {rel_l2, rel_l2_max, seconds}}``, rel L2 over each sample's
    ``masks[i]`` against its ``u``, seconds the median over ``repeats`` runs per sample (every variant of a sample
    run once per round, rounds interleaved), mean over samples. With ``priors`` each method also runs warm, started
    from the sample's prior, whose ``prior_seconds`` it pays.

    Raises
    ------
    InputError
        An unknown method, ``repeats < 1`` or no samples.
    """
    unknown = [m for m in methods if m not in RIVAL_METHODS]
    if unknown or repeats < 1 or not samples:
        raise InputError(
            f"eval.rival_methods = {list(methods)}, repeats {repeats}, {len(samples)} sample(s): expected methods of "
            f"{', '.join(RIVAL_METHODS)}, repeats >= 1 and at least one sample"
        )
    errors: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for i, (sample, mask) in enumerate(zip(samples, masks, strict=True)):
        prior = None if priors is None else priors[i]
        variants = [(m, None) for m in methods] + ([(m, prior) for m in methods] if prior is not None else [])
        runs: dict[int, list[CGCurve]] = {}
        for _ in range(repeats):
            for v, (m, start) in enumerate(variants):
                runs.setdefault(v, []).append(cg_curve(sample, iterations, *RIVAL_METHODS[m], start=start))
        truth = np.asarray(sample.u, dtype=np.float64)
        norm = float(np.linalg.norm(truth[mask]))
        if norm == 0:
            raise InputError(f"sample {i}: its potential u is zero over the mask; the rivals have nothing to score")
        for v, (m, start) in enumerate(variants):
            extra = 0.0 if start is None else float(prior_seconds[i]) if prior_seconds is not None else 0.0
            median = np.median([c.seconds for c in runs[v]], axis=0)
            for j, k in enumerate(runs[v][0].iterations):
                name = rival_name(m, start is not None, k)
                err = float(np.linalg.norm((runs[v][0].fields[j] - truth)[mask])) / norm
                errors.setdefault(name, []).append(err)
                seconds.setdefault(name, []).append(float(median[j]) + extra)
    return {
        name: {
            "rel_l2": float(np.mean(errors[name])),
            "rel_l2_max": float(np.max(errors[name])),
            "seconds": float(np.mean(seconds[name])),
        }
        for name in errors
    }
