"""Stage simulate_mpm: simulate ``mpm.scene`` and write ``<mpm.root>/<scene>/{trajectory.npz, manifest.json}``."""

from __future__ import annotations

import sys
from pathlib import Path

from fieldlab.cli import guarded
from fieldlab.config import load_config, stage_parser


def main(argv: list[str] | None = None) -> int:
    args = stage_parser(__doc__.splitlines()[0]).parse_args(argv)

    def run() -> int:
        cfg = load_config(args.params, args.overrides)
        from fieldlab.mpm import save_trajectory, simulate

        traj = simulate(cfg.mpm, seed=cfg.seed, progress=True)
        out = save_trajectory(traj, Path(cfg.mpm.root) / cfg.mpm.scene)
        rate = traj.meta["particle_substeps_per_second"] or 0.0
        print(
            f"simulate_mpm: {traj.n_frames} frames x {traj.n_particles} particles -> {out} "
            f"({traj.meta['simulation_seconds']:.1f} s, {rate:.3g} particle-substeps/s on {traj.meta['device']})"
        )
        return 0

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
