"""The operator across spacings (training/spacings.py) on a tiny corpus: the warm start is the seed exactly, every
batch is of one spacing, both spacings train the spacing FiLM's first layer, the checkpoint says what it trained
on and from which seed, and a seed that does not fit is refused by name."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from support_train import BASE_GRID, EXTENT, make_sample, tiny_config, write_corpus

from fieldlab.config import ConditioningConfig, EncoderConfig, FNOConfig, PriorConfig
from fieldlab.core.checkpoint import load_checkpoint
from fieldlab.core.io import save_npz
from fieldlab.errors import InputError
from fieldlab.potential.data.spacing_batches import spacing_key
from fieldlab.potential.models.wrapper import build_model
from fieldlab.potential.training.operator import OperatorTrainer, train_operator
from fieldlab.potential.training.spacings import run_config, seed_checkpoint, seed_start, spacings_plan

REFERENCE = tuple(e / n for e, n in zip(EXTENT, BASE_GRID[::-1], strict=True))


@pytest.fixture
def setup(tmp_path):
    """A tiny corpus with train_2x/ and val_2x/, and a seed FNO (conditioning off) trained one epoch on train/."""
    root = write_corpus(tmp_path / "potential", counts=(3, 2, 1))
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            arrays = make_sample(np.random.default_rng([0, len(split), i]), BASE_GRID, factor=2)
            save_npz(root / f"{split}_2x" / f"{i:04d}.npz", **arrays)
    cfg = tiny_config(root, tmp_path, epochs=1, batch_size=1)
    model_cfg = dataclasses.replace(
        cfg.model,
        backbone="fno",
        prior=PriorConfig(kind="none"),
        encoder=EncoderConfig(channels=3, hidden=4, layers=2),
        conditioning=ConditioningConfig(enabled=False, hidden=4, reference_spacing=REFERENCE),
        fno=FNOConfig(width=4, modes=(3, 3, 3), layers=1),
    )
    spacings = dataclasses.replace(
        cfg.spacings, enabled=True, base_limbs=3, fine_limbs=2, val_fine_limbs=1, epochs=2, lr=1e-2
    )
    cfg = dataclasses.replace(cfg, model=model_cfg, spacings=spacings)
    torch.manual_seed(0)
    train_operator(cfg, "fno", seed_checkpoint(cfg).parents[1])
    return cfg


def fit(cfg, tmp_path, conditioning=True):
    """Fine-tune with a model that records the spacings of each training batch; return the batches' spacings."""
    cfg = dataclasses.replace(cfg, spacings=dataclasses.replace(cfg.spacings, conditioning=conditioning))
    seen: list[set] = []
    initial: dict[str, torch.Tensor] = {}

    def factory(model_cfg, backbone):
        model = build_model(model_cfg, backbone)
        if model.conditioner is not None:
            initial["first_layer"] = model.conditioner.mlp[0].weight.detach().clone()
        forward = model.forward

        def recording(sigma, f, coords, spacing, prior=None):
            if model.training:
                seen.append({spacing_key(s.tolist()) for s in spacing})
            return forward(sigma, f, coords, spacing, prior=prior)

        model.forward = recording
        return model

    scaler, start = seed_start(cfg, seed_checkpoint(cfg))
    out = tmp_path / f"spacings_{conditioning}"
    run_cfg = run_config(cfg)
    trainer = OperatorTrainer(run_cfg, "fno", out, model_factory=factory, plan=spacings_plan(cfg, scaler), start=start)
    return trainer.fit(), seen, out, initial


