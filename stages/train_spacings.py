"""Stage train_spacings: the seed operator fine-tuned on two spacings (train/ and train_2x/), conditioning on.

Writes experiments/spacings/ (checkpoints, TensorBoard), metrics/train_spacings.json and plots/train_spacings.csv;
with ``spacings.enabled: false`` only the metrics file saying so (eval_sr then leaves the resolutions out).
``dvc exp run -S spacings.conditioning=false`` trains the ablation's other arm on the same data and steps.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from fieldlab.cli import guarded
from fieldlab.config import load_config, stage_parser


def main() -> int:
    args = stage_parser(__doc__.splitlines()[0]).parse_args()

    def run() -> int:
        from fieldlab.core.io import write_json

        cfg = load_config(args.params, args.overrides)
        root = Path(cfg.spacings.root)
        if not cfg.spacings.enabled:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            write_json("metrics/train_spacings.json", {"enabled": False})
            Path("plots").mkdir(exist_ok=True)
            Path("plots/train_spacings.csv").write_text("epoch,val_rel_l2\n")
            print("train_spacings: spacings.enabled = false; nothing trained")
            return 0
        from fieldlab.potential.training.spacings import run_spacings

        s = run_spacings(cfg, root, "metrics/train_spacings.json", "plots/train_spacings.csv")
        print(
            f"train_spacings: best val rel L2 (base and 2x limbs) {s['best_val_rel_l2']:.5f} at epoch "
            f"{s['best_epoch']}, conditioning {'on' if s['conditioning'] else 'off'}, {s['train_time_s']:.0f} s"
        )
        return 0

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
