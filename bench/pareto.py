"""Error against time per sample: trained operators beside the classical front, at base and zero-shot at 2x, as JSON.

On the test limbs of ``data.root`` (one run, same masks): the FEM on coarser grids of physical spacing
``eval.baseline_spacings_m`` (and at 2x the base grid) evaluated on the target grid, and every checkpoint given
with ``--checkpoint LABEL=PATH`` (its seconds include its prior; at 2x also through its training grid,
``predict_restricted``). With ``eval.refine_sweeps > 0`` each checkpoint also gives its hybrid point (the operator,
then that many symmetric Gauss-Seidel sweeps of the sample's own FEM system; at 2x through the training grid) and
the classical twin of its prior (``baselines.coarse_<N>mm_sgs<k>``: the coarse solve, then sweeps), beside the
rivals of the solver used well (``baselines.cg_*``: multigrid-CG stopped early; ``baselines.twogrid_<N>mm[_warm]_v<c>``:
a true two-grid cycle). A point is on the Pareto front (``on_front``) when no other point is at least as accurate and
at least as fast (and better in one); it is a clear member (``front_member``,
:func:`fieldlab.potential.evaluation.front.front_members`) when no other point is at least as good on both axes once the
measured run-to-run spread of the seconds is allowed for. Prints JSON and draws the scatter with the front::

    python bench/pareto.py --checkpoint fno/coarse_fem=experiments/fno/checkpoints/best.pt \\
        --checkpoint unet/coarse_fem=experiments/unet/checkpoints/best.pt --figure docs/figures/pareto.png

Run it alone on the machine: the seconds are wall time. The README's figure of the published run's front is
``plots/eval_sr/front.png``, written by the eval_sr stage from that run's own numbers
(:mod:`fieldlab.potential.evaluation.front_plot`); this benchmark sets several checkpoints side by side.
"""

from __future__ import annotations

import os

# as stages/eval_sr.py: idle OpenMP workers must not spin while the solver's sweeps run (set before torch loads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import re
from pathlib import Path

from fieldlab.config import PriorConfig, load_config
from fieldlab.potential.data.loader import PotentialDataset, dataset_options, split_files
from fieldlab.potential.evaluation.front import front_members
from fieldlab.potential.evaluation.rivals import split_front
from fieldlab.potential.evaluation.zero_shot import evaluate_sr
from fieldlab.potential.models.scaling import FieldScaler

KEYS = ("base", "x2")
#: marker and colour of each kind of point: the FEM run coarser, a coarse solve (the prior's twin: + fine sweeps; the
#: sub-grid corrector's start), the operator alone, the hybrid (operator + the same sweeps), multigrid-CG stopped
#: early, the two-grid cycle and the learned sub-grid corrector
STYLE = {
    "fem": ("s", "tab:gray"),
    "coarse": ("D", "tab:blue"),
    "cycle": ("P", "tab:cyan"),
    "model": ("o", "tab:red"),
    "hybrid": ("*", "tab:green"),
    "cg": ("^", "tab:purple"),
    "subgrid": ("X", "tab:orange"),
}


def pareto(points: list[dict]) -> list[dict]:
    """Mark ``on_front`` on each point (no other point is <= in both error and time and < in one) and
    ``front_member`` (:func:`~fieldlab.potential.evaluation.front.front_members`: no other point as good on both axes
    within the larger ``seconds_spread`` of the two; a point without one has none)."""
    members = set(front_members({str(i): p for i, p in enumerate(points)}))
    for i, p in enumerate(points):
        p["front_member"] = str(i) in members
        p["on_front"] = not any(
            q is not p
            and q["rel_l2"] <= p["rel_l2"]
            and q["seconds"] <= p["seconds"]
            and (q["rel_l2"] < p["rel_l2"] or q["seconds"] < p["seconds"])
            for q in points
        )
    return points


def front_points(cfg, checkpoint: Path) -> dict[str, list[dict]]:
    """The classical front of both splits, scored on the masks of ``checkpoint``'s loss settings."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    scaler = FieldScaler.from_dict(ckpt["transforms"])
    no_prior = PriorConfig(kind="none")  # only the masks are needed
    kw = {**dataset_options(cfg, scaler, ckpt["reference_spacing"], no_prior), "cache": False}
    out: dict[str, list[dict]] = {}
    for key, split in zip(KEYS, cfg.eval.splits, strict=True):
        ds = PotentialDataset(split_files(cfg.data.root, split), **kw)
        out[key] = [point(n, "fem", v) for n, v in split_front(cfg, ds, key).items()]
    return out


def near(p: dict, q: dict) -> bool:
    """Whether two points are within a label's reach on the log-log scatter."""
    return abs(math.log(p["seconds"] / q["seconds"])) < 0.25 and abs(math.log(p["rel_l2"] / q["rel_l2"])) < 0.5


def point(name: str, kind: str, summary: dict) -> dict:
    """A point of the chart from an ``eval_sr`` summary (``seconds_per_sample``) or baseline (``seconds``), with its
    ``seconds_spread`` where it was measured."""
    seconds = summary["seconds_per_sample"] if "seconds_per_sample" in summary else summary["seconds"]
    out = {"name": name, "kind": kind, "rel_l2": summary["rel_l2"], "seconds": seconds}
    if "seconds_spread" in summary:
        out["seconds_spread"] = summary["seconds_spread"]
    return out


