"""DVC stage ``priors``: the coarse_fem prior of every corpus sample, cached once under ``model.prior.root``."""

from __future__ import annotations

import sys

from fieldlab.cli import guarded
from fieldlab.config import load_config, stage_parser
from fieldlab.core.cluster import open_client
from fieldlab.potential.data.priors import build_cache


def main() -> int:
    args = stage_parser(__doc__.splitlines()[0]).parse_args()
    cfg = load_config(args.params, args.overrides)
    prior = cfg.model.prior
    with open_client(cfg.cluster) as client:  # where the priors are solved: params.yaml cluster (no DVC param)
        manifest = build_cache(cfg.data.root, prior, cfg.physics.solver, progress=sys.stderr.isatty(), client=client)
    summary = manifest["summary"]
    if prior.kind != "coarse_fem":
        print(f"priors: model.prior.kind = {prior.kind}: nothing to cache; manifest in {prior.root}/manifest.json")
        return 0
    per = {k: "-" if v is None else f"{v:.3f} s" for k, v in summary.items() if k.startswith("seconds")}
    print(
        f"priors: {summary['samples']} coarse_fem prior(s) at {prior.coarse_spacing_m:g} m in {prior.root}; "
        f"{per['seconds_mean']} per base sample, {per['seconds_2x_mean']} per 2x sample"
    )
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
