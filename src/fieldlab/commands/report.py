"""``fieldlab report``: the results as Markdown tables, read from the metrics files of the last run.

Two renderings of the same files: :func:`render_headline` (the default predictor at base and 2x beside its
strongest classical rivals on the front, for the README) and :func:`render` (every table, for docs/results.md).
Both blocks are this command's output on the committed ``metrics/`` (a test checks they agree), so the published
numbers and ``dvc metrics show`` are the same numbers.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fieldlab.errors import InputError

BEGIN, END = "<!-- fieldlab report: begin -->", "<!-- fieldlab report: end -->"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", default="metrics", help="folder of the metrics JSON files (default: metrics)")
    parser.add_argument("--readme", default=None, help="also replace the results block of this file by the headline")
    parser.add_argument("--docs", default=None, help="also replace the results block of this file by every table")


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not valid JSON (expected the metrics written by the pipeline)") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}")
    return data


def _get(data: dict[str, Any] | None, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def fmt(value: Any, spec: str = ".4g") -> str:
    """A table cell: numbers with ``spec``, missing or non-finite values as an en dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return format(value, spec)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def operator_section(m: Path) -> str | None:
    ev = _read(m / "eval_sr.json")
    trains = {b: _read(m / f"train_{b}.json") for b in ("fno", "unet")}
    if ev is None and not any(trains.values()):
        return None
    rows = []
    for backbone, tr in trains.items():
        evaluated = ev is not None and ev.get("backbone") == backbone
        e: Callable[[str], Any] = (lambda k: _get(ev, k)) if evaluated else (lambda k: None)
        if tr is None and not evaluated:
            continue
        rows.append(
            [
                backbone,
                fmt(_get(tr, "params"), ",d") if isinstance(_get(tr, "params"), int) else fmt(_get(tr, "params")),
                fmt(_get(tr, "best_val_rel_l2")),
                fmt(e("base.rel_l2")),
                fmt(e("x2.rel_l2")),
                fmt(e("x2_restricted.rel_l2")),
                fmt(e("ratio_x2_base"), ".3f"),
                fmt(e("base.prior_rel_l2")),
                fmt(e("base.seconds_per_sample"), ".3f"),
                fmt(e("x2.seconds_per_sample"), ".3f"),
                fmt(_get(tr, "train_time_s"), ".0f"),
            ]
        )
    header = [
        "backbone",
        "params",
        "best val rel L2",
        "base rel L2",
        "2x rel L2 (zero shot)",
        "2x restricted",
        "2x / base",
        "prior alone (base)",
        "s / sample base",
        "s / sample 2x",
        "train s",
    ]
    text = (
        "**Operator** (`metrics/train_<backbone>.json`, `metrics/eval_sr.json`; test split, rel L2 over the loss mask)"
    )
    out = [text, "", table(header, rows)]
    default = _get(ev, "default")
    if isinstance(default, dict) and default:
        drows = [
            [
                key,
                str(_get(d, "name")),
                fmt(_get(d, "rel_l2")),
                fmt(_get(d, "rel_l2_max")),
                fmt(_get(d, "seconds_per_sample"), ".3f"),
                f"`{_get(d, 'from')}`",
            ]
            for key, d in default.items()
        ]
        out += [
            "",
            "**Default predictor** (what `fieldlab predict` runs; `metrics/eval_sr.json: default`)",
            "",
            table(["grid", "predictor", "rel L2", "max", "s / sample", "summary"], drows),
        ]
    if _get(ev, "base_refined") is not None:
        sweeps = fmt(_get(ev, "refine_sweeps"), "d")
        hrow = [
            f"{_get(ev, 'backbone')} + {sweeps} SGS",
            fmt(_get(ev, "base_refined.rel_l2")),
            fmt(_get(ev, "base_refined.seconds_per_sample"), ".3f"),
            fmt(_get(ev, "x2_restricted_refined.rel_l2")),
            fmt(_get(ev, "x2_restricted_refined.seconds_per_sample"), ".3f"),
            fmt(_get(ev, "ood_refined.rel_l2")),
        ]
        out += [
            "",
            f"**Hybrid** (the operator, then {sweeps} symmetric Gauss-Seidel sweeps of each sample's own FEM system; "
            "2x through the training grid; `metrics/eval_sr.json: *_refined`)",
            "",
            table(["predictor", "base rel L2", "base s", "2x rel L2", "2x s", "ood rel L2"], [hrow]),
        ]
    if _get(ev, "x2_subgrid") is not None:
        sub = _read(m / "train_subgrid.json")
        srow = [
            "subgrid_unet",
            fmt(_get(sub, "train_samples"), "d") if isinstance(_get(sub, "train_samples"), int) else "–",
            fmt(_get(sub, "best_val_rel_l2")),
            fmt(_get(ev, "x2_subgrid.start_rel_l2")),
            fmt(_get(ev, "x2_subgrid.rel_l2")),
            fmt(_get(ev, "x2_subgrid.rel_l2_max")),
            fmt(_get(ev, "x2_subgrid.seconds_per_sample"), ".3f"),
            fmt(_get(ev, "ood_x2_subgrid.rel_l2")),
            fmt(_get(ev, "ratio_ood_x2_subgrid"), ".2f"),
            f"{fmt(_get(sub, 'epochs_run'))} ({fmt(_get(sub, 'best_epoch'))})",
            f"{fmt(_get(ev, 'x2_subgrid.estimate.spearman'), '.2f')} / "
            f"{fmt(_get(ev, 'ood_x2_subgrid.estimate.spearman'), '.2f')}",
            fmt(_get(ev, "x2_subgrid.estimate.seconds"), ".2g"),
        ]
        out += [
            "",
            "**Sub-grid corrector at 2x** (the sample restricted to the training grid and solved, plus a UNet over the "
            "1 mm arrays folded into channels; `metrics/train_subgrid.json`, `metrics/eval_sr.json: x2_subgrid`)",
            "",
            table(
                ["predictor", "fine train limbs", "best val", "its start", "2x rel L2", "max", "s / sample",
                 "ood 2x rel L2", "ood / test", "epochs (best)", "estimate rho test / ood", "estimate s"],
                [srow],
            ),
        ]  # fmt: skip
    baselines = _get(ev, "baselines")
    if isinstance(baselines, dict) and baselines:
        with_ood = any(_get(b, "ood") is not None for b in baselines.values())
        brows = [
            [
                name,
                fmt(_get(b, "base.rel_l2")),
                fmt(_get(b, "base.seconds"), ".3f"),
                fmt(_get(b, "x2.rel_l2")),
                fmt(_get(b, "x2.seconds"), ".3f"),
            ]
            + ([fmt(_get(b, "ood.rel_l2"))] if with_ood else [])
            for name, b in baselines.items()
        ]
        out += ["", "**Classical baselines** (same test limbs and mask, `metrics/eval_sr.json: baselines`)", ""]
        header = ["predictor", "base rel L2", "base s", "2x rel L2", "2x s"] + (["ood rel L2"] if with_ood else [])
        out.append(table(header, brows))
    front = _get(ev, "front")
    if isinstance(front, dict) and front:
        grids = {"base": "base", "x2": "2x"}
        lines = [f"- {grids.get(k, k)}: " + ", ".join(f"`{n}`" for n in names) for k, names in front.items()]
        out += [
            "",
            "**On the front** (`metrics/eval_sr.json: front`: the points no other point matches in error and seconds "
            "once the measured run-to-run spread of the seconds is allowed for; fastest first)",
            "",
            *lines,
        ]
    ood = _get(ev, "ood")
    if isinstance(ood, dict):
        groups = {"all": ood, **(ood["shifts"] if isinstance(ood.get("shifts"), dict) else {})}
        orows = [
            [k, fmt(_get(g, "n"), "d"), fmt(_get(g, "rel_l2")), fmt(_get(g, "rel_l2_max"))] for k, g in groups.items()
        ]
        est = _get(ev, "estimate_base_ood.spearman")
        note = "" if est is None else f"; error estimate over test + ood: Spearman {fmt(est, '.3f')}"
        ratio = fmt(_get(ev, "ratio_ood_base"), ".2f")
        out += ["", f"**Out of distribution** (`metrics/eval_sr.json: ood`, base grid; ood / base {ratio}{note})", ""]
        out.append(table(["limbs", "n", "rel L2", "max"], orows))
    out += resolutions_table(ev, _read(m / "train_spacings.json"))
    solver = [_get(ev, "solver_seconds.base"), _get(ev, "solver_seconds.x2")]
    if any(s is not None for s in solver):
        s0, s1 = fmt(solver[0], ".2f"), fmt(solver[1], ".2f")
        out += ["", f"Full FEM solve per test sample (corpus manifest): {s0} s at base, {s1} s at 2x."]
    return "\n".join(out)


