"""The classical routes ``fieldlab predict`` runs when one dominates the learned default (``eval_sr.json: default``).

A route is named as its point on the accuracy-time front (``eval_sr.json: baselines``), and runs the same solver
from the sample's arrays:

=========================== ====================================================================================
``cg_fmg_k<k>``             full multigrid on the Galerkin levels of the sample's own stencil system, then ``k``
                            multigrid-CG iterations (:func:`~fieldlab.potential.physics.fem.stencil_solve.stopped_cg`)
``cg_mf_k<k>``              ``k`` multigrid-CG iterations on that system from zero
``nested_<N>mm_k<k>``       the sample restricted to cells of ``N`` mm, solved, prolonged to its corners, then ``k``
                            iterations (:func:`~fieldlab.potential.physics.fem.stencil_solve.nested`)
=========================== ====================================================================================

Other points of the front (FEM on a coarser grid, the assembled preconditioners, warm starts from a prior) are not
routes: a route needs nothing but the sample.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from fieldlab.errors import InputError
from fieldlab.potential.physics.fem.stencil_solve import nested, stopped_cg
from fieldlab.potential.schema import PotentialSample

_CG = re.compile(r"cg_(mf|fmg)_k(\d+)")
_NESTED = re.compile(r"nested_(\d+(?:\.\d+)?)mm_k(\d+)")


def classical_route(name: str) -> Callable[[PotentialSample], np.ndarray] | None:
    """The route called ``name`` (module table): a function of a sample giving its potential ``(D, H, W)`` in volts
    (corpus gauge), or ``None`` when ``name`` is not a route.

    Examples
    --------
    >>> classical_route("cg_fmg_k1") is not None, classical_route("cg_mf_warm_k2"), classical_route("fem_2mm")
    (True, None, None)
    """
    if m := _CG.fullmatch(name):
        fmg, k = m.group(1) == "fmg", int(m.group(2))
        if not fmg and k == 0:
            return None  # zero iterations from zero is no solve

        def cg(sample: PotentialSample) -> np.ndarray:
            sigma, source, spacing = sample_arrays(sample)
            x, centres = stopped_cg(sigma, source, spacing, k, full_multigrid=fmg)
            return centres(x)

        return cg
    if m := _NESTED.fullmatch(name):
        h, k = float(m.group(1)) * 1e-3, int(m.group(2))

        def from_coarse(sample: PotentialSample) -> np.ndarray:
            sigma, source, spacing = sample_arrays(sample)
            return nested(sigma, source, spacing, h, steps=(k,)).fields[0]

        return from_coarse
    return None


def run_route(name: str, sample: PotentialSample) -> np.ndarray:
    """The potential of ``sample`` by the classical route ``name``; :class:`InputError` when it is not one."""
    route = classical_route(name)
    if route is None:
        raise InputError(f"{name!r} is not a classical route fieldlab predict can run; expected cg_fmg_k<k>, "
                         "cg_mf_k<k> or nested_<N>mm_k<k>")  # fmt: skip
    return route(sample)


def sample_arrays(sample: PotentialSample) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """The sample's arrays in float64 (a file holds float32) and its spacing: the first thing a route (and each
    classical rival of the evaluation) pays for."""
    spacing = tuple(float(v) for v in sample.spacing)
    return np.asarray(sample.sigma, np.float64), np.asarray(sample.source, np.float64), spacing  # type: ignore[return-value]
