"""DVC stage ``train_subgrid``: train the sub-grid corrector on the fine labels (train_2x/, epoch picked on val_2x/).

Writes ``<subgrid.root>/checkpoints/best.pt``, metrics/train_subgrid.json and plots/train_subgrid.csv. With
``subgrid.enabled: false`` it writes only the metrics file saying so (eval_sr then leaves the corrector out).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from fieldlab.cli import guarded
from fieldlab.config import load_config, stage_parser


def main() -> int:
    args = stage_parser(__doc__.splitlines()[0]).parse_args()
    cfg = load_config(args.params, args.overrides)
    from fieldlab.core.io import write_json

    root = Path(cfg.subgrid.root)
    if not cfg.subgrid.enabled:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        write_json("metrics/train_subgrid.json", {"enabled": False})
        Path("plots").mkdir(exist_ok=True)
        Path("plots/train_subgrid.csv").write_text("epoch,train_rel_l2,val_rel_l2,seconds\n")
        print("train_subgrid: subgrid.enabled = false; nothing trained")
        return 0
    from fieldlab.potential.training.subgrid import run_subgrid_training

    s = run_subgrid_training(cfg, root, "metrics/train_subgrid.json", "plots/train_subgrid.csv")
    print(
        f"train_subgrid: best val rel L2 {s['best_val_rel_l2']:.5f} at epoch {s['best_epoch']} (its coarse start: "
        f"{s['val_start_rel_l2']:.5f}); {s['train_samples']} fine samples, {s['train_time_s']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
