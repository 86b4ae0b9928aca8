"""Stage eval_rivals: the classical rivals of the test splits, run once per corpus, solver and prior.

Writes eval.rivals_file (data/rivals/rivals.json): multigrid-CG stopped early, the two-grid cycle, nested iteration
and FEM at coarser spacings on the base, 2x and ood test limbs, with the prior and the files they ran on. eval_sr
reads it and re-times one yardstick, so a change of backbone reruns only the model's evaluation.
"""

from __future__ import annotations

import sys

from fieldlab.cli import guarded
from fieldlab.config import load_config, stage_parser


def main() -> int:
    args = stage_parser(__doc__.splitlines()[0]).parse_args()

    def run() -> int:
        from fieldlab.core.io import write_json
        from fieldlab.potential.evaluation.rivals import classical_rivals

        cfg = load_config(args.params, args.overrides)
        result = classical_rivals(cfg)
        write_json(cfg.eval.rivals_file, result)
        points = sum(len(v) for v in result["baselines"].values())
        print(f"eval_rivals: {len(result['baselines'])} rivals, {points} points in {cfg.eval.rivals_file}")
        return 0

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