#: The predictors of ``eval_sr.json: resolutions``, in table order.
RESOLUTION_PREDICTORS = ("operator", "operator_seed", "interpolated", "hybrid", "prior_sweeps", "fem_base")


def resolutions_table(ev: dict[str, Any] | None, spacings: dict[str, Any] | None) -> list[str]:
    """The ``resolutions`` block of ``eval_sr.json``: rel L2 (seconds) per resolution and predictor, the front, and
    the targets of each unseen resolution; nothing when the block is absent. ``spacings`` is
    ``train_spacings.json`` (whether the operator's conditioning was on)."""
    res = _get(ev, "resolutions")
    if not isinstance(res, dict):
        return []
    cond = {True: "on", False: "off"}.get(_get(spacings, "conditioning"), "?")
    names = [n for n in res if n != "targets"]
    rows = []
    for name in names:
        b = res[name]
        mm = "x".join(f"{v * 1e3:.3g}" for v in b["spacing_m"])
        cells = [
            "–"
            if _get(b, p) is None
            else f"{fmt(_get(b, f'{p}.rel_l2'))} ({fmt(_get(b, f'{p}.seconds_per_sample'), '.2f')})"
            for p in RESOLUTION_PREDICTORS
        ]
        front = ", ".join(b.get("front", []))
        rows.append([name, mm, "yes" if b["seen"] else "**no**", *cells, front])
    header = ["grid", "dx x dy x dz mm", "trained on", *RESOLUTION_PREDICTORS, "on the front"]
    out = [
        "",
        "**Across resolutions** (`metrics/eval_sr.json: resolutions`; rel L2 over the loss mask (seconds per sample) "
        f"on the first test limbs of each grid; `operator`: trained on 2 mm and 1 mm, conditioning {cond}; "
        "`operator_seed`: 2 mm only)",
        "",
        table(header, rows),
    ]
    targets = res.get("targets", {})
    for name, t in targets.items():
        gain = _get(t, "gain_interpolated")
        out += [
            "",
            f"- {name} (unseen): zero shot / base {fmt(_get(t, 'ratio_base'), '.2f')} (target <= 1.2: "
            f"{'met' if _get(t, 'ratio_base_met') else 'missed'})"
            + ("" if gain is None else f"; {'below' if gain >= 0 else 'above'} the interpolation baseline by "
               f"{abs(100 * gain):.0f} % (target: below by >= 20 %: "
               f"{'met' if _get(t, 'gain_interpolated_met') else 'missed'})")
            + ("" if _get(t, "hybrid_on_front") is None else
               f"; hybrid on the front: {'yes' if _get(t, 'hybrid_on_front') else 'no'}"),
        ]  # fmt: skip
    return out


