"""Learning curve of the default operator: test rel L2 against training limbs at a fixed step budget (prints JSON).

One corpus of ``max(--sizes)`` training limbs (plus ``data.n_val`` and ``data.n_test``) is generated under
``--root`` with the default physics (the ``prepare`` code, then the ``priors`` code for the coarse_fem prior); it is
reused when its manifest already lists those counts. For each size N, with and without symmetry augmentation, the
default backbone trains on the first N limbs (N x ``data.sources_per_limb`` samples) for ``--steps`` optimiser
steps (epochs = steps / samples, rounded up; the cosine schedule spans them), keeps its best validation epoch, and
is scored on the same test limbs at the base grid: rel L2 over the loss mask, the metric of ``eval_sr``. A power
law rel_l2 = a N^-b is fitted per curve (where the points fall), and the wall seconds of each part are reported so
the default corpus can be sized for ``make repro``. ``--figure`` draws the curves (log-log). ``--curves`` picks
which of the two to train; ``--json`` is rewritten after every training, and a rerun with the same ``--json``,
steps and backbone keeps the points already there, those of sizes and curves it does not train included (a long
run can be stopped and resumed between trainings, or extended one point at a time).

Run (hours on 2 cores; one job at a time)::

    python bench/learning_curve.py --sizes 40 80 160 320 --steps 1120 --figure docs/figures/learning_curve.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from fieldlab.config import Config, load_config, to_dict


def corpus(cfg: Config) -> dict[str, float]:
    """Generate the corpus and its priors unless ``data.root`` already holds these counts; seconds of each."""
    from fieldlab.potential.data.priors import build_cache
    from fieldlab.potential.physics.corpus import prepare_corpus

    manifest = Path(cfg.data.root) / "manifest.json"
    wanted = {"seed": cfg.seed, "params": {"data": to_dict(cfg.data), "physics": to_dict(cfg.physics)}}
    if manifest.is_file() and (Path(cfg.model.prior.root) / "manifest.json").is_file():
        old = json.loads(manifest.read_text())
        if {k: old.get(k) for k in wanted} == wanted:
            return {"prepare_s": 0.0, "priors_s": 0.0}
    t0 = time.perf_counter()
    prepare_corpus(cfg.data, cfg.physics, cfg.seed, progress=False)
    t1 = time.perf_counter()
    build_cache(cfg.data.root, cfg.model.prior, cfg.physics.solver)
    return {"prepare_s": t1 - t0, "priors_s": time.perf_counter() - t1}


def test_error(cfg: Config, checkpoint: Path) -> dict[str, float]:
    """Mean and max rel L2 of ``checkpoint`` on the test split at the base grid."""
    from fieldlab.core.device import select_device
    from fieldlab.potential.data.loader import PotentialDataset, dataset_options, split_files
    from fieldlab.potential.evaluation.zero_shot import evaluate_split
    from fieldlab.potential.models.trained import checkpoint_model_config, evaluation_inputs, load_trained

    device = select_device(cfg.device)
    model, ckpt = load_trained(checkpoint, device)
    scaler, ref, _ = evaluation_inputs(ckpt, checkpoint)
    prior = checkpoint_model_config(ckpt, checkpoint).prior
    ds = PotentialDataset(split_files(cfg.data.root, cfg.eval.splits[0]), **dataset_options(cfg, scaler, ref, prior))
    rows, _ = evaluate_split(model, ds, device)
    errs = [r["rel_l2"] for r in rows.values()]
    return {"rel_l2": float(np.mean(errs)), "rel_l2_max": float(np.max(errs))}


def power_law(sizes: list[int], errs: list[float]) -> dict[str, float] | None:
    if len(sizes) < 2:
        return None
    slope, icpt = np.polyfit(np.log(sizes), np.log(errs), 1)
    return {"a": float(math.exp(icpt)), "b": float(-slope)}


def draw(out: dict[str, Any], path: Path) -> None:
    """Test rel L2 (solid) and best validation rel L2 (dashed) against training limbs, log-log, per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    for name, curve in out["curves"].items():
        pts = curve["points"]
        limbs = [p["limbs"] for p in pts]
        (line,) = ax.loglog(limbs, [p["rel_l2"] for p in pts], "o-", label=f"{name.replace('_', ' ')}: test")
        ax.loglog(limbs, [p["best_val_rel_l2"] for p in pts], "s--", color=line.get_color(), label="validation")
    ax.set_xlabel(f"training limbs ({out.get('sources_per_limb', 1)} source(s) each)")
    ax.set_ylabel("rel L2 (base grid)")
    ax.set_title(f"{out['backbone']}, {out['steps']} steps per training")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--sizes", nargs="+", type=int, default=[40, 80, 160, 320], help="training limbs")
    ap.add_argument("--steps", type=int, default=1120, help="optimiser steps per training (default: 14 x 80)")
    ap.add_argument("--root", type=Path, default=Path("data/learning_curve"))
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--curves", nargs="+", choices=("augment", "no_augment"), default=["augment", "no_augment"])
    ap.add_argument("--json", type=Path, default=None, help="also write the results here, after every training")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="params overrides (e.g. data.grid=[24,12,12])")
    ap.add_argument("--points", type=Path, default=None, help="redraw --figure from a saved --json; trains nothing")
    args = ap.parse_args()
    if args.points is not None:
        if args.figure is None:
            ap.error("--points needs --figure")
        draw(json.loads(args.points.read_text()), args.figure)
        return
    root = args.root
    scratch = [f"data.root={root / 'potential'}", f"model.prior.root={root / 'priors'}", f"log.root={root / 'runs'}"]
    fixed = [f"data.n_train={max(args.sizes)}", "data.test_2x=false", "data.n_ood=0", "log.progress=false"]
    base = load_config(args.params, [*args.overrides, *fixed, *scratch])
    k = base.data.sources_per_limb
    out: dict[str, Any] = {"backbone": base.model.backbone, "steps": args.steps, "sources_per_limb": k}
    out |= {"corpus": corpus(base), "curves": {}}
    from fieldlab.potential.training.operator import train_operator

    rows: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    earlier: dict[str, Any] = {}  # points of an earlier run, reused when its steps and corpus match
    if args.json is not None and args.json.is_file():
        old = json.loads(args.json.read_text())
        if old.get("steps") == args.steps and old.get("backbone") == base.model.backbone:
            earlier = old.get("curves", {})
            out["corpus"] = old.get("corpus", out["corpus"]) if out["corpus"]["prepare_s"] == 0.0 else out["corpus"]
    for n in sorted(args.sizes):  # the curves side by side per size, so a run stopped early still compares them
        for augment in [c == "augment" for c in args.curves]:
            samples = n * k
            epochs = math.ceil(args.steps * base.train.batch_size / samples)
            train = dataclasses.replace(base.train, max_train_samples=samples, augment=augment, epochs=epochs)
            cfg = dataclasses.replace(base, train=train)
            run = args.root / "runs" / f"n{n}_{'aug' if augment else 'plain'}"
            name = "augment" if augment else "no_augment"
            kept = [r for r in earlier.get(name, {}).get("points", []) if (r["limbs"], r["epochs"]) == (n, epochs)]
            if kept:  # measured by an earlier run into --json (same corpus, steps and size)
                rows[augment].append(kept[0])
            else:
                t0 = time.perf_counter()
                summary = train_operator(cfg, cfg.model.backbone, run)
                seconds = time.perf_counter() - t0
                err = test_error(cfg, run / "checkpoints" / "best.pt")
                rows[augment].append({"limbs": n, "samples": samples, "epochs": epochs, "train_s": seconds,
                                      "best_val_rel_l2": summary.get("best_val_rel_l2"), **err})  # fmt: skip
            for aug, name in ((True, "augment"), (False, "no_augment")):
                done = {r["limbs"] for r in rows[aug]}  # an earlier run's points of other sizes stay in --json
                pts = sorted(rows[aug] + [r for r in earlier.get(name, {}).get("points", []) if r["limbs"] not in done],
                             key=lambda r: r["limbs"])  # fmt: skip
                if pts:
                    law = power_law([r["limbs"] for r in pts], [r["rel_l2"] for r in pts])
                    out["curves"][name] = {"points": pts, "power_law": law}
            if args.json is not None:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    if args.figure is not None:
        draw(out, args.figure)


if __name__ == "__main__":
    main()
