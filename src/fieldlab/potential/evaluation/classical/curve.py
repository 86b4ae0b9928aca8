"""A classical rival's curve: its potential after each count of steps and what each point cost from the arrays.

Multigrid-CG (:mod:`~fieldlab.potential.evaluation.classical.cg`) and the two-grid cycle
(:mod:`~fieldlab.potential.evaluation.classical.twogrid`) are iterative: one run to the largest count gives every
point of the curve. The iterate after ``k`` steps is what a run stopped at ``k`` returns, and its time is the run's
clock at that step (counted from the sample's arrays), less what recording the iterates cost (a copy each,
:class:`Recorder`). The map of a recorded iterate to voxel centres is applied after the run; its cost, timed on
every point, is added to every point as its last measure (:func:`timed_curve`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fieldlab.errors import InputError
from fieldlab.potential.physics.fem.solver import System, build_system
from fieldlab.potential.physics.fem.transfer import centres_to_corners
from fieldlab.potential.schema import PotentialSample


@dataclass(frozen=True)
class Curve:
    """Potentials ``(D, H, W)`` (volts, corpus gauge, zero in air) after ``counts[i]`` steps of a rival (CG
    iterations, two-grid cycles), and the seconds each cost from the sample's arrays."""

    counts: tuple[int, ...]
    seconds: tuple[float, ...]
    fields: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if not len(self.counts) == len(self.seconds) == len(self.fields):
            raise InputError(
                f"{len(self.counts)} counts, {len(self.seconds)} seconds and {len(self.fields)} fields: expected one "
                "of each per point"
            )


def step_counts(values: Sequence[int], name: str, unit: str) -> tuple[int, ...]:
    """``values`` as whole counts, each at least 1; :class:`InputError` naming the setting ``name`` otherwise.

    Examples
    --------
    >>> step_counts([1, 4.0], "eval.twogrid_cycles", "cycle")
    (1, 4)
    """
    counts = tuple(int(k) for k in values)
    if not counts or min(counts) < 1:
        raise InputError(f"{name} = {list(counts)}; expected {unit} counts >= 1")
    return counts


def sample_system(sample: PotentialSample) -> System:
    """The Q1 system of ``sample`` (:func:`~fieldlab.potential.physics.fem.solver.build_system`) from its arrays in
    float64 (a sample file holds float32), the first thing every rival's clock pays for."""
    sigma = np.asarray(sample.sigma, dtype=np.float64)
    source = np.asarray(sample.source, dtype=np.float64)
    return build_system(sigma, source, tuple(float(v) for v in sample.spacing))  # type: ignore[arg-type]


def start_corners(start: np.ndarray, nodes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A warm start ``(D, H, W)`` at voxel centres moved to the active corners ``nodes`` of a sample with tissue
    ``mask`` (:func:`~fieldlab.potential.physics.fem.transfer.centres_to_corners`); refused unless it is finite in
    tissue on the sample's grid."""
    start = np.asarray(start, dtype=np.float64)
    if start.shape != mask.shape or not np.all(np.isfinite(start[mask])):
        raise InputError(f"start has shape {start.shape}: expected finite values on the sample's grid {mask.shape}")
    return centres_to_corners(start, nodes, mask)


class Recorder:
    """The iterates of one run and the clock at each, less what recording them cost (a copy each: no part of the
    rival). Called with each iterate, as a solver's callback or after each step of a loop."""

    def __init__(self) -> None:
        self.clock: list[float] = []
        self.iterates: list[np.ndarray] = []
        self._spent = 0.0

    def __call__(self, x: np.ndarray) -> None:
        t = time.perf_counter()
        self.clock.append(t - self._spent)
        self.iterates.append(np.array(x, copy=True))
        self._spent += time.perf_counter() - t

    def complete(self, n: int, start: np.ndarray) -> None:
        """Make ``n`` records: a run that did nothing (its start solves the system) records ``start`` now; one that
        stopped early (an exact solve) repeats its last iterate and its clock for the later counts."""
        if not self.iterates:
            self.clock, self.iterates = [time.perf_counter() - self._spent], [np.array(start, copy=True)]
        missing = n - len(self.iterates)
        if missing > 0:
            self.clock += [self.clock[-1]] * missing
            self.iterates += [self.iterates[-1]] * missing


def timed_curve(
    counts: tuple[int, ...],
    recorder: Recorder,
    to_field: Callable[[np.ndarray], np.ndarray],
    t0: float,
    recorded_start: bool = False,
) -> Curve:
    """The curve of ``counts`` from a run's ``recorder``: point ``k`` is ``to_field`` of the ``k``-th iterate, its
    seconds the clock at step ``k`` since ``t0`` plus the time of one ``to_field`` (the last measured). With
    ``recorded_start`` the recorder's first record is the start (count 0) and iterate ``k`` its ``k``-th record."""
    fields, mapping = [], 0.0
    shift = 0 if recorded_start else 1
    for k in counts:
        t = time.perf_counter()
        fields.append(to_field(recorder.iterates[k - shift]))
        mapping = time.perf_counter() - t
    seconds = tuple(recorder.clock[k - shift] - t0 + mapping for k in counts)
    return Curve(counts, seconds, tuple(fields))
