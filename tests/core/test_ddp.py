"""Two-process DistributedDataParallel on CPU with gloo: one epoch, identical weights on both ranks, rank-0 outputs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from support_train import tiny_config, tiny_factory, write_corpus

from fieldlab.potential.training.operator import train_operator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, root: str, tmp: str) -> None:
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1"}
    )
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    seen = []
    cfg = tiny_config(Path(root), Path(tmp), epochs=1, batch_size=1)
    out = Path(tmp) / "experiments" / "fno"
    model = {}

    def factory(model_cfg, backbone):
        model["m"] = tiny_factory(model_cfg, backbone)
        return model["m"]

    summary = train_operator(cfg, "fno", out, model_factory=factory, step_hook=lambda e, s, g: seen.append(g))
    torch.save(
        {"state": model["m"].state_dict(), "steps": seen, "summary_steps": summary["steps"]},
        Path(tmp) / f"rank{rank}.pt",
    )


def test_two_process_gloo_one_epoch(tmp_path):
    root = write_corpus(tmp_path / "potential")  # 4 training samples -> 2 per rank at batch 1
    mp.spawn(worker, args=(2, free_port(), str(root), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["steps"] == r1["steps"] == [1, 2]  # each rank trains on its half of the shuffled set
    for key, value in r0["state"].items():
        torch.testing.assert_close(r1["state"][key], value, rtol=0, atol=0)  # gradients were all-reduced
    out = tmp_path / "experiments" / "fno"
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    for key, value in r0["state"].items():
        torch.testing.assert_close(ckpt["model"][key], value)
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1  # rank 0 alone logs
