"""Spacing conditioning on against off, trained across spacings on the same data and seeds, scored at every
resolution; JSON on stdout and in bench/results/spacing_ablation.json.

Each arm is the train_spacings stage as params.yaml sets it (the seed model of ``spacings.backbone`` fine-tuned on
base and 1 mm limbs), with ``spacings.conditioning`` true or false and ``seed`` each of ``--seeds``; the same files,
steps and schedule. Every trained model is scored zero shot on the first ``data.n_test_resolutions`` test limbs at
each resolution (base and 2x, seen; 1.5x and aniso, unseen), beside the one-spacing seed model. A resolution's
verdict is the arm whose seed range lies wholly below the other's; overlapping ranges are a tie::

    python bench/spacing_ablation.py --seeds 0 1 2

Needs the corpus with train_2x/ and val_2x/ and the seed checkpoint (``dvc repro train_fno``). The unseen limbs are
read from ``data.root`` when prepare wrote them (``data.test_resolutions``), else solved here; the priors of every
file are cached in a scratch folder (the pipeline's cache is left alone).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fieldlab.config import load_config
from fieldlab.core.io import save_npz, write_json
from fieldlab.potential.data.loader import PotentialDataset, dataset_options
from fieldlab.potential.data.priors import build_cache
from fieldlab.potential.evaluation.resolutions import (
    resolution_files,
    resolution_names,
    resolution_split,
    score_resolution,
)
from fieldlab.potential.models.trained import checkpoint_model_config, evaluation_inputs, load_trained, run_prior
from fieldlab.potential.physics.resolutions import solve_resolution
from fieldlab.potential.training.spacings import run_spacings, seed_checkpoint

#: The corpus folders the arms read (linked into the scratch corpus).
LINKED = ("train", "val", "train_2x", "val_2x", "test", "test_2x")


def scratch_corpus(cfg, work: Path) -> Path:
    """``work/corpus``: the corpus's folders linked, the unseen resolutions linked or solved (first n test limbs)."""
    src, root = Path(cfg.data.root).resolve(), work / "corpus"
    root.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        (root / name).symlink_to(src / name, target_is_directory=True)
    n = cfg.data.n_test_resolutions
    for name in cfg.data.test_resolutions:
        split = resolution_split(name)
        have = sorted((src / split).glob("*.npz"))
        if len(have) >= n:
            (root / split).symlink_to(src / split, target_is_directory=True)
            continue
        for i in range(n):
            sample, _, _ = solve_resolution(cfg.seed, "test", i, tuple(cfg.data.grid), name, cfg.physics)
            save_npz(root / split / f"{i:04d}.npz", **sample.to_arrays())
    return root


def operator_errors(cfg, path: Path, root: Path, seed_model: bool = False) -> dict[str, dict[str, float]]:
    """Mean and worst rel L2 of the checkpoint at ``path``, zero shot at every resolution."""
    model, ckpt = load_trained(path, torch.device("cpu"))
    scaler, ref, _ = evaluation_inputs(ckpt, path)
    prior = run_prior(checkpoint_model_config(ckpt, path).prior, cfg)
    kw = {**dataset_options(cfg, scaler, ref, prior), "cache": False}
    n = cfg.data.n_test_resolutions
    base = PotentialDataset(resolution_files(root, "base", n), **kw)

    def runs(item, sample, base_item, base_sample):
        args = (item["sigma"], item["f"], item["coords"], item["spacing"])
        return {"operator": lambda: model(*args, prior=item.get("prior"))}

    out = {}
    for name in resolution_names(cfg):
        ds = PotentialDataset(resolution_files(root, name, n), **kw)
        rows = score_resolution(runs, ds, base, 1, lambda i: 0.0, lambda i: 0.0)["operator"]
        errors = [r["rel_l2"] for r in rows.values()]
        out[name] = {"rel_l2": float(np.mean(errors)), "rel_l2_max": float(np.max(errors))}
    return out


def verdict(on: list[float], off: list[float]) -> str:
    """``on`` or ``off`` when that arm's seed range lies wholly below the other's, else ``tie``."""
    if max(on) < min(off):
        return "on"
    if max(off) < min(on):
        return "off"
    return "tie"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="bench/results/spacing_ablation.json")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    base_cfg = load_config(args.params, [*args.overrides, "log.progress=false"])
    seed_path = seed_checkpoint(base_cfg).resolve()
    with tempfile.TemporaryDirectory(prefix="spacing_ablation_") as tmp:
        work = Path(tmp)
        root = scratch_corpus(base_cfg, work)
        common = [*args.overrides, "log.progress=false", f"data.root={root}", f"model.prior.root={work / 'priors'}"]
        cfg = load_config(args.params, common)
        build_cache(root, cfg.model.prior, cfg.physics.solver, progress=False)
        common.append(f"log.root={work}")  # the seed, linked where train_spacings looks for it
        cfg = load_config(args.params, common)
        seed_checkpoint(cfg).parent.mkdir(parents=True)
        seed_checkpoint(cfg).symlink_to(seed_path)
        result: dict = {"seed_model": operator_errors(cfg, seed_path, root), "arms": {}}
        for seed in args.seeds:
            for arm in ("on", "off"):
                flag = "true" if arm == "on" else "false"
                run_cfg = load_config(args.params, [*common, f"seed={seed}", f"spacings.conditioning={flag}"])
                out_dir = work / f"{arm}_{seed}"
                t0 = time.perf_counter()
                summary = run_spacings(run_cfg, out_dir, work / "m.json", work / "h.csv")
                errors = operator_errors(run_cfg, out_dir / "checkpoints" / "best.pt", root)
                result["arms"].setdefault(arm, {})[str(seed)] = {
                    "errors": errors,
                    "best_val_rel_l2": summary["best_val_rel_l2"],
                    "train_seconds": summary["train_time_s"],
                    "seconds": time.perf_counter() - t0,
                }
                print(json.dumps({"arm": arm, "seed": seed, "errors": errors}), flush=True)
    table = {}
    for name in resolution_names(cfg):
        per = {a: [r["errors"][name]["rel_l2"] for r in result["arms"][a].values()] for a in ("on", "off")}
        table[name] = {
            **{a: {"mean": float(np.mean(v)), "min": float(min(v)), "max": float(max(v))} for a, v in per.items()},
            "seed_model": result["seed_model"][name]["rel_l2"],
            "better": verdict(per["on"], per["off"]),
        }
    result = {"resolutions": table, "seeds": args.seeds, "limbs": cfg.data.n_test_resolutions, **result}
    keys = ("base_limbs", "fine_limbs", "val_fine_limbs", "epochs", "lr", "min_lr_ratio", "film_lr_factor")
    result["spacings"] = {k: getattr(cfg.spacings, k) for k in keys}
    result["conditioning"] = {"anchored": cfg.model.conditioning.anchored, "hidden": cfg.model.conditioning.hidden}
    write_json(args.out, result)
    print(json.dumps({"resolutions": table}, indent=1))


if __name__ == "__main__":
    main()