def corpus_section(m: Path) -> str | None:
    p = _read(m / "prepare.json")
    if p is None:
        return None
    keys = [
        ("samples", "samples", "d"),
        ("samples_2x", "2x samples", "d"),
        ("samples_ood", "ood samples", "d"),
        ("solve_seconds_mean", "solve s (base)", ".2f"),
        ("solve_seconds_2x_mean", "solve s (2x)", ".2f"),
        ("residual_max", "max residual", ".1e"),
        ("agreement_1x_2x_mean", "1x vs 2x mean", ".4f"),
        ("agreement_1x_2x_max", "1x vs 2x max", ".4f"),
    ]
    present = [k for k in keys if k[0] in p]
    row = [fmt(p[k], spec) if isinstance(p[k], int | float) else fmt(p[k]) for k, _, spec in present]
    return "**Corpus** (`metrics/prepare.json`)\n\n" + table([h for _, h, _ in present], [row])


def inr_section(m: Path) -> str | None:
    r = _read(m / "inr.json")
    if r is None:
        return None
    header = ["field", "model", "frames", "R2", "slope", "MSE", "params", "compression", "time s"]
    row = [
        fmt(r.get("field_name")),
        fmt(r.get("inr_type")),
        fmt(r.get("n_frames")),
        fmt(r.get("final_r2"), ".5g"),
        fmt(r.get("slope"), ".4f"),
        fmt(r.get("final_mse")),
        fmt(r.get("total_params"), ",d") if isinstance(r.get("total_params"), int) else fmt(r.get("total_params")),
        fmt(r.get("compression_ratio"), ".3g"),
        fmt(r.get("training_time"), ".3g"),
    ]
    return "**INR fit** (`metrics/inr.json`)\n\n" + table(header, [row])


