"""Train-step time (forward + backward + AdamW) of the configured PotentialModel backbones on CPU, as JSON.

Run under the heavy lock with the allocator settings of the Makefile::

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824 flock /tmp/fieldlab-heavy.lock \\
        python bench/step_time.py --grid 96 48 48 --batch 1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from fieldlab.config import load_config
from fieldlab.potential.models.wrapper import BACKBONES, build_model, count_parameters


def make_inputs(grid: tuple[int, int, int], batch: int) -> tuple[torch.Tensor, ...]:
    """A random anisotropic conductivity with an air margin, a random source, cell-centre coordinates, 2 mm."""
    g = torch.Generator().manual_seed(0)
    sigma = torch.rand(batch, 6, *grid, generator=g) * 0.5 + 0.05
    sigma[:, 3:] = 0.0
    sigma[..., :2] = 0.0  # air at the x-margin
    f = torch.randn(batch, 1, *grid, generator=g)
    axes = [torch.linspace(-1 + 1 / n, 1 - 1 / n, n) for n in grid]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    coords = torch.stack([x, y, z])[None].expand(batch, -1, -1, -1, -1).contiguous()
    spacing = torch.full((batch, 3), 2e-3)
    return sigma, f, coords, spacing


def time_steps(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], repeats: int) -> list[float]:
    """Seconds per train step; the first (warm-up) step is not counted."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    target = torch.zeros_like(inputs[1])
    prior = torch.randn_like(inputs[1]) if getattr(model, "use_prior", False) else None  # the prior channel
    times = []
    for k in range(repeats + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(*inputs, prior=prior), target)
        loss.backward()
        opt.step()
        if k:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--grid", type=int, nargs=3, default=[96, 48, 48])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    cfg = load_config(args.params, args.overrides).model
    inputs = make_inputs(tuple(args.grid), args.batch)
    out = {"grid": args.grid, "batch": args.batch, "threads": torch.get_num_threads(), "models": {}}
    for name in args.backbones:
        torch.manual_seed(0)
        model = build_model(cfg, name)
        times = time_steps(model, inputs, args.repeats)
        out["models"][name] = {
            "parameters": count_parameters(model),
            "step_s_median": statistics.median(times),
            "step_s": times,
        }
    out["max_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
