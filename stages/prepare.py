"""DVC stage ``prepare``: generate (or import) the potential corpus under ``data.root`` and its summary metrics."""

from __future__ import annotations

import sys

from fieldlab.cli import guarded
from fieldlab.config import load_config, stage_parser
from fieldlab.core.cluster import open_client
from fieldlab.core.io import write_json
from fieldlab.potential.physics.corpus import prepare_corpus

METRICS = "metrics/prepare.json"
#: The corpus numbers `dvc metrics show` reports.
HEADLINE = (
    "samples",
    "samples_2x",
    "samples_ood",
    "solve_seconds_mean",
    "solve_seconds_2x_mean",
    "residual_max",
    "agreement_1x_2x_mean",
    "agreement_1x_2x_max",
)


def main() -> int:
    args = stage_parser(__doc__.splitlines()[0]).parse_args()
    cfg = load_config(args.params, args.overrides)
    with open_client(cfg.cluster) as client:  # where the limbs are solved: params.yaml cluster (no DVC param)
        manifest = prepare_corpus(cfg.data, cfg.physics, cfg.seed, progress=sys.stderr.isatty(), client=client)
    summary = manifest.get("summary", {"samples": len(manifest["samples"])})
    write_json(METRICS, {k: v for k, v in summary.items() if k in HEADLINE})  # the rest: <data.root>/manifest.json
    print(f"prepare: {len(manifest['samples'])} file(s) in {cfg.data.root}; summary in {METRICS}")
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
