"""DVC stage ``prepare``: generate (or import) the potential corpus under ``data.root`` and its summary metrics."""

from __future__ import annotations

import sys

from fieldlab.cli import guarded
from fieldlab.config import load_config, stage_parser
from fieldlab.core.io import write_json
from fieldlab.potential.physics.corpus import prepare_corpus

METRICS = "metrics/prepare.json"


def main() -> int:
    args = stage_parser(__doc__.splitlines()[0]).parse_args()
    cfg = load_config(args.params, args.overrides)
    manifest = prepare_corpus(cfg.data, cfg.physics, cfg.seed, progress=sys.stderr.isatty())
    write_json(METRICS, manifest.get("summary", {"samples": len(manifest["samples"]), "source": manifest["source"]}))
    print(f"prepare: {len(manifest['samples'])} file(s) in {cfg.data.root}; summary in {METRICS}")
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