def evaluation_points(label: str, ev: dict) -> dict[str, list[dict]]:
    """The points one checkpoint's evaluation gives each chart: the operator (at 2x natively and through its
    training grid), the hybrid (operator + sweeps) and the two-grid twins of its prior (``baselines``)."""
    sweeps = ev.get("refine_sweeps", 0)
    out: dict[str, list[dict]] = {key: [point(label, "model", ev[key])] for key in KEYS}
    out["x2"].append(point(f"{label} (restricted)", "model", ev["x2_restricted"]))
    for key, tag, suffix in (("base", "base_refined", ""), ("x2", "x2_restricted_refined", " (restricted)")):
        if tag in ev:
            out[key].append(point(f"{label} +{sweeps} SGS{suffix}", "hybrid", ev[tag]))
    if "x2_subgrid" in ev:
        out["x2"].append(point("subgrid corrector", "subgrid", ev["x2_subgrid"]))
    for name, twin in ev.get("baselines", {}).items():
        kind = point_kind(name)
        for key in KEYS:
            if key in twin:
                out[key].append(point(name, kind, twin[key]))
    return out


def point_kind(name: str) -> str:
    """The kind of a baseline by its name: multigrid-CG stopped early, the two-grid cycle, or a coarse solve (the
    prior's twin with its sweeps, the sub-grid corrector's start).

    Examples
    --------
    >>> point_kind("cg_gmg_r2mm_k3"), point_kind("twogrid_4mm_warm_v2"), point_kind("coarse_4mm_sgs32")
    ('cg', 'cycle', 'coarse')
    """
    if name.startswith("cg_"):
        return "cg"
    return "cycle" if re.fullmatch(r"twogrid_.+_v\d+", name) else "coarse"


def short_label(name: str) -> str:
    """The label of a point on the figure: prior kinds, the sweeps and the restricted path abbreviated.

    Examples
    --------
    >>> short_label("FNO coarse_fem +32 SGS (restricted)"), short_label("coarse_4mm_sgs64")
    ('FNO cf+SGS (r)', 'coarse 4mm+64')
    >>> short_label("twogrid_4mm_warm_v2"), short_label("twogrid_4mm_v8"), short_label("coarse_4mm_sgs32")
    ('TG 4mm w2', 'TG 4mm 8', 'coarse 4mm+32')
    """
    name = re.sub(r" \+\d+ SGS", "+SGS", name.replace(" (restricted)", " (r)"))
    name = re.sub(r"^twogrid_(.+)_sgs(\d+)$", r"2grid \1+\2", name)
    name = re.sub(r"^coarse_(.+)_sgs(\d+)$", r"coarse \1+\2", name)
    name = re.sub(r"^twogrid_(.+?)(_warm)?_v(\d+)$", lambda m: f"TG {m[1]} {'w' if m[2] else ''}{m[3]}", name)
    name = re.sub(r"^free_space_sgs(\d+)$", r"fs+\1", name)
    return name.replace("coarse_fem", "cf").replace("free_space", "fs")


def draw(result: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.0), constrained_layout=True)
    for ax, key in zip(axes, KEYS, strict=True):
        pts = result[key]
        front = sorted((p for p in pts if p["on_front"]), key=lambda p: p["seconds"])
        ax.step([p["seconds"] for p in front], [p["rel_l2"] for p in front], where="post", color="0.6", zorder=1)
        # of two points close on the plot, the lower one takes its label under it: the labels do not overlap
        below = {id(p) for p in pts for q in pts if q is not p and q["rel_l2"] > p["rel_l2"] and near(p, q)}
        for p in pts:
            marker, color = STYLE[p["kind"]]
            ax.scatter(
                p["seconds"],
                p["rel_l2"],
                marker=marker,
                s=36,
                zorder=2,
                color=color,
                edgecolor="k" if p.get("front_member", p["on_front"]) else "0.6" if p["on_front"] else "none",
            )
            offset = (4, -9) if id(p) in below else (4, 3)
            label = short_label(p["name"])
            ax.annotate(label, (p["seconds"], p["rel_l2"]), fontsize=7, xytext=offset, textcoords="offset points")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="seconds per sample (2 CPU cores)",
            ylabel="relative L2 (loss mask)",
            title={"base": "base grid 96x48x48", "x2": "2x grid 192x96x96 (zero shot)"}[key],
        )
        ticks = matplotlib.ticker
        ax.xaxis.set_major_locator(ticks.FixedLocator([0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10]))
        ax.xaxis.set_major_formatter(ticks.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(ticks.NullFormatter())  # labelled ticks only: no overlapping labels
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        "squares: FEM on coarser grids; diamonds: coarse FEM + k SGS sweeps; plus: two-grid cycles (TG, w: warm);"
        " triangles: multigrid-CG stopped after k iterations; circles: operators; stars: hybrid (operator + SGS"
        " sweeps)\noutlined black: clear Pareto front (beyond the timing spread), grey: on the front within the"
        " spread of another point; (r): 2x through the training grid;"
        " cf: coarse_fem prior, fs: free_space prior",
        fontsize=9,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=PATH")
    parser.add_argument("--replot", default=None, metavar="JSON", help="redraw --figure from a saved result")
    parser.add_argument("--figure", default=None, help="PNG of the two scatters")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.replot:
        draw(json.loads(Path(args.replot).read_text()), Path(args.figure))
        return
    if not args.checkpoint:
        parser.error("--checkpoint LABEL=PATH is required (at least one)")
    cfg = load_config(args.params, args.overrides)
    named = [tuple(c.split("=", 1)) for c in args.checkpoint]
    result = front_points(cfg, Path(named[0][1]))
    for label, path in named:
        for key, points in evaluation_points(label, evaluate_sr(cfg, path, None, with_front=False)).items():
            known = {p["name"] for p in result[key]}
            result[key] += [p for p in points if p["name"] not in known]  # a prior's two-grid twins once
    for key in KEYS:
        pareto(result[key])
    if args.figure:
        draw(result, Path(args.figure))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