def render(metrics_dir: str | Path) -> str:
    """Markdown of every section whose metrics file exists; an error when none does."""
    m = Path(metrics_dir)
    sections = [s for s in (corpus_section(m), operator_section(m), inr_section(m)) if s]
    if not sections:
        raise InputError(f"{m}: no metrics files (expected prepare.json, train_*.json, eval_sr.json or inr.json)")
    return "\n\n".join(sections) + "\n"


#: How the headline names each grid of ``eval_sr.json: default``.
GRIDS = {"base": "base", "x2": "2x"}


def classical_rivals(ev: dict[str, Any], grid: str, rel_l2: float, seconds: float) -> list[tuple[str, str]]:
    """The strongest classical points on the front of ``grid`` against a predictor of error ``rel_l2`` in ``seconds``.

    Among the classical points (``baselines``) listed in ``front[grid]``: the fastest one at least as accurate (the
    rival at equal error) and the most accurate one at most as slow (the rival at equal time). Returns
    ``(name, role)`` pairs, one per distinct point, roles joined when one point is both; empty when neither exists.

    Examples
    --------
    >>> ev = {"front": {"base": ["fem_4mm", "cg_k2", "cg_k4"]},
    ...       "baselines": {"fem_4mm": {"base": {"rel_l2": 0.03, "seconds": 0.05}},
    ...                     "cg_k2": {"base": {"rel_l2": 0.003, "seconds": 0.2}},
    ...                     "cg_k4": {"base": {"rel_l2": 5e-05, "seconds": 0.25}}}}
    >>> classical_rivals(ev, "base", rel_l2=0.006, seconds=0.5)
    [('cg_k2', 'fastest classical as accurate'), ('cg_k4', 'most accurate classical as fast')]
    >>> classical_rivals(ev, "base", rel_l2=0.01, seconds=0.1)
    [('cg_k2', 'fastest classical as accurate'), ('fem_4mm', 'most accurate classical as fast')]
    """
    baselines = _get(ev, "baselines") or {}
    points = {}
    for name in _get(ev, f"front.{grid}") or []:
        e, t = _get(baselines.get(name), f"{grid}.rel_l2"), _get(baselines.get(name), f"{grid}.seconds")
        if isinstance(e, int | float) and isinstance(t, int | float):
            points[name] = (float(e), float(t))
    as_accurate = [n for n, (e, _) in points.items() if e <= rel_l2]
    as_fast = [n for n, (_, t) in points.items() if t <= seconds]
    roles: dict[str, list[str]] = {}
    if as_accurate:
        roles.setdefault(min(as_accurate, key=lambda n: points[n][1]), []).append("fastest classical as accurate")
    if as_fast:
        roles.setdefault(min(as_fast, key=lambda n: points[n][0]), []).append("most accurate classical as fast")
    return [(name, "; ".join(r)) for name, r in roles.items()]


