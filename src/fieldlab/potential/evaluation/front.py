"""The accuracy-time front: the run-to-run spread of a timing, the spread-aware front, the default predictor's points.

A point ``(rel_l2, seconds)`` is on the front when no other point is at least as accurate and at least as fast
within the measured spread of the two timings (:func:`front_members`); ``eval_sr.json: front`` lists the members of
each split and ``eval_sr.json: default`` the default predictor's points (:func:`default_points`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fieldlab.potential.prediction.default import predictor_name


def spread(seconds: Sequence[float]) -> float:
    """Run-to-run spread of one point's timed repeats on one sample: ``(max - min) / median`` (0 for one run).

    The full range over the median, not a quantile range: with the few repeats a benchmark affords (3) an
    interquartile range is the range anyway, and the range is the honest width of what was seen.

    Examples
    --------
    >>> spread([1.0, 1.5, 0.5]), spread([2.0])
    (1.0, 0.0)
    """
    s = np.asarray(seconds, dtype=np.float64)
    med = float(np.median(s))
    return float((s.max() - s.min()) / med) if med > 0 else 0.0


def front_members(points: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The names of the points clearly on the Pareto front of error against time, the measured spread allowed for.

    ``points`` maps a name to ``rel_l2``, ``seconds`` and, optionally, ``seconds_spread`` and ``rel_l2_spread``
    (relative run-to-run spreads, :func:`spread`; missing means 0). Point ``q`` *matches* point ``p`` when it is at
    least as good on both axes once the larger spread of the two is allowed:

        t_q <= t_p (1 + max(s_p, s_q))   and   e_q <= e_p (1 + max(r_p, r_q))

    (``t`` seconds, ``e`` rel L2, ``s`` and ``r`` their spreads). ``p`` is a member when no other point matches it.
    With no spread this is "no other point is at least as good on both axes", so two identical points are both left
    out; with spread, a point within the spread of one that is as good or better on the other axis is a tie, not a
    clear member. Every member is on the plain Pareto front (strict dominance is a match), but not every point of
    the plain front is a member. Returned in order of increasing seconds.

    Examples
    --------
    >>> pts = {"fast": {"rel_l2": 0.2, "seconds": 0.1}, "slow": {"rel_l2": 0.001, "seconds": 2.0},
    ...        "mid": {"rel_l2": 0.01, "seconds": 0.5, "seconds_spread": 0.1},
    ...        "near_mid": {"rel_l2": 0.009, "seconds": 0.54, "seconds_spread": 0.1},
    ...        "beaten": {"rel_l2": 0.05, "seconds": 0.6}}
    >>> front_members(pts)  # mid is within 10 % of near_mid's time and less accurate: a tie, not a clear member
    ['fast', 'near_mid', 'slow']
    """

    def matches(q: Mapping[str, float], p: Mapping[str, float]) -> bool:
        s = max(float(p.get("seconds_spread", 0.0)), float(q.get("seconds_spread", 0.0)))
        r = max(float(p.get("rel_l2_spread", 0.0)), float(q.get("rel_l2_spread", 0.0)))
        return q["seconds"] <= p["seconds"] * (1 + s) and q["rel_l2"] <= p["rel_l2"] * (1 + r)

    members = [n for n, p in points.items() if not any(m != n and matches(q, p) for m, q in points.items())]
    return sorted(members, key=lambda n: (points[n]["seconds"], n))


#: The learned predictors on each split's chart (summary keys of eval_sr.json).
LEARNED = {"base": ("base", "base_refined"), "x2": ("x2", "x2_restricted", "x2_restricted_refined", "x2_subgrid")}


def split_fronts(out: dict[str, Any]) -> dict[str, list[str]]:
    """``eval_sr.json: front``: per split, the names (summary keys and ``baselines`` keys) of the points that no
    other point matches within the measured spread of its seconds
    (:func:`~fieldlab.potential.evaluation.front.front_members`).

    Examples
    --------
    >>> out = {"base": {"rel_l2": 0.02, "seconds_per_sample": 0.4},
    ...        "baselines": {"cg_gmg_k2": {"base": {"rel_l2": 0.003, "seconds": 0.3, "seconds_spread": 0.1}}}}
    >>> split_fronts(out)
    {'base': ['cg_gmg_k2']}
    """
    fronts: dict[str, list[str]] = {}
    for split, learned in LEARNED.items():
        points = {
            k: {"rel_l2": out[k]["rel_l2"], "seconds": out[k]["seconds_per_sample"],
                "seconds_spread": out[k].get("seconds_spread", 0.0)}
            for k in learned if k in out
        }  # fmt: skip
        for name, b in out.get("baselines", {}).items():
            if split in b:
                points[name] = b[split]
        if points:
            fronts[split] = front_members(points)
    return fronts


#: Where :func:`default_points` finds the default predictor of each split, with and without the hybrid's sweeps.
DEFAULT_SOURCES = {"base": ("base_refined", "base"), "x2": ("x2_restricted_refined", "x2_restricted")}


def default_points(out: dict[str, Any], backbone: str, prior_kind: str, sweeps: int) -> dict[str, dict[str, Any]]:
    """``eval_sr.json: default``: the default predictor (:mod:`fieldlab.potential.prediction.default`) at base and 2x,
    each its ``name``, ``rel_l2``, ``rel_l2_max``, ``seconds_per_sample`` and the summary it was taken from (``from``).

    Examples
    --------
    >>> out = {"base": {"rel_l2": 0.02, "rel_l2_max": 0.03, "seconds_per_sample": 0.4},
    ...        "base_refined": {"rel_l2": 0.006, "rel_l2_max": 0.009, "seconds_per_sample": 0.8}}
    >>> default_points(out, "fno", "coarse_fem", 32)["base"]["name"]
    'fno_coarse_fem_sgs32'
    """
    points: dict[str, dict[str, Any]] = {}
    for key, (refined, plain) in DEFAULT_SOURCES.items():
        source = refined if sweeps else plain
        if source in out:
            s = out[source]
            points[key] = {
                "name": predictor_name(backbone, prior_kind, sweeps, key == "x2"),
                "rel_l2": s["rel_l2"],
                "rel_l2_max": s["rel_l2_max"],
                "seconds_per_sample": s["seconds_per_sample"],
                "from": source,
            }
    return points
