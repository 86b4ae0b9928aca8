"""The classical rivals as a stage output: the cached points are the in-process ones (same errors), eval_sr reads them
instead of rerunning them, re-times one yardstick and flags a drift, and a file made for another run is refused."""

from __future__ import annotations

import dataclasses
import json

import pytest
from support_train import tiny_config, write_corpus
from test_eval_sr import ZeroOperator, zero_checkpoint

from fieldlab.core.io import write_json
from fieldlab.errors import InputError
from fieldlab.potential.evaluation import rivals as cache
from fieldlab.potential.evaluation import zero_shot as evaluate
from fieldlab.potential.models.scaling import FieldScaler


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny corpus, a zero model's checkpoint, the rivals computed by the stage's function and written."""
    tmp = tmp_path_factory.mktemp("rivals")
    root = write_corpus(tmp / "potential")
    cfg = tiny_config(root, tmp)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, grid=(8, 6, 6)))  # its 2x split: 16x12x12
    path = zero_checkpoint(tmp / "best.pt", FieldScaler(f_scale=1.0, u_scale=1e-3), [0.01, 0.01, 0.01])
    rivals = cache.classical_rivals(cfg)
    write_json(tmp / "rivals.json", rivals)
    return cfg, path, rivals, tmp / "rivals.json"


def test_the_cached_rivals_are_the_in_process_ones(run):
    """Every rival eval_sr computes in its own process, the stage computes too, with the same errors (the solvers are
    deterministic; the warm starts read the same cached prior)."""
    cfg, path, rivals, _ = run
    inline = evaluate.evaluate_sr(cfg, path, None, model_factory=lambda c, b: ZeroOperator())
    names = {n for n in inline["baselines"] if not n.endswith(tuple(f"sgs{k}" for k in cfg.eval.twogrid_sweeps))}
    assert names == set(rivals["baselines"])
    assert any(n.startswith("nested_") for n in names) and any(n.startswith("cg_mf_") for n in names)
    for name in names:
        for key, point in inline["baselines"][name].items():
            assert rivals["baselines"][name][key]["rel_l2"] == pytest.approx(point["rel_l2"], rel=1e-6), (name, key)


def test_eval_sr_reads_the_rivals_and_checks_its_yardstick(run, monkeypatch):
    """With the file, eval_sr runs no rival of its own (both entry points fail if called), puts the cached points in
    its baselines and front, and re-times the yardstick: a cached time 100x below today's is a drift."""
    cfg, path, rivals, file = run

    def refuse(*args, **kw):
        raise AssertionError("a cached rival was rerun")

    monkeypatch.setattr(evaluate, "split_rivals", refuse)
    monkeypatch.setattr(evaluate, "split_front", refuse)
    out = evaluate.evaluate_sr(cfg, path, None, model_factory=lambda c, b: ZeroOperator(), rivals_file=file)
    for name, points in rivals["baselines"].items():
        assert out["baselines"][name] == points
    check = out["timing_check"]["x2"]
    assert check["name"] == f"cg_mf_k{cfg.eval.yardstick_iterations}" and check["seconds"] > 0
    fast = json.loads(file.read_text())
    for point in fast["baselines"][check["name"]].values():
        point["seconds"] /= 100
    write_json(file.with_name("fast.json"), fast)
    drifted = evaluate.evaluate_sr(
        cfg, path, None, model_factory=lambda c, b: ZeroOperator(), rivals_file=file.with_name("fast.json")
    )
    assert all(c["drift"] and c["ratio"] > 1 + c["allowed"] for c in drifted["timing_check"].values())


def test_a_rivals_file_of_another_run_is_refused(run, tmp_path):
    cfg, path, rivals, _ = run
    other_prior = {**rivals, "prior": {"kind": "coarse_fem", "coarse_spacing_m": 0.123}}
    fewer = {**rivals, "splits": {**rivals["splits"], "base": rivals["splits"]["base"][:-1]}}
    other_mask = {**rivals, "mask": {**rivals["mask"], "singularity_radius": 7}}
    for data, message in (
        (other_prior, "warm-started from prior"),
        (fewer, "its base split is not this run's"),
        (other_mask, "rivals scored on mask"),
    ):
        write_json(tmp_path / "r.json", data)
        with pytest.raises(InputError, match=message):
            evaluate.evaluate_sr(
                cfg, path, None, model_factory=lambda c, b: ZeroOperator(), rivals_file=tmp_path / "r.json"
            )
    with pytest.raises(InputError, match="no classical rivals found"):
        evaluate.evaluate_sr(cfg, path, None, model_factory=lambda c, b: ZeroOperator(), rivals_file=tmp_path / "x")
