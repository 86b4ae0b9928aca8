"""What the classical front's seconds pay: the solve and the interpolation from the limb's arrays at that spacing,
not the rasterisation of the continuous limb (reported apart); its repeats give a spread."""

from __future__ import annotations

import time

import numpy as np
import pytest
from support_slow import slowed
from test_front import DATA, PHYSICS

from fieldlab.config import Config, DataConfig
from fieldlab.errors import InputError
from fieldlab.potential.data.loader import split_files
from fieldlab.potential.evaluation.classical import baselines, coarser
from fieldlab.potential.physics.corpus import generate_corpus
from fieldlab.potential.schema import load_sample


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("front_timing")
    generate_corpus(DATA, PHYSICS, seed=5, root=root, progress=False)
    return Config(data=DataConfig(**{**DATA.__dict__, "root": str(root)}), physics=PHYSICS)


def masks(files):
    return [load_sample(f).mask for f in files]


def fake_solve(sigma, source, spacing, tol, **kw):
    """A solve that costs nothing: zero on every corner of the grid of ``sigma``."""
    shape = tuple(n + 1 for n in np.shape(sigma)[:3])
    return np.zeros(shape), np.ones(shape, dtype=bool), None


def test_seconds_exclude_rasterisation_and_include_the_solve(cfg, monkeypatch):
    """A slow rasterisation shows in ``rasterise_seconds`` and not in ``seconds``; a slow solve shows in ``seconds``.
    The real solve is replaced by a free one, so the test does not depend on how fast the machine solves."""
    delay = 0.2
    files = split_files(cfg.data.root, "test")
    monkeypatch.setattr(coarser, "solve_corners", fake_solve)
    monkeypatch.setattr(coarser, "rasterise", slowed(coarser.rasterise, delay))
    point = baselines.classical_front(cfg, files, masks(files), (0.016,))["fem_16mm"]
    assert point["rasterise_seconds"] >= delay > point["seconds"]
    monkeypatch.setattr(coarser, "solve_corners", slowed(fake_solve, delay))
    assert baselines.classical_front(cfg, files, masks(files), (0.016,))["fem_16mm"]["seconds"] >= delay


def test_the_solve_from_the_arrays_is_the_front_solve(cfg):
    """Rasterising then solving apart gives the field the timed-in-one :func:`~coarser.solve_at_spacing` gives."""
    import json
    from pathlib import Path

    f = split_files(cfg.data.root, "test_2x")[0]
    manifest = json.loads((Path(cfg.data.root) / "manifest.json").read_text())
    record = next(r for r in manifest["samples"] if r["file"] == f"{f.parent.name}/{f.name}")
    limb, cond = coarser.corpus_limb(record, 5, cfg.physics)
    sample = load_sample(f)
    base = baselines.base_spacing(cfg)
    whole = coarser.solve_at_spacing(limb, cond, 0.012, sample.mask, cfg.physics, base)
    r = coarser.rasterise_at_spacing(limb, cond, 0.012, cfg.physics, base)
    np.testing.assert_array_equal(coarser.solve_rasterised(r, sample.mask, cfg.physics), whole.phi)


def test_repeats_give_a_median_and_a_spread(cfg, monkeypatch):
    """Three repeats of every solve, each slowed by 0.1, 0.2 and 0.3 s in some order (a call counter mod 3 over two
    spacings gives each point the three delays): each point's rounds take ``b_i + delay_i``, so its spread
    ``(max - min) / median`` is ``(0.2 + b_3 - b_1) / (0.2 + b_2)``, the injected 1.0 up to the solve's own time
    ``b_i <= b``, and its median at least 0.2 s; the errors are those of a single run (the solve is deterministic)."""
    files = split_files(cfg.data.root, "test")
    one = baselines.classical_front(cfg, files, masks(files), (0.016, 0.008))
    b = 3 * max(one[name]["seconds"] for name in ("fem_16mm", "fem_8mm")) + 0.05
    calls = iter(range(10**6))
    real = coarser.solve_corners

    def jittered(*args, **kw):
        time.sleep(0.1 * (1 + next(calls) % 3))
        return real(*args, **kw)

    monkeypatch.setattr(coarser, "solve_corners", jittered)
    three = baselines.classical_front(cfg, files, masks(files), (0.016, 0.008), repeats=3)
    for name in ("fem_16mm", "fem_8mm"):
        assert one[name]["seconds_spread"] == 0.0  # one round: nothing to spread
        assert (0.2 - b) / (0.2 + b) <= three[name]["seconds_spread"] <= (0.2 + b) / 0.2, (three[name], b)
        assert three[name]["seconds"] >= 0.2
        assert three[name]["rel_l2"] == one[name]["rel_l2"] and three[name]["rel_l2_max"] == one[name]["rel_l2_max"]
    assert three["fem_8mm"]["rel_l2_max"] < 1e-5  # the corpus's own spacing rebuilds the corpus
    with pytest.raises(InputError, match="rival_repeats = 0"):
        baselines.classical_front(cfg, files, masks(files), (0.016,), repeats=0)
