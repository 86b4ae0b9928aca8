"""The accuracy-time front: the run-to-run spread of a timing, the spread-aware front, the default predictor's points.

A point ``(rel_l2, seconds)`` is on the front when no other point is at least as accurate and at least as fast
within the measured spread of the two timings (:func:`front_members`); ``eval_sr.json: front`` lists the members of
each split and ``eval_sr.json: default`` the default predictor's points (:func:`default_points`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fieldlab.errors import InputError
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


def split_points(out: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The points of each split's chart in an ``eval_sr.json`` dict: ``{split: {name: point}}``.

    The learned points are the summaries of :data:`LEARNED` present in ``out`` (``seconds`` is their
    ``seconds_per_sample``); the classical ones every ``baselines.<name>.<split>`` (as stored). A split without any
    point is left out.

    Raises
    ------
    InputError
        A point present in ``out`` without a number for ``rel_l2`` or its seconds; the message names the point.

    Examples
    --------
    >>> out = {"base": {"rel_l2": 0.02, "seconds_per_sample": 0.4},
    ...        "baselines": {"fem_4mm": {"base": {"rel_l2": 0.03, "seconds": 0.05}}}}
    >>> {k: sorted(v) for k, v in split_points(out).items()}
    {'base': ['base', 'fem_4mm']}
    >>> split_points({"x2": {"rel_l2": 0.03}})
    Traceback (most recent call last):
    ...
    fieldlab.errors.InputError: eval_sr: x2 has no number for seconds_per_sample: expected rel_l2 and seconds_per_sample
    """
    points: dict[str, dict[str, dict[str, Any]]] = {}
    for split, learned in LEARNED.items():
        found: dict[str, dict[str, Any]] = {}
        for k in (k for k in learned if k in out):
            _require(out[k], k, ("rel_l2", "seconds_per_sample"))
            found[k] = {"rel_l2": out[k]["rel_l2"], "seconds": out[k]["seconds_per_sample"],
                        "seconds_spread": out[k].get("seconds_spread", 0.0)}  # fmt: skip
        for name, b in out.get("baselines", {}).items():
            if split in b:
                found[name] = _require(b[split], f"baselines.{name}.{split}", ("rel_l2", "seconds"))
        if found:
            points[split] = found
    return points


def _require(point: Any, where: str, keys: tuple[str, ...]) -> Any:
    """``point`` itself when it holds a real number under each of ``keys``; otherwise an error naming ``where``."""
    for key in keys:
        value = point.get(key) if isinstance(point, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"eval_sr: {where} has no number for {key}: expected {' and '.join(keys)}")
    return point


def split_fronts(out: dict[str, Any]) -> dict[str, list[str]]:
    """``eval_sr.json: front``: per split, the names (summary keys and ``baselines`` keys) of the points
    (:func:`split_points`) that no other point matches within the measured spread of its seconds
    (:func:`~fieldlab.potential.evaluation.front.front_members`).

    Examples
    --------
    >>> out = {"base": {"rel_l2": 0.02, "seconds_per_sample": 0.4},
    ...        "baselines": {"cg_gmg_k2": {"base": {"rel_l2": 0.003, "seconds": 0.3, "seconds_spread": 0.1}}}}
    >>> split_fronts(out)
    {'base': ['cg_gmg_k2']}
    """
    return {split: front_members(points) for split, points in split_points(out).items()}


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


def clearly_dominates(q: Mapping[str, float], p: Mapping[str, float]) -> bool:
    """Whether point ``q`` is faster than ``p`` beyond the larger spread of the two and more accurate:
    ``t_q (1 + max(s_p, s_q)) < t_p`` and ``e_q < e_p`` (a tie within the spread is no verdict).

    Examples
    --------
    >>> clearly_dominates({"rel_l2": 0.001, "seconds": 0.3}, {"rel_l2": 0.004, "seconds": 0.5, "seconds_spread": 0.2})
    True
    >>> clearly_dominates({"rel_l2": 0.001, "seconds": 0.45}, {"rel_l2": 0.004, "seconds": 0.5, "seconds_spread": 0.2})
    False
    """
    s = max(float(p.get("seconds_spread", 0.0)), float(q.get("seconds_spread", 0.0)))
    return q["seconds"] * (1 + s) < p["seconds"] and q["rel_l2"] < p["rel_l2"]


def replaced_default(
    out: dict[str, Any], split: str, learned: str, name: str, routes: Callable[[str], bool]
) -> dict[str, Any]:
    """The default predictor of ``split`` given the learned summary ``learned`` (called ``name``): that predictor
    unless a classical point that ``routes`` accepts (one ``fieldlab predict`` can run) clearly dominates it
    (:func:`clearly_dominates`), then the fastest such point. Either way ``verdict`` says which and why, and
    ``dominated_by`` lists every classical point that clearly dominates the learned one.

    Examples
    --------
    >>> out = {"x2_subgrid": {"rel_l2": 0.004, "rel_l2_max": 0.006, "seconds_per_sample": 0.25},
    ...        "baselines": {"cg_fmg_k0": {"x2": {"rel_l2": 0.002, "rel_l2_max": 0.003, "seconds": 0.4}}}}
    >>> replaced_default(out, "x2", "x2_subgrid", "subgrid_unet", lambda n: True)["name"]
    'subgrid_unet'
    >>> out["baselines"]["cg_fmg_k0"]["x2"]["seconds"] = 0.2
    >>> d = replaced_default(out, "x2", "x2_subgrid", "subgrid_unet", lambda n: True)
    >>> d["name"], d["from"], d["replaces"]
    ('cg_fmg_k0', 'baselines', 'subgrid_unet')
    """
    points = split_points(out)[split]
    mine = points[learned]
    beaters = sorted(
        (n for n in out.get("baselines", {}) if n in points and clearly_dominates(points[n], mine)),
        key=lambda n: (points[n]["seconds"], n),
    )
    runnable = [n for n in beaters if routes(n)]
    s = out[learned]
    here = f"{name} ({s['rel_l2']:.3g} rel L2 in {s['seconds_per_sample']:.3g} s)"
    if not runnable:
        verdict = f"{here} is the default: no classical route is both faster beyond the spread and more accurate" + (
            f" (dominated by {', '.join(beaters)}, none a route fieldlab predict runs)" if beaters else ""
        )
        return {"name": name, "rel_l2": s["rel_l2"], "rel_l2_max": s["rel_l2_max"],
                "seconds_per_sample": s["seconds_per_sample"], "from": learned, "dominated_by": beaters,
                "verdict": verdict}  # fmt: skip
    best = runnable[0]
    b = out["baselines"][best][split]
    verdict = (f"{here} is dominated by the classical route {best} ({b['rel_l2']:.3g} in {b['seconds']:.3g} s): "
               f"the default is {best}, and fieldlab predict runs it")  # fmt: skip
    return {"name": best, "rel_l2": b["rel_l2"], "rel_l2_max": b.get("rel_l2_max", b["rel_l2"]),
            "seconds_per_sample": b["seconds"], "from": "baselines", "replaces": name, "dominated_by": beaters,
            "verdict": verdict}  # fmt: skip
