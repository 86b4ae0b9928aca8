"""Benchmark: fieldlab's Warp MLS-MPM against Taichi's mpm128 on the same 9000 particles, as JSON.

Both engines start from the same initial particles and constants, compile and warm up on ``--warmup`` substeps,
then run ``--repeats`` blocks of ``--substeps`` substeps, interleaved (Taichi block, Warp block, ...) so that a
change of machine load hits both. Reported: the median particle-substeps per second of each engine and the ratio
fieldlab / Taichi; also Warp on one thread, and Warp on CUDA where a CUDA device is present.

    flock /tmp/fieldlab-heavy.lock python bench/mpm_vs_taichi.py
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the Taichi reference next to this file


def rate(advance, n_particles: int, substeps: int) -> float:
    """Particle-substeps per second of one block of ``substeps``."""
    start = time.perf_counter()
    advance(substeps)
    return n_particles * substeps / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-block", type=int, default=3000, help="particles per block (3 blocks)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both engines")
    parser.add_argument("--warmup", type=int, default=200, help="substeps before timing (after compilation)")
    parser.add_argument("--substeps", type=int, default=1000, help="substeps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per engine (median reported)")
    args = parser.parse_args()

    import taichi as ti
    import warp as wp
    from taichi_mpm128 import TaichiMPM128, init_taichi

    from fieldlab.mpm import MPMPhysics, MPMSimulator, build_scene
    from fieldlab.mpm.engine import init_warp

    parts = build_scene("mpm128", args.per_block, seed=0)
    physics = MPMPhysics()  # Taichi's mpm128 constants
    init_taichi(args.threads)
    init_warp()
    engines = {
        "taichi_cpu": TaichiMPM128(parts.x, parts.v, parts.material).advance,
        "warp_cpu": MPMSimulator(physics, parts, device="cpu", threads=args.threads).advance,
        "warp_cpu_1thread": MPMSimulator(physics, parts, device="cpu", threads=1).advance,
    }
    if wp.is_cuda_available():
        engines["warp_cuda"] = MPMSimulator(physics, parts, device="cuda").advance
    for advance in engines.values():
        advance(args.warmup)
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.repeats):
        for name, advance in engines.items():
            rates[name].append(rate(advance, parts.n, args.substeps))
    median = {name: statistics.median(r) for name, r in rates.items()}
    result = {
        "benchmark": "mpm128 MLS-MPM, particle-substeps per second (median)",
        "particles": parts.n,
        "threads": args.threads,
        "warmup_substeps": args.warmup,
        "substeps_per_repeat": args.substeps,
        "repeats": args.repeats,
        "particle_substeps_per_s": {k: float(f"{v:.4g}") for k, v in median.items()},
        "all_runs": {k: [float(f"{v:.4g}") for v in r] for k, r in rates.items()},
        "ratio_warp_cpu_over_taichi_cpu": round(median["warp_cpu"] / median["taichi_cpu"], 3),
        "ratio_warp_cpu_1thread_over_taichi_cpu": round(median["warp_cpu_1thread"] / median["taichi_cpu"], 3),
        "versions": {"taichi": ".".join(map(str, ti.__version__)), "warp": wp.config.version},
        "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
