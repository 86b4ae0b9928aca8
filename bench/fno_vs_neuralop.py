"""FNO3d here vs neuraloperator's ``FNO`` at the same size: forward+backward samples/s and peak memory, as JSON.

Both models: lifting MLP (in -> 2w -> w), L Fourier layers (spectral + linear skip, GELU between), projection MLP
(w -> 2w -> 1), the same kept modes and domain padding; neuraloperator without positional embedding, channel MLP or
normalisation, so the two compute the same function class with (nearly) the same parameters. Each model runs in
its own subprocess so that peak memory (CPU: peak RSS above the RSS after building model and inputs; CUDA: peak
allocated) is its own. Run under the heavy lock::

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824 flock /tmp/fieldlab-heavy.lock \\
        python bench/fno_vs_neuralop.py --grid 96 48 48 --batch 2

``neuraloperator`` is a ``bench`` extra only: never imported by the library or the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from fieldlab.config import load_config
from fieldlab.potential.models.fno import FNO3d
from fieldlab.potential.models.wrapper import COORD_CHANNELS, F_CHANNELS, count_parameters


def build(impl: str, in_channels: int, cfg) -> torch.nn.Module:
    """The FNO of ``cfg`` (``model.fno``) from this package (``fieldlab``) or from neuraloperator (``neuralop``)."""
    md, mh, mw = cfg.modes
    if impl == "fieldlab":
        return FNO3d(
            in_channels, 1, cfg.width, cfg.modes, cfg.layers, cfg.padding, cfg.lifting_ratio, cfg.projection_ratio
        )
    from neuralop.models import FNO

    # neuraloperator counts modes in total per axis (+-m) and keeps n // 2 + 1 along the last (real-FFT) axis.
    return FNO(
        n_modes=(2 * md, 2 * mh, 2 * (mw - 1)),
        in_channels=in_channels,
        out_channels=1,
        hidden_channels=cfg.width,
        n_layers=cfg.layers,
        lifting_channel_ratio=cfg.lifting_ratio,
        projection_channel_ratio=cfg.projection_ratio,
        positional_embedding=None,
        use_channel_mlp=False,
        fno_skip="linear",
        domain_padding=cfg.padding,
    )


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(impl: str, args: argparse.Namespace) -> dict:
    """Median seconds per forward+backward and peak memory of one implementation (run in a child process)."""
    cfg = load_config(args.params, args.overrides).model
    in_channels = cfg.encoder.channels + F_CHANNELS + COORD_CHANNELS
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build(impl, in_channels, cfg.fno).to(device)
    x = torch.randn(args.batch, in_channels, *args.grid, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = rss_bytes()
    times = []
    for k in range(args.repeats + 1):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        sync()
        if k:  # the first step warms up allocator and FFT plans
            times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    step = statistics.median(times)
    return {
        "parameters": count_parameters(model),
        "step_s_median": step,
        "step_s": times,
        "samples_per_s": args.batch / step,
        "peak_memory_gib": peak / 2**30,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--grid", type=int, nargs=3, default=[96, 48, 48])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=["fieldlab", "neuralop"], help=argparse.SUPPRESS)  # child process
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return
    result = {"grid": args.grid, "batch": args.batch, "device": args.device, "threads": torch.get_num_threads()}
    for impl in ("fieldlab", "neuralop"):
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--only", impl], capture_output=True, text=True, check=True
        )
        result[impl] = json.loads(child.stdout.strip().splitlines()[-1])
    ours, peer = result["fieldlab"], result["neuralop"]
    result["throughput_ratio"] = ours["samples_per_s"] / peer["samples_per_s"]
    result["memory_ratio"] = ours["peak_memory_gib"] / peer["peak_memory_gib"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
