"""The INR landscape report: per-field tables and the R2-vs-compression picture from every recorded fit.

Reads the exploration journals (``<study>/journal.jsonl``, one per ``--studies`` directory) and the JSON-lines fit
records of the benchmarks (``--trials``: ``explore_vs_optuna.py``, ``inr_sizes.py``, ``siren_steps.py``), and the
JSON those benchmarks printed (``--bench NAME=FILE``). Writes ``r2_vs_compression.png`` (POD's fits as a curve,
the other models as markers) and ``front.json`` into ``--out`` and rewrites
the block between ``<!-- landscape:begin -->`` and ``<!-- landscape:end -->`` of ``--readme`` with:

- per field, the best fit overall (every source, 48 frames, every frame fitted): model, settings, R2, slope,
  training seconds, parameters, compression (values / parameters);
- per field, the best fit inside the target (compression >= 10, <= 120 s of fitting), the R2-compression-time
  front of the fits that saw every frame (also written to ``front.json`` beside the figure: per field every fit on
  it with ``model``, ``r2``, ``compression``, ``seconds``, ``params``, ``heldout`` (whether the same configuration
  was also scored on held-out frames) and that score) and the held-out frame and particle scores;
- per field, the smallest model reaching R2 >= 0.995 among every fit, and the bisection of ``inr_sizes.py``;
- the fits of the studies that fell below R2 0.99, with the move that caused them;
- the rule agent vs TPE vs random table and the SIREN steps table.

Run (seconds)::

    python bench/landscape_report.py --studies docs/landscape/ngp docs/landscape/siren_txy \\
        --trials docs/landscape/*_trials.jsonl --bench optuna=docs/landscape/explore_vs_optuna.json \\
        optuna_cap=docs/landscape/explore_vs_optuna_cap_only.json \\
        sizes=docs/landscape/inr_sizes.json siren=docs/landscape/siren_steps.json --readme docs/landscape/README.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fieldlab.explore.journal import Journal

TARGET_R2 = 0.995
BEGIN, END = "<!-- landscape:begin -->", "<!-- landscape:end -->"
FIELDS = ("Jp", "F", "S", "C")


@dataclass(frozen=True)
class Fit:
    """One fitted configuration from any source."""

    source: str
    inr: dict[str, Any]
    metrics: dict[str, Any]
    note: str = ""  # a study node's strategy and move

    @property
    def r2(self) -> float | None:
        r2 = self.metrics.get("final_r2")
        return float(r2) if isinstance(r2, int | float) and math.isfinite(r2) else None

    @property
    def field(self) -> str:
        return str(self.inr.get("field_name"))


def load_fits(studies: list[Path], trials: list[Path]) -> list[Fit]:
    fits = []
    for study in studies:
        for n in Journal(study / "journal.jsonl").load():
            note = f"{n.strategy}: {n.mutation}" if n.mutation else n.strategy
            note += f" ({n.error.strip().splitlines()[-1][:80]})" if n.error.strip() else ""
            fits.append(Fit(f"{study.name} node {n.id}", n.params, n.metrics, note))
    for path in trials:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                rec = json.loads(line)
                fits.append(Fit(f"{path.stem}:{number} {rec.get('tag', '')}".strip(), rec["inr"], rec["metrics"]))
    return fits


def settings(inr: dict[str, Any]) -> str:
    """The settings that distinguish a config, in a short form."""
    model = inr.get("model", "ngp")
    held = f", every {inr['heldout_every']}th frame held out" if inr.get("heldout_every", 0) else ""
    if model == "pod":
        return f"pod rank {inr['pod']['rank']}{held}"
    if model == "pod_residual":
        residual = {**inr, "model": inr["pod"].get("residual_model", "ngp"), "heldout_every": 0}
        return f"pod rank {inr['pod']['rank']} + {settings(residual)}{held}"
    common = f"lr {inr['lr']:.3g}, batch {inr['batch_size']}, {inr['total_steps']} steps{held}"
    if model == "ngp":
        g = inr["ngp"]
        return (f"ngp L{g['levels']} x F{g['features']} T=2^{g['log2_table_size']} base {g['base_resolution']} "
                f"growth {g['growth']:g}, MLP {g['mlp_width']} x {g['mlp_layers']}, {common}, "
                f"periods t {inr['t_period']:g} xy {inr['xy_period']:g}")  # fmt: skip
    return f"{model} {inr['hidden_features']} x {inr['hidden_layers']}, omega {inr['omega']:g}, {common}"


def rung(g: dict[str, Any]) -> str:
    return f"L{g['levels']} 2^{g['log2_table_size']} F{g['features']} W{g['mlp_width']}"


def row(fit: Fit) -> str:
    m = fit.metrics
    return (f"| {fit.field} | {settings(fit.inr)} | {fit.r2:.5f} | {m['slope']:.4f} | {m['training_time']:.1f} "
            f"| {m['total_params']:,} | {m['compression_ratio']:.2f} | {fit.source} |")  # fmt: skip


HEADER = ("| field | configuration | R2 | slope | train s | parameters | compression | source |\n"
          "|---|---|---|---|---|---|---|---|")  # fmt: skip


def tables(fits: list[Fit], bench: dict[str, Any]) -> str:
    ok = [f for f in at_48(fits) if not heldout(f)]
    out = [f"Generated by `bench/landscape_report.py` from {len(fits)} recorded fits.", ""]
    out += ["**Best fit per field** (highest R2 among every recorded fit at 48 frames)", "", HEADER]
    for field in FIELDS:
        mine = [f for f in ok if f.field == field]
        if mine:
            out.append(row(max(mine, key=lambda f: f.r2)))
    out += ["", f"**Smallest model reaching R2 >= {TARGET_R2}** (fewest parameters among every passing fit)", "",
            HEADER]  # fmt: skip
    for field in FIELDS:
        passing = [f for f in ok if f.field == field and f.r2 >= TARGET_R2]
        if passing:
            out.append(row(min(passing, key=lambda f: (f.metrics["total_params"], -f.r2))))
        else:
            out.append(
                f"| {field} | none of {sum(f.field == field for f in ok)} fits reached {TARGET_R2} | | | | | | |"
            )
    out += rival_tables(fits)
    sizes = bench.get("sizes")
    if sizes:
        out += ["", "**Bisection over the ngp size ladder** (`bench/inr_sizes.py`; steps per field in the table)", ""]
        out += ["| field | rungs fitted (rung: params, compression, R2) | smallest passing |",
                "|---|---|---|"]  # fmt: skip
        for field, res in sizes["fields"].items():
            fitted = "; ".join(f"{rung(r['ngp'])}: {r['total_params']:,}, {r['compression_ratio']:.1f}x, "
                               f"{r['final_r2']:.4f}" for r in res["fits"])  # fmt: skip
            best = res["smallest_passing"]
            got = "none" if best is None else f"{best['total_params']:,} params, {best['compression_ratio']:.1f}x"
            out.append(f"| {field} ({res['steps']} steps) | {fitted} | {got} |")
    bad = [f for f in fits if f.source.split()[1:2] == ["node"] and (f.r2 is None or f.r2 < 0.99)]
    out += [
        "",
        "**Study fits below R2 0.99** (what failed)",
        "",
        "| source | field | move | configuration | R2 |",
        "|---|---|---|---|---|",
    ]
    for f in bad:
        r2 = "failed" if f.r2 is None else f"{f.r2:.4f}"
        out.append(f"| {f.source} | {f.field} | {f.note} | {settings(f.inr)} | {r2} |")
    for name in sorted(k for k in bench if k.startswith("optuna")):  # optuna, optuna_<variant>
        opt = bench[name]
        steps = "steps filling the budget" if opt.get("fill_budget") else "steps capped by the budget"
        what = (f"{opt['field']}, {opt['iterations']} iterations x {opt['seeds']} seeds, {opt['budget_s']:g} s per "
                f"fit, {steps}")  # fmt: skip
        out += ["", f"**Rule agent vs Optuna on real fits** (`bench/explore_vs_optuna.py --objective real`: {what})",
                "", "| method | median best R2 | best R2 per seed | median iterations to R2 0.995 | wall s |",
                "|---|---|---|---|---|"]  # fmt: skip
        for k in ("rule", "tpe", "random"):
            reach = opt["median_iterations_to_r2_0995"][k]
            per_seed = ", ".join(f"{v:.4f}" for v in opt["best_r2_per_seed"][k])
            out.append(f"| {k} | {opt['median_best_r2'][k]:.4f} | {per_seed} | "
                       f"{'not reached' if reach is None else f'{reach:g}'} | {opt['wall_s'][k]:.0f} |")  # fmt: skip
    siren = bench.get("siren")
    if siren:
        out += ["", "**siren_txy on the CPU** (`bench/siren_steps.py`: R2 against steps, each a full fit)", "",
                "| field | settings | steps: R2 | s per step | power law: steps to R2 0.995 (CPU hours) |",
                "|---|---|---|---|---|"]  # fmt: skip
        for field, res in siren["fields"].items():
            s = res["settings"]
            pts = ", ".join(f"{p['steps']}: {p['final_r2']:.4f}" for p in res["points"] if p["final_r2"] is not None)
            law = res["power_law"]
            need = "none: 1 - R2 >= 0.5 at the last point" if law is None else (
                f"{law['steps_to_target']:,.0f} ({law.get('cpu_hours_to_target', 0):.1f} h)")  # fmt: skip
            out.append(f"| {field} | {s['hidden_features']} x {s['hidden_layers']}, omega {s['omega']:g}, lr "
                       f"{s['lr']:g} | {pts} | {res['seconds_per_step']:.3f} | {need} |")  # fmt: skip
    return "\n".join(out)


#: the budget of the issue's target: R2 >= TARGET_R2 at compression >= TARGET_COMPRESSION within TARGET_SECONDS
TARGET_COMPRESSION, TARGET_SECONDS = 10.0, 120.0


def at_48(fits: list[Fit]) -> list[Fit]:
    return [f for f in fits if f.r2 is not None and f.inr.get("n_training_frames") == 48]


def heldout(fit: Fit) -> bool:
    """Whether the fit held frames out (its R2 and compression are then those of the fitted frames)."""
    return bool(fit.inr.get("heldout_every", 0))


def front(fits: list[Fit]) -> list[Fit]:
    """The fits no other fit beats on all of R2 (higher), compression (higher) and training seconds (lower), at
    least as good on each and better on one; sorted by compression."""

    def key(f: Fit) -> tuple[float, float, float]:
        return f.r2, f.metrics["compression_ratio"], -f.metrics["training_time"]

    def dominated(f: Fit) -> bool:
        a = key(f)
        return any(all(x >= y for x, y in zip(key(g), a, strict=True)) and key(g) != a for g in fits)

    return sorted((f for f in fits if not dominated(f)), key=lambda f: f.metrics["compression_ratio"])


def front_json(fits: list[Fit]) -> dict[str, list[dict[str, Any]]]:
    """Per field, every fit on the R2-compression-time front (48 frames, every frame fitted) with what defines it;
    ``heldout`` says whether the same configuration was also fitted with frames held out, and
    ``heldout_frames_r2`` is its score on them (``None`` when it was not)."""
    out = {}
    held = {(f.field, settings({**f.inr, "heldout_every": 0})): f for f in at_48(fits) if heldout(f)}
    for field in FIELDS:
        mine = [f for f in at_48(fits) if f.field == field and not heldout(f)]
        rows = []
        for f in front(mine):
            twin = held.get((field, settings(f.inr)))
            rows.append({"model": f.inr.get("model", "ngp"), "r2": f.r2, "compression": f.metrics["compression_ratio"],
                         "seconds": f.metrics["training_time"], "params": f.metrics["total_params"],
                         "heldout": twin is not None,
                         "heldout_frames_r2": None if twin is None else twin.metrics.get("heldout_frames_r2"),
                         "settings": settings(f.inr), "source": f.source})  # fmt: skip
        out[field] = rows
    return out


def _opt(value: Any, fmt: str = ".5f") -> str:
    return "-" if value is None else format(value, fmt)


def rival_tables(fits: list[Fit]) -> list[str]:
    """POD against the INRs per field: the target, the front, and the held-out scores."""
    ok = at_48(fits)
    out = ["", f"**Target: R2 >= {TARGET_R2} at compression >= {TARGET_COMPRESSION:g} within {TARGET_SECONDS:g} s of "
           "fitting** (every frame fitted; highest R2 among the fits inside the compression and time budget)", "",
           HEADER]  # fmt: skip
    for field in FIELDS:
        inside = [f for f in ok if f.field == field and not heldout(f) and f.metrics["compression_ratio"] >=
                  TARGET_COMPRESSION and f.metrics["training_time"] <= TARGET_SECONDS]  # fmt: skip
        if inside:
            best = max(inside, key=lambda f: f.r2)
            out.append(
                row(best).replace(
                    f"| {best.field} |", f"| {best.field} ({'met' if best.r2 >= TARGET_R2 else 'not met'}) |", 1
                )
            )
        else:
            out.append(f"| {field} (not met) | no fit inside the budget | | | | | | |")
    out += ["", "**The R2-compression-time front per field** (`front.json`; no other fit has R2, compression and "
            "seconds at least as good and one better; 48 frames, every frame fitted; last column: the same "
            "configuration fitted with every 4th frame held out, R2 on those frames)", "",
            "| field | model | configuration | R2 | compression | train s | parameters | held-out frames R2 |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for field, rows in front_json(fits).items():
        for r in rows:
            out.append(f"| {field} | {r['model']} | {r['settings']} | {r['r2']:.5f} | {r['compression']:.2f} | "
                       f"{r['seconds']:.1f} | {r['params']:,} | {_opt(r['heldout_frames_r2'])} |")  # fmt: skip
    held = [f for f in ok if f.metrics.get("heldout_frames_r2") is not None]
    if held:
        out += ["", "**Held-out frames and particles** (every 4th interior frame, and for the coordinate models a "
                "tenth of the particles, never seen by the fit; POD answers frames by a cubic spline of its temporal "
                "coefficients and cannot answer particles)", "",
                "| field | configuration | R2 fitted | compression | held-out frames R2 | held-out particles R2 |",
                "|---|---|---|---|---|---|"]  # fmt: skip
        for f in sorted(
            held, key=lambda f: (FIELDS.index(f.field), f.inr.get("model", ""), -f.metrics["compression_ratio"])
        ):
            m = f.metrics
            if m.get("heldout_particles_answerable") is False:
                particles = "not answerable"
            else:
                particles = _opt(m.get("heldout_particles_r2"))
            out.append(f"| {f.field} | {settings(f.inr)} | {f.r2:.5f} | {m['compression_ratio']:.2f} | "
                       f"{m['heldout_frames_r2']:.5f} | {particles} |")  # fmt: skip
    return out


def figure(fits: list[Fit], path: Path) -> None:
    """1 - R2 against compression per field; marker = model, colour = training steps (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colors

    ok = [f for f in fits if f.r2 is not None]
    trained = [f for f in ok if f.inr.get("model") != "pod"]
    norm = colors.LogNorm(vmin=min(f.inr["total_steps"] for f in trained),
                          vmax=max(f.inr["total_steps"] for f in trained))  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), sharex=True, sharey=True, constrained_layout=True)
    sc = None
    for ax, field in zip(axes, FIELDS, strict=True):
        curve = sorted((f for f in at_48(ok) if f.field == field and f.inr.get("model") == "pod" and not heldout(f)),
                       key=lambda f: f.metrics["compression_ratio"])  # fmt: skip
        if curve:
            ax.plot([f.metrics["compression_ratio"] for f in curve], [max(1 - f.r2, 1e-7) for f in curve], "k-",
                    marker=".", lw=1.2, label="POD (truncated SVD)", zorder=1)  # fmt: skip
        for model, marker in (("ngp", "o"), ("siren_txy", "s"), ("siren_id", "^"), ("siren_t", "v"),
                              ("pod_residual", "D")):  # fmt: skip
            mine = [f for f in ok if f.field == field and f.inr.get("model") == model]
            if mine:
                sc = ax.scatter([f.metrics["compression_ratio"] for f in mine], [1 - f.r2 for f in mine],
                                c=[f.inr["total_steps"] for f in mine], norm=norm, cmap="viridis", marker=marker,
                                edgecolors="k", linewidths=0.5, label=model)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(1 - TARGET_R2, color="k", ls="--", lw=1)
        ax.set_title(field)
        ax.set_xlabel("compression (values / parameters)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")  # POD runs from lower left to upper right
    errs = [max(1 - f.r2, 1e-7) for f in ok if f.r2 < 1]
    axes[0].set_ylim(min(errs) / 2, max(1.5, max(errs) * 1.5))
    comp = [f.metrics["compression_ratio"] for f in ok]
    axes[0].set_xlim(min(comp) / 1.5, max(comp) * 1.5)
    axes[0].set_ylabel("1 - R2 (dashed: R2 = 0.995)")
    if sc is not None:
        fig.colorbar(sc, ax=axes, label="training steps")
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", nargs="*", type=Path, default=[])
    ap.add_argument("--trials", nargs="*", type=Path, default=[])
    ap.add_argument("--bench", nargs="*", default=[], help="NAME=FILE of a benchmark's printed JSON")
    ap.add_argument("--readme", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None, help="figure directory (default: the readme's)")
    args = ap.parse_args()
    bench = {}
    for item in args.bench:
        name, _, file = item.partition("=")
        bench[name] = json.loads(Path(file).read_text())
    fits = load_fits(args.studies, args.trials)
    if not fits:
        print("error: --studies/--trials: no recorded fit found; expected journals or trial files", file=sys.stderr)
        return 2
    text = args.readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"error: {args.readme}: markers {BEGIN} ... {END} not found", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{BEGIN}\n{tables(fits, bench)}\n{END}{tail}")
    out = args.out or args.readme.parent
    figure(fits, out / "r2_vs_compression.png")
    (out / "front.json").write_text(json.dumps(front_json(fits), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
