"""Stage inr_block: fit one INR to one MPM field (params: seed, inr) and write model, metrics, panel, log."""

from __future__ import annotations

import sys

from fieldlab.cli import guarded
from fieldlab.config import load_config, stage_parser


def main() -> int:
    args = stage_parser(__doc__.splitlines()[0]).parse_args()

    def run() -> int:
        from fieldlab.inr.block import run_inr_block

        cfg = load_config(args.params, args.overrides)
        metrics = run_inr_block(cfg.inr, cfg.seed)
        print(
            f"inr_block: {metrics['inr_type']} on {metrics['field_name']}: R2 {metrics['final_r2']}, "
            f"slope {metrics['slope']}, {metrics['total_params']} params, {metrics['training_time']:.1f} s"
        )
        return 0

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