def render_headline(metrics_dir: str | Path) -> str:
    """Markdown of the headline: the default predictor at each grid beside its strongest classical rivals.

    One row per grid of ``eval_sr.json: default`` (what ``fieldlab predict`` runs) and one per rival of
    :func:`classical_rivals`, with the time relative to the default; then the INR fit of ``inr.json`` in one line
    when that file exists. An error when ``eval_sr.json`` holds no default predictor.
    """
    m = Path(metrics_dir)
    ev = _read(m / "eval_sr.json")
    default = _get(ev, "default")
    if not isinstance(default, dict) or not default:
        raise InputError(f"{m / 'eval_sr.json'}: no default predictor (expected the eval_sr stage's metrics)")
    rows = []
    for grid, d in default.items():
        e, t = _get(d, "rel_l2"), _get(d, "seconds_per_sample")
        front = _get(ev, f"front.{grid}")
        point = _get(d, "name") if _get(d, "from") == "baselines" else _get(d, "from")  # a classical default: its own
        on_front = "–" if not isinstance(front, list) else ("yes" if point in front else "no")
        label = GRIDS.get(grid, grid)
        rows.append([label, f"**{_get(d, 'name')}**", fmt(e), fmt(t, ".3f"), "1.00x", on_front,
                     "the default predictor (`fieldlab predict`)"])  # fmt: skip
        if not isinstance(e, int | float) or not isinstance(t, int | float) or t <= 0:
            continue
        for name, role in classical_rivals(ev, grid, float(e), float(t)):
            b = _get(ev, f"baselines.{name}.{grid}")
            ratio = f"{_get(b, 'seconds') / t:.2f}x"
            rows.append(
                [label, f"`{name}`", fmt(_get(b, "rel_l2")), fmt(_get(b, "seconds"), ".3f"), ratio, "yes", role]
            )
    header = ["grid", "predictor", "rel L2", "s / sample", "time / default", "on the front", "what it is"]
    out = [
        "**The default predictor against the classical front** (`metrics/eval_sr.json: default, front, baselines`; "
        "test limbs, rel L2 over the loss mask, seconds per sample on the run's machine)",
        "",
        table(header, rows),
    ]
    for grid, d in default.items():  # where a learned default is judged against the classical routes
        verdict = _get(d, "verdict")
        if isinstance(verdict, str):
            out += ["", f"**Verdict at {GRIDS.get(grid, grid)}** (`default.{grid}.verdict`): {verdict}."]
    out += resolutions_table(ev, _read(m / "train_spacings.json"))
    inr = _read(m / "inr.json")
    if inr is not None:
        out += [
            "",
            f"**INR fit** (`metrics/inr.json`): `{fmt(inr.get('inr_type'))}` on {fmt(inr.get('field_name'))}, "
            f"R2 {fmt(inr.get('final_r2'), '.5g')} at compression {fmt(inr.get('compression_ratio'), '.3g')} "
            f"in {fmt(inr.get('training_time'), '.3g')} s.",
        ]
    return "\n".join(out) + "\n"


def replace_block(text: str, body: str, where: str) -> str:
    """``text`` with the part between :data:`BEGIN` and :data:`END` replaced by ``body``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise InputError(f"{where}: expected one results block, {BEGIN} ... {END}")
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + "\n" + body + rest[rest.index(END) :]


def run(args: argparse.Namespace) -> int:
    from fieldlab.core.io import atomic_open

    body = render(args.metrics)
    targets = [(args.readme, "--readme", render_headline), (args.docs, "--docs", render)]
    updates = []  # every block rendered and every file checked before any is written
    for where, flag, renderer in targets:
        if where is None:
            continue
        path = Path(where)
        if not path.is_file():
            raise InputError(f"{path}: no such file ({flag})")
        updates.append((path, replace_block(path.read_text(), renderer(args.metrics), str(path))))
    print(body, end="")
    for path, new in updates:
        with atomic_open(path, "w") as fh:
            fh.write(new)
    return 0
