"""What the spacing conditioner does at 2x for a model trained on one spacing, measured on the test limbs, as JSON.

A corpus whose training samples all have the reference spacing gives the conditioner's first layer no gradient
(its input ``log(spacing / reference)`` is zero), so at 2x the FiLM applies a randomly initialised perturbation.
This bench evaluates a trained checkpoint on the 2x split twice: as trained (the true 1 mm spacing reaches the
conditioner) and with the conditioner neutralised (it is told the reference spacing, which is exactly what it saw
in training; the backbone, prior and inputs are unchanged). At base the two are the same by construction::

    python bench/conditioning_ablation.py experiments/fno/checkpoints/best.pt

If the neutralised model is no worse at 2x, the conditioner has learned nothing about spacing: switch it off
(``model.conditioning.enabled: false``) or train on several spacings.
"""

from __future__ import annotations

import argparse
import json

import torch

from fieldlab.config import load_config
from fieldlab.potential.evaluation.zero_shot import evaluate_sr


class Neutralised(torch.nn.Module):
    """The model with every spacing replaced by its reference spacing."""

    def __init__(self, model: torch.nn.Module, reference: list[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("reference", torch.tensor(reference, dtype=torch.float32))

    def forward(self, sigma, f, coords, spacing, prior=None):
        return self.model(sigma, f, coords, self.reference.expand_as(spacing), prior=prior)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    cfg = load_config(args.params, args.overrides)
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    from fieldlab.potential.training.operator import default_model_factory

    def neutralised(model_cfg, backbone):
        return Neutralised(default_model_factory(model_cfg, backbone), ckpt["reference_spacing"])

    def load_inner(model_cfg, backbone):  # the checkpoint's weights go into the wrapped model
        wrapped = neutralised(model_cfg, backbone)
        wrapped.load_state_dict = wrapped.model.load_state_dict  # type: ignore[method-assign]
        return wrapped

    out = {}
    for name, factory in (("as_trained", None), ("neutralised", load_inner)):
        ev = evaluate_sr(cfg, args.checkpoint, None, model_factory=factory, with_front=False)
        out[name] = {key: {"rel_l2": ev[key]["rel_l2"], "rel_l2_max": ev[key]["rel_l2_max"]} for key in ("base", "x2")}
    out["conditioning_enabled"] = ckpt["model_config"].get("conditioning", {}).get("enabled", True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
