"""The accuracy-time front of one eval_sr run as DVC plot files: a CSV per split and a two-panel figure.

Every point of a split's chart (:func:`~fieldlab.potential.evaluation.front.split_points`: the learned summaries
and the classical baselines) becomes one row ``name, kind, rel_l2, seconds, on_front`` of
``front_<split>.csv``, in order of increasing seconds; ``on_front`` is membership in ``eval_sr.json: front``.
``front.png`` draws the same rows, error against seconds on log-log axes, one panel per split. ``dvc.yaml``'s
top-level ``plots`` renders the CSVs (``dvc plots show``) and overlays two runs' fronts (``dvc plots diff``).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fieldlab.core.io import atomic_open
from fieldlab.errors import InputError
from fieldlab.potential.evaluation.front import LEARNED, split_points

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The columns of ``front_<split>.csv``.
COLUMNS = ("name", "kind", "rel_l2", "seconds", "on_front")
#: Panel titles of ``front.png``.
TITLES = {"base": "base grid", "x2": "2x grid (zero shot)"}
#: Marker and colour of each kind of point.
STYLE = {"learned": ("o", "tab:red"), "classical": ("s", "tab:gray")}


def front_rows(out: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The rows of each split's ``front_<split>.csv`` from an ``eval_sr.json`` dict, sorted by seconds (then name).

    Raises
    ------
    InputError
        A point without its numbers (:func:`~fieldlab.potential.evaluation.front.split_points`), a split with
        points but no ``front`` entry, or a front member that is not a point of its split; each message names it.

    Examples
    --------
    >>> out = {"base": {"rel_l2": 0.02, "seconds_per_sample": 0.4},
    ...        "baselines": {"fem_4mm": {"base": {"rel_l2": 0.03, "seconds": 0.05}}},
    ...        "front": {"base": ["fem_4mm", "base"]}}
    >>> [(r["name"], r["kind"], r["on_front"]) for r in front_rows(out)["base"]]
    [('fem_4mm', 'classical', True), ('base', 'learned', True)]
    """
    fronts = out.get("front")
    rows: dict[str, list[dict[str, Any]]] = {}
    for split, points in split_points(dict(out)).items():
        if not isinstance(fronts, Mapping) or not isinstance(fronts.get(split), list):
            raise InputError(f"eval_sr: front.{split} is missing: expected the list of the split's front members")
        members = set(fronts[split])
        stray = sorted(members - set(points))
        if stray:
            raise InputError(f"eval_sr: front.{split} names {', '.join(stray)}: expected points of split {split}")
        rows[split] = sorted(
            (
                {
                    "name": name,
                    "kind": "learned" if name in LEARNED[split] else "classical",
                    "rel_l2": float(p["rel_l2"]),
                    "seconds": float(p["seconds"]),
                    "on_front": name in members,
                }
                for name, p in points.items()
            ),
            key=lambda r: (r["seconds"], r["name"]),
        )
    return rows


def write_front_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    """One split's rows as CSV (:data:`COLUMNS`; numbers as Python writes them, exact on reading back), atomically."""
    with atomic_open(path, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r["name"], r["kind"], repr(r["rel_l2"]), repr(r["seconds"]), str(r["on_front"]).lower()])


def front_figure(rows: Mapping[str, list[dict[str, Any]]], title: str = "") -> Figure:
    """Relative L2 against seconds per sample, log-log, one panel per split: learned points as circles, classical
    ones as squares, the front members outlined, joined by a step line and labelled (the learned points too).

    Returns the matplotlib ``Figure``.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, len(rows), figsize=(6.5 * len(rows), 5.2), squeeze=False, constrained_layout=True)
    for ax, (split, pts) in zip(axes[0], rows.items(), strict=True):
        front = [p for p in pts if p["on_front"]]  # rows are sorted by seconds
        ax.step([p["seconds"] for p in front], [p["rel_l2"] for p in front], where="post", color="0.6", zorder=1)
        for kind, (marker, color) in STYLE.items():
            for on in (False, True):
                sel = [p for p in pts if p["kind"] == kind and p["on_front"] == on]
                label = f"{kind}{', on the front' if on else ''}" if sel else None
                ax.scatter(
                    [p["seconds"] for p in sel],
                    [p["rel_l2"] for p in sel],
                    marker=marker,
                    s=48 if on else 22,
                    color=color,
                    edgecolor="k" if on else "none",
                    alpha=1.0 if on or kind == "learned" else 0.55,
                    zorder=3 if on else 2,
                    label=label,
                )
        for p in pts:
            if p["on_front"] or p["kind"] == "learned":
                ax.annotate(
                    p["name"], (p["seconds"], p["rel_l2"]), fontsize=7, xytext=(5, 3), textcoords="offset points"
                )
        ax.set(xscale="log", yscale="log", xlabel="seconds per sample", ylabel="relative L2 (loss mask)")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))  # 0.1 0.2 0.5 1 2 5: seconds read off
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(TITLES.get(split, split))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def write_front_plots(out: Mapping[str, Any], directory: str | Path) -> list[Path]:
    """Write ``front_<split>.csv`` for each split and ``front.png`` into ``directory``; return the paths written.

    ``out`` is the ``eval_sr.json`` dict (:func:`front_rows`). Every file is written atomically.
    """
    from fieldlab.potential.figures import save_figure

    directory = Path(directory)
    rows = front_rows(out)
    paths = []
    for split, split_rows in rows.items():
        path = directory / f"front_{split}.csv"
        write_front_csv(split_rows, path)
        paths.append(path)
    if rows:
        title = "accuracy-time front"
        if {"backbone", "checkpoint_epoch"} <= set(out):
            title += f" of {out['backbone']}, epoch {out['checkpoint_epoch']}"
        save_figure(front_figure(rows, title), str(directory / "front.png"))
        paths.append(directory / "front.png")
    return paths