def test_batches_are_of_one_spacing_and_both_spacings_train(setup, tmp_path):
    summary, seen, out, initial = fit(setup, tmp_path)
    assert all(len(s) == 1 for s in seen)  # one spacing per batch
    assert len(seen) == 2 * (3 + 2)  # two epochs of three base and two fine limbs, batch 1
    base, fine = spacing_key(REFERENCE), spacing_key([v / 2 for v in REFERENCE])
    assert sorted(set().union(*seen)) == sorted({base, fine})
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert sorted(spacing_key(s) for s in ckpt["train_spacings"]) == sorted({base, fine})
    assert ckpt["seed_checkpoint"]["path"] == str(seed_checkpoint(setup))
    assert ckpt["model_config"]["conditioning"]["enabled"]
    seed = load_checkpoint(seed_checkpoint(setup))
    assert ckpt["transforms"] == seed["transforms"]  # the seed's field scaling, not a refit
    trained = ckpt["model"]["conditioner.mlp.0.weight"]
    assert (trained != initial["first_layer"]).all()  # every entry of the first layer trained (none on one spacing)
    assert len(summary["train_spacings"]) == 2


def test_the_warm_start_without_conditioning_is_the_seed_model(setup):
    off = dataclasses.replace(setup, spacings=dataclasses.replace(setup.spacings, conditioning=False))
    _, start = seed_start(off, seed_checkpoint(off))
    model = build_model(run_config(off).model, "fno")
    start(model)
    seed = build_model(setup.model, "fno")
    seed.load_state_dict(load_checkpoint(seed_checkpoint(setup))["model"])
    x = torch.randn(1, 6, *BASE_GRID).abs(), torch.randn(1, 1, *BASE_GRID), torch.randn(1, 3, *BASE_GRID)
    spacing = torch.tensor([[v / 2 for v in REFERENCE]])
    with torch.no_grad():
        assert torch.equal(model(*x, spacing), seed(*x, spacing))


def test_a_seed_that_does_not_fit_is_refused(setup, tmp_path):
    wider = dataclasses.replace(setup.model, fno=dataclasses.replace(setup.model.fno, width=6))
    with pytest.raises(InputError, match=r"model.fno = .*retrain the seed"):
        seed_start(dataclasses.replace(setup, model=wider), seed_checkpoint(setup))
    conditioned = dataclasses.replace(
        setup.model, conditioning=dataclasses.replace(setup.model.conditioning, enabled=True)
    )
    cfg = dataclasses.replace(setup, model=conditioned, log=dataclasses.replace(setup.log, root=str(tmp_path / "c")))
    torch.manual_seed(0)
    train_operator(cfg, "fno", seed_checkpoint(cfg).parents[1])
    with pytest.raises(InputError, match=r"seed trained with model\.conditioning\.enabled = true"):
        seed_start(cfg, seed_checkpoint(cfg))
    with pytest.raises(InputError, match="no seed checkpoint"):
        seed_start(setup, tmp_path / "none.pt")
    too_many = dataclasses.replace(setup, spacings=dataclasses.replace(setup.spacings, fine_limbs=5))
    with pytest.raises(InputError, match=r"spacings\.fine_limbs = 5: train_2x/ holds 2"):
        spacings_plan(too_many, None)


def test_the_film_alone_takes_its_own_learning_rate(setup):
    """``spacings.film_lr_factor``: the optimiser gives the new spacing FiLM, and only it, lr x factor."""
    from fieldlab.potential.training.runstate import param_groups

    fast = dataclasses.replace(setup, spacings=dataclasses.replace(setup.spacings, film_lr_factor=10.0))
    run_cfg = run_config(fast)
    model = build_model(run_cfg.model, "fno")
    groups = param_groups(model, run_cfg)
    film = {id(p) for p in model.conditioner.parameters()}
    assert [len(g["params"]) for g in groups] == [len(list(model.parameters())) - len(film), len(film)]
    assert {id(p) for p in groups[1]["params"]} == film and groups[1]["lr"] == 10.0 * run_cfg.train.lr
    opt = torch.optim.AdamW(groups, lr=run_cfg.train.lr)
    assert [g["lr"] for g in opt.param_groups] == [run_cfg.train.lr, 10.0 * run_cfg.train.lr]
    plain = param_groups(model, run_config(setup))  # factor 1: one group of every weight
    assert len(plain) == 1 and len(plain[0]["params"]) == len(list(model.parameters()))
