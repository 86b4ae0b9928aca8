"""``fieldlab simulate-mpm``: simulate an MLS-MPM scene and write its trajectory and manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from fieldlab.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--scene", choices=("mpm128", "discs_3types"), default=None, help="overrides mpm.scene")
    parser.add_argument("--frames", type=int, default=None, help="stored frames (overrides mpm.frames)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (overrides mpm.device)")
    parser.add_argument("--out", default=None, help="output directory (default: <mpm.root>/<scene>)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as dvc exp run -S")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    for key, value in (("scene", args.scene), ("frames", args.frames), ("device", args.device)):
        if value is not None:
            overrides.append(f"mpm.{key}={value}")
    cfg = load_config(args.params, overrides)
    from fieldlab.mpm import save_trajectory, simulate

    traj = simulate(cfg.mpm, seed=cfg.seed, progress=not args.no_progress)
    out = save_trajectory(traj, Path(args.out) if args.out else Path(cfg.mpm.root) / cfg.mpm.scene)
    print(f"{out}: {traj.n_frames} frames x {traj.n_particles} particles ({traj.meta['simulation_seconds']:.1f} s)")
    return 0
