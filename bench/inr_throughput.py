"""Training steps per second of fieldlab's siren_txy (256 x 3) and ngp against siren-pytorch's SirenNet.

Each step is forward + MSE + backward + Adam on a fixed batch of (t, x, y) points with one output component (Jp).
The three alternate in rounds of 3 steps each (``--steps / 3`` rounds, after one warm-up step each), so load changes
hit all alike; the steps/s of each is 1 / the median of its step times. Prints JSON with the steps/s of each and the
ratios to SirenNet of the same size.

What the ratios are for: ``siren_txy`` against ``siren_pytorch`` is the same network (3 -> 256 x 3 -> 1, sine,
omega 30) in two implementations, so its ratio is an implementation check (target >= 1.0). ``ngp`` is a different
model (hash grid + ReLU MLP): its ratio to SirenNet says how many steps each takes per second, not which fits a
field better per second; that comparison is R2 against training seconds in ``docs/landscape``.

    flock /tmp/fieldlab-cpu.lock python bench/inr_throughput.py [--batch 8192] [--steps 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from siren_pytorch import SirenNet  # the peer (bench extra)

from fieldlab.inr.models.hashgrid import HashGridMLP
from fieldlab.inr.models.siren import Siren


class Trainer:
    """One model with its Adam optimiser; :meth:`step` returns the seconds of one training step."""

    def __init__(self, net: torch.nn.Module, opt_kwargs: dict) -> None:
        self.net, self.opt = net, torch.optim.Adam(net.parameters(), **opt_kwargs)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        start = time.perf_counter()
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def interleaved_steps_per_second(trainers: dict[str, Trainer], x, y, rounds: int, per_round: int = 3) -> dict:
    """Median steps/s of each trainer, measured in alternating rounds so that load changes hit all alike."""
    for t in trainers.values():  # warm-up
        t.step(x, y)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, t in trainers.items():
            times[name] += [t.step(x, y) for _ in range(per_round)]
    return {name: 1.0 / statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8192, help="points per step")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log2-table-size", type=int, default=15)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, device=device)
    y = torch.sin(6 * x).sum(1, keepdim=True)
    ours = Siren(3, 1, hidden_features=256, hidden_layers=3, omega=30.0).to(device)
    peer = SirenNet(dim_in=3, dim_hidden=256, dim_out=1, num_layers=3, w0=30.0, w0_initial=30.0).to(device)
    ngp = HashGridMLP(3, 1, mlp_width=64, mlp_layers=2, log2_table_size=args.log2_table_size).to(device)
    trainers = {
        "siren_txy_256x3": Trainer(ours, {"lr": 1e-4}),
        "siren_pytorch_256x3": Trainer(peer, {"lr": 1e-4}),
        "ngp": Trainer(ngp, {"lr": 1e-3, "betas": (0.9, 0.99), "eps": 1e-15}),
    }
    result = {"device": str(device), "threads": torch.get_num_threads(), "batch": args.batch}
    result |= interleaved_steps_per_second(trainers, x, y, rounds=max(1, args.steps // 3))
    result["ngp_params"] = sum(p.numel() for p in ngp.parameters())
    result["ratio_siren_txy_vs_siren_pytorch"] = result["siren_txy_256x3"] / result["siren_pytorch_256x3"]
    result["ratio_ngp_vs_siren_pytorch"] = result["ngp"] / result["siren_pytorch_256x3"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
