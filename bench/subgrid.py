"""What the 2x sub-grid corrector's seconds are made of, beside the classical routes to its accuracy, as JSON.

On the first ``--samples`` limbs of test_2x/ and the run's trained corrector, every contender runs from the same
sample arrays, interleaved, ``--repeats`` rounds (the median of the rounds, then the mean over samples):

- the corrector's pieces: the restriction to the training grid (the compiled block sums of
  :mod:`fieldlab.potential.physics.fem.blocks` against the array expressions they replaced, reshape sums), the coarse
  solve, the prolongation (compiled, against separable trilinear einsums), the folded channels, the forward pass
  (float32 and bfloat16), and the whole call (:func:`~fieldlab.potential.prediction.subgrid.predict_subgrid`);
- the classical routes from the same arrays: full multigrid alone (``cg_fmg_k0``) and with one CG iteration, CG
  from zero (``cg_mf_k3``), nested iteration from the training grid (``nested_2mm_k1``).

Each with its rel L2 over the evaluation's loss mask::

    OMP_NUM_THREADS=2 python bench/subgrid.py --samples 3 --repeats 3 > bench/results/subgrid.json

Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from fieldlab.config import load_config
from fieldlab.potential.data.loader import split_files
from fieldlab.potential.data.subgrid_inputs import coarse_start, folded_channels, start_scale
from fieldlab.potential.metrics import field_relative_l2
from fieldlab.potential.models.trained import load_subgrid, subgrid_checkpoint
from fieldlab.potential.physics.fem.blocks import block_sums, prolong_values
from fieldlab.potential.physics.fem.coarse import restrict
from fieldlab.potential.physics.fem.solver import DEFAULT_METHOD, solve_corners
from fieldlab.potential.physics.fem.transfer import corner_weights
from fieldlab.potential.prediction.classical import run_route
from fieldlab.potential.prediction.subgrid import predict_subgrid
from fieldlab.potential.schema import load_sample
from fieldlab.potential.training.subgrid import loss_mask_of


def reshape_sums(sigma, source, mask, r: int):
    """The array expressions the block sums replaced (float64 copies, a masked copy, reshape sums)."""

    def bsum(a):
        D, H, W = a.shape[:3]
        return a.reshape(D // r, r, H // r, r, W // r, r, *a.shape[3:]).sum(axis=(1, 3, 5))

    m = np.asarray(mask, dtype=bool)
    return (bsum(m.astype(np.float64)), bsum(np.where(m[..., None], np.asarray(sigma, np.float64), 0.0)),
            bsum(np.asarray(source, np.float64)))  # fmt: skip


def einsum_prolong(phi, active, r: int):
    """The separable trilinear einsums the compiled prolongation replaced (value and weight, then the division)."""

    def tri(c):
        wd, wh, ww = (corner_weights(n - 1, (n - 1) * r) for n in c.shape)
        return np.einsum("cw,abw->abc", ww, np.einsum("bh,ahw->abw", wh, np.einsum("ad,dhw->ahw", wd, c)))

    w = tri(active.astype(np.float64))
    v = tri(np.where(active, phi, 0.0))
    return np.where(w > 1e-9, v / np.where(w > 1e-9, w, 1.0), np.nan)


def contenders(s, fp32, bf16) -> tuple[dict[str, Callable[[], object]], dict[str, Callable[[], np.ndarray]]]:
    """The corrector's pieces on sample ``s`` (their inputs made once, untimed) and the whole predictors."""
    spacing = tuple(float(v) for v in s.spacing)
    problem = restrict(s.sigma, s.source, s.mask, spacing, 2 * max(spacing), True)
    tol = fp32.start_tol
    phi, active, _ = solve_corners(problem.sigma, problem.source, problem.grid.spacing, tol, method=DEFAULT_METHOD)
    start = coarse_start(s, 2, tol)
    scale = start_scale(start, s.mask)
    x = folded_channels(s, start, scale, fp32.sigma_ref, 2)
    p = problem
    pieces: dict[str, Callable[[], object]] = {
        "restrict_block_sums": lambda: block_sums(s.sigma, s.source, s.mask, (2, 2, 2)),
        "restrict_reshape_sums": lambda: reshape_sums(s.sigma, s.source, s.mask, 2),
        "coarse_solve": lambda: solve_corners(p.sigma, p.source, p.grid.spacing, tol, method=DEFAULT_METHOD),
        "prolong_compiled": lambda: prolong_values(phi, active, (2, 2, 2)),
        "prolong_einsum": lambda: einsum_prolong(phi, active, 2),
        "channels_folded": lambda: folded_channels(s, start, scale, fp32.sigma_ref, 2),
        "forward_float32": lambda: fp32.correction(x),
        "forward_bfloat16": lambda: bf16.correction(x),
    }
    whole: dict[str, Callable[[], np.ndarray]] = {
        "subgrid_unet_float32": lambda: predict_subgrid(fp32, s),
        "subgrid_unet_bfloat16": lambda: predict_subgrid(bf16, s),
    }
    for name in ("cg_fmg_k0", "cg_fmg_k1", "cg_mf_k3", "nested_2mm_k1"):
        whole[name] = lambda n=name: run_route(n, s)
    return pieces, whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    cfg = load_config(args.params)
    files = split_files(cfg.data.root, "test_2x")[: args.samples]
    path = subgrid_checkpoint(cfg)
    if not files or not path.is_file() or args.repeats < 1:
        print(f"error: expected test_2x/ under {cfg.data.root}, a corrector at {path} and --repeats >= 1",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    fp32 = load_subgrid(path, precision="float32")
    bf16 = load_subgrid(path, precision="bfloat16")
    times: dict[str, list[float]] = {}
    errors: dict[str, list[float]] = {}
    for f in files:
        s = load_sample(f)
        mask = loss_mask_of(cfg, s, [float(v) * 2 for v in s.spacing], str(f))[0].numpy().astype(bool)
        pieces, whole = contenders(s, fp32, bf16)
        for fn in (*pieces.values(), *whole.values()):  # compile and warm every path once, untimed
            fn()
        rounds: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for name, fn in (*pieces.items(), *whole.items()):
                t0 = time.perf_counter()
                with torch.no_grad():
                    out = fn()
                rounds.setdefault(name, []).append(time.perf_counter() - t0)
                if name in whole and len(rounds[name]) == 1:
                    errors.setdefault(name, []).append(field_relative_l2(out, s.u, mask))
        for name, ts in rounds.items():
            times.setdefault(name, []).append(float(np.median(ts)))
    seconds = {name: float(np.mean(ts)) for name, ts in times.items()}
    result = {
        "samples": len(files),
        "repeats": args.repeats,
        "seconds": seconds,
        "rel_l2": {name: float(np.mean(e)) for name, e in errors.items()},
        "ratios": {
            "restrict_reshape_over_block_sums": seconds["restrict_reshape_sums"] / seconds["restrict_block_sums"],
            "prolong_einsum_over_compiled": seconds["prolong_einsum"] / seconds["prolong_compiled"],
            "forward_float32_over_bfloat16": seconds["forward_float32"] / seconds["forward_bfloat16"],
            "cg_fmg_k0_over_subgrid": seconds["cg_fmg_k0"] / seconds["subgrid_unet_bfloat16"],
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
